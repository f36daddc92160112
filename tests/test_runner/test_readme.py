"""README.md: every command in its bash blocks still works. Each `python -m runner` line composes to a
valid config; the five-minute tour runs in order on a small dataset, as a user would run it; the
other lines name Makefile targets and programs that exist."""

import re
import shlex
import sys
from pathlib import Path

import pytest

from helpers import ROOT, TINY, run_runner, shapes_dataset, write_pairs

README = (ROOT / "README.md").read_text()
FAKE_RUN_ID = "0123456789abcdef0123456789abcdef"  # stands in for RUN_ID where a command is only composed


def bash_lines(text: str) -> list[str]:
    """The lines of every ```bash block, continuations joined."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def section(title: str) -> str:
    return README.split(f"\n## {title}\n")[1].split("\n## ")[0]


def runner_args(line: str) -> list[str]:
    """The arguments after `python -m runner` (comments dropped)."""
    words = shlex.split(line, comments=True)
    assert words[:3] == ["python", "-m", "runner"], line
    return words[3:]


def key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


RUNNER_LINES = [line for line in bash_lines(README) if line.startswith("python -m runner")]


def jobs(args: list[str]) -> list[list[str]]:
    """The overrides of the jobs a command starts: one, or for a sweep (-m) its first and its last job
    (an interval() of an Optuna space is not expanded: its key is checked on its own)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [arg.replace("RUN_ID", FAKE_RUN_ID) for arg in args if not arg.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = [o for o in parsed if o.is_sweep_override()]
    assert not sweeps or "-m" in args, f"{args}: sweep values without -m"
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    listed = [(o.get_key_element(), list(o.sweep_string_iterator())) for o in sweeps
              if o.is_choice_sweep() or o.is_range_sweep()]
    return [fixed + [f"{name}={values[pick]}" for name, values in listed] for pick in (0, -1)]


@pytest.mark.parametrize("line", RUNNER_LINES)
def test_every_runner_command_of_the_readme_composes_to_a_valid_config(compose, line, tmp_path):
    from omegaconf import OmegaConf

    from runner.settings import to_config

    args = runner_args(line)
    for overrides in jobs(args):
        cfg = compose([*overrides, f"output_dir={tmp_path}"])
        to_config(cfg)
        for arg in args:  # the keys of sweeps that are not expanded (interval) exist too
            if "interval(" in arg:
                assert OmegaConf.select(cfg, key(arg)) is not None, f"{line}: no key {key(arg)}"


def test_every_other_readme_command_names_a_makefile_target_or_an_installed_program():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    for line in bash_lines(README):
        words = shlex.split(line, comments=True)
        if words[:3] == ["python", "-m", "runner"]:
            continue
        if words[0] == "make":
            assert words[1] in targets, f"README runs make {words[1]}, which the Makefile lacks"
        elif words[0] == "source":
            assert words[1] == ".venv/bin/activate" and "VENV ?= .venv" in makefile, line
        else:
            assert (Path(sys.executable).parent / words[0]).exists(), f"{line}: {words[0]} is not installed"


def test_readme_shows_the_two_set_up_commands_and_stays_a_quickstart():
    assert "make train" in README and "make test" in README
    assert len(README.splitlines()) <= 150


@pytest.mark.slow
def test_the_readme_tour_runs_in_order_on_a_small_dataset(tmp_path):
    """Each command of the tour with the tiny config added (less the keys it sets), from one folder,
    as `python -m runner` (in this test process)."""
    from mlflow import MlflowClient

    shapes_dataset(tmp_path / "data", 8, (32, 32))  # data/images, data/masks
    write_pairs(tmp_path / "data" / "test", count=3, size=32)  # data/test/images, data/test/masks: other pictures
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # the tour's default tracking.uri, in its folder
    tiny = [o for o in TINY if not o.startswith(("data.num_", "trainer.epochs="))] + ["trainer.epochs=1"]
    trained = None
    lines = bash_lines(section("A five-minute tour"))
    assert [line.split()[0] for line in lines] == ["source", "python", "python", "python", "mlflow", "python",
                                                   "python"], lines
    for line in lines:
        if not line.startswith("python -m runner"):
            continue  # the venv, the MLflow UI (a server: its program is checked above)
        args = [arg.replace("RUN_ID", trained or "RUN_ID") for arg in runner_args(line)]
        training = not any(arg.startswith("task=") for arg in args)
        given = {key(arg) for arg in args}
        extra = [o for o in tiny if key(o) not in given] if training else []
        result = run_runner(*args, *extra, cwd=tmp_path)
        assert result.returncode == 0, (line, result.stderr[-3000:])
        if "task=check_data" in args:
            assert re.search(r"pairs: +8\n", result.stdout), result.stdout
        if training and "-m" not in args and trained is None:
            experiment = client.get_experiment_by_name("unetlab").experiment_id
            trained = client.search_runs([experiment], order_by=["attributes.start_time DESC"])[0].info.run_id

    experiment = client.get_experiment_by_name("unetlab").experiment_id
    runs = client.search_runs([experiment])
    assert all(run.info.status == "FINISHED" for run in runs)
    sweep = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(sweep) == 2 + 1  # the sweep's two jobs, and the evaluation nested under the trained run
    assert (tmp_path / "evaluation" / "metrics.json").is_file()
    assert sorted(path.name for path in (tmp_path / "masks").glob("s?.png")) == ["s0.png", "s1.png", "s2.png"]
