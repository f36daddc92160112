"""runner.sweeps.trial: what a job records on its Optuna trial and how the sweeper reads it back."""

import mlflow
import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from runner.settings import to_config
from runner.sweeps.study import open_study
from runner.sweeps.trial import JobTrial, TrialRecord, job_override, job_trial, recorded

SPACE = {"model.filters": CategoricalDistribution([2, 4])}


class Model:
    """What TrialPruning touches of a Keras model."""

    stop_training = False


@pytest.fixture
def mlflow_store(tmp_path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(previous)


def config(compose, tmp_path, *overrides):
    return to_config(compose(["hparams_search=optuna", f"hparams_search.storage=sqlite:///{tmp_path}/optuna.db",
                              "hparams_search.study_name=unetlab", f"output_dir={tmp_path}", *overrides]))


def test_outside_a_search_the_trial_does_nothing(compose, tmp_path):
    trial = job_trial(to_config(compose([f"output_dir={tmp_path}"])))
    assert type(trial) is JobTrial
    assert trial.tags() == {} and trial.callbacks("val_dice") == []
    trial.started("run")
    trial.finished(0.5)


def test_a_job_records_its_run_and_objective_and_the_sweeper_reads_them_back(compose, tmp_path):
    study = open_study(config(compose, tmp_path).hparams_search, "maximize")
    asked = study.ask(SPACE)
    trial = job_trial(config(compose, tmp_path, job_override(asked)))  # the job finds its trial
    assert trial.tags() == {"optuna.study": "unetlab", "optuna.trial": str(asked.number)}
    trial.started("run-7")
    assert recorded(study.trials[asked.number].user_attrs) == TrialRecord("run-7", None, None)
    trial.callbacks("val_dice")
    trial.finished(0.75)
    assert recorded(study.trials[asked.number].user_attrs) == TrialRecord("run-7", 0.75, None)


def test_a_pruned_job_marks_its_run_and_the_sweeper_reads_the_epoch(compose, tmp_path, mlflow_store):
    settings = config(compose, tmp_path, "hparams_search.pruner.name=threshold", "hparams_search.pruner.lower=0.9",
                      "hparams_search.pruner.n_warmup_epochs=0")
    study = open_study(settings.hparams_search, "maximize")
    asked = study.ask(SPACE)
    trial = job_trial(config(compose, tmp_path, "hparams_search.pruner.name=threshold",
                             "hparams_search.pruner.lower=0.9", "hparams_search.pruner.n_warmup_epochs=0",
                             job_override(asked)))
    [pruning] = trial.callbacks("val_dice")
    pruning.set_model(Model())
    with mlflow.start_run(experiment_id=mlflow_store.create_experiment("trials")) as run:
        pruning.on_epoch_end(0, {"val_dice": 0.5})  # below the threshold's lower bound
        trial.finished(0.5)
    finished = mlflow_store.get_run(run.info.run_id)
    assert finished.data.tags["pruned"] == "true" and finished.data.metrics["pruned_at_epoch"] == 0
    assert recorded(study.trials[asked.number].user_attrs) == TrialRecord(None, 0.5, 0)


def test_a_trial_of_an_in_memory_study_is_found_in_the_same_process_only(compose, tmp_path, caplog):
    settings = config(compose, tmp_path, "hparams_search.storage=null", "hparams_search.study_name=in_memory")
    study = open_study(settings.hparams_search, "maximize")
    asked = study.ask(SPACE)
    trial = job_trial(config(compose, tmp_path, "hparams_search.storage=null", "hparams_search.study_name=in_memory",
                             job_override(asked)))
    assert trial.tags()["optuna.trial"] == str(asked.number)
    elsewhere = job_trial(config(compose, tmp_path, "hparams_search.storage=null",
                                 "hparams_search.study_name=another_process", "hparams_search.trial_id=0"))
    assert type(elsewhere) is JobTrial and "pruning is off" in caplog.text


def test_recorded_reads_nothing_from_a_trial_that_recorded_nothing():
    study = optuna.create_study()
    asked = study.ask(SPACE)
    assert recorded(study.trials[asked.number].user_attrs) == TrialRecord(None, None, None)
