"""The decoded-frame cache (``data.frame_cache``): cached epochs yield the same tensors
as decoding, evaluation items equal plain ``ClipDataset`` items, and a run uses it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imd_core.data.dataset import ClipDataset, content_hash
from imd_core.data.frame_times import grid_times
from imd_core.data.manifest import load_dataset_index
from imd_core.data.transforms import ClipPreprocessor
from imd_core.errors import ConfigError
from imd_core.train.config import load_train_config
from imd_core.train.data_order import epoch_seed
from imd_core.train.frame_cache import FrameCacheDataset, grid_pick
from tests.core.train.conftest import write_recipe

PRE = ClipPreprocessor(num_frames=4, image_size=32, audio_seconds=0.64, train_scale=(1.0, 1.3))
KEYS = ("rgb", "motion", "fbank", "audio_present", "label", "index", "cache_key")


def epoch_items(ds, epoch: int) -> list[dict]:
    """Every item of an epoch, seeded per (seed, epoch, index) as the engine's workers do."""
    out = []
    for i in range(len(ds)):
        ds.reseed(epoch_seed(7, epoch, i))
        out.append(ds[i])
    return out


def assert_same(a: list[dict], b: list[dict]) -> None:
    for x, y in zip(a, b, strict=True):
        for k in KEYS:
            if isinstance(x[k], torch.Tensor):
                assert torch.equal(x[k], y[k]), (k, x["index"])
            else:
                assert x[k] == y[k], (k, x["index"])


def test_grid_covers_each_segment_and_picks_one_candidate_per_segment():
    times = grid_times(PRE, 1.0, 3.0, 4).reshape(4, 4)  # (T segments, 4 candidates)
    seg = np.floor((times - 1.0) / 0.5)
    assert (seg == np.arange(4)[:, None]).all()
    idx = grid_pick(PRE, 4, np.random.default_rng(0))
    assert (idx // 4 == np.arange(4)).all()
    dense = ClipPreprocessor.from_dict({**PRE.to_dict(), "sampling": "dense", "dense_interval": 0.1})
    t = grid_times(dense, 0.0, 2.0, 3).reshape(3, 4)
    np.testing.assert_allclose(np.diff(t, axis=1), 0.1)
    assert grid_pick(dense, 3, np.random.default_rng(1)).tolist() in (
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 10, 11],
    )


def test_cached_training_epochs_equal_decoding_and_evaluation_equals_clipdataset(tmp_path, tiny_data):
    index = load_dataset_index(tiny_data)
    cache = tmp_path / "frames"
    # training, with intra-class audio swaps (donors' audio comes from their entries)
    kw = {"cross_modal_p": 0.5, "seed": 7}
    reference = epoch_items(FrameCacheDataset(index, PRE, True, cache_dir=None, frame_grid=3, **kw), 1)
    filling = FrameCacheDataset(index, PRE, True, cache_dir=cache, frame_grid=3, **kw)
    first = epoch_items(filling, 1)
    assert filling.misses == len(index) and filling.hits > 0  # donors hit entries made earlier
    assert len(list(cache.glob("*/*.json"))) == len(index)
    reading = FrameCacheDataset(index, PRE, True, cache_dir=cache, frame_grid=3, **kw)  # a new process
    again = epoch_items(reading, 1)
    assert reading.misses == 0
    assert_same(first, reference)
    assert_same(again, reference)
    own = [content_hash(e.path) for e in index.entries]
    swapped = [x for x in first if not x["cache_key"].startswith(own[x["index"]])]
    assert 0 < len(swapped) < len(first)  # the swap path was exercised, and not only it
    # another epoch draws other candidates and crops from the same entries
    other = epoch_items(reading, 2)
    assert reading.misses == 0 and any(
        not torch.equal(a["rgb"], b["rgb"]) for a, b in zip(again, other, strict=True)
    )
    assert all(a["rgb"].shape == (4, 3, 32, 32) for a in other)

    # evaluation (single and multi-view): exactly what ClipDataset decodes
    for views in ((1, 1), (2, 3)):
        pre = ClipPreprocessor.from_dict({**PRE.to_dict(), "test_clips": views[0], "test_crops": views[1]})
        multi = views != (1, 1)
        plain = [ClipDataset(index, pre, False, multi_view=multi)[i] for i in range(len(index))]
        ds = FrameCacheDataset(index, pre, False, cache_dir=cache, multi_view=multi)
        cached = [ds[i] for i in range(len(index))]
        again = [
            FrameCacheDataset(index, pre, False, cache_dir=cache, multi_view=multi)[i]
            for i in range(len(index))
        ]
        assert ds.misses == len(index)
        assert_same(cached, plain)
        assert_same(again, plain)


def test_frame_cache_config_and_a_run_that_uses_it(tmp_path, tiny_data, tiny_savld):
    cfg = load_train_config("tiny", ["data.frame_cache=auto", "data.frame_grid=2"])
    assert cfg.data.frame_cache == "auto" and cfg.data.frame_grid == 2
    with pytest.raises(ConfigError, match="clip_seconds"):
        load_train_config("tiny", ["data.frame_cache=auto", "clip_seconds=2"])
    with pytest.raises(ConfigError, match="frame_grid"):
        load_train_config("tiny", ["data.frame_cache=auto", "data.frame_grid=0"])
    with pytest.raises(ConfigError):
        load_train_config("tiny", ["data.frame_cahce=auto"])

    from imd_core.cli.main import main

    recipe = write_recipe(tmp_path / "r.json", tiny_savld, epochs=2, data={"frame_cache": "auto"})
    run = tmp_path / "run"
    assert main(["train", "--config", str(recipe), "--data", str(tiny_data), "--out", str(run)]) == 0
    entries = list((run / "frame_cache").glob("*/*.json"))
    assert len(entries) == 18  # every training and validation clip, decoded once
    assert json.loads((run / "config.json").read_text())["data"] == {
        "frame_cache": "auto",
        "frame_grid": 4,
        "probe_timeout": 10.0,
        "loader_timeout": 300.0,
    }
    # the epoch events count the cache's hits and misses across training and validation
    from imd_core.train.events import read_events

    events = read_events(run / "events.jsonl")
    started = next(e for e in events if e["event"] == "run_started")
    per_epoch = started["steps_per_epoch"] * 4 + started["val_clips"]  # batch 4, no swap donors
    first, second = (e["frame_cache"] for e in events if e["event"] == "epoch")
    assert first == {"hits": 0, "misses": per_epoch}  # nothing cached yet: every item decoded
    assert second["hits"] + second["misses"] == per_epoch
    # epoch 2 decodes only the training clips epoch 1 left out (drop_last), validation is all hits
    assert first["misses"] + second["misses"] == len(entries)
    assert second["hits"] >= started["val_clips"] + per_epoch - started["val_clips"] - (18 - per_epoch)
