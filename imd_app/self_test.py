"""``imd-app --self-test``: the real pipeline, offscreen, on the demo model and a demo clip.

Loads the model, opens a demo clip in the player (muted: the wall clock drives it),
plays it with inference and checks that frames are shown, window results arrive with
the model's labels and the audio decision, and that closing joins every worker.
Exit 0 on success; otherwise 1 with the reason on stderr.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


class SelfTestFailure(Exception):
    pass


def run_self_test(
    timeout: float = 120.0, model: str | None = None, clip: str | None = None, verbose: int = 0
) -> int:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from imd_app.app_setup import ExceptionReporter, setup_logging
    from imd_core.resources import demo_clips, demo_model_dir

    app = QApplication.instance() or QApplication(["imd-app"])
    tmp = tempfile.TemporaryDirectory(prefix="imd-self-test-")
    setup_logging(verbose, Path(tmp.name))
    reporter = ExceptionReporter(show_dialogs=False)
    reporter.install()
    window = None
    try:
        folder = Path(model) if model else demo_model_dir()
        if not (folder / "config.json").is_file():
            raise SelfTestFailure(
                f"no model at {folder} (config.json missing); set IMD_RESOURCES or pass --model DIR"
            )
        clips = [Path(clip)] if clip else demo_clips()
        if not clips:
            raise SelfTestFailure("no demo clip found (resources/demo_clips/*.mp4); set IMD_RESOURCES")
        from imd_app.main_window import MainWindow

        settings = QSettings(str(Path(tmp.name) / "settings.ini"), QSettings.Format.IniFormat)
        settings.setValue("app/launched", True)
        window = MainWindow(settings=settings, use_audio_device=False, cuda_available=False)
        window.resize(1200, 800)
        window.show()
        window.load_model(str(folder), "cpu")
        _wait(
            app,
            lambda: window.model_state.info is not None or bool(window.model_state.error),
            timeout / 2,
            "the model to load",
        )
        if window.model_state.error:
            raise SelfTestFailure(f"model did not load: {window.model_state.error}")
        info = window.model_state.info
        window.player_state.set_loop(True)
        window.open_in_player(str(clips[0]))
        _wait(
            app,
            lambda: window.player_state.media is not None or bool(window.player_state.error),
            30,
            "the clip to open",
        )
        if window.player_state.error:
            raise SelfTestFailure(f"demo clip did not open: {window.player_state.error}")
        _wait(
            app,
            lambda: len(window.live_state.results) >= 3 or bool(window.model_state.error),
            timeout / 2,
            "three window results",
        )
        if window.model_state.error:
            raise SelfTestFailure(f"inference failed: {window.model_state.error}")
        results = list(window.live_state.results)
        bad = [r for r in results if not r.top or r.label not in info.labels]
        if bad:
            raise SelfTestFailure(f"a result names no class of the model: {bad[0].top}")
        if window.player.frames_presented < 10:
            raise SelfTestFailure(f"only {window.player.frames_presented} frames were shown")
        if reporter.count:
            raise SelfTestFailure(f"{reporter.count} uncaught exception(s); see the log")
        r = results[-1]
        audio = "no audio" if not r.audio.present else ("dropped" if r.audio.dropped else "used")
        print(  # noqa: T201 -- the self-test reports on stdout
            f"imd-app self-test: ok ({len(results)} windows, last {r.start:.2f}-{r.end:.2f}s: {r.label} "
            f"{r.score:.2f}, audio {audio}; {window.player.frames_presented} frames shown, "
            f"latency {(r.latency or 0.0) * 1000:.0f} ms)"
        )
        return 0
    except SelfTestFailure as exc:
        print(f"imd-app self-test: FAILED: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except Exception as exc:  # noqa: BLE001 -- any failure is a failed self-test, with its reason
        print(f"imd-app self-test: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        if window is not None:
            window.shutdown()
            window.deleteLater()
            app.processEvents()
        reporter.uninstall()
        tmp.cleanup()


def _wait(app, condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SelfTestFailure(f"timed out after {seconds:.0f} s waiting for {what}")
        app.processEvents()
        time.sleep(0.005)
