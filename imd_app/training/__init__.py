"""The Training tab: fine-tuning jobs run as ``imd train`` processes, monitored live.

``TrainingTab`` (in :mod:`imd_app.training.tab`) is what the main window adds;
``imd_train_command`` is how any part of the app (or packaging) launches ``imd train``.
"""

from imd_app.training.command import imd_command, imd_train_command

__all__ = ["imd_command", "imd_train_command"]
