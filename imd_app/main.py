"""Entry point of ``imd-app``: parses arguments, sets up logging, opens the main window."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys

from imd_core import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imd-app",
        description="IMD Studio desktop app: play a video or a webcam with live action scores and audio "
        "decisions, classify files in batch, fine-tune models.",
    )
    parser.add_argument("--version", action="version", version=f"imd-app {__version__}")
    parser.add_argument("path", nargs="?", help="a video file to open in the player")
    parser.add_argument(
        "--model",
        metavar="DIR",
        help="model folder or name (kinetics400, demo) to load (default: the last one, else kinetics400 when installed, else the demo)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="compute device for the model")
    parser.add_argument("--no-audio", action="store_true", help="do not open a sound device (muted playback)")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="load the demo model, play a demo clip through the real pipeline offscreen, check that results "
        "arrive; exit 0 on success, non-zero with the reason on stderr",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds the self-test may take (default 120)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    return parser


def main(argv: list[str] | None = None) -> int:
    # A frozen app's multiprocessing children (spawn: ``imd synth`` workers) re-run this
    # executable; freeze_support runs the child's task and exits there. No-op unfrozen.
    multiprocessing.freeze_support()
    argv = sys.argv[1:] if argv is None else argv
    # The packaged app re-invokes itself for the CLI (``imd-app train ...``).
    if argv and argv[0] in ("train", "eval", "data", "predict", "synth", "savld", "model-info", "pretrained"):
        from imd_core.cli.main import main as cli_main

        return cli_main(argv)
    args = build_parser().parse_args(argv)
    if args.self_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from imd_app.self_test import run_self_test

        return run_self_test(timeout=args.timeout, model=args.model, verbose=args.verbose)

    from PySide6.QtWidgets import QApplication

    from imd_app.app_setup import ExceptionReporter, apply_palette, follow_system_palette, setup_logging

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("IMD Studio")
    app.setOrganizationName("IMD Studio")
    app.setApplicationVersion(__version__)
    log_path = setup_logging(args.verbose)
    reporter = ExceptionReporter()
    reporter.install()
    apply_palette(app)
    follow_system_palette(app)

    from imd_app.main_window import MainWindow

    window = MainWindow(use_audio_device=not args.no_audio)
    reporter.set_parent_widget(window)
    window.show()
    import logging

    logging.getLogger(__name__).info("imd-app %s started; log file %s", __version__, log_path)
    if args.model:
        window.settings.setValue("model/folder", args.model)
    if args.device:
        window.settings.setValue("model/device", args.device)
    window.start_up(args.path)
    app.aboutToQuit.connect(window.shutdown)
    code = app.exec()
    reporter.uninstall()
    return code
