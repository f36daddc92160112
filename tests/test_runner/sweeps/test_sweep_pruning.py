"""runner.sweeps.pruning: the Keras callback that reports each epoch to a real Optuna trial."""

import optuna
from optuna.distributions import CategoricalDistribution

from runner.sweeps.pruning import TrialPruning

SPACE = {"model.filters": CategoricalDistribution([2, 4])}


class Model:
    """What the callback touches of a Keras model."""

    stop_training = False


def pruning_callback(pruner: optuna.pruners.BasePruner) -> tuple[optuna.Study, TrialPruning]:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    callback = TrialPruning(study.ask(SPACE), "val_dice")
    callback.set_model(Model())
    return study, callback


def test_a_trial_its_pruner_prunes_stops_training_after_that_epoch():
    study, callback = pruning_callback(optuna.pruners.ThresholdPruner(lower=0.6))
    callback.on_epoch_end(0, {"val_dice": 0.7, "loss": 0.2})
    assert callback.pruned_epoch is None and not callback.model.stop_training
    callback.on_epoch_end(1, {"val_dice": 0.5, "loss": 0.1})
    assert callback.pruned_epoch == 1 and callback.model.stop_training
    assert study.trials[0].intermediate_values == {0: 0.7, 1: 0.5}


def test_a_trial_reports_every_epoch_and_runs_on_when_not_pruned():
    study, callback = pruning_callback(optuna.pruners.NopPruner())
    for epoch, value in enumerate((0.1, 0.2, 0.3)):
        callback.on_epoch_end(epoch, {"val_dice": value})
    assert callback.pruned_epoch is None and not callback.model.stop_training
    assert study.trials[0].intermediate_values == {0: 0.1, 1: 0.2, 2: 0.3}


def test_an_epoch_without_a_finite_monitor_value_is_not_reported():
    study, callback = pruning_callback(optuna.pruners.ThresholdPruner(lower=0.6))
    callback.on_epoch_end(0, {"loss": 0.2})
    callback.on_epoch_end(1, {"val_dice": float("nan")})
    assert study.trials[0].intermediate_values == {} and callback.pruned_epoch is None
