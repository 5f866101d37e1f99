"""The oracle gate of ``scripts/ablation.py`` (issue 18): audio kept iff truly relevant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.scripts import import_script

TAGGER = Path(__file__).resolve().parents[3] / "resources" / "demo_tagger"
KINDS = ["relevant", "irrelevant", "misleading", "silent", "relevant", "irrelevant"]


@pytest.fixture(scope="module")
def ablation():
    return import_script("ablation")


def _clipset(ablation, d_a: int = 5, size: int = 32):
    rng = np.random.default_rng(0)
    return ablation.B.ClipSet(
        frames=rng.integers(0, 255, (len(KINDS), 8, size, size, 3), dtype=np.uint8),
        labels=torch.arange(len(KINDS)) % 8,
        kinds=list(KINDS),
        emb=torch.randn(len(KINDS), d_a),
        logits=torch.randn(len(KINDS), 13),
    )


def test_oracle_wrapper_strips_the_column_and_gates_by_true_kind(ablation):
    seen = {}

    class Fake(torch.nn.Module):
        def forward(self, rgb, motion, *, audio_embedding, audio_present, **kwargs):
            seen.update(emb=audio_embedding, present=audio_present, kwargs=kwargs)
            return "out"

    data = _clipset(ablation)
    marked = ablation.with_relevance_column(data)
    assert marked.emb.shape == (len(KINDS), 6) and marked.emb[:, -1].tolist() == [1, 0, 0, 0, 1, 0]
    gate = ablation.OracleGate(Fake())
    given = torch.tensor([True, True, True, True, False, True])  # e.g. modality dropout on clip 4
    assert gate(None, None, audio_embedding=marked.emb, audio_present=given, labels=data.labels) == "out"
    assert torch.equal(seen["emb"], data.emb)  # the model never sees the relevance column
    assert seen["present"].tolist() == [True, False, False, False, False, False]
    assert torch.equal(seen["kwargs"]["labels"], data.labels)
    assert ablation.VARIANTS["oracle"].oracle_gate and not ablation.VARIANTS["oracle"].imd
    assert set(ablation.B.VARIANTS) < set(ablation.VARIANTS)


@pytest.mark.slow  # builds the SAVLD with MiniLM and a tiny model: ~30 s on a loaded 2-core machine
@pytest.mark.skipif(not (TAGGER / "model.safetensors").is_file(), reason="the demo tagger is not built")
def test_oracle_keeps_exactly_the_relevant_audio_in_evaluate(ablation):
    from imd_core.data.transforms import ClipPreprocessor
    from imd_core.synth import TAGGER_LABELS

    torch.manual_seed(0)
    savld = ablation.B.build_savld(list(TAGGER_LABELS))
    variant = ablation.VARIANTS["oracle"]
    model = ablation.B.make_model(TAGGER, savld, variant, 32, 0, num_frames=4)
    pre = ClipPreprocessor.from_model_config(model.config)
    data = _clipset(ablation, d_a=model.ast.embed_dim)
    res = ablation.B.evaluate(ablation.OracleGate(model), pre, ablation.with_relevance_column(data), variant)
    assert res["keep_drop_acc"] == 1.0
    assert res["drop_rate_relevant"] == 0.0
    assert res["drop_rate_irrelevant"] == res["drop_rate_misleading"] == res["drop_rate_silent"] == 1.0


def test_shortcut_metrics_tell_a_shortcut_from_the_truth(ablation):
    from imd_core.synth import ACTION_CLASSES, SynthConfig, sample_clip_spec
    from imd_core.synth.classes import SPURIOUS_SOUNDS

    cfg = SynthConfig(clips=200, relevance=0.2, seed=905)
    specs = [sample_clip_spec(cfg, i) for i in range(cfg.clips)]
    labels = torch.tensor([ACTION_CLASSES.index(s.label) for s in specs])
    truth = ablation.shortcut_metrics(labels, labels, specs)
    assert truth["top1_irrelevant_match"] == truth["top1_irrelevant_other"] == 1.0
    assert 0.1 < truth["shortcut_rate"] < 0.45  # the sound is drawn independently of the class
    # a model that always names the first class whose spurious sound it hears
    by_sound = {
        snd: ACTION_CLASSES.index(next(c for c in ACTION_CLASSES if SPURIOUS_SOUNDS[c] == snd))
        for snd in set(SPURIOUS_SOUNDS.values())
    }
    cheat = torch.tensor([by_sound[s.source] if s.audio_kind == "irrelevant" else 0 for s in specs])
    cut = ablation.shortcut_metrics(cheat, labels, specs)
    assert cut["shortcut_rate"] == 1.0 and cut["top1_irrelevant_other"] == 0.0
    assert ablation.shortcut_metrics(labels, labels, [s for s in specs if s.audio_kind == "relevant"]) == {}
