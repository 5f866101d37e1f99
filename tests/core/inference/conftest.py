"""Fixtures: a tiny IMD model folder saved with the real checkpoint code, and small media files."""

from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np
import pytest

ACTIONS = ["playing drums", "chopping wood", "dog barking", "waving", "clapping", "typing"]
TAGS = ["Drum", "Chop", "Bark", "Wind", "Clapping", "Typing", "Speech", "Music"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two spinning threads are far slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    import torch

    from imd_core.model.checkpoint import save_model
    from imd_core.model.config import TINY_AST_CONFIG, ModelConfig
    from imd_core.model.imd_model import IMDModel
    from imd_core.model.savld import Savld

    torch.manual_seed(0)
    # Smaller than the tiny preset: these tests exercise the inference plumbing, not the model.
    ast = dict(
        TINY_AST_CONFIG, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    ast.update(num_labels=len(TAGS), id2label=dict(enumerate(TAGS)))
    cfg = ModelConfig.for_size(
        "tiny", labels=ACTIONS, ast_config=ast, num_frames=4, image_size=32, embed_dim=32, depth=1,
        num_heads=2, st_dim=16, st_heads=2, relevance_hidden=16,
    )  # fmt: skip
    mapping = {
        v: [{"label": TAGS[i], "score": 1.0}, {"label": TAGS[-1], "score": 0.5}]
        for i, v in enumerate(ACTIONS)
    }
    savld = Savld("test", "mean", 2, list(ACTIONS), list(TAGS), mapping)
    model = IMDModel(cfg, savld=savld, load_pretrained=False)
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(model, folder, savld=savld)
    return folder


def write_clip(
    path: Path,
    seconds: float = 2.0,
    *,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    audio_rate: int | None = 16000,
) -> Path:
    """Writes a small H.264 (or MPEG-4) clip with a moving square and, optionally, a tone."""
    import av

    w, h = size
    with av.open(str(path), "w") as out:
        try:
            v = out.add_stream("libx264", rate=fps)
        except Exception:  # noqa: BLE001 -- an FFmpeg build without x264
            v = out.add_stream("mpeg4", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = None
        if audio_rate:
            a = out.add_stream("aac", rate=audio_rate)
            a.layout = "mono"
        n = int(round(seconds * fps))
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            x = int(i * (w - 8) / max(1, n - 1))
            img[h // 3 : h // 3 + 8, x : x + 8] = (255, 200, 0)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        if a is not None:
            t = np.arange(int(seconds * audio_rate)) / audio_rate
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            block = 1024
            for i in range(0, wave.size, block):
                chunk = wave[i : i + block]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                frame.sample_rate = audio_rate
                frame.pts = i
                frame.time_base = fractions.Fraction(1, audio_rate)
                for packet in a.encode(frame):
                    out.mux(packet)
            for packet in a.encode():
                out.mux(packet)
    return path


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """``clips/a.mp4`` (3 s, audio), ``clips/sub/b.mp4`` (2 s, no audio), ``clips/broken.mp4``."""
    root = tmp_path_factory.mktemp("media") / "clips"
    (root / "sub").mkdir(parents=True)
    write_clip(root / "a.mp4", 3.0)
    write_clip(root / "sub" / "b.mp4", 2.0, audio_rate=None)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    return root
