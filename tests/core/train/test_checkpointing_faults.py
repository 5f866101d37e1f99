"""Resume state that is incomplete, and a disk that fills while it is written (issue 17, item 6)."""

from __future__ import annotations

import errno
import io

import pytest
import torch

from imd_core.errors import CheckpointError, TrainingError
from imd_core.model.checkpoint import load_model
from imd_core.model.imd_model import IMDModel
from imd_core.train.checkpointing import STATE_FILE, load_training_state, rng_state, save_model_folder
from tests.core.model.conftest import tiny_config


def _state() -> dict:
    return {
        "version": 1, "epoch": 0, "batch_in_epoch": 0, "step": 3, "optimizer": {}, "scheduler": {},
        "rng": rng_state(), "progress": {},
    }  # fmt: skip


@pytest.mark.parametrize("drop", ["epoch", "step", "optimizer", "rng", "progress", "rng.numpy_keys"])
def test_resume_state_missing_a_key_is_one_line(tmp_path, drop):
    state = _state()
    if drop.startswith("rng."):
        del state["rng"][drop[4:]]
    else:
        del state[drop]
    torch.save(state, tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError, match="is incomplete") as info:
        load_training_state(tmp_path)
    assert drop.split(".")[-1] in str(info.value)


def test_complete_resume_state_loads(tmp_path):
    torch.save(_state(), tmp_path / STATE_FILE)
    assert load_training_state(tmp_path)["step"] == 3


class _FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails like a full disk (ENOSPC)."""

    def __init__(self, fh, room: int) -> None:
        self.fh, self.room = fh, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.fh.write(data)


def test_disk_full_while_saving_the_resume_state_is_one_line_and_keeps_last(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = IMDModel(tiny_config(), load_pretrained=False)
    save_model_folder(model, tmp_path / "last", savld=None, state=_state())
    real_save = torch.save

    def save_on_full_disk(obj, path, *args, **kwargs):
        with open(path, "wb") as fh:
            real_save(obj, _FullDisk(fh, 1000), *args, **kwargs)  # torch reports "unexpected pos"

    monkeypatch.setattr(torch, "save", save_on_full_disk)
    with pytest.raises(TrainingError, match="disk full while saving .*run again with --resume") as info:
        save_model_folder(model, tmp_path / "last", savld=None, state=_state())
    assert "\n" not in str(info.value) and "unexpected pos" not in str(info.value)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # no half-written temporary folder
    assert load_training_state(tmp_path / "last")["step"] == 3
    load_model(tmp_path / "last")
