"""The whole IMD forward compiles as ONE graph (``torch.compile(fullgraph=True)``).

``fullgraph=True`` turns any graph break (``.item()``, a Python ``if`` on a tensor, an
unsupported call in the HF AST or timm code) into an error, so these tests fail on the
first break anywhere in the forward. Capture is checked with the cheap ``eager`` /
``aot_eager`` backends on every path (inference with fbank or a cached embedding, audio
present/absent, batch 1 and N, multi-view; training with labels in every gating mode,
with the visual head and agreement features); one inductor compile checks that the
generated code gives the eager numbers.
"""

from __future__ import annotations

import pytest
import torch

from imd_core.model.imd_model import IMDModel
from imd_core.model.savld import Savld

from .conftest import AUDIO_LABELS, tiny_config, tiny_inputs

SAVLD_TABLE = {"guitar": ["Guitar", "Music"], "dog": ["Dog"], "wind": ["Wind"]}
OUTPUT_FIELDS = ("logits", "relevance_logit", "audio_kept", "audio_logits", "audio_embedding")


def _savld(labels) -> Savld:
    mapping = {v: [{"label": a, "score": 1.0} for a in SAVLD_TABLE[v]] for v in labels}
    return Savld("test", "mean", 2, list(labels), list(AUDIO_LABELS), mapping)


def _model(**overrides) -> IMDModel:
    torch.manual_seed(0)
    cfg = tiny_config(**overrides)
    return IMDModel(cfg, savld=_savld(cfg.labels))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _present(batch: int) -> torch.Tensor:
    return torch.arange(batch) % 2 == 0  # a mix: audio, no audio, audio, ...


def test_inference_forward_is_one_graph_on_every_path():
    model = _model().eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True, dynamic=False)
    with torch.inference_mode():
        for batch in (1, 3):
            x = tiny_inputs(model.config, batch=batch, seed=batch)
            present = _present(batch)
            cases = {"fbank": dict(fbank=x["fbank"], audio_present=present)}
            emb, logits = model.ast(x["fbank"])
            cases["cached"] = dict(audio_embedding=emb, audio_logits=logits, audio_present=present)
            if batch > 1:
                cases["no_present_arg"] = dict(fbank=x["fbank"])
            for name, kw in cases.items():
                want = model(x["rgb"], x["motion"], **kw)
                got = compiled(x["rgb"], x["motion"], **kw)
                for field in OUTPUT_FIELDS:
                    assert torch.equal(getattr(got, field), getattr(want, field)), (batch, name, field)
        # multi-view input (B, V, T, 3, H, W): a different rank, still one graph
        views = (
            x["rgb"].unsqueeze(1).repeat(1, 2, 1, 1, 1, 1),
            x["motion"].unsqueeze(1).repeat(1, 2, 1, 1, 1, 1),
        )
        want = model(*views, fbank=x["fbank"], audio_present=present)
        got = compiled(*views, fbank=x["fbank"], audio_present=present)
        assert torch.equal(got.logits, want.logits)
        # same shapes again: the guards hold, nothing is recompiled (a recompile raises here)
        x = tiny_inputs(model.config, batch=3, seed=7)
        with torch._dynamo.config.patch(error_on_recompile=True):
            got = compiled(x["rgb"], x["motion"], fbank=x["fbank"], audio_present=~_present(3))
        want = model(x["rgb"], x["motion"], fbank=x["fbank"], audio_present=~_present(3))
        assert torch.equal(got.logits, want.logits)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"gating": "teacher_then_straight_through", "gating_warmup_steps": 1},
        {"visual_head_weight": 0.5, "relevance_agreement": True, "fusion": "concat", "no_audio": "zeros"},
    ],
    ids=["teacher", "teacher_then_straight_through", "visual_head_agreement"],
)
def test_training_forward_with_labels_is_one_graph(overrides):
    """Forward + backward with labels (IoU targets from the SAVLD) through AOT autograd, no break."""
    eager = _model(**overrides).train()
    comp = _model(**overrides).train()
    compiled = torch.compile(comp, backend="aot_eager", fullgraph=True, dynamic=False)
    x = tiny_inputs(eager.config, batch=3)
    labels, present = torch.tensor([0, 1, 2]), _present(3)
    with torch.no_grad():  # make the relevance net disagree with the IoU teacher
        for m in (eager, comp):
            m.relevance.fc2.bias.fill_(-3.0)
    for step in range(2):  # the warm-up mode switches from teacher to straight-through at step 1
        want = eager(x["rgb"], x["motion"], fbank=x["fbank"], audio_present=present, labels=labels)
        got = compiled(x["rgb"], x["motion"], fbank=x["fbank"], audio_present=present, labels=labels)
        assert torch.equal(got.audio_kept, want.audio_kept), step
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-6)
        assert set(got.losses) == set(want.losses)
        want.loss.backward()
        got.loss.backward()
    assert int(comp.gating_steps) == int(eager.gating_steps) == 2  # the buffer update is in the graph
    for (name, p), (_, q) in zip(eager.named_parameters(), comp.named_parameters(), strict=True):
        if p.grad is None:
            assert q.grad is None or not q.grad.any(), name
        else:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_teacher_then_straight_through_switch_matches_python_branch():
    """The on-device warm-up flag gives the gate the old host-side ``int(steps) < warmup`` gave."""
    model = _model(gating="teacher_then_straight_through", gating_warmup_steps=2).train()
    x = tiny_inputs(model.config, batch=2)
    with torch.no_grad():
        model.relevance.fc2.bias.fill_(-20.0)  # the network says "irrelevant"
    kept = [model(**x, labels=torch.tensor([0, 1]), relevance_target=torch.ones(2)).audio_kept.tolist()
            for _ in range(3)]  # fmt: skip
    assert kept == [[True, True], [True, True], [False, False]]  # teacher for 2 steps, then its own call
    with pytest.raises(ValueError, match="teacher-forced gating needs"):
        _model(gating="teacher_then_straight_through").train()(**x)  # warming up without targets


@pytest.mark.slow
def test_inductor_whole_forward_matches_eager():
    """The code inductor generates for the whole forward gives the eager results (fp32, CPU)."""
    model = _model().eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    x = tiny_inputs(model.config, batch=2)
    with torch.inference_mode():
        want = model(x["rgb"], x["motion"], fbank=x["fbank"], audio_present=_present(2))
        got = compiled(x["rgb"], x["motion"], fbank=x["fbank"], audio_present=_present(2))
        assert torch.equal(got.audio_kept, want.audio_kept)
        for field in ("logits", "relevance_logit", "audio_logits", "audio_embedding"):
            torch.testing.assert_close(getattr(got, field), getattr(want, field), rtol=1e-4, atol=1e-4)
        # predict() accepts the compiled forward: the same predictions
        a = model.predict(x["rgb"], x["motion"], x["fbank"], _present(2))
        b = model.predict(x["rgb"], x["motion"], x["fbank"], _present(2), forward=compiled)
        assert torch.equal(a.probs.argmax(-1), b.probs.argmax(-1))
        torch.testing.assert_close(a.probs, b.probs, rtol=1e-4, atol=1e-4)
