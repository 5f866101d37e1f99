"""The one error hierarchy of IMD Studio.

Every message says what went wrong *and* what to do about it, in one line, so the CLI
can print it as is and the app can show it in a dialog.
"""


class ImdError(Exception):
    """Base of every error IMD Studio raises on purpose.

    ``exit_code`` is what the ``imd`` CLI exits with when this error reaches it.
    """

    exit_code = 1


class ConfigError(ImdError, ValueError):
    """A configuration value or key is invalid (unknown key, bad choice, bad range)."""

    exit_code = 2


class CheckpointError(ImdError):
    """A model folder is missing, incomplete, unsafe (pickles) or incompatible."""


class DecodeError(ImdError):
    """A media file cannot be decoded (missing, empty, truncated, corrupt, not media)."""

    exit_code = 3


class DataError(ImdError):
    """A dataset, manifest or label list is unusable."""

    exit_code = 3


class DeviceError(ImdError):
    """A camera, sound device or compute device is missing or cannot be opened."""


class TrainingError(ImdError):
    """A training run cannot start or continue (bad run folder, nothing to resume)."""
