"""The player's file decoding: in-process (what it does) against a sandbox pipe (what it did).

Times one unpaced pass over a clip three ways and prints events per second and CPU
seconds per second of media (every thread and process involved):

* ``in-process``: :class:`imd_app.media_reader.FileReader`, the player's reader thread
  feeding its small queue, read here as the decode worker reads it;
* ``sandbox pipe``: the same :class:`~imd_core.media.live.FilePlayback` pass in a
  :class:`~imd_core.media.sandbox.DecodeSandbox`, every frame and audio block pickled
  through its pipe in lockstep (the player's old path, less its per-event deadline refund);

plus the start-up of a sandbox process (spawn, imports, ready) and a probe both ways.

    .venv/bin/python bench/bench_playback.py [--clip FILE] [--seconds 20] [--sample-rate 48000]

Without ``--clip`` it writes a 640x360 30 fps textured H.264/AAC clip with
``tests/media_factory.py``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Generator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

AUDIO_BLOCK_SECONDS = 0.1


def _pipe_events(path: str, sample_rate: int) -> Generator[tuple, None, float]:
    """Runs in the sandbox: the player's events; returns the CPU seconds this process spent."""
    from imd_core.media.live import FilePlayback, VideoFrame

    cpu = time.process_time()
    playback = FilePlayback(path, sample_rate=sample_rate, block_seconds=AUDIO_BLOCK_SECONDS, realtime=False)
    for item in playback:
        kind = "video" if isinstance(item, VideoFrame) else "audio"
        yield kind, float(item.media_time), item.frame if kind == "video" else item.samples
    return time.process_time() - cpu


def _nothing() -> None:
    return None


def in_process(path: str, sample_rate: int) -> tuple[int, float, float]:
    """(events, wall seconds, CPU seconds of this process, every thread)."""
    from imd_app.media_reader import END, FileReader
    from imd_core.media.probe import probe

    media = probe(path)
    cpu, t0 = time.process_time(), time.perf_counter()
    reader = FileReader(path, media, sample_rate=sample_rate, timeout=60.0)
    events = 0
    while (event := reader.read(0.05)) is not END:
        events += event is not None
    reader.close()
    return events, time.perf_counter() - t0, time.process_time() - cpu


def sandbox_pipe(box, path: str, sample_rate: int) -> tuple[int, float, float]:
    """(events, wall seconds, CPU seconds of this process plus the sandbox's)."""
    cpu, t0 = time.process_time(), time.perf_counter()
    items = box.stream(_pipe_events, path, sample_rate)
    events = 0
    while True:
        try:
            next(items)
        except StopIteration as stop:
            child_cpu = stop.value
            break
        events += 1
    return events, time.perf_counter() - t0, time.process_time() - cpu + child_cpu


def median_of(runs: int, fn: Callable[[], tuple[int, float, float]]) -> tuple[int, float, float]:
    results = [fn() for _ in range(runs)]
    return results[0][0], statistics.median(r[1] for r in results), statistics.median(r[2] for r in results)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the clip written without --clip")
    ap.add_argument("--sample-rate", type=int, default=48000, help="the player's output rate")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from imd_core.media.probe import probe
    from imd_core.media.sandbox import DecodeSandbox

    tmp = tempfile.TemporaryDirectory()
    clip = args.clip
    if clip is None:
        from tests.media_factory import write_clip

        clip = str(
            write_clip(
                Path(tmp.name) / "bench.mp4",
                seconds=args.seconds,
                fps=30,
                width=640,
                height=360,
                pattern="texture",
                sample_rate=48000,
            )
        )
    media = probe(clip)
    seconds = media.duration or args.seconds
    print(
        f"{datetime.date.today()}  {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}, Python {platform.python_version()}"
    )
    print(
        f"clip: {media.width}x{media.height} {media.fps:g} fps, {seconds:.1f} s, audio "
        f"{media.sample_rate} Hz -> {args.sample_rate} Hz mono blocks of {AUDIO_BLOCK_SECONDS} s\n"
    )

    starts = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        with DecodeSandbox(60.0) as box:
            box.call(_nothing)
            starts.append(time.perf_counter() - t0)
    print(f"sandbox process start-up (spawn, imports, first call): median {statistics.median(starts):.2f} s")

    with DecodeSandbox(60.0) as box:
        box.call(_nothing)
        probe_in = statistics.median(_timed(lambda: probe(clip)) for _ in range(5))
        probe_box = statistics.median(_timed(lambda: box.call(probe, clip)) for _ in range(5))
        print(f"probe: in-process {probe_in * 1000:.1f} ms, in a warm sandbox {probe_box * 1000:.1f} ms\n")

        in_process(clip, args.sample_rate)  # warm both paths up (decoders, page cache)
        sandbox_pipe(box, clip, args.sample_rate)
        rows = {
            "in-process": median_of(args.runs, lambda: in_process(clip, args.sample_rate)),
            "sandbox pipe": median_of(args.runs, lambda: sandbox_pipe(box, clip, args.sample_rate)),
        }
    print(f"{'path':<14} {'events':>7} {'events/s':>9} {'wall s':>7} {'CPU s':>6} {'CPU s per media s':>18}")
    for name, (events, wall, cpu) in rows.items():
        print(f"{name:<14} {events:>7} {events / wall:>9.0f} {wall:>7.2f} {cpu:>6.2f} {cpu / seconds:>18.3f}")
    return 0


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
