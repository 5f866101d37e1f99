"""``Predictor(compile=...)``: the whole forward as one compiled graph, static batch shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imd_core.errors import ConfigError
from imd_core.inference.device import CompiledForward, compile_forward
from imd_core.inference.predictor import Predictor


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def capture_only(monkeypatch):
    """``torch.compile`` with the ``eager`` backend: dynamo captures the graph exactly as for
    inductor (fullgraph, static shapes, guards, recompiles) but generates no code, so the
    Predictor's plumbing is tested in seconds; inductor's numbers are checked in
    ``tests/core/model/test_compile.py``. Records the keyword arguments it was given."""
    calls = []
    real = torch.compile

    def compile_eager(model, **kwargs):
        calls.append(kwargs)
        return real(model, **dict(kwargs, backend="eager"))

    monkeypatch.setattr(torch, "compile", compile_eager)
    return calls


def test_compile_modes_are_checked():
    cpu = torch.device("cpu")
    assert compile_forward(torch.nn.Linear(2, 2), "none", cpu) is None
    with pytest.raises(ConfigError, match="choose one of"):
        compile_forward(torch.nn.Linear(2, 2), "fast", cpu)
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        compile_forward(torch.nn.Linear(2, 2), "reduce-overhead", cpu)


class _Breaks(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum().item() > 0:  # data-dependent Python branch: a graph break
            return x * 2
        return x - 1


def test_a_graph_break_falls_back_to_pieces_and_says_why(caplog, capture_only):
    fwd = CompiledForward(_Breaks(), "default", torch.device("cpu"))
    x = torch.ones(3)
    with caplog.at_level("WARNING", logger="imd_core.inference.device"):
        assert torch.equal(fwd(x), x * 2)
    assert fwd.fullgraph is False and fwd.break_reason
    assert [c["fullgraph"] for c in capture_only] == [True, False]
    assert "not one graph" in caplog.text
    assert torch.equal(fwd(-x), -x - 1)  # still correct on the other branch


def test_compiled_predictor_matches_eager_and_pads_partial_batches(tiny_model_dir, media_dir, capture_only):
    eager = Predictor(tiny_model_dir, device="cpu", batch_size=3)
    comp = Predictor(eager.model, device="cpu", batch_size=3, compile="default")
    assert capture_only == [dict(mode="default", fullgraph=True, dynamic=False)]
    assert comp.warmup(calls=1) > 0  # captures batch 1 and batch 3, one graph each
    assert comp.compiled_forward.fullgraph is True and comp.compiled_forward.break_reason is None
    with torch._dynamo.config.patch(error_on_recompile=True):  # 5 windows = 3 + 2 padded to 3
        got = comp.predict_path(media_dir / "a.mp4", window=1.0, hop=0.5)
        (one,) = comp.predict_path(media_dir / "sub" / "b.mp4")  # batch 1, no audio
    want = eager.predict_path(media_dir / "a.mp4", window=1.0, hop=0.5)
    assert len(got) == len(want) == 5
    for g, w in zip(got, want, strict=True):
        assert (g.start, g.end) == (w.start, w.end) and g.top[0].label == w.top[0].label
        np.testing.assert_allclose(g.scores, w.scores, atol=1e-4)
        assert g.audio.relevance == pytest.approx(w.audio.relevance, abs=1e-4)
        assert g.audio.dropped == w.audio.dropped and g.audio.tags[0].label == w.audio.tags[0].label
    (ref,) = eager.predict_path(media_dir / "sub" / "b.mp4")
    assert one.audio.present is False and one.top[0].label == ref.top[0].label
