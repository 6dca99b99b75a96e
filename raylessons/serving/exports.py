"""Which export a task may serve, checked from its meta.json without loading weights (torch-free: the ingress
and the build task import this), and what GET /models shows of it."""
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..export_meta import read_export_meta
from ..limits import DEFAULT_THRESHOLD

__all__ = ["ExportKind", "read_export", "resolve_export", "summary"]


@dataclass(frozen=True)
class ExportKind:
    """What an export must hold to serve a task: its label kind and, when `model_kinds` is set, one of them."""

    label_kind: str
    model_kinds: tuple[str, ...] = ()

    def check(self, task: str, export: Path, meta: dict) -> None:
        """ConfigError unless `meta` (an export's meta.json) holds this kind of model."""
        model_kind = meta["model"].get("kind") if isinstance(meta["model"], dict) else None
        if meta["label_kind"] != self.label_kind or (self.model_kinds and model_kind not in self.model_kinds):
            kind = f" ({model_kind})" if self.model_kinds else ""
            wanted = f" from {list(self.model_kinds)}" if self.model_kinds else ""
            raise ConfigError(f"export {export} holds a {meta['label_kind']!r} model{kind}; "
                              f"task {task!r} needs {self.label_kind!r}{wanted}")


def resolve_export(task: str, path: str, root: str | None) -> Path:
    """The absolute export directory of `task`; with `root`, relative paths start there and must stay inside."""
    p = Path(path).expanduser()
    if root is not None:
        base = Path(root).expanduser().resolve()
        p = (base / p).resolve()
        if not p.is_relative_to(base):
            raise ConfigError(f"export of {task!r} ({path}) resolves to {p}, outside export_root {base}")
    return p.resolve()


def read_export(task: str, path: str, root: str | None, kind: ExportKind) -> tuple[Path, dict]:
    """(absolute export directory, its meta.json) of an export of `kind`: inside `root` when set, meta.json
    present and well formed."""
    export = resolve_export(task, path, root)
    meta = read_export_meta(export)
    kind.check(task, export, meta)
    return export, meta


def summary(task: str, meta: dict) -> dict:
    """What GET /models shows of one export."""
    keys = ("arch", "classes", "size", "metrics", "exported_at")
    return {"task": task, "kind": meta["label_kind"], **{k: meta.get(k) for k in keys},
            "threshold": meta.get("threshold", DEFAULT_THRESHOLD), "thresholds": meta.get("thresholds")}
