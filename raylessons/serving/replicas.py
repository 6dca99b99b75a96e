"""The model deployments: one replica holds one export, batches its requests' forwards and answers each.

torch, the predictors and image decoding are imported inside the methods that run in a replica: the ingress
imports this module (through the route table) and never imports torch.
"""
import asyncio
import logging
import math
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ray
from pydantic import ValidationError
from ray import serve

from ..errors import ConfigError, DataError
from ..export_meta import read_export_meta
from . import http
from .batching import Batcher
from .exports import ExportKind, local_export, read_export, resolve_export, summary
from .settings import MAX_PIXELS, ModelConfig

__all__ = ["ImageModel", "TextModel"]

log = logging.getLogger("ray.serve")


# libgomp's idle OpenMP workers spin this many rounds before they sleep. A forward that runs alone (a lone
# request) uses a team of the replica's threads: its worker sleeps between two ops when the spin is short (1,000,
# what libgomp uses once a process has more OpenMP threads than cores) and each op then waits for it to wake: the
# replica's batch-1 forward took 1.1-1.5x the raw one (bench/serve_load.py, the replica's forward_s). 30,000 rounds
# keep it awake through a forward and let it sleep soon after, where libgomp's default (300,000, ten times as long)
# spins on a core the event loop and the ingress need after every forward. Under load the lanes run
# forwards on one thread each: no team, nothing spins.
OPENMP_SPIN_COUNT = "30000"


def _short_openmp_spin() -> str | None:
    """Set GOMP_SPINCOUNT for this replica (unless set already); the value libgomp uses here, or None when torch
    was loaded before (libgomp reads it when torch loads: the process keeps whatever it had)."""
    if "torch" in sys.modules:
        return None
    return os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)


def _one_torch_thread() -> None:
    """Keep this thread's torch work on one core: only the forward thread runs a team of threads.

    OpenMP gives every thread that runs a parallel torch op its own team. Once a second thread (the event loop
    decoding a request, a swap loading a model) has run one with 2 threads, the forward thread's forwards take
    about 1.5x as long on 2 cores (resnet34 at 128 px, batch 1: 25 ms instead of 16). The event loop's work is
    small ops on one image, where threads gain nothing.
    """
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _cpu_share() -> int:
    """The CPUs Ray gave this replica, at least 1 (Ray pins a 1-CPU replica's torch to 1 thread)."""
    if not ray.is_initialized():  # built outside Ray (a test, a script): the cores this process may use
        return len(os.sched_getaffinity(0))
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, math.ceil(cpus))


class _Loaded:
    """What one export gives a replica: the predictor, its answer function and the /models summary."""

    def __init__(self, predictor: Any, answer: Callable[..., Any] | None, summary: dict):
        self.predictor, self.answer, self.summary = predictor, answer, summary


class _BatchedModel:
    """What every model deployment shares: the export it serves (swappable live through `user_config`),
    live batching/thread settings and one batched forward.

    A request takes `self.loaded` once, when it arrives, and uses that predictor for its preprocessing,
    forward and answer; a swap replaces `self.loaded` in one assignment, so requests in flight finish on the
    model they started on while new ones get the new model. A batch may then hold requests of both: it is
    forwarded one predictor at a time.

    `export_kind` is what every export served must hold (`build_app` passes the route's); without it, the
    kind of the first export, so a swap never brings another kind of model either way.
    """

    loaded: _Loaded

    def __init__(self, task: str, export_dir: str, max_pixels: int = MAX_PIXELS, export_root: str | None = None,
                 export_kind: ExportKind | None = None):
        self.openmp_spin_count = _short_openmp_spin()  # first: loading the export imports torch
        self.task, self.max_pixels, self.export_root = task, max_pixels, export_root
        self.export_kind = export_kind or ExportKind(
            read_export_meta(local_export(resolve_export(task, export_dir, export_root)))["label_kind"])
        self.swap_error, self.configured = None, False
        # a forward that runs alone runs on this one thread (see _one_torch_thread) with the replica's torch threads;
        # forwards that run side by side under load, on the lanes' threads with one torch thread each
        self._forward_thread = ThreadPoolExecutor(1, thread_name_prefix=f"{task}-forward")
        self._lane_threads: ThreadPoolExecutor | None = None
        self._lane_count = 0
        self.loaded = self._load(export_dir)
        self.batcher = Batcher(self._forward)
        self._apply(ModelConfig())

    def _load(self, path: str) -> _Loaded:
        """Load and check an export (this task's kind, inside export_root): the new `_Loaded`. A URI is loaded from
        this machine's cached download of it; GET /models shows the URI."""
        _one_torch_thread()  # the event loop's thread at start, a helper thread for a live swap
        export, meta = read_export(self.task, path, self.export_root, self.export_kind)
        predictor = self._predictor(local_export(export))  # state dict loaded with weights_only
        return _Loaded(predictor, predictor.label.answer, {**summary(self.task, meta), "export": str(export)})

    def _predictor(self, export: Path) -> Any:
        raise NotImplementedError

    def _apply(self, cfg: ModelConfig) -> None:
        self.threads = cfg.threads or _cpu_share()  # the forward thread's torch threads, set at its next forward
        # a GPU runs one forward at a time anyway: its lone lane is the forward thread
        lanes = cfg.lanes or (1 if self.loaded.predictor.device.type != "cpu" else self.threads)
        if lanes > 1 and lanes != self._lane_count:
            # forwards already running on the old pool finish there; its threads end when they do
            old, self._lane_threads = self._lane_threads, ThreadPoolExecutor(lanes,
                                                                             thread_name_prefix=f"{self.task}-lane")
            self._lane_count = lanes
            if old is not None:
                old.shutdown(wait=False)
        b = self.batcher
        b.max_batch_size, b.batch_wait_timeout_s, b.lanes = cfg.max_batch_size, cfg.batch_wait_timeout_s, lanes

    async def reconfigure(self, user_config: dict) -> None:
        """Apply a `ModelConfig`: batch size, batch wait, torch threads, and the export to serve.

        Serve calls this after `__init__` (same export: nothing to load) and whenever `user_config` changes.

        A new export loads in a thread while the old model keeps answering, then replaces it. An export that
        cannot be served (missing, wrong kind, outside export_root) leaves the old model in place and is
        reported by GET /models as `swap_error`, rather than crashing the replica into a restart loop.
        """
        try:
            cfg = ModelConfig.model_validate(user_config or {})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            if not self.configured:  # at deploy: fail it, naming the field
                raise ConfigError(f"{self.task}: invalid user_config: {problems}") from None
            self.swap_error = f"user_config refused, settings unchanged: {problems}"  # live: keep serving
            log.error("%s: %s", self.task, self.swap_error)
            return
        self._apply(cfg)
        self.configured = True
        target = cfg.export
        try:
            if target is None or str(resolve_export(self.task, target, self.export_root)) == \
                    self.loaded.summary["export"]:
                self.swap_error = None
                return
            loaded = await asyncio.to_thread(self._load, target)
        except (ConfigError, DataError, OSError, RuntimeError, ValueError) as e:
            self.swap_error = f"{target}: {e}"
            log.error("%s: swap to %s refused, still serving %s: %s", self.task, target,
                      self.loaded.summary["export"], e)
            return
        self.loaded, self.swap_error = loaded, None
        log.info("%s: now serving %s", self.task, loaded.summary["export"])

    async def info(self) -> dict:
        """What GET /models shows of this deployment: the served export's summary (+ a refused swap), and its
        batching: settings, forwards run, requests answered and the seconds those forwards took since the replica
        started, the forward's torch threads and OpenMP's spin count (None: torch was loaded before the replica
        could set it)."""
        b = self.batcher
        batching = {"max_batch_size": b.max_batch_size, "batch_wait_timeout_s": b.batch_wait_timeout_s,
                    "batches": b.batches, "requests": b.items, "forward_s": round(b.forward_s, 6),
                    "threads": self.threads, "lanes": b.lanes,
                    "openmp_spin_count": self.openmp_spin_count}
        return {**self.loaded.summary, **({"swap_error": self.swap_error} if self.swap_error else {}),
                "batching": batching}

    async def _forward(self, items: list, alone: bool = True) -> list:
        """[(predictor, input)] -> one output row per item, in request order: the batcher's forward.

        A forward that runs alone runs on the replica's forward thread with all its torch threads: a lone request
        gets the lowest latency (resnet34 at 128 px, batch 1, on 2 cores: 33 ms on two threads, 46 on one). Under
        load the batcher runs up to `lanes` forwards side by side, each on a lane thread with one torch thread: a
        two-thread forward's OpenMP team waits at every op for its slower thread, and the event loop and the
        ingress share the cores; a lane waits for nobody (bench/serve_load.py measures the same replica with one
        lane in the same run). Either way torch releases the GIL: the event loop meanwhile decodes the requests
        arriving, so they wait in the batcher, ready for the next batch.
        """
        if alone or self._lane_threads is None:
            pool, threads = self._forward_thread, self.threads
        else:
            pool, threads = self._lane_threads, 1
        return await asyncio.get_running_loop().run_in_executor(pool, _forward_groups, items, threads)


def _forward_groups(items: list, threads: int | None = None) -> list:
    """One forward per predictor (a batch straddling a live swap holds two), rows back in item order.

    `threads`: torch's thread count for this (executor) thread. OpenMP keeps it per thread, and a new thread
    starts from OMP_NUM_THREADS, which Ray sets to 1 in its workers: without this the forward runs on one core.
    """
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    rows: list = [None] * len(items)
    groups: dict[int, tuple[Any, list[int]]] = {}
    for i, (predictor, _) in enumerate(items):
        groups.setdefault(id(predictor), (predictor, []))[1].append(i)
    for predictor, idx in groups.values():
        for i, row in zip(idx, predictor.forward([items[i][1] for i in idx])):  # (B, ...) -> B rows
            rows[i] = row
    return rows


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 1})
class ImageModel(_BatchedModel):
    """One image model: decode + validation preprocessing per request, batched forward, per-request answer.

    Decoding happens here rather than in the ingress: `Predictor.preprocess` (the validation transforms)
    lives with the model's export, the CPU it costs is counted against this replica's CPUs, and the
    compressed bytes crossing the handle are far smaller than float tensors. Bad images never reach the
    batch; they come back as an `ApiError` value (not raised, so Serve does not log a client mistake as
    a replica failure) that the ingress turns into a 400.
    """

    def _predictor(self, export: Path) -> Any:
        from ..inference import Predictor

        predictor = Predictor.from_export(export)
        if not predictor.label.served:
            raise ConfigError(f"{export}: label kind {predictor.kind!r} has no HTTP answer")
        return predictor

    async def __call__(self, body: bytes, query: dict | None = None) -> Any:
        """The answer for one encoded image, or the ApiError saying why it is not one."""
        from ..data.imageio import decode_image_bytes

        loaded = self.loaded  # this request's model, even if a swap lands while it waits in a batch
        try:
            x, size = loaded.predictor.prepare(decode_image_bytes(body, max_pixels=self.max_pixels))  # (3, h, w)
        except DataError as e:
            return http.ApiError(400, "bad_image", str(e))
        row = await self.batcher.submit((loaded.predictor, x))  # (C,) or (C, h, w)
        return loaded.answer(loaded.predictor, row, size, **(query or {}))


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 1})
class TextModel(_BatchedModel):
    """A text classifier: tokenize + numericalize per request, every text batched with other requests' texts.

    Texts longer than the model's `max_len` tokens (1400 for the lesson's classifier) are cut to their first
    `max_len` tokens; the answer says so with `"truncated": true`.
    """

    def _predictor(self, export: Path) -> Any:
        from ..text_predict import TextPredictor

        return TextPredictor.from_export(export)

    async def __call__(self, body: dict, query: dict | None = None) -> Any:
        """`{"label", "probs", "tokens", "truncated"}` per text (`{"predictions": [...]}` for a `texts` list)."""
        predictor = self.loaded.predictor
        try:
            prepared = [predictor.prepare(text) for text in body["texts"]]
        except DataError as e:
            return http.ApiError(422, "empty_text", str(e))
        rows = await asyncio.gather(*(self.batcher.submit((predictor, ids)) for ids, _ in prepared))
        answers = []
        for (ids, n_tokens), row in zip(prepared, rows):
            answers.append({**predictor.label.answer(predictor, row, None),
                            "tokens": n_tokens, "truncated": n_tokens > len(ids)})
        return answers[0] if body["single"] else {"predictions": answers}
