"""``FrameTimes``, the torch-free sampling rule a decode sandbox runs, is
``ClipPreprocessor.sample_times``: same times, same random stream, and it pickles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from imd_core.data.frame_times import FrameTimes, GridTimes, grid_times
from imd_core.data.transforms import ClipPreprocessor
from imd_core.errors import DataError


@pytest.mark.parametrize("sampling", ["uniform", "dense"])
def test_frame_times_are_the_preprocessors_times_and_draws(sampling):
    pre = ClipPreprocessor(num_frames=5, test_clips=3, sampling=sampling, dense_interval=0.2)
    windows = [(0.0, 1.0), (1.5, 9.25), (3.0, 3.4), (0.1, 0.10001)]
    for train, multi_view, whole_clip in [
        (t, m, w) for t in (False, True) for m in (False, True) for w in (False, True)
    ]:
        times = pickle.loads(
            pickle.dumps(FrameTimes.of(pre, train=train, multi_view=multi_view, whole_clip=whole_clip))
        )
        ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
        for start, end in windows:
            want = pre.sample_times(
                start, end, train=train, rng=theirs, multi_view=multi_view, whole_clip=whole_clip
            )
            assert np.array_equal(times(start, end, ours), want), (train, multi_view, whole_clip, start, end)
        assert ours.random() == theirs.random()  # the same draws: the streams go on alike
    with pytest.raises(DataError):
        FrameTimes.of(pre, train=False)(2.0, 2.0)


def test_grid_times_pick_selects_candidates():
    pre = ClipPreprocessor(num_frames=4)
    pick = np.array([1, 6, 8, 15])
    times = pickle.loads(pickle.dumps(GridTimes.of(pre, 4, pick)))
    assert np.array_equal(times(1.0, 3.0), grid_times(pre, 1.0, 3.0, 4)[pick])
    assert np.array_equal(GridTimes.of(pre, 4)(1.0, 3.0), grid_times(pre, 1.0, 3.0, 4))
