"""The YAMNet port against onnxruntime golden outputs (scripts/golden_yamnet.py writes them).

Tolerances, all measured on the stored inputs (see the golden script for the formulas):
- port vs the QDQ-stripped float graph under onnxruntime: |logit diff| <= 1e-4 + 1e-5 |logit|
  and |embedding diff| <= 1e-5 (float32 rounding through 27 convs; silence logits reach -609).
- port vs the shipped w8a8 model (onnxruntime, QDQ semantics): Pearson correlation of the
  521 logits >= 0.88 per input; the w8a8 top-1 is in the port's top-2, and identical
  where it leads its runner-up by more than one output quantization step (0.757 logit).
  Activations quantized to uint8 move low-confidence logits by several steps, so a
  tighter bound would test the quantization, not the port.
- torch frontend vs the independent numpy/scipy one: 1e-5 (both compute in float64; the
  measured 2.4e-7 is the float32 rounding of the stored reference).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imd_core.errors import CheckpointError, ConfigError, DataError
from imd_core.pretrained.archives import YAMNET_ARCHIVE, archives_dir
from imd_core.pretrained.yamnet import YamNet, convert_yamnet, log_mel_patches, padded_length

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "golden" / "yamnet_golden.npz"
SR = 16000


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    if not GOLDEN.is_file():
        pytest.fail(
            f"{GOLDEN} is missing; regenerate it with /tmp/yamnet_ref/bin/python scripts/golden_yamnet.py"
        )
    with np.load(GOLDEN) as data:
        return dict(data)


@pytest.fixture(scope="module")
def converted() -> tuple[dict[str, torch.Tensor], list[str]]:
    path = archives_dir() / YAMNET_ARCHIVE.filename
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `bash scripts/setup.sh` (it downloads the weight archives)")
    return convert_yamnet()


@pytest.fixture(scope="module")
def model(converted) -> YamNet:
    net = YamNet()
    net.load_state_dict(converted[0], strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def labels(converted) -> list[str]:
    return converted[1]


def _signals(recipe: dict, n: int) -> dict[str, np.ndarray]:
    """The golden script's waveforms, regenerated from the stored formula parameters."""
    t = np.arange(n) / SR
    dur = n / SR
    s, c, h = recipe["sine"], recipe["chirp"], recipe["harmonics"]
    k = c["f1"] / c["f0"]
    tone = sum(np.sin(2 * np.pi * h["f0"] * m * t) / m for m in range(1, h["count"] + 1))
    envelope = np.exp(-h["decay"] * t) * (0.5 + 0.5 * np.sin(2 * np.pi * h["am_hz"] * t))
    out = {
        "sine": s["amp"] * np.sin(2 * np.pi * s["freq"] * t),
        "noise": recipe["noise"]["std"] * np.random.default_rng(recipe["noise"]["seed"]).standard_normal(n),
        "chirp": c["amp"] * np.sin(2 * np.pi * c["f0"] * dur / np.log(k) * (k ** (t / dur) - 1)),
        "harmonics": h["amp"] * envelope * tone,
        "silence": np.zeros(n),
    }
    return {name: wave.astype(np.float32) for name, wave in out.items()}


@torch.inference_mode()
def _run(model: YamNet, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = torch.from_numpy(patches)
    embedding = model.forward_features(x)
    return model.forward_head(embedding).numpy(), embedding.numpy()


# ----- converter -----------------------------------------------------------------------
def test_converted_state_dict_and_labels(converted, model):
    state, labels = converted
    assert len(labels) == 521 and labels[0] == "Speech" and labels[494] == "Silence"
    assert state.keys() == model.state_dict().keys()
    assert all(v.dtype == torch.float32 for v in state.values())
    assert sum(v.numel() for v in state.values()) == 3_729_481  # 3.20 M body + 0.53 M classifier
    # weights sit on a per-output-channel int8 grid: at most 255 distinct values per channel
    w = state["blocks.12.pointwise.weight"].flatten(1)
    assert max(len(torch.unique(row)) for row in w) <= 255


def test_converter_refuses_a_corrupted_archive(tmp_path):
    src = archives_dir() / YAMNET_ARCHIVE.filename
    if not src.is_file():
        pytest.fail(f"{src} is missing: run `bash scripts/setup.sh` (it downloads the weight archives)")
    copy = tmp_path / YAMNET_ARCHIVE.filename
    shutil.copyfile(src, copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        convert_yamnet(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        convert_yamnet(tmp_path / "empty")


def test_converter_refuses_an_unreadable_inner_model():
    from imd_core.pretrained.yamnet import _read_onnx

    with pytest.raises(CheckpointError, match="unreadable"):
        _read_onnx(b"not a zip")


# ----- network -------------------------------------------------------------------------
def test_port_matches_float_graph(model, golden):
    logits, embedding = _run(model, golden["patches"])
    ref_logits, ref_embedding = golden["float_logits"], golden["float_embeddings"]
    assert np.all(np.abs(logits - ref_logits) <= 1e-4 + 1e-5 * np.abs(ref_logits))
    assert np.abs(embedding - ref_embedding).max() <= 1e-5
    assert (logits.argmax(1) == ref_logits.argmax(1)).all()


def test_port_agrees_with_shipped_w8a8_model(model, golden):
    logits, _ = _run(model, golden["patches"])
    step = float(golden["quant"][2])  # the uint8 output's logit step
    for name, ours, q in zip(golden["names"], logits, golden["qdq_logits"], strict=True):
        assert np.corrcoef(ours, q)[0, 1] >= 0.88, name
        runner_up = np.sort(q)[-2]
        assert q.argmax() in np.argsort(-ours)[:2], name
        if q.max() - runner_up > 1.5 * step:
            assert ours.argmax() == q.argmax(), name


def test_forward_batches_and_rejects_bad_shapes(model, golden):
    x = torch.from_numpy(golden["patches"])
    with torch.inference_mode():
        together = model(x)
        alone = torch.cat([model(p[None]) for p in x])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="96, 64"):
        model(x[:, :, :32])


# ----- frontend ------------------------------------------------------------------------
def test_frontend_matches_numpy_reference(golden):
    recipe = json.loads(str(golden["recipe"]))
    waves = _signals(recipe, recipe["n"])
    ours = torch.cat([log_mel_patches(torch.from_numpy(waves[str(n)])) for n in golden["names"]])
    assert ours.dtype == torch.float32
    assert np.abs(ours.numpy() - golden["patches"]).max() <= 1e-5

    clip_n, short_n = int(recipe["clip_seconds"] * SR), int(recipe["short_seconds"] * SR)
    clip = _signals(recipe, clip_n)
    clip_wave = torch.from_numpy(clip["harmonics"] + 0.1 * clip["noise"])
    short_wave = torch.from_numpy(_signals(recipe, short_n)["chirp"])
    for wave, ref in ((clip_wave, golden["clip_patches"]), (short_wave, golden["short_patches"])):
        ours = log_mel_patches(wave)
        assert ours.shape == ref.shape
        assert np.abs(ours.numpy() - ref).max() <= 1e-5
        assert log_mel_patches(wave.double()).dtype == torch.float64


@pytest.mark.parametrize(
    ("n", "patches"), [(0, 1), (8000, 1), (15600, 1), (15601, 2), (23280, 2), (160000, 20)]
)
def test_frontend_padding_rules(n, patches):
    assert 1 + (padded_length(n) - 15600) // 7680 == patches
    assert log_mel_patches(torch.zeros(n)).shape == (patches, 96, 64)


def test_frontend_is_batched_and_deterministic():
    wave = torch.sin(torch.arange(2 * 20000) / SR * 2 * torch.pi * 440.0).reshape(2, 20000) * 0.3
    both = log_mel_patches(wave)
    assert both.shape == (2, 2, 96, 64)
    torch.testing.assert_close(both[1], log_mel_patches(wave[1]), atol=1e-6, rtol=0)
    assert torch.equal(log_mel_patches(wave[0]), log_mel_patches(wave[0]))
    with pytest.raises(ConfigError, match="16000"):
        log_mel_patches(wave, sample_rate=44100)
    with pytest.raises(DataError):
        log_mel_patches(torch.zeros(100, dtype=torch.int16))


# ----- behaviour -----------------------------------------------------------------------
def _top3(model: YamNet, labels: list[str], wave: np.ndarray) -> list[str]:
    with torch.inference_mode():
        scores = model(log_mel_patches(torch.from_numpy(wave.astype(np.float32)))).sigmoid().mean(0)
    return [labels[i] for i in scores.argsort(descending=True)[:3]]


def test_sine_is_a_beep_and_noise_is_noise(model, labels):
    t = np.arange(2 * SR) / SR
    sine = _top3(model, labels, 0.5 * np.sin(2 * np.pi * 1000.0 * t))
    assert {"Sine wave", "Beep, bleep"} & set(sine), sine
    noise = _top3(model, labels, 0.3 * np.random.default_rng(7).standard_normal(t.size))
    assert {"White noise", "Static", "Noise"} & set(noise), noise
