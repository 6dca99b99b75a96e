"""The Serve application's settings: the builder's arguments (`AppArgs`) and a model deployment's live
`user_config` (`ModelConfig`), with the defaults they share."""
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..limits import MAX_PIXELS  # torch-free: the ingress never imports torch

__all__ = ["BODY_TIMEOUT_S", "HEALTH_TIMEOUT_S", "MAX_PIXELS", "REPLICA_RETRIES", "AppArgs", "ModelConfig"]

REPLICA_RETRIES = 4  # a request meeting a dead replica is sent again, backing off 0.05, 0.1, 0.2, 0.4 s
BODY_TIMEOUT_S = 30.0  # a client has this long to send its whole request body (408 after)
HEALTH_TIMEOUT_S = 5.0  # GET /healthz: how long each model deployment has to answer


class ModelConfig(BaseModel):
    """A model deployment's `user_config`: changed live by `serve deploy` without restarting replicas."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.0, ge=0)
    threads: int | None = Field(None, ge=1)  # None: the replica's CPU share
    # forwards that may run side by side under load, one torch thread each (None: one per thread; 1: one at a time)
    lanes: int | None = Field(None, ge=1)
    export: str | None = None  # the export directory to serve; a new one is swapped in live (None: keep the current)


class AppArgs(BaseModel):
    """The arguments of `build_app` (from `serve run ... key=value`, a config file's `args`, or Python)."""

    exports: dict[str, str]  # task -> export directory, or its URI (s3://bucket/prefix/export: cached per node)
    max_body_bytes: int = Field(10 * 2**20, ge=1)
    max_pixels: int = Field(MAX_PIXELS, ge=1)
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.0, ge=0)
    threads: int | None = Field(None, ge=1)
    lanes: int | None = Field(None, ge=1)
    replica_cpus: float = Field(1.0, gt=0)  # CPUs each model replica reserves (a config file's ray_actor_options win)
    export_root: str | None = None  # when set, every export must lie inside it (a URI root: start with it)
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
                           threads=self.threads, lanes=self.lanes, export=export).model_dump()
