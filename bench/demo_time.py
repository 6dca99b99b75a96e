"""How long `raylessons demo` takes on this machine, section by section, and whether every target is met.

    python bench/demo_time.py [--preset default|full|smoke] [--out DIR]

Runs the demo as a new user would (a fresh output directory, stdout not a terminal), measures its wall time
from outside, and prints the demo's own per-section times and its summary rows from `DIR/summary.json`,
with the wall time against the 360 s budget of the default demo.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

BUDGET_S = 360


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("default", "full", "smoke"), default="default")
    parser.add_argument("--out", default="demo-time-out")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "raylessons.cli", "demo", "--out", str(out), "--port", str(args.port)]
    if args.preset != "default":
        cmd.append(f"--{args.preset}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out / "console.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        print(f"demo exited {proc.returncode} after {wall:.0f} s")
        return 1
    summary = json.loads((out / "summary.json").read_text())
    lines = (proc.stdout + proc.stderr).splitlines()
    print(f"preset {args.preset}: wall {wall:.0f} s (demo's own total {summary['total_s']:.0f} s); "
          f"console {len(lines)} lines")
    print("sections (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["times_s"].items()))
    for row in summary["rows"]:
        print(f"  {row['workflow']:<34} {row['metric']:<24} {row['value']:.4f}  target {row['target'] or '-':<24} "
              f"met {row['met'] or '-'}  {row['baseline']}")
    if args.preset == "default":
        ok = wall <= BUDGET_S and all(r["met"] in ("yes", "") for r in summary["rows"])
        print(f"wall / budget = {wall / BUDGET_S:.2f} (budget {BUDGET_S} s); every target met: "
              f"{all(r['met'] in ('yes', '') for r in summary['rows'])}; {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
