"""Clips/s of a ClipDataset in a DataLoader: decode in-process vs in the loading process's
decode sandbox (imd_core.data.dataset.process_sandbox), num_workers 0 and 1.

Run from the repository root (docs/PERFORMANCE.md, "Decoding under a deadline")::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_loader_sandbox.py [--work DIR]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

import torch  # noqa: E402

from imd_core.data.dataset import ClipDataset, collate_clips  # noqa: E402
from imd_core.data.manifest import ClipEntry, DatasetIndex  # noqa: E402
from imd_core.data.transforms import ClipPreprocessor  # noqa: E402


class InProcess(ClipDataset):
    """The same dataset, every job run in this process (what the loaders did before)."""

    def _in_sandbox(self, job, path, *args, **kwargs):
        return job(path, *args, **kwargs)


def clips(root: Path) -> dict[str, tuple[list[str], ClipPreprocessor]]:
    from tests.core.train.conftest import make_dataset
    from tests.media_factory import write_clip

    if not (root / "tiny").exists():
        make_dataset(root / "tiny")
        (root / "real").mkdir(parents=True)
        for i in range(4):
            write_clip(
                root / "real" / f"r{i}.mp4",
                10.0,
                fps=25,
                width=640,
                height=360,
                audio_hz=440.0 + 50 * i,
                sample_rate=44100,
                pattern="texture",
                seed=i,
            )
    return {
        "tiny test clips (48x48, 0.8 s; T=4, 32 px)": (
            sorted(str(p) for p in (root / "tiny").glob("*/*.mp4")),
            ClipPreprocessor(num_frames=4, image_size=32, audio_seconds=0.64),
        ),
        "resources/demo_clips (160x160, ~3.5 s; T=8, 112 px)": (
            sorted(str(p) for p in Path("resources/demo_clips").glob("*.mp4")),
            ClipPreprocessor(num_frames=8, image_size=112, audio_seconds=3.0),
        ),
        "10 s 640x360 H.264 + 44.1 kHz AAC (T=8, 224 px)": (
            sorted(str(p) for p in (root / "real").glob("*.mp4")),
            ClipPreprocessor(num_frames=8, image_size=224, audio_seconds=10.24),
        ),
    }


def epoch(cls, paths, pre, workers: int, items: int) -> tuple[float, float]:
    """(seconds to the first batch, clips/s after it) of one pass over ``items`` clips."""
    entries = tuple(ClipEntry(paths[i % len(paths)], "x", 0) for i in range(items))
    ds = cls(DatasetIndex("bench", ("x",), entries, "csv"), pre, train=True, timeout=300)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=collate_clips)
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    t1 = time.perf_counter()
    n = sum(b["batch_size"] for b in it)
    return t1 - t0, n / (time.perf_counter() - t1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/imd_bench_loader"), help="where the clips are made"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, (paths, pre) in clips(args.work).items():
        items = 44 if "10 s" in name else 84
        print(f"\n{name}: {items} clips, batch 4, train=True (first batch excluded)")
        for workers in (0, 1):
            rows = {}
            for cls in (
                InProcess,
                ClipDataset,
                InProcess,
                ClipDataset,
                InProcess,
                ClipDataset,
            ):  # interleaved
                first, rate = epoch(cls, paths, pre, workers, items)
                rows.setdefault(cls.__name__, []).append((first, rate))
            a = statistics.median(r for _, r in rows["InProcess"])
            b = statistics.median(r for _, r in rows["ClipDataset"])
            fa = statistics.median(f for f, _ in rows["InProcess"])
            fb = statistics.median(f for f, _ in rows["ClipDataset"])
            print(
                f"  num_workers={workers}: in-process {a:7.1f} clips/s ({1000 / a:6.1f} ms/clip), "
                f"sandbox {b:7.1f} clips/s ({1000 / b:6.1f} ms/clip): {1000 / b - 1000 / a:+.1f} ms/clip; "
                f"first batch {fa:.2f} s vs {fb:.2f} s"
            )


if __name__ == "__main__":
    main()
