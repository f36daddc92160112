"""nnU-Net's postprocessing search on a planned model's validation cases, with a network whose output is
known: the CT-normalised intensity itself, cut low enough that background noise leaves specks around the
organ (and dips inside it leave holes), which removing small components or keeping the largest clears."""

import json

import mlflow
import numpy as np
import pytest

from helpers import write_nnunet_dataset
from runner import builders, case_postprocess
from runner.decision_fit import RULES
from unetlab.decision import Decision


def intensity_model(cut: float):
    """A 1x1x1 convolution: sigmoid(50 * (x - cut)) of the normalised intensity x, a sharp cut at `cut`."""
    import keras

    inputs = keras.Input((None, None, None, 1))
    layer = keras.layers.Conv3D(1, 1, activation="sigmoid")
    outputs = layer(inputs)
    layer.set_weights([np.full((1, 1, 1, 1, 1), 50.0, np.float32), np.array([-50.0 * cut], np.float32)])
    return keras.Model(inputs, outputs)


@pytest.fixture
def planned(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("UNETLAB_CACHE_DIR", str(tmp_path / "cache"))
    root = write_nnunet_dataset(tmp_path, cases=4, shape=(12, 32, 32))
    config = make_config(["data=nnunet", f"data.root={root}", "data.val_fraction=0.5", "predict.overlap=0.25",
                          f"output_dir={tmp_path}/out", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"])
    return config, builders.make_splits(config)


def test_rules_that_raise_the_validation_dice_are_chosen_stored_and_logged(planned, tmp_path):
    config, splits = planned
    assert case_postprocess.applies(config, splits) and len(splits.val_files) == 2
    model = intensity_model(cut=-2.0)  # 2 standard deviations below the organ's mean: noise specks outside it
    classes, truths = case_postprocess.validation_cases(config, model, splits)
    assert [c.shape for c in classes] == [t.shape for t in truths] == [(12, 32, 32)] * 2
    client = mlflow.MlflowClient(config.tracking.uri)
    experiment = client.create_experiment("unetlab", artifact_location=str(tmp_path / "artifacts"))
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(config.tracking.uri)
    try:  # a run of its own store and experiment, whatever an earlier test of this process left active
        with mlflow.start_run(experiment_id=experiment) as run:
            fitted = case_postprocess.record(config, model, splits, tmp_path / "preprocessing.json")
    finally:
        mlflow.set_tracking_uri(previous)
    logged = client.get_run(run.info.run_id).data
    chosen = {rule.rule for rule in fitted.rules}
    assert chosen & {"keep_largest", "min_size"}, fitted.describe_rules()  # the specks go
    assert all(rule.label == 1 for rule in fitted.rules)  # the organ's rules only: label 0 is the background
    assert logged.params[RULES] == fitted.describe_rules()
    assert logged.metrics[case_postprocess.DICE_AFTER] > logged.metrics[case_postprocess.DICE_BEFORE] + 0.01
    stored = Decision.from_record(json.loads((tmp_path / "preprocessing.json").read_text())["decision"])
    assert stored.rules == fitted.rules and stored.threshold is None and not stored.temperature
    cleaned = [stored.classes(np.eye(2, dtype=np.float32)[c]) for c in classes]  # the rules as inference applies them
    dice = [2 * np.sum((c == 1) & (t == 1)) / (np.sum(c == 1) + np.sum(t == 1)) for c, t in zip(cleaned, truths)]
    assert np.mean(dice) == pytest.approx(logged.metrics[case_postprocess.DICE_AFTER], abs=1e-6)


def test_no_choice_without_auto_or_without_validation_cases(planned, make_config, tmp_path):
    config, splits = planned
    off = make_config(["data=nnunet", f"data.root={config.data.root}", "decision.postprocess=none",
                       f"output_dir={tmp_path}/out"])
    assert not case_postprocess.applies(off, splits)
    splits.val_files = []
    assert not case_postprocess.applies(config, splits)
