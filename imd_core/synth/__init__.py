"""SynthAV: a generated audio-visual action data set with controlled audio relevance.

``imd synth OUT --clips N`` renders labelled MP4 clips (H.264 + AAC) and a
``manifest.csv``. Each clip shows one of :data:`~imd_core.synth.classes.ACTION_CLASSES`
drawn as moving shapes; its soundtrack is the action's own sound synchronised with the
visual events (``relevant``), an unrelated sound (``irrelevant``), another class's
sound (``misleading``) or near-silence (``silent``). See :mod:`imd_core.synth.generate`.
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
