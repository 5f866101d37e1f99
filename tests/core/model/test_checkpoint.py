import json
import os
import pickle

import pytest
import torch

from imd_core.errors import CheckpointError
from imd_core.model.ast_branch import ASTBranch
from imd_core.model.checkpoint import load_model, read_config, save_model
from imd_core.model.imd_model import IMDModel
from imd_core.model.savld import Savld

from .conftest import AUDIO_LABELS, tiny_config, tiny_inputs


def _trained_model(cfg=None):
    torch.manual_seed(0)
    cfg = cfg or tiny_config()
    savld = Savld(
        "test",
        "mean",
        1,
        list(cfg.labels),
        AUDIO_LABELS,
        {v: [{"label": a, "score": 0.9}] for v, a in zip(cfg.labels, ["Guitar", "Dog", "Wind"], strict=True)},
    )
    model = IMDModel(cfg, savld=savld)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = model(**tiny_inputs(cfg), labels=torch.tensor([0, 1]), relevance_target=torch.tensor([1.0, 0.0]))
    out.loss.backward()
    opt.step()  # weights differ from a fresh init (incl. the learned no-audio token)
    return model


def test_round_trip_is_bit_exact(tmp_path):
    model = _trained_model().eval()
    save_model(model, tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "savld.json",
    ]
    loaded = load_model(tmp_path / "m")
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config == model.config and loaded.labels == model.labels
    assert loaded.audio_labels == AUDIO_LABELS
    assert torch.equal(loaded.savld_matrix, model.savld_matrix)
    x = tiny_inputs(model.config)
    with torch.no_grad():
        assert torch.equal(model(**x).logits, loaded(**x).logits)
    # config.json: architecture, labels, versions; the AST config makes the folder self-contained
    data = json.loads((tmp_path / "m" / "config.json").read_text())
    assert data["labels"] == ["guitar", "dog", "wind"] and "torch" in data["versions"]
    assert data["model"]["ast_config"]["hidden_size"] == 32
    pre = json.loads((tmp_path / "m" / "preprocessor_config.json").read_text())
    assert pre["feature_extractor_type"] == "ASTFeatureExtractor" and pre["max_length"] == 256
    assert pre["num_frames"] == 4 and pre["image_size"] == 32
    # saving the loaded model again gives identical files
    save_model(loaded, tmp_path / "m2")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == (
        tmp_path / "m2" / "model.safetensors"
    ).read_bytes()


def test_round_trip_with_visual_head_and_agreement(tmp_path):
    model = _trained_model(tiny_config(visual_head_weight=0.5, relevance_agreement=True)).eval()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config and loaded.visual_head is not None
    x = tiny_inputs(model.config)
    with torch.no_grad():
        a, b = model(**x), loaded(**x)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.relevance_logit, b.relevance_logit)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    model = _trained_model()
    save_model(model, tmp_path / "m")
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    payload = pickle.dumps(exploit, protocol=4)
    (tmp_path / "m" / "model.safetensors").write_bytes(payload)
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(tmp_path / "m")
    # a torch.save zip in disguise is refused too
    torch.save({"x": exploit}, tmp_path / "m" / "model.safetensors")
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(tmp_path / "m")
    # a folder that only has a pickle
    os.remove(tmp_path / "m" / "model.safetensors")
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(payload)
    with pytest.raises(CheckpointError, match="never loads pickles"):
        load_model(tmp_path / "m")
    assert not marker.exists()


def test_architecture_mismatch_names_both_configs(tmp_path):
    save_model(_trained_model(), tmp_path / "m")
    other = tiny_config(embed_dim=64, depth=2)
    with pytest.raises(
        CheckpointError,
        match=r"model is size=tiny \(64x2\+1st\), checkpoint is size=tiny \(48x1\+1st\).*embed_dim",
    ):
        load_model(tmp_path / "m", expect=other)
    # weights that do not fit config.json are refused with both descriptions
    data = json.loads((tmp_path / "m" / "config.json").read_text())
    data["model"]["depth"] = 2
    (tmp_path / "m" / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="missing.*config.json says size=tiny, 48 wide, depth 2"):
        load_model(tmp_path / "m")


def test_bad_folders(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        read_config(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text('{"format": "other"}')
    with pytest.raises(CheckpointError, match="not an IMD Studio model"):
        read_config(tmp_path / "empty")


def test_ast_from_pretrained_folder(ast_folder, tmp_path):
    branch = ASTBranch.from_pretrained(str(ast_folder))
    assert branch.labels == AUDIO_LABELS and not branch.trainable
    assert not branch.model.training
    fb = torch.randn(2, 256, 128)
    emb, logits = branch(fb)
    assert emb.shape == (2, 32) and logits.shape == (2, 8)
    # matches the plain transformers model's logits
    with torch.no_grad():
        ref = branch.model(input_values=fb).logits
    assert torch.allclose(logits, ref, atol=1e-5)
    _, scores = branch.tag(fb)
    assert torch.allclose(scores, torch.sigmoid(ref), atol=1e-6)
    # the IMD model loads it from the folder (ast_source) and saves it self-contained
    cfg = tiny_config(ast_source=str(ast_folder), ast_config=None)
    model = IMDModel(cfg)
    assert torch.equal(model.ast.model.classifier.dense.weight, branch.model.classifier.dense.weight)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert torch.equal(loaded.ast.model.classifier.dense.weight, branch.model.classifier.dense.weight)
    with pytest.raises(CheckpointError, match="does not exist"):
        ASTBranch.from_pretrained(str(tmp_path / "missing_ast"))


def test_hub_ids_fail_cleanly_offline(tmp_path, monkeypatch):
    """The real hub paths are used; offline they end in one clear CheckpointError."""
    from imd_core.model.video_transformer import VisualStream
    from imd_core.model.vit_weights import load_vit_weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="cannot load the AST tagger from 'no-such-org/no-such-ast'"):
        ASTBranch.from_pretrained("no-such-org/no-such-ast")
    stream = VisualStream(
        num_frames=2,
        image_size=32,
        patch_size=16,
        embed_dim=32,
        depth=1,
        num_heads=2,
        mlp_ratio=4.0,
        st_depth=0,
        st_dim=16,
        st_heads=2,
    )
    with pytest.raises(CheckpointError, match="cannot load timm ViT 'no_such_vit_model'"):
        load_vit_weights(stream, "no_such_vit_model")
    with pytest.raises(CheckpointError, match="cannot load timm ViT 'hf-hub:timm/no_such_vit'"):
        load_vit_weights(stream, "hf-hub:timm/no_such_vit")


def test_a_folder_naming_a_hub_id_instead_of_its_ast_is_refused_without_loading(tmp_path, monkeypatch):
    """ast_source with ast_config null made loading call from_pretrained on any path or hub id."""
    model = _trained_model().eval()
    save_model(model, tmp_path / "m")
    data = json.loads((tmp_path / "m" / "config.json").read_text())
    data["model"]["ast_source"] = "someone/remote-ast"
    data["model"]["ast_config"] = None
    (tmp_path / "m" / "config.json").write_text(json.dumps(data))
    calls = []
    monkeypatch.setattr(ASTBranch, "from_pretrained", classmethod(lambda cls, *a, **k: calls.append(a)))
    with pytest.raises(CheckpointError, match="self-contained"):
        load_model(tmp_path / "m")
    assert calls == []  # nothing was fetched or loaded from elsewhere
