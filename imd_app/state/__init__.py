"""State objects: typed values on the GUI thread that emit one signal per change.

Widgets read them and send requests; controllers write them. No state object does I/O.
"""

from imd_app.state.batch_state import BatchItem, BatchState
from imd_app.state.live_state import LiveState
from imd_app.state.model_state import ModelState
from imd_app.state.player_state import PlayerState

__all__ = ["BatchItem", "BatchState", "LiveState", "ModelState", "PlayerState"]
