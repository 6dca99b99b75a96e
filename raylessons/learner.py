"""Learner: a fastai-v1-style training loop over plain PyTorch, usable alone or inside Ray."""
from __future__ import annotations

import functools
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from . import learner_io, tta
from .callbacks import Callback, CancelFitException, LRFinder, OneCycleScheduler, TensorBoardCallback
from .callbacks.tensorboard import default_log_dir
from .device import default_device
from .inference import InferenceData, load_export
from .metrics import metric_name
from .recorder import Recorder
from .schedule import DEFAULT_LR, lr_range
from .summary import summary as _summary

__all__ = ["Learner", "AdamW", "load_learner"]

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm)

# fastai v1's AdamW: Adam with betas (0.9, 0.99); weight decay is the decoupled ("true") kind
AdamW = functools.partial(torch.optim.AdamW, betas=(0.9, 0.99), eps=1e-8)


class Learner:
    """Data + model + loss + optimizer, with layer groups, freezing and fastai's fit policies."""

    def __init__(self, data, model: nn.Module, loss_func: Callable | None = None,
                 metrics: Sequence[Callable] = (), opt_func: Callable = AdamW, wd: float = 1e-2,
                 train_bn: bool = True, splitter: Callable[[nn.Module], list[nn.Module]] | None = None,
                 path: str | Path | None = None, model_dir: str = "models",
                 callbacks: Iterable[Callback] = (), device: torch.device | str | None = None,
                 model_meta: dict | None = None):
        self.data, self.loss_func = data, loss_func or data.loss_func
        self.metrics = [metrics] if callable(metrics) else list(metrics)  # fastai takes one function too
        self.opt_func, self.wd, self.train_bn = opt_func, wd, train_bn
        self.path = Path(path if path is not None else getattr(data, "path", "."))
        self.model_dir, self.model_meta = model_dir, dict(model_meta or {})
        self.export_extra: dict = {}  # task-level metadata for exports (e.g. the decision threshold)
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device)
        self.splitter = splitter
        self.layer_groups = list(splitter(model)) if splitter else [model]
        self.recorder = Recorder()
        self.callbacks: list[Callback] = [self.recorder, *callbacks]
        self.opt: torch.optim.Optimizer | None = None
        self.mixed_precision = self.device.type == "cuda"
        self.channels_last = self.device.type == "cuda"
        self.wrap_model: Callable[[nn.Module], nn.Module] | None = None  # DDP under Ray Train
        self.is_main_process, self.validate_each_epoch = True, True
        self.training, self.epoch, self.n_epochs = False, 0, 0
        self.last_validation = None
        self.current_lrs, self.current_mom = np.zeros(len(self.layer_groups)), 0.9
        self._fwd_model, self._fwd_key, self._extra_cbs, self._active_cbs = None, None, [], []
        self._scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")

    # ----- layer groups and freezing
    def freeze_to(self, n: int) -> None:
        """Freeze the layer groups before `n` (negative counts from the end); BatchNorm stays trainable."""
        if not -len(self.layer_groups) <= n <= len(self.layer_groups):
            raise ValueError(f"freeze_to({n}): this model has {len(self.layer_groups)} layer groups")
        for group in self.layer_groups[:n]:
            for module in group.modules():
                keep = self.train_bn and isinstance(module, _BN_TYPES)
                for p in module.parameters(recurse=False):
                    p.requires_grad_(keep)
        for group in self.layer_groups[n:]:
            for p in group.parameters():
                p.requires_grad_(True)
        self.opt = None  # fastai re-creates the optimizer on every freeze change

    def freeze(self) -> None:
        """Train only the last layer group (and BatchNorm layers)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every layer group."""
        self.freeze_to(0)

    def trainable_counts(self) -> list[int]:
        """Number of trainable parameter tensors in each layer group."""
        return [sum(p.requires_grad for p in g.parameters()) for g in self.layer_groups]

    # ----- optimizer and hyper-parameters
    def create_opt(self, lr: float | np.ndarray = 1e-3, wd: float | None = None) -> None:
        """One optimizer parameter group per layer group, every group present from the start."""
        lrs = lr_range(lr, len(self.layer_groups)) if not np.isscalar(lr) else [lr] * len(self.layer_groups)
        wd = self.wd if wd is None else wd
        seen, groups = set(), []
        for group, glr in zip(self.layer_groups, lrs):
            params = [p for p in group.parameters() if id(p) not in seen]
            seen.update(id(p) for p in params)
            groups.append({"params": params, "lr": float(glr), "weight_decay": wd})
        self.opt = self.opt_func(groups)

    def set_hypers(self, lrs, mom: float | None = None) -> None:
        """Set each group's lr (scalar or per group) and Adam's beta1 (the momentum)."""
        lrs = np.broadcast_to(np.asarray(lrs, dtype=np.float64), (len(self.opt.param_groups),))
        for g, lr in zip(self.opt.param_groups, lrs):
            g["lr"] = float(lr)
            if mom is not None and "betas" in g:
                g["betas"] = (float(mom), g["betas"][1])
        self.current_lrs = np.array(lrs)
        self.current_mom = mom if mom is not None else self.opt.param_groups[0].get("betas", (0.9,))[0]

    def lr_range(self, lr) -> np.ndarray:
        """Per-group learning rates of a float, list or slice."""
        return lr_range(lr, len(self.layer_groups))

    # ----- the loop
    def __call__(self, event: str) -> None:
        for cb in self._active_cbs:
            cb(event, self)

    def fit(self, epochs: int, lr=DEFAULT_LR, wd: float | None = None,
            callbacks: Iterable[Callback] = (), start_epoch: int = 0) -> None:
        """Train for `epochs` epochs at a constant (per-group) lr unless a callback schedules it."""
        lrs = self.lr_range(lr)
        if self.opt is None or (wd is not None and wd != self.opt.param_groups[0]["weight_decay"]):
            self.create_opt(lrs, wd)
        self.set_hypers(lrs)
        self._extra_cbs, self.n_epochs = list(callbacks), epochs
        # sorted once per fit: the events fire several times per batch
        self._active_cbs = sorted(self.callbacks + self._extra_cbs, key=lambda c: c.order)
        self._fwd_model = self._forward_model()
        try:
            self("before_fit")
            for self.epoch in range(start_epoch, epochs):
                self("before_epoch")
                self._train_epoch()
                self.last_validation = self.validate() if self.validate_each_epoch else None
                self("after_epoch")
        except CancelFitException:
            pass
        finally:
            self.training = False
            self("after_fit")
            self._extra_cbs = []

    def _forward_model(self) -> nn.Module:
        """The model used for forward passes: re-wrapped (DDP) whenever the trainable set changed."""
        if self.wrap_model is None:
            return self.model
        key = tuple(p.requires_grad for p in self.model.parameters())
        if key != self._fwd_key:
            self._fwd_model, self._fwd_key = self.wrap_model(self.model), key
        return self._fwd_model

    def _train_epoch(self) -> None:
        self.model.train()
        self.training = True
        dl = self.data.train_dl
        if hasattr(getattr(dl, "sampler", None), "set_epoch"):
            dl.sampler.set_epoch(self.epoch)
        for xb, yb in dl:
            self.xb, self.yb = self.data.to_device(xb, yb, self.device, self.channels_last)
            self("before_batch")
            with self._autocast():
                self.pred = self._fwd_model(self.xb)
                self.loss = self.loss_func(self.pred, self.yb)
            self("after_loss")
            self._scaler.scale(self.loss).backward()
            self._scaler.step(self.opt)
            self._scaler.update()
            self.opt.zero_grad(set_to_none=True)
            self("after_batch")
        self.training = False
        self("after_train")

    def _autocast(self):
        if self.mixed_precision and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    @torch.no_grad()
    def validate(self, dl=None) -> tuple[float, list[float]]:
        """(valid loss, metrics) averaged over the samples, summed across DDP ranks when distributed."""
        dl = dl if dl is not None else self.data.valid_dl
        self.model.eval()
        if hasattr(self.model, "reset"):  # stateful (RNN) models read the validation set from a fresh state
            self.model.reset()
        totals = torch.zeros(1 + len(self.metrics), dtype=torch.float64)
        count = 0
        for xb, yb in dl:
            xb, yb = self.data.to_device(xb, yb, self.device, self.channels_last)
            with self._autocast():
                pred = self.model(xb)
                loss = self.loss_func(pred, yb)
            bs = yb.shape[0]
            vals = [loss] + [m(pred.float(), yb) for m in self.metrics]
            totals += torch.tensor([float(v) * bs for v in vals], dtype=torch.float64)
            count += bs
        totals, count = self._all_reduce(totals, count)
        if count == 0:
            return math.nan, [math.nan] * len(self.metrics)
        means = (totals / count).tolist()
        return means[0], means[1:]

    def _all_reduce(self, totals: torch.Tensor, count: int):
        dist = torch.distributed
        if self.wrap_model is None or not (dist.is_available() and dist.is_initialized()):
            return totals, count
        packed = torch.cat([totals, torch.tensor([count], dtype=torch.float64)])
        if dist.get_backend() == "nccl":
            packed = packed.to(self.device)
        dist.all_reduce(packed)
        packed = packed.cpu()
        return packed[:-1], int(packed[-1].item())

    @property
    def metric_names(self) -> list[str]:
        """Display names of the metrics, in order."""
        return [metric_name(m) for m in self.metrics]

    # ----- fastai's policies
    def fit_one_cycle(self, cyc_len: int, max_lr=DEFAULT_LR, moms: tuple[float, float] = (0.95, 0.85),
                      div_factor: float = 25.0, pct_start: float = 0.3, final_div: float | None = None,
                      wd: float | None = None, callbacks: Iterable[Callback] = (), start_epoch: int = 0) -> None:
        """One cycle of `cyc_len` epochs: cosine warm-up to max_lr then cosine annealing (fastai v1)."""
        lr_max = self.lr_range(max_lr)
        sched = OneCycleScheduler(lr_max, moms, div_factor, pct_start, final_div, start_epoch)
        self.fit(cyc_len, lr_max, wd=wd, callbacks=[sched, *callbacks], start_epoch=start_epoch)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100,
                stop_div: bool = True, wd: float | None = None) -> None:
        """Exponential lr sweep recording the smoothed loss; model and optimizer are restored after."""
        if self.opt is None:
            self.create_opt(start_lr, wd)
        epochs = int(np.ceil(num_it / len(self.data.train_dl)))
        self.fit(epochs, start_lr, wd=wd, callbacks=[LRFinder(start_lr, end_lr, num_it, stop_div)])

    def to_fp16(self) -> "Learner":
        """Mixed precision (autocast + gradient scaling) on CUDA; a no-op on the CPU."""
        self.mixed_precision = self.device.type == "cuda"
        self._scaler = torch.amp.GradScaler("cuda", enabled=self.mixed_precision)
        return self

    def to_fp32(self) -> "Learner":
        """Back to full precision (no autocast, no gradient scaling)."""
        self.mixed_precision = False
        self._scaler = torch.amp.GradScaler("cuda", enabled=False)
        return self

    def log_to_tensorboard(self, log_dir: str | Path | None = None) -> TensorBoardCallback:
        """Write every later fit (and lr_find) as TensorBoard event files in `log_dir` (default
        `path/runs/<local time>`; see `tensorboard --logdir <path>/runs`); replaces an earlier TensorBoard callback.
        Returns the callback (its `log_dir`); only the main process writes."""
        for cb in [c for c in self.callbacks if isinstance(c, TensorBoardCallback)]:
            cb.close()
            self.callbacks.remove(cb)
        cb = TensorBoardCallback(log_dir if log_dir is not None else default_log_dir(self.path))
        self.callbacks.append(cb)
        return cb

    # ----- persistence and inference (learner_io.py)
    save, load, export, predict = learner_io.save, learner_io.load, learner_io.export, learner_io.predict
    get_preds, show_results = learner_io.get_preds, learner_io.show_results

    # ----- fastai's summary and test-time augmentation (summary.py, tta.py)
    summary, TTA, tta_only = _summary, tta.TTA, tta.tta_only


def load_learner(dest: str | Path, device: str | torch.device | None = None) -> Learner:
    """A Learner ready for `predict`, rebuilt from an export directory (weights_only loading)."""
    model, splitter, meta = load_export(dest)
    data = InferenceData(meta, path=dest)
    learn = Learner(data, model, loss_func=data.loss_func, splitter=splitter, path=dest, device=device,
                    model_meta=meta["model"])
    learn.export_meta = meta
    return learn
