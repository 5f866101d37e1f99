"""``imd-app --self-test`` end to end in a child process (offscreen), passing and failing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.gui


def _run(resources, tmp_path):
    env = dict(
        os.environ,
        IMD_RESOURCES=str(resources),
        QT_QPA_PLATFORM="offscreen",
        XDG_DATA_HOME=str(tmp_path / "xdg"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
    )
    return subprocess.run(
        [sys.executable, "-m", "imd_app", "--self-test", "--timeout", "120"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_self_test_passes_on_a_model_and_a_clip(tmp_path, tiny_model_dir, clip):
    resources = tmp_path / "resources"
    shutil.copytree(tiny_model_dir, resources / "demo_model")
    (resources / "demo_clips").mkdir()
    shutil.copy(clip, resources / "demo_clips" / "demo.mp4")
    out = _run(resources, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("imd-app self-test: ok (")


def test_self_test_fails_with_the_reason_on_stderr(tmp_path):
    out = _run(tmp_path / "nothing-here", tmp_path)
    assert out.returncode == 1
    assert "self-test: FAILED: no model at" in out.stderr
