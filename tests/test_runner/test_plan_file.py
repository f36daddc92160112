"""A plan as an ordinary experiment file: its text, and how plans in ./plans are found."""

import pytest
import yaml

from runner.plan_file import PlanFile, register_plans, yaml_value
from unetlab.errors import ConfigError


def test_a_plan_file_is_a_global_patch_with_each_reason_beside_its_value():
    document = PlanFile(choices={"model": "nnunet"}, header=["made for a test"])
    document.set("trainer", "batch_size", 2, "at least 2")
    document.set("optimizer", "weight_decay", 3e-5)
    text = document.text()
    assert text.startswith("# @package _global_\n# made for a test\ndefaults:\n  - override /model: nnunet\n")
    assert "  batch_size: 2" in text and "# at least 2" in text
    loaded = yaml.safe_load(text)
    assert loaded["trainer"]["batch_size"] == 2 and loaded["optimizer"]["weight_decay"] == 3e-5  # a float, not '3e-05'


@pytest.mark.parametrize("value, text", [(3e-5, "3.0e-05"), ([[1, 2], [2, 2]], "[[1, 2], [2, 2]]"), (None, "null"),
                                         ("poly", "poly"), (True, "true")])
def test_values_are_one_line_of_yaml(value, text):
    assert yaml_value(value) == text


def test_plans_in_the_working_folder_are_found_and_a_broken_one_is_named_only_when_selected(tmp_path):
    from helpers import run_runner

    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "small.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 3\n")
    (folder / "broken.yaml").write_text("trainer: [unclosed\n")
    shown = run_runner("+experiment=plans/small", "--cfg", "job", cwd=tmp_path, with_store=False)
    assert shown.returncode == 0 and "epochs: 3" in shown.stdout, shown.stderr[-2000:]  # the broken one skipped
    with pytest.raises(ConfigError, match=r"plans/broken.yaml: not a valid plan file"):
        register_plans(folder, argv=["+experiment=plans/broken"])
    register_plans(folder, argv=["+experiment=plans/broken2"])  # another name that starts the same: not it
