"""The Serve application: a FastAPI ingress routing `POST /<task>` to one model deployment per task.

    Ingress (FastAPI: /healthz, /models, POST /<task>)
      -> DeploymentHandle per task -> ImageModel (decode, preprocess, batched forward, decode answer)

Adding a task is one `ROUTES` entry (+ an `ANSWERS` entry for a new label kind, + a model class for a
new input kind). No `from __future__ import annotations` here: Serve recognises the typed builder by
`build_app`'s real (not string) annotation.
"""
import asyncio
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, Mapping

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ray import serve
from ray.exceptions import RayActorError
from ray.serve import Application
from ray.serve.exceptions import BackPressureError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from ..errors import ConfigError, DataError
from ..export_meta import read_export_meta  # torch-free: the ingress and build tasks never import torch
from ..limits import DEFAULT_THRESHOLD, MAX_PIXELS  # torch-free: the ingress never imports torch
from . import http
from .batching import Batcher

__all__ = ["AppArgs", "ModelConfig", "Route", "ROUTES", "ANSWERS", "ImageModel", "TextModel", "Ingress", "build_app",
           "answer_multi_label", "answer_segmentation", "answer_points", "run_lengths", "parse_query",
           "ThresholdQuery", "MaskQuery", "NoQuery"]

log = logging.getLogger("ray.serve")

REPLICA_RETRIES = 4  # a request meeting a dead replica is sent again, backing off 0.05, 0.1, 0.2, 0.4 s
BODY_TIMEOUT_S = 30.0  # a client has this long to send its whole request body (408 after)
HEALTH_TIMEOUT_S = 5.0  # GET /healthz: how long each model deployment has to answer


class ModelConfig(BaseModel):
    """A model deployment's `user_config`: changed live by `serve deploy` without restarting replicas."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.002, ge=0)
    threads: int | None = Field(None, ge=1)  # None: the replica's CPU share
    export: str | None = None  # the export directory to serve; a new one is swapped in live (None: keep the current)


class AppArgs(BaseModel):
    """The arguments of `build_app` (from `serve run ... key=value`, a config file's `args`, or Python)."""

    exports: dict[str, str]  # task -> export directory
    max_body_bytes: int = Field(10 * 2**20, ge=1)
    max_pixels: int = Field(MAX_PIXELS, ge=1)
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.002, ge=0)
    threads: int | None = Field(None, ge=1)
    replica_cpus: float = Field(1.0, gt=0)  # CPUs each model replica reserves (a config file's ray_actor_options win)
    export_root: str | None = None  # when set, every export must lie inside it
    request_timeout_s: float | None = Field(None, gt=0)  # a prediction taking longer answers 504 (JSON)
    body_timeout_s: float = Field(BODY_TIMEOUT_S, gt=0)  # a request body arriving slower answers 408 (JSON)
    replica_retries: int = Field(REPLICA_RETRIES, ge=0)  # resends of a request whose model replica died under it

    @field_validator("exports", mode="before")
    @classmethod
    def _json_string(cls, v: Any) -> Any:
        # `serve run serve.app:build_app exports='{"planet": "/path"}'` passes the value as a string
        if isinstance(v, str):
            try:
                return json.loads(v)
            except json.JSONDecodeError as e:
                raise ValueError(f'exports must be a JSON object like {{"planet": "/path/to/export"}}: {e}')
        return v

    def model_config_for(self, export: str) -> dict:
        """The `user_config` a model deployment starts with: the export it serves and the batching settings.

        Everything a running replica may change lives in `user_config`: a config deploy that changes only a
        deployment's `user_config` (`serve deploy`, `raylessons.serving.configure`/`swap`) reaches the running
        replicas through `reconfigure`, without restarting them. (Changing `args` changes the application's code
        version: Serve then replaces every replica.)
        """
        return ModelConfig(max_batch_size=self.max_batch_size, batch_wait_timeout_s=self.batch_wait_timeout_s,
                           threads=self.threads, export=export).model_dump()


# --- query parameters: one pydantic model per route; unknown or invalid parameters are a 422 ---

class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThresholdQuery(_Query):
    """`?threshold=` overrides the export's decision threshold."""

    threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)


class MaskQuery(_Query):
    """`?format=png` (default: the mask as an 8-bit PNG) or `?format=json` (`&encoding=rle|list`)."""

    format: Literal["png", "json"] = "png"
    encoding: Literal["rle", "list"] = "rle"


class NoQuery(_Query):
    """This route takes no query parameters."""


def parse_query(model: type[BaseModel], params: Mapping[str, str]) -> dict:
    """The route's query parameters as a dict, or ApiError 422 naming each bad one."""
    try:
        return model.model_validate(dict(params)).model_dump()
    except ValidationError as e:
        parts = []
        for err in e.errors():
            name = ".".join(str(x) for x in err.get("loc", ())) or "query"
            allowed = f"; allowed: {sorted(model.model_fields) or 'none'}" if err["type"] == "extra_forbidden" else ""
            parts.append(f"{name}: {err['msg']} (got {err.get('input')!r}){allowed}")
        raise http.ApiError(422, "invalid_query", "; ".join(parts)) from None


# --- answers: one function per label kind, (predictor, activated row, image (H, W), **query) -> answer ---

def answer_multi_label(predictor, row, size, threshold: float | None = None) -> dict:
    """`{"tags": [...], "probs": {tag: p}, "threshold": t}` of one sigmoid row."""
    thresh = predictor.threshold if threshold is None else threshold
    tags, _, probs = predictor.decode(row, thresh)
    return {"tags": tags, "probs": dict(zip(predictor.classes, probs.tolist())), "threshold": thresh}


def run_lengths(mask) -> list[list[int]]:
    """Row-major runs `[[class, length], ...]` of a class-index mask."""
    import torch

    flat = mask.reshape(-1)
    if flat.numel() == 0:
        return []
    starts = torch.cat([torch.tensor([0]), torch.nonzero(flat[1:] != flat[:-1]).flatten() + 1])
    lengths = torch.diff(torch.cat([starts, torch.tensor([flat.numel()])]))
    return [[int(c), int(n)] for c, n in zip(flat[starts].tolist(), lengths.tolist())]


def answer_segmentation(predictor, row, size, format: str = "png", encoding: str = "rle"):
    """The class-index mask at the posted image's size: a PNG (classes present in a header) or JSON."""
    mask, present, _ = predictor.decode(row, size=size)
    if format == "png":
        import io

        import numpy as np
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(mask.numpy().astype(np.uint8), mode="L").save(buf, format="PNG")
        return http.BinaryAnswer(buf.getvalue(), "image/png",
                                 {"x-classes-present": ",".join(present), "x-mask-size": f"{size[0]}x{size[1]}"})
    answer = {"height": size[0], "width": size[1], "classes_present": present, "codes": predictor.classes,
              "encoding": encoding}
    answer["mask"] = run_lengths(mask) if encoding == "rle" else mask.tolist()
    return answer


def answer_points(predictor, row, size) -> dict:
    """`{"row": r, "col": c}` in pixels of the posted image (`{"points": [...]}` when there are several)."""
    rc, _, _ = predictor.decode(row, size=size)
    points = [{"row": float(r), "col": float(c)} for r, c in rc.tolist()]
    return points[0] if len(points) == 1 else {"points": points}


ANSWERS: dict[str, Callable[..., Any]] = {"multi_category": answer_multi_label,
                                          "segmentation": answer_segmentation, "points": answer_points}


def _cpu_share() -> int:
    """The CPUs Ray gave this replica, at least 1 (Ray pins a 1-CPU replica's torch to 1 thread)."""
    import ray

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
    """

    loaded: _Loaded

    def __init__(self, task: str, export_dir: str, max_pixels: int = MAX_PIXELS, export_root: str | None = None):
        self.task, self.max_pixels, self.export_root = task, max_pixels, export_root
        self.swap_error, self.configured = None, False
        self.loaded = self._load(export_dir)
        self.batcher = Batcher(self._forward)
        self._apply(ModelConfig())

    def _load(self, path: str) -> _Loaded:
        """Load and check an export (this task's label kind, inside export_root): the new `_Loaded`."""
        export, meta = checked_export(self.task, path, self.export_root)
        predictor = self._predictor(export)  # state dict loaded with weights_only
        return _Loaded(predictor, ANSWERS.get(predictor.kind), {**_summary(self.task, meta), "export": str(export)})

    def _predictor(self, export: Path) -> Any:
        raise NotImplementedError

    def _apply(self, cfg: ModelConfig) -> None:
        import torch

        self.threads = cfg.threads or _cpu_share()
        torch.set_num_threads(self.threads)
        self.batcher.max_batch_size, self.batcher.batch_wait_timeout_s = cfg.max_batch_size, cfg.batch_wait_timeout_s

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
        batching: settings, forwards run and requests answered since the replica started."""
        b = self.batcher
        batching = {"max_batch_size": b.max_batch_size, "batch_wait_timeout_s": b.batch_wait_timeout_s,
                    "batches": b.batches, "requests": b.items}
        return {**self.loaded.summary, **({"swap_error": self.swap_error} if self.swap_error else {}),
                "batching": batching}

    async def _forward(self, items: list) -> list:
        """[(predictor, input)] -> one output row per item, in request order: the batcher's forward.

        The forward runs in a thread (torch releases the GIL): the replica's event loop meanwhile decodes the
        requests arriving, so they wait in the batcher, ready for the next batch.
        """
        return await asyncio.to_thread(_forward_groups, items, self.threads)


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
        if predictor.kind not in ANSWERS:
            raise ConfigError(f"{export}: no answer for label kind {predictor.kind!r}; known: {sorted(ANSWERS)}")
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
            label, _, probs = predictor.decode(row)
            answers.append({"label": label, "probs": dict(zip(predictor.classes, probs.tolist())),
                            "tokens": n_tokens, "truncated": n_tokens > len(ids)})
        return answers[0] if body["single"] else {"predictions": answers}


# --- the route table: task -> what its export must hold, which deployment serves it, how to read bodies ---

@dataclass(frozen=True)
class Route:
    """How one task is served."""

    label_kind: str                                     # checked against the export's meta.json at build
    model: Any                                          # the Serve deployment class (one per input kind)
    read: Callable[[Request, int], Awaitable[bytes]]    # (request, max_body_bytes) -> what the model takes
    query: type[BaseModel] = NoQuery                    # the query parameters the route accepts
    path: str = ""                                      # URL path (default /<task>)
    model_kinds: tuple = ()                             # when set, the export's model kind must be one of these


ROUTES: dict[str, Route] = {
    "planet": Route("multi_category", ImageModel, http.read_image_body, ThresholdQuery),
    "camvid": Route("segmentation", ImageModel, http.read_image_body, MaskQuery),
    "head_pose": Route("points", ImageModel, http.read_image_body, NoQuery, path="/headpose"),
    "sentiment": Route("category", TextModel, http.read_text_body, NoQuery, model_kinds=("awd_lstm_clas",)),
}


api = FastAPI(title="raylessons", description="fast.ai lesson 3 models on Ray Serve")
http.install_error_handlers(api)


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Ingress:
    """HTTP front door: validates requests, then awaits the task's model deployment."""

    def __init__(self, models: dict[str, DeploymentHandle], max_body_bytes: int,
                 request_timeout_s: float | None = None, replica_retries: int = REPLICA_RETRIES,
                 body_timeout_s: float = BODY_TIMEOUT_S):
        self.models, self.max_body_bytes, self.request_timeout_s = models, max_body_bytes, request_timeout_s
        self.replica_retries, self.body_timeout_s = replica_retries, body_timeout_s

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        """200 when every model deployment answers within HEALTH_TIMEOUT_S, else 503 naming those that do not
        (`{"status": "degraded", "models": {task: "unavailable: ..."}}`)."""
        async def ask(task: str) -> str:
            try:
                await asyncio.wait_for(self._info(task), HEALTH_TIMEOUT_S)
                return "ok"
            except Exception as e:  # dead, restarting, overloaded or timed out: say so, do not raise
                return f"unavailable: {type(e).__name__}"

        tasks = sorted(self.models)
        models = dict(zip(tasks, await asyncio.gather(*(ask(task) for task in tasks))))
        ok = all(state == "ok" for state in models.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "models": models}, status_code=200 if ok else 503)

    async def _info(self, task: str) -> dict:
        return await self.models[task].info.remote()

    @api.get("/models")
    async def models_info(self) -> dict:
        """What every task serves now (asked of its model deployment, so a live swap shows at once)."""
        tasks = sorted(self.models)
        try:
            infos = await asyncio.gather(*(self._info(task) for task in tasks))
        except (RayActorError, BackPressureError) as e:
            raise http.ApiError(503, "model_unavailable", f"{type(e).__name__}") from None
        return {"models": list(infos)}

    async def _ask(self, task: str, body: Any, query: dict) -> Any:
        """The model deployment's answer. A replica that dies with the request in flight (killed, out of
        memory, node lost) fails it with RayActorError: inference has no side effects, so the request is sent
        again, and Serve routes it to a live replica (or the restarted one)."""
        for attempt in range(self.replica_retries + 1):
            response = self.models[task].remote(body, query)
            try:
                return await response
            except (RayActorError, ReplicaUnavailableError) as e:
                if attempt == self.replica_retries:
                    raise
                log.warning("%s: replica died with a request in flight (%s); retry %d of %d", task,
                            type(e).__name__, attempt + 1, self.replica_retries)
                await asyncio.sleep(0.05 * 2**attempt)
            except asyncio.CancelledError:  # the request timed out (or the client left): stop the model's work
                response.cancel()
                raise

    async def predict(self, request: Request) -> Any:
        """The task's answer for the body (the route's reader says what the body may be)."""
        task = request.scope["route"].name
        if task not in self.models:
            raise http.ApiError(404, "not_found", f"task {task!r} is not served here; served: {sorted(self.models)}")
        route = ROUTES[task]
        query = parse_query(route.query, request.query_params)
        try:  # Serve's proxy streams the body here as it arrives: a client trickling it would hold the request
            body = await http.within(route.read(request, self.max_body_bytes), self.body_timeout_s)
        except asyncio.TimeoutError:
            raise http.ApiError(408, "body_timeout", f"the request body did not arrive within body_timeout_s="
                                                     f"{self.body_timeout_s} s") from None
        try:
            result = await http.within(self._ask(task, body, query), self.request_timeout_s)  # None: no limit
        except asyncio.TimeoutError:
            raise http.ApiError(504, "timeout", f"{task}: no answer within request_timeout_s="
                                                f"{self.request_timeout_s} s") from None
        except (RayActorError, ReplicaUnavailableError, BackPressureError) as e:  # replicas dead, or queue full
            raise http.ApiError(503, "model_unavailable", f"{task}: {type(e).__name__}; retry later") from None
        except Exception as e:  # a bug, not a client mistake (those come back as ApiError values)
            log.exception("model %s failed", task)
            raise http.ApiError(500, "internal_error", f"{task}: {type(e).__name__}") from None
        if isinstance(result, http.ApiError):
            raise result
        if isinstance(result, http.BinaryAnswer):
            return Response(result.body, media_type=result.media_type, headers=result.headers)
        return result

    # one POST route per known task, named after it: unknown paths stay 404 and `GET /planet` is 405
    for _task, _route in ROUTES.items():
        api.post(_route.path or f"/{_task}", name=_task, summary=f"predict {_task}",
                 description=(_route.query.__doc__ or ""))(predict)
    del _task, _route


# --- building the application ---

def resolve_export(task: str, path: str, root: str | None) -> Path:
    """The absolute export directory of `task`; with `root`, relative paths start there and must stay inside."""
    p = Path(path).expanduser()
    if root is not None:
        base = Path(root).expanduser().resolve()
        p = (base / p).resolve()
        if not p.is_relative_to(base):
            raise ConfigError(f"export of {task!r} ({path}) resolves to {p}, outside export_root {base}")
    return p.resolve()


def _summary(task: str, meta: dict) -> dict:
    """What GET /models shows of one export."""
    keys = ("arch", "classes", "size", "metrics", "exported_at")
    return {"task": task, "kind": meta["label_kind"], **{k: meta.get(k) for k in keys},
            "threshold": meta.get("threshold", DEFAULT_THRESHOLD)}


def build_app(args: AppArgs) -> Application:
    """The Serve application for `args.exports` (a dict is accepted too: `build_app({"exports": {...}})`)."""
    if not isinstance(args, AppArgs):
        try:
            args = AppArgs.model_validate(args)
        except ValidationError as e:
            raise ConfigError(f"invalid application arguments: {e}") from None
    if not args.exports:
        raise ConfigError(f"no exports given; known tasks: {sorted(ROUTES)}")
    handles = {}
    for task, path in args.exports.items():
        if task not in ROUTES:
            raise ConfigError(f"unknown task {task!r}; known tasks: {sorted(ROUTES)}")
        export, _ = checked_export(task, path, args.export_root)  # missing/malformed/wrong export: fail now
        # The export is an init argument (what a new replica loads) and the start of user_config, where a config
        # deploy may name another one: `reconfigure` then swaps the model live. max_ongoing_requests >= batch
        # size, or batches never fill (Serve's default of 5 collapses under load).
        handles[task] = ROUTES[task].model.options(
            name=task, max_ongoing_requests=max(32, args.max_batch_size),
            ray_actor_options={"num_cpus": args.replica_cpus}, user_config=args.model_config_for(str(export)),
        ).bind(task, str(export), args.max_pixels, args.export_root)
    return Ingress.bind(handles, args.max_body_bytes, args.request_timeout_s, args.replica_retries,
                        args.body_timeout_s)


def checked_export(task: str, path: str, root: str | None) -> tuple[Path, dict]:
    """(absolute export directory, its meta.json) of an export `task` can serve, checked without loading weights:
    inside `root` when set, meta.json present and well formed, the model kind the task needs."""
    export = resolve_export(task, path, root)
    meta = read_export_meta(export)
    check_export_kind(task, export, meta)
    return export, meta


def check_export_kind(task: str, export: Path, meta: dict) -> None:
    """ConfigError unless `meta` (an export's meta.json) holds the kind of model `task` serves."""
    route = ROUTES[task]
    model_kind = meta["model"].get("kind") if isinstance(meta["model"], dict) else None
    if meta["label_kind"] != route.label_kind or (route.model_kinds and model_kind not in route.model_kinds):
        kind = f" ({model_kind})" if route.model_kinds else ""
        wanted = f" from {list(route.model_kinds)}" if route.model_kinds else ""
        raise ConfigError(f"export {export} holds a {meta['label_kind']!r} model{kind}; "
                          f"task {task!r} needs {route.label_kind!r}{wanted}")
