import pytest
import torch
import torch.nn.functional as F

from imd_core.errors import CheckpointError, ConfigError
from imd_core.model.config import ModelConfig, size_preset
from imd_core.model.imd_model import IMDModel
from imd_core.model.video_transformer import VisualStream
from imd_core.model.vit_weights import checkpoint_filter_fn, load_vit_weights

from .conftest import tiny_config, tiny_inputs

STREAM_KEYS = (
    "num_frames",
    "image_size",
    "patch_size",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "st_depth",
    "st_dim",
    "st_heads",
)


def _stream(**overrides) -> VisualStream:
    kw = dict(
        num_frames=3,
        image_size=32,
        patch_size=16,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=4.0,
        st_depth=1,
        st_dim=16,
        st_heads=2,
    )
    kw.update(overrides)
    return VisualStream(**kw)


@pytest.mark.parametrize(("size", "paper"), [("small", 47.9e6), ("base", 88.6e6), ("large", 173.7e6)])
def test_params_per_stream_match_the_paper(size, paper):
    p = size_preset(size)
    with torch.device("meta"):  # no memory, no init cost
        stream = VisualStream(**{k: p[k] for k in STREAM_KEYS})
    n = sum(t.numel() for t in stream.parameters())
    assert abs(n / paper - 1) < 0.10, f"{size}: {n / 1e6:.1f}M vs paper {paper / 1e6:.1f}M"
    assert p["embed_dim"] == 768


def test_stream_shapes_sdpa_and_temporal_mixing(monkeypatch):
    torch.manual_seed(0)
    stream = _stream().eval()
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(2, 3, 3, 32, 32)
    assert stream(x).shape == (2, 32)
    assert stream.forward_features(x).shape == (2, 3, 1 + 4, 32)
    assert len(calls) >= 2 * 2 + 1  # every ViT block and the spatiotemporal block use SDPA
    # a fresh spatiotemporal block is the identity (zero-initialised up-projection) ...
    y = x.clone()
    y[:, 0] = 5 * torch.randn_like(y[:, 0])
    with torch.no_grad():
        f0 = stream.forward_features(x)[:, 1:]
        f1 = stream.forward_features(y)[:, 1:]
    assert torch.allclose(f0, f1, atol=1e-6)  # frames 1.. unaffected by frame 0
    # ... and once trained it mixes information across frames
    for lin in (stream.st_blocks[0].up, stream.st_blocks[0].down, stream.st_blocks[0].qkv):
        torch.nn.init.normal_(lin.weight, std=0.3)
    with torch.no_grad():
        f0 = stream.forward_features(x)[:, 1:]
        f1 = stream.forward_features(y)[:, 1:]
    assert (f0 - f1).abs().max() > 1e-3
    with pytest.raises(ValueError, match="built for 3 frames"):
        stream(torch.randn(1, 4, 3, 32, 32))


def _timm_vit(img_size=64, patch_size=16, embed_dim=32, depth=3):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(1)
    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=2,
        num_classes=10,
    )


def test_vit_import_with_pos_embed_and_patch_resampling(tmp_path):
    from safetensors.torch import save_file

    vit = _timm_vit()  # 64 px, 4x4 grid, 3 blocks, with a head
    sd = {f"module.{k}": v for k, v in vit.state_dict().items()}  # as saved by DDP
    stream = _stream()  # 32 px, 2x2 grid, 2 blocks
    out = checkpoint_filter_fn(sd, stream)
    assert "head.weight" not in out and "blocks.2.norm1.weight" not in out
    assert out["pos_embed"].shape == stream.pos_embed.shape
    assert torch.equal(out["blocks.1.attn.qkv.weight"], vit.blocks[1].attn.qkv.weight)
    assert "module.cls_token" in sd  # the input dict is not modified
    # from a .safetensors file and a folder
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    load_vit_weights(stream, str(tmp_path / "vit.safetensors"))
    assert torch.equal(stream.blocks[0].mlp.fc1.weight, vit.blocks[0].mlp.fc1.weight)
    assert torch.equal(stream.cls_token, vit.cls_token)
    (tmp_path / "folder").mkdir()
    torch.save(vit.state_dict(), tmp_path / "folder" / "pytorch_model.bin")  # read with weights_only=True
    other = _stream()
    load_vit_weights(other, str(tmp_path / "folder"))
    assert torch.equal(other.patch_embed.proj.weight, vit.patch_embed.proj.weight)
    # a different patch size is resampled (FlexiViT-style)
    s8 = _stream(patch_size=8)
    load_vit_weights(s8, str(tmp_path / "vit.safetensors"))
    assert s8.patch_embed.proj.weight.shape == (32, 3, 8, 8)
    with torch.no_grad():
        assert s8(torch.randn(1, 3, 3, 32, 32)).isfinite().all()
    # a wider MLP (ViT-B into small's ratio 3) keeps its first hidden units
    s3 = _stream(mlp_ratio=3.0)
    load_vit_weights(s3, str(tmp_path / "vit.safetensors"))
    assert torch.equal(s3.blocks[0].mlp.fc1.weight, vit.blocks[0].mlp.fc1.weight[:96])
    assert torch.equal(s3.blocks[0].mlp.fc2.weight, vit.blocks[0].mlp.fc2.weight[:, :96])
    # a wider ViT does not fit
    with pytest.raises(CheckpointError, match="same width"):
        checkpoint_filter_fn(_timm_vit(embed_dim=64).state_dict(), _stream())
    with pytest.raises(CheckpointError, match="does not exist"):
        load_vit_weights(_stream(), str(tmp_path / "nope.safetensors"))


def test_imd_model_video_init(tmp_path):
    from safetensors.torch import save_file

    vit = _timm_vit(embed_dim=48, depth=1)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    model = IMDModel(tiny_config(video_init=str(tmp_path / "vit.safetensors")))
    for stream in (model.video.rgb, model.video.motion):
        assert torch.equal(stream.blocks[0].attn.proj.weight, vit.blocks[0].attn.proj.weight)


def test_config_presets_and_validation():
    base = ModelConfig(size="base", labels=("a",))
    assert (base.embed_dim, base.depth, base.st_depth, base.max_length) == (768, 12, 2, 1024)
    assert base.ast_source == "MIT/ast-finetuned-audioset-10-10-0.4593"
    assert ModelConfig.from_dict(base.to_dict()) == base
    assert ModelConfig(size="large", num_frames=16).num_frames == 16
    tiny = ModelConfig()
    assert (tiny.image_size, tiny.num_frames, tiny.embed_dim, tiny.max_length) == (112, 8, 192, 256)
    assert tiny.ast_config["num_mel_bins"] == 128
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        ModelConfig(image_size=100)
    with pytest.raises(ConfigError, match="valid keys"):
        ModelConfig.from_dict({"sise": "base"})
    with pytest.raises(ConfigError, match="choose one of"):
        ModelConfig.from_dict({"size": "huge"})


def test_conv_stem_same_token_grid_learns_and_takes_vit_blocks(tmp_path):
    from safetensors.torch import save_file

    from imd_core.model.video_transformer import ConvPatchEmbed

    torch.manual_seed(0)
    conv = _stream(patch_stem="conv")
    assert isinstance(conv.patch_embed, ConvPatchEmbed)
    assert conv.grid_size == _stream().grid_size == (2, 2)
    x = torch.randn(2, 3, 3, 32, 32)
    assert conv.forward_features(x).shape == _stream().forward_features(x).shape == (2, 3, 5, 32)
    # 4 stride-2 convolutions for 16 px patches, widths doubling up to the stream width
    widths = [m.out_channels for m in conv.patch_embed.convs if isinstance(m, torch.nn.Conv2d)]
    assert widths == [16, 16, 16, 32]
    (conv(x) * torch.randn(2, 32)).sum().backward()  # a plain sum of a LayerNorm output has no gradient
    assert conv.patch_embed.convs[0].weight.grad.abs().sum() > 0
    # BatchNorm statistics make eval deterministic and batch-independent
    conv.eval()
    with torch.no_grad():
        assert torch.allclose(conv(x)[:1], conv(x[:1]), atol=1e-5)
    # ImageNet ViT weights fill the blocks and leave the stem at its initialisation
    vit = _timm_vit()
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    stem_before = conv.patch_embed.convs[0].weight.clone()
    load_vit_weights(conv, str(tmp_path / "vit.safetensors"))
    assert torch.equal(conv.blocks[0].attn.qkv.weight, vit.blocks[0].attn.qkv.weight)
    assert torch.equal(conv.patch_embed.convs[0].weight, stem_before)


def test_conv_stem_config_and_checkpoint_round_trip(tmp_path):
    from imd_core.model.checkpoint import load_model, save_model

    with pytest.raises(ConfigError, match="power-of-two patch_size"):
        tiny_config(patch_stem="conv", image_size=48, patch_size=12)
    with pytest.raises(ConfigError, match="patch_stem"):
        tiny_config(patch_stem="resnet")
    model = IMDModel(tiny_config(patch_stem="conv"))
    model.train()
    inputs = tiny_inputs(model.config)
    model(**inputs, relevance_target=torch.ones(2))  # a training pass moves the BatchNorm statistics
    model.eval()
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.config.patch_stem == "conv"
    bn = again.video.rgb.patch_embed.convs[1]
    assert torch.equal(bn.running_mean, model.video.rgb.patch_embed.convs[1].running_mean)
    assert bn.running_mean.abs().sum() > 0
    with torch.no_grad():
        assert torch.allclose(again(**inputs).logits, model(**inputs).logits, atol=1e-6)


def test_transformers_vit_folder_is_converted_and_a_foreign_one_refused(tmp_path):
    """The in21k layout (transformers ``ViTModel``) loads every tensor; nothing matching is refused."""
    from safetensors.torch import save_file
    from transformers import ViTConfig, ViTModel

    from imd_core.model.vit_weights import hf_vit_to_timm

    torch.manual_seed(2)
    hf = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=128,
                            image_size=64, patch_size=16, layer_norm_eps=1e-6), add_pooling_layer=True).eval()  # fmt: skip
    folder = tmp_path / "vit-in21k"
    hf.save_pretrained(folder)  # model.safetensors with transformers' names
    # the conversion is exact: timm's ViT on the converted weights computes what ViTModel does
    vit = _timm_vit(depth=3)
    vit.load_state_dict(hf_vit_to_timm(hf.state_dict()), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(vit.eval().forward_features(x), hf(pixel_values=x).last_hidden_state,
                                   atol=1e-5, rtol=1e-4)  # fmt: skip
    stream = _stream()
    load_vit_weights(stream, str(folder))
    assert torch.equal(stream.blocks[1].attn.qkv.weight, vit.blocks[1].attn.qkv.weight)
    assert torch.equal(stream.cls_token, vit.cls_token)

    save_file({"encoder.weight": torch.zeros(3, 3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="none of its 1 tensors"):
        load_vit_weights(_stream(), str(tmp_path / "other.safetensors"))
