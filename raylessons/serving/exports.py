"""Which export a task may serve, checked from its meta.json without loading weights (torch-free: the ingress
and the build task import this), and what GET /models shows of it.

An export is a local directory or a URI (`s3://bucket/prefix/export`, see `raylessons.storage`): a URI is
downloaded once per machine into a local cache (keyed by the URI and its meta.json) and checked there."""
import contextlib
from dataclasses import dataclass
from pathlib import Path

from .. import storage
from ..errors import ConfigError, DataError
from ..export_meta import EXPORT_META, read_export_meta
from ..limits import DEFAULT_THRESHOLD

__all__ = ["ExportKind", "local_export", "read_export", "resolve_export", "summary"]


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


def resolve_export(task: str, path: str, root: str | None) -> Path | str:
    """The absolute export directory of `task`, or its URI; with `root`, relative paths start there and must stay
    inside (a URI must start with a URI `root`)."""
    if storage.is_uri(path) or (root is not None and storage.is_uri(root)):
        uri = storage.normalize(path) if storage.is_uri(path) else path
        if root is not None and storage.is_uri(root) and not storage.is_uri(path) and not path.startswith(("/", "~")):
            with contextlib.suppress(ConfigError):  # relative to the root ('..' is refused: outside it)
                uri = storage.join(root, path)
        if root is not None and not storage.within(uri, root):
            raise ConfigError(f"export of {task!r} ({path}) resolves to {uri}, outside export_root {root}")
        return uri
    p = Path(path).expanduser()
    if root is not None:
        base = Path(root).expanduser().resolve()
        p = (base / p).resolve()
        if not p.is_relative_to(base):
            raise ConfigError(f"export of {task!r} ({path}) resolves to {p}, outside export_root {base}")
    return p.resolve()


def read_export(task: str, path: str, root: str | None, kind: ExportKind) -> tuple[Path | str, dict]:
    """(absolute export directory or URI, its meta.json) of an export of `kind`: inside `root` when set, meta.json
    present and well formed (a URI's read from its cached download)."""
    export = resolve_export(task, path, root)
    meta = read_export_meta(local_export(export))
    kind.check(task, export, meta)
    return export, meta


def local_export(export: Path | str) -> Path:
    """The local directory of an export: itself, or for a URI its cached download (fetched on first use)."""
    if not storage.is_uri(export):
        return Path(export)
    meta = storage.join(export, EXPORT_META)
    if not storage.exists(meta):
        error = storage.missing(meta)  # names a missing bucket
        raise error if "no such bucket" in str(error) else DataError("not an export (meta.json missing)", export)
    return storage.fetch_dir(export, version=storage.read_text(meta))


def summary(task: str, meta: dict) -> dict:
    """What GET /models shows of one export."""
    keys = ("arch", "classes", "size", "metrics", "exported_at")
    return {"task": task, "kind": meta["label_kind"], **{k: meta.get(k) for k in keys},
            "threshold": meta.get("threshold", DEFAULT_THRESHOLD), "thresholds": meta.get("thresholds")}
