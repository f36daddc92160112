"""runner.postprocess_choice: with predict.postprocess=auto a real tiny training chooses among the
watershed candidates on its validation images and records the choice in its preprocessing.json (the
artifact, the registered model), its Rand errors and a tag; without auto, or for objects that are not
cells between membranes, it chooses nothing."""

import json
from pathlib import Path

import pytest
from mlflow.artifacts import download_artifacts

from helpers import shapes_dataset, train_on_folder_shapes

pytestmark = pytest.mark.slow

CANDIDATES = ["predict.watershed.candidates.threshold=[0.3,0.5]", "predict.watershed.candidates.h=[1.0,2.0]",
              "predict.watershed.candidates.sigma=[0.0]"]


def recorded(client, run_id, tmp_path) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, "checkpoints/preprocessing.json", str(tmp_path))).read_text())


@pytest.fixture(scope="module")
def chosen(tmp_path_factory):
    root = tmp_path_factory.mktemp("auto")
    run, client = train_on_folder_shapes(root, *CANDIDATES, "data.objects=background", "predict.postprocess=auto", "tracking.register_model=cells")
    return root, run, client


def test_the_choice_is_recorded_in_the_models_preprocessing_with_its_rand_errors(chosen, tmp_path):
    root, run, client = chosen
    record = recorded(client, run.info.run_id, tmp_path)["postprocess"]
    assert record["method"] in ("watershed", "none")
    if record["method"] == "watershed":
        assert record["threshold"] in (0.3, 0.5) and record["h"] in (1.0, 2.0) and record["sigma"] == 0.0
        assert run.data.tags["postprocessing"] == f"watershed threshold={record['threshold']:g} h={record['h']:g} sigma=0"
    else:
        assert run.data.tags["postprocessing"] == "none"
    metrics = run.data.metrics
    assert 0.0 <= metrics["postprocess_val_rand_error"] <= metrics["postprocess_val_rand_error_uncut"] <= 1.0
    registered = client.get_model_version_download_uri("cells", "1")
    folder = download_artifacts(artifact_uri=registered, dst_path=str(tmp_path / "registered"),
                                tracking_uri=f"sqlite:///{root}/mlflow.db")
    assert [json.loads(path.read_text())["postprocess"] for path in
            Path(folder).rglob("preprocessing.json")] == [record]


def test_the_choice_is_the_one_of_the_validation_images(chosen, make_config, tmp_path, monkeypatch):
    """Chosen again in this process from the run's model and its validation images: the same record."""
    from runner import builders, postprocess_choice
    from runner.model_source import load_model_source

    root, run, client = chosen
    monkeypatch.chdir(root)
    images, masks = root / "train" / "images", root / "train" / "masks"
    config = make_config(["data=folder", f"data.images={images}", f"data.masks={masks}", "data.val_fraction=0.25",
                          "data.objects=background", "predict.postprocess=auto", "data.image_size=32",
                          *CANDIDATES, f"tracking.uri=sqlite:///{root}/mlflow.db", f"run_id={run.info.run_id}",
                          f"output_dir={tmp_path}/out"])
    splits = builders.make_splits(config)
    split = Path(client.download_artifacts(run.info.run_id, "data/split.json", str(tmp_path)))
    assert [Path(image).name for image, _ in splits.val_pairs] == json.loads(split.read_text())["val"]
    assert postprocess_choice.applies(config, splits)
    choice = postprocess_choice.choose_on_validation(config, load_model_source(config).model, splits)
    assert choice.as_dict() == recorded(client, run.info.run_id, tmp_path)["postprocess"]
    assert len(choice.trials) == 4


@pytest.mark.parametrize("overrides, chooses", [
    (("data.objects=background", "predict.postprocess=auto"), True),
    (("data.objects=background", "predict.postprocess=watershed"), False),  # the user's own settings
    (("predict.postprocess=auto",), False),  # data.objects=foreground: not cells between membranes
    (("data.objects=background", "predict.postprocess=auto", "data.num_classes=3", "loss=ce"), False),
])
def test_only_auto_on_cells_between_membranes_chooses(make_config, tmp_path, overrides, chooses):
    from runner import builders, postprocess_choice

    images, masks = shapes_dataset(tmp_path / "data", 4, (32, 32))
    config = make_config(["data=folder", f"data.images={images}", f"data.masks={masks}", "data.image_size=32",
                          *overrides, f"output_dir={tmp_path}/out"])
    assert postprocess_choice.applies(config, builders.make_splits(config)) is chooses


def test_a_run_without_auto_records_no_choice(tmp_path):
    run, client = train_on_folder_shapes(tmp_path, *CANDIDATES, "data.objects=background")
    assert recorded(client, run.info.run_id, tmp_path)["postprocess"] is None
    assert "postprocessing" not in run.data.tags and "postprocess_val_rand_error" not in run.data.metrics
