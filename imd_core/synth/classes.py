"""The SynthAV label sets: visual action classes and the AudioSet names of their sounds.

Audio tags are spelled exactly as in the AudioSet ontology, so a SynthAV tagger speaks a
real AST's label language; the action names were chosen so that all-MiniLM-L6-v2 maps
each to its own sound (checked in the tests).
"""

from __future__ import annotations

# Visual action classes, in class-index order (the order is part of the data set).
ACTION_CLASSES: tuple[str, ...] = (
    "bouncing ball",
    "clapping",
    "hammering",
    "drumming",
    "sawing",
    "typing",
    "knocking",
    "ringing bell",
)

# The AudioSet display name of each class's own sound.
CLASS_TAGS: dict[str, str] = {
    "bouncing ball": "Bouncing",
    "clapping": "Clapping",
    "hammering": "Hammer",
    "drumming": "Drum",
    "sawing": "Sawing",
    "typing": "Typing",
    "knocking": "Knock",
    "ringing bell": "Bell",
}

# Irrelevant soundtrack kinds -> AudioSet display name.
IRRELEVANT_TAGS: dict[str, str] = {
    "babble": "Speech",
    "music": "Music",
    "engine": "Engine",
    "wind": "Wind",
}

SILENCE_TAG = "Silence"

# The irrelevant soundtrack each class gets in a spurious-correlation training split
# (``SynthConfig.spurious_correlation``): two classes per sound, in a plausible setting
# (music over drumming and clapping, chatter over typing and knocking, ...).
SPURIOUS_SOUNDS: dict[str, str] = {
    "bouncing ball": "wind",
    "clapping": "music",
    "hammering": "engine",
    "drumming": "music",
    "sawing": "engine",
    "typing": "babble",
    "knocking": "babble",
    "ringing bell": "wind",
}

# Every tag SynthAV writes, in a fixed order: the label set of the demo audio tagger.
TAGGER_LABELS: tuple[str, ...] = (
    *(CLASS_TAGS[c] for c in ACTION_CLASSES),
    *IRRELEVANT_TAGS.values(),
    SILENCE_TAG,
)

AUDIO_KINDS: tuple[str, ...] = ("relevant", "irrelevant", "misleading", "silent")
