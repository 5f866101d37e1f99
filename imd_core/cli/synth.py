"""``imd synth``: render a SynthAV data set (labelled MP4 clips + manifest.csv)."""

from __future__ import annotations

import argparse
import logging
import time

from imd_core.cli.argtypes import bounded_float, bounded_int

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate a SynthAV data set: labelled audio-visual MP4 clips and manifest.csv",
        description=(
            "Renders N labelled clips (H.264 + AAC, 2-4 s, 25 fps, 160x160) of 8 actions drawn as moving "
            "shapes, with audio that is the action's own synchronised sound with probability P, else "
            "irrelevant (speech-like babble, music, engine, wind), misleading (another action's sound) or "
            "silent (--misleading-share sets how many of the non-relevant clips are misleading). "
            "--spurious-correlation STRENGTH makes irrelevant soundtracks of the train split predict the "
            "action (a shortcut that val/test do not have). Writes OUT_DIR/clips/*.mp4, OUT_DIR/manifest.csv "
            "(path,label,split,audio_kind,audio_tags) and OUT_DIR/synth_config.json. Same seed, same files."
        ),
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder")
    p.add_argument(
        "--clips", type=bounded_int(1, 1_000_000), required=True, metavar="N", help="number of clips"
    )
    p.add_argument(
        "--relevance",
        type=bounded_float(0.0, 1.0),
        default=0.5,
        metavar="P",
        help="probability that a clip's audio is its action's own sound (default 0.5)",
    )
    p.add_argument(
        "--ambiguity",
        type=bounded_float(0.0, 1.0),
        default=0.3,
        metavar="Q",
        help="visual ambiguity in [0, 1]: low contrast, occluders, motion blur, noise (default 0.3)",
    )
    p.add_argument(
        "--spurious-correlation",
        type=bounded_float(0.0, 1.0),
        default=0.0,
        metavar="STRENGTH",
        help="train split only: probability that an irrelevant soundtrack is its action's fixed "
        "sound (e.g. music over drumming and clapping) instead of a random one; val/test "
        "always draw it independently of the action (default 0: no correlation)",
    )
    p.add_argument(
        "--misleading-share",
        type=bounded_float(0.0, 1.0),
        default=0.25,
        metavar="M",
        help="share of misleading audio (another action's sound) among the non-relevant clips; "
        "the rest is irrelevant and silent at 4:1 (default 0.25: 60%%/25%%/15%%)",
    )
    p.add_argument(
        "--seed", type=bounded_int(0, 2**32 - 1), default=0, metavar="S", help="data set seed (default 0)"
    )
    p.add_argument(
        "--size",
        type=bounded_int(32, 2048),
        default=160,
        help="frame size in pixels, even, 32 to 2048 (default 160)",
    )
    p.add_argument(
        "--workers",
        type=bounded_int(0, 256),
        default=0,
        help="rendering processes (default: all CPUs this process may use)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from imd_core.synth.generate import SynthConfig, generate

    cfg = SynthConfig(
        clips=args.clips,
        relevance=args.relevance,
        ambiguity=args.ambiguity,
        seed=args.seed,
        size=args.size,
        spurious_correlation=args.spurious_correlation,
        misleading_share=args.misleading_share,
    )
    start = time.perf_counter()
    step = max(1, cfg.clips // 20)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            log.info("rendered %d/%d clips", done, total)

    manifest = generate(args.out_dir, cfg, workers=args.workers or None, progress=progress)
    print(f"wrote {cfg.clips} clips and {manifest} in {time.perf_counter() - start:.1f} s", file=sys.stderr)  # noqa: T201
    return 0
