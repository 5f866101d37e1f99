"""On-disk cache of the frozen AST's outputs per clip and audio window.

Keyed by the item's ``cache_key`` and the tagger's id, so a different AST never reads
another's entries. Each entry is one small safetensors file written to a temporary name
and renamed, so concurrent writers and killed runs never leave a torn entry. A fine-tuned
AST bypasses the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def tagger_id(ast_state: dict[str, torch.Tensor], name: str = "") -> str:
    """A short id of the AST weights: a hash over parameter names, shapes and values.

    Hashing a strided sample of each tensor keeps this fast for an 87M-parameter AST
    while any real change of weights (another checkpoint, a fine-tune) changes it.
    """
    h = hashlib.sha256(name.encode())
    for key in sorted(ast_state):
        t = ast_state[key].detach().to("cpu", torch.float32).reshape(-1)
        step = max(1, t.numel() // 4096)
        h.update(key.encode())
        h.update(str(tuple(ast_state[key].shape)).encode())
        h.update(t[::step].numpy().tobytes())
    return h.hexdigest()[:16]


class ASTCache:
    """Maps ``(cache_key, tagger_id)`` to ``(embedding (D_a,), logits (A,))`` on disk."""

    def __init__(self, folder: Path, tagger: str):
        self.folder = Path(folder)
        self.tagger = tagger
        self.folder.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(f"{self.tagger}|{key}".encode()).hexdigest()
        return self.folder / self.tagger / digest[:2] / f"{digest}.safetensors"

    def get(self, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if key in self._memory:
            return self._memory[key]
        path = self._path(key)
        if not path.is_file():
            return None
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            data = load_file(str(path))
            value = (data["embedding"], data["logits"])
        except (SafetensorError, KeyError, OSError):
            logger.warning("ignoring an unreadable AST cache entry %s", path)
            return None
        self._memory[key] = value
        return value

    def put(self, key: str, embedding: torch.Tensor, logits: torch.Tensor) -> None:
        from safetensors.torch import save_file

        embedding = embedding.detach().to("cpu", torch.float32).contiguous()
        logits = logits.detach().to("cpu", torch.float32).contiguous()
        self._memory[key] = (embedding, logits)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        save_file({"embedding": embedding, "logits": logits}, str(tmp))
        os.replace(tmp, path)

    def lookup(self, keys: Sequence[str]) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor] | None]]:
        """Returns the positions of the missing keys and the entries found (None if missing)."""
        found = [self.get(k) for k in keys]
        missing = [i for i, v in enumerate(found) if v is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        return missing, found
