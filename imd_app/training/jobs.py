"""The job queue: starts ``imd train`` processes one after another and watches them.

Jobs run detached (:mod:`imd_app.training.process`); a GUI timer tails each running job's
event file and stderr log, so a live job and one found again after a restart are
monitored by the same code. A job that crashes ends only its own process.
"""

from __future__ import annotations

import collections
import logging
import shutil
import signal
import subprocess
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from imd_app.training.command import imd_train_command
from imd_app.training.events import EventTail, RunProgress
from imd_app.training.history import ACTIVE, RESUMABLE, JobHistory, JobRecord
from imd_app.training.process import (
    STDERR_FILE,
    STDOUT_FILE,
    job_alive,
    kill_job,
    launch_detached,
    request_stop,
)
from imd_app.training.spec import FILTERED_MANIFEST, JobSpec, save_spec
from imd_core.errors import ConfigError, TrainingError

logger = logging.getLogger(__name__)

LOG_LINES = 500


class JobState(QObject):
    """What the monitor shows of one job; one signal per kind of change.

    Signals:
        status_changed(str): queued, running, stopping, stopped, finished, failed,
            cancelled or interrupted.
        progress_changed(): new events were folded into ``progress``.
        log_appended(list[str]): new lines for the log tail.

    Only the controller changes a state (``set_status``, ``read_updates``).
    """

    status_changed = Signal(str)
    progress_changed = Signal()
    log_appended = Signal(list)

    def __init__(self, record: JobRecord, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.record = record
        self.progress = RunProgress()
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self.events = EventTail(Path(record.run_dir) / STDOUT_FILE)
        self.stderr = EventTail(Path(record.run_dir) / STDERR_FILE)
        self.popen: subprocess.Popen | None = None
        self.stop_requested = False
        self.cancel_requested = False

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def spec(self) -> JobSpec:
        return JobSpec.from_dict(self.record.spec)

    def best_model_dir(self) -> Path | None:
        """``best/`` (else ``last/``) of the run when it holds a model, else ``None``."""
        for name in ("best", "last"):
            folder = Path(self.record.run_dir) / name
            if (folder / "config.json").is_file():
                return folder
        return None

    def confusion_image(self) -> Path | None:
        """The run's confusion-matrix image, if the engine wrote one."""
        run = Path(self.record.run_dir)
        if not run.is_dir():
            return None
        found = sorted(run.glob("confusion*.png")) + sorted(run.glob("*/confusion*.png"))
        return found[0] if found else None

    def set_status(self, status: str) -> None:
        if status != self.record.status:
            self.record.status = status  # type: ignore[assignment]
            self.status_changed.emit(status)

    def read_updates(self) -> None:
        """Reads what the process wrote since last time; emits what changed."""
        events, stray = self.events.read_new()
        _, err_lines = self.stderr.read_new()
        lines = [*stray, *err_lines]
        for event in events:
            text = self.progress.apply(event)
            if text:
                lines.append(text)
        if lines:
            self.log.extend(lines)
            self.log_appended.emit(lines)
        if events:
            if self.progress.best:
                self.record.best = dict(self.progress.best)
            self.progress_changed.emit()


class TrainingController(QObject):
    """Queue, launch, stop, cancel, resume and reattach training jobs.

    Args:
        history: where jobs are persisted (default: the user data folder).
        poll_ms: how often running jobs are read (events are small; 250-1000 ms).
    """

    job_added = Signal(str)
    job_removed = Signal(str)
    job_status_changed = Signal(str, str)

    def __init__(
        self, history: JobHistory | None = None, poll_ms: int = 500, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.history = history or JobHistory()
        self.jobs: dict[str, JobState] = {}
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.poll)
        for record in self.history.records:
            self._track(record)
        self._reattach()
        self._timer.start()
        self._start_next()

    # ----------------------------------------------------------------- public requests
    def submit(self, spec: JobSpec) -> JobState:
        """Validates ``spec``, prepares its run folder and queues it.

        Raises:
            ConfigError: the form is invalid, or the run folder is not empty or is in use.
        """
        spec = spec.replace(run_dir=str(Path(spec.run_dir).expanduser().resolve()) if spec.run_dir else "")
        spec.check()
        run = Path(spec.run_dir)
        if run.exists() and any(run.iterdir()):
            raise ConfigError(
                f"run folder {run} is not empty; choose a new folder (use Resume to continue a run)"
            )
        if any(
            s.record.run_dir == spec.run_dir for s in self.jobs.values() if s.status not in ("cancelled",)
        ):
            raise ConfigError(f"run folder {run} belongs to another job; choose a new folder")
        run.mkdir(parents=True, exist_ok=True)
        if spec.skip_bad_files and spec.excluded:
            from imd_app.training.dataset_check import write_filtered_manifest

            write_filtered_manifest(spec.data, spec.excluded, run / FILTERED_MANIFEST)
        save_spec(spec, run)
        record = JobRecord.new(spec.to_dict(), spec.run_dir)
        self.history.add(record)
        state = self._track(record)
        self.job_added.emit(record.id)
        self._start_next()
        return state

    def stop(self, job_id: str) -> None:
        """Save, then stop (a queued job just leaves the queue)."""
        state = self.jobs.get(job_id)
        if state is None:
            return
        if state.status == "queued":
            self._finish(state, "cancelled" if state.record.attempts == 0 else "stopped")
        elif state.status == "running" and state.record.pid:
            state.stop_requested = True
            request_stop(state.record.pid)
            self._change(state, "stopping")

    def cancel(self, job_id: str) -> None:
        """Kill the job now and discard its run folder."""
        state = self.jobs.get(job_id)
        if state is None:
            return
        state.cancel_requested = True
        if state.status in ACTIVE and state.record.pid:
            kill_job(state.record.pid)
            self.poll()
        else:
            self._finish(state, "cancelled")

    def resume(self, job_id: str) -> None:
        """Queue a stopped, failed or interrupted job again with ``imd train --resume``."""
        state = self.jobs.get(job_id)
        if state is None or state.status not in RESUMABLE:
            return
        if not (Path(state.record.run_dir) / "last").is_dir():
            # Stopped before its first checkpoint: imd train --resume starts it over.
            state.log.append("no last/ checkpoint yet: the job starts from the beginning")
            state.log_appended.emit([state.log[-1]])
        state.record.resume_next = True
        state.stop_requested = state.cancel_requested = False
        self._change(state, "queued")
        self._start_next()

    def remove(self, job_id: str) -> None:
        """Forget a job that is not running (its run folder stays on disk)."""
        state = self.jobs.get(job_id)
        if state is None or state.status in ACTIVE:
            return
        del self.jobs[job_id]
        self.history.remove(job_id)
        self.job_removed.emit(job_id)
        state.deleteLater()

    def running_job(self) -> JobState | None:
        return next((s for s in self.jobs.values() if s.status in ACTIVE), None)

    def shutdown(self) -> None:
        """Stops watching; running jobs keep running and are found again next launch."""
        self._timer.stop()
        self.history.save()

    # ----------------------------------------------------------------- internals
    def _track(self, record: JobRecord) -> JobState:
        state = JobState(record, self)
        self.jobs[record.id] = state
        return state

    def _change(self, state: JobState, status: str) -> None:
        state.set_status(status)
        self.history.save()
        self.job_status_changed.emit(state.id, status)

    def _reattach(self) -> None:
        for state in self.jobs.values():
            if state.status in ACTIVE:
                state.read_updates()  # replays the whole event file: curves come back too
                if job_alive(state.record.pid, state.record.run_dir):
                    logger.info("reattached to job %s (pid %s)", state.id, state.record.pid)
                    state.log.append(f"reattached to running job (pid {state.record.pid})")
                else:
                    self._conclude(state, exit_code=None)
            elif state.status != "queued":
                state.read_updates()

    def _start_next(self) -> None:
        if self.running_job() is not None:
            return
        queued = sorted(
            (s for s in self.jobs.values() if s.status == "queued"), key=lambda s: s.record.created
        )
        if not queued:
            return
        state = queued[0]
        resume = state.record.resume_next
        program, arguments = imd_train_command(state.spec.to_train_args(resume=resume))
        try:
            state.popen = launch_detached(program, arguments, state.record.run_dir)
        except TrainingError as exc:
            state.record.failure = str(exc)
            self._finish(state, "failed")
            return
        state.record.pid = state.popen.pid
        state.record.attempts += 1
        state.record.resume_next = False
        state.record.started = time.time()
        state.record.ended = None
        state.record.failure = ""
        state.log.append(("resumed" if resume else "started") + f" (pid {state.popen.pid})")
        state.log_appended.emit([state.log[-1]])
        self._change(state, "running")

    def poll(self) -> None:
        """Timer slot: reads every active job and notices the ones that ended."""
        for state in list(self.jobs.values()):
            if state.status not in ACTIVE:
                continue
            state.read_updates()
            if state.popen is not None:
                code = state.popen.poll()
                if code is None:
                    continue
            elif job_alive(state.record.pid, state.record.run_dir):
                continue
            else:
                code = None
            state.read_updates()
            self._conclude(state, exit_code=code)
        self._start_next()

    def _conclude(self, state: JobState, exit_code: int | None) -> None:
        """Decides the final status of a job whose process has ended."""
        outcome = state.progress.outcome
        if state.cancel_requested:
            shutil.rmtree(state.record.run_dir, ignore_errors=True)
            status = "cancelled"
        elif outcome in ("finished", "early_stopped") and exit_code in (0, None):
            status = "finished"
        elif outcome == "stopped" or (state.stop_requested and outcome != "failed"):
            status = "stopped"
        elif outcome == "failed" or (exit_code not in (0, None)):
            status = "failed"
            if not state.record.failure:
                state.record.failure = state.progress.failure or _exit_reason(state, exit_code)
        elif exit_code == 0:
            status = "finished"
        else:
            status = "interrupted"  # ended while the app was closed, without a last event
        if status == "failed":
            state.log.append(f"job failed: {state.record.failure}")
            state.log_appended.emit([state.log[-1]])
        self._finish(state, status)

    def _finish(self, state: JobState, status: str) -> None:
        state.popen = None
        state.record.ended = time.time()
        if state.progress.best:
            state.record.best = dict(state.progress.best)
        self._change(state, status)


def _exit_reason(state: JobState, exit_code: int | None) -> str:
    """Why a job ended without a ``run_failed`` event: a signal, or its last error line."""
    if exit_code is not None and exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"the job process was killed ({name}); Resume continues from last/"
    for line in reversed(state.log):
        if "error" in line.lower():
            return line.strip()
    return f"the job process ended with exit code {exit_code}; see its log in {state.record.run_dir}"
