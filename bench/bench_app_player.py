"""The app's player under load: a 30 fps clip playing with live inference, offscreen.

Reports playback fps, inference windows per second (and skipped), latency, A/V drift and
the GUI thread's longest stall. Uses the real app (``MainWindow``) muted, so the wall
clock stands in for the sound card; ``--audio`` opens the sound device when there is one.

    .venv/bin/python bench/bench_app_player.py [--model DIR] [--clip FILE] [--seconds 20]

Without ``--clip`` it writes a 640x360 30 fps textured H.264/AAC clip with
``tests/media_factory.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    from imd_core.resources import demo_model_dir

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(demo_model_dir()))
    ap.add_argument("--clip")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--audio", action="store_true", help="use the sound device (default: muted, wall clock)")
    args = ap.parse_args()

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    # The GUI thread's own work per callback, in thread CPU time (preemption by other
    # processes on a busy machine does not count here, unlike the stall monitor's wall time).
    from imd_app.controllers.player_controller import PlayerController
    from imd_app.main_window import MainWindow
    from imd_app.stall_monitor import StallMonitor
    from imd_app.widgets.live_panel import LivePanel
    from imd_app.widgets.video_view import VideoView

    cpu_ms: dict[str, list[float]] = {}

    def timed(cls, name, label):
        original = getattr(cls, name)

        def wrapper(self, *a):
            t = time.thread_time()
            try:
                return original(self, *a)
            finally:
                cpu_ms.setdefault(label, []).append((time.thread_time() - t) * 1000)

        setattr(cls, name, wrapper)

    timed(PlayerController, "_on_timer_timeout", "presenter tick")
    timed(LivePanel, "_on_timer_timeout", "plot refresh")
    timed(LivePanel, "_on_live_result_added", "result text")
    timed(VideoView, "paintEvent", "video paint")

    tmp = tempfile.TemporaryDirectory()
    clip = args.clip
    if clip is None:
        from tests.media_factory import write_clip

        clip = str(
            write_clip(
                Path(tmp.name) / "bench.mp4",
                seconds=max(args.seconds, 10.0) + 2,
                fps=30,
                width=640,
                height=360,
                pattern="texture",
            )
        )
    app = QApplication(["bench"])
    settings = QSettings(str(Path(tmp.name) / "s.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, use_audio_device=args.audio, cuda_available=args.device == "cuda")
    w.resize(1280, 800)
    w.show()

    def wait(cond, seconds):
        end = time.monotonic() + seconds
        while not cond() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.002)

    t_load = time.monotonic()
    w.load_model(args.model, args.device)
    wait(lambda: w.model_state.info is not None or bool(w.model_state.error), 120)
    load_s = time.monotonic() - t_load
    if w.model_state.error:
        print(w.model_state.error, file=sys.stderr)
        return 1
    w.player_state.set_loop(True)
    t_open = time.monotonic()
    w.open_in_player(clip)
    wait(lambda: len(w.live_state.results) >= 1, 60)
    first_s = time.monotonic() - t_open
    windows = []
    w.live_state.result_added.connect(windows.append)
    fps_samples, drift_samples = [], []
    w.player_state.playback_fps_changed.connect(fps_samples.append)
    w.player_state.drift_changed.connect(drift_samples.append)
    monitor = StallMonitor()
    cpu_ms.clear()
    monitor.start()
    t0, f0 = time.monotonic(), w.player.frames_presented
    wait(lambda: False, args.seconds)
    elapsed = time.monotonic() - t0
    monitor.stop()
    frames = w.player.frames_presented - f0
    lat = [r.latency for r in windows]
    info = w.model_state.info
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"model: {info.folder} ({info.size}, {info.parameters / 1e6:.1f} M params) on {info.device}; "
        f"clip: {w.player_state.media.width}x{w.player_state.media.height} {w.player_state.media.fps:.0f} fps; "
        f"clock: {'audio device' if w.player.audio.has_device else 'wall (muted)'}"
    )
    print(f"model load: {load_s:.1f} s; first result {first_s:.1f} s after opening the file")
    print(f"playback: {frames / elapsed:.1f} fps shown, {w.player.frames_dropped} frames dropped")
    print(
        f"inference: {len(windows) / elapsed:.2f} windows/s, {windows[-1].skipped if windows else 0} skipped, "
        f"latency mean {1000 * sum(lat) / max(len(lat), 1):.0f} ms, max {1000 * max(lat, default=0):.0f} ms"
    )
    if drift_samples:
        print(
            f"A/V drift (frame time - clock, 0.5 s means): max |drift| {max(abs(d) for d in drift_samples):.1f} ms"
        )
    print(
        f"GUI thread stall: worst {monitor.worst_ms:.1f} ms, p99 {monitor.percentile_ms(99):.1f} ms, "
        f"p50 {monitor.percentile_ms(50):.1f} ms over {len(monitor.gaps_ms)} ticks of a 5 ms timer"
    )
    for label, values in sorted(cpu_ms.items()):
        values.sort()
        print(
            f"GUI thread CPU per {label}: p50 {values[len(values) // 2]:.2f} ms, max {values[-1]:.2f} ms ({len(values)} calls)"
        )
    w.shutdown()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
