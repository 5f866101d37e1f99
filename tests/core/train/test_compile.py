"""``compile=true``: the whole training forward + loss compiles as one graph (no breaks)
and gives the eager loss and gradients, on the shipped ``tiny`` architecture."""

from __future__ import annotations

import copy
import time

import pytest
import torch

from imd_core.model.config import ModelConfig
from imd_core.model.imd_model import IMDModel
from imd_core.model.savld import Savld
from imd_core.train.steps import compile_train_model, forward_batch
from tests.core.train.conftest import CLASSES, savld_dict

# inductor's own code still calls torch.jit.script_method on import
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


def tiny_model(**overrides) -> IMDModel:
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict({"size": "tiny", "labels": list(CLASSES), **overrides})
    model = IMDModel(cfg, load_pretrained=False)
    model.set_savld(Savld.from_dict(savld_dict()))
    return model.train()


def batch_for(model: IMDModel, b: int = 2) -> dict:
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    t, s = cfg.num_frames, cfg.image_size
    return {
        "rgb": torch.randn(b, t, 3, s, s, generator=g),
        "motion": torch.randn(b, t, 3, s, s, generator=g) * 0.1,
        "fbank": torch.randn(b, cfg.max_length, cfg.num_mel_bins, generator=g),
        "audio_present": torch.tensor([True, False][:b] + [True] * max(0, b - 2)),
        "label": torch.arange(b) % len(CLASSES),
        "cache_key": [f"k{i}" for i in range(b)],
    }


def step(model_called, core, batch):
    out = forward_batch(
        model_called,
        core,
        batch,
        device=torch.device("cpu"),
        precision="fp32",
        cache=None,
        ast_trainable=False,
    )
    out.loss.backward()
    return out


def test_training_forward_has_no_graph_break():
    model = tiny_model()
    batch = batch_for(model)
    # the engine path: the frozen AST runs outside (cache), the rest is traced
    from imd_core.train.steps import audio_features

    emb, alog = audio_features(model, batch["fbank"], None, None, torch.device("cpu"), "fp32")

    def loss_fn(rgb, motion, emb, alog, present, labels):
        return model(
            rgb, motion, audio_embedding=emb, audio_logits=alog, audio_present=present, labels=labels
        ).loss

    explained = torch._dynamo.explain(loss_fn)(
        batch["rgb"], batch["motion"], emb, alog, batch["audio_present"], batch["label"]
    )
    reasons = [str(r.reason) for r in explained.break_reasons]
    assert explained.graph_break_count == 0 and explained.graph_count == 1, reasons


@pytest.mark.slow
def test_compiled_step_matches_eager_loss_and_gradients():
    torch._dynamo.reset()
    eager = tiny_model()
    compiled_core = copy.deepcopy(eager)
    batch = batch_for(eager)
    t0 = time.perf_counter()
    compiled = compile_train_model(compiled_core, fullgraph=True)  # a break would raise here
    out_c = step(compiled, compiled_core, batch)
    compile_s = time.perf_counter() - t0
    out_e = step(eager, eager, batch)
    torch.testing.assert_close(out_c.loss, out_e.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_c.logits, out_e.logits, rtol=1e-4, atol=1e-5)
    assert set(out_c.losses) == set(out_e.losses) == {"ce", "relevance_bce"}
    grads_e = {n: p.grad for n, p in eager.named_parameters() if p.grad is not None}
    grads_c = {n: p.grad for n, p in compiled_core.named_parameters() if p.grad is not None}
    assert grads_e.keys() == grads_c.keys() and len(grads_e) > 50
    for name, g in grads_e.items():
        torch.testing.assert_close(grads_c[name], g, rtol=1e-3, atol=1e-5, msg=name)
    # a second step reuses the graph (same shapes): no recompilation
    compiled_core.zero_grad(set_to_none=True)
    t1 = time.perf_counter()
    step(compiled, compiled_core, batch)
    assert time.perf_counter() - t1 < compile_s
    assert int(compiled_core.gating_steps) == 2  # the buffer update inside the graph is kept


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_bf16_step_on_cuda_matches_eager():
    torch._dynamo.reset()
    dev = torch.device("cuda")
    eager = tiny_model().to(dev)
    eager.set_savld(Savld.from_dict(savld_dict()))
    compiled_core = copy.deepcopy(eager)
    batch = batch_for(eager, b=4)
    compiled = compile_train_model(compiled_core, fullgraph=True)
    outs = []
    for called, core in ((compiled, compiled_core), (eager, eager)):
        out = forward_batch(
            called, core, batch, device=dev, precision="bf16", cache=None, ast_trainable=False
        )
        out.loss.backward()
        outs.append(out)
    torch.testing.assert_close(outs[0].loss, outs[1].loss, rtol=2e-2, atol=2e-2)
    g_c = compiled_core.head.weight.grad.float()
    g_e = eager.head.weight.grad.float()
    assert ((g_c - g_e).norm() / g_e.norm()).item() < 5e-2
