"""`raylessons demo --smoke`: the README's main command at tiny sizes, every layer (Train, Tune, Serve, HTTP),
run as a user runs it (a subprocess, stdout not a terminal), and what its console shows."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from raylessons.distributed.train import epoch_rows
from raylessons.distributed.worker import EPOCHS_FILE
from raylessons.recorder import print_epoch_table

TABLE_HEADER = re.compile(r"^\s*epoch\s+train_loss\b")
# the runs of the smoke demo: Planet (Ray Train), CamVid, head pose, corpus LM, IMDB LM, classifier
RUNS = 6


@pytest.fixture(scope="module")
def smoke(module_tmp):
    out = module_tmp
    proc = subprocess.run([sys.executable, "-m", "raylessons.cli", "demo", "--smoke", "--out", str(out),
                           "--port", "8199"], capture_output=True, text=True, timeout=900)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-4000:]
    return out, console


@pytest.mark.ray
def test_smoke_demo_runs_every_layer(smoke):
    out, console = smoke
    summary = json.loads((out / "summary.json").read_text())
    assert summary["preset"] == "smoke"
    assert [r["workflow"].split(" (")[0] for r in summary["rows"]] == [
        "Planet", "Planet sweep", "CamVid", "Head pose", "Sentiment"]
    assert set(summary["times_s"]) == {"ray_init", "planet", "sweep", "camvid", "head_pose", "sentiment", "serve"}
    for route in ("/planet", "/camvid?format=json", "/headpose", "/sentiment"):
        assert f"POST http://127.0.0.1:8199{route}" in console
    # the lesson plan named by its stages (the Planet section's run), beside the sweep's best
    assert re.search(r"lesson plan fbeta [0-9.]+ \(freeze_to\(-1\) 1ep slice\([0-9.e-]+\) → "
                     r"unfreeze 1ep slice\([0-9.e-]+, [0-9.e-]+\), the Planet section's run\), sweep best [0-9.]+",
                     console)
    assert (out / "runs" / "demo-planet" / EPOCHS_FILE).is_file()  # the one Ray Train run
    # a threshold per tag, chosen on validation, travels with the served export
    gain = re.search(r"valid F2 at the global threshold 0.2: ([0-9.]+); with a threshold per tag: ([0-9.]+)", console)
    assert gain and float(gain.group(2)) >= float(gain.group(1))
    meta = json.loads((out / "runs" / "demo-planet" / "export" / "meta.json").read_text())
    assert set(meta["thresholds"]) == set(meta["classes"]) and meta["metrics"]["fbeta"] > 0
    assert (out / "ray.log").is_file()


@pytest.mark.ray
def test_smoke_demo_writes_the_lessons_pictures_and_the_report(smoke):
    out, console = smoke
    for stem in ("planet", "camvid", "head_pose"):
        for kind in ("batch", "lr_find", "losses", "results"):
            assert (out / f"{stem}_{kind}.png").stat().st_size > 1000, f"{stem}_{kind}.png"
    for name in ("imdb_clas_lr_find", "imdb_clas_losses", "imdb_clas_results", "imdb_lm_results"):
        assert (out / f"{name}.png").stat().st_size > 1000, name
    page = (out / "report.html").read_text()
    assert f"report: {out / 'report.html'}" in console
    for title in ("Planet", "Planet sweep", "CamVid", "Head pose", "Sentiment", "Ray Serve", "Summary"):
        assert title in page
    # every picture inlined (the page stands alone), the HTTP answers and the summary's rows in it
    assert page.count("<img") == 20 and page.count('src="data:image/png;base64,') == page.count("<img")
    assert "POST http://127.0.0.1:8199/sentiment" in page and "lesson plan" in page


@pytest.mark.ray
def test_smoke_demo_console_has_no_ray_internals(smoke):
    _, console = smoke
    assert "TrainingReport(" not in console
    assert "(raylet)" not in console and "(pid=" not in console  # nothing echoed from Ray's processes
    assert not re.search(r"INFO.*controller", console)
    assert not re.search(r"^(DEBUG|INFO) \d{4}-\d\d-\d\d", console, re.M)  # Ray's log format, e.g. Serve's start
    assert "\x1b[" not in console  # no colour codes when stdout is not a terminal
    assert "deduplicated" not in console
    assert not re.search(r"^[+|].*\+-{5,}", console, re.M)  # no Tune status tables


@pytest.mark.ray
def test_smoke_demo_prints_one_epoch_table_per_run(smoke):
    _, console = smoke
    lines = console.splitlines()
    headers = [i for i, line in enumerate(lines) if TABLE_HEADER.match(line)]
    assert len(headers) == RUNS, "\n".join(lines[i] for i in headers)
    # the Ray Train run's table is the driver's, printed once with one row per epoch of its 2-stage plan
    planet = lines[headers[0] + 1:headers[0] + 3]
    assert all(re.match(r"^\s*\d+\s+[0-9.]+", row) for row in planet), planet


def test_epoch_rows_count_a_replayed_epoch_once(tmp_path):
    rows = [{"stage": 0, "epoch": 0, "train_loss": 1.0, "time": 1.0},
            {"stage": 0, "epoch": 1, "train_loss": 0.9, "time": 1.0},
            {"stage": 0, "epoch": 1, "train_loss": 0.8, "time": 1.0},  # replayed after a restart
            {"stage": 1, "epoch": 0, "train_loss": 0.7, "time": 1.0}]
    (tmp_path / EPOCHS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = epoch_rows(tmp_path)
    assert [r["train_loss"] for r in got] == [1.0, 0.8, 0.7]
    assert epoch_rows(tmp_path / "missing") == []


def test_epoch_table_has_one_header(capsys):
    rows = [{"epoch": e, "train_loss": 1.0 - e / 10, "valid_loss": 1.0, "time": 0.5} for e in range(3)]
    print_epoch_table(rows)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and TABLE_HEADER.match(lines[0])
    assert sum(bool(TABLE_HEADER.match(line)) for line in lines) == 1


def test_a_learner_prints_one_table_over_its_fits(capsys):
    from raylessons.recorder import Recorder

    class Fake:
        is_main_process, validate_each_epoch, metric_names = True, True, []
        training, last_validation = False, (0.5, [])

    rec, learn = Recorder(), Fake()
    for stage in range(2):  # two fit_one_cycle calls, as a plan's two stages
        rec.before_fit(learn)
        for learn.epoch in range(2):
            rec.before_epoch(learn)
            rec.after_epoch(learn)
        rec.after_fit(learn)
    lines = capsys.readouterr().out.splitlines()
    assert sum(bool(TABLE_HEADER.match(line)) for line in lines) == 1 and len(lines) == 5


@pytest.mark.ray
def test_raylessons_serve_prints_one_line_and_keeps_ray_off_the_console(smoke, tmp_path):
    import signal
    import time

    import httpx

    out, _ = smoke
    proc = subprocess.Popen([sys.executable, "-m", "raylessons.cli", "serve", "--port", "8198", "--log-dir",
                             str(tmp_path), "--export", f"planet={out / 'runs' / 'demo-planet' / 'export'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()  # blocks until start() is done: /healthz answered
        assert first.startswith("serving ['planet'] at http://127.0.0.1:8198"), first
        assert httpx.get("http://127.0.0.1:8198/healthz", timeout=30, trust_env=False).status_code == 200
    finally:
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, rest[-3000:]
    console = first + rest
    assert not re.search(r"^(DEBUG|INFO|WARNING) \d{4}-\d\d-\d\d|\(raylet\)|\(pid=|\x1b\[", console, re.M), console
    assert (tmp_path / "ray.log").is_file() and (tmp_path / "ray-session-logs").is_symlink()


@pytest.mark.ray
def test_smoke_demo_report_renders_in_headless_chromium(smoke, chromium_page):
    out, _ = smoke
    page, errors, requests = chromium_page(out / "report.html")
    widths = page.evaluate("() => Array.from(document.images, i => i.complete ? i.naturalWidth : 0)")
    page.screenshot(path=str(out / "report-screenshot.png"), full_page=True)
    assert errors == [] and [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert len(widths) == 20 and min(widths) > 0, widths  # every picture of the demo loaded
    from PIL import Image

    with Image.open(out / "report-screenshot.png") as shot:
        assert shot.width == 1280 and shot.height > 5000  # the whole report, not a blank or cut page


def test_a_ray_train_run_shows_an_epoch_bar_on_a_terminal(tmp_path, monkeypatch, capsys):
    import time

    from raylessons.distributed.train import _epoch_progress

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    with _epoch_progress(tmp_path, total=2):
        for epoch in range(2):  # what rank 0 appends while the workers train
            with open(tmp_path / EPOCHS_FILE, "a") as f:
                f.write(json.dumps({"stage": 0, "epoch": epoch, "train_loss": 1.0, "valid_loss": 0.5, "time": 1.0})
                        + "\n")
        time.sleep(1.5)
    assert "2/2" in capsys.readouterr().err
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    with _epoch_progress(tmp_path, total=2):
        pass
    assert capsys.readouterr().err == ""  # no bar when the output is a file or a pipe
