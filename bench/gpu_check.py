"""GPU check: the learner's CUDA paths (AMP + GradScaler, channels_last, pinned loaders, gpu_mem/empty_cache),
the four lesson workflows end to end on the device, and Learner.fit against a plain PyTorch AMP loop.

Run (repository root; torch, torchvision, pandas, pillow, matplotlib; spaCy optional; never Ray):
    python bench/gpu_check.py                        # CUDA, full sizes (sized for an H200 in under 6 min)
    python bench/gpu_check.py --device cpu --tiny    # the same code paths on a CPU in under a minute (the test)
    python bench/gpu_check.py --skip imdb bench      # leave parts out: planet camvid head_pose imdb bench loader mem
Options: --out DIR (default $OUT, else gpu-check-out; gpu_check.json and the lr_find plots go there),
--workers N (the workflows' loader workers), --threads N (torch threads; 1 with --device cpu --tiny),
--peak-tflops T (dense bf16 peak of a GPU other than an H100/H200), --budget-s S (parts that would start later
are skipped), --keep-data (generated data and exports kept under DIR/work).

Part 1: planet, camvid, head_pose and imdb (the LM, then the classifier on its encoder), each through the public
  learner API on generated look-alike data: lr_find, freeze + fit_one_cycle, unfreeze + fit_one_cycle, then
  save/load, export/load_learner and predict on the device, the export read back on the CPU, and one training
  batch overfitted with Learner.fit. Checks: AMP on CUDA (autocast fp16 seen inside every training forward, fp16
  outputs, the GradScaler on) or off on the CPU; channels_last inputs on CUDA; losses finite and falling (median
  batch loss, first vs last epoch; for head pose recorded only at --tiny sizes); metrics finite; round trips give
  the same decoded answer, numerically close; the one-batch loss falls.
Part 2: images/s of Learner.fit against a plain AMP loop on the same resnet34 (128 px, bs 64 on CUDA) with
  synthetic on-device batches: fp16 + GradScaler and bf16 autocast, channels_last (the Learner has no bf16 mode:
  bf16 is the plain loop's figure); the ratio learner / plain in the learner's precision (target >= 0.95);
  model FLOPs (FlopCounterMode, one forward + backward) as a fraction of the GPU's dense bf16 peak; the DataBunch's
  loader throughput (num_workers > 0, pinned memory, generated JPEGs at 128 px) against the learner's step rate.
Part 3: raylessons.device.gpu_mem() before and after empty_cache().

Without spaCy the IMDB part is skipped ("skipped: spacy not installed"), not failed. Results are written to
DIR/gpu_check.json after every part (a run cut short still leaves them). Exit status: 0 when every check passed,
1 when one failed, 2 when --device cuda finds no CUDA device.
"""
from __future__ import annotations

import os
import sys

# the repository root: the device machine runs raylessons from a copy of the tree, without installing it
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from raylessons.callbacks import Callback  # noqa: E402
from raylessons.data.bunch import DeviceBatch  # noqa: E402
from raylessons.data.synth import synth  # noqa: E402
from raylessons.device import default_device, empty_cache, gpu_mem  # noqa: E402
from raylessons.learner import (
    AdamW,  # noqa: E402
    load_learner,  # noqa: E402
)
from raylessons.metrics import BCEWithLogitsFlat  # noqa: E402
from raylessons.models.cnn import create_cnn_model  # noqa: E402
from raylessons.vision_learner import cnn_learner  # noqa: E402

PARTS = ("planet", "camvid", "head_pose", "imdb", "bench", "loader", "mem")
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0}  # NVIDIA's dense bf16 (SXM) figures
TARGET_RATIO = 0.95  # Learner.fit / plain loop, same precision
BUDGET_S = 360.0  # the H200 run's wall-clock budget
START_BY_S = 300.0  # a part that would start later is skipped (the last one must fit in the rest)

# workflow sizes: "full" for the GPU (about a minute of the budget each at most), "tiny" for the CPU test
SIZES = {
    "full": {
        "planet": dict(n=640, image_size=128, size=128, bs=64, arch="resnet34", epochs=(2, 2), lr=1e-2,
                       finder_iters=20, overfit_steps=15),
        "camvid": dict(n=120, image_size=(96, 128), size=[96, 128], bs=8, arch="resnet34", epochs=(2, 2),
                       lr=1e-2, finder_iters=20, overfit_steps=15),
        "head_pose": dict(persons=24, frames=10, image_size=(120, 160), size=[96, 128], bs=32, arch="resnet34",
                          epochs=(2, 2), lr=5e-3, finder_iters=20, overfit_steps=15, gate_falling=True),
        "imdb": dict(n_train=600, n_test=300, n_unsup=300, model={"emb_sz": 64, "n_hid": 128, "n_layers": 2},
                     lm_bs=32, bptt=70, lm_epochs=(1, 2), clas_bs=32, clas_epochs=(1, 2), finder_iters=20,
                     overfit_steps=30),
        "bench": dict(arch="resnet34", size=128, bs=64, warmup=10, steps=40, rounds=3),
        "loader": dict(n=1280, size=128, bs=64, workers=(4, 8, 16), epochs=3),
    },
    "tiny": {
        "planet": dict(n=96, image_size=32, size=32, bs=8, arch="resnet18", epochs=(1, 1), lr=1e-2,
                       finder_iters=4, overfit_steps=6),
        "camvid": dict(n=20, image_size=(48, 64), size=[32, 32], bs=4, arch="resnet18", epochs=(1, 1), lr=1e-2,
                       finder_iters=4, overfit_steps=6),
        # two short epochs from scratch: the regressor's train-mode loss is noise (BatchNorm on 8 images, a kaiming
        # head), so the epoch comparison is recorded, not gated; the one-batch overfit says training works
        "head_pose": dict(persons=14, frames=3, image_size=(60, 80), size=[32, 32], bs=8, arch="resnet18",
                          epochs=(1, 1), lr=5e-3, finder_iters=4, overfit_steps=6, gate_falling=False),
        "imdb": dict(n_train=40, n_test=20, n_unsup=20, model={"emb_sz": 16, "n_hid": 32, "n_layers": 1},
                     lm_bs=16, bptt=20, lm_epochs=(1, 1), clas_bs=8, clas_epochs=(1, 1), finder_iters=4,
                     overfit_steps=20),
        # the CPU runs the timing code at a size that only exercises it (CPU autocast fp16 is very slow)
        "bench": dict(arch="resnet18", size=32, bs=2, warmup=1, steps=2, rounds=1),
        "loader": dict(n=48, size=32, bs=16, workers=(2,), epochs=2),
    },
}


# ----------------------------------------------------------------------------------------------- small helpers

def seed_everything(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def timing(times: dict, key: str, device):
    """Add the seconds the block took (device work included) to times[key]."""
    sync(device)
    t = time.perf_counter()
    try:
        yield
    finally:
        sync(device)
        times[key] = times.get(key, 0.0) + time.perf_counter() - t


def check(name: str, ok: bool, detail=None) -> dict:
    return {"name": name, "ok": bool(ok), "detail": detail}


def finite(values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def jsonable(obj):
    """Plain JSON values (NaN/inf as strings, tensors as lists)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, np.integer)):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


# ----------------------------------------------------------------------------------------------- part 1: probes

def _dtype(dtype) -> str:
    return str(dtype).replace("torch.", "")


class Probe(Callback):
    """Records what each training forward ran under (autocast, dtypes, memory format) and every batch loss."""

    order = 50

    def __init__(self, learn):
        self.phase, self.epochs, self.train_obs, self.eval_obs = "", [], {}, {}
        self.handle = learn.model.register_forward_hook(self._hook)
        learn.callbacks.append(self)

    def _hook(self, module, args, out):
        x = args[0] if args else None
        out = out[0] if isinstance(out, (tuple, list)) else out
        channels_last = (isinstance(x, torch.Tensor) and x.dim() == 4 and not x.is_contiguous()
                         and x.is_contiguous(memory_format=torch.channels_last))
        key = " ".join([f"cuda_autocast={torch.is_autocast_enabled('cuda')}",
                        f"cuda_dtype={_dtype(torch.get_autocast_dtype('cuda'))}",
                        f"cpu_autocast={torch.is_autocast_enabled('cpu')}",
                        f"out={_dtype(getattr(out, 'dtype', None))}", f"channels_last={channels_last}"])
        obs = self.train_obs if module.training else self.eval_obs
        obs[key] = obs.get(key, 0) + 1

    def before_epoch(self, learn):
        self.epochs.append({"phase": self.phase, "losses": []})

    def after_batch(self, learn):
        if learn.training and self.epochs:
            self.epochs[-1]["losses"].append(float(learn.loss.detach().float()))

    def stage_epochs(self) -> list[dict]:
        return [e for e in self.epochs if e["phase"].startswith("stage")]


def amp_checks(learn, probe: Probe, device: torch.device, vision: bool) -> list[dict]:
    """AMP on (fp16 autocast, fp16 outputs, GradScaler) on CUDA; off on the CPU (the learner's rule)."""
    obs = probe.train_obs
    seen = " | ".join(f"{k} x{v}" for k, v in obs.items())
    if device.type == "cuda":
        ok = bool(obs) and all("cuda_autocast=True" in k and "cuda_dtype=float16" in k for k in obs)
        out_ok = bool(obs) and all("out=float16" in k for k in obs)
        scaler = learn._scaler.is_enabled() and math.isfinite(learn._scaler.get_scale())
        checks = [check("amp_active_on_cuda", ok and learn.mixed_precision, seen),
                  check("amp_fp16_outputs", out_ok, seen),
                  check("grad_scaler_on", scaler, {"scale": learn._scaler.get_scale() if scaler else None})]
        if vision:
            checks.append(check("channels_last_inputs", all("channels_last=True" in k for k in obs), seen))
        return checks
    ok = bool(obs) and all("cuda_autocast=False" in k and "cpu_autocast=False" in k and "out=float32" in k
                           for k in obs)
    return [check("amp_off_on_cpu", ok and not learn.mixed_precision and not learn._scaler.is_enabled(), seen)]


def loss_checks(learn, probe: Probe, gate_falling: bool = True) -> tuple[list[dict], dict]:
    """Finite losses and metrics; the median batch loss of the last epoch below the first epoch's (robust to one
    spiking batch). `gate_falling=False` records that comparison without counting it as a check."""
    epochs = probe.stage_epochs()
    medians = [float(np.median(e["losses"])) if e["losses"] else math.nan for e in epochs]
    batch = [v for e in epochs for v in e["losses"]]
    rows = learn.rows
    last = rows[-1] if rows else {}
    metrics = {k: v for k, v in last.items() if k not in ("epoch", "time")}
    figures = {"epoch_median_batch_loss": medians,
               "epoch_mean_batch_loss": [float(np.mean(e["losses"])) if e["losses"] else math.nan for e in epochs],
               "epoch_rows": rows, "final": metrics}
    falling = check("loss_falling", len(medians) >= 2 and finite(medians) and medians[-1] < medians[0],
                    {"first_epoch_median": medians[0] if medians else None,
                     "last_epoch_median": medians[-1] if medians else None})
    checks = [check("loss_finite", bool(batch) and finite(batch) and finite(r["train_loss"] for r in rows),
                    {"batches": len(batch)}),
              check("metrics_finite", bool(metrics) and finite(metrics.values()), metrics)]
    if gate_falling:
        checks.insert(1, falling)
    else:
        figures["loss_falling_not_gated"] = falling
    return checks, figures


class _OneBatch:
    """`data` with its train loader replaced by one of its batches repeated `n` times and no validation."""

    def __init__(self, data, batch, n: int):
        self._data, self.train_dl, self.valid_dl = data, _Repeat(batch, n), _Repeat(batch, 0)

    def __getattr__(self, name):
        return getattr(self._data, name)


def overfit_check(learn, probe: Probe, steps: int, lr: float = 1e-3) -> dict:
    """Learner.fit on one training batch repeated: the loss must fall (the optimizer's and GradScaler's steps
    land). The last third of the steps against the first step."""
    data, batch = learn.data, next(iter(learn.data.train_dl))
    learn.unfreeze()
    learn.data, learn.validate_each_epoch, verbose = _OneBatch(data, batch, steps), False, learn.recorder.verbose
    learn.recorder.verbose, probe.phase = False, "overfit"
    try:
        learn.fit(1, lr)
    finally:
        learn.data, learn.validate_each_epoch, learn.recorder.verbose = data, True, verbose
    losses = probe.epochs[-1]["losses"]
    tail = float(np.mean(losses[-max(1, steps // 3):])) if losses else math.nan
    ok = len(losses) == steps and finite(losses) and tail < losses[0]
    return check("overfit_one_batch", ok, {"first": losses[0] if losses else None, "last_third_mean": tail,
                                           "ratio": tail / losses[0] if losses else None, "steps": len(losses)})


# ----------------------------------------------------------------------------------------------- part 1: answers

def answer_diff(kind: str, a, b, tol: float) -> dict:
    """How two decoded predictions of one item differ: {'same': decoded answers agree, 'max_abs_diff': ...}.

    An answer that flips only where the scores sit within `tol` of the decision (threshold, top-2 margin) counts
    as the same answer."""
    if kind == "multi_category":
        pa, pb = a[2].float(), b[2].float()
        thresh = 0.2
        flips = (a[1] != b[1]).nonzero().flatten().tolist()
        same = all(abs(float(pa[i]) - thresh) <= tol for i in flips)
        return {"same": same, "max_abs_diff": float((pa - pb).abs().max()), "answer": a[0], "other": b[0]}
    if kind == "segmentation":
        agree = float((a[0] == b[0]).float().mean())
        pa, pb = a[2].float(), b[2].float()
        return {"same": agree >= (0.99 if tol > 1e-3 else 0.999), "pixel_agreement": agree,
                "max_abs_diff": float((pa - pb).abs().max()) if pa.shape == pb.shape else math.inf}
    if kind == "points":
        d = float((a[1].float() - b[1].float()).abs().max())
        return {"same": d <= tol, "max_abs_diff": d, "answer": a[0].tolist()}
    if kind in ("category", "lm"):
        pa, pb = a[2].float(), b[2].float()
        top2 = pa.topk(2).values
        same = a[1] == b[1] or float(top2[0] - top2[1]) <= tol
        label = a[0] if kind == "category" else a[1]
        return {"same": same, "max_abs_diff": float((pa - pb).abs().max()), "answer": label}
    raise ValueError(kind)


def roundtrip_check(name: str, kind: str, a, b, tol: float) -> dict:
    diff = answer_diff(kind, a, b, tol)
    return check(name, diff["same"] and diff["max_abs_diff"] <= tol, {**diff, "tol": tol})


def states_equal(m1: torch.nn.Module, m2: torch.nn.Module) -> bool:
    s1, s2 = m1.state_dict(), m2.state_dict()
    return s1.keys() == s2.keys() and all(torch.equal(s1[k].cpu(), s2[k].cpu()) for k in s1)


# ----------------------------------------------------------------------------------------------- part 1: the plan

def run_plan(learn, probe: Probe, s: dict, out: Path, name: str, lrs, moms=(0.95, 0.85)) -> dict:
    """lr_find (weights restored after), then freeze + fit_one_cycle, unfreeze + fit_one_cycle."""
    learn.times = {}
    before = copy.deepcopy(learn.model.state_dict())
    probe.phase = "lr_find"
    with timing(learn.times, "lr_find", learn.device):
        learn.lr_find(start_lr=1e-5, end_lr=1.0, num_it=s["finder_iters"])
    finder = {"points": len(learn.recorder.lrs), "first_loss": learn.recorder.losses[0] if learn.recorder.losses
              else None, "restored": all(torch.equal(v, learn.model.state_dict()[k]) for k, v in before.items())}
    try:
        finder["suggestion"] = learn.recorder.plot(out / f"{name}_lr_find.png", skip_start=1, skip_end=1)
    except ValueError as e:  # too few points at tiny sizes: the plot without a suggestion
        finder["suggestion"] = f"none: {e}"
        learn.recorder.plot(out / f"{name}_lr_find.png", skip_start=0, skip_end=0, suggestion=False)
    learn.rows = []
    for stage, (epochs, lr) in enumerate(zip(s["epochs"], lrs, strict=True), 1):
        probe.phase = f"stage{stage}"
        if stage == 1:
            learn.freeze()
        else:
            learn.unfreeze()
        with timing(learn.times, probe.phase, learn.device):
            learn.fit_one_cycle(epochs, lr, moms=moms)
        learn.rows += [dict(r) for r in learn.recorder.epoch_rows]
    return finder


def finder_check(finder: dict) -> dict:
    ok = finder["points"] > 0 and finder["first_loss"] is not None and math.isfinite(finder["first_loss"])
    return check("lr_find", ok and finder["restored"], finder)


def vision_roundtrip(learn, rebuild, item, kind: str, device: torch.device, work: Path, name: str) -> list[dict]:
    """save/load into a fresh learner, export/load_learner on the device and on the CPU: the same answer."""
    tight, loose = (2e-3, 5e-2) if device.type == "cuda" else (1e-4, 1e-4)
    answer = learn.predict(item)
    learn.save(f"gpu-check-{name}")
    fresh = rebuild()
    fresh.load(f"gpu-check-{name}")
    checks = [check("save_load", states_equal(learn.model, fresh.model), None),
              roundtrip_check("save_load_predict", kind, answer, fresh.predict(item), tight)]
    export = learn.export(work / "exports" / name)
    here = load_learner(export, device=device)
    checks.append(roundtrip_check("export_load_learner_predict", kind, answer, here.predict(item), tight))
    on_cpu = load_learner(export, device="cpu")
    checks.append(roundtrip_check("export_on_cpu_predict", kind, answer, on_cpu.predict(item), loose))
    return checks


def workflow_result(learn, probe, device, s: dict, finder: dict, extra: list[dict], vision: bool = True,
                    gate_falling: bool = True) -> dict:
    """Every check of one workflow; the one-batch overfit runs last (it trains the model further)."""
    loss, figures = loss_checks(learn, probe, gate_falling)
    with timing(learn.times, "overfit", learn.device):
        extra = [*extra, overfit_check(learn, probe, s["overfit_steps"], s.get("overfit_lr", 1e-3))]
    figures["times_s"] = learn.times
    checks = amp_checks(learn, probe, device, vision)
    probe.handle.remove()
    return {"checks": [finder_check(finder), *checks, *loss, *extra], "figures": figures,
            "forwards": {"train": probe.train_obs, "eval": probe.eval_obs}}


# ----------------------------------------------------------------------------------------------- part 1: workflows

def _wf_vision(name: str, kind: str, device, s, work, out, workers, synth_args: dict, cfg_extra: dict,
               unfrozen_div: tuple[float, float], **result_kw) -> dict:
    """One image workflow: generate its data, build the task's learner, run the plan, check the round trips."""
    import importlib

    task = importlib.import_module(f"raylessons.tasks.{name}")
    seed_everything(0)
    dataset = "biwi" if name == "head_pose" else name
    root = synth(dataset, work / "data" / dataset, size=s["image_size"], seed=0, **synth_args)
    cfg = task.Config(data=str(root), size=s["size"], bs=s["bs"], arch=s["arch"], num_workers=workers, **cfg_extra)
    src = task.build_source(cfg)
    data = task.build_data(cfg, src=src)
    learn = task.build_learner(data, cfg, device=device)
    probe = Probe(learn)
    lr = s["lr"]
    finder = run_plan(learn, probe, s, out, name, [slice(lr), slice(lr / unfrozen_div[0], lr / unfrozen_div[1])])
    with timing(learn.times, "roundtrip", device):
        trip = vision_roundtrip(learn, lambda: task.build_learner(data, cfg, device=device), src.valid.items[0],
                                kind, device, work, name)
    return workflow_result(learn, probe, device, s, finder, trip, **result_kw)


def wf_planet(device, s, work, out, workers) -> dict:
    return _wf_vision("planet", "multi_category", device, s, work, out, workers, {"n": s["n"]}, {}, (100, 5))


def wf_camvid(device, s, work, out, workers) -> dict:
    return _wf_vision("camvid", "segmentation", device, s, work, out, workers, {"n": s["n"]}, {}, (400, 4))


def wf_head_pose(device, s, work, out, workers) -> dict:
    return _wf_vision("head_pose", "points", device, s, work, out, workers,
                      {"persons": s["persons"], "frames": s["frames"]},
                      {"ps": 0.0, "tfms": {"max_warp": 0.0, "max_rotate": 0.0}}, (100, 5),
                      gate_falling=s["gate_falling"])


def lm_answer(learn, text: str):
    """(next token, its id, next-token probabilities) of a language model: the greedy decoded answer.

    Over the tokens that occur once in the vocab: the padding tokens ('xxfake', repeated) all take one row when
    weights are mapped by token (`pretrained=`), which shifts the softmax of the full vocab slightly."""
    from collections import Counter

    from raylessons.data.tokenize import Tokenizer

    vocab = learn.data.vocab
    counts = Counter(vocab.itos)
    unique = torch.tensor([counts[t] == 1 for t in vocab.itos])
    ids = torch.tensor([vocab.numericalize(Tokenizer().process_text(text))], device=learn.device)
    model = learn.model.eval()
    model.reset()
    with torch.no_grad():
        logits = model(ids)[0, -1].float().cpu()
    model.reset()
    probs = torch.softmax(logits.masked_fill(~unique, -math.inf), dim=-1)
    idx = int(probs.argmax())
    return vocab.itos[idx], idx, probs


def lm_roundtrip(learn, rebuild_cpu, rebuild, device, work: Path) -> tuple[list[dict], Path, list[str]]:
    """save/load on the device; export, read back on the CPU as `pretrained=` (the supported path for LMs)."""
    tight, loose = (2e-3, 5e-2) if device.type == "cuda" else (1e-4, 1e-4)
    prompt = "the movie was"
    answer = lm_answer(learn, prompt)
    sampled = learn.predict(prompt, n_words=5, seed=0)
    learn.save("gpu-check-imdb-lm")
    fresh = rebuild()
    fresh.load("gpu-check-imdb-lm")
    checks = [check("save_load", states_equal(learn.model, fresh.model), None),
              check("save_load_predict", fresh.predict(prompt, n_words=5, seed=0) == sampled, sampled),
              roundtrip_check("save_load_next_token", "lm", answer, lm_answer(fresh, prompt), tight)]
    export = learn.export(work / "exports" / "imdb_lm")
    checks.append(roundtrip_check("export_on_cpu_next_token", "lm", answer, lm_answer(rebuild_cpu(export), prompt),
                                  loose))
    notes = []
    try:  # load_learner is the classifier's path; an LM export may not load that way (noted, not a check)
        load_learner(export, device="cpu")
    except Exception as e:  # noqa: BLE001
        notes.append(f"load_learner(LM export) fails: {type(e).__name__}: {e}")
    return checks, export, notes


def text_roundtrip(learn, rebuild, text: str, device, work: Path) -> list[dict]:
    tight, loose = (2e-3, 5e-2) if device.type == "cuda" else (1e-4, 1e-4)
    answer = learn.predict(text)
    learn.save("gpu-check-imdb-clas")
    fresh = rebuild()
    fresh.load("gpu-check-imdb-clas")
    checks = [check("save_load", states_equal(learn.model, fresh.model), None),
              roundtrip_check("save_load_predict", "category", answer, fresh.predict(text), tight)]
    export = learn.export(work / "exports" / "imdb_clas")
    checks.append(roundtrip_check("export_load_learner_predict", "category", answer,
                                  load_learner(export, device=device).predict(text), tight))
    checks.append(roundtrip_check("export_on_cpu_predict", "category", answer,
                                  load_learner(export, device="cpu").predict(text), loose))
    return checks


def wf_imdb(device, s, work, out, workers) -> dict:
    """The LM fine-tuned on every review, then the classifier on its encoder: two workflow results."""
    try:  # raylessons' tokenizer is spacy.blank("en"); the GPU machine may lack spaCy
        import spacy  # noqa: F401
    except ImportError:
        return {"skipped": "spacy not installed"}
    from raylessons.tasks import imdb_clas, imdb_lm

    seed_everything(0)
    root = synth("imdb", work / "data" / "imdb", n_train=s["n_train"], n_test=s["n_test"], n_unsup=s["n_unsup"],
                 n_sample=4, seed=0)
    lm_cfg = imdb_lm.Config(data=str(root), bs=s["lm_bs"], bptt=s["bptt"], min_freq=2, model=s["model"])
    data_lm = imdb_lm.build_data(lm_cfg)
    lm = imdb_lm.build_learner(data_lm, lm_cfg, device=device)
    probe = Probe(lm)
    finder = run_plan(lm, probe, {**s, "epochs": s["lm_epochs"]}, out, "imdb_lm", [1e-2, 3e-3], moms=(0.8, 0.7))

    def cpu_lm(export):
        return imdb_lm.build_learner(data_lm, imdb_lm.Config(**{**vars(lm_cfg), "pretrained": str(export)}),
                                     device="cpu")

    with timing(lm.times, "roundtrip", device):
        trip, export, notes = lm_roundtrip(lm, cpu_lm, lambda: imdb_lm.build_learner(data_lm, lm_cfg, device=device),
                                           device, work)
    # dropout everywhere in an AWD-LSTM: the one-batch overfit needs a larger rate to show in a few steps
    result = {"imdb_lm": {**workflow_result(lm, probe, device, {**s, "overfit_lr": 1e-2}, finder, trip,
                                            vision=False), "notes": notes}}

    seed_everything(0)
    clas_cfg = imdb_clas.Config(data=str(root), lm_export=str(export), bs=s["clas_bs"], drop_mult=0.1)
    data_clas = imdb_clas.build_data(clas_cfg)
    clas = imdb_clas.build_learner(data_clas, clas_cfg, device=device)
    probe = Probe(clas)
    finder = run_plan(clas, probe, {**s, "epochs": s["clas_epochs"]}, out, "imdb_clas", [2e-2, 1e-2],
                      moms=(0.8, 0.7))
    text = sorted((root / "test" / "pos").glob("*.txt"))[0].read_text(encoding="utf-8")
    with timing(clas.times, "roundtrip", device):
        trip = text_roundtrip(clas, lambda: imdb_clas.build_learner(data_clas, clas_cfg, device=device), text,
                              device, work)
    result["imdb_clas"] = workflow_result(clas, probe, device, s, finder, trip, vision=False)
    return result


# ----------------------------------------------------------------------------------------------- part 2: speed

class _Repeat:
    """A loader yielding the same (on-device) batch `n` times."""

    def __init__(self, batch, n: int):
        self.batch, self.n = batch, n

    def __iter__(self):
        return (self.batch for _ in range(self.n))

    def __len__(self) -> int:
        return self.n


class SyntheticData(DeviceBatch):
    """A DataBunch stand-in: one random batch already on the device, repeated; no validation."""

    c, path, size = 17, Path("."), None

    def __init__(self, xb, yb):
        self.xb, self.yb = xb, yb
        self.steps(1)

    def steps(self, n: int) -> None:
        self.train_dl, self.valid_dl = _Repeat((self.xb, self.yb), n), _Repeat((self.xb, self.yb), 0)

    @property
    def loss_func(self):
        return BCEWithLogitsFlat()


def synthetic_batch(device, bs: int, size: int):
    g = torch.Generator().manual_seed(0)
    xb = torch.randn(bs, 3, size, size, generator=g)
    yb = (torch.rand(bs, 17, generator=g) > 0.7).float()
    xb = xb.to(device).contiguous(memory_format=torch.channels_last)
    return xb, yb.to(device)


def plain_step(device, arch: str, xb, yb, dtype, channels_last_model: bool = True):
    """The reference loop: autocast forward, (scaled) backward, AdamW step, zero_grad."""
    seed_everything(0)
    model = create_cnn_model(arch, 17).to(device).train()
    if channels_last_model:
        model = model.to(memory_format=torch.channels_last)
    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    loss_func = BCEWithLogitsFlat()

    def step(n: int) -> None:
        for _ in range(n):
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = loss_func(model(xb), yb)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
    return step, model


def learner_step(device, arch: str, xb, yb, fp32: bool = False):
    """Learner.fit over the same batch (no validation, no printing): its own loop and precision mode."""
    seed_everything(0)
    data = SyntheticData(xb, yb)
    learn = cnn_learner(data, arch, pretrained=False, device=device)
    learn.validate_each_epoch, learn.recorder.verbose = False, False
    if fp32:
        learn.to_fp32()

    def step(n: int) -> None:
        data.steps(n)
        learn.fit(1, 1e-3)
    return step, learn


def timed(step, n: int, device) -> float:
    sync(device)
    t = time.perf_counter()
    step(n)
    sync(device)
    return time.perf_counter() - t


def count_flops(device, arch: str, xb, yb) -> float:
    """FLOPs of one forward + backward of the model on one batch (torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_cnn_model(arch, 17).to(device).train()
    with FlopCounterMode(display=False) as counter:
        BCEWithLogitsFlat()(model(xb), yb).backward()
    return float(counter.get_total_flops())


def peak_flops(device, override: float | None) -> tuple[float | None, str]:
    if override:
        return override * 1e12, f"--peak-tflops {override}"
    if device.type != "cuda":
        return None, "cpu: no GPU peak"
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12, f"{name}: {tflops} TFLOP/s dense bf16 (NVIDIA spec)"
    return None, f"{name}: peak unknown (pass --peak-tflops)"


def bench_modes(device, s: dict) -> dict:
    """name -> step function; plain loops channels_last end to end, the Learner in its fp16 + GradScaler mode
    (and after to_fp32()); plain fp16 with NCHW weights is what the Learner feeds (only inputs channels_last)."""
    xb, yb = synthetic_batch(device, s["bs"], s["size"])
    arch = s["arch"]
    modes = {"plain_fp16": plain_step(device, arch, xb, yb, torch.float16)[0],
             "plain_bf16": plain_step(device, arch, xb, yb, torch.bfloat16)[0],
             "plain_fp32": plain_step(device, arch, xb, yb, None)[0]}
    if device.type == "cuda":  # the Learner's layout: channels_last inputs, the model's weights left NCHW
        modes["plain_fp16_nchw_weights"] = plain_step(device, arch, xb, yb, torch.float16, False)[0]
    modes["learner"], learn = learner_step(device, arch, xb, yb)
    modes["learner_to_fp32"], learn32 = learner_step(device, arch, xb, yb, fp32=True)
    return {"modes": modes, "learners": (learn, learn32), "batch": (xb, yb)}


def part_bench(device, s: dict, peak_override: float | None) -> dict:
    """Images/s of each mode: warm-up excluded, modes alternated over rounds, median seconds per step."""
    setup = bench_modes(device, s)
    modes, (learn, learn32) = setup["modes"], setup["learners"]
    for step in modes.values():
        step(s["warmup"])
    per_step = {k: [] for k in modes}
    for _ in range(s["rounds"]):
        for name, step in modes.items():
            per_step[name].append(timed(step, s["steps"], device) / s["steps"])
    img_s = {k: s["bs"] / statistics.median(v) for k, v in per_step.items()}
    learner_mode = "plain_fp16" if learn.mixed_precision else "plain_fp32"
    flops = count_flops(device, s["arch"], *setup["batch"])
    peak, peak_note = peak_flops(device, peak_override)
    figures = {
        "label": f"{device.type}{' (CPU figures: code path only)' if device.type == 'cpu' else ''}",
        "arch": s["arch"], "size": s["size"], "bs": s["bs"], "steps": s["steps"], "rounds": s["rounds"],
        "warmup_steps": s["warmup"], "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "images_per_s": img_s,
        "learner_precision": "fp16 autocast + GradScaler" if learn.mixed_precision else "fp32",
        "bf16_note": "the Learner has no bf16 option (autocast fp16 + GradScaler on CUDA): bf16 is measured on "
                     "the plain loop only",
        "ratio_learner_over_plain": img_s["learner"] / img_s[learner_mode], "ratio_vs": learner_mode,
        "ratio_learner_over_plain_nchw_weights": (img_s["learner"] / img_s["plain_fp16_nchw_weights"]
                                                  if "plain_fp16_nchw_weights" in img_s else None),
        "ratio_learner_to_fp32_over_plain_fp32": img_s["learner_to_fp32"] / img_s["plain_fp32"],
        "target_ratio": TARGET_RATIO,
        "flops_per_step": flops, "flops_per_image": flops / s["bs"], "peak_flops": peak, "peak_note": peak_note,
        "fraction_of_peak": ({k: v / s["bs"] * flops / peak for k, v in img_s.items()} if peak else None),
        "to_fp32_scaler_still_enabled": learn32._scaler.is_enabled(),
    }
    checks = [check("bench_ran", finite(img_s.values()), img_s),
              check("to_fp32_turns_amp_off", not learn32.mixed_precision, None)]
    if device.type == "cuda":
        checks.append(check("learner_vs_plain_ratio", figures["ratio_learner_over_plain"] >= TARGET_RATIO,
                            {"ratio": figures["ratio_learner_over_plain"], "vs": learner_mode}))
    return {"figures": figures, "checks": checks}


def part_loader(device, s: dict, work: Path, step_rate) -> dict:
    """The project's DataBunch (planet, lesson transforms) with num_workers > 0: images/s to the device, against
    the learner's images/s on on-device batches (`step_rate()`, from part 2; None when it did not run)."""
    from raylessons.tasks import planet

    step_img_s = step_rate()
    root = synth("planet", work / "data" / "planet-loader", n=s["n"], size=s["size"], seed=1)
    rows = []
    for workers in s["workers"]:
        workers = min(workers, os.cpu_count() or 1)
        if any(r["num_workers"] == workers for r in rows):
            continue
        cfg = planet.Config(data=str(root), size=s["size"], bs=s["bs"], num_workers=workers)
        data = planet.build_data(cfg)
        times, n = [], 0
        for _ in range(s["epochs"]):
            sync(device)
            t = time.perf_counter()
            for xb, yb in data.train_dl:
                xb, yb = data.to_device(xb, yb, device, device.type == "cuda")
                n = len(data.train_dl) * data.bs
            sync(device)
            times.append(time.perf_counter() - t)
        steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
        rows.append({"num_workers": workers, "pin_memory": data.train_dl.pin_memory,
                     "first_epoch_s": times[0], "images_per_s": n / steady})
        del data
    best = max(r["images_per_s"] for r in rows)
    figures = {"label": device.type, "size": s["size"], "bs": s["bs"], "images": s["n"], "runs": rows,
               "cpu_count": os.cpu_count(), "learner_step_images_per_s": step_img_s,
               "starves": (best < step_img_s) if step_img_s else None}
    pinned = all(r["pin_memory"] == (device.type == "cuda") for r in rows)
    return {"figures": figures, "checks": [check("loader_ran", finite(r["images_per_s"] for r in rows), rows),
                                           check("pin_memory_on_cuda_only", pinned, None)]}


# ----------------------------------------------------------------------------------------------- part 3: memory

def part_mem(device) -> dict:
    gc.collect()
    before = gpu_mem()
    reserved = torch.cuda.memory_reserved() / 1024 ** 3 if device.type == "cuda" else 0.0
    returned = empty_cache()
    after = gpu_mem()
    reserved_after = torch.cuda.memory_reserved() / 1024 ** 3 if device.type == "cuda" else 0.0
    figures = {"gpu_mem_before": before, "gpu_mem_after": after, "empty_cache_returned": repr(returned),
               "torch_reserved_gib_before": reserved, "torch_reserved_gib_after": reserved_after,
               "default_device": str(default_device())}
    if device.type == "cuda":
        ok = before["total"] > 0 and after["free"] >= before["free"] and reserved_after <= reserved
    else:
        ok = before == after == {"free": 0.0, "used": 0.0, "total": 0.0}
    return {"figures": figures, "checks": [check("gpu_mem_empty_cache", ok, figures)]}


# ----------------------------------------------------------------------------------------------- driver

def run_part(results: dict, key: str, fn, *args) -> None:
    """Run one part, record its result (or its error as a failed check) and its time; print a line."""
    t = time.perf_counter()
    print(f"\n=== {key} " + "=" * max(0, 70 - len(key)), flush=True)
    try:
        out = fn(*args)
    except Exception as e:  # noqa: BLE001  (one failing part must not hide the others on a one-shot GPU run)
        out = {"checks": [check("ran", False, f"{type(e).__name__}: {e}")],
               "traceback": traceback.format_exc()[-4000:]}
        print(out["traceback"], flush=True)
    nested = key == "imdb" and "skipped" not in out and "checks" not in out
    results["parts"].update(out if nested else {key: out})
    gc.collect()  # loaders' worker processes and the part's models go before the next part
    results["times_s"][key] = time.perf_counter() - t
    print(f"--- {key}: {results['times_s'][key]:.1f} s", flush=True)


def summary(results: dict) -> list[str]:
    lines = []
    for key, part in results["parts"].items():
        if "skipped" in part:
            lines.append(f"{key:<10} skipped: {part['skipped']}")
            continue
        failed = [c["name"] for c in part.get("checks", []) if not c["ok"]]
        n = len(part.get("checks", []))
        lines.append(f"{key:<10} {n - len(failed)}/{n} checks passed" + (f"; FAILED: {', '.join(failed)}"
                                                                         if failed else ""))
        for note in part.get("notes", []):
            lines.append(f"{'':<10} note: {note}")
    bench = results["parts"].get("bench", {}).get("figures")
    if bench:
        lines.append(f"bench ({bench['label']}; {bench['arch']} {bench['size']} px bs {bench['bs']}): images/s "
                     + ", ".join(f"{k} {v:.0f}" for k, v in bench["images_per_s"].items()))
        nchw = bench["ratio_learner_over_plain_nchw_weights"]
        lines.append(f"  learner/{bench['ratio_vs']} {bench['ratio_learner_over_plain']:.3f} (target >= "
                     f"{TARGET_RATIO})" + (f"; learner/plain_fp16_nchw_weights {nchw:.3f}" if nchw else "")
                     + f"; {bench['flops_per_image'] / 1e9:.2f} GFLOP/image (fwd+bwd); {bench['peak_note']}")
        if bench["fraction_of_peak"]:
            lines.append("  fraction of peak: " + ", ".join(f"{k} {v:.1%}" for k, v in
                                                            bench["fraction_of_peak"].items()))
    loader = results["parts"].get("loader", {}).get("figures")
    if loader:
        lines.append("loader images/s: " + ", ".join(f"{r['num_workers']} workers {r['images_per_s']:.0f}"
                                                     for r in loader["runs"])
                     + f"; learner step {loader['learner_step_images_per_s'] or 0:.0f}; starves: {loader['starves']}")
    mem = results["parts"].get("mem", {}).get("figures")
    if mem:
        lines.append(f"gpu_mem before {mem['gpu_mem_before']} after empty_cache {mem['gpu_mem_after']}")
    lines.append("time per part (s): " + ", ".join(f"{k} {v:.1f}" for k, v in results["times_s"].items()))
    return lines


def all_checks(results: dict) -> list[dict]:
    return [c for part in results["parts"].values() for c in part.get("checks", [])] + results["checks"]


def write(results: dict, out: Path) -> Path:
    path = out / "gpu_check.json"
    path.write_text(json.dumps(jsonable(results), indent=1))
    return path


WORKFLOWS = {"planet": wf_planet, "camvid": wf_camvid, "head_pose": wf_head_pose, "imdb": wf_imdb}


def _learner_img_s(results: dict) -> float | None:
    return results["parts"].get("bench", {}).get("figures", {}).get("images_per_s", {}).get("learner")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny sizes, 1 epoch a stage (the CPU test)")
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out",
                   help="where gpu_check.json goes (default $OUT, else gpu-check-out)")
    p.add_argument("--skip", nargs="*", default=[], choices=PARTS, help="parts to leave out")
    p.add_argument("--workers", type=int, default=None,
                   help="num_workers of the workflows' loaders (default 0 with --tiny, else min(8, CPUs))")
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not an H100/H200")
    p.add_argument("--budget-s", type=float, default=START_BY_S,
                   help="parts that would start after this many seconds are skipped (default %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default 1 with --device cpu --tiny: a shared CPU's oversubscribed threads "
                        "cost 10x, and one thread gives the same numbers on every machine; else torch's default)")
    p.add_argument("--keep-data", action="store_true", help="keep the generated data and exports (in --out)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    sizes = SIZES["tiny" if args.tiny else "full"]
    results = {"device": str(device), "tiny": args.tiny, "torch": torch.__version__,
               "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               "cpu_count": os.cpu_count(), "sizes": sizes, "parts": {}, "times_s": {}, "checks": []}
    if device.type == "cuda" and not torch.cuda.is_available():
        results["checks"].append(check("cuda_available", False, "--device cuda but torch sees no CUDA device"))
        print(f"no CUDA device; {write(results, out)}")
        return 2
    threads = args.threads or (1 if device.type == "cpu" and args.tiny else None)
    if threads:
        torch.set_num_threads(threads)
    results["torch_threads"] = torch.get_num_threads()
    workers = args.workers if args.workers is not None else (0 if args.tiny else min(8, os.cpu_count() or 1))
    work = out / "work" if args.keep_data else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    # the timing first (the figures the run exists for, whatever happens later), then the workflows, the loader
    # against the step rate, and the memory helpers last (after everything has allocated)
    plan = [("bench", part_bench, (device, sizes["bench"], args.peak_tflops)),
            *((key, fn, (device, sizes[key], work, out, workers)) for key, fn in WORKFLOWS.items()),
            ("loader", part_loader, (device, sizes["loader"], work, lambda: _learner_img_s(results))),
            ("mem", part_mem, (device,))]
    try:
        for key, fn, fn_args in plan:
            if key in args.skip:
                continue
            if time.perf_counter() - t0 > args.budget_s:
                results["parts"][key] = {"skipped": f"time budget: parts start until {args.budget_s:.0f} s"}
                continue
            run_part(results, key, fn, *fn_args)
            write(results, out)
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - t0
    results["total_s"] = total
    results["ray_imported"] = "ray" in sys.modules
    results["spacy_imported"] = "spacy" in sys.modules
    results["checks"].append(check("ray_not_imported", not results["ray_imported"], None))
    if device.type == "cuda" and not args.tiny:
        results["checks"].append(check("within_budget", total <= BUDGET_S, {"total_s": total, "budget_s": BUDGET_S}))
    failed = [c for c in all_checks(results) if not c["ok"]]
    results["ok"] = not failed
    path = write(results, out)
    print("\n=== summary " + "=" * 62)
    print("\n".join(summary(results)))
    print(f"total {total:.1f} s; {'ALL CHECKS PASSED' if not failed else f'{len(failed)} FAILED'}; {path}")
    assert "ray" not in sys.modules, "the GPU check imported ray"
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
