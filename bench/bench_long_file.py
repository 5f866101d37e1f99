"""Peak memory of a default whole-clip ``imd predict`` on long files (issue 17, item 3).

Writes synthetic files of 1 min, 10 min, 1 h and 2 h (160x120 H.264 at 5 fps plus 16 kHz
mono AAC, written with PyAV, cached under ``/tmp/imd_bench_long``), then runs
``imd predict FILE --json`` on each in a child process and samples the resident memory
of its whole process tree (the CLI plus its decoding worker) every 50 ms from
``/proc``. Prints one row per file: the tree's peak RSS, the peak (``VmHWM``) of the
largest child process (the decoding worker, where the file is decoded) and the wall time.

    .venv/bin/python bench/bench_long_file.py                 # all four lengths
    .venv/bin/python bench/bench_long_file.py --minutes 1 10 60
    .venv/bin/python bench/bench_long_file.py --minutes 1 10 --repo /tmp/imd_head   # an older checkout
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = Path("/tmp/imd_bench_long")


def long_file(minutes: float) -> Path:
    """The cached synthetic file of ``minutes`` (written on first use)."""
    from tests.media_factory import write_clip

    path = CACHE / f"long_{minutes:g}min.mp4"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("tmp_" + path.name)
        t0 = time.perf_counter()
        write_clip(tmp, seconds=minutes * 60.0, fps=5, width=160, height=120, sample_rate=16000, channels=1,
                   gop=50)  # fmt: skip
        tmp.rename(path)
        print(
            f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return path


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(path: Path, extra: list[str], repo: Path = ROOT) -> tuple[float, float, float, int]:
    """Runs ``imd predict PATH --json``; returns (tree peak MB, worker peak MB, seconds, exit code)."""
    cmd = [sys.executable, "-m", "imd_core", "predict", str(path), "--json", "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tree_peak = proc_peak = 0
    while proc.poll() is None:
        pids, todo = [], [proc.pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            todo += _children(p)
        # A child caught between fork and exec still shows its parent's pages: not counted.
        parent = _cmdline(proc.pid)
        pids = pids[:1] + [p for p in pids[1:] if _cmdline(p) != parent]
        tree_peak = max(tree_peak, sum(_status_kb(p, "VmRSS") for p in pids))
        proc_peak = max([proc_peak] + [_status_kb(p, "VmHWM") for p in pids[1:]])  # the decoding worker(s)
        time.sleep(0.05)
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"  exit {proc.returncode}: {err.strip()[-500:]}", file=sys.stderr)
    elif not out.strip():
        print("  no result printed", file=sys.stderr)
    return tree_peak / 1024, proc_peak / 1024, seconds, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60, 120])
    ap.add_argument(
        "--repo", type=Path, default=ROOT, help="run this checkout's imd_core (a before/after comparison)"
    )
    ap.add_argument("extra", nargs="*", help="more `imd predict` arguments (after --)")
    args = ap.parse_args()
    rows = []
    for minutes in args.minutes:
        path = long_file(minutes)
        tree, single, seconds, code = measure(path, args.extra, args.repo)
        rows.append((minutes, path.stat().st_size / 1e6, tree, single, seconds, code))
        print(
            f"{minutes:g} min: tree peak {tree:.0f} MB, worker peak {single:.0f} MB, {seconds:.1f} s",
            flush=True,
        )
    print()
    print("| file | size MB | peak RSS, process tree (MB) | peak RSS, decoding worker (MB) | wall s | exit |")
    print("|---|---:|---:|---:|---:|---:|")
    for minutes, size, tree, single, seconds, code in rows:
        print(f"| {minutes:g} min | {size:.1f} | {tree:.0f} | {single:.0f} | {seconds:.1f} | {code} |")
    return 0 if all(r[-1] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
