"""Where a model replica's CPU goes under load: CPU per answered request by thread of the Planet replica, and
(with py-spy installed: `pip install py-spy`) the Python functions its threads were sampled in.

    python bench/replica_profile.py [--concurrency 32] [--duration 10] [--warmup 3] [--no-py-spy]

The Serve app of bench/serve_load.py (one Planet replica, resnet34 at 128 px, batches of up to 16, 2 torch
threads) under `--concurrency` users posting the same JPEG. Thread CPU comes from /proc/<pid>/task over the
measured window; thread names from `py-spy dump` (the OpenMP workers torch starts have no Python name). A
thread's figure is its CPU in the window divided by the requests answered in it.
"""

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import serve_load as sl  # bench/serve_load.py, beside this script

from raylessons.testing.faults import cpu_seconds_by_thread, serve_replicas

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def thread_names(pid: int) -> dict[int, str]:
    """{thread id: Python thread name} from `py-spy dump` ({} without py-spy)."""
    if not Path(PY_SPY).exists():
        return {}
    out = subprocess.run([PY_SPY, "dump", "--pid", str(pid)], capture_output=True, text=True, check=False).stdout
    names = {}
    for line in out.splitlines():
        if line.startswith("Thread ") and '"' in line:
            names[int(line.split()[1])] = line.split('"')[1]
    return names


def sampled_functions(raw: str, top: int) -> list[tuple[str, float]]:
    """(thread: innermost raylessons/torch/serve function, share of samples) from py-spy's raw output."""
    counts: collections.Counter = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1]
        # the innermost frame of our code, else the innermost frame: where this thread's time is attributed
        ours = [f for f in frames[1:] if "raylessons/" in f]
        counts[f"{thread}: {(ours or frames[-1:])[-1].split(' (')[0]}"] += int(n)
    total = sum(counts.values()) or 1
    return [(name, n / total) for name, n in counts.most_common(top)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--no-py-spy", action="store_true", help="thread CPU only")
    args = ap.parse_args(argv)

    from raylessons.serving import local

    out = Path(tempfile.mkdtemp(prefix="bench-replica-"))
    export, body = sl.make_export(out, "resnet34", 128)
    (out / "request.jpg").write_bytes(body)
    port = sl._free_port()
    local.start({"planet": str(export)}, port=port, max_batch_size=16, batch_wait_timeout_s=0.0, threads=2,
                logging_config={"enable_access_log": False})
    try:
        (pid,) = serve_replicas("raylessons", "planet")
        point = dict(path="/planet", body=str(out / "request.jpg"), ctype="image/jpeg", duration=args.duration,
                     warmup=args.warmup, max_requests=100_000)
        result: dict = {}
        load = threading.Thread(target=lambda: result.update(sl.measure(port, args.concurrency, **point)))
        load.start()
        time.sleep(args.warmup)
        spy = None
        if not args.no_py_spy and Path(PY_SPY).exists():
            spy = subprocess.Popen([PY_SPY, "record", "-p", str(pid), "-d", str(int(args.duration)), "-r", "50",
                                    "--threads", "--format", "raw", "-o", str(out / "replica.txt"),
                                    "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before = cpu_seconds_by_thread(pid)
        time.sleep(args.duration)
        after = cpu_seconds_by_thread(pid)
        names = thread_names(pid)
        load.join()
        if spy is not None:
            spy.wait(60)
    finally:
        local.shutdown()

    n = max(1, result.get("requests", 0))
    spent = sorted(((after[t] - before.get(t, 0.0), t) for t in after), reverse=True)
    total = sum(s for s, _ in spent)
    print(f"c={args.concurrency}: {result['rps']:.1f} req/s, p50 {result['p50_ms']:.1f} ms; the Planet replica "
          f"spent {1000 * total / n:.1f} CPU ms per answered request:")
    for s, tid in spent:
        if s > 0:
            print(f"  {1000 * s / n:6.1f} ms  {names.get(tid, 'OpenMP worker or native thread')} (thread {tid})")
    if spy is not None and (out / "replica.txt").exists():
        print("py-spy samples of the replica (all threads; share of samples, by innermost raylessons frame):")
        for name, share in sampled_functions((out / "replica.txt").read_text(), 12):
            print(f"  {100 * share:5.1f} %  {name}")
    print(json.dumps({"load": result, "replica_cpu_ms_per_request": round(1000 * total / n, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
