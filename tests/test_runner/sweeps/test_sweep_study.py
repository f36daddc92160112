"""runner.sweeps.study: pruners, resuming an interrupted study, what a study records of itself."""

import logging
import re
import sqlite3
import threading
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from runner.settings import to_config
from runner.sweeps.space import search_space
from runner.sweeps.study import (build_pruner, check_same_settings, check_same_space, heartbeat, open_study,
                                 reclaim_stale_trials, recorded_space, storage, study_name, trials_to_run)
from runner.tracking import retry_locked
from unetlab.errors import ConfigError


def search_settings(compose, tmp_path, *overrides):
    config = compose(["hparams_search=optuna", f"hparams_search.storage=sqlite:///{tmp_path}/optuna.db",
                      "hparams_search.study_name=unetlab", f"output_dir={tmp_path}", *overrides])
    return to_config(config).hparams_search


def test_the_default_study_name_is_one_per_search_space_direction_and_monitor(compose, tmp_path):
    settings = to_config(compose(["hparams_search=optuna", f"output_dir={tmp_path}"])).hparams_search
    assert settings.study_name is None

    def name(params, arguments=(), direction="maximize", monitor="val_dice"):
        return study_name(settings, "unetlab", search_space(params, list(arguments))[0], direction, monitor)

    filters_lr = name({"model.filters": "choice(16, 32)", "optimizer.lr": "tag(log, interval(1e-4, 1e-2))"})
    assert re.fullmatch(r"unetlab-[0-9a-f]{8}", filters_lr)
    assert name({"optimizer.lr": "tag(log,interval(0.0001,0.01))", "model.filters": "choice(16,32)"}) == filters_lr
    assert name(None, ["optimizer.lr=tag(log, interval(1e-4, 1e-2))", "model.filters=16,32"]) == filters_lr
    assert name({"model.filters": "choice(16, 32)", "optimizer.lr": "interval(1e-4, 1e-2)"}) != filters_lr
    assert name({"model.filters": "choice(16, 32)"}) != filters_lr
    assert name({"model.filters": "choice(16, 32)"}) != name({"model.filters": "choice(16, 32)"}, ["model.depth=2,3"])
    assert name(None, ["model.filters=16,32"], "minimize", "val_loss") != name(None, ["model.filters=16,32"])
    assert name(None, ["model.filters=16,32"], monitor="val_iou") != name(None, ["model.filters=16,32"])
    named = to_config(compose(["hparams_search=optuna", "hparams_search.study_name=mine", f"output_dir={tmp_path}"]))
    assert study_name(named.hparams_search, "unetlab", {}, "maximize", "val_dice") == "mine"  # a given name is kept


def test_opening_a_study_logs_whether_it_is_new_or_resumed(compose, tmp_path, caplog):
    settings = search_settings(compose, tmp_path)
    with caplog.at_level(logging.INFO, logger="runner.sweeps.study"):
        study = open_study(settings, "maximize")
        study.tell(study.ask({"model.filters": CategoricalDistribution([2, 4])}), 0.5)
        open_study(settings, "maximize")
    assert f"study unetlab (new) in sqlite:///{tmp_path}/optuna.db" in caplog.text
    assert "study unetlab (resumed, 1 trial)" in caplog.text


def test_a_study_refuses_another_search_space(compose, tmp_path):
    study = open_study(search_settings(compose, tmp_path), "maximize")
    check_same_space(study, {"model.filters": CategoricalDistribution([2, 4])})
    check_same_space(study, {"model.filters": CategoricalDistribution([2, 4])})  # the same space resumes
    with pytest.raises(ConfigError, match="another search space .*model.filters.*study_name=NEW_NAME"):
        check_same_space(study, {"model.filters": CategoricalDistribution([2, 8])})
    assert recorded_space(study) == {"model.filters": {"name": "CategoricalDistribution",
                                                      "attributes": {"choices": [2, 4]}}}


@pytest.mark.parametrize("name, pruner_type", [
    ("none", optuna.pruners.NopPruner), ("median", optuna.pruners.MedianPruner),
    ("percentile", optuna.pruners.PercentilePruner), ("hyperband", optuna.pruners.HyperbandPruner),
    ("threshold", optuna.pruners.ThresholdPruner),
])
def test_every_configured_pruner_is_built(compose, tmp_path, name, pruner_type):
    config = to_config(compose(["hparams_search=optuna", f"hparams_search.pruner.name={name}",
                                "hparams_search.pruner.lower=0.5", f"output_dir={tmp_path}"]))
    assert config.hparams_search.pruner.name.value == name
    assert isinstance(build_pruner(config.hparams_search.pruner), pruner_type)


def test_threshold_pruner_needs_a_bound(compose, tmp_path):
    with pytest.raises(ConfigError, match="hparams_search.pruner.lower"):
        to_config(compose(["hparams_search=optuna", "hparams_search.pruner.name=threshold", f"output_dir={tmp_path}"]))


def stop_heartbeat(tmp_path, trial, seconds_ago: int = 3600) -> None:
    """Date the last heartbeat of `trial` `seconds_ago` back: its sweep died that long ago."""
    with sqlite3.connect(tmp_path / "optuna.db") as db:
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', ?) WHERE trial_id = ?",
                   (f"-{seconds_ago} seconds", trial._trial_id))


def test_resuming_reruns_an_interrupted_trial_with_its_parameters_and_counts_only_finished_ones(compose, tmp_path):
    settings = search_settings(compose, tmp_path)
    study = open_study(settings, "maximize")
    space = {"model.filters": CategoricalDistribution([2, 4, 8])}
    for value in (0.5, 0.6):
        study.tell(study.ask(space), value)
    left_running = study.ask(space)  # a sweep died while this trial ran: its heartbeat stopped
    with heartbeat(settings, [left_running]):
        pass
    stop_heartbeat(tmp_path, left_running)

    resumed = open_study(settings, "maximize")
    assert [t.number for t in reclaim_stale_trials(settings, resumed)] == [left_running.number]
    assert trials_to_run(resumed, 4) == 2  # 2 finished; the interrupted one does not count
    assert resumed.trials[left_running.number].state is TrialState.FAIL
    assert resumed.ask(space).params == left_running.params  # queued again, same parameters
    assert trials_to_run(open_study(settings, "maximize"), 4) == 2  # asked, not yet finished: still 2


def test_a_second_sweep_reruns_the_trials_of_a_dead_sweep_and_leaves_a_live_sweeps_trials_alone(compose, tmp_path,
                                                                                                   caplog):
    settings = search_settings(compose, tmp_path, "hparams_search.heartbeat_interval=1",
                               "hparams_search.grace_period=3")
    space = {"model.filters": CategoricalDistribution([2, 4, 8])}
    first = open_study(settings, "maximize")
    dead, live = first.ask(space), first.ask(space)
    with heartbeat(settings, [dead]):  # one beat, then its sweep is killed
        pass
    started, finish = threading.Event(), threading.Event()

    def live_sweep() -> None:  # another sweep, still running its trial
        with heartbeat(settings, [live]):
            started.set()
            finish.wait(timeout=30)

    other = threading.Thread(target=live_sweep)
    other.start()
    try:
        started.wait(timeout=30)
        time.sleep(4.5)  # over grace_period=3 since the dead trial's only beat; the live one beats every second
        second = open_study(settings, "maximize")
        with caplog.at_level(logging.INFO, logger="runner.sweeps.study"):
            reclaimed = reclaim_stale_trials(settings, second)
        states = {t.number: t.state for t in second.get_trials(deepcopy=False)}
    finally:
        finish.set()
        other.join()
    assert [t.number for t in reclaimed] == [dead.number]
    assert states[dead.number] is TrialState.FAIL and states[live.number] is TrialState.RUNNING
    assert f"trial {live.number} is running in another sweep" in caplog.text
    assert second.ask(space).params == dead.params  # the dead sweep's trial runs again, with its parameters


def test_the_heartbeat_grace_period_must_outlast_its_interval(compose, tmp_path):
    with pytest.raises(ConfigError, match=re.escape("hparams_search.grace_period must be > "
                                                    "hparams_search.heartbeat_interval=5. Received: grace_period=5")):
        search_settings(compose, tmp_path, "hparams_search.heartbeat_interval=5", "hparams_search.grace_period=5")


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


def test_resuming_with_other_fixed_settings_warns(compose, tmp_path, caplog):
    study = open_study(search_settings(compose, tmp_path), "maximize")
    check_same_settings(study, ["hparams_search=optuna", "trainer.epochs=2"])
    check_same_settings(study, ["hparams_search=optuna", "hparams_search.n_trials=40", "trainer.epochs=2"])
    assert "compared with trials of other settings" not in caplog.text  # more trials: the same study
    check_same_settings(study, ["hparams_search=optuna", "trainer.epochs=3"])
    assert "trainer.epochs=2" in caplog.text and "trainer.epochs=3" in caplog.text


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


def test_a_storage_that_cannot_open_is_named_without_its_password():
    with pytest.raises(ConfigError) as raised:
        storage("postgresql+psycopg2://optuna:hunter2@127.0.0.1:9/optuna")
    assert str(raised.value).startswith(
        "hparams_search.storage='postgresql+psycopg2://optuna:***@127.0.0.1:9/optuna': ")


def test_the_study_records_its_fixed_overrides_without_passwords(compose, tmp_path, caplog):
    study = open_study(search_settings(compose, tmp_path), "maximize")
    check_same_settings(study, ["tracking.uri=http://u:hunter2@mlflow:5000", "trainer.epochs=2"])
    assert study.user_attrs["fixed_overrides"] == ["tracking.uri=http://u:***@mlflow:5000", "trainer.epochs=2"]
    check_same_settings(study, ["tracking.uri=http://u:hunter2@mlflow:5000", "trainer.epochs=2"])
    assert "compared with trials of other settings" not in caplog.text  # the same command resumes quietly
