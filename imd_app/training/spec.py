"""What a training job is: the form's values, validated, saved with the job.

A :class:`JobSpec` is a frozen config (strict ``from_dict``) that turns into the
arguments of ``imd train``. Nothing here imports Qt, so it is testable on its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Literal

from imd_core.config_base import FrozenConfig
from imd_core.errors import ConfigError, ImdError

StartFrom = Literal["demo", "model", "backbones", "kinetics400"]
Recipe = Literal["tiny", "small", "base", "large", "demo"]
Device = Literal["auto", "cpu", "cuda"]
Motion = Literal["diff", "flow"]

# Where each form value goes in the engine's TrainConfig (``--set key=value``). Kept in
# one table so that a renamed engine key is a one-line change here.
SET_KEYS: dict[str, str] = {
    "learning_rate": "optim.lr",
    "num_frames": "model.num_frames",
    "motion": "model.motion",
    "imd_enabled": "model.imd",
    "tag_top_k": "model.tag_top_k",
    "relevance_tau": "model.relevance_tau",
    "relevance_weight": "model.relevance_loss_weight",
    "ast_trainable": "model.ast_trainable",
    "cross_modal_p": "augment.cross_modal_p",
    "init_from": "init.from_model",
    "ast_source": "model.ast_source",
    "vit_source": "model.video_init",
    "text_encoder": "init.text_encoder",
    "unfreeze_video": "finetune.unfreeze",
}


@dataclasses.dataclass(frozen=True)
class JobSpec(FrozenConfig):
    """One fine-tuning job as the form describes it.

    Attributes:
        data: a folder-per-class tree or a CSV/JSONL manifest.
        run_dir: the run folder ``imd train --out`` writes (config, events, checkpoints).
        skip_bad_files: train on a filtered manifest written into the run folder that
            leaves out the files the dataset check found unusable.
        excluded: the unusable files (absolute paths) left out when ``skip_bad_files``.
        start_from: ``demo`` (the embedded demo model), ``model`` (``model_dir``),
            ``backbones`` (pretrained AST / ViT / text encoder, hub ids or folders) or
            ``kinetics400`` (the real I3D + YAMNet backbones, frozen: features are cached
            once and a relevance net, fusion and a head train on them). A ``model_dir``
            fine-tuned from kinetics400 trains the same way.
        unfreeze_video: on a pretrained start, train I3D too (for a GPU; frames cached).
        config: the shipped recipe the job starts from (``imd train --config``).
        learning_rate, epochs, batch_size, num_frames, device: the usual knobs.
        imd_enabled: learnable irrelevant modality dropout on (off = always fuse audio).
        tag_top_k, relevance_tau, relevance_weight, ast_trainable: IMD options (AST tags
            per clip for the SAVLD IoU, relevance threshold, relevance loss weight, and
            fine-tuning the AST instead of keeping it frozen). ``tag_top_k = 0`` keeps the
            starting model's own setting (the recipe's for a new model): a model's
            relevance net was trained for its own rule (the demo's: top 2 above "Silence").
        cross_modal_p: probability of intra-class cross-modality augmentation.
        extra_set: further ``key=value`` overrides passed verbatim as ``--set``.
    """

    data: str = ""
    run_dir: str = ""
    skip_bad_files: bool = False
    excluded: tuple[str, ...] = ()
    start_from: StartFrom = "demo"
    model_dir: str = ""
    ast_source: str = ""
    vit_source: str = ""
    text_encoder: str = ""
    config: Recipe = "tiny"
    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-4
    num_frames: int = 8
    motion: Motion = "diff"
    imd_enabled: bool = True
    tag_top_k: int = 0
    relevance_tau: float = 0.0
    relevance_weight: float = 1.0
    ast_trainable: bool = False
    cross_modal_p: float = 0.0
    unfreeze_video: bool = False
    device: Device = "auto"
    extra_set: tuple[str, ...] = ()

    def validate(self) -> list[str]:
        """Everything wrong with this job, one line each (empty when it can start).

        The form checks its paths; :meth:`check_config` checks the values with the
        engine's own rules and words.
        """
        problems: list[str] = []
        if not self.data:
            problems.append("choose a dataset folder or manifest")
        elif not Path(self.data).exists():
            problems.append(f"dataset {self.data} does not exist; choose another folder or manifest")
        if not self.run_dir:
            problems.append("choose a run folder")
        elif Path(self.run_dir).is_file():
            problems.append(f"run folder {self.run_dir} is a file; choose a folder")
        if self.start_from == "model" and not self.model_dir:
            problems.append("choose the model folder to start from")
        if self.start_from == "kinetics400":
            from imd_core.resources import kinetics400_installed

            if not kinetics400_installed():
                problems.append(
                    "the kinetics400 model is not installed; build it with `imd pretrained build` "
                    "(bash scripts/setup.sh does it)"
                )
        if self.start_from == "backbones":
            for name, value in (
                ("AST", self.ast_source),
                ("ViT", self.vit_source),
                ("text encoder", self.text_encoder),
            ):
                if value and _looks_like_path(value) and not Path(value).exists():
                    problems.append(
                        f"{name} folder {value} does not exist; give a hub id or an existing folder"
                    )
        try:
            self.check_config()
        except ImdError as exc:
            problems.append(str(exc))
        return problems

    def check_config(self) -> None:
        """Builds the configuration ``imd train`` builds from :meth:`to_train_args`.

        Raises:
            ImdError: what ``imd train`` would refuse, in its words (the first problem).
        """
        # imd train turns --epochs, --batch-size and --device into these overrides
        pairs = [
            *self.set_args(),
            f"epochs={self.epochs}",
            f"batch_size={self.batch_size}",
            f"device={self.device}",
        ]
        if self.starts_from_pretrained():
            from imd_core.pretrained.finetune import FinetuneOptions, options_from_overrides

            options_from_overrides(FinetuneOptions(), pairs)
            return
        from imd_core.train.config import load_train_config

        cfg = load_train_config(self.config, pairs)
        folder = self.start_model_dir()
        if folder is not None:  # the folder fixes the architecture; the engine checks it only once started
            from imd_core.model.checkpoint import read_config

            have = read_config(folder)
            have.fine_tuned(cfg.model, have.labels, where=f"the starting model {folder}")

    def starts_from_pretrained(self) -> bool:
        """True when the job fine-tunes real pretrained backbones (kinetics400 or a folder built on it)."""
        if self.start_from == "kinetics400":
            return True
        if self.start_from == "model" and self.model_dir:
            from imd_core.pretrained.folder import is_pretrained_folder

            return is_pretrained_folder(self.model_dir)
        return False

    def start_model_dir(self) -> Path | None:
        """The model folder the job fine-tunes (demo or chosen), or ``None``."""
        if self.start_from == "demo":
            from imd_core.resources import demo_model_dir

            return demo_model_dir()
        return Path(self.model_dir) if self.start_from == "model" and self.model_dir else None

    def check(self) -> JobSpec:
        """Returns self, or raises :class:`ConfigError` listing every problem."""
        problems = self.validate()
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    def train_data_path(self) -> str:
        """The ``--data`` the engine gets: the filtered manifest when skipping bad files."""
        if self.skip_bad_files and self.excluded:
            return str(Path(self.run_dir) / FILTERED_MANIFEST)
        return self.data

    def to_train_args(self, *, resume: bool = False) -> list[str]:
        """The ``imd train`` arguments (without ``train``), events streamed to stdout."""
        # A pretrained start fixes the model: no recipe. On resume the run folder's own
        # config.json is the recipe (imd train warns that --config is ignored there); only
        # a run stopped before writing it needs --config.
        saved = resume and (Path(self.run_dir) / "config.json").is_file()
        args = [] if saved or self.starts_from_pretrained() else ["--config", self.config]
        args += [
            "--data", self.train_data_path(),
            "--out", self.run_dir,
            "--epochs", str(self.epochs),
            "--batch-size", str(self.batch_size),
            "--device", self.device,
            "--events", "-",
        ]  # fmt: skip
        if resume:
            args.append("--resume")
        for item in self.set_args():
            args += ["--set", item]
        return args

    def set_args(self) -> list[str]:
        """The job's ``--set key=value`` pairs: the form's values, then ``extra_set``."""
        values: dict[str, object]
        if self.starts_from_pretrained():
            # no architecture or AST settings: the pretrained model fixes them
            base = "kinetics400" if self.start_from == "kinetics400" else str(Path(self.model_dir).resolve())
            values = {
                "init_from": base,
                "learning_rate": self.learning_rate,
                "relevance_weight": self.relevance_weight,
                "unfreeze_video": "video" if self.unfreeze_video else "none",
            }
        else:
            values = {
                "learning_rate": self.learning_rate,
                "imd_enabled": self.imd_enabled,
                "relevance_tau": self.relevance_tau,
                "relevance_weight": self.relevance_weight,
                "ast_trainable": self.ast_trainable,
                "cross_modal_p": self.cross_modal_p,
            }
            if self.tag_top_k:  # 0: the starting model's own rule
                values["tag_top_k"] = self.tag_top_k
            if self.start_from == "demo":
                values["init_from"] = "demo"
            elif self.start_from == "model":
                values["init_from"] = str(Path(self.model_dir).resolve())
            else:
                # Only a model built from backbones takes architecture inputs; a model
                # folder brings its own frames and motion input.
                values["num_frames"] = self.num_frames
                values["motion"] = self.motion
                sources = {"ast_source": self.ast_source, "vit_source": self.vit_source,
                           "text_encoder": self.text_encoder}  # fmt: skip
                values.update({key: value for key, value in sources.items() if value})
        return [f"{SET_KEYS[key]}={_set_value(value)}" for key, value in values.items()] + list(
            self.extra_set
        )


FILTERED_MANIFEST = "dataset_filtered.csv"
SPEC_FILE = "app_job.json"


def _set_value(value: object) -> str:
    # --set parses JSON first, so booleans must be lowercase JSON literals.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _looks_like_path(value: str) -> bool:
    # A hub id is "org/name"; anything absolute, relative-dotted or home-based is a folder.
    return value.startswith((".", "/", "~", "\\")) or (len(value) > 1 and value[1] == ":")


def save_spec(spec: JobSpec, folder: str | Path) -> Path:
    """Writes the job's spec into its run folder (saved with the job)."""
    path = Path(folder) / SPEC_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec.to_dict(), indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_spec(folder: str | Path) -> JobSpec:
    """Reads a job spec saved by :func:`save_spec`."""
    path = Path(folder) / SPEC_FILE
    try:
        return JobSpec.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read job spec {path}: {exc}; start the job again from the form") from None
