"""Frame sampling, spatial transforms, motion input and the AST fbank: clip -> model input.

:class:`ClipPreprocessor` is the one object the dataset, the inference engine and the app
use; it is built from a model's config (``from_model_config``) and saved beside a
checkpoint. Shapes: ``T`` frames, ``H``/``W`` decoded size, ``S`` crop side, ``V`` test
views (clips x crops), ``F`` fbank frames, ``M`` mel bins.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import torch

from imd_core.config_base import FrozenConfig
from imd_core.data.frame_times import FrameTimes, dense_times, uniform_times  # noqa: F401 - re-exported
from imd_core.errors import ConfigError, DataError

Sampling = Literal["uniform", "dense"]
Motion = Literal["diff", "flow", "none"]  # none: an RGB-only model (I3D)
AudioFrontend = Literal["ast", "yamnet"]
FLOW_BOUND = 20.0  # pixels of flow that map to +-1 (at the crop size)


# ----------------------------------------------------------------------------- spatial
def resize_short_side(frames: np.ndarray, size: int) -> np.ndarray:
    """Resizes (T, H, W, 3) uint8 so that min(H, W) == size, keeping the aspect ratio."""
    import cv2

    t, h, w, _ = frames.shape
    if min(h, w) == size:
        return frames
    if h <= w:
        nh, nw = size, max(size, round(w * size / h))
    else:
        nh, nw = max(size, round(h * size / w)), size
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (nw, nh), interpolation=interp) for f in frames])


def crop(frames: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """(T, H, W, C) -> (T, size, size, C) window at (top, left)."""
    return frames[:, top : top + size, left : left + size]


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    return crop(frames, (h - size) // 2, (w - size) // 2, size)


def random_crop(frames: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = frames.shape[1:3]
    return crop(frames, int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)), size)


def three_crops(frames: np.ndarray, size: int) -> list[np.ndarray]:
    """Start, centre and end crops along the longer side (the usual 3-crop test views)."""
    h, w = frames.shape[1:3]
    if w >= h:
        top = (h - size) // 2
        return [crop(frames, top, left, size) for left in (0, (w - size) // 2, w - size)]
    left = (w - size) // 2
    return [crop(frames, top, left, size) for top in (0, (h - size) // 2, h - size)]


def hflip(frames: np.ndarray) -> np.ndarray:
    return frames[:, :, ::-1]


def normalise(frames: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (T, 3, H, W), ``(x / 255 - mean) / std`` per channel."""
    # Transpose the uint8 array (cheap), so the float tensor is born contiguous.
    x = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))).float()
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    return x.mul_(1.0 / (255.0 * s)).sub_(m / s)


# ----------------------------------------------------------------------------- motion
def motion_from_frames(frames: np.ndarray, mode: Motion = "diff") -> np.ndarray:
    """The motion-stream input of a clip, one motion frame per RGB frame.

    ``"diff"`` (default): ``(f[t+1] - f[t]) / 255`` per RGB channel, in [-1, 1].
    ``"flow"``: OpenCV DIS dense optical flow between consecutive grey frames, as
    channels ``(dx, dy, |flow|) / FLOW_BOUND`` clipped to [-1, 1].
    The last frame repeats the previous motion; a one-frame clip has zero motion.

    Args:
        frames: uint8 (T, H, W, 3).

    Returns:
        float32 (T, H, W, 3).
    """
    t = frames.shape[0]
    out = np.zeros(frames.shape, np.float32)
    if t < 2:
        return out
    if mode == "diff":
        x = frames.astype(np.float32)
        out[:-1] = (x[1:] - x[:-1]) / 255.0
    elif mode == "flow":
        import cv2

        grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        for i in range(t - 1):
            flow = dis.calc(grey[i], grey[i + 1], None)  # (H, W, 2) pixels
            out[i, ..., :2] = flow
            out[i, ..., 2] = np.linalg.norm(flow, axis=-1)
        np.clip(out / FLOW_BOUND, -1.0, 1.0, out=out)
    else:
        raise ConfigError(f"unknown motion mode {mode!r}; choose one of ['diff', 'flow']")
    out[-1] = out[-2]
    return out


_SILENCE_FBANK: dict[tuple, torch.Tensor] = {}


# ----------------------------------------------------------------------------- preprocessor
@dataclasses.dataclass(frozen=True)
class ClipPreprocessor(FrozenConfig):
    """Turns decoded frames and audio into the model's inputs.

    The first eight fields carry a ModelConfig's input fields by the same names; the
    rest are data-side choices (*default* ours, documented in README).
    """

    num_frames: int = 8
    image_size: int = 224
    motion: Motion = "diff"
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    audio_seconds: float = 10.24
    sample_rate: int = 16000
    num_mel_bins: int = 128
    # "ast": the AST's Kaldi fbank (F, M); "yamnet": YAMNet's log-mel patches (P, 96, 64)
    audio_frontend: AudioFrontend = "ast"
    sampling: Sampling = "uniform"  # TSN segments over the whole clip; "dense": consecutive
    dense_interval: float = 1 / 15  # seconds between dense samples
    train_scale: tuple[float, float] = (1.0, 1.15)  # short side / image_size, random in training
    flip: bool = True  # random horizontal flip in training
    test_clips: int = 1  # temporal views in multi-view evaluation
    test_crops: int = 1  # spatial views: 1 (centre) or 3 (start, centre, end)

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.image_size < 1:
            raise ConfigError("num_frames and image_size must be positive")
        if self.test_crops not in (1, 3) or self.test_clips < 1:
            raise ConfigError(
                f"test_crops must be 1 or 3 and test_clips >= 1, got {self.test_crops}, {self.test_clips}"
            )
        if not 1.0 <= self.train_scale[0] <= self.train_scale[1]:
            raise ConfigError(f"train_scale must satisfy 1 <= low <= high, got {self.train_scale}")
        if self.audio_seconds <= 0:
            raise ConfigError(f"audio_seconds must be positive, got {self.audio_seconds}")

    @classmethod
    def from_model_config(cls, cfg: Any, **overrides: Any) -> ClipPreprocessor:
        """Reads the input fields of a ``ModelConfig`` (same names); ``overrides`` set the rest."""
        names = ("num_frames", "image_size", "motion", "image_mean", "image_std", "audio_seconds",
                 "sample_rate", "num_mel_bins")  # fmt: skip
        fields = {n: getattr(cfg, n) for n in names}
        for optional in ("audio_frontend", "sampling", "dense_interval"):  # set by pretrained models only
            if hasattr(cfg, optional):
                fields[optional] = getattr(cfg, optional)
        fields["image_mean"], fields["image_std"] = tuple(fields["image_mean"]), tuple(fields["image_std"])
        return cls.from_dict({**fields, **overrides})

    @property
    def num_views(self) -> int:
        return self.test_clips * self.test_crops

    @property
    def audio_samples(self) -> int:
        return int(round(self.audio_seconds * self.sample_rate))

    def decode_size(self, train: bool) -> int:
        """Short side to decode at: the largest training scale, or the crop side."""
        return int(round(self.image_size * self.train_scale[1])) if train else self.image_size

    # ---- time sampling
    def sample_times(
        self,
        start: float,
        end: float,
        *,
        train: bool,
        rng: np.random.Generator | None = None,
        multi_view: bool = False,
        whole_clip: bool = False,
    ) -> np.ndarray:
        """Frame times for one clip: (T,), or (test_clips * T,) for multi-view evaluation
        (the rule is :class:`~imd_core.data.frame_times.FrameTimes`, which decode sandboxes run)."""
        return FrameTimes.of(self, train=train, multi_view=multi_view, whole_clip=whole_clip)(start, end, rng)

    # ---- audio
    def audio_window(self, audio: np.ndarray) -> np.ndarray:
        """The centred ``audio_seconds`` of a clip's audio (zero-padded at the end if shorter).

        Deterministic on purpose: the AST output of a clip can then be cached.
        """
        n = self.audio_samples
        if len(audio) >= n:
            off = (len(audio) - n) // 2
            return audio[off : off + n]
        return np.pad(audio, (0, n - len(audio)))

    def fbank(self, audio: np.ndarray | None) -> torch.Tensor:
        """(F, M) AST input of 16 kHz mono audio; the fbank of silence when ``audio`` is None.
        With ``audio_frontend="yamnet"``: (P, 96, 64) YAMNet log-mel patches instead."""
        from imd_core.model.audio_features import AudioFeatureConfig, waveform_to_fbank

        if self.audio_frontend == "yamnet":
            from imd_core.pretrained.yamnet import log_mel_patches

            wave = (
                np.zeros(self.audio_samples, np.float32) if audio is None else np.asarray(audio, np.float32)
            )
            return log_mel_patches(
                torch.from_numpy(np.ascontiguousarray(self.audio_window(wave))), self.sample_rate
            )

        cfg = AudioFeatureConfig(
            sample_rate=self.sample_rate,
            num_mel_bins=self.num_mel_bins,
            max_length=int(round(self.audio_seconds * 100)),  # 10 ms fbank hop
        )
        if audio is None:
            key = (cfg.sample_rate, cfg.num_mel_bins, cfg.max_length)
            if key not in _SILENCE_FBANK:
                _SILENCE_FBANK[key] = waveform_to_fbank(np.zeros(self.audio_samples, np.float32), cfg)
            return _SILENCE_FBANK[key].clone()
        return waveform_to_fbank(self.audio_window(np.asarray(audio, np.float32)), cfg)

    # ---- frames
    def train_decode_size(self, rng: np.random.Generator) -> int:
        """A random training scale (short side) to decode at; pass ``prescaled=True`` then."""
        lo, hi = self.train_scale
        return max(self.image_size, int(round(self.image_size * rng.uniform(lo, hi))))

    def _spatial(
        self, frames: np.ndarray, train: bool, rng: np.random.Generator | None, prescaled: bool = False
    ) -> list[np.ndarray]:
        s = self.image_size
        if train:
            rng = rng or np.random.default_rng()
            if not prescaled or min(frames.shape[1:3]) < s:
                frames = resize_short_side(frames, self.train_decode_size(rng))
            out = random_crop(frames, s, rng)
            if self.flip and rng.random() < 0.5:
                out = hflip(out)
            return [out]
        frames = resize_short_side(frames, s)
        return three_crops(frames, s) if self.test_crops == 3 else [center_crop(frames, s)]

    def _tensors(self, crop_: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = normalise(crop_, self.image_mean, self.image_std)
        if self.motion == "none":
            return rgb, torch.empty(0)
        if self.motion == "diff":
            # Differences of normalised frames = motion_from_frames(..., "diff") / std, for
            # one subtraction instead of a float copy of the clip.
            motion = torch.zeros_like(rgb)
            if rgb.shape[0] > 1:
                torch.sub(rgb[1:], rgb[:-1], out=motion[:-1])
                motion[-1] = motion[-2]
            return rgb, motion
        motion = torch.from_numpy(motion_from_frames(crop_, self.motion)).permute(0, 3, 1, 2)
        std = torch.tensor(self.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        return rgb, (motion / std).contiguous()  # same scale as the normalised RGB

    def __call__(
        self,
        frames: np.ndarray,
        audio: np.ndarray | None,
        train: bool,
        rng: np.random.Generator | None = None,
        *,
        multi_view: bool = False,
        prescaled: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Model inputs of one clip.

        Args:
            frames: uint8 (T, H, W, 3), or (test_clips * T, H, W, 3) with ``multi_view``.
            audio: float32 (N,) 16 kHz mono, or ``None`` when the clip has no audio.
            train: random scale/crop/flip (else deterministic centre or 3 crops).
            rng: randomness for training transforms.
            multi_view: evaluation with ``test_clips x test_crops`` views.
            prescaled: training frames were decoded at :meth:`train_decode_size` already
                (saves a resize); otherwise a random scale is applied here.

        Returns:
            ``rgb`` and ``motion``: float32 (T, 3, S, S), or (V, T, 3, S, S) with
            ``multi_view``; ``fbank`` float32 (F, M); ``audio_present`` bool scalar tensor.
        """
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise DataError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
        out = {"fbank": self.fbank(audio), "audio_present": torch.tensor(audio is not None)}
        if not multi_view:
            rgb, motion = self._tensors(self._spatial(frames, train, rng, prescaled)[0])
            out.update(rgb=rgb, motion=motion)
            return out
        t = self.num_frames
        if frames.shape[0] != self.test_clips * t:
            raise DataError(f"multi-view expects {self.test_clips} x {t} frames, got {frames.shape[0]}")
        views = [
            self._tensors(c)
            for k in range(self.test_clips)
            for c in self._spatial(frames[k * t : (k + 1) * t], False, None)
        ]
        out.update(rgb=torch.stack([v[0] for v in views]), motion=torch.stack([v[1] for v in views]))
        return out
