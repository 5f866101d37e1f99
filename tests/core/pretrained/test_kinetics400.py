"""The kinetics400 model: the relevance rule, complete audio dropout, "no confident action",
the folder format and loading by name, end to end through `imd predict`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from imd_core.errors import CheckpointError
from imd_core.inference.inputs import WindowInput
from imd_core.inference.results import window_results
from imd_core.model.savld import Savld
from imd_core.pretrained.kinetics400 import PretrainedConfig, PretrainedIMD

LABELS = ("playing guitar", "chopping wood", "laughing")
AUDIO = ("Speech", "Music", "Guitar", "Chop", "Laughter", "Silence")
MAPPING = {
    "playing guitar": ["Guitar", "Music"],
    "chopping wood": ["Chop"],
    "laughing": ["Laughter", "Speech"],
}


def small_model(**overrides) -> PretrainedIMD:
    """Real I3D/YAMNet modules (random weights) with three classes; backbones stubbed per test."""
    savld = Savld(
        "test", "mean", 2, list(LABELS), list(AUDIO),
        {v: [{"label": a, "score": 1.0} for a in tags] for v, tags in MAPPING.items()},
    )  # fmt: skip
    cfg = PretrainedConfig(labels=LABELS, audio_labels=AUDIO, tag_top_k=3, **overrides)
    return PretrainedIMD(cfg, savld).eval()


def run(model, video_logits, tag_probs, present=True):
    """Forward with the backbones replaced by given outputs (the rule is what is tested)."""
    v = torch.tensor([video_logits], dtype=torch.float32)
    p = torch.tensor([tag_probs], dtype=torch.float32)
    model.video.forward_features = lambda x: torch.zeros(1, 1024)
    model.video.logits_from_features = lambda f: v
    model.tag_probs = lambda patches: p
    rgb = torch.zeros(1, 8, 3, 112, 112)
    out = model(rgb, None, fbank=torch.zeros(1, 1, 96, 64), audio_present=torch.tensor([present]))
    prediction = model.predict(rgb, None, torch.zeros(1, 1, 96, 64), torch.tensor([present]))
    window = WindowInput(np.zeros((8, 112, 112, 3), np.uint8), None, "clip.mp4", 0.0, 1.0)
    (clip,) = window_results(prediction, [window], model.labels, model.audio_labels)
    return out, clip


def test_relevant_audio_is_fused_with_its_savld_evidence():
    model = small_model()
    #                  Speech Music Guitar Chop Laughter Silence
    out, clip = run(model, [2.0, 1.9, 0.0], [0.05, 0.8, 0.6, 0.0, 0.0, 0.01])
    assert bool(out.audio_kept[0]) and not clip.audio.dropped
    assert set(clip.audio.heard) == {"Music", "Guitar"}  # Speech 0.05 is under min_tag_score
    assert clip.audio.savld_iou == pytest.approx(1.0)  # {Music, Guitar} vs SAVLD(playing guitar)
    expected = torch.tensor([2.0 + 2.0 * 0.8, 1.9, 0.0])  # evidence = best tag among the class's labels
    assert torch.allclose(out.logits[0], expected)


def test_irrelevant_audio_is_dropped_completely_scores_equal_video_alone():
    model = small_model()
    out, clip = run(model, [0.3, 2.0, 0.1], [0.9, 0.7, 0.0, 0.0, 0.0, 0.01])  # speech and music over chopping
    assert not bool(out.audio_kept[0]) and clip.audio.dropped
    assert torch.equal(out.logits, out.visual_logits)
    assert clip.label == "chopping wood" and clip.audio.savld_iou == 0.0


def test_tags_not_above_silence_do_not_count():
    model = small_model()
    _, clip = run(model, [0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.3, 0.0, 0.5])  # Chop 0.3 under Silence 0.5
    assert clip.audio.dropped and "Chop" not in clip.audio.heard
    model = small_model(relevance_tag_floor=None)
    _, clip = run(model, [0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.3, 0.0, 0.5])
    assert not clip.audio.dropped and "Chop" in clip.audio.heard


def test_absent_audio_is_always_dropped():
    model = small_model()
    out, clip = run(model, [2.0, 0.0, 0.0], [0.0, 0.9, 0.9, 0.0, 0.0, 0.0], present=False)
    assert clip.audio.dropped and not clip.audio.present
    assert torch.equal(out.logits, out.visual_logits)


def test_low_top_probability_is_no_confident_action():
    model = small_model(confidence_threshold=0.5)
    _, clip = run(model, [0.1, 0.0, 0.05], [0.0] * 6)
    assert clip.label == "playing guitar" and not clip.confident
    _, clip = run(model, [5.0, 0.0, 0.0], [0.0] * 6)
    assert clip.confident


@pytest.mark.parametrize(
    "field, value",
    [("num_frames", 10**9), ("image_size", 10**6), ("audio_seconds", 0.1), ("min_tag_score", float("nan")),
     ("relevance_tag_floor", "Thunder"), ("tag_top_k", 0), ("audio_weight", -1.0)],
)  # fmt: skip
def test_config_refuses_values_out_of_bounds(field, value):
    from imd_core.errors import ConfigError

    with pytest.raises(ConfigError):
        PretrainedConfig(labels=LABELS, audio_labels=AUDIO, **{field: value})


# ----------------------------------------------------------------------------- the built folder
@pytest.fixture(scope="module")
def k400_dir():
    from imd_core.resources import kinetics400_dir

    folder = kinetics400_dir()
    if not (folder / "model.safetensors").is_file():
        pytest.fail(f"{folder} is missing: run `bash scripts/setup.sh --dev` (it builds kinetics400)")
    return folder


def test_folder_is_self_contained_and_named(k400_dir):
    from imd_core.pretrained.folder import read_pretrained_config
    from imd_core.resources import resolve_model_dir

    assert resolve_model_dir("kinetics400") == k400_dir
    cfg = read_pretrained_config(k400_dir)
    assert len(cfg.labels) == 400 and cfg.labels[0] == "abseiling" and len(cfg.audio_labels) == 521
    data = json.loads((k400_dir / "config.json").read_text())
    assert data["sources"]["video"]["sha256"].startswith("2e8e4b79")
    assert data["sources"]["audio"]["sha256"].startswith("28948fa5")


def test_a_tampered_config_is_refused_before_anything_is_built(k400_dir, tmp_path):
    from imd_core.model.checkpoint import load_model

    bad = tmp_path / "k400"
    shutil.copytree(k400_dir, bad)
    data = json.loads((bad / "config.json").read_text())
    data["model"]["num_frames"] = 10**9
    (bad / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="num_frames"):
        load_model(bad)


def test_missing_model_name_says_how_to_build_it(tmp_path, monkeypatch):
    from imd_core.resources import resolve_model_dir

    monkeypatch.setenv("IMD_RESOURCES", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="imd pretrained build"):
        resolve_model_dir("kinetics400")


def test_imd_predict_by_name_gives_kinetics_labels_and_audioset_tags(k400_dir, tmp_path, capsys):
    from imd_core.cli.main import main
    from tests.media_factory import write_clip

    clip = write_clip(tmp_path / "tone.mp4", seconds=3.0, width=160, height=120, audio_hz=1000.0)
    code = main(
        ["predict", str(clip), "--model", "kinetics400", "--json", "--device", "cpu", "--threads", "2"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    row = json.loads(out.strip().splitlines()[0])
    labels = set(json.loads((k400_dir / "config.json").read_text())["model"]["labels"])
    assert all(t["label"] in labels for t in row["top"]) and len(row["top"]) == 5
    tags = [t["label"] for t in row["audio"]["tags"]]
    assert {"Sine wave", "Beep, bleep"} & set(tags[:3]), tags  # a pure 1 kHz tone, as YAMNet hears it
    assert row["audio"]["present"] is True and isinstance(row["audio"]["dropped"], bool)
    assert isinstance(row["confident"], bool)
    assert set(row["audio"]["heard"]) <= set(tags)


def test_model_decisions_match_the_rule_on_a_real_forward(k400_dir):
    """One real forward: when dropped the scores are the video's; the IoU is the rule's."""
    from imd_core.model.checkpoint import load_model

    model = load_model("kinetics400")
    torch.manual_seed(0)
    rgb = torch.rand(1, 16, 3, 160, 160) * 2 - 1
    from imd_core.pretrained.yamnet import log_mel_patches

    t = np.arange(int(16000 * model.config.audio_seconds)) / 16000
    patches = log_mel_patches(torch.from_numpy((0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)))
    out = model(rgb, None, fbank=patches.unsqueeze(0), audio_present=torch.tensor([True]))
    if not bool(out.audio_kept[0]):
        assert torch.equal(out.logits, out.visual_logits)
    probs = torch.sigmoid(out.audio_logits)
    heard = model.heard_tags(probs)
    matrix = model.savld_matrix[out.visual_logits.argmax(-1)]
    inter = (heard & matrix).sum().item()
    union = (heard | matrix).sum().item()
    assert out.relevance_iou[0].item() == pytest.approx(inter / union if union else 0.0)


def test_audio_policy_ablations_always_and_never():
    probs = [0.9, 0.7, 0.0, 0.0, 0.0, 0.01]  # speech and music over chopping: the rule drops them
    out, clip = run(small_model(audio_policy="always"), [0.3, 2.0, 0.1], probs)
    assert not clip.audio.dropped and out.logits[0, 0] > out.visual_logits[0, 0]  # music -> playing guitar
    out, clip = run(small_model(audio_policy="never"), [2.0, 1.9, 0.0], [0.05, 0.8, 0.6, 0.0, 0.0, 0.01])
    assert clip.audio.dropped and torch.equal(out.logits, out.visual_logits)


@pytest.mark.parametrize("policy", ["rule", "always", "never"])
def test_audio_policy_holds_for_a_fine_tuned_head(policy):
    """A fine-tuned (learned) head obeys the ablations too, instead of ignoring them."""
    torch.manual_seed(0)
    model = small_model(head="learned", audio_policy=policy)
    feats, audio = torch.randn(2, 1024), torch.randn(2, 1024)
    model.video.forward_features = lambda x: feats
    model.audio_features = lambda patches: (audio, torch.full((2, len(AUDIO)), 0.5))
    # a relevance net that keeps the first clip's audio and drops the second's
    model.head.relevance.register_forward_hook(lambda m, i, o: torch.tensor([[5.0], [-5.0]]))
    out = model(torch.zeros(2, 8, 3, 112, 112), fbank=torch.zeros(2, 1, 96, 64))
    expected = {"rule": [True, False], "always": [True, True], "never": [False, False]}[policy]
    assert out.audio_kept.tolist() == expected
    video_only = model.head.video_head(feats)
    for i, kept in enumerate(expected):
        assert torch.equal(out.logits[i], video_only[i]) != kept


def test_imd_eval_takes_kinetics400_by_name(k400_dir, tmp_path, capsys):
    from imd_core.cli.main import main
    from tests.media_factory import write_clip

    for i in range(2):
        write_clip(tmp_path / f"{i}.mp4", seconds=2.0, width=160, height=120, seed=i)
    (tmp_path / "m.csv").write_text("path,label\n0.mp4,playing guitar\n1.mp4,chopping wood\n")
    assert main(["eval", "--model", "kinetics400", "--data", str(tmp_path / "m.csv"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["clips"] == 2 and 0.0 <= result["top5"] <= 1.0
    assert result["relevance_accuracy"] is not None  # the rule's decision against the true-class target


def test_imd_eval_sees_the_frames_imd_predict_sees(k400_dir, tmp_path):
    """eval sampled a dense 1.28 s stretch of a whole clip while predict spread the frames
    over the clip, so the two named different actions for the same file (dancer: "bending
    back" against "dancing ballet"). A whole file is now decoded the same way by both;
    a manifest window keeps the model's dense sampling, as `imd predict --window` does."""
    from imd_core.data.dataset import ClipDataset
    from imd_core.data.manifest import load_dataset_index
    from imd_core.data.transforms import ClipPreprocessor
    from imd_core.inference.predictor import Predictor
    from tests.media_factory import write_clip

    clip = write_clip(tmp_path / "moving.mp4", seconds=6.0, fps=25, width=160, height=120, seed=3)
    (tmp_path / "m.csv").write_text(
        "path,label,start,end\nmoving.mp4,dancing ballet,,\nmoving.mp4,dancing ballet,1.0,4.0\n"
    )
    p = Predictor(k400_dir, device="cpu")
    index = load_dataset_index(tmp_path / "m.csv", labels=p.model.labels, split_ratios=(1.0, 0.0, 0.0))
    ds = ClipDataset(index, ClipPreprocessor.from_model_config(p.model.config), train=False)
    whole = p.preprocess(next(iter(p.open(clip))))
    assert torch.equal(ds.load(0)["rgb"], whole["rgb"])
    pre = p.preprocessor
    assert pre.sampling == "dense"  # the window: the model's own sampling, centred in it
    times = pre.sample_times(1.0, 4.0, train=False)
    assert times[-1] - times[0] < 1.5 and abs((times[0] + times[-1]) / 2 - 2.5) < 0.05
