"""``bench/bench_inference.py gpu --quick`` dry-run on the CPU, so the GPU run cannot die of a typo."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_inference.py"


@pytest.mark.slow
def test_gpu_quick_mode_runs_on_cpu_with_toy_models(tmp_path, capsys):
    import torch

    spec = importlib.util.spec_from_file_location("bench_inference_smoke", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu.json"
    args = ["gpu", "--quick", "--device", "cpu", "--tiny", "--compile-backend", "eager", "--json", str(out)]
    try:
        assert bench.main(args) == 0
    finally:
        torch._dynamo.reset()
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["compile"]) for r in rows] == [
        ("IMD-tiny", "none"),
        ("HF timesformer-base (toy size)", "none"),
        ("HF videomae-base (toy size)", "none"),
        ("HF ast-base (toy size)", "none"),
        ("IMD-tiny", "default"),  # reduce-overhead needs CUDA: the dry run compiles with default
        ("IMD-tiny", "default"),
    ]
    compiled = rows[-2:]
    assert [r["batch"] for r in compiled] == [1, rows[0]["best_batch"]]
    assert all(
        "error" not in r and r["fullgraph"] is True and r["max_abs_diff_vs_eager"] == 0.0 for r in compiled
    )
    assert [r["graphs"] for r in compiled] == [1, 1]  # the whole forward, one graph per batch size
    assert all(r["clips_per_s"] > 0 and r["gflops_per_clip"] > 0 for r in rows)
    assert "IMD-tiny" in capsys.readouterr().out
