"""Hostile model folders: every bad config.json, weights file or savld.json is one clean error.

Each case is refused before the model is allocated (issue 17, items 5, 6 and 10).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from imd_core.errors import CheckpointError, ConfigError
from imd_core.model.checkpoint import load_model, read_config, save_model
from imd_core.model.config import ModelConfig
from imd_core.model.imd_model import IMDModel
from imd_core.model.savld import Savld

from .conftest import tiny_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hostile") / "m"
    save_model(IMDModel(tiny_config(), load_pretrained=False), folder)
    return folder


@pytest.fixture
def folder(saved, tmp_path):
    """A fresh copy of the saved tiny model to damage."""
    return shutil.copytree(saved, tmp_path / "m")


def _edit_config(folder, edit) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("section", "key", "value", "needle"),
    [
        ("model", "embed_dim", 1_000_000, "embed_dim"),
        ("model", "embed_dim", 16384, "embed_dim"),
        ("model", "num_frames", 1_000_000_000, "num_frames"),
        ("model", "image_size", 1_000_000, "image_size"),
        ("model", "depth", -1, "depth"),
        ("model", "num_heads", 0, "num_heads"),
        ("model", "mlp_ratio", 1e9, "mlp_ratio"),
        ("ast", "hidden_size", 1_000_000, "hidden_size"),
        ("ast", "hidden_size", 1e6, "hidden_size"),
        ("ast", "num_hidden_layers", -1, "num_hidden_layers"),
        ("top", "format_version", "abc", "format_version"),
    ],
)
def test_absurd_config_is_refused_before_any_allocation(folder, section, key, value, needle):
    def edit(data):
        target = {"model": data["model"], "ast": data["model"]["ast_config"], "top": data}[section]
        target[key] = value

    _edit_config(folder, edit)
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    message = str(info.value)
    assert needle in message and "\n" not in message


@pytest.mark.parametrize("name", ["config.json", "savld.json"])
def test_deeply_nested_json_is_one_line(folder, name):
    (folder / name).write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    assert "nested too deeply" in str(info.value)


def test_bounds_hold_in_the_config_itself():
    with pytest.raises(ConfigError, match="num_heads"):
        tiny_config(num_heads=0)
    with pytest.raises(ConfigError, match="audio_seconds"):
        tiny_config(audio_seconds=float("nan"))
    assert ModelConfig.for_size("large", labels=["a"]).depth == 24  # every preset is in range


def test_weights_that_do_not_fit_the_config_are_refused_from_the_header(folder, monkeypatch):
    # config.json claims a wider model than the weights hold: refused from the header,
    # before any tensor is read or the real model is built.
    _edit_config(folder, lambda d: d["model"].update(embed_dim=64))
    monkeypatch.setattr(
        "imd_core.model.checkpoint.read_state_dict", lambda *_: pytest.fail("weights were read")
    )
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_model(folder)


def test_missing_tensor_is_refused_from_the_header(folder):
    state = load_file(folder / "model.safetensors")
    del state[sorted(state)[0]]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="1 missing"):
        load_model(folder)


def test_int32_weights_are_refused(folder):
    state = load_file(folder / "model.safetensors")
    key = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 2)
    state[key] = state[key].to(torch.int32)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"{key} is stored as I32, not a float type"):
        load_model(folder)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(folder, bad):
    state = load_file(folder / "model.safetensors")
    key = next(k for k, v in state.items() if k.startswith("head") and v.is_floating_point())
    state[key].view(-1)[0] = bad
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"{key} holds NaN or infinite values"):
        load_model(folder)


def test_a_good_folder_still_loads(saved):
    assert read_config(saved).embed_dim == 48
    assert not load_model(saved).training


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(mapping=[1, 2]),
        lambda d: d.update(mapping={"guitar": {"label": "x"}}),
        lambda d: d.update(mapping={"guitar": [{"label": 3, "score": 1.0}]}),
        lambda d: d.update(mapping={"guitar": [{"label": "Guitar", "score": "high"}]}),
        lambda d: d.update(mapping={"guitar": [{"label": "Guitar", "score": float("nan")}]}),
        lambda d: d.update(video_labels="guitar"),
        lambda d: d.update(k=-1),
        lambda d: d.pop("encoder"),
    ],
)
def test_wrongly_typed_savld_entries_are_one_line(tmp_path, edit):
    data = Savld(
        "t", "mean", 1, ["guitar"], ["Guitar"], {"guitar": [{"label": "Guitar", "score": 1.0}]}
    ).to_dict()
    edit(data)
    path = tmp_path / "savld.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="not a SAVLD file") as info:
        Savld.load(path)
    assert "\n" not in str(info.value)
