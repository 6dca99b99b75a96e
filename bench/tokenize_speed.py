"""Benchmark: fastai-rules tokenization on 1 process vs all cores, then a cached rerun.

    python bench/tokenize_speed.py [--n 20000] [--workers N] [--repeat R]

Texts come from the IMDB look-alike generator. Each timing includes starting the worker pool and
spaCy, as a real run pays them. With --repeat the best of R runs is kept (the machine may be shared);
the CPU seconds printed (this process plus its workers) tell how much of a slow wall time was waiting.
"""
import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

from raylessons.data.synth.imdb import make_review
from raylessons.data.tokenize import Tokenizer, default_n_workers, tokenize_texts


def _cpu() -> float:
    """CPU seconds used by this process and its finished children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn):
    """Run `fn` once; return (wall seconds, CPU seconds, result)."""
    c0, t0 = _cpu(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, _cpu() - c0, out


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print texts/s for 1 process, all cores, and a cached rerun."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="number of texts")
    ap.add_argument("--workers", type=int, default=None,
                    help="processes for the parallel run (default: all cores)")
    ap.add_argument("--repeat", type=int, default=1, help="keep the best of this many runs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    workers = args.workers or default_n_workers()
    rng = random.Random(args.seed)
    texts = [make_review(rng, rng.choice([1, -1])) for _ in range(args.n)]
    words = sum(len(t.split()) for t in texts)
    print(f"{args.n} texts, {words / args.n:.0f} words each on average; {workers} workers")

    Tokenizer().process_text("warm up")  # import spaCy once, outside the timings (workers fork after)
    best: dict[int, tuple] = {}
    for _ in range(args.repeat):  # alternate the two runs so drifting load hits both alike
        for n in (1, workers):
            run = _timed(lambda: tokenize_texts(texts, n_workers=n))
            if n not in best or run[0] < best[n][0]:
                best[n] = run
    (t1, c1, serial), (tn, cn, parallel) = best[1], best[workers]
    print(f"1 process      : {t1:7.2f} s  {args.n / t1:8.0f} texts/s  (CPU {c1:.2f} s)")
    print(f"{workers} processes    : {tn:7.2f} s  {args.n / tn:8.0f} texts/s  (CPU {cn:.2f} s)  "
          f"speed-up {t1 / tn:.2f}x")
    if parallel != serial:
        raise SystemExit("parallel output differs from serial output")

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        tokenize_texts(texts, n_workers=workers, cache_dir=Path(cache))
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        cached = tokenize_texts(texts, n_workers=workers, cache_dir=Path(cache))
        warm = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(cache).iterdir())
    assert cached == serial
    print(f"cache, 1st run : {cold:7.2f} s  (tokenize + write {size / 2**20:.1f} MiB)")
    print(f"cache, 2nd run : {warm:7.2f} s  {args.n / warm:8.0f} texts/s  "
          f"({t1 / warm:.0f}x faster than 1 process)")
    return {"serial_s": t1, "parallel_s": tn, "serial_cpu_s": c1, "parallel_cpu_s": cn,
            "speedup": t1 / tn, "cold_cache_s": cold, "cached_s": warm}


if __name__ == "__main__":
    main()
