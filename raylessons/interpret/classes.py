"""Interpreting classifiers: single-label (images and texts) and multi-label (Planet's tags, per-tag thresholds)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.labels import CategoryLabel, MultiCategoryLabel
from ..data.show import show_table
from ..limits import DEFAULT_THRESHOLD
from ..metrics import fbeta
from ..plotting import pyplot, save_figure
from .core import Interpretation, confusion_counts

__all__ = ["ClassificationInterpretation", "MultiLabelInterpretation", "THRESHOLD_GRID"]

THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.02, 0.99, 0.01))  # the thresholds tried per tag


class ClassificationInterpretation(Interpretation):
    """One class per item (images or texts): top losses, the confusion matrix, the most confused pairs."""

    label_cls = CategoryLabel

    @property
    def pred_class(self) -> torch.Tensor:
        return self.preds.argmax(dim=1)

    def confusion_matrix(self) -> np.ndarray:
        """(C, C) counts of the valid set: row = actual class, column = predicted class."""
        return confusion_counts(self.targs, self.pred_class, len(self.classes))

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """(actual, predicted, count) of the off-diagonal cells holding at least `min_val`, most frequent first."""
        cm = self.confusion_matrix()
        pairs = [(self.classes[a], self.classes[p], int(cm[a, p])) for a in range(len(cm)) for p in range(len(cm))
                 if a != p and cm[a, p] >= min_val]
        return sorted(pairs, key=lambda t: -t[2])

    def plot_confusion_matrix(self, path: str | Path = "confusion_matrix.png", normalize: bool = False) -> Path:
        """The confusion matrix as a PNG (counts, or each row's share with `normalize`)."""
        return plot_matrix(self.confusion_matrix(), self.classes, path, normalize,
                           f"confusion matrix ({len(self)} valid items)")

    def item_title(self, pos: int) -> str:
        pred, actual = int(self.pred_class[pos]), int(self.targs[pos])
        return (f"{self.classes[pred]} / {self.classes[actual]}\n"
                f"loss {float(self.losses[pos]):.2f} / p(actual) {float(self.preds[pos, actual]):.2f}")

    def plot_top_losses(self, k: int = 9, path: str | Path = "top_losses.png", largest: bool = True) -> Path:
        """The `k` items the model got most wrong: images with prediction / actual / loss / probability, or a
        table of texts."""
        if not hasattr(self.ds, "text"):
            return super().plot_top_losses(k, path, largest)
        losses, positions = self.top_losses(k, largest)
        rows = []
        for loss, pos in zip(losses.tolist(), positions.tolist()):
            pred, actual = int(self.pred_class[pos]), int(self.targs[pos])
            words = self.ds.text(self.idxs[pos]).split()
            rows.append({"text": " ".join(words[:60]) + (" ..." if len(words) > 60 else ""),
                         "prediction": self.classes[pred], "actual": self.classes[actual], "loss": f"{loss:.3f}",
                         "p(actual)": f"{float(self.preds[pos, actual]):.3f}"})
        return show_table(pd.DataFrame(rows), Path(path))


class MultiLabelInterpretation(Interpretation):
    """Several tags per item: per-tag precision, recall, F2 and support; one threshold per tag."""

    label_cls = MultiCategoryLabel
    beta = 2

    @property
    def threshold(self) -> float:
        """The global decision threshold the learner exports (the lesson's 0.2 unless set)."""
        return float(self.learn.export_extra.get("threshold", DEFAULT_THRESHOLD))

    def _thresholds(self, thresholds=None) -> torch.Tensor:
        """(C,) thresholds: one global value, a list in class order or a {tag: threshold} dict."""
        if thresholds is None:
            thresholds = self.threshold
        if isinstance(thresholds, dict):
            return torch.tensor([float(thresholds.get(c, self.threshold)) for c in self.classes])
        return torch.broadcast_to(torch.as_tensor(thresholds, dtype=torch.float32), (len(self.classes),))

    def fbeta(self, thresholds=None) -> float:
        """The metric: per-sample F2 of the valid set, averaged over the samples."""
        return float(fbeta(self.preds, self.targs, thresh=self._thresholds(thresholds), beta=self.beta,
                           sigmoid=False))

    def per_tag(self, thresholds=None) -> pd.DataFrame:
        """Precision, recall, F2 and support (items carrying the tag) of each tag at `thresholds`."""
        pred = (self.preds > self._thresholds(thresholds)).float()
        true = self.targs.float()
        tp, n_pred, n_true = (pred * true).sum(0), pred.sum(0), true.sum(0)
        prec = torch.where(n_pred > 0, tp / n_pred.clamp(min=1), torch.zeros_like(tp))
        rec = torch.where(n_true > 0, tp / n_true.clamp(min=1), torch.zeros_like(tp))
        b2 = self.beta ** 2
        f = torch.where(prec + rec > 0, (1 + b2) * prec * rec / (b2 * prec + rec).clamp(min=1e-12),
                        torch.zeros_like(tp))
        return pd.DataFrame({"tag": self.classes, "threshold": self._thresholds(thresholds).tolist(),
                             "precision": prec.tolist(), "recall": rec.tolist(), f"f{self.beta}": f.tolist(),
                             "support": n_true.long().tolist(), "predicted": n_pred.long().tolist()})

    def optimal_thresholds(self, grid=THRESHOLD_GRID, rounds: int = 2, verbose: bool = True) -> dict[str, float]:
        """One threshold per tag maximising the valid set's F2 (per sample, as the metric), tag by tag from the
        global threshold; a tag's threshold moves only when F2 rises, so F2 never falls below the global one's.
        Export them with `learn.export(extra={"thresholds": ...})`: Serve then decides each tag with its own."""
        thresh = self._thresholds().clone()
        best = self.fbeta(thresh)
        candidates = torch.tensor(grid, dtype=torch.float32)
        for _ in range(rounds):
            moved = False
            for j in range(len(self.classes)):
                scores = self._scores_moving(j, thresh, candidates)
                i = int(scores.argmax())
                if float(scores[i]) > best + 1e-9:
                    thresh[j], best, moved = candidates[i], float(scores[i]), True
            if not moved:
                break
        chosen = {c: round(float(t), 4) for c, t in zip(self.classes, thresh)}
        if verbose:
            base = self.fbeta()
            print(f"valid F{self.beta} at the global threshold {self.threshold:g}: {base:.4f}; "
                  f"with a threshold per tag: {self.fbeta(chosen):.4f} ({self.fbeta(chosen) - base:+.4f})")
        return chosen

    def _scores_moving(self, j: int, thresh: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """(G,) mean per-sample F2 with tag j's threshold set to each candidate, the others kept."""
        pred = (self.preds > thresh).float()
        true = self.targs.float()
        others = torch.ones(len(self.classes), dtype=torch.bool)
        others[j] = False
        tp_o = (pred[:, others] * true[:, others]).sum(1)          # (N,)
        np_o, n_true = pred[:, others].sum(1), true.sum(1)          # (N,)
        pj = (self.preds[:, j][None] > candidates[:, None]).float()  # (G, N)
        tp, n_pred = tp_o + pj * true[:, j], np_o + pj                # (G, N)
        eps, b2 = 1e-9, self.beta ** 2
        prec, rec = tp / (n_pred + eps), tp / (n_true + eps)
        return ((1 + b2) * prec * rec / (prec * b2 + rec + eps)).mean(1)

    def item_title(self, pos: int) -> str:
        thresh = self._thresholds()
        pred = [c for c, on in zip(self.classes, (self.preds[pos] > thresh).tolist()) if on]
        true = [c for c, on in zip(self.classes, (self.targs[pos] > 0.5).tolist()) if on]
        return f"pred {' '.join(pred) or '-'}\ntrue {' '.join(true) or '-'}\nloss {float(self.losses[pos]):.3f}"

    def threshold_for_plots(self):
        return self.threshold


def plot_matrix(cm: np.ndarray, names: list[str], path, normalize: bool, title: str) -> Path:
    """A confusion matrix (rows actual, columns predicted) drawn with its numbers, as a PNG."""
    plt = pyplot()
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    side = max(4.0, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(shown, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="actual", title=title)
    if len(names) <= 40:
        top = shown.max() if shown.size else 0
        for (a, p), v in np.ndenumerate(shown):
            ax.text(p, a, f"{v:.2f}" if normalize else str(int(v)), ha="center", va="center", fontsize=7,
                    color="white" if top and v > top / 2 else "black")
    fig.tight_layout()
    return save_figure(fig, path)
