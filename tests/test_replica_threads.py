"""A model replica runs every forward on one thread of its own, with the replica's torch threads, and keeps torch
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
    answers = await asyncio.gather(*(replica(image) for _ in range(6)))
    loop_threads = torch.get_num_threads()
    await replica.reconfigure({"threads": 2, "export": export + "-copy"})  # a live swap loads on a helper thread
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
    names = {name for name, _, _ in got["forwards"]}
    assert names == {"planet-forward_0"}, got["forwards"]  # one thread for every forward, before and after a swap
    assert {threads for _, threads, _ in got["forwards"]} == {2}  # with the replica's torch threads
    assert sum(n for _, _, n in got["forwards"]) == 8 and max(n for _, _, n in got["forwards"]) > 1  # batched
    assert got["serving"] == str(copy.resolve())
    assert len(got["tags"]) == 8 and all(tags == got["tags"][0] for tags in got["tags"])  # same image, same answer
