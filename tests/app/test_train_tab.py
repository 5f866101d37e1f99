"""The Training tab end to end: real ``imd train`` jobs on a tiny generated dataset.

Jobs run as real child processes of the CLI (2 classes x 4 one-second 64x64 clips, a
shrunken tiny model, 32x32 crops, 2 frames), driven through the tab's widgets.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from imd_app.training.history import JobHistory
from imd_app.training.jobs import TrainingController
from imd_app.training.process import job_alive, kill_job
from imd_app.training.tab import TrainingTab
from imd_app.user_data import DATA_DIR_ENV
from tests.app.test_train_support import make_dataset

pytestmark = [pytest.mark.gui, pytest.mark.slow]

# Small enough for a 2-core CPU: one ViT block of width 48 on 2 frames of 32x32.
FAST = (
    "num_workers=0 log_every_steps=1 early_stopping_patience=0 checkpoint_every_steps=0 val_fraction=0.25 "
    "model.image_size=32 model.depth=1 model.embed_dim=48 model.num_heads=2 model.st_dim=24 model.st_heads=2 "
    "model.relevance_hidden=32"
)
JOB_TIMEOUT_MS = 180_000


@pytest.fixture
def app_data(tmp_path, monkeypatch):
    folder = tmp_path / "appdata"
    monkeypatch.setenv(DATA_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "data", per_class=3)


def make_tab(qtbot) -> TrainingTab:
    tab = TrainingTab(controller=TrainingController(JobHistory(), poll_ms=200))
    qtbot.addWidget(tab)
    return tab


def fill_form(tab: TrainingTab, dataset: Path, run_dir: Path, *, epochs: int, frames: int = 2) -> None:
    tab.dataset.path.setText(str(dataset))
    form = tab.form
    form.start_from.setCurrentIndex(form.start_from.findData("backbones"))
    form.config.setCurrentText("tiny")
    form.epochs.setValue(epochs)
    form.batch_size.setValue(2)
    form.learning_rate.setValue(0.001)
    form.num_frames.setValue(frames)
    form.device.setCurrentText("cpu")
    form.run_dir.setText(str(run_dir))
    form.extra_set.setText(FAST)


def wait_status(qtbot, state, statuses, timeout=JOB_TIMEOUT_MS):
    def check():
        assert state.status in statuses, f"{state.status}: {list(state.log)[-5:]}"

    qtbot.waitUntil(check, timeout=timeout)


def wait_steps(qtbot, state, n=1, timeout=JOB_TIMEOUT_MS):
    def check():
        assert state.progress.step >= n, f"{state.status}: {list(state.log)[-5:]}"

    qtbot.waitUntil(check, timeout=timeout)


@pytest.fixture
def cleanup():
    pids = []
    yield pids
    for pid, run_dir in pids:  # never leave a job behind, whatever failed
        if job_alive(pid, run_dir):
            kill_job(pid)


def test_train_job_from_the_tab_stops_resumes_finishes_and_loads(qtbot, app_data, dataset, tmp_path, cleanup):
    tab = make_tab(qtbot)
    run_dir = tmp_path / "run"
    fill_form(tab, dataset, run_dir, epochs=2)
    qtbot.mouseClick(tab.add_button, Qt.MouseButton.LeftButton)
    assert tab.form_error.text() == ""
    (state,) = tab.controller.jobs.values()
    cleanup.append((state.record.pid, str(run_dir)))
    assert tab.monitor.state is state and state.status == "running"
    assert json.loads((run_dir / "app_job.json").read_text())["epochs"] == 2

    # Stop (save, then stop) once the job is training.
    wait_steps(qtbot, state, 1)
    assert tab.monitor.stop_button.isEnabled()
    qtbot.waitUntil(
        lambda: tab.monitor.progress.value() > 0 and tab.monitor.eta.text() not in ("ETA --", ""),
        timeout=2000,
    )
    assert tab.monitor.labels["clips_per_s"].text().endswith("clips/s")
    qtbot.mouseClick(tab.monitor.stop_button, Qt.MouseButton.LeftButton)
    wait_status(qtbot, state, ("stopped",))
    assert (run_dir / "last" / "config.json").is_file()
    assert state.progress.outcome == "stopped" and state.progress.fraction < 1.0
    assert tab.monitor.resume_button.isEnabled()

    # Resume continues from last/ and runs to the end.
    qtbot.mouseClick(tab.monitor.resume_button, Qt.MouseButton.LeftButton)
    wait_status(qtbot, state, ("finished", "failed"))
    assert state.status == "finished", state.record.failure
    assert state.record.attempts == 2 and state.progress.started_runs == 2
    # (A stop on an epoch's last step skips that epoch's validation, so count the last one.)
    assert state.progress.epochs[-1].epoch == 1 and state.progress.fraction == 1.0
    assert "val_acc" in state.record.best
    epochs = len(state.progress.epochs)
    qtbot.waitUntil(
        lambda: (
            tab.monitor.curves["val_acc"].getData()[0] is not None
            and len(tab.monitor.curves["val_acc"].getData()[0]) == epochs
        ),
        timeout=2000,
    )
    assert len(tab.monitor.curves["step_loss"].getData()[0]) >= 3
    assert tab.monitor.confusion.pixmap() is not None and not tab.monitor.confusion.pixmap().isNull()

    # The history file says so too.
    saved = json.loads((app_data / "training_jobs.json").read_text())["jobs"]
    assert saved[0]["status"] == "finished" and saved[0]["best"]["val_acc"] == state.record.best["val_acc"]

    # "Use this model" hands best/ to the player, and it loads.
    with qtbot.waitSignal(tab.use_model_requested, timeout=1000) as blocker:
        qtbot.mouseClick(tab.monitor.use_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [str(run_dir / "best")]
    from imd_core.model.checkpoint import load_model

    model = load_model(blocker.args[0], device="cpu")
    assert list(model.config.labels) == ["circle", "square"]
    tab.shutdown()


def test_train_job_keeps_running_after_the_app_closes_and_is_reattached(
    qtbot, app_data, dataset, tmp_path, cleanup
):
    tab = make_tab(qtbot)
    run_dir = tmp_path / "run"
    fill_form(tab, dataset, run_dir, epochs=2)
    job_id = tab.submit(tab.current_spec())
    assert job_id is not None
    state = tab.controller.jobs[job_id]
    pid = state.record.pid
    cleanup.append((pid, str(run_dir)))
    wait_steps(qtbot, state, 1)
    tab.shutdown()  # what closing the app does: stop watching, leave the job alone
    tab.close()
    qtbot.wait(300)
    assert job_alive(pid, run_dir)

    # Next launch: the tab finds the job through the history and its run folder.
    again = make_tab(qtbot)
    found = again.controller.jobs[job_id]
    assert found.status in ("running", "finished")
    assert again.monitor.state is found
    assert found.progress.step >= 1  # the events so far were replayed
    wait_status(qtbot, found, ("finished", "failed", "interrupted"))
    assert found.status == "finished", found.record.failure
    assert len(found.progress.epochs) == 2
    assert not job_alive(pid, run_dir)
    again.shutdown()


def test_train_bad_jobs_fail_in_their_own_process_and_the_queue_goes_on(qtbot, app_data, dataset, tmp_path):
    tab = make_tab(qtbot)
    empty = tmp_path / "empty"  # a dataset the form accepts (it exists) and the engine refuses
    empty.mkdir()
    fill_form(tab, empty, tmp_path / "bad1", epochs=1)
    first = tab.submit(tab.current_spec())
    tab.form.run_dir.setText(str(tmp_path / "bad2"))
    second = tab.submit(tab.current_spec())
    jobs = tab.controller.jobs
    assert jobs[first].status == "running" and jobs[second].status == "queued"  # one at a time
    wait_status(qtbot, jobs[second], ("failed",), timeout=60_000)
    for job_id in (first, second):
        assert jobs[job_id].status == "failed"
        assert "no clips found" in jobs[job_id].record.failure
    # Validation happens before anything starts: the engine's config rules, then the run folder.
    tab.form.extra_set.setText("model.no_such_key=1")
    assert tab.submit(tab.current_spec()) is None and "no_such_key" in tab.form_error.text()
    tab.form.extra_set.setText(FAST)
    tab.form.run_dir.setText(str(tmp_path / "bad1"))  # not empty any more
    assert tab.submit(tab.current_spec()) is None and "not empty" in tab.form_error.text()
    tab.dataset.path.setText(str(tmp_path / "nowhere"))
    qtbot.mouseClick(tab.add_button, Qt.MouseButton.LeftButton)
    assert "does not exist" in tab.form_error.text() and len(jobs) == 2

    # Cancel discards: a queued job leaves the queue, a running one is killed and its folder goes.
    fill_form(tab, dataset, tmp_path / "cancel_running", epochs=1)
    running = tab.submit(tab.current_spec())
    tab.form.run_dir.setText(str(tmp_path / "cancel_queued"))
    queued = tab.submit(tab.current_spec())
    assert jobs[running].status == "running" and jobs[queued].status == "queued"
    assert tab.monitor.state is jobs[queued] and tab.monitor.cancel_button.isEnabled()
    asked = []
    tab.monitor.confirm_discard = lambda run_dir: asked.append(run_dir) or answer[0]
    answer = [True]
    qtbot.mouseClick(tab.monitor.cancel_button, Qt.MouseButton.LeftButton)
    assert jobs[queued].status == "cancelled" and asked == []  # nothing on disk yet: no question
    pid = jobs[running].record.pid
    tab.select_job(running)
    answer[0] = False  # the user says no: nothing happens
    qtbot.mouseClick(tab.monitor.cancel_button, Qt.MouseButton.LeftButton)
    assert asked == [str(tmp_path / "cancel_running")] and jobs[running].status == "running"
    answer[0] = True
    qtbot.mouseClick(tab.monitor.cancel_button, Qt.MouseButton.LeftButton)
    wait_status(qtbot, jobs[running], ("cancelled",), timeout=10_000)
    assert not job_alive(pid, tmp_path / "cancel_running") and not (tmp_path / "cancel_running").exists()

    # A job that dies (here: killed from outside) is marked failed with the reason; the app goes on.
    tab.form.run_dir.setText(str(tmp_path / "killed"))
    killed = tab.submit(tab.current_spec())
    os.kill(jobs[killed].record.pid, signal.SIGKILL)
    wait_status(qtbot, jobs[killed], ("failed",), timeout=10_000)
    assert "SIGKILL" in jobs[killed].record.failure
    assert tab.monitor.state is jobs[killed] and tab.monitor.resume_button.isEnabled()
    tab.shutdown()


def test_train_dataset_check_shows_counts_unusable_and_silent_clips(qtbot, app_data, tmp_path):
    data = make_dataset(tmp_path / "data", per_class=2, broken=True, silent=True)
    tab = make_tab(qtbot)
    with qtbot.waitSignal(tab.checker.check_finished, timeout=60_000):
        tab.dataset.set_path(str(data))
    summary = tab.dataset.summary
    assert summary.class_counts == {"circle": 3, "square": 2}
    assert [Path(p).name for p, _ in summary.unusable] == ["broken.mp4"] and summary.unusable[0][1]
    assert [Path(p).name for p in summary.no_audio] == ["silent.mp4"]
    assert tab.dataset.skip_bad.isVisibleTo(tab)
    spec = tab.current_spec()
    assert spec.skip_bad_files and [Path(p).name for p in spec.excluded] == ["broken.mp4"]
    tab.form.run_dir.setText(str(tmp_path / "run"))
    tab.form.start_from.setCurrentIndex(tab.form.start_from.findData("backbones"))
    # fails once started (the form cannot know the folder is missing): only the manifest matters here
    tab.form.extra_set.setText(f"{FAST} init.from_model={tmp_path / 'no_such_model'}")
    job_id = tab.submit(tab.current_spec())
    manifest = tmp_path / "run" / "dataset_filtered.csv"
    assert (
        manifest.is_file()
        and "broken.mp4" not in manifest.read_text()
        and "silent.mp4" in manifest.read_text()
    )
    args = tab.controller.jobs[job_id].spec.to_train_args()
    assert args[args.index("--data") + 1] == str(manifest)
    wait_status(qtbot, tab.controller.jobs[job_id], ("failed",), timeout=60_000)
    tab.shutdown()
