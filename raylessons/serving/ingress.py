"""The HTTP front door: a FastAPI ingress that validates requests and awaits the task's model deployment.

    Ingress (FastAPI: /healthz, /models, POST /<task>)
      -> DeploymentHandle per task -> model deployment (decode, preprocess, batched forward, answer)

It never imports torch: requests are checked and read here, decoded in the model replicas.
"""
import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from . import http
from .queries import parse_query
from .routes import ROUTES
from .settings import BODY_TIMEOUT_S, HEALTH_TIMEOUT_S, REPLICA_RETRIES

__all__ = ["Ingress", "api"]

log = logging.getLogger("ray.serve")

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
