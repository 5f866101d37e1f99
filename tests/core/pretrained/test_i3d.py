"""The I3D port against the original flax model (scripts/golden_i3d.py writes the outputs).

Inputs are regenerated here by the golden script's own ``golden_inputs``: 16x224 noise,
a 32x224 drifting pattern (224 px: the original's own logits), 8x176 noise and 12x160
pattern (the original's trunk to ``Mixed_5c``, pooled as the port pools, then its logits
conv; these sizes pad asymmetrically where 224 does not). Tolerances, and what the port
measured (float32, 2 threads, oneDNN convs):
- logits: |port - flax| <= 1e-4 + 1e-5 |flax| (measured 2.1e-5, 1.9e-5, 5.1e-5 and
  6.1e-5 for logits up to 7.2, 23.2, 18.1 and 39.2: at most 2.8e-6 of the largest;
  the worst element uses a third of its bound). This is float32 rounding on both
  sides: the port run in float64 is 1.3e-5 to 4.7e-5 from the float32 port and
  1.1e-5 to 2.8e-5 from flax. Same top-5, in the same order.
- features: |port - flax| <= 2e-5 (measured 1.8e-6 to 5.5e-6, values up to 3.5).
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imd_core.errors import CheckpointError
from imd_core.pretrained.archives import I3D_ARCHIVE, archives_dir
from imd_core.pretrained.i3d import (
    I3D,
    _conv3d,
    convert_i3d,
    i3d_state_dict_from_variables,
    load_numpy_pickle,
    tf_same_padding,
)

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "data" / "golden" / "i3d_golden.npz"


def _golden_inputs() -> dict[str, np.ndarray]:
    """The exact inputs the golden script fed flax, ``[1, T, H, W, 3]`` (not stored)."""
    spec = importlib.util.spec_from_file_location("golden_i3d", ROOT / "scripts" / "golden_i3d.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # numpy only at import; jax only in its main()
    return module.golden_inputs()


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    if not GOLDEN.is_file():
        pytest.fail(f"{GOLDEN} is missing; regenerate it with /tmp/i3d_ref/bin/python scripts/golden_i3d.py")
    with np.load(GOLDEN) as data:
        return dict(data)


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    path = archives_dir() / I3D_ARCHIVE.filename
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `bash scripts/setup.sh` (it downloads the weight archives)")
    return convert_i3d()


@pytest.fixture(scope="module")
def model(state_dict) -> I3D:
    net = I3D()
    net.load_state_dict(state_dict, strict=True)
    return net.eval()


def test_port_matches_flax(model, golden):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    for name, video in _golden_inputs().items():
        x = torch.from_numpy(video).permute(0, 4, 1, 2, 3)  # flax [B, T, H, W, 3] -> [B, 3, T, H, W]
        with torch.inference_mode():
            features = model.forward_features(x)
            logits = model.logits_from_features(features)  # what forward(x) returns
        np.testing.assert_allclose(
            features.numpy(), golden[f"{name}_features"], rtol=0, atol=2e-5, err_msg=name
        )
        np.testing.assert_allclose(
            logits.numpy(), golden[f"{name}_logits"], rtol=1e-5, atol=1e-4, err_msg=name
        )
        top5 = np.argsort(-golden[f"{name}_logits"][0])[:5].tolist()
        assert logits[0].topk(5).indices.tolist() == top5, name


def test_converter_fills_every_parameter(state_dict):
    expected = I3D().state_dict()
    assert set(state_dict) == set(expected)
    for key, value in state_dict.items():
        assert value.shape == expected[key].shape, key
        assert value.dtype == torch.float32 and value.is_contiguous(), key
        assert torch.isfinite(value).all(), key
    # Nothing left at its initial value: every conv and shift came from the checkpoint.
    assert all(state_dict[k].abs().sum() > 0 for k in state_dict if k.endswith(("weight", "bias")))
    assert all(
        not torch.equal(state_dict[k], torch.ones_like(state_dict[k])) for k in state_dict if "var" in k
    )
    assert sum(v.numel() for k, v in state_dict.items() if "running" not in k) == 12_689_984  # 12.7 M


def test_converter_refuses_unexpected_and_missing_entries():
    stray = {"params": {"Conv3d_9z_1x1": {"Conv_0": {"kernel": np.zeros((1, 1, 1, 3, 8), np.float32)}}}}
    with pytest.raises(CheckpointError, match="Conv3d_9z_1x1"):
        i3d_state_dict_from_variables({**stray, "batch_stats": {}})
    with pytest.raises(CheckpointError, match="no value for 230 parameters"):
        i3d_state_dict_from_variables({"params": {}, "batch_stats": {}})
    with pytest.raises(CheckpointError, match="params and batch_stats"):
        i3d_state_dict_from_variables({"params": {}})


class _RunsShell:
    """A pickle payload that runs a shell command when loaded by a plain unpickler."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_unpickler_refuses_code_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps({"weights": np.ones(3, np.float32), "evil": _RunsShell(f"touch {marker}")})
    with pytest.raises(CheckpointError, match=r"refused to unpickle the global (posix|os|nt)\.system"):
        load_numpy_pickle(payload)
    assert not marker.exists()


def test_unpickler_reads_plain_numpy_pickles():
    tree = {"a": {"b": np.arange(6, dtype=np.float32).reshape(2, 3)}, "c": np.zeros((1, 1, 4), np.float64)}
    out = load_numpy_pickle(pickle.dumps(tree, protocol=4))
    np.testing.assert_array_equal(out["a"]["b"], tree["a"]["b"])
    assert out["c"].dtype == np.float64 and out["c"].shape == (1, 1, 4)
    with pytest.raises(CheckpointError, match="not a readable pickle"):
        load_numpy_pickle(pickle.dumps(tree)[:-20])


def test_corrupted_archive_is_refused(tmp_path, state_dict):
    copy = tmp_path / I3D_ARCHIVE.filename
    shutil.copyfile(archives_dir() / I3D_ARCHIVE.filename, copy)
    with open(copy, "r+b") as f:
        f.seek(copy.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match="sha256"):
        convert_i3d(tmp_path)


def test_tf_same_padding():
    # 224 -> 112 with a 7-kernel stride 2: 5 pixels of padding, the odd one after (TF).
    assert tf_same_padding((16, 224, 224), (7, 7, 7), (2, 2, 2)) == [(2, 3), (2, 3), (2, 3)]
    assert tf_same_padding((8, 112, 112), (1, 3, 3), (1, 2, 2)) == [(0, 0), (0, 1), (0, 1)]
    assert tf_same_padding((5, 7, 7), (2, 2, 2), (2, 2, 2)) == [(0, 1), (0, 1), (0, 1)]


def test_small_inputs_run(model):
    """8 frames of 160x160: Mixed_5c is 1x5x5, which the original's 2x7x7 pool cannot take."""
    x = torch.linspace(-1, 1, 3 * 8 * 160 * 160).reshape(1, 3, 8, 160, 160)
    with torch.inference_mode():
        features = model.forward_features(x)
        logits = model.logits_from_features(features)
    assert features.shape == (1, 1024) and logits.shape == (1, 400)
    assert torch.isfinite(features).all() and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        model.forward_features(x.permute(0, 2, 3, 4, 1))


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [((3, 3, 3), (1, 1, 1), (1, 1, 1)), ((7, 7, 7), (2, 2, 2), (0, 0, 0))]
)
def test_cpu_fast_conv_equals_conv3d(kernel, stride, padding):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 9, 12, 12, generator=g)
    w = torch.randn(16, 8, *kernel, generator=g)
    with torch.no_grad():
        fast = _conv3d(x, w, None, stride, padding)
    torch.testing.assert_close(
        fast, torch.nn.functional.conv3d(x, w, None, stride, padding), rtol=1e-5, atol=1e-4
    )


def test_training_mode_backpropagates():
    """Fine-tuning path: batch statistics, F.conv3d, and a gradient for every parameter."""
    net = I3D(num_classes=5).train()
    x = torch.linspace(-1, 1, 2 * 3 * 8 * 64 * 64).reshape(2, 3, 8, 64, 64)
    net(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert not torch.equal(net.Conv3d_1a_7x7.bn.running_mean, torch.zeros(64))
