"""Shared fixtures: tiny generated datasets in the real on-disk formats, one Ray session per module."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def planet_dir(tmp_path_factory) -> Path:
    """A small Planet look-alike (train_v2.csv + train-jpg/ + test-jpg/)."""
    from raylessons.data.synth import synth

    return synth("planet", tmp_path_factory.mktemp("planet"), n=96, size=64, seed=1, n_test=4)


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
