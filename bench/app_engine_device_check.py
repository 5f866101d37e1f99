"""The app's inference path (``imd_app.engine_session``, no Qt) on CPU and, when present, CUDA.

Builds the tests' tiny model, then for each device loads it the way the player does,
streams 4 s of 30 fps 640x360 frames and 16 kHz audio through the streaming engine in
real-time order, and prints windows produced, device, latency and per-window time.

    .venv/bin/python bench/app_engine_device_check.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    import torch

    from imd_app.engine_session import EngineSession
    from imd_app.types import ModelSpec
    from tests.app.conftest import LABELS, build_tiny_model

    folder = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ok = True
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(8, 360, 640, 3), dtype=np.uint8)
    for device in devices:
        session = EngineSession.load(ModelSpec(folder, device))  # type: ignore[arg-type]
        session.reset("synthetic", 0.0)
        results = []
        t_start = time.perf_counter()
        for i in range(120):  # 4 s at 30 fps, audio in 0.1 s blocks
            t = i / 30
            session.push_frame(t, frames[i % 8])
            if i % 3 == 0:
                session.push_audio(t, (0.1 * rng.standard_normal(1600)).astype(np.float32), 16000)
            results += session.poll()
        wall = time.perf_counter() - t_start
        stats = session.engine.stats
        good = bool(results) and all(r.top[0].label in LABELS and r.audio.present for r in results)
        ok &= good
        print(
            f"{device}: model on {session.info.device}, {len(results)} windows "
            f"(window {session.window:.2f} s, hop {session.hop:.2f} s), "
            f"last inference {1000 * (stats.last_inference_seconds or 0):.1f} ms, "
            f"mean latency {1000 * (stats.mean_latency or 0):.1f} ms, fed 4 s of media in {wall:.2f} s, "
            f"first: {results[0].label if results else '-'} audio dropped={results[0].audio.dropped if results else '-'}"
            f" -> {'ok' if good else 'FAILED'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
