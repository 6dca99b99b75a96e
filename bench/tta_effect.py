"""Does TTA help? Plain predictions vs `learn.TTA()` on the valid set of the demo-sized Planet and head-pose
learners, trained here from scratch on the project's generated data (in this process, a few minutes on 2 cores).

Run: python bench/tta_effect.py [--epochs 3] [--frames 30] [--head-epochs 8] [--seed 0] [--out DIR]

- Planet: the demo's data (600 chips at 64 px, trained at 32 px, resnet18); one frozen epoch at 1e-2, then
  `--epochs` unfrozen at slice(1e-2/30, 1e-2/3). Metric: fbeta (F2) at threshold 0.2 over the probabilities.
- Head pose: the demo's data (24 people, `--frames` frames each, person 13 held out, trained at 48x64, resnet18
  with a zero head, the demo's transforms: flips, zoom up to 1.1, lighting); `--head-epochs` at 5e-3.
  Metric: MSE of the (row, col) points in [-1, 1].
Each row: plain get_preds; TTA (beta 0.4, the augmented passes' mean alone (beta 0)) at scale 1.35 (fastai's
default) and at 1.1 (the training zoom's range).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from raylessons.data.synth import synth
from raylessons.demo.presets import DEFAULT
from raylessons.metrics import MSELossFlat, fbeta
from raylessons.tasks import head_pose, planet

SCALES = (1.35, 1.1)


def planet_learner(root: Path, epochs: int):
    p = DEFAULT["planet"]
    data_dir = synth("planet", root / "planet", n=p["n"], size=p["image_size"], seed=0)
    cfg = planet.Config(data=str(data_dir), size=p["size"], bs=p["bs"], arch=p["arch"], pretrained=False)
    learn = planet.build_learner(planet.build_data(cfg), cfg)
    lr = 1e-2
    learn.freeze()
    learn.fit_one_cycle(1, slice(lr))
    learn.unfreeze()
    learn.fit_one_cycle(epochs, slice(lr / 30, lr / 3))
    return learn


def head_pose_learner(root: Path, frames: int, epochs: int):
    p = DEFAULT["head_pose"]
    data_dir = synth("biwi", root / "biwi", persons=24, frames=frames, size=p["image_size"], seed=0)
    cfg = head_pose.Config(data=str(data_dir), size=p["size"], bs=p["bs"], arch=p["arch"], pretrained=False,
                           ps=p["ps"], zero_head=True, tfms=dict(p["tfms"]))
    learn = head_pose.build_learner(head_pose.build_data(cfg), cfg)
    learn.fit_one_cycle(epochs, slice(p["lr"]))
    return learn


def compare(learn, metric) -> list[tuple[str, float]]:
    """(what, metric) for plain preds and the TTA variants."""
    preds, targs = learn.get_preds()
    rows = [("plain get_preds", float(metric(preds, targs)))]
    for scale in SCALES:
        plain, avg, _ = learn.TTA(beta=None, scale=scale)
        assert torch.allclose(plain, preds, atol=1e-6)
        rows.append((f"TTA beta=0.4 scale={scale}", float(metric(0.4 * plain + 0.6 * avg, targs))))
        rows.append((f"TTA passes' mean only, scale={scale}", float(metric(avg, targs))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="Planet's unfrozen epochs (after one frozen)")
    parser.add_argument("--frames", type=int, default=30, help="head pose: frames per person")
    parser.add_argument("--head-epochs", type=int, default=8, help="head pose: epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="where the generated data goes (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        results = {}
        t0 = time.perf_counter()
        torch.manual_seed(args.seed)
        learn = planet_learner(root, args.epochs)
        t1 = time.perf_counter()
        results["Planet fbeta@0.2 (higher is better)"] = compare(learn, lambda p, t: fbeta(p, t, 0.2, sigmoid=False))
        t2 = time.perf_counter()
        print(f"Planet: trained in {t1 - t0:.0f} s, {len(learn.data.valid_ds)} valid images, TTA "
              f"({2 * len(SCALES)} calls) in {t2 - t1:.1f} s", flush=True)
        torch.manual_seed(args.seed)
        learn = head_pose_learner(root, args.frames, args.head_epochs)
        t3 = time.perf_counter()
        results["Head pose MSE in [-1, 1] (lower is better)"] = compare(learn, MSELossFlat())
        print(f"Head pose: trained in {t3 - t2:.0f} s, {len(learn.data.valid_ds)} valid frames, TTA in "
              f"{time.perf_counter() - t3:.1f} s", flush=True)
    for title, rows in results.items():
        print(f"\n{title}")
        for what, value in rows:
            print(f"  {what:<36} {value:.4f}")


if __name__ == "__main__":
    main()
