"""`run_demo`: every section in order, the Serve application queried over HTTP, a closing summary and the report."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..cluster import redirect_output
from ..report import Report
from .common import heading
from .http import query_camvid, query_head_pose, query_planet, query_sentiment
from .presets import PRESETS, TARGETS
from .text import demo_sentiment
from .vision import demo_camvid, demo_head_pose, demo_planet, demo_sweep

__all__ = ["run_demo", "summary_rows", "print_summary"]

REPORT = "report.html"


def _met(value: float, op: str, target: float) -> bool:
    return value >= target if op == ">=" else value <= target


def summary_rows(results: dict, times: dict, smoke: bool) -> list[dict]:
    """The closing table's rows: each workflow's metric beside its target (`TARGETS`) and baseline."""
    sweep, st = results["sweep"], results["sentiment"]
    rows = []
    for key, workflow, label in (("planet", "Planet (lesson plan, Ray Train)", "fbeta"),
                                 ("sweep", "Planet sweep (Ray Tune, ASHA)", "best fbeta"),
                                 ("camvid", "CamVid (U-Net)", "accuracy, Void ignored"),
                                 ("head_pose", "Head pose", "valid MSE"),
                                 ("sentiment", "Sentiment (ULMFiT)", "accuracy")):
        if key == "sweep":
            value, target, met = sweep["best"]["fbeta"], "", ""
            baseline = f"lesson plan {sweep['lesson_fbeta']:.4f} (same data, {sweep['epochs']} epochs)"
        else:
            metric, op, bound = TARGETS[key]
            value = results[key]["metrics"][metric]
            target, baseline, met = f"{op} {bound:g}", "", _met(value, op, bound)
            if key == "sentiment":  # ULMFiT must also beat the bag of words by 0.15
                target += f" and >= {st['bow_accuracy'] + 0.15:.4f}"
                baseline, met = f"bag of words {st['bow_accuracy']:.4f}", met and value >= st["bow_accuracy"] + 0.15
            met = "" if smoke else "yes" if met else "NO"
        rows.append({"workflow": workflow, "metric": label, "value": value, "target": target, "met": met,
                     "baseline": baseline, "time_s": times[key]})
    return rows


def print_summary(rows: list[dict], times: dict, total: float) -> None:
    """The summary table, the time of each section and the total, on the console."""
    header = ["workflow", "metric", "value", "target", "met", "baseline", "time_s"]
    cells = [[r["workflow"], r["metric"], f"{r['value']:.4f}", r["target"], r["met"], r["baseline"],
              f"{r['time_s']:.0f}"] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    print(line(header))
    print(line(["-" * w for w in widths]))
    for c in cells:
        print(line(c))
    print("time per section (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    print(f"demo finished in {total:.0f} s")


def _serve(out: Path, results: dict, port: int, verbose: bool, report) -> None:
    """Serve the four exports as one application and query every route."""
    from ..serving.local import start

    heading("Ray Serve")
    planet, cv, hp, st = (results[k] for k in ("planet", "camvid", "head_pose", "sentiment"))
    base = start({"planet": planet["export"], "camvid": cv["export"], "head_pose": hp["export"],
                  "sentiment": st["export"]}, port=port, verbose=verbose, log_dir=out,
                 logging_config=None if verbose else {"log_level": "WARNING", "enable_access_log": False})
    print(f"serving on {base}")
    lines = [f"serving on {base}"]
    lines += query_planet(base, planet)
    lines += query_camvid(base, cv)
    lines += query_head_pose(base, hp)
    lines += query_sentiment(base, out / "data" / "imdb")
    section = report.section("Ray Serve: one application, four routes")
    section.note("The four exports behind one HTTP application on 127.0.0.1, each route queried with validation "
                 "items (and a few hand-written reviews).")
    section.text("\n".join(lines), "the HTTP answers")


def run_demo(out: str | Path = "demo-out", n: int | None = None, port: int = 8000, preset: str = "default",
             verbose: bool = False) -> int:
    """Run every workflow end to end; prints metrics, HTTP answers and a closing summary with timings, and writes
    `out/report.html` (show_batch, lr_find, loss curves and show_results of every workflow, the sweep, the answers).

    `preset`: 'default' (about six minutes on 2 cores), 'full' (the first demo's sizes) or 'smoke' (tiny data,
    one epoch a stage, every layer). Ray's own output goes to `out/ray.log` and `out/ray-session-logs/` unless
    `verbose`.
    """
    sizes = PRESETS[preset]
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = Report("raylessons demo: fast.ai lesson 3 on Ray")
    t0 = time.perf_counter()
    times: dict[str, float] = {}
    results: dict[str, dict] = {}

    def timed(key: str, fn, *args):
        t = time.perf_counter()
        results[key] = fn(*args)
        times[key] = time.perf_counter() - t
        return results[key]

    from ..serving.local import init_ray_direct

    t = time.perf_counter()
    init_ray_direct(port, verbose=verbose, log_dir=out)  # Serve's Ingress answers HTTP at `port` itself, later
    times["ray_init"] = time.perf_counter() - t
    try:
        planet = timed("planet", demo_planet, out, sizes["planet"], report, n)
        timed("sweep", demo_sweep, out, planet, sizes["sweep"], report)
        timed("camvid", demo_camvid, out, sizes["camvid"], report)
        timed("head_pose", demo_head_pose, out, sizes["head_pose"], report)
        timed("sentiment", demo_sentiment, out, sizes["sentiment"], report)
        t = time.perf_counter()
        _serve(out, results, port, verbose, report)
        times["serve"] = time.perf_counter() - t
        heading("Summary")
        rows = summary_rows(results, times, smoke=preset == "smoke")
        total = time.perf_counter() - t0
        print_summary(rows, times, total)
        (out / "summary.json").write_text(json.dumps({"preset": preset, "rows": rows, "times_s": times,
                                                       "total_s": total}, indent=1))
        summary = report.section("Summary")
        summary.table(rows, f"each workflow against its target ({preset} preset); the demo took {total:.0f} s")
        summary.table([{"section": k, "seconds": round(v, 1)} for k, v in times.items()], "time per section")
    finally:
        print(f"report: {report.write(out / REPORT)}")  # also what a failed run got to, before the failure
        _shutdown(verbose, out / "ray.log")
    return 0


def _shutdown(verbose: bool, log: Path) -> None:
    """Serve and Ray torn down; their teardown notes (a killed controller's task-retry lines) go to the log."""
    import ray

    from ..serving.local import shutdown

    with redirect_output(None if verbose else log):
        try:
            shutdown()
        finally:
            ray.shutdown()
