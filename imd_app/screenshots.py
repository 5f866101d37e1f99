"""Screenshots of each tab for the README: ``xvfb-run -a python -m imd_app.screenshots``.

Runs the real app (model, decoding, inference, batch) on a virtual display and saves
``player.png``, ``batch.png``, ``training.png`` and ``model_manager.png``; with
``--real-model DIR --real-clip FILE`` also ``player_<DIR name>.png``, that model playing
that clip (e.g. the Kinetics-400 model on a clip of ``.weights/real_set``).
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


def _load(app, w, folder: str) -> bool:
    from imd_core.resources import resolve_model_dir

    w.load_model(folder, "cpu")
    want = resolve_model_dir(folder).resolve()
    _wait(
        app,
        lambda: (
            (w.model_state.info is not None and Path(w.model_state.info.folder).resolve() == want)
            or bool(w.model_state.error)
        ),
        300,
    )
    if w.model_state.error or w.model_state.info is None:
        print(f"model did not load: {w.model_state.error}", file=sys.stderr)  # noqa: T201
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    from imd_core.resources import demo_clips, demo_model_dir

    parser = argparse.ArgumentParser(prog="python -m imd_app.screenshots")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--model", default=str(demo_model_dir()))
    parser.add_argument("--clips", nargs="*", default=[str(p) for p in demo_clips()])
    parser.add_argument("--dark", action="store_true")
    parser.add_argument("--second-clip", help="also save player_2.png playing this clip")
    parser.add_argument(
        "--real-model", help="last, load this model (a folder or kinetics400) and save player_<name>.png ..."
    )
    parser.add_argument("--real-clip", help="... playing this clip")
    args = parser.parse_args(argv)
    if bool(args.real_model) != bool(args.real_clip):
        print("--real-model and --real-clip go together", file=sys.stderr)  # noqa: T201
        return 1
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
        if not _load(app, w, args.model):
            return 1
        w.player_tab.video.set_overlay_visible(True)
        w.player_state.set_loop(True)
        w.open_in_player(args.clips[0])
        _wait(app, lambda: len(w.live_state.results) >= 6, 90)
        _wait(app, lambda: False, 1.0)
        w.grab().save(str(out / "player.png"))
        if args.second_clip:
            w.open_in_player(args.second_clip)
            _wait(
                app,
                lambda: w.player_state.media is not None and w.player_state.media.source == args.second_clip,
                30,
            )
            _wait(app, lambda: len(w.live_state.results) >= 6, 90)
            _wait(app, lambda: False, 1.0)
            w.grab().save(str(out / "player_2.png"))
        w.batch.add_paths(args.clips)
        w.tabs.setCurrentWidget(w.batch_tab)
        _wait(
            app,
            lambda: (
                bool(w.batch_state.items)
                and all(i.status in ("done", "failed", "cancelled") for i in w.batch_state.items)
            ),
            300,
        )
        _wait(app, lambda: False, 0.5)
        w.grab().save(str(out / "batch.png"))
        w.tabs.setCurrentWidget(w.training_tab)
        _wait(app, lambda: False, 0.5)
        w.grab().save(str(out / "training.png"))
        w.tabs.setCurrentWidget(w.player_tab)
        w.show_model_manager()
        _wait(app, lambda: False, 0.5)
        w.model_manager.grab().save(str(out / "model_manager.png"))
        w.model_manager.hide()
        if args.real_model:
            if not _load(app, w, args.real_model):
                return 1
            w.open_in_player(args.real_clip)
            _wait(
                app,
                lambda: w.player_state.media is not None and w.player_state.media.source == args.real_clip,
                30,
            )
            _wait(app, lambda: len(w.live_state.results) >= 6, 300)  # a real model on a CPU: slower
            _wait(app, lambda: False, 1.0)
            w.grab().save(str(out / f"player_{w.model_state.info.name}.png"))
        print(f"screenshots written to {out}")  # noqa: T201
        return 0
    finally:
        w.shutdown()
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
