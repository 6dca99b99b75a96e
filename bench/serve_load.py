"""Serving under load: the Serve app with and without batching, a plain FastAPI + uvicorn server of the same model
(no Ray) and the raw forward pass in one process, measured side by side in one run.

    python bench/serve_load.py [--arch resnet34] [--size 128] [--duration 10] [--concurrency 1,8,32]

The model is a Planet export (untrained weights: speed does not depend on them) served at POST /planet; every
request posts the same 128 px JPEG. The load generator is a small asyncio HTTP/1.1 client (one keep-alive
connection per concurrent user, loopback only, each run bounded by --duration and --max-requests); it shares
this machine's cores with the servers, as the issue's figures do. The app's Ingress answers HTTP itself
(Serve's direct ingress, as `raylessons serve` runs it); the same app through Serve's proxy actor is measured
too. Targets at concurrency 32: batched Serve >= 0.70x the raw batched forward and >= 1.4x the plain unbatched
server; at concurrency 1: Serve p50 <= the plain server's p50 + 10 ms. This machine's speed drifts over minutes,
so the references (the raw forward, the plain server at the lowest and highest concurrency) are measured again
once Ray is gone, and each target compares Serve with the mean of a reference's two measurements. Each point's CPU
per answered request is counted over its measured window, for every process of the machine (the load generator
included), by kind. With lanes (the replica's default on 2 threads), the same replica is also measured with one
lane (one forward at a time), and the raw forward on as many one-thread lanes is printed beside the target's.
"""

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from raylessons.testing.faults import cpu_seconds_by_process

HOST = "127.0.0.1"  # never anything but loopback


# --- the load generator ---

async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked body); its status code."""
    status = int((await reader.readline()).split()[1])
    length, chunked = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while (size := int((await reader.readline()).strip() or b"0", 16)):
            await reader.readexactly(size + 2)
        await reader.readline()
    else:
        await reader.readexactly(length)
    return status


async def _user(port: int, path: str, body: bytes, ctype: str, stop_at: float, budget: list, out: list) -> None:
    """One concurrent user: request after request on one connection until the time or the budget runs out."""
    reader, writer = await asyncio.open_connection(HOST, port)
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    try:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            t0 = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status = await _read_response(reader)
            out.append((t0, time.perf_counter() - t0, status))  # (start, latency, status)
    finally:
        writer.close()


def measure(port: int, concurrency: int, **point) -> dict:
    """`load` run in a child process without Ray (so the generator's CPU is counted as its own process)."""
    code = ("import json, sys; import importlib.util as u; s = u.spec_from_file_location('sl', sys.argv[1]); "
            "m = u.module_from_spec(s); "
            "s.loader.exec_module(m); a = json.loads(sys.argv[2]); a['body'] = open(a['body'], 'rb').read(); "
            "print(json.dumps(m.load(**a)))")
    args = {"port": port, "concurrency": concurrency, **point}
    out = subprocess.run([sys.executable, "-c", code, __file__, json.dumps(args)], capture_output=True, text=True,
                         timeout=point["warmup"] + point["duration"] + 120)
    if out.returncode:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load(port: int, path: str, body: bytes, ctype: str, concurrency: int, duration: float, warmup: float,
         max_requests: int) -> dict:
    """Throughput, latency percentiles and CPU per request of `concurrency` users over a measured window.

    The window is the `duration` s after `warmup` s. Requests count when they complete inside it (in steady
    state the requests straddling its start and its end cancel out), and the CPU is what every process of the
    machine spent inside it (two snapshots of /proc, taken by this generator, which is counted too), grouped by
    process kind: `cpu_ms_per_request` holds every kind and the total.
    """
    snapshots: dict = {}

    async def snapshot(name: str, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        snapshots[name] = (time.perf_counter(), cpu_seconds_by_process())

    async def run() -> tuple[float, list]:
        out: list = []
        start = time.perf_counter()
        users = [_user(port, path, body, ctype, start + warmup + duration, [max_requests], out)
                 for _ in range(concurrency)]
        await asyncio.gather(snapshot("start", start + warmup), snapshot("end", start + warmup + duration), *users)
        return start, out

    _, rows = asyncio.run(run())
    (t0, before), (t1, after) = snapshots["start"], snapshots["end"]
    done = [(t + lat, lat, status) for t, lat, status in rows if t0 <= t + lat <= t1]
    kept = sorted(lat for _, lat, status in done if status == 200)
    failed = sum(status != 200 for _, _, status in rows)
    pct = (lambda q: 1000 * kept[min(len(kept) - 1, int(q * len(kept)))]) if kept else (lambda q: float("nan"))
    n = max(1, len(kept))
    by_kind: dict[str, float] = {}
    was = {pid: seconds for (pid, _), seconds in before.items()}  # by pid: Ray retitles an actor per method call
    for (pid, name), seconds in after.items():
        spent = seconds - was.get(pid, 0.0)  # a process started inside the window counts from zero
        if spent > 0:
            kind = "load generator" if pid == str(os.getpid()) else _label(name)
            by_kind[kind] = by_kind.get(kind, 0.0) + spent
    cost = {kind: round(1000 * v / n, 1) for kind, v in sorted(by_kind.items(), key=lambda kv: -kv[1])}
    return {"requests": len(kept), "failed": failed, "rps": len(kept) / (t1 - t0), "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "cpu_ms_per_request": {"total": round(sum(cost.values()), 1), **cost}}


# --- the plain FastAPI server (no Ray): one request at a time through the same Predictor ---

def plain_server(export: str, port: int, threads: int) -> None:
    """`python bench/serve_load.py --plain-server EXPORT PORT THREADS`: uvicorn, unbatched, same preprocessing."""
    import torch
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from raylessons.data.imageio import decode_image_bytes
    from raylessons.inference import Predictor

    torch.set_num_threads(threads)
    predictor = Predictor.from_export(export)
    api = FastAPI()

    @api.post("/planet")
    async def predict(request: Request) -> JSONResponse:  # the Serve replica's work, minus batching and Ray
        x, size = predictor.prepare(decode_image_bytes(await request.body()))
        return JSONResponse(predictor.label.answer(predictor, predictor.forward([x])[0], size))  # the app's answer

    @api.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    uvicorn.run(api, host=HOST, port=port, log_level="warning")


# --- the pieces ---

def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def make_export(out: Path, arch: str, size: int) -> tuple[Path, bytes]:
    """A Planet export of `arch` at `size` px (untrained) and one JPEG of that size to post."""
    from PIL import Image

    from raylessons.data.synth import synth
    from raylessons.tasks.planet import Config, build_data, build_learner

    root = synth("planet", out / "planet", n=24, size=size, seed=0)
    cfg = Config(data=str(root), size=size, bs=8, arch=arch)
    export = build_learner(build_data(cfg), cfg).export(out / "export")
    buf = io.BytesIO()
    Image.open(next((root / "train-jpg").glob("*.jpg"))).convert("RGB").save(buf, format="JPEG", quality=90)
    return export, buf.getvalue()


def raw_forward(export: Path, body: bytes, threads: int, batch: int, seconds: float) -> dict:
    """The limit: `Predictor.forward` on `batch` prepared images in this process, back to back."""
    import torch

    from raylessons.data.imageio import decode_image_bytes
    from raylessons.inference import Predictor

    torch.set_num_threads(threads)
    predictor = Predictor.from_export(export)
    t0 = time.perf_counter()
    x, _ = predictor.prepare(decode_image_bytes(body))
    prep_ms = 1000 * (time.perf_counter() - t0)
    xs = [x] * batch
    for _ in range(2):
        predictor.forward(xs)
    times = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or len(times) < 3:
        t0 = time.perf_counter()
        predictor.forward(xs)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"batch": batch, "img_per_s": batch * len(times) / sum(times), "p50_ms": 1000 * times[len(times) // 2],
            "decode_prepare_ms": prep_ms}


def measure_plain(export: Path, threads: int, levels: list[int], point: dict) -> dict:
    """The plain FastAPI server in its own process, measured at each of `levels`, then stopped."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--plain-server", str(export), str(port), str(threads)],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        _wait(f"http://{HOST}:{port}/healthz")
        return {c: measure(port, c, **point) for c in levels}
    finally:
        proc.terminate()
        proc.wait(30)


def _bracket(results: dict, name: str, key, fields: tuple[str, ...]) -> dict:
    """`results[name][key]`'s `fields` as the mean of that measurement and of its repeat `results[name + "_after"]`
    (when there is one), with both values under "each"."""
    runs = [results[n][key] for n in (name, f"{name}_after") if key in results.get(n, {})]
    return {**{f: sum(r[f] for r in runs) / len(runs) for f in fields},
            "each": {f: [round(r[f], 1) for r in runs] for f in fields}}


def raw_forward_lanes(export: Path, body: bytes, lanes: int, batch: int, seconds: float) -> dict:
    """What the replica's lanes do under load, without Serve: `lanes` threads in this process, each running
    `Predictor.forward` on `batch` prepared images with one torch thread, back to back; their images per second."""
    import threading

    import torch

    from raylessons.data.imageio import decode_image_bytes
    from raylessons.inference import Predictor

    predictor = Predictor.from_export(export)
    x, _ = predictor.prepare(decode_image_bytes(body))
    done = [0] * lanes
    start = threading.Barrier(lanes + 1)

    def lane(i: int) -> None:
        torch.set_num_threads(1)
        for _ in range(2):
            predictor.forward([x] * batch)
        start.wait()
        while time.perf_counter() < stop:
            predictor.forward([x] * batch)
            done[i] += batch

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(lanes)]
    stop = float("inf")
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    stop = t0 + seconds
    for t in threads:
        t.join()
    return {"lanes": lanes, "batch": batch, "img_per_s": sum(done) / (time.perf_counter() - t0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of every server and of the raw forward")
    ap.add_argument("--serve-threads", type=int, default=None,
                    help="torch threads of the Serve replica (default: --threads)")
    ap.add_argument("--lanes", type=int, default=None,
                    help="the Serve replica's lanes: forwards side by side under load, one torch thread each "
                         "(default: one per thread); the same app with one lane is measured too")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per point")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--max-requests", type=int, default=5000, help="per user and point: the load is bounded")
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--batch-wait", type=float, default=0.0, help="Serve batch_wait_timeout_s")
    ap.add_argument("--access-log", action="store_true",
                    help="turn Serve's access log on (a line per request in each process on its path; the app's "
                         "default is off)")
    ap.add_argument("--skip", default="", help="comma list of parts not to measure: plain, unbatched, proxy (the "
                                              "app through Serve's proxy, the path before direct ingress), "
                                              "one-lane (Serve batched with one forward at a time)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--plain-server", nargs=3, metavar=("EXPORT", "PORT", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.plain_server:
        plain_server(args.plain_server[0], int(args.plain_server[1]), int(args.plain_server[2]))
        return 0

    levels = [int(c) for c in args.concurrency.split(",")]
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-serve-"))
    export, body = make_export(out, args.arch, args.size)
    body_file = out / "request.jpg"
    body_file.write_bytes(body)
    point = dict(path="/planet", body=str(body_file), ctype="image/jpeg", duration=args.duration,
                 warmup=args.warmup, max_requests=args.max_requests)
    results: dict = {}

    # 1. the raw forward in this process (batch 1 and the batch size Serve uses)
    results["raw"] = {b: raw_forward(export, body, args.threads, b, seconds=5) for b in (1, args.max_batch_size)}
    for b, r in results["raw"].items():
        print(f"raw forward batch {b:>2}: {r['img_per_s']:6.1f} img/s, {r['p50_ms']:.1f} ms per forward "
              f"(decode + prepare {r['decode_prepare_ms']:.1f} ms)", flush=True)
    lanes = args.lanes or args.serve_threads or args.threads
    if lanes > 1:  # what the replica's lanes do under load, for comparison (the target is against the line above)
        per_lane = -(-args.max_batch_size // lanes)
        results["raw_lanes"] = raw_forward_lanes(export, body, lanes, per_lane, seconds=5)
        print(f"raw forward on {lanes} lanes, batch {per_lane} each, one torch thread each: "
              f"{results['raw_lanes']['img_per_s']:6.1f} img/s", flush=True)

    skip = set(filter(None, args.skip.split(",")))
    nan = {"rps": float("nan"), "p50_ms": float("nan")}
    # 2. plain FastAPI + uvicorn (no Ray, no batching)
    if "plain" in skip:
        results["plain"] = {c: nan for c in levels}
    else:
        results["plain"] = measure_plain(export, args.threads, levels, point)
        _print("plain FastAPI", results["plain"])

    # 3. the Serve app, batched then unbatched (the same replicas: batch size is live user_config)
    import ray

    from raylessons.serving import local

    port = _free_port()
    options = dict(max_batch_size=args.max_batch_size, batch_wait_timeout_s=args.batch_wait,
                   threads=args.serve_threads or args.threads, lanes=args.lanes)
    logging_config = {"enable_access_log": True} if args.access_log else None  # None: the app's default
    local.start({"planet": str(export)}, port=port, logging_config=logging_config, **options)
    try:
        results["serve_batched"] = {c: _with_batches(port, lambda: measure(port, c, **point)) for c in levels}
        _print("Serve batched", results["serve_batched"])
        proxy_port = urlsplit(local.proxy_url()).port  # the same app, one hop longer: through Serve's proxy actor
        if "proxy" not in skip and proxy_port != port:
            results["serve_batched_via_proxy"] = {c: _with_batches(port, lambda: measure(proxy_port, c, **point))
                                                  for c in levels}
            _print("via Serve proxy", results["serve_batched_via_proxy"])
        if "one-lane" not in skip and lanes > 1:  # the same replicas, one forward at a time (live user_config)
            local.configure("planet", lanes=1)
            time.sleep(2)
            results["serve_batched_one_lane"] = {c: _with_batches(port, lambda: measure(port, c, **point))
                                                 for c in levels}
            _print("one lane", results["serve_batched_one_lane"])
            local.configure("planet", lanes=args.lanes)
        if "unbatched" in skip:
            results["serve_unbatched"] = {c: nan for c in levels}
        else:
            local.configure("planet", max_batch_size=1)  # live, through user_config: same replica, batches of one
            time.sleep(2)
            results["serve_unbatched"] = {c: measure(port, c, **point) for c in levels}
            _print("Serve unbatched", results["serve_unbatched"])
    finally:
        local.shutdown()
        if ray.is_initialized():
            ray.shutdown()

    # 4. the references again, Ray gone: this machine's speed drifts over minutes, so each reference a target
    # compares with is the mean of its measurement before the Serve points and after them
    top, c1 = max(levels), min(levels)
    time.sleep(3)
    results["raw_after"] = {b: raw_forward(export, body, args.threads, b, seconds=5) for b in (1, args.max_batch_size)}
    for b, r in results["raw_after"].items():
        print(f"raw forward batch {b:>2}, after: {r['img_per_s']:6.1f} img/s, {r['p50_ms']:.1f} ms per forward",
              flush=True)
    if "plain" not in skip:
        results["plain_after"] = measure_plain(export, args.threads, sorted({c1, top}), point)
        _print("plain, after", results["plain_after"])
    raw_b, raw_1 = (_bracket(results, "raw", b, ("img_per_s", "p50_ms")) for b in (args.max_batch_size, 1))
    sb, su = (results[k][top] for k in ("serve_batched", "serve_unbatched"))
    pl = _bracket(results, "plain", top, ("rps", "p50_ms"))
    pl1 = _bracket(results, "plain", c1, ("rps", "p50_ms"))
    summary = {
        f"serve_batched_over_raw_batched_c{top}": sb["rps"] / raw_b["img_per_s"],
        f"serve_batched_over_plain_c{top}": sb["rps"] / pl["rps"],
        f"serve_batched_over_serve_unbatched_c{top}": sb["rps"] / su["rps"],
        "raw_batch_over_batch1": raw_b["img_per_s"] / raw_1["img_per_s"],
        "serve_p50_c1_minus_raw_single_ms": results["serve_batched"][c1]["p50_ms"] - raw_1["p50_ms"],
        "serve_p50_c1_minus_plain_p50_c1_ms": results["serve_batched"][c1]["p50_ms"] - pl1["p50_ms"],
        "references (before, after: the mean is used)": {
            f"raw batch {args.max_batch_size} img/s": raw_b["each"]["img_per_s"],
            "raw batch 1 p50 ms": raw_1["each"]["p50_ms"], f"plain c={top} req/s": pl["each"]["rps"],
            f"plain c={c1} p50 ms": pl1["each"]["p50_ms"]},
    }
    if "raw_lanes" in results:
        summary[f"serve_batched_over_raw_lanes_c{top}"] = sb["rps"] / results["raw_lanes"]["img_per_s"]
    if "serve_batched_one_lane" in results:
        ol = results["serve_batched_one_lane"]
        summary[f"serve_batched_over_one_lane_c{top}"] = sb["rps"] / ol[top]["rps"]
        summary["serve_p50_c1_minus_one_lane_ms"] = results["serve_batched"][c1]["p50_ms"] - \
            ol[c1]["p50_ms"]
    if "serve_batched_via_proxy" in results:
        vp = results["serve_batched_via_proxy"]
        summary[f"direct_over_via_proxy_c{top}"] = sb["rps"] / vp[top]["rps"]
        summary["direct_p50_c1_minus_via_proxy_ms"] = (results["serve_batched"][c1]["p50_ms"]
                                                       - vp[c1]["p50_ms"])
    print(json.dumps({"results": results, "summary": summary}, indent=1, default=float))
    ratio_raw, ratio_plain = (summary[f"serve_batched_over_{k}_c{top}"] for k in ("raw_batched", "plain"))
    sb1 = results["serve_batched"][c1]
    extra_ms = summary["serve_p50_c1_minus_plain_p50_c1_ms"]

    def met(ok: bool) -> str:  # three decimals: a 0.696 is not rounded up to a met 0.70
        return "met" if ok else "MISSED"

    refs = summary["references (before, after: the mean is used)"]
    print("\nreferences, before / after the Serve points (each target uses their mean): " + "; ".join(
        f"{name} {' / '.join(f'{v:.1f}' for v in values)}" for name, values in refs.items()))
    print(f"at concurrency {top}: Serve batched {sb['rps']:.1f} req/s = {ratio_raw:.3f}x the raw batched forward "
          f"(target >= 0.70: {met(ratio_raw >= 0.70)}), {ratio_plain:.3f}x plain FastAPI (target >= 1.4: "
          f"{met(ratio_plain >= 1.4)}), {summary[f'serve_batched_over_serve_unbatched_c{top}']:.2f}x Serve unbatched")
    print(f"at concurrency {c1}: Serve p50 {results['serve_batched'][c1]['p50_ms']:.1f} ms vs plain FastAPI "
          f"{pl1['p50_ms']:.1f} ms: {extra_ms:+.1f} ms (target <= +10: {met(extra_ms <= 10)}); "
          f"raw single forward {raw_1['p50_ms']:.1f} ms, the replica's forwards {sb1['forward_ms']:.1f} ms on average")
    if "raw_lanes" in results:
        print(f"against the raw forward on the replica's {results['raw_lanes']['lanes']} lanes: "
              f"{summary[f'serve_batched_over_raw_lanes_c{top}']:.3f}x at concurrency {top} (no target)")
    if "serve_batched_one_lane" in results:
        print(f"lanes against one forward at a time, the same replica: "
              f"{summary[f'serve_batched_over_one_lane_c{top}']:.2f}x the requests per second at concurrency {top}, "
              f"p50 {summary['serve_p50_c1_minus_one_lane_ms']:+.1f} ms at concurrency {c1}")
    if "serve_batched_via_proxy" in results:
        print(f"direct ingress against Serve's proxy path: {summary[f'direct_over_via_proxy_c{top}']:.2f}x the "
              f"requests per second at concurrency {top}, p50 {summary['direct_p50_c1_minus_via_proxy_ms']:+.1f} ms "
              f"at concurrency {c1}")
    return 0


def _label(cmdline: str) -> str:
    """A short name for a process: Ray's actor title without the method it runs now, or the program and its first
    argument."""
    if cmdline.startswith("ray::"):
        return cmdline.split()[0][5:].split(".")[0]
    return " ".join(os.path.basename(part) for part in cmdline.split()[:2])


def _with_batches(port: int, run) -> dict:
    """`run()`'s result plus the mean batch the Planet replica formed meanwhile and the mean time of its forwards
    (the replica's own clock, from GET /models)."""
    import httpx

    def counts() -> tuple[int, int, float]:
        models = httpx.get(f"http://{HOST}:{port}/models", timeout=30, trust_env=False).json()["models"]
        b = {m["task"]: m for m in models}["planet"]["batching"]
        return b["batches"], b["requests"], b["forward_s"]

    (b0, r0, f0), result, (b1, r1, f1) = counts(), run(), counts()
    return {**result, "mean_batch": (r1 - r0) / max(1, b1 - b0), "forward_ms": 1000 * (f1 - f0) / max(1, b1 - b0)}


def _print(name: str, by_level: dict) -> None:
    for c, r in by_level.items():
        batch = f", mean batch {r['mean_batch']:.1f} ({r['forward_ms']:.1f} ms a forward)" if "mean_batch" in r else ""
        print(f"{name:>16} c={c:>2}: {r['rps']:6.1f} req/s, p50 {r['p50_ms']:7.1f} ms, p99 {r['p99_ms']:7.1f} ms, "
              f"{r['failed']} failed{batch}", flush=True)
        cost = ", ".join(f"{ms} {kind}" for kind, ms in r["cpu_ms_per_request"].items())
        print(f"{'':>16}       CPU ms per request (measured window, every process): {cost}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
