"""show_batch and show_results: PNG grids of images with their labels (and, for results, the predictions)."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import torch

from ..plotting import pyplot, save_figure

__all__ = ["show_batch", "show_results", "show_table", "show_image", "verdict_title"]


def show_image(ax, x: torch.Tensor) -> None:
    """Draw an image tensor (3, h, w) in [0, 1] on `ax`, without axes."""
    ax.imshow(x.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.axis("off")


def verdict_title(ax, pred: str, true: str, width: int = 34) -> None:
    """'pred … / true …' as the title of `ax` (wrapped at `width` characters), green when they agree, else red."""
    lines = textwrap.wrap(f"pred {pred}", width) + textwrap.wrap(f"true {true}", width)
    ax.set_title("\n".join(lines), fontsize=8, color="tab:green" if pred == true else "tab:red")


def show_batch(data, rows: int, path: Path, train: bool = True) -> Path:
    """Draw rows×rows items of a batch; label-specific overlays come from the label's `show`."""
    plt = pyplot()
    xb, yb = data.one_batch(train=train)
    n = min(rows * rows, len(xb))
    cols = rows
    nrows = math.ceil(n / cols)
    fig, axs = plt.subplots(nrows, cols, figsize=(3 * cols, 3 * nrows), squeeze=False)
    for i, ax in enumerate(axs.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(xb[i].permute(1, 2, 0).clamp(0, 1).numpy())
        show = getattr(data.label, "show", None)
        if show is not None:
            show(ax, yb[i], xb[i].shape[-2:])
        ax.set_title(data.label.title(yb[i]), fontsize=8)
    return save_figure(fig, path)


def show_results(data, xb: torch.Tensor, yb: torch.Tensor, preds: torch.Tensor, rows: int, path: Path,
                 threshold: float) -> Path:
    """Items of a validation batch with their targets and predictions, drawn by the label kind's `show_result`.

    One panel per item (tags, points): a rows×rows grid; several panels per item (segmentation: image, true mask,
    predicted mask): one item per row, `rows` rows.
    """
    plt = pyplot()
    label = data.label
    panels = label.result_panels
    n = min(rows * rows if panels == 1 else rows, len(xb))
    cols = rows if panels == 1 else panels
    nrows = math.ceil(n / rows) if panels == 1 else n
    fig, axs = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.6 * nrows), squeeze=False)
    for ax in axs.flat:
        ax.axis("off")
    cells = axs.flat if panels == 1 else axs
    for i, cell in zip(range(n), cells):
        label.show_result(list(cell) if panels > 1 else [cell], xb[i], yb[i], preds[i], threshold)
    fig.tight_layout()
    return save_figure(fig, path)


def show_table(table, path: Path, line_chars: int = 130) -> Path:
    """A DataFrame drawn as a PNG table (text results): short columns keep their width, long ones share the rest
    of `line_chars` characters and wrap."""
    plt = pyplot()
    rows = [[str(v) for v in row] for row in table.itertuples(index=False)]
    natural = [max(len(str(c)), *(len(r[i]) for r in rows)) for i, c in enumerate(table.columns)]
    short = [w <= 16 for w in natural]
    rest = max(20, (line_chars - sum(w for w, s in zip(natural, short) if s)) // max(1, short.count(False)))
    budget = [w if s else min(w, rest) for w, s in zip(natural, short)]
    cells = [["\n".join(textwrap.wrap(v, b)) or " " for v, b in zip(r, budget)] for r in rows]
    heights = [max(c.count("\n") + 1 for c in r) for r in cells]
    total_lines = sum(heights) + len(cells) + 2  # a line of padding per row, two for the header
    fig, ax = plt.subplots(figsize=(12, 0.2 * total_lines + 0.2))
    ax.axis("off")
    chart = ax.table(cellText=cells, colLabels=list(table.columns), loc="upper center", cellLoc="left",
                     colLoc="left", colWidths=[(b + 4) / (sum(budget) + 4 * len(budget)) for b in budget])
    chart.auto_set_font_size(False)
    chart.set_fontsize(8)
    for (r, c), cell in chart.get_celld().items():
        cell.PAD = 1 / (budget[c] + 4)  # a character's width, as a fraction of the cell
        cell.set_height(((2 if r == 0 else heights[r - 1]) + 1) / total_lines)
    return save_figure(fig, path)
