"""IMD Studio desktop app (PySide6). Imports ``imd_core``; ``imd_core`` never imports this."""

from imd_core import __version__

__all__ = ["__version__"]
