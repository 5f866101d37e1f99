"""The predictor: a loaded IMD model that turns files, folders and windows into results.

Qt-free and thread-agnostic: ``imd predict``, the app's batch tab and the streaming engine
drive the same :class:`Predictor`. ``predict_paths`` batches windows across files while
the next files decode ahead on threads (sandboxed under ``decode_timeout``). Under
``compile=`` partial batches are padded, so only batch 1 and ``batch_size`` compile.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from imd_core.data.frame_times import FrameTimes
from imd_core.errors import CheckpointError, ConfigError, ImdError
from imd_core.inference.device import (
    CompiledForward,
    CompileMode,
    autocast_context,
    compile_forward,
    configure_threads,
    resolve_device,
    synchronize,
)
from imd_core.inference.file_windows import (
    FileWindows,
    decode_windows,
    open_file_windows,
)
from imd_core.inference.inputs import WindowInput
from imd_core.inference.prefetch import prefetch
from imd_core.inference.results import WindowResult, window_results
from imd_core.media.sandbox import DecodeSandbox, SandboxPool
from imd_core.media.verdict import damaged_warning, strip_path

if TYPE_CHECKING:
    from imd_core.model.imd_model import IMDModel
    from imd_core.pretrained.kinetics400 import PretrainedIMD

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PathOutcome:
    """Everything :meth:`Predictor.predict_paths` learned about one input file.

    Attributes:
        path: the file as given.
        results: one result per window, in time order (empty on error).
        duration: clip length in seconds (``None`` when the file could not be read).
        error: one-line reason when the file could not be processed, else ``None``.
        bad_input: the error is the file's fault (unreadable, no video), not a bug.
        seconds: wall time spent on this file (decode + inference), for throughput.
        warnings: one-line notes on a file that was processed anyway (e.g. ``"3 damaged
            packets skipped"``); never set together with ``error``.
    """

    path: str
    results: tuple[WindowResult, ...] = ()
    duration: float | None = None
    error: str | None = None
    bad_input: bool = True
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


class Predictor:
    """A model ready for inference on one device.

    Args:
        model_dir_or_model: a checkpoint folder (``config.json`` + ``model.safetensors``
            + ``preprocessor_config.json`` + ``savld.json``) or an ``IMDModel``.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        threads: CPU threads for torch (``None``: torch's default, one per core).
        batch_size: windows per forward pass.
        compile: ``none`` (eager), or a ``torch.compile`` mode for the whole forward as
            one graph: ``default``, ``reduce-overhead`` (CUDA graphs: the lowest batch-1
            latency on a GPU; CUDA only) or ``max-autotune`` (longest compile, for
            throughput at ``batch_size``). Shapes are static: batch 1 and ``batch_size``
            each compile once (call :meth:`warmup` to do it before the first input).
        chunk_seconds: longest span of a file decoded at once when windowing (bounds
            memory on hour-long files; windows in a chunk share one decode).
        decode_workers: files decoded and preprocessed ahead on threads by
            :meth:`predict_paths` (0: decode on the calling thread, between forwards;
            ``None``: :func:`auto_decode_workers`).
        decode_timeout: ``None``/0: decode in this process (a call that hangs inside
            FFmpeg hangs the caller). Seconds: each file decodes in a sandbox process
            (:class:`~imd_core.media.sandbox.SandboxPool`, one per file in flight,
            started here so their start-up overlaps the model's loading) and fails with
            ``DecodeError("decode timed out after N s ...")`` when the caller has waited
            longer than this plus the duration the file claims. Call :meth:`close` when
            done (the processes also end with this one).
    """

    def __init__(
        self,
        model_dir_or_model: str | os.PathLike[str] | Any,
        device: str | torch.device = "auto",
        threads: int | None = None,
        *,
        batch_size: int = 8,
        compile: CompileMode = "none",
        chunk_seconds: float = 60.0,
        decode_workers: int | None = None,
        decode_timeout: float | None = None,
    ) -> None:
        from imd_core.data.transforms import ClipPreprocessor

        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if decode_workers is not None and decode_workers < 0:
            raise ConfigError(f"decode_workers must be >= 0, got {decode_workers}")
        if decode_timeout is not None and not decode_timeout >= 0:
            raise ConfigError(f"decode_timeout must be >= 0 seconds, got {decode_timeout}")
        self.device = resolve_device(device)
        self.threads = configure_threads(threads)
        self.decode_workers = (
            auto_decode_workers(self.device, self.threads) if decode_workers is None else decode_workers
        )
        self.decode_timeout = float(decode_timeout) if decode_timeout else None
        # started before the model loads: the sandboxes' own start-up overlaps it
        self._decoders = (
            SandboxPool(max(1, self.decode_workers), self.decode_timeout) if self.decode_timeout else None
        )
        try:
            if isinstance(model_dir_or_model, (str, os.PathLike)):
                model = load_model_folder(Path(model_dir_or_model), self.device)
            else:
                model = model_dir_or_model.to(self.device)
        except BaseException:
            self.close()
            raise
        self.model = model.eval()
        self.config = model.config
        self.batch_size = int(batch_size)
        self.chunk_seconds = float(chunk_seconds)
        self.preprocessor = ClipPreprocessor.from_model_config(self.config)
        self.compile_mode = compile
        self._forward = compile_forward(self.model, compile, self.device)  # None: eager

    # ------------------------------------------------------------------ properties
    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    @property
    def num_frames(self) -> int:
        return int(self.config.num_frames)

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    @property
    def audio_seconds(self) -> float:
        return float(self.config.audio_seconds)

    @property
    def frame_rate(self) -> float | None:
        """Frames per second the model samples densely (``None``: spread over the window)."""
        p = self.preprocessor
        return 1.0 / p.dense_interval if p.sampling == "dense" else None

    @property
    def relevance_threshold(self) -> float:
        return float(self.config.relevance_threshold)

    @property
    def compiled_forward(self) -> CompiledForward | None:
        """The compiled whole forward (``compile`` other than ``none``), else ``None``."""
        return self._forward

    # ------------------------------------------------------------------ windows
    def preprocess(self, item: WindowInput) -> dict[str, torch.Tensor]:
        """One window -> model inputs ``rgb``/``motion`` ``(T,3,H,W)``, ``fbank`` ``(F,M)``, ``audio_present``."""
        p = self.preprocessor
        stride = None
        if p.sampling == "dense" and item.end > item.start:
            # evenly spaced live frames: take consecutive ones ``dense_interval`` apart, as files do
            stride = max(1, round(p.dense_interval * len(item.frames) / (item.end - item.start)))
        frames = sample_frames(item.frames, self.num_frames, stride)
        return p(frames, item.audio, train=False)

    def predict_windows(self, items: Sequence[WindowInput]) -> list[WindowResult]:
        """Runs the model on windows, ``batch_size`` at a time; one result per window."""
        out: list[WindowResult] = []
        for i in range(0, len(items), self.batch_size):
            chunk = items[i : i + self.batch_size]
            out += self._run_batch(chunk, [self.preprocess(it) for it in chunk])
        return out

    @torch.inference_mode()
    def _run_batch(self, items: Sequence[WindowInput], inputs: list[dict[str, Any]]) -> list[WindowResult]:
        dev = self.device
        non_blocking = dev.type == "cuda"
        n = len(inputs)
        if self._forward is not None and 1 < n < self.batch_size:
            # static shapes: pad a partial batch (the end of the inputs) to the compiled size
            inputs = list(inputs) + [inputs[-1]] * (self.batch_size - n)
        rgb = torch.stack([x["rgb"] for x in inputs]).to(dev, non_blocking=non_blocking)  # (B,T,3,H,W)
        motion = torch.stack([x["motion"] for x in inputs]).to(dev, non_blocking=non_blocking)
        fbank = torch.stack([x["fbank"] for x in inputs]).to(dev, non_blocking=non_blocking)  # (B,F,M)
        present = torch.tensor([bool(x["audio_present"]) for x in inputs], device=dev)  # (B,)
        with autocast_context(dev):
            prediction = self.model.predict(rgb, motion, fbank, present, forward=self._forward)
        return window_results(prediction, items, self.labels, self.model.audio_labels)

    def warmup(self, batch_sizes: Sequence[int] | None = None, calls: int = 3) -> float:
        """Runs ``calls`` forwards of blank inputs per batch size; returns the seconds it took.

        With ``compile`` this is where the graphs are compiled (and, for
        ``reduce-overhead``, recorded as CUDA graphs), so the first real input does not
        wait for it. Default sizes: 1 (streaming) and ``batch_size`` (files). Call it on
        the thread that will run the model (CUDA graphs are recorded per thread).
        """
        sizes = sorted(set(batch_sizes or (1, self.batch_size)))
        s = self.image_size
        item = WindowInput(
            frames=np.zeros((self.num_frames, s, s, 3), np.uint8),
            audio=None,
            path="warmup",
            start=0.0,
            end=1.0,
        )
        blank = self.preprocess(item)
        t0 = time.perf_counter()
        for b in sizes:
            for _ in range(max(1, calls)):
                self._run_batch([item] * b, [blank] * b)
        synchronize(self.device)
        seconds = time.perf_counter() - t0
        log.info("warm-up of batch sizes %s (compile=%s): %.1f s", sizes, self.compile_mode, seconds)
        return seconds

    # ------------------------------------------------------------------ files
    def open(
        self, path: str | os.PathLike[str], window: float | None = None, hop: float | None = None
    ) -> FileWindows:
        """Probes ``path`` and plans its windows (decoding happens when iterated)."""
        return open_file_windows(path, **self._decode_options(window, hop))

    def predict_path(
        self, path: str | os.PathLike[str], window: float | None = None, hop: float | None = None
    ) -> list[WindowResult]:
        """All windows of one file (the whole clip as one window without ``window``).

        Raises:
            DecodeError: the file cannot be read.
        """
        results: list[WindowResult] = []
        batch: list[WindowInput] = []
        for item in self.open(path, window, hop):  # batch by batch: a long file never sits in memory
            batch.append(item)
            if len(batch) == self.batch_size:
                results += self.predict_windows(batch)
                batch = []
        return results + self.predict_windows(batch)

    def _decode_options(self, window: float | None, hop: float | None) -> dict[str, Any]:
        """How this model's input is decoded: the keyword arguments of
        :func:`~imd_core.inference.file_windows.open_file_windows` and ``decode_windows``,
        picklable for a sandbox (the frame times as a torch-free :class:`FrameTimes`)."""
        p = self.preprocessor
        times = FrameTimes.of(p, train=False)
        return {
            "window": window,
            "hop": hop,
            "num_frames": self.num_frames,
            "frame_size": p.decode_size(False),
            "chunk_seconds": self.chunk_seconds,
            "sample_times": times,
        }

    def _produce(
        self,
        path: str | os.PathLike[str],
        options: dict[str, Any],
        decoders: DecodeSandbox | SandboxPool | None,
        cancelled: Callable[[], bool] | None,
    ) -> Iterator[tuple[WindowInput, dict[str, Any], float]]:
        """Decodes (here, or in a sandbox under its deadline) and preprocesses one file's windows,
        each with the fraction of the file done; returns the file's duration."""
        if decoders is None:
            windows = decode_windows(path, **options)
        else:
            # keyed by the path, for the caller's abort(path); ``cancelled`` is checked again once
            # the sandbox marks the wait, so that a cancel cannot slip in before its abort
            windows = decoders.stream(
                decode_windows, path, bounded=True, key=str(path), cancelled=cancelled, **options
            )
        try:
            while True:
                if cancelled is not None and cancelled():
                    raise ImdError("cancelled")
                try:
                    item, done = next(windows)
                except StopIteration as stop:
                    return stop.value
                yield item, self.preprocess(item), done
        finally:
            windows.close()  # an abandoned file: the sandbox drops it (or is killed mid-call)

    def close(self) -> None:
        """Stops the sandbox processes (``decode_timeout``); the predictor still works (a later
        bounded decode starts a fresh one)."""
        if getattr(self, "_decoders", None) is not None:
            self._decoders.close()

    def predict_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        window: float | None = None,
        hop: float | None = None,
        *,
        decode_workers: int | None = None,
        sandbox: DecodeSandbox | None = None,
        cancelled: Callable[[str], bool] | None = None,
        progress: Callable[[str, float], None] | None = None,
    ) -> Iterator[PathOutcome]:
        """Yields one :class:`PathOutcome` per path, in order, batching windows across files.

        A file that cannot be read yields an outcome with ``error`` set; the others go on.
        ``decode_workers`` (default: the constructor's) files are decoded and
        preprocessed ahead on threads while the model runs; 0 decodes inline. The
        results are the same either way.

        For a front end that cancels files (the app's batch tab):

        Args:
            sandbox: decode each file in this sandbox, inline, under its deadline, as a job
                keyed by the path as given, so that another thread may ``sandbox.abort(path)``.
            cancelled: ``cancelled(path)``, checked before each window; a cancelled file
                ends with the error "cancelled".
            progress: ``progress(path, fraction of the file's windows decoded)``, per window.
        """
        workers = self.decode_workers if decode_workers is None else int(decode_workers)
        decoders: DecodeSandbox | SandboxPool | None = self._decoders
        if sandbox is not None:
            decoders, workers = sandbox, 0  # one sandbox serves one thread: this one
        elif decoders is not None:
            decoders.ensure(workers)  # one sandbox per file in flight
        options = self._decode_options(window, hop)
        pending: collections.deque[_Entry] = collections.deque()  # files not yet yielded, in order
        batch: list[tuple[_Entry, WindowInput, dict[str, Any]]] = []

        def flush() -> None:
            if not batch:
                return
            try:
                results = self._run_batch([it for _, it, _ in batch], [x for _, _, x in batch])
            except Exception as exc:  # noqa: BLE001 -- one failed batch must not end the run
                log.debug("inference failed", exc_info=True)
                for entry, _, _ in batch:
                    entry.fail(exc)
            else:
                for (entry, _, _), r in zip(batch, results, strict=True):
                    entry.results.append(r)
            batch.clear()

        def head_ready() -> bool:
            return bool(pending) and pending[0].done and all(e is not pending[0] for e, _, _ in batch)

        def produce(path: str | os.PathLike[str]) -> Iterator[tuple[WindowInput, dict[str, Any], float]]:
            is_cancelled = functools.partial(cancelled, str(path)) if cancelled is not None else None
            return self._produce(path, options, decoders, is_cancelled)

        streams = prefetch(paths, produce, workers=workers, depth=2 * self.batch_size)
        try:
            for stream in streams:
                entry = _Entry(path=str(stream.path))
                pending.append(entry)
                try:
                    for item, x, done in stream:
                        batch.append((entry, item, x))
                        entry.expected += 1
                        entry.damaged += item.damaged_packets
                        if progress is not None:
                            progress(entry.path, done)
                        if len(batch) >= self.batch_size:
                            flush()
                    entry.duration = stream.result
                except Exception as exc:  # noqa: BLE001 -- reported per file, the run goes on
                    log.debug("failed on %s", stream.path, exc_info=True)
                    stream.cancel()
                    entry.fail(exc)
                    batch[:] = [b for b in batch if b[0] is not entry]
                entry.done = True
                while head_ready():
                    yield pending.popleft().outcome()
            flush()
            while pending:
                yield pending.popleft().outcome()
        finally:
            streams.close()  # stops the prefetch threads when the caller stops early


@dataclasses.dataclass
class _Entry:
    """A file in flight inside :meth:`Predictor.predict_paths` (mutable, never leaves it)."""

    path: str
    results: list[WindowResult] = dataclasses.field(default_factory=list)
    expected: int = 0
    duration: float | None = None
    error: str | None = None
    bad_input: bool = True
    done: bool = False
    damaged: int = 0
    t0: float = dataclasses.field(default_factory=time.perf_counter)

    def fail(self, exc: BaseException) -> None:
        if self.error is not None:
            return
        self.bad_input = isinstance(exc, ImdError) and exc.exit_code == 3
        if isinstance(exc, ImdError):
            self.error = strip_path(str(exc), self.path)
        else:
            self.error = f"unexpected error ({type(exc).__name__}: {exc}); run with -vv for details"

    def outcome(self) -> PathOutcome:
        if self.error is None and len(self.results) != self.expected:
            self.fail(RuntimeError(f"{len(self.results)} results for {self.expected} windows"))
        ok = self.error is None
        warning = damaged_warning(self.damaged) if ok else None
        return PathOutcome(
            path=self.path,
            results=tuple(self.results) if ok else (),
            duration=self.duration,
            error=self.error,
            bad_input=self.bad_input,
            seconds=time.perf_counter() - self.t0,
            warnings=(warning,) if warning else (),
        )


def auto_decode_workers(device: torch.device, threads: int) -> int:
    """Decode-ahead threads worth having: 2 while a GPU runs the model; on a CPU 1 when torch
    leaves a core free, else 0 (measured: on a saturated CPU they only compete with the model)."""
    if device.type == "cuda":
        return 2
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 1 if threads < cores else 0


def load_model_folder(folder: Path, device: torch.device) -> IMDModel | PretrainedIMD:
    """Loads a checkpoint folder with a message that says what to do when it is missing."""
    from imd_core.model.checkpoint import load_model
    from imd_core.resources import resolve_model_dir

    folder = resolve_model_dir(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"no model at {folder} (config.json missing); pass --model DIR with a checkpoint folder "
            "written by `imd train`, a model name (kinetics400, demo), or set IMD_RESOURCES to a folder holding demo_model/"
        )
    return load_model(folder, device=str(device))


def sample_frames(frames: np.ndarray, num_frames: int, stride: int | None = None) -> np.ndarray:
    """``num_frames`` frames spread uniformly over ``frames`` ``(N,H,W,3)`` (repeats when N is smaller).

    Centres of ``num_frames`` equal segments, the usual test-time sampling of TSN/ViViT.
    With ``stride``: ``num_frames`` consecutive frames ``stride`` apart, centred (dense
    sampling, as I3D was trained); the stride shrinks when the window is too short.
    """
    n = frames.shape[0]
    if n == 0:
        raise ConfigError("a window needs at least one frame")
    if n == num_frames:
        return frames
    if stride is not None and n > num_frames:
        stride = max(1, min(stride, n // num_frames))
        first = (n - stride * (num_frames - 1) - 1) // 2
        return frames[first : first + stride * num_frames : stride][:num_frames]
    idx = np.minimum(((np.arange(num_frames) + 0.5) * n / num_frames).astype(np.int64), n - 1)
    return frames[idx]
