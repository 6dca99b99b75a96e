"""Plans: a training recipe as plain data (a list of stages), parsed once into `Stage`s and run on a Learner.

Stages are plain dataclasses: they travel as they are to Ray Train workers and Tune trials (pickled), and are
written back as stage dicts (`plan_to_data`) wherever a plan lands on disk (`run.json`).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


from .callbacks import Callback
from .errors import ConfigError

__all__ = ["Stage", "check_plan", "epochs_before", "load_plan", "next_position", "parse_lr", "parse_plan",
           "plan_summary", "plan_to_data", "run_plan"]


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


def _stage_from_data(raw, i: int) -> Stage:
    """One stage dict checked and turned into a Stage; unknown keys, bad epochs or batch sizes are ConfigErrors."""
    if not isinstance(raw, dict):
        raise ConfigError(f"stage {i}: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _STAGE_KEYS
    if unknown:
        raise ConfigError(f"stage {i}: unknown keys {sorted(unknown)}; allowed: {sorted(_STAGE_KEYS)}")
    if raw.get("bs") is not None and (not isinstance(raw["bs"], int) or raw["bs"] < 1):
        raise ConfigError(f"stage {i}: 'bs' must be a positive integer, got {raw['bs']!r}")
    if not isinstance(raw.get("epochs"), int) or raw["epochs"] < 1:
        raise ConfigError(f"stage {i}: 'epochs' must be a positive integer, got {raw.get('epochs')!r}")
    stage = Stage(**{**raw, "max_lr": parse_lr(raw.get("max_lr", 3e-3)), "moms": tuple(raw.get("moms", (0.95, 0.85)))})
    stage.freezing()  # at most one of freeze_to, freeze, unfreeze
    return stage


def parse_plan(stages: list, n_groups: int | None = None) -> list[Stage]:
    """Stages from a list of stage dicts (Stage objects are kept as they are), checked against `n_groups`."""
    if not isinstance(stages, (list, tuple)) or not stages:
        raise ConfigError("a plan is a non-empty list of stages")
    out = [raw if isinstance(raw, Stage) else _stage_from_data(raw, i) for i, raw in enumerate(stages)]
    if n_groups is not None:
        check_plan(out, n_groups)
    return out


def check_plan(stages: list[Stage], n_groups: int) -> None:
    """Every stage's freezing and per-group rates fit a model with `n_groups` layer groups (a ConfigError)."""
    for i, stage in enumerate(stages):
        n = stage.freezing()
        if n is not None and not -n_groups <= n <= n_groups:
            raise ConfigError(f"stage {i}: freeze_to {n} names a layer group this model lacks "
                              f"(it has {n_groups})")
        if isinstance(stage.max_lr, list) and len(stage.max_lr) != n_groups:
            raise ConfigError(f"stage {i}: {len(stage.max_lr)} learning rates for {n_groups} layer groups")


def load_plan(plan, presets: dict[str, Callable[[], list]] | None = None) -> list[Stage]:
    """Stages from a plan: a list of stages, a preset name (`presets`), a JSON string or a .json/.yaml file."""
    if not isinstance(plan, str):
        return parse_plan(plan)
    presets = presets or {}
    if plan in presets:
        return parse_plan(presets[plan]())
    path = Path(plan)
    if path.suffix in (".json", ".yaml", ".yml"):
        return _stages_of(_read_plan_file(path), path)
    try:
        data = json.loads(plan)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--plan is neither a preset ({', '.join(presets)}), a plan file, nor JSON: {e}") from None
    return _stages_of(data, "--plan")


def _read_plan_file(path: Path):
    """The data of a .json or .yaml plan file; a missing or malformed file is a ConfigError naming it."""
    if not path.is_file():
        raise ConfigError(f"plan file not found: {path}")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"plan file {path} is not valid JSON: {e}") from None
    import yaml  # here: PyYAML comes with Ray, and the learner side runs where only torch is installed

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"plan file {path} is not valid YAML: {e}") from None


def _stages_of(data, where) -> list[Stage]:
    """Stages from a plan's data: a list of stage dicts, or a mapping holding one under "stages"."""
    if isinstance(data, dict) and "stages" in data:
        data = data["stages"]
    if not isinstance(data, list):
        raise ConfigError(f"{where}: a plan is a list of stages (or {{\"stages\": [...]}}), "
                          f"got {type(data).__name__}")
    return parse_plan(data)


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


def plan_summary(plan: list) -> str:
    """'freeze 1ep slice(0.01) → unfreeze 3ep slice(0.0001, 0.002)' (how tables and logs show a plan)."""
    if not plan:
        return ""
    stages, parts = parse_plan(plan), []
    for stage, data in zip(stages, plan_to_data(stages)):
        what = ("freeze" if stage.freeze else "unfreeze" if stage.unfreeze else
                f"freeze_to({stage.freeze_to})" if stage.freeze_to is not None else "fit")
        parts.append(f"{what} {stage.epochs}ep {data['max_lr']}")
    return " → ".join(parts)


def epochs_before(stages: list[Stage], stage: int, epoch: int = 0) -> int:
    """Epochs of the plan done before epoch `epoch` of stage `stage` (`len(stages)`: the plan's total)."""
    return sum(s.epochs for s in stages[:stage]) + epoch


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
