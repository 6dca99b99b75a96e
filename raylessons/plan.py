"""Plans: a training recipe as plain data (a list of stages), validated and run on a Learner."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Callable

from .callbacks import Callback
from .errors import ConfigError

__all__ = ["Stage", "parse_plan", "parse_lr", "run_plan", "plan_to_data", "next_position"]


@dataclass
class Stage:
    """One `fit_one_cycle` with the freezing (and optionally the image size) it runs under."""

    epochs: int
    max_lr: object = 3e-3
    freeze_to: int | None = None
    unfreeze: bool = False
    freeze: bool = False
    moms: tuple[float, float] = (0.95, 0.85)
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div: float | None = None
    wd: float | None = None
    size: int | list[int] | None = None   # progressive resizing: re-transform the data at this size
    bs: int | None = None                 # with it, a new batch size (bigger images need smaller batches)
    save: str | None = None               # learn.save(name) after the stage
    extra: dict = field(default_factory=dict)

    def freezing(self) -> int | None:
        """The freeze_to argument this stage applies (None keeps the current state)."""
        if sum([self.freeze_to is not None, self.unfreeze, self.freeze]) > 1:
            raise ConfigError("a stage takes at most one of freeze_to, freeze, unfreeze")
        if self.unfreeze:
            return 0
        if self.freeze:
            return -1
        return self.freeze_to


_STAGE_KEYS = {f.name for f in fields(Stage)} - {"extra"}
_SLICE = re.compile(r"^\s*slice\(\s*([^,\s]+)\s*(?:,\s*([^\s)]+)\s*)?\)\s*$")


def parse_lr(value):
    """A plan's max_lr: a float; [a, b] or 'slice(a, b)' = slice(a, b); 'slice(b)' or {'slice': b}."""
    if isinstance(value, slice):
        return value
    if isinstance(value, bool):
        raise ConfigError(f"max_lr must be a number, a list or a slice, got {value!r}")
    if isinstance(value, (int, float)):
        return _positive(float(value))
    if isinstance(value, str):
        m = _SLICE.match(value)
        if m:
            a, b = m.groups()
            return slice(_positive(_num(a)), _positive(_num(b))) if b else slice(_positive(_num(a)))
        return _positive(_num(value))
    if isinstance(value, dict) and set(value) == {"slice"}:
        return parse_lr(value["slice"] if isinstance(value["slice"], list) else f"slice({value['slice']})")
    if isinstance(value, (list, tuple)):
        vals = [_positive(_num(v)) for v in value]
        if len(vals) == 2:
            return slice(vals[0], vals[1])
        return vals
    raise ConfigError(f"max_lr must be a number, a list or a slice, got {value!r}")


def _num(v) -> float:
    """A float from a number or a string such as '1e-3' or '1e-2/5' (no expressions are evaluated)."""
    try:
        if isinstance(v, str) and "/" in v:
            num, den = v.split("/", 1)
            return float(num) / float(den.strip("() "))
        return float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ConfigError(f"not a number in a learning rate: {v!r}") from None


def _positive(v: float) -> float:
    if not v > 0:
        raise ConfigError(f"learning rates must be positive, got {v}")
    return v


def parse_plan(stages: list[dict], n_groups: int | None = None) -> list[Stage]:
    """Validate a list of stage dicts; unknown keys, bad epochs or groups raise ConfigError."""
    if not isinstance(stages, (list, tuple)) or not stages:
        raise ConfigError("a plan is a non-empty list of stages")
    out = []
    for i, raw in enumerate(stages):
        if isinstance(raw, Stage):
            raw = plan_to_data([raw])[0]
        if not isinstance(raw, dict):
            raise ConfigError(f"stage {i}: expected a mapping, got {type(raw).__name__}")
        unknown = set(raw) - _STAGE_KEYS
        if unknown:
            raise ConfigError(f"stage {i}: unknown keys {sorted(unknown)}; allowed: {sorted(_STAGE_KEYS)}")
        if raw.get("bs") is not None and (not isinstance(raw["bs"], int) or raw["bs"] < 1):
            raise ConfigError(f"stage {i}: 'bs' must be a positive integer, got {raw['bs']!r}")
        if not isinstance(raw.get("epochs"), int) or raw["epochs"] < 1:
            raise ConfigError(f"stage {i}: 'epochs' must be a positive integer, got {raw.get('epochs')!r}")
        stage = Stage(**{**raw, "max_lr": parse_lr(raw.get("max_lr", 3e-3)),
                         "moms": tuple(raw.get("moms", (0.95, 0.85)))})
        n = stage.freezing()
        if n_groups is not None and n is not None and not -n_groups <= n <= n_groups:
            raise ConfigError(f"stage {i}: freeze_to {n} names a layer group this model lacks "
                              f"(it has {n_groups})")
        if n_groups is not None and isinstance(stage.max_lr, list) and len(stage.max_lr) != n_groups:
            raise ConfigError(f"stage {i}: {len(stage.max_lr)} learning rates for {n_groups} layer groups")
        out.append(stage)
    return out


def plan_to_data(stages: list[Stage]) -> list[dict]:
    """JSON-friendly dicts of stages (slices written as 'slice(a, b)')."""
    out = []
    for s in stages:
        d = {k: v for k, v in asdict(s).items() if k != "extra" and v not in (None, False)}
        lr = s.max_lr
        if isinstance(lr, slice):
            d["max_lr"] = f"slice({lr.start}, {lr.stop})" if lr.start is not None else f"slice({lr.stop})"
        d["moms"] = list(s.moms)
        out.append(d)
    return out


def next_position(stages: list[Stage], stage: int, epoch: int) -> tuple[int, int]:
    """The (stage, epoch) that follows a finished epoch `epoch` of stage `stage`."""
    if epoch + 1 < stages[stage].epochs:
        return stage, epoch + 1
    return stage + 1, 0


class _EpochHook(Callback):
    order = 10  # after the recorder has the epoch's numbers

    def __init__(self, stage: int, fn: Callable | None, begin: Callable | None = None):
        self.stage, self.fn, self.begin = stage, fn, begin

    def before_epoch(self, learn) -> None:
        if self.begin is not None:
            self.begin(learn, self.stage, learn.epoch)

    def after_epoch(self, learn) -> None:
        if self.fn is not None:
            self.fn(learn, self.stage, learn.epoch)


def run_plan(learn, stages: list[Stage], start: tuple[int, int] = (0, 0),
             on_epoch_end: Callable | None = None, restore: Callable | None = None,
             resize: Callable | None = None, on_epoch_begin: Callable | None = None) -> None:
    """Run the stages from position `start`; `restore(learn)` reloads state before a resumed stage.

    `on_epoch_begin` / `on_epoch_end` are called as fn(learn, stage index, epoch within the stage).
    """
    stages = parse_plan(stages, len(learn.layer_groups))
    start_stage, start_epoch = start
    for si, stage in enumerate(stages):
        n = stage.freezing()
        if n is not None:
            learn.freeze_to(n)
        if (stage.size is not None or stage.bs is not None) and resize is not None:
            resize(learn, stage.size, stage.bs)
        if si < start_stage:
            continue
        first = si == start_stage and start_epoch > 0
        if si == start_stage and restore is not None:
            learn.create_opt(learn.lr_range(stage.max_lr), stage.wd)
            restore(learn)
        cbs = [_EpochHook(si, on_epoch_end, on_epoch_begin)] if on_epoch_end or on_epoch_begin else []
        learn.fit_one_cycle(stage.epochs, stage.max_lr, moms=stage.moms, div_factor=stage.div_factor,
                            pct_start=stage.pct_start, final_div=stage.final_div, wd=stage.wd,
                            callbacks=cbs, start_epoch=start_epoch if first else 0)
        if stage.save:
            learn.save(stage.save)
