"""The installed set is the locked set, and every compiled extension the app uses loads.

A range that resolved differently one day (torchaudio 2.11.1 beside torch 2.11.0) broke
every fresh install while cached machines stayed green; these tests make that class of
break fail CI instead of the user.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK_LINE = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked(path: Path) -> dict[str, str]:
    """``{name: version}`` of the lock's pins whose environment markers hold here."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = LOCK_LINE.match(line.strip())
        if not m:
            continue
        name, version, marker = m.groups()
        if marker is None or Marker(marker).evaluate():
            pins[canonicalize_name(name)] = version
    return pins


def test_every_locked_package_is_installed_at_its_locked_version():
    pins = locked(ROOT / "requirements" / "dev.lock")
    assert len(pins) > 50, "the lock parser found too few pins"
    wrong = {}
    for name, version in pins.items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            wrong[name] = (version, "missing")
            continue
        if have.split("+")[0] != version.split("+")[0]:  # torch reports 2.11.0+cu130 for 2.11.0
            wrong[name] = (version, have)
    assert not wrong, (
        f"installed set differs from requirements/dev.lock (run bash scripts/setup.sh --dev): {wrong}"
    )


def test_app_lock_is_the_dev_lock_less_the_dev_tools():
    app = locked(ROOT / "requirements" / "app.lock")
    dev = locked(ROOT / "requirements" / "dev.lock")
    assert {k: v for k, v in dev.items() if k in app} == app


def test_pyproject_ranges_admit_the_locked_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = locked(ROOT / "requirements" / "dev.lock")
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a dependency but not in the lock; run bash scripts/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req} does not admit locked {pins[name]}"
        )


def test_torch_trio_is_one_build():
    import torch
    import torchaudio
    import torchvision

    assert torchaudio.__version__.split("+")[0] == torch.__version__.split("+")[0]
    assert torchvision.__version__.startswith("0.26.")


@pytest.mark.parametrize(
    "module",
    [
        "torch._C",
        "av._core",
        "cv2",
        "numpy._core._multiarray_umath",
        "safetensors._safetensors_rust",
        "tokenizers",
        "PySide6.QtCore",
        "PySide6.QtGui",
        "PySide6.QtWidgets",
        "shiboken6",
        "onnx.onnx_cpp2py_export",
        "matplotlib.ft2font",
        "yaml._yaml",
        "kernels._rust",
    ],
)
def test_compiled_extension_loads(module):
    importlib.import_module(module)


def test_torchaudio_native_libraries_load_beside_this_torch():
    """libtorchaudio is loaded by torch.ops.load_library: where the 2.11.1 break showed."""
    import torchaudio._extension as ext

    assert ext._IS_TORCHAUDIO_EXT_AVAILABLE, "torchaudio's _torchaudio library did not load beside this torch"
    lib = Path(ext.__file__).parent.parent / "lib"
    import torch

    for name in ("libtorchaudio", "_torchaudio"):
        found = sorted(lib.glob(f"{name}*.so"))
        assert found, f"{name} missing from {lib}"
        torch.ops.load_library(str(found[0]))  # raises OSError on an undefined symbol


def test_torchaudio_kernels_run_beside_this_torch():
    import torch
    import torchaudio.compliance.kaldi as kaldi
    import torchaudio.functional as taf

    wave = torch.sin(torch.linspace(0, 2000, 16000)).unsqueeze(0)
    assert kaldi.fbank(wave, num_mel_bins=64, sample_frequency=16000).shape[1] == 64
    assert taf.resample(wave, 16000, 8000).shape[-1] == 8000


def test_sounddevice_loads_portaudio():
    import ctypes.util

    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("the system library libportaudio2 is not installed (apt-get install libportaudio2)")
    import sounddevice

    assert sounddevice.get_portaudio_version()[0] > 0


def test_torchvision_ops_run_beside_this_torch():
    import torch
    import torchvision

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0]
