"""Reading request bodies safely and answering every error as JSON `{"error", "detail"}`."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterable, Awaitable, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from ..answer_types import BinaryAnswer

__all__ = ["ApiError", "BinaryAnswer", "IMAGE_TYPES", "MULTIPART", "error_response", "install_error_handlers", "media_type",
           "check_content_type", "check_content_length", "read_limited", "first_file", "read_image_body",
           "read_text_body", "MAX_TEXTS", "within"]

IMAGE_TYPES = ("image/jpeg", "image/png", "application/octet-stream")
MULTIPART = "multipart/form-data"
# a multipart upload holds one image; these caps stop a body full of tiny parts from costing CPU
MAX_PARTS = 16

# the `error` names of the statuses Starlette answers by itself (unknown route, wrong method, ...)
_STATUS_NAMES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                 415: "unsupported_media_type", 422: "invalid_query", 500: "internal_error",
                 503: "unavailable"}


class ApiError(Exception):
    """A client mistake (or an unavailable model) answered with `status` and `{"error", "detail"}`."""

    def __init__(self, status: int, error: str, detail: str):
        super().__init__(status, error, detail)  # args survive pickling (replicas return these)
        self.status, self.error, self.detail = status, error, detail

    def __str__(self) -> str:
        return f"{self.status} {self.error}: {self.detail}"


def error_response(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON answer of every error."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=dict(headers or {}))


def _validation_detail(exc: RequestValidationError) -> str:
    """'threshold: Input should be less than or equal to 1 (got 1.5)' for each failing field."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body"))
        got = f" (got {err['input']!r})" if "input" in err and err["input"] is not None else ""
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}{got}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Make ApiError, FastAPI's validation errors and Starlette's 404/405 answer JSON `{"error", "detail"}`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_query", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404:
            detail = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            allow = Headers(exc.headers or {}).get("allow", "")
            detail = f"{request.method} is not allowed on {request.url.path}" + (f"; use {allow}" if allow else "")
        return error_response(exc.status_code, _STATUS_NAMES.get(exc.status_code, "error"), str(detail),
                              headers=getattr(exc, "headers", None))


def media_type(headers: Mapping[str, str]) -> str:
    """The lower-cased media type of Content-Type without its parameters ('' when absent)."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def check_content_type(headers: Mapping[str, str], allowed: tuple[str, ...] = IMAGE_TYPES) -> str:
    """The request's media type if it is one of `allowed` or multipart; 415 otherwise."""
    kind = media_type(headers)
    if kind not in allowed and kind != MULTIPART:
        got = f"Content-Type {kind!r}" if kind else "no Content-Type"
        raise ApiError(415, "unsupported_media_type",
                       f"got {got}; send the raw image as one of {', '.join(allowed)}, or {MULTIPART} with a file")
    return kind


def check_content_length(headers: Mapping[str, str], max_bytes: int) -> int | None:
    """The declared Content-Length (None when absent); 413 when it is over `max_bytes`, 400 when malformed."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    try:
        n = int(raw)
        if n < 0:
            raise ValueError
    except ValueError:
        raise ApiError(400, "bad_request", f"malformed Content-Length {raw!r}") from None
    if n > max_bytes:
        raise ApiError(413, "payload_too_large", f"body is {n} bytes, more than the limit of {max_bytes}")
    return n


async def within(awaitable: Awaitable, seconds: float | None) -> Any:
    """`await awaitable` in this task, raising asyncio.TimeoutError after `seconds` (None: no limit).

    Not asyncio.wait_for (except on Python 3.10, which lacks asyncio.timeout): it runs the awaitable in a task of
    its own, and the exceptions those tasks kept left the ingress 15 % larger after 1,000 malformed bodies
    (bench/faults.py; 2 % with this). Cancellation on timeout reaches the awaitable as in wait_for.
    """
    if not hasattr(asyncio, "timeout"):
        return await asyncio.wait_for(awaitable, seconds)
    async with asyncio.timeout(seconds):
        return await awaitable


async def read_limited(chunks: AsyncIterable[bytes], max_bytes: int) -> bytes:
    """The whole body, counted while it arrives: a body without (or lying about) its length stops at the limit."""
    buf, n = bytearray(), 0
    async for chunk in chunks:
        n += len(chunk)
        if n > max_bytes:
            raise ApiError(413, "payload_too_large", f"body is more than the limit of {max_bytes} bytes")
        buf += chunk
    return bytes(buf)


async def first_file(body: bytes, content_type: str) -> bytes:
    """The bytes of the first file part of a multipart/form-data body (any field name); 400 if there is none."""

    async def stream():
        yield body

    parser = MultiPartParser(Headers({"content-type": content_type}), stream(),
                             max_files=MAX_PARTS, max_fields=MAX_PARTS)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {e.message}") from None
    except (KeyError, ValueError) as e:  # no boundary parameter, undecodable headers
        raise ApiError(400, "bad_multipart", f"malformed multipart body ({type(e).__name__}: {e})") from None
    try:
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                return await value.read()
    finally:
        await form.close()
    raise ApiError(400, "bad_multipart", "multipart body holds no file part: send the image as a file field")


async def read_image_body(request: Request, max_bytes: int) -> bytes:
    """Image bytes from a raw image body or the first file of a multipart form, within `max_bytes`."""
    kind = check_content_type(request.headers)
    check_content_length(request.headers, max_bytes)
    body = await read_limited(request.stream(), max_bytes)
    if kind == MULTIPART:
        body = await first_file(body, request.headers["content-type"])
    if not body:
        raise ApiError(400, "bad_image", "empty body: expected a JPEG or PNG image")
    return body


# at most this many texts in one `{"texts": [...]}` request (each is batched with other requests' texts)
MAX_TEXTS = 64


async def read_text_body(request: Request, max_bytes: int) -> dict:
    """`{"text": "..."}` or `{"texts": ["...", ...]}` as `{"texts": [...], "single": bool}`; 422 when malformed."""
    import json

    check_content_type(request.headers, ("application/json",))
    check_content_length(request.headers, max_bytes)
    raw = await read_limited(request.stream(), max_bytes)
    try:
        body = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ApiError(422, "invalid_body", 'JSON nested too deeply; send {"text": "..."}') from None
    except (UnicodeDecodeError, ValueError) as e:  # ValueError: JSONDecodeError, or an integer of > 4300 digits
        raise ApiError(422, "invalid_body", f'body is not JSON ({e}); send {{"text": "..."}}') from None
    if not isinstance(body, dict) or ("text" in body) == ("texts" in body):
        raise ApiError(422, "invalid_body", 'send a JSON object with exactly one of "text" or "texts"')
    unknown = sorted(set(body) - {"text", "texts"})
    if unknown:
        raise ApiError(422, "invalid_body", f"unknown fields {unknown}; allowed: text, texts")
    single = "text" in body
    texts = [body["text"]] if single else body["texts"]
    if not isinstance(texts, list) or not texts:
        raise ApiError(422, "invalid_body", '"texts" must be a non-empty list of strings')
    if len(texts) > MAX_TEXTS:
        raise ApiError(422, "invalid_body", f'"texts" holds {len(texts)} texts, more than the limit of {MAX_TEXTS}')
    for i, text in enumerate(texts):
        where = '"text"' if single else f'"texts"[{i}]'
        if not isinstance(text, str):
            raise ApiError(422, "invalid_body", f"{where} must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ApiError(422, "empty_text", f"{where} is empty: there is nothing to classify")
    return {"texts": texts, "single": single}
