"""PyInstaller runtime hook of the imd-app bundle (see build.spec), run before the app.

sounddevice looks PortAudio up with ``ctypes.util.find_library("portaudio")``, which on
Linux searches only the system's ldconfig cache; build.spec carries libportaudio.so.2
in the bundle, so point the lookup there first and the app plays sound on a machine
without libportaudio2 installed.
"""

import ctypes.util
import glob
import os
import sys

_system_find_library = ctypes.util.find_library


def _bundle_first_find_library(name):
    root = getattr(sys, "_MEIPASS", None)
    if root and sys.platform.startswith("linux"):
        hits = sorted(glob.glob(os.path.join(root, f"lib{name}.so*")))
        if hits:
            return hits[0]
    return _system_find_library(name)


ctypes.util.find_library = _bundle_first_find_library
