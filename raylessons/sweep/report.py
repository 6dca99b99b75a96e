"""A sweep's results: the table (csv and markdown, sorted by the metric), the metric against the rates, and the
best finished trial's export copied to `best_export/`."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd

from .. import storage
from ..distributed.worker import EXPORT_DIR
from ..errors import RaylessonsError
from ..plan import plan_summary
from ..plotting import pyplot, save_figure
from ..tasks import get_task
from .config import SweepConfig
from .space import plan_from_config

__all__ = ["export_of", "markdown_table", "plot_metric_vs_lr", "summarise"]


def summarise(grid, cfg: SweepConfig, exp: Path, metric: str, mode: str, finders: dict,
              where: str | None = None) -> dict:
    """The results table (`results.csv`, `results.md`, sorted by the metric), the plot and `best_export/` in `exp`;
    what `run_sweep` returns. `where`: the experiment's URI when it is stored in a bucket (`exp` its local mirror)."""
    results = list(grid)
    rows = [trial_row(r, cfg, metric, mode) for r in results]
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(metric, ascending=(mode == "min"), na_position="last").reset_index()
    df.drop(columns=["index"], errors="ignore").to_csv(exp / "results.csv", index=False)
    (exp / "results.md").write_text(markdown_table(df.drop(columns=["index", "path"], errors="ignore")))
    plot_metric_vs_lr(df, metric, exp / "metric_vs_lr.png", finders)
    best = _copy_best(df, results, exp, where)
    return {"name": exp.name, "path": str(exp), "metric": metric, "mode": mode,
            "rows": df.drop(columns=["index"], errors="ignore").to_dict("records"), "best": best,
            "table_csv": str(exp / "results.csv"), "table_md": str(exp / "results.md"),
            "plot": str(exp / "metric_vs_lr.png"), "finders": {k: finders[k]["png"] for k in ("frozen", "unfrozen")},
            "errors": [str(r.error) for r in results if r.error]}


def trial_row(result, cfg: SweepConfig, metric: str, mode: str) -> dict:
    """A trial's row of the table: its metric (last and best epoch), epochs, status, sampled options and plan."""
    conf = dict(result.config or {})
    m = dict(result.metrics or {})
    history = result.metrics_dataframe
    epochs_run = int(m.get("training_iteration", 0) or 0)
    best_epoch_value = None
    if history is not None and metric in history:
        vals = history[metric].dropna()
        if len(vals):
            best_epoch_value = float(vals.max() if mode == "max" else vals.min())
    plan = plan_from_config(conf, cfg.epochs) if {"stage1_lr", "upper"} <= set(conf) else []
    status = "error" if result.error else "finished" if epochs_run >= cfg.epochs else "stopped early"
    schedule = conf.get("schedule")
    trial = m.get("trial_id") or (Path(result.path).name if result.path else "")
    lesson = get_task(cfg.task).lesson_trial
    if cfg.lesson_first and lesson and all(conf.get(k) == v for k, v in lesson.items()):
        trial = f"{trial} (lesson)"  # the lesson's own plan, the sweep's first trial
    return {"trial": trial,
            metric: m.get(metric), f"best_{metric}": best_epoch_value, "epochs": epochs_run, "status": status,
            "stage1_lr": conf.get("stage1_lr"), "upper": conf.get("upper"), "ratio": conf.get("ratio"),
            "schedule": json.dumps(schedule) if isinstance(schedule, list) else schedule,
            "stage1_frac": conf.get("stage1_frac"),
            **{k: conf.get(k) for k in ("pct_start", "moms", "wd") if k in conf},
            "plan": plan_summary(plan), "node_id": m.get("node_id"), "path": result.path}


def _copy_best(df, results: list, exp: Path, where: str | None = None) -> dict:
    """The best finished trial's row, its export copied to `exp/best_export`; no finished trial is an error."""
    for _, row in df.iterrows():
        result = results[int(row["index"])]
        src = export_of(result, where) if row["status"] == "finished" else None
        if src is not None and (storage.is_uri(src) or src.is_dir()):
            best_dir = exp / "best_export"
            shutil.rmtree(best_dir, ignore_errors=True)
            if storage.is_uri(src):
                storage.download(src, best_dir)
            else:
                shutil.copytree(src, best_dir)
            return {**{k: row[k] for k in df.columns if k not in ("index",)}, "export": str(best_dir)}
    raise RaylessonsError(f"no trial of {exp.name} finished; see {exp} and the trials' errors")


def export_of(result, where: str | None = None) -> Path | str | None:
    """The export written with a trial's last epoch (in its Tune checkpoint or its Train checkpoint); for a sweep
    stored in a bucket (`where`: the experiment's URI) the export's URI."""
    if where is not None:
        scheme = where.split("://", 1)[0]
        found = [storage.uri_of(result.checkpoint.filesystem, result.checkpoint.path)] if result.checkpoint else []
        if ck := (result.metrics or {}).get("checkpoint_path"):  # Ray's paths in the bucket lack the scheme
            found.append(ck if storage.is_uri(ck) else f"{scheme}://{ck}")
        return next((e for e in (storage.join(c, EXPORT_DIR) for c in found) if storage.is_dir(e)), None)
    if result.checkpoint is not None and (Path(result.checkpoint.path) / EXPORT_DIR).is_dir():
        return Path(result.checkpoint.path) / EXPORT_DIR
    ck = (result.metrics or {}).get("checkpoint_path")
    if ck and (Path(ck) / EXPORT_DIR).is_dir():
        return Path(ck) / EXPORT_DIR
    return None


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return "" if v is None else str(v)


def markdown_table(df) -> str:
    """`df` as a markdown table (numbers to 4 significant digits, node ids shortened)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    short = {"node_id": 8}  # node ids are 56 hex digits: 8 tell them apart in a table
    lines += ["| " + " | ".join(_fmt(row[c])[:short.get(c)] for c in cols) + " |" for _, row in df.iterrows()]
    return "\n".join(lines) + "\n"


def plot_metric_vs_lr(df, metric: str, path: Path, finders: dict) -> None:
    """Each trial's metric against its stage-1 and upper rates (marker: finished, stopped early, error), the
    finders' guides dashed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, col, guide, label in ((axes[0], "stage1_lr", finders["frozen"]["guide"], "frozen guide"),
                                  (axes[1], "upper", finders["unfrozen"]["upper"], "unfrozen guide")):
        if not df.empty:
            for status, marker in (("finished", "o"), ("stopped early", "x"), ("error", "s")):
                part = df[df["status"] == status]
                ax.scatter(part[col], part[metric], marker=marker, label=status)
        ax.axvline(guide, linestyle="--", color="gray", label=f"{label} {guide:.2e}")
        ax.set(xscale="log", xlabel=col, ylabel=metric)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # labelled minor ticks overlap on a short log axis
        ax.legend(fontsize=8)
    save_figure(fig, path)
