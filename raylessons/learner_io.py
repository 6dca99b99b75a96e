"""The Learner's saving, loading, exporting and predicting (methods, attached in learner.py): state dicts and JSON
only, nothing pickled."""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path

import torch

from .export_meta import EXPORT_META, EXPORT_MODEL, check_thresholds
from .inference import Predictor
from .limits import DEFAULT_THRESHOLD
from .text_predict import TextPredictor

__all__ = ["save", "load", "export", "predict", "get_preds", "show_results"]


def _model_file(learn, name: str | Path) -> Path:
    name = Path(name)
    if name.suffix != ".pth":
        name = name.with_suffix(name.suffix + ".pth") if name.suffix else name.with_suffix(".pth")
    return name if name.is_absolute() else learn.path / learn.model_dir / name


def save(self, name: str | Path, with_opt: bool = True) -> Path:
    """Write `path/models/<name>.pth` holding the model (and optimizer) state dicts."""
    file = _model_file(self, name)
    file.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": self.model.state_dict()}
    if with_opt and self.opt is not None:
        state["opt"] = self.opt.state_dict()
    tmp = file.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(file)  # atomic: a crash never leaves a half-written checkpoint under the real name
    return file


def load(self, name: str | Path, with_opt: bool = True, strict: bool = True):
    """Load `path/models/<name>.pth` (weights_only: no arbitrary objects are unpickled)."""
    file = _model_file(self, name)
    if not file.is_file():
        raise FileNotFoundError(f"no saved model at {file}")
    state = torch.load(file, map_location=self.device, weights_only=True)
    self.model.load_state_dict(state["model"], strict=strict)
    if with_opt and "opt" in state:
        if self.opt is None:
            self.create_opt()
        try:
            self.opt.load_state_dict(state["opt"])
        except ValueError:  # fastai is tolerant too: a changed group layout keeps fresh optimizer state
            self.create_opt()
    return self


def export(self, dest: str | Path | None = None, extra: dict | None = None) -> Path:
    """Write an export directory: model.pt (state dict) + meta.json (everything inference needs)."""
    dest = Path(dest) if dest is not None else self.path / "export"
    dest.mkdir(parents=True, exist_ok=True)
    meta = {"format": 1, "model": self.model_meta, **self.data.export_meta(),
            "metrics": _last_metrics(self), "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat()}
    meta["task"] = self.model_meta.get("task", meta["label_kind"])
    meta["arch"] = self.model_meta.get("arch")
    meta.update(getattr(self, "export_extra", {}))
    meta.update(extra or {})
    check_thresholds(meta, dest)  # before anything is written: a bad threshold never reaches a served export
    state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
    torch.save(state, dest / (EXPORT_MODEL + ".tmp"))
    (dest / (EXPORT_META + ".tmp")).write_text(json.dumps(meta, indent=2))
    (dest / (EXPORT_MODEL + ".tmp")).replace(dest / EXPORT_MODEL)
    (dest / (EXPORT_META + ".tmp")).replace(dest / EXPORT_META)
    return dest


def load_weights(learn, export: str | Path):
    """`learn` with the model weights of an export directory (a model trained elsewhere: a worker, a Tune trial),
    loaded with weights_only."""
    state = torch.load(Path(export) / EXPORT_MODEL, map_location="cpu", weights_only=True)
    learn.model.load_state_dict(state)
    return learn


def _last_metrics(learn) -> dict:
    rows = learn.recorder.epoch_rows
    if not rows:
        return {}
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rows[-1].items()}


def predict(self, item, **kwargs):
    """Predict one item (path, PIL image, uint8 tensor or text): the task's decoded answer."""
    predictor = getattr(self, "_predictor", None)
    if predictor is None or predictor.model is not self.model:
        if self.model_meta.get("kind") == "awd_lstm_clas":
            predictor = self._predictor = TextPredictor.from_learner(self)
        else:
            predictor = self._predictor = Predictor.from_learner(self)
    return predictor.predict(item, **kwargs)


@torch.no_grad()
def get_preds(self, dl=None, activ: bool = True, with_loss: bool = False):
    """(predictions, targets) over a loader (default valid), after the loss's activation; with `with_loss`,
    (predictions, targets, losses): each item's loss from the same forward pass (fastai's `with_loss=True`)."""
    dl = dl if dl is not None else self.data.valid_dl
    self.model.eval()
    if hasattr(self.model, "reset"):  # an RNN reads the set from a fresh state, as in validate
        self.model.reset()
    preds, targs, losses = [], [], []
    for xb, yb in dl:
        xb, yb = self.data.to_device(xb, yb, self.device, self.channels_last)
        out = self.model(xb).float()
        preds.append(self.data.label.activation(out) if activ else out)
        targs.append(yb)
        if with_loss:  # the loss of each item alone: the flattened losses average over what one item holds
            losses.append(torch.stack([self.loss_func(out[i:i + 1], yb[i:i + 1]).float() for i in range(len(yb))]))
    result = (torch.cat(preds).cpu(), torch.cat(targs).cpu())
    return (*result, torch.cat(losses).cpu()) if with_loss else result


def show_results(self, rows: int = 3, path: str | Path = "results.png", ds_type: str = "valid") -> Path:
    """fastai's `learn.show_results`: the first batch of the valid (or train) set with targets and predictions,
    drawn by the label kind (tags, masks, points, texts), written as a PNG."""
    if ds_type not in ("valid", "train"):
        raise ValueError(f"ds_type must be 'valid' or 'train', got {ds_type!r}")
    xb, yb = self.data.one_batch(train=ds_type == "train")
    preds, _ = self.get_preds([(xb, yb)])
    threshold = self.export_extra.get("threshold", DEFAULT_THRESHOLD)
    return self.data.show_results(xb, yb, preds, rows, path, threshold)
