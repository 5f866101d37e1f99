"""The backbone options: I3D as the visual encoder, YAMNet as the audio tagger.

Random-weight I3D + YAMNet models built here (8 frames of 32 px, one 0.96 s YAMNet
patch); the real weights only where the ``kinetics400`` folder is installed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imd_core.data.transforms import ClipPreprocessor
from imd_core.errors import ConfigError
from imd_core.model.checkpoint import load_model, save_model
from imd_core.model.config import ModelConfig
from imd_core.model.imd_model import IMDModel
from imd_core.model.savld import Savld
from imd_core.model.yamnet_branch import yamnet_labels
from imd_core.pretrained.yamnet import log_mel_patches
from imd_core.resources import kinetics400_dir, kinetics400_installed

from .conftest import tiny_config

LABELS = ["playing guitar", "dog barking", "wind"]
# YAMNet (AudioSet) names for each class, for hand-written SAVLDs
TABLE = {"playing guitar": ["Guitar", "Music"], "dog barking": ["Dog", "Bark"], "wind": ["Wind"]}
needs_kinetics400 = pytest.mark.skipif(not kinetics400_installed(), reason="kinetics400 is not built here")


def i3d_config(**overrides) -> ModelConfig:
    data = dict(size="tiny", labels=LABELS, visual_encoder="i3d", audio_tagger="yamnet", num_frames=8,
                image_size=32, audio_seconds=0.96, relevance_hidden=16, fusion_dim=32, tag_top_k=3)  # fmt: skip
    return ModelConfig.from_dict({**data, **overrides})


def inputs(cfg: ModelConfig, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "rgb": torch.randn(batch, cfg.num_frames, 3, cfg.image_size, cfg.image_size, generator=g),
        "motion": torch.empty(batch, 0),  # what the preprocessor makes for I3D
        "fbank": torch.randn(batch, 1, 96, 64, generator=g) - 4.0,  # one log-mel patch
    }


def hand_savld(labels=LABELS) -> Savld:
    mapping = {v: [{"label": a, "score": 1.0} for a in TABLE[v]] for v in labels}
    return Savld("test", "mean", 2, list(labels), yamnet_labels(), mapping)


def test_defaults_follow_the_backbones():
    cfg = i3d_config()
    assert (cfg.motion, cfg.num_mel_bins, cfg.audio_frontend) == ("none", 64, "yamnet")
    assert cfg.video_trainable is False and cfg.ast_trainable is False  # frozen backbones
    assert cfg.ast_source is None and cfg.ast_config is None
    vit = ModelConfig.from_dict({"size": "base", "labels": ["a"]})  # the paper's default is untouched
    assert (vit.visual_encoder, vit.audio_tagger, vit.motion, vit.num_mel_bins) == (
        "two_stream_vit",
        "ast",
        "diff",
        128,
    )
    assert vit.video_trainable is True and vit.audio_frontend == "ast" and vit.ast_source is not None
    # mixing them works too: I3D with the AST, the ViT with YAMNet
    assert tiny_config(visual_encoder="i3d").motion == "none"
    assert ModelConfig.from_dict({"size": "tiny", "audio_tagger": "yamnet"}).num_mel_bins == 64


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"motion": "diff"}, "RGB only"),
        ({"visual_encoder": "two_stream_vit", "motion": "none"}, "needs a motion input"),
        ({"visual_encoder": "x3d"}, "two_stream_vit"),
        ({"audio_tagger": "beats"}, "yamnet"),
        ({"ast_source": "MIT/ast-finetuned-audioset-10-10-0.4593"}, "remove them"),
        ({"num_mel_bins": 128}, "64 mel bins"),
        ({"video_init": "vit_base_patch16_224"}, "init.backbones_from=kinetics400"),
        ({"audio_tagger": "ast", "tagger_labels": ["Speech"]}, "tagger_labels"),
    ],
)
def test_config_errors_are_one_line(overrides, words):
    with pytest.raises(ConfigError) as err:
        i3d_config(**overrides)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_wrong_tagger_labels_are_refused():
    with pytest.raises(ConfigError, match="521 outputs") as err:
        IMDModel(i3d_config(tagger_labels=["Speech", "Music"]))
    assert "\n" not in str(err.value)


def test_forward_backward_with_frozen_backbones():
    torch.manual_seed(0)
    model = IMDModel(i3d_config(), savld=hand_savld()).train()
    assert not model.video.training and not model.ast.net.training  # frozen: batch norm statistics kept
    assert model.config.tagger_labels == tuple(yamnet_labels())  # filled, so a saved folder holds them
    assert [f.in_features for f in model.fusion.proj] == [1024, 1024]  # one I3D embedding + YAMNet's
    assert model.relevance.fc1.in_features == 1024 + 1024
    out = model(**inputs(model.config, batch=3), labels=torch.tensor([0, 1, 2]))
    assert out.logits.shape == (3, 3) and out.audio_logits.shape == (3, 521)
    assert out.audio_embedding.shape == (3, 1024) and out.relevance_iou.shape == (3,)
    assert set(out.losses) == {"ce", "relevance_bce"}
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["relevance.fc2.weight"].abs().sum() > 0 and grads["head.weight"].abs().sum() > 0
    assert all(not p.requires_grad for p in (*model.video.parameters(), *model.ast.parameters()))
    assert model.param_counts()["per_stream"] == sum(p.numel() for p in model.video.parameters())


def test_trainable_backbones_get_gradients():
    model = IMDModel(i3d_config(video_trainable=True, ast_trainable=True)).train()
    assert model.video.training and model.ast.net.training
    out = model(
        **inputs(model.config), labels=torch.tensor([0, 1]), relevance_target=torch.tensor([1.0, 0.0])
    )
    out.loss.backward()
    assert model.video.net.Conv3d_1a_7x7.conv.weight.grad.abs().sum() > 0
    assert model.ast.net.stem.weight.grad.abs().sum() > 0


def video_only_logits(model: IMDModel, rgb: torch.Tensor) -> torch.Tensor:
    """The model's logits with the audio dropped, built from its parts: I3D -> no-audio token -> fusion -> head."""
    (e,) = model.video(rgb)
    token = model.no_audio(torch.zeros(e.shape[0], 1024), torch.zeros(e.shape[0]))
    fused, _ = model.fusion([e, token])
    return model.head(fused)


def test_relevance_gate_and_dropped_audio_is_the_video_only_path():
    torch.manual_seed(0)
    model = IMDModel(i3d_config()).eval()
    with torch.no_grad():
        model.no_audio.token.normal_()  # a learned token, not zeros
        x = inputs(model.config)
        model.relevance.fc2.bias.fill_(20.0)  # "relevant" for everything
        kept = model(**x, audio_present=torch.tensor([True, False]))
        assert kept.audio_kept.tolist() == [True, False]  # no audio track: always dropped
        model.relevance.fc2.bias.fill_(-20.0)  # "irrelevant" for everything: dropped whole
        dropped = model(**x)
        other = model(x["rgb"], x["motion"], fbank=torch.randn_like(x["fbank"]))
        assert dropped.audio_kept.tolist() == [False, False]
        torch.testing.assert_close(dropped.logits, other.logits, atol=1e-6, rtol=0)
        torch.testing.assert_close(dropped.logits, video_only_logits(model, x["rgb"]), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(kept.logits[0], dropped.logits[0])  # kept audio does change the scores
    # training: the teacher (SAVLD IoU > tau) decides, as with the ViT
    model.train()
    out = model(**x, labels=torch.tensor([0, 1]), relevance_target=torch.tensor([0.5, 0.0]))
    assert out.audio_kept.tolist() == [True, False]


def test_preprocessor_makes_what_i3d_and_yamnet_take():
    model = IMDModel(i3d_config(), savld=hand_savld()).eval()
    pre = ClipPreprocessor.from_model_config(model.config)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (8, 40, 48, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(24000)).astype(np.float32)  # 1.5 s: the centred 0.96 s is used
    item = pre(frames, audio, train=False)
    assert item["rgb"].shape == (8, 3, 32, 32) and item["motion"].numel() == 0
    window = torch.from_numpy(pre.audio_window(audio).copy())
    torch.testing.assert_close(item["fbank"], log_mel_patches(window))  # the YAMNet frontend, reused
    assert item["fbank"].shape == (1, 96, 64)
    silent = pre(frames, None, train=True, rng=rng)
    assert silent["fbank"].shape == (1, 96, 64) and not bool(silent["audio_present"])
    views = ClipPreprocessor.from_model_config(model.config, test_crops=3)(
        frames, audio, False, multi_view=True
    )
    assert views["rgb"].shape == (3, 8, 3, 32, 32)
    batch = {k: torch.stack([item[k], item[k]]) for k in ("rgb", "motion", "fbank")}
    p = model.predict(batch["rgb"], batch["motion"], batch["fbank"])
    assert p.probs.shape == (2, 3) and p.tag_probs.shape == p.heard.shape == (2, len(yamnet_labels()))
    multi = model(views["rgb"][None], views["motion"][None], fbank=item["fbank"][None])
    assert multi.logits.shape == (1, 3)


def test_save_load_round_trip_is_exact_and_self_contained(tmp_path):
    torch.manual_seed(0)
    model = IMDModel(i3d_config(), savld=hand_savld()).eval()
    folder = save_model(model, tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model.safetensors", "preprocessor_config.json", "savld.json"]  # fmt: skip
    saved = json.loads((folder / "config.json").read_text())
    assert saved["model"]["visual_encoder"] == "i3d" and saved["model"]["ast_config"] is None
    assert saved["audio_labels"] == yamnet_labels() == saved["model"]["tagger_labels"]
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    assert pre["audio_frontend"] == "yamnet" and pre["motion"] == "none"
    loaded = load_model(folder, expect=model.config)
    assert loaded.config == model.config and loaded.has_savld
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    x = inputs(model.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**x).logits, model(**x).logits, atol=0, rtol=0)
    # a two-stream ViT checkpoint is not an I3D one: the mismatch names the field
    from imd_core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="visual_encoder: model 'two_stream_vit' vs checkpoint 'i3d'"):
        load_model(folder, expect=i3d_config(visual_encoder="two_stream_vit", motion="diff"))


def test_savld_is_built_against_yamnet_labels(bert_folder):
    model = IMDModel(i3d_config(relevance_tag_floor="Silence"))
    savld = Savld.build(LABELS, model.audio_labels, encoder=str(bert_folder), k=5)
    model.set_savld(savld)
    assert model.savld_matrix.shape == (3, 521) and int(model.savld_matrix.sum()) == 15
    assert all(e["label"] in yamnet_labels() for v in LABELS for e in savld.mapping[v])
    assert model.tag_floor_index == yamnet_labels().index("Silence")
    p = model.predict(**{k: v for k, v in inputs(model.config).items()})
    assert p.savld_iou is not None and 0.0 <= float(p.savld_iou[0]) <= 1.0


@needs_kinetics400
def test_backbones_from_kinetics400_are_its_real_weights():
    from imd_core.model.backbones import load_pretrained_backbones
    from imd_core.pretrained.folder import load_pretrained

    model = IMDModel(i3d_config(image_size=64)).eval()
    assert load_pretrained_backbones(model, "kinetics400") == ["visual_encoder", "audio_tagger"]
    ref = load_pretrained(kinetics400_dir())
    x = inputs(model.config)
    with torch.no_grad():
        torch.testing.assert_close(
            model.video(x["rgb"])[0], ref.video.forward_features(x["rgb"].transpose(1, 2))
        )
        emb, logits = model.ast(x["fbank"])
        ref_emb, ref_probs = ref.audio_features(x["fbank"])
        torch.testing.assert_close(emb, ref_emb)
        torch.testing.assert_close(torch.sigmoid(logits), ref_probs, atol=1e-6, rtol=1e-5)
    # I3D with the AST: only the video is filled; neither: refused in one line
    mixed = IMDModel(tiny_config(visual_encoder="i3d"))
    assert load_pretrained_backbones(mixed, "kinetics400") == ["visual_encoder"]
    with pytest.raises(ConfigError, match="uses neither"):
        load_pretrained_backbones(IMDModel(tiny_config()), "kinetics400")


def test_backbones_from_needs_a_pretrained_folder(tmp_path):
    from imd_core.model.backbones import load_pretrained_backbones

    model = IMDModel(i3d_config())
    with pytest.raises(ConfigError, match="does not exist"):
        load_pretrained_backbones(model, tmp_path / "missing")
    save_model(model, tmp_path / "imd")
    with pytest.raises(ConfigError, match="not a pretrained"):
        load_pretrained_backbones(model, tmp_path / "imd")


def test_imd_train_with_i3d_and_yamnet(tmp_path, bert_folder):
    """One short ``imd train`` epoch: I3D + YAMNet (the real ones when kinetics400 is built),
    the SAVLD built over YAMNet's 521 labels by our builder, a loadable best/ folder."""
    from imd_core.cli.main import main
    from tests.core.train.conftest import make_dataset

    data = make_dataset(tmp_path / "clips", per_class=4)
    init = {"text_encoder": str(bert_folder)}
    if kinetics400_installed():
        init["backbones_from"] = "kinetics400"
    recipe = {
        "version": 1, "name": "i3d-yamnet", "init": init,
        "model": {"size": "tiny", "visual_encoder": "i3d", "audio_tagger": "yamnet", "num_frames": 8, "image_size": 32,
                  "audio_seconds": 0.96, "relevance_hidden": 16, "fusion_dim": 32, "tag_top_k": 3,
                  "relevance_tag_floor": "Silence"},
        "optim": {"name": "adamw", "lr": 0.003}, "schedule": {"name": "constant", "warmup_steps": 0},
        "epochs": 1, "batch_size": 4, "seed": 0, "early_stopping_patience": 0, "num_workers": 0,
        "val_fraction": 0.25, "data": {"probe_timeout": 0},
    }  # fmt: skip
    (tmp_path / "recipe.json").write_text(json.dumps(recipe), encoding="utf-8")
    run = tmp_path / "run"
    assert (
        main(["train", "--config", str(tmp_path / "recipe.json"), "--data", str(data), "--out", str(run)])
        == 0
    )
    savld = Savld.load(run / "savld.json")
    assert savld.audio_labels == yamnet_labels() and set(savld.mapping) == {"clapping", "drumming", "waving"}
    model = load_model(run / "best")
    assert (model.config.visual_encoder, model.config.audio_tagger, model.config.video_trainable) == (
        "i3d",
        "yamnet",
        False,
    )
    if kinetics400_installed():  # frozen backbones: still exactly the real weights after training
        from imd_core.pretrained.folder import load_pretrained

        ref = load_pretrained(kinetics400_dir())
        assert torch.equal(model.video.net.Mixed_5c.Branch_0.Conv3d_0a_1x1.conv.weight,
                           ref.video.Mixed_5c.Branch_0.Conv3d_0a_1x1.conv.weight)  # fmt: skip
        assert torch.equal(model.ast.net.classifier.weight, ref.tagger.classifier.weight)
