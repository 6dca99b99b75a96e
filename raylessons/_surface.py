"""Public names resolved on first use (PEP 562), so that `import raylessons.errors` stays free of torch."""
from __future__ import annotations

import importlib
from typing import Callable


def lazy_names(package: str, exports: dict[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """(`__getattr__`, `__dir__`) for a package whose public `name` lives in module `exports[name]`."""
    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name], package)
        value = module if exports[name] == f".{name}" else getattr(module, name)  # a submodule, or a name in one
        namespace[name] = value  # found once, then an ordinary attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
