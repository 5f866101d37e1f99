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

from imd_core.train import event_schema

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
    p.add_argument(
        "--config",
        default=None,
        help="shipped recipe (tiny, small, base, large, demo) or a JSON file; "
        "default: tiny, or RUN_DIR/config.json with --resume",
    )
    p.add_argument(
        "--data", default=None, help="dataset folder or manifest (default with --resume: the run's own)"
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (created)")
    p.add_argument("--epochs", type=int, default=None, help="override epochs")
    p.add_argument("--batch-size", type=int, default=None, help="override the global batch size")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default=None, help="override the device (default: auto)"
    )
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last/ checkpoint")
    p.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config fields, e.g. --set optim.lr=3e-4 model.num_frames=16",
    )
    p.add_argument(
        "--events",
        default=None,
        metavar="-",
        help="'-' also writes the JSON-lines events to stdout (one object per line, flushed)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imd_core.errors import ConfigError
    from imd_core.train.config import load_train_config
    from imd_core.train.engine import train

    run_dir = Path(args.out)
    if starts_from_pretrained(args, run_dir):
        return run_pretrained(args, run_dir)
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"epochs={args.epochs}")
    if args.batch_size is not None:
        overrides.append(f"batch_size={args.batch_size}")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    recorded = read_run_info(run_dir) if args.resume else {}
    cfg = (
        resume_config(args, run_dir, recorded, overrides)
        if args.resume
        else load_train_config(args.config or "tiny", overrides)
    )
    data = args.data or recorded.get("data")
    if data is None:
        raise ConfigError("--data is required (a dataset folder or a CSV/JSONL manifest)")
    import os

    lock = None
    if int(os.environ.get("RANK", "0")) == 0:
        from imd_core.train.run_lock import RunLock

        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir).acquire()  # before run.json: a refused run changes nothing
        try:
            start_run_folder(args, run_dir, cfg, data, overrides, recorded)
        except BaseException:
            lock.release()
            raise
    resume = args.resume and has_checkpoint(run_dir)
    if args.resume and not resume:
        logger.warning(
            "%s has no last/ checkpoint yet; starting the run from the beginning (its recorded "
            "configuration)",
            run_dir,
        )
    stream = None
    if args.events == "-":
        stream = sys.stdout
    elif sys.stderr.isatty() or logger.getEffectiveLevel() > logging.INFO:
        stream = HumanProgress(sys.stderr)
    elif args.events:
        raise ConfigError(
            f"--events {args.events!r}: only '-' (stdout) is supported; the file is always RUN_DIR/events.jsonl"
        )
    try:
        result = train(cfg, Path(data), run_dir, resume=resume, events_stream=stream)
    finally:
        if lock is not None:
            lock.release()
    return result.exit_code


def read_run_info(run_dir: Path) -> dict:
    """``RUN_DIR/run.json`` (``{}`` when absent): the data, command and configuration a run started with."""
    from imd_core.errors import ConfigError

    path = run_dir / RUN_INFO
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        raise ConfigError(
            f"{path} cannot be read; start again without --resume, or into a new --out"
        ) from None
    if not isinstance(info, dict):
        raise ConfigError(f"{path} is not a JSON object; start again without --resume, or into a new --out")
    return info


def resume_config(args: argparse.Namespace, run_dir: Path, recorded: dict, overrides: list[str]):
    """The configuration ``--resume`` continues: the run's own, never a default.

    ``config.json`` when the run wrote it; else the recipe and ``--set`` values that
    ``run.json`` recorded (an attempt stopped before ``config.json``). ``overrides`` given
    now apply on top. Nothing recorded: refused, unless ``--config`` names what to start.
    """
    from imd_core.errors import ConfigError
    from imd_core.train.config import load_train_config

    saved = run_dir / "config.json"
    if saved.is_file():
        source, recorded_sets, original = str(saved), [], None
    elif isinstance(recorded.get("config"), str):
        source, recorded_sets = recorded["config"], [str(x) for x in recorded.get("set") or []]
        original = source
    elif recorded or (run_dir / "last").exists() or (run_dir / ".last.old").exists():
        raise ConfigError(
            f"{run_dir} has no config.json and its run.json does not record the configuration; "
            "start again without --resume (with the original --config and --set), or into a new --out"
        )
    elif args.config:
        logger.warning(
            "%s holds no run yet; starting it from the beginning with --config %s", run_dir, args.config
        )
        return load_train_config(args.config, overrides)
    else:
        raise ConfigError(
            f"{run_dir} holds no run to resume (no config.json, no run.json); start it without "
            "--resume, with --config and --data"
        )
    if args.config and _recipe(args.config) != original:
        logger.warning(
            "--resume continues the run's own configuration (%s); --config %s is ignored", source, args.config
        )
    return load_train_config(source, recorded_sets + overrides)


def has_checkpoint(run_dir: Path) -> bool:
    """``last/`` holds a resume state (or will, once an interrupted swap is restored)."""
    from imd_core.train.checkpointing import STATE_FILE

    last, old = run_dir / "last", run_dir / ".last.old"
    return (last / STATE_FILE).is_file() or (not last.exists() and (old / STATE_FILE).is_file())


def start_run_folder(
    args: argparse.Namespace, run_dir: Path, cfg, data: str, overrides: list[str], recorded: dict
) -> None:
    """Rank 0, under the run lock, before anything else: the run folder says what was asked.

    A swap of ``last/`` cut between its two renames is restored first (so ``--resume``
    finds it). A new run writes ``run.json`` (data, command, recipe and ``--set``
    values) and ``config.json`` now, so an attempt killed during set-up resumes exactly
    this configuration; ``--resume`` keeps the original command and adds its own to
    ``resumes``.
    """
    from imd_core.errors import TrainingError
    from imd_core.train.checkpointing import recover_interrupted_swap

    recover_interrupted_swap(run_dir)
    if not args.resume and (run_dir / "last").exists():
        raise TrainingError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose a new --out"
        )
    if args.resume and recorded:
        before = recorded.get("resumes")
        info = {**recorded, "resumes": [*(before if isinstance(before, list) else []), sys.argv[1:]]}
    else:
        info = {
            "data": str(Path(data).resolve()),
            "argv": sys.argv[1:],
            "config": _recipe(args.config or "tiny"),
            "set": list(overrides),
        }
    saved = run_dir / "config.json"
    if not args.resume or not saved.is_file():
        _write_atomic(saved, json.dumps(cfg.to_dict(), indent=2) + "\n")
    _write_atomic(run_dir / RUN_INFO, json.dumps(info, indent=1) + "\n")


def _recipe(name_or_file: str) -> str:
    """A recipe name as given, a recipe file as an absolute path (resume may run elsewhere)."""
    return str(Path(name_or_file).resolve()) if Path(name_or_file).exists() else name_or_file


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def starts_from_pretrained(args: argparse.Namespace, run_dir: Path) -> bool:
    """Whether this run fine-tunes on a pretrained folder (``--set init.from_model=kinetics400``)."""
    from imd_core.pretrained.finetune import OPTIONS_FILE, is_pretrained_base

    if args.resume and (run_dir / OPTIONS_FILE).is_file():
        return True
    if args.resume and (run_dir / "config.json").is_file():
        return False
    for pair in args.overrides:
        key, _, value = pair.partition("=")
        if key.strip() == "init.from_model":
            return is_pretrained_base(value.strip())
    return False


def run_pretrained(args: argparse.Namespace, run_dir: Path) -> int:
    """``imd train`` on frozen (or, with ``finetune.unfreeze=video``, trainable) real backbones."""
    import os

    from imd_core.errors import ConfigError
    from imd_core.pretrained.finetune import (
        OPTIONS_FILE,
        FinetuneOptions,
        finetune,
        load_options,
        options_from_overrides,
    )
    from imd_core.train.run_lock import RunLock

    if args.config:
        raise ConfigError(
            f"--config {args.config}: a pretrained starting model fixes the model; leave --config out "
            "(fine-tuning settings go in --set, e.g. --set optim.lr=1e-3 finetune.unfreeze=video)"
        )
    options, data = FinetuneOptions(), args.data
    if args.resume and (run_dir / OPTIONS_FILE).is_file():
        options, saved_data = load_options(run_dir)
        data = data or saved_data
    if data is None:
        raise ConfigError("--data is required (a dataset folder or a CSV/JSONL manifest)")
    flags = [f"{k}={v}" for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("device", args.device))
             if v is not None]  # fmt: skip
    options = options_from_overrides(options, list(args.overrides) + flags)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir).acquire() if int(os.environ.get("RANK", "0")) == 0 else None
    try:
        info = {"data": str(Path(data).resolve()), "argv": sys.argv[1:]}
        (run_dir / RUN_INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        stream = sys.stdout if args.events == "-" else HumanProgress(sys.stderr)
        summary = finetune(data, run_dir, options=options, resume=args.resume, events_stream=stream)
    finally:
        if lock is not None:
            lock.release()
    return int(summary["exit_code"])


class HumanProgress:
    """Reads the event lines the engine writes and prints short progress lines instead.

    Used on stderr when the events do not go to stdout, so a user in a shell sees the
    run advance without ``-v``.
    """

    def __init__(self, out) -> None:
        self.out = out

    def write(self, line: str) -> None:
        try:
            text = self._format(event_schema.parse_event(json.loads(line)))
        except (
            json.JSONDecodeError,
            AttributeError,
            event_schema.EventSchemaError,
        ):  # not an event: as it is
            text = line.strip()
        if text:
            print(text, file=self.out, flush=True)  # noqa: T201

    @staticmethod
    def _format(e: event_schema.AnyEvent) -> str:
        ev = event_schema
        if isinstance(e, ev.RunStarted):
            return (
                f"training {e.config} on {e.device} ({e.precision}, {e.world_size} process(es)): "
                f"{e.train_clips} train / {e.val_clips} val clips, {e.epochs} epochs x "
                f"{e.steps_per_epoch} steps" + (f", resumed at step {e.start_step}" if e.resumed else "")
            )
        if isinstance(e, ev.Step):
            return f"  step {e.step}/{e.total_steps}  loss {_num(e.loss, '.4f')}  lr {e.lr:.2e}  {e.clips_per_s:.1f} clips/s"
        if isinstance(e, ev.Epoch):
            top1 = e.val.top1 if e.val else None
            return (
                f"epoch {e.epoch + 1}: train loss {_num(e.train.loss, '.4f')} top1 {_num(e.train.top1, '.3f')}"
                + (f" | val top1 {top1:.3f} top5 {_num(e.val.top5, '.3f')}" if top1 is not None else "")
                + (" (best)" if e.best else "")
                + f" | eta {e.eta_s or 0:.0f} s"
            )
        if isinstance(e, ev.Features):
            done, total = e.done, e.total
            return (
                f"features {done}/{total} ({e.cached} from the cache)"
                if done in (1, total) or done % 10 == 0
                else ""
            )
        if isinstance(e, ev.EarlyStopped):
            return f"early stop: no improvement for {e.patience} epochs (best epoch {e.best_epoch + 1})"
        if isinstance(e, ev.RunFinished):
            return f"run {e.outcome} after {e.epochs_run} epoch(s); best {e.best_metric} = {_num(e.best_value, '.4f')}"
        if isinstance(e, ev.RunFailed):
            return f"run failed: {e.reason}"
        return ""

    def flush(self) -> None:
        self.out.flush()


def _num(value: float | None, spec: str) -> str:
    """A metric as text; a non-finite one was written as null."""
    return "n/a" if value is None else format(value, spec)
