"""Guards on honesty against a real MLflow store: degenerate predictions, evaluation data seen in training."""

import keras
import mlflow
import numpy as np
import pytest

from runner import guards


@pytest.fixture
def store(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("guards")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def constant_model(bias: float):
    """A sigmoid model whose output is sigmoid(bias) everywhere (its kernel is zero)."""
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer="zeros",
                                  bias_initializer=keras.initializers.Constant(bias))(inputs)
    return keras.Model(inputs, outputs)


def batches(count=2):
    rng = np.random.default_rng(0)
    return [(rng.uniform(size=(2, 8, 8, 1)).astype(np.float32), np.zeros((2, 8, 8, 1), np.float32))
            for _ in range(count)]


def test_a_model_predicting_one_class_everywhere_is_warned_about_and_tagged(store, caplog):
    with mlflow.start_run() as run:
        assert guards.check_predictions(constant_model(3.0), batches())
    assert store.get_run(run.info.run_id).data.tags["degenerate_prediction"] == "true"
    assert "predicts class 1 for every validation pixel" in caplog.text


def test_a_model_predicting_both_classes_is_not_tagged(store):
    model = constant_model(0.0)
    model.layers[-1].set_weights([np.full((1, 1, 1, 1), 40.0, np.float32), np.array([-20.0], np.float32)])
    with mlflow.start_run() as run:  # sigmoid(40 x - 20): class 1 where x > 0.5, 0 elsewhere
        assert not guards.check_predictions(model, batches())
    assert "degenerate_prediction" not in store.get_run(run.info.run_id).data.tags


def test_evaluation_images_seen_in_training_are_found_by_content_not_name(store, caplog):
    class Splits:  # validation folders of their own may reuse the training folder's file names
        train_files, val_files = ["a.png", "b.png"], ["a.png"]

    with mlflow.start_run() as run:
        guards.log_image_digests(Splits, {"train": {"a.png": "1" * 64, "b.png": "2" * 64},
                                          "val": {"a.png": "3" * 64}})
    evaluated = {"renamed_a.png": "1" * 64, "x.png": "9" * 64, "copy_of_c.png": "3" * 64}
    tags = guards.check_overlap([run.info.run_id], evaluated)
    assert tags == {"data_overlap": "2/3", "data_overlap_files": "copy_of_c.png,renamed_a.png"}
    assert "2 of 3 evaluation images are in the source run's data (1 trained on, 1 validated on)" in caplog.text
    assert guards.check_overlap([run.info.run_id], {"x.png": "9" * 64}) == {}


def test_a_run_without_digests_has_no_overlap(store):
    with mlflow.start_run() as run:
        pass
    assert guards.check_overlap([run.info.run_id], {"a.png": "1" * 64}) == {}
