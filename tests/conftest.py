"""Shared fixtures: tiny generated datasets in the real on-disk formats, one Ray session per module."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import serve_fixtures
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def planet_dir(tmp_path_factory) -> Path:
    """A small Planet look-alike (train_v2.csv + train-jpg/ + test-jpg/)."""
    from raylessons.data.synth import synth

    return synth("planet", tmp_path_factory.mktemp("planet"), n=96, size=64, seed=1, n_test=4)


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory) -> Path:
    """A directory for one module's shared runs, removed when the module is done unless one of its tests failed.
    The suite writes about 10 GB of checkpoints, exports and sweeps in all; with the function-scoped `tmp_path`
    dirs removed as each test passes (`tmp_path_retention_policy`), a disk need only hold a module's share."""
    failed = request.session.testsfailed
    path = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield path
    if request.session.testsfailed == failed:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for a test module (starting Ray costs seconds)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# ----- a real headless browser (Debian's Chromium driven by Playwright; never `playwright install`)
CHROMIUM = Path(os.environ.get("RAYLESSONS_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = "RAYLESSONS_REQUIRE_BROWSER"  # exported by .ci/run: there a missing browser fails, never skips
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def chromium_page():
    """`open(path) -> (page, console errors, requested URLs)`: a local HTML file loaded in headless Chromium.

    Skips without the browser or the playwright package, except where RAYLESSONS_REQUIRE_BROWSER is set (CI)."""
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "the playwright package is not installed (pip install -e '.[test]')"
    if why is None and not CHROMIUM.is_file():
        why = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if why and os.environ.get(REQUIRE_BROWSER):
        pytest.fail(f"{why}; {REQUIRE_BROWSER} is set, so the browser test must run")
    if why:
        pytest.skip(why)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                    timeout=30_000)

        def open_page(path: Path):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(Path(path).as_uri(), wait_until="load")
            return page, errors, requests

        try:
            yield open_page
        finally:
            browser.close()


# ----- the Serve application of tests/test_serve_*.py: its exports built, Ray and Serve started, once for all
_SERVE = serve_fixtures.SharedServe()


@pytest.fixture(scope="session")
def planet_export(tmp_path_factory) -> tuple[Path, list[Path]]:
    """An untrained resnet18 Planet export at 32 px, and a few of its images."""
    return serve_fixtures.planet_export(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="session")
def planet_predictor(planet_export):
    from raylessons.inference import Predictor

    return Predictor.from_export(planet_export[0])


@pytest.fixture(scope="session")
def other_planet_export(planet_export, tmp_path_factory) -> Path:
    """A second planet export whose answers differ (other weights): what a live swap brings in."""
    return serve_fixtures.other_planet_export(planet_export, tmp_path_factory.mktemp("serve-swap"))


@pytest.fixture(scope="session")
def spatial_exports(tmp_path_factory) -> dict:
    """Untrained CamVid and head-pose exports: {task: (export, images)}."""
    return serve_fixtures.spatial_exports(tmp_path_factory.mktemp("serve-spatial"))


@pytest.fixture(scope="session")
def sentiment_export(tmp_path_factory) -> Path:
    """An untrained tiny AWD-LSTM classifier export (max_len 20)."""
    return serve_fixtures.sentiment_export(tmp_path_factory.mktemp("serve-text"))


@pytest.fixture(scope="session")
def _shared_serve():
    yield _SERVE
    _SERVE.stop()


@pytest.fixture
def serve_ray(_shared_serve):
    """The Ray session the shared Serve application runs on (started on first use)."""
    return _shared_serve.ray()


@pytest.fixture
def serve_url(serve_ray, _shared_serve, planet_export, spatial_exports, sentiment_export) -> str:
    """The Serve app serving every task at http://127.0.0.1:<port>, body limit serve_fixtures.MAX_BODY."""
    exports = {"planet": str(planet_export[0]), **{t: str(e[0]) for t, e in spatial_exports.items()},
               "sentiment": str(sentiment_export)}
    return _shared_serve.start(exports)


@pytest.fixture
def serve_client(serve_url):
    import httpx

    with httpx.Client(base_url=serve_url, timeout=60, trust_env=False) as c:
        yield c


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """The shared Serve application (and its Ray) stops before a test that starts a Ray of its own."""
    if nextitem is not None and "serve_ray" not in nextitem.fixturenames and (
            nextitem.get_closest_marker("ray") or "ray_session" in nextitem.fixturenames):
        _SERVE.stop()


def pytest_terminal_summary(terminalreporter):
    if _SERVE.starts:
        terminalreporter.write_line(f"the shared Serve application started {_SERVE.starts} time(s)")
