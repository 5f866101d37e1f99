"""Starting ``imd train`` detached from the app, and signalling or probing it later.

A job must outlive the app and be found again at the next launch, so it runs in its own
session with stdout (events) and stderr (log) going to files in its run folder. This
uses ``subprocess.Popen(start_new_session=True)``: ``QProcess.startDetached()`` either
returns no pid or cannot redirect output.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from imd_core.errors import TrainingError

logger = logging.getLogger(__name__)

STDOUT_FILE = "app_events.jsonl"
STDERR_FILE = "app_stderr.log"


def launch_detached(program: str, arguments: list[str], run_dir: str | Path) -> subprocess.Popen:
    """Starts ``program arguments`` in a new session, output appended to the run folder.

    Returns:
        The ``Popen`` (poll it while the app runs so it is reaped; its ``pid`` is saved).

    Raises:
        TrainingError: the program cannot be started.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # events reach the file line by line
    kwargs: dict = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
    else:
        kwargs["start_new_session"] = True  # not in the app's process group: survives it
    try:
        with open(run_dir / STDOUT_FILE, "ab") as out, open(run_dir / STDERR_FILE, "ab") as err:
            proc = subprocess.Popen(
                [program, *arguments],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=str(run_dir),
                env=env,
                close_fds=True,
                **kwargs,
            )
    except OSError as exc:
        raise TrainingError(f"cannot start {program}: {exc}; check the installation") from None
    logger.info("started job pid %d: %s %s", proc.pid, program, " ".join(arguments))
    return proc


def job_alive(pid: int | None, run_dir: str | Path | None = None) -> bool:
    """Whether process ``pid`` still runs (and, on Linux, is the job of ``run_dir``).

    The ``run_dir`` check guards against a recycled pid after a reboot or a long pause.
    """
    if not pid or pid <= 0:
        return False
    if sys.platform == "win32":
        return _win_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat[stat.rindex(")") + 2] in "ZX":  # a zombie has finished
                return False
            if run_dir is not None:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                return str(Path(run_dir)) in cmdline or Path(run_dir).name in cmdline
        except (OSError, ValueError, IndexError):
            return False
    return True


def request_stop(pid: int) -> None:
    """Asks the job to save and stop (SIGINT; the engine saves ``last/`` and exits)."""
    try:
        if sys.platform == "win32":
            os.kill(pid, signal.CTRL_BREAK_EVENT)
        else:
            os.kill(pid, signal.SIGINT)
    except OSError as exc:
        logger.warning("cannot signal job %d: %s", pid, exc)


def kill_job(pid: int) -> None:
    """Kills the job and its data-loader workers at once (Cancel: nothing is saved)."""
    try:
        if sys.platform == "win32":
            os.kill(pid, signal.SIGTERM)  # TerminateProcess
        elif os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError as exc:
        logger.warning("cannot kill job %d: %s", pid, exc)


def _win_alive(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    still_active = 259
    handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    code = ctypes.c_ulong()
    ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
    ctypes.windll.kernel32.CloseHandle(handle)
    return code.value == still_active
