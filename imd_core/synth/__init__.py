"""SynthAV: a generated audio-visual action data set with controlled audio relevance.

``imd synth OUT --clips N`` renders labelled MP4 clips and a ``manifest.csv``. Each
clip's soundtrack is its action's synchronised sound (``relevant``), an unrelated sound
(``irrelevant``), another class's sound (``misleading``) or near-silence (``silent``).
"""

from imd_core.synth.classes import ACTION_CLASSES, AUDIO_KINDS, CLASS_TAGS, IRRELEVANT_TAGS, TAGGER_LABELS
from imd_core.synth.generate import SynthConfig, generate, render_clip, sample_clip_spec

__all__ = [
    "ACTION_CLASSES",
    "AUDIO_KINDS",
    "CLASS_TAGS",
    "IRRELEVANT_TAGS",
    "TAGGER_LABELS",
    "SynthConfig",
    "generate",
    "render_clip",
    "sample_clip_spec",
]
