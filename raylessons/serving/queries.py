"""Query parameters: one pydantic model per route; an unknown or invalid parameter is a 422 naming it."""
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import http

__all__ = ["MaskQuery", "NoQuery", "ThresholdQuery", "parse_query"]


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
