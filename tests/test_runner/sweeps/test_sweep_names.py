"""A sweep's child runs tell themselves apart in the MLflow UI: each name shows the values its job was given."""

import re

import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from helpers import TINY, run_runner
from runner.sweeps.parent import varying_keys

SHORT = [o for o in TINY if not o.startswith("trainer.epochs=")] + ["trainer.epochs=1"]


def test_the_varying_keys_are_the_command_line_sweeps_and_the_search_params_less_the_fixed_ones():
    grid = OmegaConf.create({"hparams_search": None,
                             "hydra": {"overrides": {"task": ["optimizer.lr=0.001,0.01", "model.filters=4"]}}})
    assert varying_keys(grid) == ["optimizer.lr"]
    search = OmegaConf.create({
        "hparams_search": {"params": {"optimizer.lr": "interval(1e-4, 1e-2)", "model.filters": "choice(16, 32)"}},
        "hydra": {"overrides": {"task": ["model.filters=8", "+loss.smooth=range(1, 3)", "data.fold=0"]}}})
    assert varying_keys(search) == ["optimizer.lr", "loss.smooth"]  # a fixed value wins over a dimension


@pytest.mark.slow
@pytest.mark.parametrize("sweep, pattern", [
    (["optimizer.lr=0.001,0.01"], r"unet-d2-f4-bce_dice-adam-lr=(0\.001|0\.01)-[0-9a-f]{4}"),
    (["hparams_search=optuna", "hparams_search.params=null", "hparams_search.n_trials=2",
      "optimizer.lr=interval(0.001, 0.01)"], r"unet-d2-f4-bce_dice-adam-lr=0\.00\d{1,4}-[0-9a-f]{4}"),
], ids=["grid", "optuna"])
def test_the_child_runs_of_a_sweep_are_named_by_the_values_their_jobs_were_given(tmp_path, sweep, pattern):
    result = run_runner("-m", *SHORT, *sweep, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    children = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id],
                                  "tags.`mlflow.parentRunId` IS NOT NULL")
    names = [run.info.run_name for run in children]
    assert len(names) == 2 and names[0] != names[1], names
    assert all(re.fullmatch(pattern, name) for name in names), names
    if "optimizer.lr=0.001,0.01" in sweep:
        assert sorted(name.split("-")[-2] for name in names) == ["lr=0.001", "lr=0.01"]
