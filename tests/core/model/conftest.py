"""Tiny real models the model tests create and save themselves (no hub access)."""

from __future__ import annotations

import pytest
import torch

from imd_core.model.config import TINY_AST_CONFIG, ModelConfig

AUDIO_LABELS = ["Speech", "Music", "Guitar", "Drum", "Dog", "Wind", "Engine", "Water"]


def tiny_ast_config(**overrides) -> dict:
    cfg = dict(TINY_AST_CONFIG)
    cfg.update(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=dict(enumerate(AUDIO_LABELS)),
        label2id={n: i for i, n in enumerate(AUDIO_LABELS)},
    )
    cfg.update(overrides)
    return cfg


def tiny_config(**overrides) -> ModelConfig:
    """A very small model: 32 px, 4 frames, 1+1 blocks, 48 wide; tiny AST over 8 labels."""
    data = dict(
        size="tiny",
        labels=["guitar", "dog", "wind"],
        num_frames=4,
        image_size=32,
        patch_size=16,
        embed_dim=48,
        depth=1,
        num_heads=2,
        st_depth=1,
        st_dim=16,
        st_heads=2,
        relevance_hidden=32,
        ast_config=tiny_ast_config(),
    )
    data.update(overrides)
    return ModelConfig.from_dict(data)


def tiny_inputs(cfg: ModelConfig, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, cfg.num_frames, 3, cfg.image_size, cfg.image_size)
    return {
        "rgb": torch.randn(shape, generator=g),
        "motion": torch.randn(shape, generator=g),
        "fbank": torch.randn(batch, cfg.max_length, cfg.num_mel_bins, generator=g),
    }


@pytest.fixture(scope="session")
def ast_folder(tmp_path_factory):
    """A tiny ASTForAudioClassification saved with save_pretrained (what a hub folder holds)."""
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig(**tiny_ast_config()))
    folder = tmp_path_factory.mktemp("tiny_ast")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def bert_folder(tmp_path_factory):
    """A tiny BERT-style text encoder + WordPiece tokenizer saved into a folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    words = [
        "playing",
        "guitar",
        "drums",
        "dog",
        "barking",
        "bark",
        "wind",
        "engine",
        "speech",
        "music",
        "water",
        "the",
        "sound",
        "of",
        "a",
        "drum",
        "acoustic",
        "electric",
        "car",
        "howl",
    ]
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *words,
        *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
        *list("abcdefghijklmnopqrstuvwxyz"),
    ]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; two oversubscribe the shared 2-core CI box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
