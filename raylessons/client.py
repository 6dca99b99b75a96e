"""HTTP client of the Serve app: `raylessons predict --task planet --url http://127.0.0.1:8000 IMG...`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable, Iterator

import httpx

from .errors import RaylessonsError

__all__ = ["ROUTE_PATHS", "ServerUnreachable", "predict_files", "iter_predictions", "build_parser", "main", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8000"
_CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
# task -> URL path (the Serve app's ROUTES; kept here so the client never imports Ray)
ROUTE_PATHS = {"planet": "/planet", "camvid": "/camvid", "head_pose": "/headpose", "headpose": "/headpose",
               "sentiment": "/sentiment"}


class ServerUnreachable(RaylessonsError, ConnectionError):
    """No server answers at the URL (not started, wrong port, or still starting)."""


def _content_type(path: Path) -> str:
    return _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def _answer(path: Path, r: httpx.Response) -> dict:
    """`{"file", **answer}` of one response; errors keep the server's `{"error", "detail"}` plus the status."""
    try:
        body = r.json()
    except ValueError:
        body = {"error": "bad_response", "detail": r.text[:500]}
    if not isinstance(body, dict):
        body = {"error": "bad_response", "detail": repr(body)[:500]}
    if r.is_error:
        body = {"error": body.get("error", "http_error"), "detail": body.get("detail", ""), "status": r.status_code}
    return {"file": str(path), **body}


def predict_files(task: str, url: str, paths: Iterable[str | Path], timeout: float = 60,
                  threshold: float | None = None, params: dict | None = None) -> list[dict]:
    """POST each file to the task's route; one dict per file, in order (an error dict for a rejected file)."""
    return list(iter_predictions(task, url, paths, timeout, threshold, params))


def iter_predictions(task: str, url: str, paths: Iterable[str | Path], timeout: float = 60,
                     threshold: float | None = None, params: dict | None = None) -> Iterator[dict]:
    """`predict_files`, one answer at a time as it arrives (CamVid masks come back as run-length JSON).

    For `sentiment` each file is a text (a review), posted as `{"text": ...}`.
    """
    params = dict(params or {})
    if threshold is not None:
        params["threshold"] = threshold
    if task == "camvid":
        params.setdefault("format", "json")
    route = ROUTE_PATHS.get(task, f"/{task}")
    # trust_env=False: a proxy set in the environment must not intercept a 127.0.0.1 server
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, trust_env=False) as client:
        for path in map(Path, paths):
            try:
                body = path.read_bytes()
            except OSError as e:
                yield {"file": str(path), "error": "unreadable_file", "detail": str(e)}
                continue
            content_type = _content_type(path)
            if task == "sentiment":  # a review file is sent as {"text": ...} (bad UTF-8 bytes replaced)
                body = json.dumps({"text": body.decode("utf-8", errors="replace")}).encode()
                content_type = "application/json"
            try:
                r = client.post(route, content=body, params=params, headers={"content-type": content_type})
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                raise ServerUnreachable(f"cannot reach {url} ({e}); start the server first, e.g. "
                                        f"`serve run serve/config.yaml` or `raylessons serve --export "
                                        f"{task}=DIR`") from None
            except httpx.TimeoutException as e:
                yield {"file": str(path), "error": "timeout", "detail": f"no answer in {timeout} s ({e})"}
                continue
            yield _answer(path, r)


def build_parser() -> argparse.ArgumentParser:
    """The options of `raylessons predict`."""
    parser = argparse.ArgumentParser(prog="raylessons predict", description=__doc__)
    parser.add_argument("--task", default="planet", choices=sorted(ROUTE_PATHS), help="the route to call")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the server's base URL (default {DEFAULT_URL})")
    parser.add_argument("--threshold", type=float, default=None, help="override the model's threshold (0..1)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for each answer")
    parser.add_argument("files", nargs="+", metavar="FILE", help="images, or text files for --task sentiment")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per file; exit 1 if any file was rejected, 2 if the server is unreachable."""
    args = build_parser().parse_args(argv)
    failed = False
    try:
        for row in iter_predictions(args.task, args.url, args.files, timeout=args.timeout,
                                    threshold=args.threshold):
            print(json.dumps(row), flush=True)
            failed |= "error" in row
    except ServerUnreachable as e:
        print(f"raylessons predict: error: {e}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
