"""runner.sweeps.report: the plots, trials.csv and search_space.json a search leaves behind."""

import json

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution

from runner.sweeps.report import describe_best, write_report
from runner.sweeps.study import check_same_space

SPACE = {"model.filters": CategoricalDistribution([2, 4]), "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True)}


def study_with(values: list[float]) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    check_same_space(study, SPACE)
    for value in values:
        trial = study.ask(SPACE)
        for epoch in range(2):
            trial.report(value * (epoch + 1) / 2, epoch)
        study.tell(trial, value)
    return study


def test_one_complete_trial_gets_history_learning_curves_table_and_space(tmp_path):
    paths = write_report(study_with([0.5]), tmp_path / "optuna")
    assert sorted(p.name for p in paths) == ["intermediate_values.png", "optimization_history.png",
                                             "search_space.json", "trials.csv"]
    assert all(p.stat().st_size > 0 for p in paths)
    space = json.loads((tmp_path / "optuna" / "search_space.json").read_text())
    assert space["optimizer.lr"]["attributes"] == {"low": 1e-4, "high": 1e-2, "log": True, "step": None}


def test_two_complete_trials_add_parallel_coordinates_and_importances(tmp_path):
    paths = write_report(study_with([0.5, 0.7]), tmp_path / "optuna")
    assert {"parallel_coordinate.png", "param_importances.png"} <= {p.name for p in paths}


def test_describe_best_names_the_best_complete_trial_as_overrides():
    study = study_with([0.5, 0.7])
    best = study.trials[1]
    assert describe_best(study) == (f"best trial 1: 0.7000 with model.filters={best.params['model.filters']} "
                                    f"optimizer.lr={best.params['optimizer.lr']}")
    assert describe_best(optuna.create_study()) == "no trial completed"


def test_the_trial_table_and_space_show_no_password(tmp_path):
    study = optuna.create_study(direction="maximize")
    space = {"hparams_search.storage": CategoricalDistribution(["sqlite:///a.db", "postgresql://u:hunter2@h/db"])}
    check_same_space(study, space)
    study.enqueue_trial({"hparams_search.storage": "postgresql://u:hunter2@h/db"})
    study.tell(study.ask(space), 0.5)
    write_report(study, tmp_path / "optuna")
    for name in ("trials.csv", "search_space.json"):
        text = (tmp_path / "optuna" / name).read_text()
        assert "postgresql://u:***@h/db" in text and "hunter2" not in text, name
