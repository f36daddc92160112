"""task=evaluate from a real tiny training run: scores against a NumPy reference, nested under its source run."""

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from helpers import TINY, run_runner, shapes_dataset, write_png

pytestmark = pytest.mark.slow


def test_evaluate_matches_a_numpy_reference_and_nests_under_its_source_run(trained):
    root, run_id, client = trained
    images, masks = shapes_dataset(root / "test", 3, (40, 48))
    common = [f"run_id={run_id}", "data=folder", f"data.images={images}", f"data.masks={masks}"]
    assert run_runner("task=predict", f"run_id={run_id}", f"predict.input={images}", "predict.output=pred",
                      cwd=root).returncode == 0
    result = run_runner("task=evaluate", *common, "evaluate.output=eval", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    from PIL import Image

    truth = np.concatenate([np.asarray(Image.open(masks / f"s{i}.png")).ravel() > 0 for i in range(3)])
    predicted = np.concatenate([np.asarray(Image.open(root / "pred" / f"s{i}.png")).ravel() > 0 for i in range(3)])
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    both = (truth & predicted).sum()
    expected_dice = 1.0 if truth.sum() + predicted.sum() == 0 else 2 * both / (truth.sum() + predicted.sum())
    assert metrics["dice"] == pytest.approx(expected_dice)
    assert metrics["misclassified"] == pytest.approx((truth != predicted).mean())
    assert "pixel_error" not in metrics  # the challenge's name, for its own figure (objects here: foreground)
    assert metrics["num_images"] == 3
    assert metrics["adapted_rand_error"] == pytest.approx(np.mean([rand_error(masks / f"s{i}.png", root / "pred" / f"s{i}.png")
                                                           for i in range(3)]))
    assert len((root / "eval" / "per_image.csv").read_text().splitlines()) == 4
    worst = np.asarray(Image.open(root / "eval" / "worst.png"))
    assert worst.shape == (28 + 2 + 3 * 200 + 2 * 2, 96 + 2 + 4 * 240 + 3 * 2, 3)  # header; Dice strip; 3 x 4 tiles x5
    assert "all pixels" in result.stdout + result.stderr  # the printed table
    experiment = client.get_experiment_by_name("unetlab").experiment_id
    (run,) = client.search_runs([experiment], filter_string="tags.task = 'evaluate' and "
                                                           "params.keras_backend = 'tensorflow'")
    source = client.get_run(run_id)
    assert run.data.tags["source_run_id"] == run_id and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == run_id  # folded under its training run in the runs table
    assert "data_overlap" not in run.data.tags  # held-out images
    assert re.fullmatch(rf"eval-{re.escape(source.info.run_name)}-[0-9a-f]{{4}}", run.info.run_name)
    top_level = client.search_runs([experiment], "tags.`mlflow.parentRunId` IS NULL")  # the UI's rows; children fold
    assert run_id in {r.info.run_id for r in top_level} and "evaluate" not in {r.data.tags.get("task") for r in top_level}
    assert run.data.metrics["eval_dice"] == pytest.approx(metrics["dice"])
    assert run.data.metrics["eval_adapted_rand_error"] == pytest.approx(metrics["adapted_rand_error"])
    assert run.data.params["keras_backend"] == "tensorflow"
    # only what evaluation used: the model source, data, prediction settings; not the default config's
    # model, loss, optimizer or trainer, which the source run may not have had
    params = run.data.params
    assert params["run_id"] == run_id and params["data.images"] == str(images) and params["predict.tta"] == "none"
    assert not [key for key in params if key.startswith(("model.", "loss.", "optimizer.", "trainer.", "augment.",
                                                         "predict.input", "predict.output", "export."))]
    assert all(key.startswith("eval_") for key in run.data.metrics)
    assert not set(run.data.metrics) & set(source.data.metrics)  # no chart mixes evaluation and training
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/metrics.json", "evaluation/per_image.csv", "evaluation/worst.png"} <= logged


def test_evaluate_runs_under_jax_and_the_run_records_the_backend(trained, tmp_path):
    root, run_id, client = trained  # a TensorFlow checkpoint: it loads under JAX
    images, masks = shapes_dataset(tmp_path / "test", 2, (40, 48))
    result = run_runner("task=evaluate", f"run_id={run_id}", "data=folder", f"data.images={images}",
                        f"data.masks={masks}", f"evaluate.output={tmp_path}/eval", cwd=root, backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    (run,) = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id],
                                "tags.task = 'evaluate' and params.keras_backend = 'jax'")
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == run_id
    assert run.data.params["keras_backend"] == "jax"
    assert metrics["num_images"] == 2 and run.data.metrics["eval_num_images"] == 2
    assert run.data.metrics["eval_dice"] == pytest.approx(metrics["dice"])
    assert run.data.metrics["eval_misclassified"] == pytest.approx(metrics["misclassified"])


def test_cells_between_membranes_get_the_challenges_scores_of_the_probabilities_predict_writes(trained, tmp_path):
    """data.objects=background (class 0 the cells): evaluate's ISBI 2012 figures are challenge_scores of the
    cell probabilities that task=predict saves, per image and pooled, with their curves, in MLflow too."""
    from unetlab.challenge import SCORES, challenge_scores

    root, run_id, client = trained
    images, masks = shapes_dataset(tmp_path / "membranes", 2, (40, 48))
    assert run_runner("task=predict", f"run_id={run_id}", f"predict.input={images}", f"predict.output={tmp_path}/p",
                      "predict.save_probabilities=true", cwd=root).returncode == 0
    result = run_runner("task=evaluate", f"run_id={run_id}", "data=folder", f"data.images={images}",
                        f"data.masks={masks}", "data.objects=background", f"evaluate.output={tmp_path}/eval", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    labels = [np.asarray(Image.open(masks / f"s{i}.png")) == 0 for i in range(2)]
    cells = [1.0 - np.load(tmp_path / "p" / f"s{i}.npy")[..., 0] for i in range(2)]  # sigmoid: class 1's probability
    expected = challenge_scores(labels, cells)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for name in SCORES:
        assert metrics[name] == pytest.approx(expected[name].value, abs=1e-9)
        assert metrics[f"{name}_threshold"] == expected[name].threshold
    per_image = (tmp_path / "eval" / "per_image.csv").read_text().splitlines()
    header, first = per_image[0].split(","), per_image[1].split(",")
    assert float(first[header.index("rand_error")]) == pytest.approx(
        challenge_scores(labels[:1], cells[:1])["rand_error"].value, abs=1e-9)
    curves = (tmp_path / "eval" / "challenge_curves.csv").read_text().splitlines()
    assert curves[0] == "threshold,pixel_error,rand_error,v_rand,v_info" and len(curves) == 12
    assert np.asarray(Image.open(tmp_path / "eval" / "challenge_curves.png")).ndim == 3
    (run,) = [r for r in client.search_runs([client.get_experiment_by_name("unetlab").experiment_id],
                                            "tags.task = 'evaluate'") if "eval_v_rand" in r.data.metrics]
    assert run.data.metrics["eval_rand_error"] == pytest.approx(metrics["rand_error"])
    assert run.data.params["evaluate.thresholds"] == "[0.0, 1.0, 0.1]"


def test_evaluate_scores_the_postprocessed_map_and_logs_its_postprocessing(trained, tmp_path):
    """predict.postprocess=watershed: evaluate scores the cells cut along the watershed's lines, the same
    as Watershed(...).apply of the raw probabilities, and the evaluation run records the settings."""
    from unetlab.challenge import challenge_scores
    from unetlab.postprocess import Watershed

    root, run_id, client = trained
    images, masks = shapes_dataset(tmp_path / "cut", 2, (40, 48))
    assert run_runner("task=predict", f"run_id={run_id}", f"predict.input={images}", f"predict.output={tmp_path}/p",
                      "predict.save_probabilities=true", cwd=root).returncode == 0
    raw = [1.0 - np.load(tmp_path / "p" / f"s{i}.npy")[..., 0] for i in range(2)]
    threshold = round(float(np.median(raw)), 4)  # the tiny model's cells: half of the pixels
    watershed = Watershed(threshold=threshold, h=1.0, sigma=0.0)
    cells = [watershed.apply(cell) for cell in raw]
    assert sum(int(np.sum(cut != cell)) for cut, cell in zip(cells, raw)) > 0  # the watershed cuts something
    result = run_runner("task=evaluate", f"run_id={run_id}", "data=folder", f"data.images={images}",
                        f"data.masks={masks}", "data.objects=background", "predict.postprocess=watershed",
                        f"predict.watershed.threshold={threshold}", "predict.watershed.h=1",
                        "predict.watershed.sigma=0", f"evaluate.output={tmp_path}/eval", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    labels = [np.asarray(Image.open(masks / f"s{i}.png")) == 0 for i in range(2)]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    curves = np.loadtxt(tmp_path / "eval" / "challenge_curves.csv", delimiter=",", skiprows=1)
    raw_curve = [value for _, value in challenge_scores(labels, raw)["pixel_error"].curve]
    assert np.abs(curves[:, 1] - raw_curve).max() > 1e-6  # the cut map was scored, not the raw one
    for name, score in challenge_scores(labels, cells).items():
        assert metrics[name] == pytest.approx(score.value, abs=1e-6), name
    (run,) = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id],
                                "params.`predict.postprocess` = 'watershed'")
    assert run.data.params["predict.watershed.h"] == "1.0" and run.data.tags["task"] == "evaluate"


def test_evaluating_images_the_run_trained_on_warns_even_under_other_names(trained, tmp_path):
    import shutil

    root, run_id, client = trained
    images, masks = shapes_dataset(tmp_path / "unseen", 1, (32, 32))  # unlike train/, whose rng differs
    for name, renamed in (("s0", "copy_a"), ("s1", "copy_b")):  # two training pairs, renamed
        shutil.copy(root / "train" / "images" / f"{name}.png", images / f"{renamed}.png")
        shutil.copy(root / "train" / "masks" / f"{name}.png", masks / f"{renamed}.png")
    result = run_runner("task=evaluate", f"run_id={run_id}", "data=folder", f"data.images={images}",
                        f"data.masks={masks}", f"evaluate.output={tmp_path}/eval", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 of 3 evaluation images are in the source run's data" in result.stdout
    (run,) = [r for r in client.search_runs([client.get_experiment_by_name("unetlab").experiment_id],
                                            "tags.task = 'evaluate'") if r.data.tags.get("data_overlap")]
    assert run.data.tags["data_overlap"] == "2/3" and run.data.tags["data_overlap_files"] == "copy_a.png,copy_b.png"


def rand_error(truth_file, predicted_file) -> float:
    """scikit-image's adapted Rand error between the foreground components of two mask files."""
    from scipy import ndimage
    from skimage.metrics import adapted_rand_error

    truth, predicted = (ndimage.label(np.asarray(Image.open(path)) > 0)[0] for path in (truth_file, predicted_file))
    return adapted_rand_error(truth, predicted)[0]


def test_an_ensemble_evaluation_is_tagged_with_its_runs_in_the_sibling_eval_experiment(trained):
    root, first, client = trained
    folds = [f"data.images={root}/train/images", f"data.masks={root}/train/masks", "data.folds=2", "data.fold=1"]
    result = run_runner("data=folder", *folds, *(o for o in TINY if not o.startswith("data.num_")), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = client.get_experiment_by_name("unetlab").experiment_id
    second = client.search_runs([experiment], "tags.task = 'train'", max_results=1)[0].info.run_id
    images, masks = shapes_dataset(root / "ensemble_test", 2, (40, 48))
    result = run_runner("task=evaluate", f"run_id=[{first},{second}]", "data=folder", f"data.images={images}",
                        f"data.masks={masks}", "evaluate.output=ensemble_eval", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"evaluating ensemble of 2 models: runs {first}, {second}" in result.stdout + result.stderr
    assert not client.search_runs([experiment], "tags.ensemble_size = '2'")  # no one run to nest under
    (run,) = client.search_runs([client.get_experiment_by_name("unetlab-eval").experiment_id])
    assert run.info.status == "FINISHED" and "source_run_id" not in run.data.tags
    assert "mlflow.parentRunId" not in run.data.tags
    assert re.fullmatch(rf"eval-ensemble-{first[:8]}\+{second[:8]}-[0-9a-f]{{4}}", run.info.run_name)
    assert run.data.tags["ensemble_run_ids"] == f"{first},{second}" and run.data.tags["ensemble_size"] == "2"
    assert run.data.tags["model_source"] == f"ensemble of 2 models: runs {first}, {second}"


def test_an_evaluation_of_a_checkpoint_goes_to_the_sibling_eval_experiment(trained, tmp_path):
    root, run_id, client = trained
    checkpoints = client.download_artifacts(run_id, "checkpoints", str(tmp_path))  # best.keras, preprocessing.json
    images, masks = shapes_dataset(tmp_path / "test", 2, (32, 32))
    result = run_runner("task=evaluate", f"checkpoint={checkpoints}/best.keras", "data=folder",
                        f"data.images={images}", f"data.masks={masks}", f"tracking.uri=sqlite:///{root}/mlflow.db",
                        "tracking.experiment=checkpoints", "evaluate.output=eval", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = client.search_runs([client.get_experiment_by_name("checkpoints-eval").experiment_id])
    assert re.fullmatch(r"eval-best-[0-9a-f]{4}", run.info.run_name) and "mlflow.parentRunId" not in run.data.tags
    assert "eval_dice" in run.data.metrics and "dice" not in run.data.metrics


def _grey_mask(images, masks):
    write_png(masks / "s1.png", np.full((32, 32), 128, np.uint8))


def _latin1_name(images, masks):
    for folder in (images, masks):
        with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as file:
            file.write((folder / "s0.png").read_bytes())


def _bomb(images, masks):
    Image.new("1", (17000, 17000)).save(images / "s1.png")  # 35 kB that decode to 289 megapixels


@pytest.mark.parametrize("spoil, message", [
    (_grey_mask, "label_values: masks/s1.png has values [128] outside 0/1 and 0/255 (binary masks, "
                 "the model's num_classes=1) in 1024 pixels"),
    (_latin1_name, "file_name: images/caf\\xe9.png: file name not UTF-8, rename it"),
    (_bomb, "undecodable: images/s1.png cannot be decoded (more than MAX_PIXELS=268435456 pixels"),
    ("data.invert_masks=true", "data.invert_masks=true, but the model was trained with invert_masks=false: set "
                               "data.invert_masks=false so that masks are read as in training"),
], ids=["mask_values", "non_utf8_name", "decompression_bomb", "inverted_masks"])
def test_evaluate_checks_the_data_first_and_fails_as_one_line_naming_the_file(trained, tmp_path, spoil, message):
    root, run_id, client = trained
    images, masks = shapes_dataset(tmp_path, 2, (32, 32))
    overrides = [spoil] if isinstance(spoil, str) else spoil(images, masks) or []  # a spoiled file, or a setting
    result = run_runner("task=evaluate", f"run_id={run_id}", "data=folder", f"data.images={images}",
                        f"data.masks={masks}", f"tracking.uri=sqlite:///{root}/mlflow.db", "evaluate.output=eval",
                        *overrides, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "eval").exists()
    experiment = client.get_experiment_by_name("unetlab").experiment_id
    assert not client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'")
