"""Optuna search: search-space syntax, pruners, resuming an interrupted study, SQLite retries."""

import re
import sqlite3
import threading

import optuna
import pytest
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from runner.schema import Pruner
from runner.search import build_pruner, open_study, search_space, trials_to_run
from runner.settings import to_config
from runner.tracking import retry_locked
from unetlab.errors import ConfigError


def test_search_space_reads_hydra_sweep_syntax():
    space, fixed = search_space(
        {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "model.dropout": "interval(0.0, 0.3)",
         "model.depth": "range(2, 5)", "loss": "choice(dice, bce_dice)", "trainer.batch_size": "tag(int, interval(2, 8))"},
        [])
    assert space == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "model.dropout": FloatDistribution(0.0, 0.3),
        "model.depth": IntDistribution(2, 4),
        "loss": CategoricalDistribution(["dice", "bce_dice"]),
        "trainer.batch_size": IntDistribution(2, 8),
    }
    assert fixed == []


def test_command_line_sweeps_add_dimensions_and_plain_values_fix_them():
    params = {"model.filters": "choice(16, 32)", "model.depth": "choice(3, 4)"}
    space, fixed = search_space(params, ["hparams_search=optuna", "model.filters=8,16", "model.depth=2"])
    assert space == {"model.filters": CategoricalDistribution([8, 16])}  # the command line wins
    assert fixed == ["hparams_search=optuna", "model.depth=2"]


@pytest.mark.parametrize("value, message", [
    ("interval(0.3, 0.1)", "needs low < high"),
    ("choice([1, 2], [3])", "numbers, strings or booleans"),
    ("choice(1,", "not valid sweep syntax"),
    ("tag(log, interval(0, 1))", "low > 0"),
    ("range(3, 3)", "is empty"),
])
def test_search_space_mistakes_name_the_key(value, message):
    with pytest.raises(ConfigError, match=r"^hparams_search.params.model.dropout: .*" + re.escape(message)
                       + r"|^model.dropout: .*" + re.escape(message)):
        search_space({"model.dropout": value}, [])


def test_ranges_keep_their_last_value_and_go_either_way():
    space, _ = search_space({"model.dropout": "range(0, 1, 0.3)", "model.depth": "range(5, 1, -2)"}, [])
    assert space["model.dropout"] == FloatDistribution(0.0, 0.9, step=0.3)
    assert space["model.depth"] == IntDistribution(3, 5, step=2)


def test_a_plus_override_replaces_the_dimension_of_its_key():
    space, fixed = search_space({"model.filters": "choice(16, 32)"}, ["+model.filters=8"])
    assert space == {} and fixed == ["+model.filters=8"]


@pytest.mark.parametrize("value, override", [
    ("dice", "loss=dice"), ("a,b", "loss='a,b'"), ("1", "loss='1'"), ("true", "loss='true'"), (4, "loss=4")])
def test_trial_values_become_overrides_hydra_reads_back_as_the_same_value(value, override):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from runner.search import trial_overrides

    class Trial:
        params = {"loss": value}

    assert trial_overrides(Trial()) == [override]
    assert OverridesParser.create().parse_override(override).value() == value


def test_a_study_refuses_another_search_space(compose, tmp_path):
    from runner.search import check_same_space

    study = open_study(search_settings(compose, tmp_path), "maximize")
    check_same_space(study, {"model.filters": CategoricalDistribution([2, 4])})
    check_same_space(study, {"model.filters": CategoricalDistribution([2, 4])})  # the same space resumes
    with pytest.raises(ConfigError, match="another search space .*model.filters.*study_name=NEW_NAME"):
        check_same_space(study, {"model.filters": CategoricalDistribution([2, 8])})


@pytest.mark.parametrize("name, pruner_type", [
    ("none", optuna.pruners.NopPruner), ("median", optuna.pruners.MedianPruner),
    ("percentile", optuna.pruners.PercentilePruner), ("hyperband", optuna.pruners.HyperbandPruner),
    ("threshold", optuna.pruners.ThresholdPruner),
])
def test_every_configured_pruner_is_built(compose, tmp_path, name, pruner_type):
    config = to_config(compose(["hparams_search=optuna", f"hparams_search.pruner.name={name}",
                                "hparams_search.pruner.lower=0.5", f"output_dir={tmp_path}"]))
    assert config.hparams_search.pruner.name is Pruner(name)
    assert isinstance(build_pruner(config.hparams_search.pruner), pruner_type)


def test_threshold_pruner_needs_a_bound(compose, tmp_path):
    with pytest.raises(ConfigError, match="hparams_search.pruner.lower"):
        to_config(compose(["hparams_search=optuna", "hparams_search.pruner.name=threshold", f"output_dir={tmp_path}"]))


def search_settings(compose, tmp_path, *overrides):
    return to_config(compose(["hparams_search=optuna", f"hparams_search.storage=sqlite:///{tmp_path}/optuna.db",
                              f"output_dir={tmp_path}", *overrides])).hparams_search


def test_resuming_reruns_an_interrupted_trial_with_its_parameters_and_counts_only_finished_ones(compose, tmp_path):
    settings = search_settings(compose, tmp_path)
    study = open_study(settings, "maximize")
    space = {"model.filters": CategoricalDistribution([2, 4, 8])}
    for value in (0.5, 0.6):
        study.tell(study.ask(space), value)
    left_running = study.ask(space)  # a sweep died while this trial ran

    resumed = open_study(settings, "maximize")
    assert trials_to_run(resumed, 4) == 2  # 2 finished; the interrupted one does not count
    assert resumed.trials[left_running.number].state is TrialState.FAIL
    assert resumed.ask(space).params == left_running.params  # queued again, same parameters
    assert trials_to_run(open_study(settings, "maximize"), 4) == 2  # asked, not yet finished: still 2


def test_a_study_cannot_be_resumed_in_the_opposite_direction(compose, tmp_path):
    settings = search_settings(compose, tmp_path)
    open_study(settings, "maximize")
    with pytest.raises(ConfigError, match="exists with direction maximize"):
        open_study(settings, "minimize")


def test_a_resumed_study_samples_new_points_instead_of_replaying_the_first_run(compose, tmp_path):
    settings = search_settings(compose, tmp_path, "hparams_search.sampler=random")
    space = {"optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True)}
    first = open_study(settings, "maximize")
    first_params = [first.ask(space).params for _ in range(2)]
    resumed = open_study(settings, "maximize")
    assert resumed.ask(space).params not in first_params


@pytest.mark.slow
def test_retry_locked_outlasts_a_locked_sqlite_store(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.create_run(client.create_experiment("locks")).info.run_id
    holder = sqlite3.connect(tmp_path / "mlflow.db", check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the store for 22 s
    threading.Timer(22.0, holder.rollback).start()
    with pytest.raises(Exception, match="database is locked"):
        client.log_metric(run_id, "dice", 0.5)  # MLflow's own wait (20 s) runs out
    retry_locked(client.log_metric, run_id, "dice", 0.7)
    assert [m.value for m in client.get_metric_history(run_id, "dice")] == [0.7]


@pytest.mark.slow
def test_retry_locked_outlasts_a_locked_optuna_store(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="locks", storage=optuna.storages.RDBStorage(url))  # SQLite waits 5 s
    holder = sqlite3.connect(tmp_path / "optuna.db", check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(7.0, holder.rollback).start()
    with pytest.raises(Exception) as raised:
        study.set_user_attr("note", "first")
    assert "database is locked" not in str(raised.value)  # Optuna's own message hides the cause...
    retry_locked(study.set_user_attr, "note", "second")  # ...which retry_locked finds and waits out
    assert study.user_attrs["note"] == "second"


def test_sample_overrides_use_every_choice_once_so_composition_checks_them_all():
    from runner.search import sample_overrides

    space, _ = search_space({"loss": "choice(dice, bce_dice, focal)", "model.filters": "choice(2, 4)",
                             "optimizer.lr": "interval(0.001, 0.01)"}, [])
    samples = sample_overrides(space)
    assert samples[0] == ["loss=dice", "model.filters=2", "optimizer.lr=0.001"]
    assert {o for sample in samples for o in sample} == {
        "loss=dice", "loss=bce_dice", "loss=focal", "model.filters=2", "model.filters=4", "optimizer.lr=0.001"}


def test_resuming_with_other_fixed_settings_warns(compose, tmp_path, caplog):
    from runner.search import check_same_settings

    study = open_study(search_settings(compose, tmp_path), "maximize")
    check_same_settings(study, ["hparams_search=optuna", "trainer.epochs=2"])
    check_same_settings(study, ["hparams_search=optuna", "hparams_search.n_trials=40", "trainer.epochs=2"])
    assert "compared with trials of other settings" not in caplog.text  # more trials: the same study
    check_same_settings(study, ["hparams_search=optuna", "trainer.epochs=3"])
    assert "trainer.epochs=2" in caplog.text and "trainer.epochs=3" in caplog.text


def test_a_trial_whose_job_the_launcher_lost_is_settled_from_what_it_recorded(monkeypatch):
    from hydra_plugins.unetlab_sweeper.optuna_sweeper import OptunaSweeper

    monkeypatch.delenv("UNETLAB_PARENT_RUN_ID", raising=False)
    study = optuna.create_study(direction="maximize")
    space = {"model.filters": CategoricalDistribution([2, 4])}
    finished, lost = study.ask(space), study.ask(space)
    crash = RuntimeError("a worker process was killed")
    OptunaSweeper()._tell(study, finished, crash, {"objective": 0.7})  # it got to the end before the crash
    OptunaSweeper()._tell(study, lost, crash, {})
    assert [(t.state, t.value) for t in study.trials] == [(TrialState.COMPLETE, 0.7), (TrialState.FAIL, None)]
