import pytest
import torch

from imd_core.errors import ConfigError
from imd_core.model.imd_model import IMDModel, Prediction
from imd_core.model.savld import Savld

from .conftest import AUDIO_LABELS, tiny_config, tiny_inputs


def _savld(video_labels, table):
    mapping = {v: [{"label": a, "score": 1.0} for a in table[v]] for v in video_labels}
    return Savld("test", "mean", 2, list(video_labels), list(AUDIO_LABELS), mapping)


SAVLD_TABLE = {"guitar": ["Guitar", "Music"], "dog": ["Dog"], "wind": ["Wind"]}


def test_forward_shapes_and_backward():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = IMDModel(cfg, savld=_savld(cfg.labels, SAVLD_TABLE))
    x = tiny_inputs(cfg, batch=3)
    out = model(**x, labels=torch.tensor([0, 1, 2]))
    assert out.logits.shape == (3, 3)
    assert out.relevance_logit.shape == (3,)
    assert out.audio_kept.shape == (3,) and out.audio_kept.dtype == torch.bool
    assert out.audio_logits.shape == (3, len(AUDIO_LABELS))
    assert out.audio_embedding.shape == (3, 32)
    assert out.relevance_iou.shape == (3,)  # computed from the AST tags and the SAVLD
    assert set(out.losses) == {"ce", "relevance_bce"}
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["video.rgb.blocks.0.attn.qkv.weight"].abs().sum() > 0
    assert grads["video.motion.st_blocks.0.up.weight"].abs().sum() > 0
    assert grads["relevance.fc2.weight"].abs().sum() > 0
    assert grads["head.weight"].abs().sum() > 0
    # the AST is frozen by default: no gradient reaches it
    assert all(not p.requires_grad for p in model.ast.parameters())


def test_ast_trainable_option_gets_gradients():
    cfg = tiny_config(ast_trainable=True)
    model = IMDModel(cfg)
    out = model(**tiny_inputs(cfg), labels=torch.tensor([0, 1]), relevance_target=torch.tensor([1.0, 1.0]))
    out.loss.backward()
    assert model.ast.model.classifier.dense.weight.grad is None  # tags are not used by the loss
    assert model.ast.model.audio_spectrogram_transformer.embeddings.cls_token.grad.abs().sum() > 0


def test_multiview_and_cached_audio_and_determinism():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = IMDModel(cfg).eval()
    x = tiny_inputs(cfg, batch=2)
    with torch.no_grad():
        a = model(**x)
        b = model(**x)
        assert torch.equal(a.logits, b.logits)  # deterministic in eval mode
        # the cached-AST path gives the same result as the fbank path
        c = model(x["rgb"], x["motion"], audio_embedding=a.audio_embedding, audio_logits=a.audio_logits)
        assert torch.allclose(c.logits, a.logits, atol=1e-6)
        # V views: logits are the mean over views
        rgb_v = torch.stack([x["rgb"], x["rgb"].flip(-1)], dim=1)
        mot_v = torch.stack([x["motion"], x["motion"].flip(-1)], dim=1)
        v = model(rgb_v, mot_v, fbank=x["fbank"])
        flip = model(x["rgb"].flip(-1), x["motion"].flip(-1), fbank=x["fbank"])
        assert v.logits.shape == (2, 3)
        assert torch.allclose(v.logits, (a.logits + flip.logits) / 2, atol=1e-5)
    torch.manual_seed(1)
    m1 = IMDModel(cfg)
    torch.manual_seed(1)
    m2 = IMDModel(cfg)
    assert all(
        torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True)
    )


def test_no_audio_track_is_always_dropped():
    cfg = tiny_config()
    model = IMDModel(cfg)
    with torch.no_grad():
        model.relevance.fc2.bias.fill_(20.0)  # the network says "relevant" for everything
    x = tiny_inputs(cfg)
    present = torch.tensor([True, False])
    model.eval()
    out = model(**x, audio_present=present)
    assert out.audio_kept.tolist() == [True, False]
    model.train()  # also in training, with a teacher that says relevant
    out = model(**x, audio_present=present, labels=torch.tensor([0, 0]), relevance_target=torch.ones(2))
    assert out.audio_kept.tolist() == [True, False]
    # a dropped clip sees the no-audio token: its logits do not depend on its audio
    model.eval()
    with torch.no_grad():
        o1 = model(**x, audio_present=torch.tensor([False, False]))
        o2 = model(
            x["rgb"],
            x["motion"],
            fbank=torch.randn_like(x["fbank"]),
            audio_present=torch.tensor([False, False]),
        )
    assert torch.allclose(o1.logits, o2.logits, atol=1e-6)


def test_gating_modes():
    cfg = tiny_config(gating="teacher")
    model = IMDModel(cfg).train()
    x = tiny_inputs(cfg)
    with torch.no_grad():
        model.relevance.fc2.bias.fill_(-20.0)  # the network says "irrelevant"
    out = model(**x, labels=torch.tensor([0, 1]), relevance_target=torch.tensor([0.4, 0.0]))
    assert out.audio_kept.tolist() == [True, False]  # teacher: IoU > tau=0
    with pytest.raises(ValueError, match="teacher-forced gating needs"):
        model(**x)  # no targets and no labels in teacher mode

    st = IMDModel(tiny_config(gating="straight_through")).train()
    with torch.no_grad():
        st.relevance.fc2.bias.fill_(-20.0)
    out = st(**x, labels=torch.tensor([0, 1]), relevance_target=torch.tensor([1.0, 1.0]))
    assert out.audio_kept.tolist() == [False, False]  # its own decision, not the teacher's

    warm = IMDModel(tiny_config(gating="teacher_then_straight_through", gating_warmup_steps=1)).train()
    with torch.no_grad():
        warm.relevance.fc2.bias.fill_(-20.0)
    first = warm(**x, labels=torch.tensor([0, 1]), relevance_target=torch.ones(2))
    second = warm(**x, labels=torch.tensor([0, 1]), relevance_target=torch.ones(2))
    assert first.audio_kept.all() and not second.audio_kept.any()
    assert int(warm.gating_steps) == 2

    off = IMDModel(tiny_config(imd=False)).eval()  # ablation: never drop present audio
    assert off(**x).audio_kept.all()


def test_straight_through_passes_classifier_gradient_to_relevance_net():
    cfg = tiny_config(gating="straight_through", relevance_loss_weight=0.0)
    model = IMDModel(cfg).train()
    out = model(**tiny_inputs(cfg), labels=torch.tensor([0, 1]), relevance_target=torch.ones(2))
    out.loss.backward()
    assert model.relevance.fc2.weight.grad.abs().sum() > 0


def test_soft_targets_zeros_token_concat_fusion():
    cfg = tiny_config(relevance_soft_target=True, no_audio="zeros", fusion="concat")
    model = IMDModel(cfg).train()
    out = model(**tiny_inputs(cfg), labels=torch.tensor([0, 1]), relevance_target=torch.tensor([0.25, 0.0]))
    out.loss.backward()
    assert "no_audio.token" not in model.state_dict()
    assert torch.isfinite(out.loss)


def test_predict_returns_tensors():
    cfg = tiny_config()
    model = IMDModel(cfg, savld=_savld(cfg.labels, SAVLD_TABLE))
    x = tiny_inputs(cfg, batch=2)
    p = model.predict(x["rgb"], x["motion"], x["fbank"], torch.tensor([True, False]))
    assert isinstance(p, Prediction)
    assert p.probs.shape == (2, 3) and torch.allclose(p.probs.sum(-1), torch.ones(2))
    assert p.tag_probs.shape == p.heard.shape == p.savld_labels.shape == (2, len(AUDIO_LABELS))
    assert p.audio_present.tolist() == [True, False] and not bool(p.audio_kept[1])  # absent: dropped
    assert p.heard.dtype == p.savld_labels.dtype == torch.bool and p.confident.all()
    assert ((p.savld_iou >= 0) & (p.savld_iou <= 1)).all() and p.relevance.shape == (2,)
    # the SAVLD labels are those of each clip's top class
    assert torch.equal(p.savld_labels, model.savld_matrix[p.probs.argmax(-1)])
    assert model.training  # predict restores the mode


def test_config_errors():
    with pytest.raises(ConfigError, match="labels is empty"):
        IMDModel(tiny_config(labels=[]))
    with pytest.raises(ConfigError, match="audio_seconds"):
        IMDModel(tiny_config(audio_seconds=5.0))


def _toy_batch(n, g):
    """Class 0 'guitar' (bright frames) / 1 'dog' (dark frames); audio is one of 8 types.

    AST outputs are simulated (the cached-audio path): each audio type has its own
    embedding and its own top tag, so the SAVLD IoU says guitar+Guitar and dog+Dog audio
    are relevant, anything else (wind, engine, or the other class's sound) is not.
    """
    labels = torch.randint(0, 2, (n,), generator=g)
    kinds = torch.randint(
        0, 4, (n,), generator=g
    )  # 0 matching sound, 1 other class's sound, 2 wind, 3 engine
    own = torch.where(labels == 0, 2, 4)  # Guitar / Dog
    other = torch.where(labels == 0, 4, 2)
    audio_type = torch.where(kinds == 0, own, torch.where(kinds == 1, other, torch.where(kinds == 2, 5, 6)))
    logits = torch.full((n, 8), -5.0)
    logits[torch.arange(n), audio_type] = 5.0
    emb = torch.nn.functional.one_hot(audio_type, 8).float().repeat(1, 4) + 0.05 * torch.randn(
        n, 32, generator=g
    )
    level = torch.where(labels == 0, 1.0, -1.0).view(n, 1, 1, 1, 1)
    rgb = level + 0.3 * torch.randn(n, 2, 3, 16, 16, generator=g)
    motion = 0.1 * torch.randn(n, 2, 3, 16, 16, generator=g)
    return rgb, motion, emb, logits, labels, kinds


def test_gating_learned_on_toy_set_drops_irrelevant_audio():
    torch.manual_seed(0)
    cfg = tiny_config(labels=["guitar", "dog"], tag_top_k=1, num_frames=2, image_size=16)
    model = IMDModel(cfg, savld=_savld(cfg.labels, {"guitar": ["Guitar"], "dog": ["Dog"]}))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(120):
        rgb, motion, emb, logits, labels, _ = _toy_batch(24, g)
        out = model(rgb, motion, audio_embedding=emb, audio_logits=logits, labels=labels)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    rgb, motion, emb, logits, labels, kinds = _toy_batch(256, g)
    with torch.no_grad():
        out = model(rgb, motion, audio_embedding=emb, audio_logits=logits)
    relevant = kinds == 0
    kept = out.audio_kept
    assert kept[relevant].float().mean() > 0.95  # relevant audio is kept
    assert (
        ~kept[~relevant]
    ).float().mean() > 0.95  # irrelevant audio (incl. the other class's sound) dropped
    assert (out.logits.argmax(-1) == labels).float().mean() > 0.95


def test_visual_head_and_agreement_features():
    torch.manual_seed(0)
    cfg = tiny_config(visual_head_weight=0.5, relevance_agreement=True)
    model = IMDModel(cfg, savld=_savld(cfg.labels, SAVLD_TABLE))
    x = tiny_inputs(cfg, batch=3)
    out = model(**x, labels=torch.tensor([0, 1, 2]), audio_present=torch.tensor([True, True, False]))
    assert out.visual_logits.shape == (3, 3)
    assert set(out.losses) == {"ce", "relevance_bce", "visual_ce"}
    expected = out.losses["ce"] + out.losses["relevance_bce"] + 0.5 * out.losses["visual_ce"]
    assert torch.allclose(out.loss.detach(), expected, atol=1e-6)
    out.loss.backward()
    assert model.visual_head.weight.grad.abs().sum() > 0
    # relevance input = audio + two streams + agreement (C products, C evidences, their sum)
    assert model.relevance.fc1.in_features == 32 + 2 * 48 + 2 * 3 + 1
    # the agreement features: p_v * s, where s is the mean tag probability of the class's SAVLD labels
    e_rgb, e_mot = model.video(x["rgb"], x["motion"])
    vis = model.visual_head(torch.cat([e_rgb, e_mot], -1))
    emb, alog = model.ast(x["fbank"])
    feats = model._agreement_features(vis, alog, torch.tensor([True, True, False]), views=1)
    tags = torch.sigmoid(alog)
    guitar_evidence = (tags[:, AUDIO_LABELS.index("Guitar")] + tags[:, AUDIO_LABELS.index("Music")]) / 2
    assert torch.allclose(feats[1][:2, 0], guitar_evidence[:2], atol=1e-5)
    assert torch.all(feats[1][2] == 0) and torch.all(feats[0][2] == 0)  # no audio track: no evidence
    p_v = torch.softmax(vis, -1)
    assert torch.allclose(feats[0], p_v * feats[1], atol=1e-6)
    assert torch.allclose(feats[2].squeeze(-1), feats[0].sum(-1), atol=1e-6)
    # multi-view input averages the visual logits over views like the class logits
    mv = {k: v.unsqueeze(1).expand(-1, 2, *v.shape[1:]) if k != "fbank" else v for k, v in x.items()}
    model.eval()
    with torch.no_grad():
        a, b = model(**x), model(**mv)
    assert torch.allclose(a.visual_logits, b.visual_logits, atol=1e-5)
    assert torch.allclose(a.relevance_logit, b.relevance_logit, atol=1e-5)


def test_agreement_needs_visual_head_and_savld():
    with pytest.raises(ConfigError, match="visual_head_weight"):
        tiny_config(relevance_agreement=True)
    cfg = tiny_config(visual_head_weight=1.0, relevance_agreement=True)
    with pytest.raises(ConfigError, match="SAVLD"):
        IMDModel(cfg).eval()(**tiny_inputs(cfg))
    plain = IMDModel(tiny_config(visual_head_weight=1.0)).eval()
    assert plain(**tiny_inputs(plain.config)).visual_logits.shape == (2, 3)
    assert IMDModel(tiny_config()).visual_head is None


def test_relevance_tag_floor_uses_the_named_audio_label():
    with pytest.raises(ConfigError, match="relevance_tag_floor 'Silence'"):
        IMDModel(tiny_config(relevance_tag_floor="Silence"))
    model = IMDModel(tiny_config(relevance_tag_floor="wind")).eval()  # matched case-insensitively
    assert model.tag_floor_index == AUDIO_LABELS.index("Wind")
    model.set_savld(_savld(model.config.labels, SAVLD_TABLE))
    labels = [0, 1, 2, 0]
    out = model(**tiny_inputs(model.config, batch=4, seed=3), labels=torch.tensor(labels))
    # the target is the IoU of the top-5 tags scored above "Wind" with the SAVLD labels
    for i, c in enumerate(labels):
        scores = out.audio_logits[i].tolist()
        top = sorted(range(len(scores)), key=lambda j: -scores[j])[:5]
        heard = {AUDIO_LABELS[j] for j in top if scores[j] > scores[AUDIO_LABELS.index("Wind")]}
        wanted = set(SAVLD_TABLE.get(model.config.labels[c], []))
        iou = len(heard & wanted) / len(heard | wanted) if heard | wanted else 0.0
        assert out.relevance_iou[i].item() == pytest.approx(iou)
