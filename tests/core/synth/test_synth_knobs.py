"""SynthAV knobs of issue 18: spurious soundtracks in the training split, the misleading share."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from imd_core.errors import ConfigError
from imd_core.synth import ACTION_CLASSES, IRRELEVANT_TAGS, SynthConfig, generate
from imd_core.synth.classes import SPURIOUS_SOUNDS
from imd_core.synth.generate import kind_weights, sample_clip_spec


def _specs(cfg: SynthConfig):
    return [sample_clip_spec(cfg, i) for i in range(cfg.clips)]


def _spurious_share(specs, split: str) -> tuple[float, int]:
    """Share of a split's irrelevant clips whose sound is their class's spurious sound."""
    irr = [s for s in specs if s.split in split.split("+") and s.audio_kind == "irrelevant"]
    return sum(s.source == SPURIOUS_SOUNDS[s.label] for s in irr) / len(irr), len(irr)


def test_spurious_sounds_cover_every_class_and_sound():
    assert set(SPURIOUS_SOUNDS) == set(ACTION_CLASSES)
    assert Counter(SPURIOUS_SOUNDS.values()) == dict.fromkeys(IRRELEVANT_TAGS, 2)


@pytest.mark.parametrize("strength", [0.0, 0.6, 1.0])
def test_spurious_correlation_only_in_train_split(strength):
    # P = 0.1: most clips irrelevant; 600 manifest rows drawn without rendering.
    base = SynthConfig(clips=600, relevance=0.1, seed=3)
    specs = _specs(base.replace(spurious_correlation=strength))
    share, n = _spurious_share(specs, "train")
    assert n > 200
    expected = strength + (1 - strength) / len(IRRELEVANT_TAGS)
    assert abs(share - expected) < 0.08, (share, expected)
    if strength == 1.0:
        assert share == 1.0  # every training irrelevant clip: its class's sound
    # val/test: independent of the class, and exactly what S = 0 draws
    held = [s for s in specs if s.split != "train"]
    assert held == [s for s in _specs(base) if s.split != "train"]
    held_share, held_n = _spurious_share(specs, "val+test")
    assert held_n > 30 and held_share < 0.45


def test_spurious_correlation_changes_only_the_sound_of_train_irrelevant_clips():
    base = SynthConfig(clips=400, relevance=0.3, seed=8)
    a, b = _specs(base), _specs(base.replace(spurious_correlation=1.0))
    changed = 0
    for x, y in zip(a, b, strict=True):
        assert (x.label, x.split, x.audio_kind, x.seconds, x.ambiguity, x.background_sound) == (
            y.label,
            y.split,
            y.audio_kind,
            y.seconds,
            y.ambiguity,
            y.background_sound,
        )
        if x.source != y.source:
            assert x.split == "train" and x.audio_kind == "irrelevant"
            assert y.source == SPURIOUS_SOUNDS[y.label] and y.tags == [IRRELEVANT_TAGS[y.source]]
            changed += 1
    assert changed > 50


@pytest.mark.parametrize("share", [0.0, 0.25, 0.6, 1.0])
def test_misleading_share_sets_the_non_relevant_kinds(share):
    specs = _specs(SynthConfig(clips=800, relevance=0.0, seed=2, misleading_share=share))
    kinds = Counter(s.audio_kind for s in specs)
    assert abs(kinds["misleading"] / len(specs) - share) < 0.06
    assert abs(kinds["irrelevant"] / len(specs) - 0.8 * (1 - share)) < 0.06
    if share == 1.0:
        assert set(kinds) == {"misleading"}
    if share == 0.0:
        assert "misleading" not in kinds
    for s in specs:
        if s.audio_kind == "misleading":
            assert s.source in ACTION_CLASSES and s.source != s.label


def test_defaults_are_the_old_weights_and_stay_out_of_synth_config(tmp_path):
    assert kind_weights(0.25) == {"irrelevant": 0.6, "misleading": 0.25, "silent": 0.15}
    assert list(kind_weights(0.25).values()) == [0.6, 0.25, 0.15]  # the exact floats of before
    cfg = SynthConfig(clips=1, seed=4, size=32)
    generate(tmp_path / "a", cfg, workers=1)
    generate(tmp_path / "b", cfg.replace(spurious_correlation=0.5, misleading_share=0.4), workers=1)
    old = json.loads((tmp_path / "a/synth_config.json").read_text())["config"]
    new = json.loads((tmp_path / "b/synth_config.json").read_text())["config"]
    assert "spurious_correlation" not in old and "misleading_share" not in old
    assert SynthConfig.from_dict(old) == cfg
    assert (new["spurious_correlation"], new["misleading_share"]) == (0.5, 0.4)
    assert SynthConfig.from_dict(new) == cfg.replace(spurious_correlation=0.5, misleading_share=0.4)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("spurious_correlation", 1.5),
        ("spurious_correlation", -0.1),
        ("misleading_share", 2.0),
        ("misleading_share", -1.0),
    ],
)
def test_bad_knob_is_a_one_line_config_error(key, value):
    with pytest.raises(ConfigError, match=key.replace("_", "-")) as info:
        SynthConfig(clips=3, **{key: value})
    assert "\n" not in str(info.value)


def test_cli_passes_the_knobs(tmp_path):
    from imd_core.cli.main import main

    out = tmp_path / "s"
    assert (
        main(
            [
                "synth",
                str(out),
                "--clips",
                "2",
                "--size",
                "32",
                "--workers",
                "1",
                "--spurious-correlation",
                "0.7",
                "--misleading-share",
                "0.5",
            ]
        )
        == 0
    )
    config = json.loads((out / "synth_config.json").read_text())["config"]
    assert (config["spurious_correlation"], config["misleading_share"]) == (0.7, 0.5)
