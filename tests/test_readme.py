"""The README's Python examples run as written, each in a fresh interpreter, in one working directory."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_the_lesson_examples():
    assert len(BLOCKS) == 4
    imports = [line for block in BLOCKS for line in block.splitlines() if line.startswith(("from raylessons", "import "))]
    assert imports and all(line.startswith("from raylessons import ") for line in imports
                           if "raylessons" in line), f"examples import the public surface: {imports}"


@pytest.fixture(scope="module")
def workdir(module_tmp):
    return module_tmp


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=["planet", "camvid_biwi", "ulmfit", "look_inside"])
def test_readme_example_runs_as_written(index, workdir):
    out = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=workdir, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, f"README example {index + 1} failed:\n{out.stderr[-4000:]}"
    if index == 0:  # the Planet example's pictures and export
        for name in ("batch.png", "lr_find.png", "losses.png", "results.png"):
            assert (workdir / name).stat().st_size > 1000, name
        meta = json.loads((workdir / "export-planet" / "meta.json").read_text())
        assert (meta["label_kind"], meta["size"], meta["arch"]) == ("multi_category", 96, "resnet34")
        assert (workdir / "data" / "planet" / "models" / "stage-1-rn34.pth").is_file()
    if index == 2:  # the encoder the classifier loaded
        assert (workdir / "data" / "imdb" / "models" / "fine_tuned_enc.pth").is_file()
    if index == 3:  # top losses, the summary, per-tag thresholds in the export, TensorBoard events, TTA's F2
        assert (workdir / "top_losses.png").stat().st_size > 1000
        meta = json.loads((workdir / "export-planet-tags" / "meta.json").read_text())
        assert set(meta["thresholds"]) == set(meta["classes"])
        assert list((workdir / "data" / "planet" / "runs").glob("*/events.out.tfevents.*"))
        assert "Trainable" in out.stdout or "trainable" in out.stdout
        assert 0.0 <= float(out.stdout.strip().splitlines()[-1]) <= 1.0
