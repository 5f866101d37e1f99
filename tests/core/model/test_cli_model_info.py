import json

import pytest
import torch

from imd_core.cli.main import main
from imd_core.model.checkpoint import save_model
from imd_core.model.flops import build_for_size, count_flops, model_info
from imd_core.model.imd_model import IMDModel

from .conftest import tiny_config


def test_model_info_cli_size_and_folder(tmp_path, capsys):
    assert main(["model-info", "--size", "base", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == {
        "size",
        "params_per_stream",
        "params_total",
        "gflops_per_clip",
        "frames",
        "image_size",
        "audio_seconds",
    }
    assert info["size"] == "base" and abs(info["params_per_stream"] / 88.6e6 - 1) < 0.1
    assert info["params_total"] > 2 * info["params_per_stream"] + 80e6  # + the AudioSet AST
    # ViT-B/16 is ~35 GFLOPs per 224 px frame: 2 streams x 8 frames dominate
    assert 2 * 8 * 35 < info["gflops_per_clip"] < 2 * 8 * 35 + 400
    model = IMDModel(tiny_config())
    save_model(model, tmp_path / "m")
    assert main(["model-info", "--model", str(tmp_path / "m"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == model_info(model)


def test_flops_scale_with_frames_and_count_on_cpu_and_meta():
    model = IMDModel(tiny_config())
    cpu = count_flops(model)
    meta = count_flops(
        build_for_size(
            "tiny",
            num_classes=3,
            **{k: v for k, v in model.config.to_dict().items() if k not in ("size", "labels")},
        )
    )
    assert cpu == meta > 0
    more = count_flops(IMDModel(tiny_config(num_frames=8)))
    assert more > 1.3 * cpu  # the video part doubles; the AST part is constant
    assert model.training  # restored
    tiny = build_for_size("tiny")
    assert tiny.param_counts()["total"] * 4 < 30e6  # the demo checkpoint stays under 30 MB
    assert torch.device("meta") == next(tiny.parameters()).device


def test_model_info_defaults_to_the_demo_like_predict_and_takes_names(capsys):
    from imd_core.cli.main import main
    from imd_core.resources import kinetics400_installed

    assert main(["model-info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == 64  # the demo model
    if not kinetics400_installed():
        pytest.fail("kinetics400 is not built: run bash scripts/setup.sh --dev")
    assert main(["model-info", "--model", "kinetics400", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params_per_stream"] == 12_689_984  # I3D RGB, as published (12.7 M)
    assert 40 < info["gflops_per_clip"] < 80  # I3D's convs are counted (oneDNN off while counting)
