"""examples/*.ipynb run top to bottom on generated data, each in a temp dir, on this interpreter's kernel."""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# each notebook and the show_results PNG it writes into its working directory
NOTEBOOKS = {"planet": "planet_results.png", "camvid": "camvid_results.png",
             "head_pose": "head_pose_results.png", "imdb": "imdb_clas_results.png"}
CELL_TIMEOUT = 300  # seconds; a whole notebook takes about a minute on 2 CPU cores


def execute(nb, cwd: Path):
    """Run every cell of `nb` in a fresh kernel of this interpreter started in `cwd`; a cell error raises
    nbclient's CellExecutionError with the cell's source and traceback."""
    # no kernel directories: only ipykernel's built-in `python3` spec, which runs sys.executable (a `python3`
    # spec installed for another Python, e.g. in ~/.local/share/jupyter, would otherwise win)
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    try:
        NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, kernel_name="python3",
                       resources={"metadata": {"path": str(cwd)}}).execute()
    finally:  # a client given its kernel manager leaves the kernel running (about 1 GB each after a notebook)
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    return nb


def test_every_workflow_has_its_notebook():
    assert sorted(p.stem for p in EXAMPLES.glob("*.ipynb")) == sorted(NOTEBOOKS)


def test_the_kernel_runs_this_interpreter(tmp_path):
    nb = execute(new_notebook(cells=[new_code_cell("import sys; print(sys.prefix)")]), tmp_path)
    assert nb.cells[0].outputs[0].text.strip() == sys.prefix


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_top_to_bottom(name, tmp_path):
    nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells), "examples are stored without outputs"
    execute(nb, tmp_path)
    results = tmp_path / NOTEBOOKS[name]
    assert results.is_file() and results.stat().st_size > 0, f"{name} wrote no {results.name}"
