"""task=evaluate from a real tiny training run: scores against a NumPy reference, linked to its source run."""

import json

import numpy as np
import pytest

from helpers import run_runner, shapes_dataset

pytestmark = pytest.mark.slow


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
