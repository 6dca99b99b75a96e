"""Load paths never unpickle arbitrary objects, and nothing listens beyond loopback by default (source scan)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("raylessons", "jobs", "serve") for p in (ROOT / d).rglob("*.py"))

# the one unpickler allowed: fastai's itos.pkl read by a subclass whose find_class refuses every global
ALLOWED_UNPICKLER = ("raylessons/models/awd_lstm_load.py", "_ListOfStrUnpickler")


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unsafe_deserialization(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = str(path.relative_to(ROOT))
    for call, name in _calls(tree):
        where = f"{rel}:{call.lineno} {ast.unparse(call)[:80]}"
        if name == "torch.load":
            assert _keyword(call, "weights_only") is True, f"torch.load without weights_only=True: {where}"
        assert name not in ("pickle.load", "pickle.loads", "dill.load", "dill.loads", "cloudpickle.load",
                            "cloudpickle.loads", "joblib.load", "pd.read_pickle", "pandas.read_pickle",
                            "marshal.loads", "yaml.load", "yaml.unsafe_load"), f"unsafe loader: {where}"
        if name in ("np.load", "numpy.load"):
            assert _keyword(call, "allow_pickle") in (None, False), f"np.load allows pickles: {where}"
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b) for b in node.bases]
            if "pickle.Unpickler" in bases:
                assert (rel, node.name) == ALLOWED_UNPICKLER, f"{rel}: unpickler {node.name}"
                methods = {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}
                assert "find_class" in methods, "the allowed unpickler must restrict find_class"


def test_scan_sees_the_load_paths():
    """The scan covers the files that load checkpoints, exports and vocabularies (not an empty glob)."""
    names = {str(p.relative_to(ROOT)) for p in SOURCES}
    assert {"raylessons/learner_io.py", "raylessons/models/awd_lstm_load.py", "raylessons/distributed/train.py",
            "raylessons/serving/app.py", "serve/app.py"} <= names
    loads = sum(name == "torch.load" for p in SOURCES for _, name in _calls(ast.parse(p.read_text())))
    assert loads >= 5


def test_restricted_unpickler_refuses_code(tmp_path):
    """fastai's itos.pkl loads as a list of str; a pickle that would run code is refused, naming the global."""
    import os
    import pickle

    from raylessons.errors import DataError
    from raylessons.models.awd_lstm_load import read_itos

    good = tmp_path / "itos.pkl"
    good.write_bytes(pickle.dumps(["xxunk", "xxpad", "the"]))
    assert read_itos(good) == ["xxunk", "xxpad", "the"]

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(DataError, match=r"refusing to load (posix|os)\.getcwd"):
        read_itos(bad)


def test_servers_bind_loopback_by_default():
    import inspect

    from raylessons.serving import local

    assert inspect.signature(local.start).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(local.serve_forever).parameters["host"].default == "127.0.0.1"
    for path in SOURCES:
        assert "0.0.0.0" not in path.read_text().replace("in ('0.0.0.0', '')", ""), path
