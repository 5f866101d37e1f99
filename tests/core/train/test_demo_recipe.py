"""``imd_core/configs/demo.json`` is the recipe that built ``resources/demo_model``.

The model ``imd train --config demo`` builds (``setup.build_model``: the recipe's
``model`` section, the data's classes, the tagger it names) must have exactly the
shipped folder's configuration, tensors and tagger weights, and its SAVLD must be the
shipped one, so the recipe and the shipped model cannot drift apart again. The data
gives the classes; here they are the shipped model's, in its order.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from imd_core.model.checkpoint import load_model, read_config
from imd_core.model.savld import DEFAULT_K
from imd_core.resources import demo_model_dir, demo_tagger_dir, resolve_tagger_source
from imd_core.train.config import InitConfig, load_train_config
from imd_core.train.setup import build_model, build_savld


@pytest.fixture(scope="module")
def shipped():
    return load_model(demo_model_dir())


@pytest.fixture(scope="module")
def built(shipped):
    torch.manual_seed(0)
    return build_model(load_train_config("demo"), list(shipped.config.labels))


def test_demo_recipe_builds_the_shipped_configuration(shipped, built):
    rec, ship = built.config.to_dict(), read_config(demo_model_dir()).to_dict()
    assert {k: (rec[k], ship[k]) for k in rec if rec[k] != ship[k] and k != "ast_config"} == {}
    assert built.config.architecture() == shipped.config.architecture()
    # the tagger: its architecture and labels (the folder also records transformers' bookkeeping)
    keys = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "patch_size",
        "frequency_stride",
        "time_stride",
        "max_length",
        "num_mel_bins",
        "id2label",
    )
    assert {k: rec["ast_config"][k] for k in keys} == {k: ship["ast_config"][k] for k in keys}
    assert built.audio_labels == shipped.audio_labels


def test_demo_recipe_builds_the_shipped_tensors_and_tagger(shipped, built):
    with safe_open(str(demo_model_dir() / "model.safetensors"), "pt") as f:
        header = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    assert {k: tuple(v.shape) for k, v in built.state_dict().items()} == header
    # the frozen tagger the recipe names is, weight for weight, the shipped model's AST
    mine, theirs = built.ast.state_dict(), shipped.ast.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert resolve_tagger_source("demo_tagger") == str(demo_tagger_dir())


def test_demo_recipe_builds_the_shipped_savld(built):
    cfg = load_train_config("demo")
    savld = build_savld(cfg, built, list(built.config.labels))
    shipped = json.loads((demo_model_dir() / "savld.json").read_text(encoding="utf-8"))
    assert (savld.k, savld.encoder, savld.pooling) == (shipped["k"], shipped["encoder"], shipped["pooling"])
    assert savld.mapping == shipped["mapping"]
    assert InitConfig().savld_k == DEFAULT_K  # without savld_k, imd train builds what imd savld build does


def test_demo_recipe_fine_tunes_the_demo_model(shipped):
    """Recipe and folder agree on every architecture and backbone field, so continuing
    the demo model with its own recipe (the app's default start) is accepted."""
    cfg = load_train_config("demo", ["init.from_model=demo"])
    model = build_model(cfg, list(shipped.config.labels))
    assert model.config.architecture() == shipped.config.architecture()
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), shipped.state_dict().values(), strict=True)
    )
