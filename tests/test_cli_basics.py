import subprocess
import sys

from imd_core import __version__


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_imd_help_and_version():
    out = _run("-m", "imd_core", "--help")
    assert out.returncode == 0 and "usage: imd" in out.stdout
    out = _run("-m", "imd_core", "--version")
    assert out.returncode == 0 and __version__ in out.stdout


def test_imd_app_help_and_version():
    out = _run("-m", "imd_app", "--help")
    assert out.returncode == 0 and "usage: imd-app" in out.stdout
    out = _run("-m", "imd_app", "--version")
    assert out.returncode == 0 and __version__ in out.stdout


def test_unknown_subcommand_is_a_usage_error():
    out = _run("-m", "imd_core", "no-such-command")
    assert out.returncode == 2
