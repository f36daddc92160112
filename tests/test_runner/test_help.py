"""`python -m runner --help` (runner.help): usage, the tasks, every config group of conf/ with its
options, the experiment presets and the composed config; no Hydra internals, no TensorFlow."""

import subprocess
import sys

import pytest
import yaml

from helpers import ROOT, run_runner
from runner.help import config_groups, wants_help
from runner.schema import Task

CONF, EXPERIMENTS = ROOT / "conf", ROOT / "experiments"
DEFAULTS = {k: v for item in yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
            if isinstance(item, dict) for k, v in item.items()}


def conf_groups():
    """The group folders of conf/ with their options, read from the source tree."""
    return {folder.name: sorted(f.stem for f in folder.glob("*.yaml"))
            for folder in CONF.iterdir() if folder.is_dir() and any(folder.glob("*.yaml"))}


def listed(text):
    """{first word: the words after it} for the indented lines of the help (tasks and groups)."""
    rows = [line.split("   (")[0].split() for line in text.splitlines() if line.startswith("  ") and line.strip()]
    return {row[0]: [word.rstrip(",") for word in row[1:]] for row in rows}


@pytest.mark.parametrize("argv, expected", [
    (["--help"], True), (["-h"], True), (["model.filters=64", "--help"], True),
    (["--hydra-help"], False), ([], False), (["model.filters=64"], False), (["--cfg", "job"], False),
])
def test_wants_help_for_help_flags_only(argv, expected):
    assert wants_help(argv) is expected


def test_config_groups_are_the_folders_of_conf_and_the_experiments():
    groups = config_groups()
    assert {g: o for g, o in groups.items() if g != "experiment"} == conf_groups()
    assert groups["experiment"] == sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))


@pytest.fixture(scope="module")
def shown(tmp_path_factory):
    result = run_runner("--help", cwd=tmp_path_factory.mktemp("help"), timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_help_lists_the_tasks_with_what_they_do(shown):
    rows = listed(shown)
    for task in Task:
        assert len(rows[task.value]) >= 3, f"no description for task {task.value}"


@pytest.mark.slow
def test_help_lists_every_group_and_option_with_the_default_marked(shown):
    rows = listed(shown)
    for group, options in conf_groups().items():
        assert [o.rstrip("*") for o in rows[group]] == options, group
        if DEFAULTS.get(group):
            assert f"{DEFAULTS[group]}*" in rows[group], group
    assert rows["experiment"] == sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))
    assert "hparams_search" in rows and "+experiment=NAME" in shown


@pytest.mark.slow
def test_help_says_what_unetlab_is_with_examples_and_where_results_go(shown):
    assert shown.startswith("unetlab: U-Net semantic segmentation")
    examples = [line.split("python -m runner", 1)[1] for line in shown.split("examples:")[1].split("results:")[0]
                .splitlines() if "python -m runner" in line]
    assert len(examples) >= 5 and any("task=evaluate" in e for e in examples) and any(" -m " in e for e in examples)
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in shown and "outputs/DATE/TIME-UNIQUE" in shown


@pytest.mark.slow
def test_help_hides_hydra_internals_and_shows_the_composed_config(shown):
    assert "schema/" not in shown and "powered by Hydra" not in shown
    assert "--cfg job" in shown and "--hydra-help" in shown
    assert "not composed" not in shown
    assert "model:\n  name: unet\n" in shown


@pytest.mark.slow
def test_help_composes_the_given_overrides_and_leaves_sweeps_out(tmp_path):
    result = run_runner("--help", "model.filters=12", "-m", "loss=dice,focal", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "config for model.filters=12 -m loss=dice,focal" in result.stdout
    assert "  filters: 12\n" in result.stdout and "  name: bce_dice\n" in result.stdout  # the default loss


@pytest.mark.slow
def test_help_reports_a_bad_override_and_still_exits_0(tmp_path):
    result = run_runner("--help", "model.filtres=12", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "not composed: Could not override 'model.filtres'" in result.stdout


@pytest.mark.slow
def test_help_imports_neither_tensorflow_nor_keras_nor_mlflow(tmp_path):
    probe = ("import runpy, sys\nsys.argv = ['runner', '--help']\n"
             "runpy.run_module('runner', run_name='__main__')\n"
             "print('heavy:', sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'mlflow'}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout
