"""``scripts/matched_study.py`` (issue 18): its cached-feature model is the product's model,
and its pools pair each rendered video with the soundtrack each cell draws."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.scripts import import_script


@pytest.fixture(scope="module")
def study():
    module = import_script("matched_study")
    module._init_worker()  # the pool worker's demo model, loaded in this process
    return module


def test_the_head_on_cached_features_is_the_shipped_models_forward(study):
    demo = study._WORKER["model"]
    torch.manual_seed(0)
    rgb, motion = torch.randn(3, 8, 3, 64, 64), torch.randn(3, 8, 3, 64, 64)
    fbank = torch.randn(3, 256, 128)
    with torch.no_grad():
        expected = demo(rgb, motion, fbank=fbank)
        e_rgb, e_mot = demo.video(rgb, motion)
        emb, logits = demo.ast(fbank)
    head = study.make_model(study.VARIANTS["imd_agree"], {1: demo.savld}, warmup_steps=0)
    trained = {k: v for k, v in demo.state_dict().items() if not k.startswith(("video.", "ast."))}
    missing, unexpected = head.load_state_dict(trained, strict=False)
    assert not unexpected and all(k.startswith("ast.") for k in missing)
    with torch.no_grad():
        got = head.eval()(e_rgb, e_mot, audio_embedding=emb, audio_logits=logits)
    assert torch.allclose(got.logits, expected.logits, atol=1e-5)
    assert torch.equal(got.audio_kept, expected.audio_kept)


def test_a_pool_pairs_one_video_with_each_cells_soundtrack(study):
    from synth_stream import pick_frames

    from imd_core.synth import ACTION_CLASSES, SynthConfig, render_clip, sample_clip_spec

    cells = [(1.0, 0.25, 0.0), (0.0, 0.25, 0.0), (0.0, 0.0, 1.0)]  # relevant / other kinds / spurious
    out = study._encode_chunk((30000, [0, 1], [0.6], cells))
    base = SynthConfig(relevance=1.0, seed=30000, size=study.RENDER_SIZE, val_fraction=0.0, test_fraction=0.0)
    model, pre = study._WORKER["model"], study._WORKER["pre"]
    for clip in range(2):
        spec = sample_clip_spec(replace(base, ambiguity=0.6), clip)
        assert out["labels"][clip] == ACTION_CLASSES.index(spec.label)
        kinds = [row[1] for row in out["cells"][clip]]
        assert kinds[0] == "relevant" and kinds[1] != "relevant"
        assert kinds[2] == "irrelevant" and out["cells"][clip][2][2] == study.SPURIOUS_SOUNDS[spec.label]
        # the video features are those of the clip imd synth renders, whatever its sound
        frames, _ = render_clip(replace(base, ambiguity=0.6), spec)
        x = pre(pick_frames(frames, base.fps, pre.num_frames, pre.decode_size(False)), None, False, None)
        with torch.no_grad():
            video = torch.cat(model.video(x["rgb"][None], x["motion"][None]), -1)[0].numpy()
        assert np.allclose(out["video"][0, clip], video, atol=1e-5)
    assert len({row[0] for clip in out["cells"] for row in clip}) == 6  # one soundtrack per (clip, cell)
