"""The package's structure: every module imports first on its own, imports run one way, files stay small, the
learner side runs without Ray, and no code outside the label-kind classes switches on a label kind's name."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "raylessons"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def project_imports(path: Path) -> list[tuple[ast.stmt, str, bool]]:
    """(node, imported raylessons module, whether at module level) for every import of the project in `path`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    module_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != name:
                found.append((node, target, id(node) in module_level))
    return found


def test_the_package_has_its_modules():
    assert {"raylessons", "raylessons.data.block", "raylessons.learner", "raylessons.serving.app"} <= set(MODULES)


# ----- every module imports first, alone
_FORK_IMPORTER = """
import importlib, os, sys, traceback
import numpy, pandas, PIL.Image, torch, torchvision, matplotlib  # third-party start-up paid once
import ray, ray.train, ray.tune, ray.serve, fastapi, pydantic
assert not [m for m in sys.modules if m.split('.')[0] == 'raylessons']
failed = []
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a child that has imported nothing of raylessons imports one module
        os.close(read)
        try:
            importlib.import_module(name)
            code = 0
        except BaseException:
            os.write(write, traceback.format_exc().encode()[-3000:])
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, 'rb') as f:
        message = f.read().decode()
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(f"{name}: {message}")
print("\\n".join(failed) or "all imported")
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_first_on_its_own():
    """Each module is the first of raylessons a process imports: a module that works only after another one has
    been imported (an import circle broken by load order) fails here."""
    out = subprocess.run([sys.executable, "-c", _FORK_IMPORTER, *MODULES], capture_output=True, text=True,
                         cwd=ROOT, timeout=600, env={**os.environ, "RAY_AUTH_MODE": "token"})
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert out.stdout.strip() == "all imported"


@pytest.mark.parametrize("module", ["raylessons.data.vision", "raylessons.data.labels", "raylessons.data.labellists",
                                    "raylessons.data.text", "raylessons.learner", "raylessons.inference",
                                    "raylessons.distributed.train", "raylessons.serving.app"])
def test_modules_that_once_had_knots_import_in_a_fresh_interpreter(module):
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


# ----- the learner side without Ray
RAY_FREE = ["raylessons", "raylessons.vision", "raylessons.text", "raylessons.learner", "raylessons.inference",
            "raylessons.vision_learner", "raylessons.text_learner", "raylessons.text_predict", "raylessons.tasks",
            *[m for m in MODULES if m.startswith(("raylessons.data", "raylessons.models", "raylessons.callbacks"))]]


def test_the_learner_data_and_model_modules_do_not_import_ray():
    code = ("import importlib, sys\n"
            f"for name in {sorted(RAY_FREE)!r}:\n"
            "    importlib.import_module(name)\n"
            "from raylessons import *\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"


def test_the_learner_trains_where_ray_cannot_be_imported(tmp_path):
    """A machine with only torch (and the data libraries): Ray's import fails, the lesson's workflow does not."""
    blocker = tmp_path / "ray"  # a package named ray that refuses to import, first on the path
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('ray is not installed here')\n")
    code = ("from functools import partial\n"
            "from raylessons import ImageList, cnn_learner, accuracy_thresh, get_transforms, models, synth\n"
            f"path = synth('planet', {str(tmp_path / 'planet')!r}, n=40, size=32)\n"
            "data = (ImageList.from_csv(path, 'train_v2.csv', folder='train-jpg', suffix='.jpg')\n"
            "        .split_by_rand_pct(0.2, seed=0).label_from_df(label_delim=' ')\n"
            "        .transform(get_transforms(), size=32).databunch(bs=8))\n"
            "learn = cnn_learner(data, models.resnet18, metrics=partial(accuracy_thresh, thresh=0.2), pretrained=False)\n"
            "learn.fit_one_cycle(1, 1e-3)\n"
            "print(len(learn.recorder.epoch_rows))\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "1"


# ----- imports run one way
def import_graph() -> dict[str, set[str]]:
    return {name: {target for _, target, _ in project_imports(path)} for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_the_package_modules():
    assert cycles(import_graph()) == []


# the layers of ARCHITECTURE.md, bottom to top: a module may import its own layer's modules and those below
LAYERS = [
    ["raylessons", "raylessons._surface", "raylessons.errors", "raylessons.device", "raylessons.limits",
     "raylessons.export_meta", "raylessons.answer_types", "raylessons.plotting"],
    ["raylessons.schedule", "raylessons.metrics", "raylessons.models"],
    ["raylessons.data", "raylessons.data.tables", "raylessons.data.show", "raylessons.data.imageio",
     "raylessons.data.transforms", "raylessons.data.tokenize", "raylessons.data.vocab", "raylessons.data.biwi",
     "raylessons.data.synth", "raylessons.data.download"],
    ["raylessons.data.labels"], ["raylessons.data.spatial"], ["raylessons.data.kinds"],
    ["raylessons.data.bunch", "raylessons.data.text_loaders"], ["raylessons.data.text_bunch"],
    ["raylessons.data.labellists"], ["raylessons.data.block"], ["raylessons.data.vision", "raylessons.data.text"],
    ["raylessons.callbacks", "raylessons.recorder"],
    ["raylessons.inference"], ["raylessons.text_predict"],
    ["raylessons.learner_io", "raylessons.summary", "raylessons.tta"], ["raylessons.learner"],
    ["raylessons.vision_learner", "raylessons.text_learner", "raylessons.text_baseline"],
    ["raylessons.interpret"],
    ["raylessons.vision", "raylessons.text"],
    ["raylessons.options", "raylessons.plan"],
    ["raylessons.tasks"],
    ["raylessons.cluster", "raylessons.storage"],
    ["raylessons.distributed", "raylessons.sweep", "raylessons.serving", "raylessons.testing"],
    ["raylessons.client", "raylessons.report", "raylessons.demo", "raylessons.cli"],
]
PACKAGES_ONLY = {"raylessons", "raylessons.data"}  # these names place the package's __init__, not its modules


def layer_of(module: str) -> int | None:
    """The index in LAYERS of the most specific entry naming `module` or a package holding it."""
    found = [(len(entry), i) for i, names in enumerate(LAYERS) for entry in names
             if module == entry or (entry not in PACKAGES_ONLY and module.startswith(entry + "."))]
    return max(found)[1] if found else None


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_imports_point_down_the_layers():
    upward = [f"{m} (layer {layer_of(m)}) imports {target} (layer {layer_of(target)})"
              for m, targets in import_graph().items() for target in sorted(targets) if layer_of(target) > layer_of(m)]
    assert upward == []


def test_the_layer_check_sees_an_upward_import():
    assert layer_of("raylessons.data.labels") < layer_of("raylessons.data.block") < layer_of("raylessons.learner")
    assert layer_of("raylessons.serving.replicas") > layer_of("raylessons.inference")
    assert layer_of("raylessons.data.spatial") == LAYERS.index(["raylessons.data.spatial"])


# the Ray layers and the command line import some layers inside functions, to start fast and to keep Serve's
# ingress free of torch; the cycle test above counts those imports too, so none of them can hide a cycle
LAZY_LAYERS = ("raylessons.cli", "raylessons.demo", "raylessons.serving", "raylessons.distributed", "raylessons.sweep")


def test_project_imports_sit_at_the_top_of_each_module():
    """No import at the bottom of a file (after a definition); below the Ray layers none inside a function."""
    late = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        first_def = next((n.lineno for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                        ast.ClassDef))), None)
        for node, target, module_level in project_imports(path):
            inside = not module_level and not name.startswith(LAZY_LAYERS)
            if inside or (module_level and first_def is not None and node.lineno > first_def):
                late.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    assert late == []


# ----- small files, one place per label kind
def test_no_module_is_over_the_line_limit():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


LABEL_KIND_FILES = {"raylessons/data/labels.py", "raylessons/data/spatial.py", "raylessons/data/kinds.py"}
KIND_NAMES = {"multi_category", "category", "segmentation", "points", "float", "lm"}


def _is_kind_expr(node: ast.AST) -> bool:
    """`kind`, `label_kind`, `x.kind`, `x.label_kind` or `x["label_kind"]`."""
    if isinstance(node, ast.Name):
        return node.id in ("kind", "label_kind")
    if isinstance(node, ast.Attribute):
        return node.attr in ("kind", "label_kind")
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "label_kind"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "label_kind"
    return False


def _kind_literals(node: ast.AST) -> set[str]:
    values = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {v.value for v in values if isinstance(v, ast.Constant) and v.value in KIND_NAMES}


def label_kind_switches(source: str) -> list[int]:
    """Lines comparing a label kind with a kind's name, or building a dict keyed by kinds' names."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_kind_expr(s) for s in sides) and any(_kind_literals(s) for s in sides):
                lines.append(node.lineno)
        elif isinstance(node, ast.Dict):
            if sum(bool(_kind_literals(k)) for k in node.keys if k is not None) >= 2:
                lines.append(node.lineno)
    return lines


def test_the_switch_finder_finds_switches():
    assert label_kind_switches('if label.kind == "segmentation":\n    pass\n') == [1]
    assert label_kind_switches('ok = meta["label_kind"] in ("category", "lm")\n') == [1]
    assert label_kind_switches('LOSSES = {"multi_category": 1, "points": 2}\n') == [1]
    assert label_kind_switches('if label.spatial:\n    pass\nroute = {"planet": 1}\n') == []


def test_no_label_kind_switch_outside_the_label_kind_classes():
    found = [f"{path.relative_to(ROOT)}:{line}" for path in MODULES.values()
             if str(path.relative_to(ROOT)) not in LABEL_KIND_FILES for line in label_kind_switches(path.read_text())]
    assert found == []
