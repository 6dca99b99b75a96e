"""A model replica runs a lone request's forward on one thread of its own, with the replica's torch threads, the
forwards of a loaded replica side by side on its lanes' threads, one torch thread each, and keeps torch
on one thread everywhere else (the event loop decoding requests, a live swap loading a model): OpenMP gives each
thread that runs a parallel op a team of its own, and a second team on the same cores slows the forward.

Checked in a fresh interpreter (torch's per-thread state starts clean), without Ray.
"""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import asyncio, json, sys, threading
import torch
from raylessons.serving import replicas
from raylessons.serving.replicas import ImageModel

export, image_path = sys.argv[1], sys.argv[2]
image = open(image_path, "rb").read()
seen = []
forward = replicas._forward_groups

def spy(items, threads=None):
    rows = forward(items, threads)
    seen.append((threading.current_thread().name, torch.get_num_threads(), len(items)))
    return rows

replicas._forward_groups = spy
torch.set_num_threads(2)  # whatever the process had before: the replica puts its own thread on one
replica = ImageModel.func_or_class("planet", export)
after_init = torch.get_num_threads()

async def main():
    await replica.reconfigure({"threads": 2, "max_batch_size": 4, "batch_wait_timeout_s": 0.05})
    answers = [await replica(image)]  # alone
    seen.append("burst")
    answers += await asyncio.gather(*(replica(image) for _ in range(6)))  # side by side, one per lane
    loop_threads = torch.get_num_threads()
    seen.append("one lane")
    await replica.reconfigure({"threads": 2, "lanes": 1, "max_batch_size": 4, "batch_wait_timeout_s": 0.05})
    answers += await asyncio.gather(*(replica(image) for _ in range(6)))
    seen.append("swap")
    await replica.reconfigure({"threads": 2, "lanes": 1, "export": export + "-copy"})  # loads on a helper thread
    answers += await asyncio.gather(*(replica(image) for _ in range(2)))
    return answers, loop_threads

answers, loop_threads = asyncio.run(main())
print(json.dumps({"spin": asyncio.run(replica.info())["batching"]["openmp_spin_count"], "after_init": after_init, "loop_threads": loop_threads, "forwards": seen,
                  "tags": [sorted(a["tags"]) for a in answers], "serving": replica.loaded.summary["export"]}))
"""


def test_forwards_run_on_the_replica_forward_thread_and_torch_stays_on_one_thread_elsewhere(planet_export,
                                                                                            tmp_path):
    import shutil

    export, images = planet_export
    copy = Path(shutil.copytree(export, f"{export}-copy", dirs_exist_ok=True))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(export), str(images[0])], capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["after_init"] == 1 and got["loop_threads"] == 1  # the event loop's thread: one torch thread
    assert got["spin"] is None  # torch was loaded before the replica: OpenMP's spin count is not its to set
    marks = [i for i, f in enumerate(got["forwards"]) if isinstance(f, str)]
    alone, burst, one_lane, swap = (got["forwards"][a + 1:b] for a, b in
                                    zip([-1, *marks], [*marks, len(got["forwards"])]))
    # a lone request: the forward thread, with the replica's torch threads
    assert alone == [["planet-forward_0", 2, 1]], got["forwards"]
    # six at once with two lanes (the default: one per thread): forwards side by side on the lanes' threads, one
    # torch thread each, the queue split between them
    assert {name for name, _, _ in burst} == {"planet-lane_0", "planet-lane_1"}, burst
    assert {threads for _, threads, _ in burst} == {1} and sorted(n for _, _, n in burst) == [3, 3], burst
    # one lane: every forward alone on the forward thread with both torch threads, batched (before and after a swap)
    for part in (one_lane, swap):
        assert {(name, threads) for name, threads, _ in part} == {("planet-forward_0", 2)}, part
    assert sum(n for _, _, n in one_lane) == 6 and max(n for _, _, n in one_lane) > 1
    assert sum(n for _, _, n in swap) == 2
    assert got["serving"] == str(copy.resolve())
    assert len(got["tags"]) == 15 and all(tags == got["tags"][0] for tags in got["tags"])  # same image, same answer
