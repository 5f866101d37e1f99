"""ClipDataset items, bad-file handling, cross-modality swap and the worker DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imd_core.data.augment import CrossModalSwap
from imd_core.data.dataset import ClipDataset, collate_clips, content_hash, make_loader
from imd_core.data.manifest import load_dataset_index
from imd_core.data.transforms import ClipPreprocessor
from imd_core.errors import ConfigError, DataError
from tests.media_factory import write_broken, write_clip

PRE = ClipPreprocessor(num_frames=4, image_size=32, audio_seconds=1.0, test_clips=2, test_crops=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    rows = ["path,label,start,end"]
    for cls, hz in (("low", 300.0), ("high", 2000.0)):
        for i in range(3):
            name = f"{cls}{i}.mp4"
            write_clip(root / name, 1.2, audio_hz=hz + 100 * i, width=48, height=40)  # distinct content
            rows.append(f"{name},{cls},,")
    write_clip(root / "quiet.mp4", 1.2, audio_hz=None, width=48, height=40)
    rows.append("quiet.mp4,low,,")
    write_broken(root / "bad.mp4", "garbage")
    rows.append("bad.mp4,high,,")
    write_clip(root / "long.mp4", 3.0, width=48, height=40)
    rows.append("long.mp4,low,1.0,2.0")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return load_dataset_index(root)


def _by_name(index, name):
    return next(i for i, e in enumerate(index.entries) if e.path.endswith("/" + name))


def test_items_have_the_contract_shapes(data):
    ds = ClipDataset(data, PRE, train=True, seed=0)
    item = ds[_by_name(data, "low0.mp4")]
    assert item["rgb"].shape == (4, 3, 32, 32) and item["rgb"].dtype == torch.float32
    assert item["motion"].shape == (4, 3, 32, 32)
    assert item["fbank"].shape == (100, 128) and item["audio_present"].item() is True
    assert item["label"].item() == data.labels.index("low") and item["skipped"] == []
    quiet = ds[_by_name(data, "quiet.mp4")]
    assert quiet["audio_present"].item() is False


def test_cache_key_is_content_plus_window(data, tmp_path):
    ds = ClipDataset(data, PRE, train=False)
    i = _by_name(data, "long.mp4")
    key = ds[i]["cache_key"]
    assert key == f"{content_hash(data.entries[i].path)}@1.000-2.000"
    assert ds[i]["cache_key"] == key  # stable
    copy = tmp_path / "renamed copy.mp4"
    copy.write_bytes(open(data.entries[i].path, "rb").read())
    assert content_hash(str(copy)) == content_hash(data.entries[i].path)
    assert ds[_by_name(data, "low0.mp4")]["cache_key"] != ds[_by_name(data, "high0.mp4")]["cache_key"]


def test_windows_are_respected(data):
    ds = ClipDataset(data, PRE.replace(num_frames=2), train=False)
    item = ds.load(_by_name(data, "long.mp4"))
    assert item["rgb"].shape[0] == 2
    sub = ClipDataset(data, PRE, train=True, clip_seconds=0.5, seed=1)
    for _ in range(3):
        start, end = sub._window(_by_name(data, "low0.mp4"))
        assert end - start == pytest.approx(0.5) and 0 <= start and end <= 1.2 + 1e-6


def test_bad_files_are_replaced_in_training_and_skipped_in_eval(data):
    bad = _by_name(data, "bad.mp4")
    train = ClipDataset(data, PRE, train=True)
    item = train[bad]
    assert (
        item["index"] != bad and item["skipped"] == [bad] and "not a media file" in item["skipped_reasons"][0]
    )
    ev = ClipDataset(data, PRE, train=False, multi_view=True)
    batch = collate_clips([ev[bad], ev[_by_name(data, "high0.mp4")]])
    assert batch["batch_size"] == 1 and batch["skipped"] == [bad]
    assert batch["rgb"].shape == (1, 6, 4, 3, 32, 32) and batch["fbank"].shape == (1, 100, 128)
    empty = collate_clips([ev[bad]])
    assert empty["batch_size"] == 0 and "rgb" not in empty


def test_all_bad_raises_a_data_error(tmp_path):
    write_broken(tmp_path / "x.mp4", "empty")
    write_broken(tmp_path / "y.mp4", "not-media")
    (tmp_path / "m.csv").write_text("path,label\nx.mp4,a\ny.mp4,b\n")
    ds = ClipDataset(load_dataset_index(tmp_path / "m.csv"), PRE, train=True)
    with pytest.raises(DataError, match="imd data check"):
        ds[0]


def test_cross_modal_swap_uses_same_class_audio(data):
    labels = [e.label_index for e in data.entries]
    swap = CrossModalSwap(labels, 1.0)
    rng = np.random.default_rng(0)
    i = _by_name(data, "high0.mp4")
    donors = {swap.donor(i, rng) for _ in range(30)}
    assert i not in donors and all(labels[d] == labels[i] for d in donors) and len(donors) > 1
    assert CrossModalSwap(labels, 0.0).donor(i, rng) is None
    with pytest.raises(ConfigError):
        CrossModalSwap(labels, 1.5)

    ds = ClipDataset(data, PRE, train=True, cross_modal_p=1.0, seed=0)
    own = ClipDataset(data, PRE, train=False)[i]["cache_key"]
    item = ds[i]
    ev = ClipDataset(data, PRE, train=False)
    donor_keys = {ev[d].get("cache_key") for d in range(len(data)) if labels[d] == labels[i]}
    assert item["cache_key"] != own and item["cache_key"] in donor_keys | {own}
    # The swapped audio is a 2.1 or 2.2 kHz tone (same class), never a 300 Hz one.
    lo = ClipDataset(data, PRE, train=False)[_by_name(data, "low0.mp4")]["fbank"]
    hi = ClipDataset(data, PRE, train=False)[_by_name(data, "high1.mp4")]["fbank"]
    assert (item["fbank"] - hi).abs().mean() < (item["fbank"] - lo).abs().mean()


def test_loader_with_worker_processes(data):
    ds = ClipDataset(data, PRE, train=True, seed=0)
    loader = make_loader(ds, batch_size=3, num_workers=2, pin_memory=False)
    seen, skipped = 0, []
    for batch in loader:
        assert batch["rgb"].shape == (3, 4, 3, 32, 32) and batch["label"].dtype == torch.long
        assert len(batch["cache_key"]) == 3
        seen += batch["batch_size"]
        skipped += batch["skipped"]
    assert seen == 9 and skipped == [_by_name(data, "bad.mp4")]  # counted once, across workers
    ev = make_loader(ClipDataset(data, PRE, train=False), batch_size=4, num_workers=0)
    assert sum(b["batch_size"] for b in ev) == len(data) - 1
