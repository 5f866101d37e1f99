"""Tiny media, a tiny AST with real AudioSet-style labels, a SAVLD and a tiny recipe.

Everything is generated here (PyAV clips through tests/media_factory.py, a transformers
ASTConfig dict the model builds itself) so the tests need no hub and no fixtures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.media_factory import write_clip

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def imd(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``imd ARGS`` in a fresh process (one torch thread, offline), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "imd_core", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=ROOT,
    )


CLASSES = ("clapping", "drumming", "waving")
AUDIO_LABELS = ("Clapping", "Drum", "Speech", "Music", "Wind", "Silence")
# class -> (tone Hz or None for no audio track, texture seed)
_SOUND = {"clapping": 300.0, "drumming": 900.0, "waving": None}


def tiny_ast_config() -> dict:
    return {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "patch_size": 16,
        "frequency_stride": 16,
        "time_stride": 16,
        "max_length": 64,
        "num_mel_bins": 128,
        "id2label": {str(i): n for i, n in enumerate(AUDIO_LABELS)},
        "label2id": {n: i for i, n in enumerate(AUDIO_LABELS)},
    }


def tiny_model_section() -> dict:
    return {
        "size": "tiny",
        "num_frames": 4,
        "image_size": 32,
        "patch_size": 16,
        "embed_dim": 32,
        "depth": 1,
        "num_heads": 2,
        "mlp_ratio": 2.0,
        "st_depth": 1,
        "st_dim": 16,
        "st_heads": 2,
        "audio_seconds": 0.64,
        "ast_source": None,
        "ast_config": tiny_ast_config(),
        "relevance_hidden": 16,
        "tag_top_k": 2,
    }


def savld_dict() -> dict:
    mapping = {
        "clapping": [{"label": "Clapping", "score": 0.9}, {"label": "Music", "score": 0.2}],
        "drumming": [{"label": "Drum", "score": 0.9}, {"label": "Music", "score": 0.5}],
        "waving": [{"label": "Wind", "score": 0.3}, {"label": "Speech", "score": 0.1}],
    }
    return {
        "encoder": "hand-written (tests)",
        "pooling": "mean",
        "k": 2,
        "video_labels": list(CLASSES),
        "audio_labels": list(AUDIO_LABELS),
        "mapping": mapping,
    }


def make_dataset(root: Path, per_class: int = 6, seconds: float = 0.8, silent_class: bool = True) -> Path:
    """A folder-per-class tree of small H.264/AAC clips (``waving`` has no audio track)."""
    for c_i, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_clip(
                folder / f"{name}_{i}.mp4",
                seconds=seconds,
                fps=10,
                width=48,
                height=48,
                audio_hz=_SOUND[name] if silent_class else _SOUND[name] or 600.0,
                pattern="texture",
                seed=100 * c_i + i,
                channels=1,
            )
    return root


@pytest.fixture()
def one_thread():
    """One torch thread, like the CLI subprocesses (OMP_NUM_THREADS=1): float results compare bit for bit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("train_data") / "clips")


@pytest.fixture(scope="session")
def tiny_savld(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("savld") / "savld.json"
    path.write_text(json.dumps(savld_dict()), encoding="utf-8")
    return path


def write_recipe(path: Path, savld: Path, **top) -> Path:
    recipe = {
        "version": 1,
        "name": "test-tiny",
        "model": tiny_model_section(),
        "init": {"savld": str(savld)},
        "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.01},
        "schedule": {"name": "cosine", "warmup_steps": 1},
        "augment": {"flip": True, "train_scale": [1.0, 1.2]},
        "epochs": 2,
        "batch_size": 4,
        "seed": 3,
        "early_stopping_patience": 0,
        "num_workers": 0,
        "val_fraction": 0.25,
        "log_every_steps": 1,
    }
    recipe.update(top)
    path.write_text(json.dumps(recipe, indent=1), encoding="utf-8")
    return path


@pytest.fixture()
def recipe(tmp_path, tiny_savld) -> Path:
    return write_recipe(tmp_path / "recipe.json", tiny_savld)
