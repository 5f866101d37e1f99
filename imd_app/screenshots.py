"""Screenshots of each tab for the README: ``xvfb-run -a python -m imd_app.screenshots``.

Runs the real app (model, decoding, inference, batch) on a virtual display and saves
``player.png``, ``batch.png``, ``training.png`` and ``model_manager.png``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def _wait(app, condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        app.processEvents()
        time.sleep(0.01)
    return True


def main(argv: list[str] | None = None) -> int:
    from imd_core.resources import demo_clips, demo_model_dir

    parser = argparse.ArgumentParser(prog="python -m imd_app.screenshots")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--model", default=str(demo_model_dir()))
    parser.add_argument("--clips", nargs="*", default=[str(p) for p in demo_clips()])
    parser.add_argument("--dark", action="store_true")
    parser.add_argument("--second-clip", help="also save player_2.png playing this clip")
    args = parser.parse_args(argv)
    if not args.clips:
        print("no clips: pass --clips FILE...", file=sys.stderr)  # noqa: T201
        return 1

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from imd_app.app_setup import apply_palette
    from imd_app.main_window import MainWindow

    app = QApplication.instance() or QApplication(["imd-app"])
    app.setApplicationName("IMD Studio")
    apply_palette(app, dark=args.dark)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.TemporaryDirectory()
    settings = QSettings(str(Path(tmp.name) / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue("app/launched", True)
    w = MainWindow(settings=settings, use_audio_device=False)
    w.resize(1440, 900)
    w.show()
    try:
        w.load_model(args.model, "cpu")
        if not _wait(app, lambda: w.model_state.info is not None or bool(w.model_state.error), 120) or w.model_state.error:
            print(f"model did not load: {w.model_state.error}", file=sys.stderr)  # noqa: T201
            return 1
        w.player_tab.video.set_overlay_visible(True)
        w.player_state.set_loop(True)
        w.open_in_player(args.clips[0])
        _wait(app, lambda: len(w.live_state.results) >= 6, 90)
        _wait(app, lambda: False, 1.0)
        w.grab().save(str(out / "player.png"))
        if args.second_clip:
            w.open_in_player(args.second_clip)
            _wait(app, lambda: w.player_state.media is not None and w.player_state.media.source == args.second_clip, 30)
            _wait(app, lambda: len(w.live_state.results) >= 6, 90)
            _wait(app, lambda: False, 1.0)
            w.grab().save(str(out / "player_2.png"))
        w.batch.add_paths(args.clips)
        w.tabs.setCurrentWidget(w.batch_tab)
        _wait(app, lambda: bool(w.batch_state.items) and all(i.status in ("done", "failed", "cancelled") for i in w.batch_state.items), 300)
        _wait(app, lambda: False, 0.5)
        w.grab().save(str(out / "batch.png"))
        w.tabs.setCurrentWidget(w.training_tab)
        _wait(app, lambda: False, 0.5)
        w.grab().save(str(out / "training.png"))
        w.tabs.setCurrentWidget(w.player_tab)
        w.show_model_manager()
        _wait(app, lambda: False, 0.5)
        w.model_manager.grab().save(str(out / "model_manager.png"))
        print(f"screenshots written to {out}")  # noqa: T201
        return 0
    finally:
        w.shutdown()
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
