"""The README's Optuna commands, run in order in one folder as a user would (with the tiny
config and one trial each): every one works, and each search space gets a study of its own."""

import re
import shlex

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from helpers import ROOT, TINY, run_runner

pytestmark = pytest.mark.slow


def readme_search_commands() -> list[list[str]]:
    """The arguments after `python -m runner` of each command in the first code block of the
    README's "Hyperparameter search" section."""
    section = (ROOT / "README.md").read_text().split("\n## Hyperparameter search\n")[1].split("\n## ")[0]
    block = section.split("```bash\n")[1].split("```")[0].replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert commands and all(c[:4] == ["python", "-m", "runner", "-m"] for c in commands), commands
    return [c[3:] for c in commands]


def key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def shrunk(commands: list[list[str]]) -> list[list[str]]:
    """Each command with the tiny config (less the keys it sets) and one trial more than the
    earlier commands of its search space ran (same arguments, n_trials and hydra settings aside);
    joblib runs its one trial in this process (n_jobs=1: parallel trials are
    test_sweeps_end_to_end's, and worker processes cost ~10 s of imports each)."""
    seen: dict[frozenset, int] = {}
    runs = []
    for args in commands:
        args = [a if key(a) != "hydra.launcher.n_jobs" else "hydra.launcher.n_jobs=1"
                for a in args if key(a) != "hparams_search.n_trials"]
        space = frozenset(a for a in args if not key(a).startswith(("hydra.", "hydra/")))
        seen[space] = seen.get(space, 0) + 1
        tiny = [o for o in TINY if key(o) not in {key(a) for a in args} and key(o) != "trainer.epochs"]
        runs.append([*args, *tiny, "trainer.epochs=1", f"hparams_search.n_trials={seen[space]}"])
    return runs


def test_the_readme_optuna_commands_work_in_order_in_one_folder_one_study_per_search_space(tmp_path):
    names = []
    for args in shrunk(readme_search_commands()):
        result = run_runner(*args, cwd=tmp_path, timeout=600)
        assert result.returncode == 0, (args, result.stderr[-3000:])
        opened = re.search(r"study (\S+) \((new|resumed, \d+ trials?)\) in sqlite:///optuna.db", result.stdout)
        assert opened and "trials finished, running 1 (" in result.stdout, (args, result.stdout[-3000:])
        names.append(opened.groups())

    storage = f"sqlite:///{tmp_path}/optuna.db"
    studies = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    assert len(studies) == 2 and all(re.fullmatch(r"unetlab-[0-9a-f]{8}", n) for n in studies)
    first, custom = names[0][0], names[2][0]  # the example space and the README's own space
    assert names == [(first, "new"), (first, "resumed, 1 trial"), (custom, "new"), (first, "resumed, 2 trials")]
    for name, trials in ((first, 3), (custom, 1)):
        study = optuna.load_study(study_name=name, storage=storage)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * trials, name

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])
    parents = {r.info.run_id: r.data.tags["optuna.study"] for r in runs if r.data.tags.get("sweep") == "parent"}
    assert sorted(parents.values()) == sorted(studies)  # one parent per study, resumed sweeps under it
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert all(c.data.tags["optuna.study"] == parents[c.data.tags["mlflow.parentRunId"]] for c in children)
