"""evaluate / predict / export from a real tiny training run, as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from helpers import TINY, run_runner

pytestmark = pytest.mark.slow


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def shapes_dataset(root: Path, count: int, size: tuple[int, int]) -> tuple[Path, Path]:
    """Bright discs on a dark background: images and 0/255 masks."""
    rng = np.random.default_rng(len(root.name))
    rows, cols = np.mgrid[: size[0], : size[1]]
    for i in range(count):
        cy, cx, r = rng.integers(8, size[0] - 8), rng.integers(8, size[1] - 8), rng.integers(4, 9)
        mask = ((rows - cy) ** 2 + (cols - cx) ** 2 <= r**2).astype(np.uint8) * 255
        image = np.clip(40 + 0.6 * mask + rng.normal(0, 10, size), 0, 255).astype(np.uint8)
        write_png(root / "images" / f"s{i}.png", image)
        write_png(root / "masks" / f"s{i}.png", mask)
    return root / "images", root / "masks"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on 32x32 shapes, its run id, registered as models:/shapes/1."""
    root = tmp_path_factory.mktemp("inference")
    images, masks = shapes_dataset(root / "train", 8, (32, 32))
    tiny = [o for o in TINY if not o.startswith("data.num_")]
    result = run_runner("data=folder", f"data.images={images}", f"data.masks={masks}", "data.val_fraction=0.25",
                        *tiny, "tracking.register_model=shapes", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])[0]
    return root, run.info.run_id, client


def test_predict_writes_same_size_masks_overlays_and_probabilities(trained):
    root, run_id, _ = trained
    images, _ = shapes_dataset(root / "odd", 2, (61, 97))
    result = run_runner("task=predict", f"run_id={run_id}", f"predict.input={images}", "predict.output=out",
                        "predict.save_probabilities=true", "predict.tta=flips", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    from PIL import Image

    for name in ("s0", "s1"):
        mask = np.asarray(Image.open(root / "out" / f"{name}.png"))
        assert mask.shape == (61, 97) and set(np.unique(mask)) <= {0, 255}
        assert np.load(root / "out" / f"{name}.npy").shape == (61, 97, 1)
        assert np.asarray(Image.open(root / "out" / f"{name}_overlay.png")).shape == (61, 97, 3)


def test_evaluate_matches_a_numpy_reference_and_links_its_source_run(trained):
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
    assert metrics["pixel_error"] == pytest.approx((truth != predicted).mean())
    assert metrics["num_images"] == 3
    assert len((root / "eval" / "per_image.csv").read_text().splitlines()) == 4
    worst = np.asarray(Image.open(root / "eval" / "worst.png"))
    assert worst.shape == (3 * 40, 4 * 48 + 3 * 2, 3)  # 3 images: image | truth | prediction | overlay
    assert "all pixels" in result.stdout + result.stderr  # the printed table
    runs = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id],
                              filter_string="tags.task = 'evaluate'")
    assert runs[0].data.tags["source_run_id"] == run_id and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["dice"] == pytest.approx(metrics["dice"])
    logged = {a.path for a in client.list_artifacts(runs[0].info.run_id, "evaluation")}
    assert {"evaluation/metrics.json", "evaluation/per_image.csv", "evaluation/worst.png"} <= logged


def test_registered_pyfunc_model_predicts_any_size_in_a_fresh_process(trained):
    root, _, _ = trained
    probe = ("import sys, numpy as np, mlflow\n"
             f"mlflow.set_tracking_uri('sqlite:///{root}/mlflow.db')\n"
             "model = mlflow.pyfunc.load_model('models:/shapes/1')\n"
             "mask = model.predict(np.full((45, 77, 1), 200 / 255, np.float32))\n"
             "print(mask.shape, mask.dtype, set(np.unique(mask).tolist()) <= {0, 1})")
    result = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "(45, 77) uint8 True"


def test_export_writes_a_saved_model_with_a_serving_signature(trained):
    root, run_id, _ = trained
    result = run_runner("task=export", f"run_id={run_id}", "export.format=saved_model", "export.output=sm", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    import tensorflow as tf

    assert "serve" in tf.saved_model.load(str(root / "sm")).signatures


def test_export_registers_a_new_version(trained):
    root, run_id, client = trained
    result = run_runner("task=export", f"run_id={run_id}", "export.name=shapes", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {v.version for v in client.search_model_versions("name='shapes'")} == {1, 2}


@pytest.mark.parametrize("args, message", [
    (["run_id=abc", "checkpoint=x.keras"], "needs exactly one model source"),
    ([], "needs exactly one model source: run_id=RUN_ID, model_uri=models:/NAME/VERSION or checkpoint=PATH.keras"),
    (["run_id=0123456789abcdef"], "run_id=0123456789abcdef is not a run in tracking.uri="),
    (["checkpoint=missing.keras"], "checkpoint='missing.keras' is not a .keras file"),
    (["RUN", "predict.input=empty"], "predict.input='empty' holds no images"),
    (["RUN", "predict.input=rgb"], "image has 3 channels but the model expects 1"),
])
def test_bad_requests_fail_with_their_own_one_line_error(trained, args, message):
    root, run_id, _ = trained
    (root / "empty").mkdir(exist_ok=True)
    write_png(root / "rgb" / "colour.png", np.zeros((32, 32, 3), np.uint8))
    args = [f"run_id={run_id}" if a == "RUN" else a for a in args]
    if not any(a.startswith("predict.input") for a in args):
        args.append("predict.input=rgb")
    result = run_runner("task=predict", *args, cwd=root)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
