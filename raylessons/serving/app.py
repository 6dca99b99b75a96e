"""The Serve application: a FastAPI ingress routing `POST /<task>` to one model deployment per task.

    Ingress (FastAPI: /healthz, /models, POST /<task>)
      -> DeploymentHandle per task -> ImageModel (decode, preprocess, batched forward, decode answer)

Adding a task is one `ROUTES` entry (+ an `ANSWERS` entry for a new label kind, + a model class for a
new input kind). No `from __future__ import annotations` here: Serve recognises the typed builder by
`build_app`'s real (not string) annotation.
"""
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, Mapping

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ray import serve
from ray.exceptions import RayActorError
from ray.serve import Application
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from ..errors import ConfigError, DataError
from ..limits import DEFAULT_THRESHOLD, MAX_PIXELS  # torch-free: the ingress never imports torch
from . import http

__all__ = ["AppArgs", "ModelConfig", "Route", "ROUTES", "ANSWERS", "ImageModel", "TextModel", "Ingress", "build_app",
           "answer_multi_label", "answer_segmentation", "answer_points", "run_lengths", "parse_query",
           "ThresholdQuery", "MaskQuery", "NoQuery"]

log = logging.getLogger("ray.serve")



class ModelConfig(BaseModel):
    """A model deployment's `user_config`: changed live by `serve deploy` without restarting replicas."""

    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    threads: int | None = Field(None, ge=1)  # None: the replica's CPU share


class AppArgs(BaseModel):
    """The arguments of `build_app` (from `serve run ... key=value`, a config file's `args`, or Python)."""

    exports: dict[str, str]  # task -> export directory
    max_body_bytes: int = Field(10 * 2**20, ge=1)
    max_pixels: int = Field(MAX_PIXELS, ge=1)
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    threads: int | None = Field(None, ge=1)
    replica_cpus: float = Field(1.0, gt=0)  # CPUs each model replica reserves (a config file's ray_actor_options win)
    export_root: str | None = None  # when set, every export must lie inside it

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

    def model_config_for_replicas(self) -> dict:
        """The `user_config` every model deployment starts with."""
        return ModelConfig(max_batch_size=self.max_batch_size, batch_wait_timeout_s=self.batch_wait_timeout_s,
                           threads=self.threads).model_dump()


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


class _BatchedModel:
    """What every model deployment shares: live batching/thread settings and one batched forward."""

    predictor: Any

    def reconfigure(self, user_config: dict) -> None:
        """Apply a `ModelConfig` (batch size, batch wait, torch threads)."""
        import torch

        cfg = ModelConfig.model_validate(user_config or {})
        torch.set_num_threads(cfg.threads or _cpu_share())
        self._forward.set_max_batch_size(cfg.max_batch_size)
        self._forward.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _forward(self, xs: list) -> list:
        return list(self.predictor.forward(xs))  # (B, ...) -> B rows, in request order


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 1})
class ImageModel(_BatchedModel):
    """One image model: decode + validation preprocessing per request, batched forward, per-request answer.

    Decoding happens here rather than in the ingress: `Predictor.preprocess` (the validation transforms)
    lives with the model's export, the CPU it costs is counted against this replica's CPUs, and the
    compressed bytes crossing the handle are far smaller than float tensors. Bad images never reach the
    batch; they come back as an `ApiError` value (not raised, so Serve does not log a client mistake as
    a replica failure) that the ingress turns into a 400.
    """

    def __init__(self, export_dir: str, max_pixels: int = MAX_PIXELS):
        from ..inference import Predictor

        self.predictor = Predictor.from_export(export_dir)  # state dict loaded with weights_only
        if self.predictor.kind not in ANSWERS:
            raise ConfigError(f"{export_dir}: no answer for label kind {self.predictor.kind!r}; "
                              f"known: {sorted(ANSWERS)}")
        self.answer, self.max_pixels = ANSWERS[self.predictor.kind], max_pixels
        self.reconfigure({})

    async def __call__(self, body: bytes, query: dict | None = None) -> Any:
        """The answer for one encoded image, or the ApiError saying why it is not one."""
        from ..data.imageio import decode_image_bytes

        try:
            x, size = self.predictor.prepare(decode_image_bytes(body, max_pixels=self.max_pixels))  # (3, h, w)
        except DataError as e:
            return http.ApiError(400, "bad_image", str(e))
        row = await self._forward(x)  # (C,) or (C, h, w)
        return self.answer(self.predictor, row, size, **(query or {}))


@serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 1})
class TextModel(_BatchedModel):
    """A text classifier: tokenize + numericalize per request, every text batched with other requests' texts.

    Texts longer than the model's `max_len` tokens (1400 for the lesson's classifier) are cut to their first
    `max_len` tokens; the answer says so with `"truncated": true`.
    """

    def __init__(self, export_dir: str, max_pixels: int = MAX_PIXELS):
        from ..text.predict import TextPredictor

        self.predictor = TextPredictor.from_export(export_dir)
        self.reconfigure({})

    async def __call__(self, body: dict, query: dict | None = None) -> Any:
        """`{"label", "probs", "tokens", "truncated"}` per text (`{"predictions": [...]}` for a `texts` list)."""
        import asyncio

        try:
            prepared = [self.predictor.prepare(text) for text in body["texts"]]
        except DataError as e:
            return http.ApiError(422, "empty_text", str(e))
        rows = await asyncio.gather(*(self._forward(ids) for ids, _ in prepared))
        answers = []
        for (ids, n_tokens), row in zip(prepared, rows):
            label, _, probs = self.predictor.decode(row)
            answers.append({"label": label, "probs": dict(zip(self.predictor.classes, probs.tolist())),
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

    def __init__(self, models: dict[str, DeploymentHandle], metas: dict[str, dict], max_body_bytes: int):
        self.models, self.metas, self.max_body_bytes = models, metas, max_body_bytes

    @api.get("/healthz")
    async def healthz(self) -> dict:
        """200 while the ingress runs; Serve restarts model replicas that fail their health checks."""
        return {"status": "ok", "models": sorted(self.models)}

    @api.get("/models")
    async def models_info(self) -> dict:
        """The export metadata of every served task."""
        return {"models": [self.metas[task] for task in sorted(self.metas)]}

    async def predict(self, request: Request) -> Any:
        """The task's answer for the body (the route's reader says what the body may be)."""
        task = request.scope["route"].name
        if task not in self.models:
            raise http.ApiError(404, "not_found", f"task {task!r} is not served here; served: {sorted(self.models)}")
        route = ROUTES[task]
        query = parse_query(route.query, request.query_params)
        body = await route.read(request, self.max_body_bytes)
        try:
            result = await self.models[task].remote(body, query)
        except (RayActorError, BackPressureError) as e:  # replica dead or queue full: retry later
            raise http.ApiError(503, "model_unavailable", f"{task}: {type(e).__name__}") from None
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
    from ..learner_io import read_export_meta  # imports torch: keep it out of the ingress process

    if not isinstance(args, AppArgs):
        try:
            args = AppArgs.model_validate(args)
        except ValidationError as e:
            raise ConfigError(f"invalid application arguments: {e}") from None
    if not args.exports:
        raise ConfigError(f"no exports given; known tasks: {sorted(ROUTES)}")
    handles, metas = {}, {}
    for task, path in args.exports.items():
        if task not in ROUTES:
            raise ConfigError(f"unknown task {task!r}; known tasks: {sorted(ROUTES)}")
        route, export = ROUTES[task], resolve_export(task, path, args.export_root)
        meta = read_export_meta(export)  # missing/malformed export: fail now, not in a replica
        model_kind = meta["model"].get("kind") if isinstance(meta["model"], dict) else None
        if meta["label_kind"] != route.label_kind or (route.model_kinds and model_kind not in route.model_kinds):
            kind = f" ({model_kind})" if route.model_kinds else ""
            wanted = f" from {list(route.model_kinds)}" if route.model_kinds else ""
            raise ConfigError(f"export {export} holds a {meta['label_kind']!r} model{kind}; "
                              f"task {task!r} needs {route.label_kind!r}{wanted}")
        # max_ongoing_requests >= batch size, or batches never fill (Serve's default of 5 collapses under load)
        handles[task] = route.model.options(
            name=task, max_ongoing_requests=max(32, args.max_batch_size),
            ray_actor_options={"num_cpus": args.replica_cpus},
            user_config=args.model_config_for_replicas(),
        ).bind(str(export), args.max_pixels)
        metas[task] = _summary(task, meta)
    return Ingress.bind(handles, metas, args.max_body_bytes)
