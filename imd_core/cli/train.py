"""``imd train``: train or fine-tune an IMD model into a run folder.

Also the entry point of every process of a ``torchrun`` launch. See README
"imd train" for the flags, the run folder and the exit codes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

RUN_INFO = "run.json"  # the data path and command line of the run, for --resume


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a model into a run folder (JSON-lines events, resume, DDP)",
        description=(
            "Train an IMD model on DATA (a folder per class or a CSV/JSONL manifest) into RUN_DIR. "
            "RUN_DIR receives config.json, events.jsonl, metrics.csv, tensorboard/, last/, best/, "
            "confusion_matrix.png and savld.json. Exit codes: 0 finished (or early-stopped), "
            "130 stopped by SIGINT/SIGTERM after saving last/, 2 bad configuration, 3 bad data, 1 other failure."
        ),
    )
    p.add_argument("--config", default=None,
                   help="shipped recipe (tiny, small, base, large, demo) or a JSON file; "
                        "default: tiny, or RUN_DIR/config.json with --resume")
    p.add_argument("--data", default=None, help="dataset folder or manifest (default with --resume: the run's own)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (created)")
    p.add_argument("--epochs", type=int, default=None, help="override epochs")
    p.add_argument("--batch-size", type=int, default=None, help="override the global batch size")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="override the device (default: auto)")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last/ checkpoint")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config fields, e.g. --set optim.lr=3e-4 model.num_frames=16")
    p.add_argument("--events", default=None, metavar="-",
                   help="'-' also writes the JSON-lines events to stdout (one object per line, flushed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imd_core.errors import ConfigError
    from imd_core.train.config import load_train_config
    from imd_core.train.engine import train

    run_dir = Path(args.out)
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"epochs={args.epochs}")
    if args.batch_size is not None:
        overrides.append(f"batch_size={args.batch_size}")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    saved = run_dir / "config.json"
    info_path = run_dir / RUN_INFO
    if args.resume and saved.is_file():
        if args.config:
            logger.warning("--resume uses %s; --config %s is ignored", saved, args.config)
        cfg = load_train_config(saved, overrides)
    else:
        cfg = load_train_config(args.config or "tiny", overrides)
    data = args.data
    if data is None and args.resume and info_path.is_file():
        data = json.loads(info_path.read_text(encoding="utf-8")).get("data")
    if data is None:
        raise ConfigError("--data is required (a dataset folder or a CSV/JSONL manifest)")
    resume = args.resume and (run_dir / "last" / "training_state.pt").is_file()
    if args.resume and not resume:
        logger.warning("%s has no last/ checkpoint yet; starting the run from the beginning", run_dir)
    import os

    lock = None
    if int(os.environ.get("RANK", "0")) == 0:
        from imd_core.train.run_lock import RunLock

        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir).acquire()  # before run.json: a refused run changes nothing
        info = {"data": str(Path(data).resolve()), "argv": sys.argv[1:]}
        info_path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    stream = None
    if args.events == "-":
        stream = sys.stdout
    elif sys.stderr.isatty() or logger.getEffectiveLevel() > logging.INFO:
        stream = HumanProgress(sys.stderr)
    elif args.events:
        raise ConfigError(f"--events {args.events!r}: only '-' (stdout) is supported; the file is always RUN_DIR/events.jsonl")
    try:
        result = train(cfg, Path(data), run_dir, resume=resume, events_stream=stream)
    finally:
        if lock is not None:
            lock.release()
    return result.exit_code


class HumanProgress:
    """Reads the event lines the engine writes and prints short progress lines instead.

    Used on stderr when the events do not go to stdout, so a user in a shell sees the
    run advance without ``-v``.
    """

    def __init__(self, out) -> None:
        self.out = out

    def write(self, line: str) -> None:
        try:
            text = self._format(json.loads(line))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):  # e.g. a NaN loss written as null
            text = line.strip()
        if text:
            print(text, file=self.out, flush=True)  # noqa: T201

    @staticmethod
    def _format(e: dict) -> str:
        kind = e.get("event")
        if kind == "run_started":
            text = (f"training {e['config']} on {e['device']} ({e['precision']}, {e['world_size']} process(es)): "
                    f"{e['train_clips']} train / {e['val_clips']} val clips, {e['epochs']} epochs x "
                    f"{e['steps_per_epoch']} steps" + (f", resumed at step {e['start_step']}" if e["resumed"] else ""))
        elif kind == "step":
            text = f"  step {e['step']}/{e['total_steps']}  loss {e['loss']:.4f}  lr {e['lr']:.2e}  {e['clips_per_s']:.1f} clips/s"
        elif kind == "epoch":
            v = e.get("val") or {}
            top1 = v.get("top1")
            text = (f"epoch {e['epoch'] + 1}: train loss {e['train']['loss']:.4f} top1 {e['train']['top1']:.3f}"
                    + (f" | val top1 {top1:.3f} top5 {v.get('top5') or 0:.3f}" if top1 is not None else "")
                    + (" (best)" if e.get("best") else "") + f" | eta {e.get('eta_s') or 0:.0f} s")
        elif kind == "early_stopped":
            text = f"early stop: no improvement for {e['patience']} epochs (best epoch {e['best_epoch'] + 1})"
        elif kind == "run_finished":
            best = e["best_value"]
            text = f"run {e['outcome']} after {e['epochs_run']} epoch(s); best {e['best_metric']} = " + (
                f"{best:.4f}" if isinstance(best, float) else str(best))
        elif kind == "run_failed":
            text = f"run failed: {e['reason']}"
        else:
            text = ""
        return text

    def flush(self) -> None:
        self.out.flush()
