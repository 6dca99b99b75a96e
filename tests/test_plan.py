"""Loading a plan: presets, JSON text and plan files; a bad file is a ConfigError naming it."""
from __future__ import annotations

import json

import pytest

from raylessons.errors import ConfigError
from raylessons.plan import load_plan

STAGES = [{"freeze_to": -1, "epochs": 2, "max_lr": "slice(0.01)"}, {"unfreeze": True, "epochs": 3, "max_lr": [1e-5, 1e-3]}]


def test_a_plan_from_a_preset_json_text_and_files(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"stages": STAGES}))
    (tmp_path / "plan.yaml").write_text("- {freeze_to: -1, epochs: 2, max_lr: 'slice(0.01)'}\n"
                                        "- {unfreeze: true, epochs: 3, max_lr: [1.0e-5, 1.0e-3]}\n")
    for plan in (STAGES, json.dumps(STAGES), str(tmp_path / "plan.json"), str(tmp_path / "plan.yaml"), "p"):
        stages = load_plan(plan, {"p": lambda: STAGES})
        assert [(s.freeze_to, s.unfreeze, s.epochs) for s in stages] == [(-1, False, 2), (None, True, 3)]


@pytest.mark.parametrize("name, text, message", [
    ("bad.json", '[{"epochs": 2,', r"plan file .*bad\.json is not valid JSON"),
    ("bad.yaml", "- {epochs: 2\n", r"plan file .*bad\.yaml is not valid YAML"),
    ("scalar.yaml", "5\n", r"scalar\.yaml: a plan is a list of stages .* got int"),
    ("keys.json", '[{"epoch": 2}]', r"stage 0: unknown keys \['epoch'\]"),
])
def test_a_bad_plan_file_is_a_config_error_naming_it(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_plan(str(tmp_path / name))


def test_a_missing_plan_file_and_bad_text_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"plan file not found: .*nope\.yaml"):
        load_plan(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"--plan is neither a preset \(lesson\), a plan file, nor JSON"):
        load_plan("lessn", {"lesson": lambda: STAGES})
    with pytest.raises(ConfigError, match=r"--plan: a plan is a list of stages"):
        load_plan('{"epochs": 2}')
