"""Frozen-backbone features of whole clips, computed once and cached by content.

One ``RUN/features/KEY.safetensors`` per clip; ``KEY`` hashes the file's path, size and
mtime with the input settings, so an edited file or other settings miss the cache and a
crashed or repeated run reuses everything else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

FEATURE_KEYS = ("video", "audio", "tags", "present")


def cache_key(path: str, settings: dict[str, Any]) -> str:
    st = os.stat(path)
    text = json.dumps([os.path.abspath(path), st.st_size, st.st_mtime_ns, settings], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


Segment = tuple[str, "float | None", "float | None"]  # a file and a manifest's start/end (None: whole)


def segment_input(predictor: Any, segment: Segment) -> Any:
    """The model input of one clip: the whole file as ``imd predict`` decodes it, or the
    manifest's ``[start, end]`` window of it, sampled as ``imd predict --window`` samples."""
    from imd_core.errors import DataError
    from imd_core.inference.file_windows import FileWindows
    from imd_core.media.decode import probe

    path, start, end = segment
    if start is None and end is None:
        return next(iter(predictor.open(path)))
    s = float(start or 0.0)
    duration = probe(path).duration
    e = float(end) if end is not None else float(duration or 0.0)
    if duration:  # as the training dataset and `imd eval` decode it: never past the file's end
        e = min(e, float(duration))
    if not e > s:
        raise DataError(f"empty window [{s:g}, {e:g}] s; fix the manifest's start/end")
    pre = predictor.preprocessor
    windows = FileWindows(
        Path(path), e, [(s, e)], whole_clip=False, num_frames=predictor.num_frames,
        frame_size=pre.decode_size(False), chunk_seconds=predictor.chunk_seconds,
        sample_times=lambda a, b: pre.sample_times(a, b, train=False),
    )  # fmt: skip
    return next(iter(windows))


@torch.inference_mode()
def clip_features(predictor: Any, segment: Segment, *, with_frames: bool = False) -> dict[str, torch.Tensor]:
    """The frozen features of one clip (see :func:`segment_input`)."""
    model = predictor.model
    x = predictor.preprocess(segment_input(predictor, segment))
    dev = predictor.device
    rgb = x["rgb"].unsqueeze(0).to(dev)  # (1, T, 3, H, W)
    audio, tags = model.audio_features(x["fbank"].unsqueeze(0).to(dev))
    out = {
        "video": model.video.forward_features(rgb.permute(0, 2, 1, 3, 4).float())[
            0
        ],  # I3D takes (B, 3, T, H, W)
        "audio": audio[0],
        "tags": tags[0],
        "present": x["audio_present"].reshape(()).float(),
    }
    if with_frames:
        out["rgb"] = x["rgb"].half()
    return {k: v.float().cpu() if k != "rgb" else v.cpu() for k, v in out.items()}


def extract_features(
    predictor: Any,
    segments: list[Segment],
    cache_dir: Path,
    *,
    with_frames: bool = False,
    progress: Callable[[int, int, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[list[dict | None], list[dict[str, str]]]:
    """Features of every clip (cached under ``cache_dir``).

    Returns one dict per clip (``None`` for an unreadable file or one not reached before a
    stop) and the unreadable files as ``{"path", "reason"}``. ``progress(done, total,
    cached)`` is called after each clip; ``should_stop()`` is asked before each.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from imd_core.errors import ImdError

    cache_dir.mkdir(parents=True, exist_ok=True)
    cfg = predictor.config
    settings = {k: getattr(cfg, k) for k in ("num_frames", "image_size", "dense_interval", "audio_seconds")}
    settings["version"] = 2  # 2: windows end at the file's end (as imd eval); older entries miss
    out: list[dict | None] = []
    errors: list[dict[str, str]] = []
    hits = 0
    for i, segment in enumerate(segments):
        if should_stop():
            out += [None] * (len(segments) - i)
            break
        path = segment[0]
        file = cache_dir / f"{cache_key(path, {**settings, 'window': segment[1:]})}.safetensors"
        feats = None
        if file.is_file():
            try:
                feats = load_file(str(file))
            except (SafetensorError, OSError) as exc:  # a torn write from a killed run: recompute
                log.warning("%s: unreadable cache entry (%s); recomputing", file, exc)
            if feats is not None and with_frames and "rgb" not in feats:
                feats = None
        if feats is not None:
            hits += 1
        else:
            try:
                feats = clip_features(predictor, segment, with_frames=with_frames)
            except ImdError as exc:
                errors.append({"path": path, "reason": str(exc)})
                out.append(None)
                if progress is not None:
                    progress(i + 1, len(segments), hits)
                continue
            tmp = file.with_suffix(".tmp")
            save_file({k: v.contiguous() for k, v in feats.items()}, str(tmp))
            os.replace(tmp, file)
        out.append(feats)
        if progress is not None:
            progress(i + 1, len(segments), hits)
    log.info("features: %d clips (%d from the cache), %d unreadable", len(segments), hits, len(errors))
    return out, errors
