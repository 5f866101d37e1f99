"""imd_core must never import Qt; imd_app may import imd_core."""

import pkgutil
import subprocess
import sys

import imd_core


def _core_modules() -> list[str]:
    mods = pkgutil.walk_packages(imd_core.__path__, "imd_core.")
    return [m.name for m in mods if not m.name.endswith("__main__")]


def test_importing_every_core_module_loads_no_qt():
    mods = _core_modules()
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph', 'shiboken6'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imd_core pulled in Qt modules: {out.stdout.strip()}"


def test_core_sources_do_not_mention_qt_imports():
    import pathlib

    root = pathlib.Path(imd_core.__file__).parent
    offenders = [
        str(p)
        for p in root.rglob("*.py")
        for line in p.read_text(encoding="utf-8").splitlines()
        if line.lstrip().startswith(("import PySide6", "from PySide6", "import pyqtgraph", "from pyqtgraph"))
    ]
    assert offenders == []
