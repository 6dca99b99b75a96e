"""learn.summary(): fastai's model summary (a Learner method, attached in learner.py).

One batch of the data (`learn.data.one_batch()`) goes through the model in eval mode with a forward hook on
each *block*: the children of each layer group (a ModuleList, which is never called, is opened one level
further). Each block's row: its name in the model, type, output shape, parameters and whether they train; then
each layer group's trainable/frozen parameter tensors and parameters, the totals, the optimizer and the loss.
The model's train/eval modes are restored and the hooks removed afterwards; an RNN is reset before and after.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["BlockRow", "GroupRow", "ModelSummary", "summary", "model_summary"]

_CONTAINERS = (nn.ModuleList, nn.ModuleDict)  # hold modules but are never called


@dataclass
class BlockRow:
    """One block: its layer group, name in the model, type, output shape of the batch and parameters."""

    group: int
    name: str
    layer: str
    output_shape: str  # "-" when the forward pass never called it (e.g. an embedding used through its dropout)
    params: int
    trainable: str  # "True", "False", "partly" (e.g. BatchNorm only in a frozen group) or "-" (no parameters)


@dataclass
class GroupRow:
    """One layer group's parameter tensors and parameters, trainable and frozen (as `freeze_to` left them)."""

    index: int
    tensors_trainable: int
    tensors_frozen: int
    params_trainable: int
    params_frozen: int


@dataclass
class ModelSummary:
    """What `learn.summary()` prints (`str(summary)`): blocks, layer groups, totals, optimizer and loss."""

    model: str
    input_shape: str
    output_shape: str
    blocks: list[BlockRow] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    optimizer: str = ""
    loss_func: str = ""

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def trainable_counts(self) -> list[int]:
        """Trainable parameter tensors per layer group: `learn.trainable_counts()` at the time of the summary."""
        return [g.tensors_trainable for g in self.groups]

    def table(self) -> str:
        """The printed summary."""
        width = 96
        head = f"{'Group':<6}{'Block':<22}{'Layer (type)':<24}{'Output Shape':<26}{'Param #':>11}  Trainable"
        lines = [f"{self.model} (input {self.input_shape})", "=" * width, head, "=" * width]
        for b in self.blocks:
            lines.append(f"{b.group:<6}{_cut(b.name, 21):<22}{_cut(b.layer, 23):<24}{_cut(b.output_shape, 25):<26}"
                         f"{b.params:>11,}  {b.trainable}")
        lines += ["=" * width, f"Output: {self.output_shape}", "",
                  f"{'Layer group':<12}{'Tensors trainable':>18}{'frozen':>8}{'Params trainable':>18}{'frozen':>12}"]
        for g in self.groups:
            lines.append(f"{g.index:<12}{g.tensors_trainable:>18}{g.tensors_frozen:>8}{g.params_trainable:>18,}"
                         f"{g.params_frozen:>12,}")
        lines += ["", f"Total params: {self.total_params:,}", f"Total trainable params: {self.trainable_params:,}",
                  f"Total non-trainable params: {self.frozen_params:,}", "",
                  f"Optimizer: {self.optimizer}", f"Loss function: {self.loss_func}"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _shape(out) -> str:
    """`[B, ...]` of the first tensor in an output (tensors, tuples, lists), `…` when it holds more tensors."""
    tensors = []

    def walk(o):
        if isinstance(o, torch.Tensor):
            tensors.append(o)
        elif isinstance(o, (tuple, list)):
            for x in o:
                walk(x)
        elif isinstance(o, dict):
            for x in o.values():
                walk(x)

    walk(out)
    if not tensors:
        return type(out).__name__
    return str(list(tensors[0].shape)) + (" …" if len(tensors) > 1 else "")


def _blocks(group: nn.Module) -> list[nn.Module]:
    """The children of a layer group, ModuleLists opened (never called, so never hooked); a leaf is itself."""
    found = []
    for child in group.children():
        found.extend(_blocks(child) if isinstance(child, _CONTAINERS) else [child])
    return found if found or isinstance(group, _CONTAINERS) else [group]


def _unique(params) -> list[nn.Parameter]:
    seen, found = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            found.append(p)
    return found


def _trainable(params: list[nn.Parameter]) -> str:
    flags = {p.requires_grad for p in params}
    return "-" if not flags else "partly" if len(flags) == 2 else str(flags.pop())


def _describe(obj) -> str:
    """A short name of an optimizer factory, optimizer or loss: `AdamW(betas=(0.9, 0.99), eps=1e-08)`."""
    if isinstance(obj, functools.partial):
        args = [repr(a) for a in obj.args] + [f"{k}={v!r}" for k, v in obj.keywords.items()]
        return f"{_describe(obj.func)}({', '.join(args)})"
    if isinstance(obj, type) or callable(obj) and hasattr(obj, "__name__"):
        return obj.__name__
    return type(obj).__name__


def model_summary(learn, xb: torch.Tensor) -> ModelSummary:
    """The summary of `learn` for a batch `xb` already on the learner's device (normalised)."""
    model = learn.model
    names = {id(m): n for n, m in model.named_modules()}
    rows, seen = [], set()
    for gi, group in enumerate(learn.layer_groups):
        for block in _blocks(group):
            if id(block) not in seen:
                seen.add(id(block))
                rows.append((gi, block))
    shapes: dict[int, list[str]] = {}

    def hook(index):
        return lambda module, args, out: shapes.setdefault(index, []).append(_shape(out))

    modes = [(m, m.training) for m in model.modules()]
    handles = [block.register_forward_hook(hook(i)) for i, (_, block) in enumerate(rows)]
    try:
        model.eval()
        if hasattr(model, "reset"):  # an RNN reads the batch from a fresh state
            model.reset()
        with torch.no_grad(), learn._autocast():
            out = model(xb)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
        if hasattr(model, "reset"):  # leave no state of the summary's batch behind
            model.reset()

    blocks = []
    for i, (gi, block) in enumerate(rows):
        params = _unique(block.parameters())
        calls = shapes.get(i, [])
        shape = "-" if not calls else calls[0] + (f" ×{len(calls)}" if len(calls) > 1 else "")
        name = names.get(id(block), "?") or "(model)"
        blocks.append(BlockRow(gi, name, type(block).__name__, shape, sum(p.numel() for p in params),
                               _trainable(params)))
    groups = []
    for gi, group in enumerate(learn.layer_groups):
        params = list(group.parameters())
        on = [p for p in params if p.requires_grad]
        off = [p for p in params if not p.requires_grad]
        groups.append(GroupRow(gi, len(on), len(off), sum(p.numel() for p in on), sum(p.numel() for p in off)))
    everything = _unique(model.parameters())
    opt = learn.opt if learn.opt is not None else learn.opt_func
    return ModelSummary(
        model=type(model).__name__, input_shape=f"{list(xb.shape)} {str(xb.dtype).replace('torch.', '')}",
        output_shape=_shape(out), blocks=blocks, groups=groups,
        total_params=sum(p.numel() for p in everything),
        trainable_params=sum(p.numel() for p in everything if p.requires_grad),
        optimizer=_describe(opt) + ("" if learn.opt is not None else " (created at the next fit)"),
        loss_func=_describe(learn.loss_func))


def summary(self, print_table: bool = True) -> ModelSummary:
    """fastai's `learn.summary()`: for one batch of the validation data, each block's output shape, parameters
    and whether they train, then each layer group's trainable/frozen tensors and parameters, the totals, the
    optimizer and the loss function. Prints the table (unless `print_table=False`) and returns it as a
    ModelSummary, whose `trainable_counts` equal `learn.trainable_counts()`."""
    xb, yb = self.data.one_batch()
    xb, _ = self.data.to_device(xb, yb, self.device, self.channels_last)
    result = model_summary(self, xb)
    if print_table:
        print(result.table())
    return result
