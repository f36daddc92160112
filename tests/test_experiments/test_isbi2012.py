"""The ISBI 2012 presets end to end on the shared slices, shrunk to a few steps so they never rot:
hold out test slices, train +experiment=isbi2012_cpu (border-weighted loss, elastic augmentation,
membranes as the positive class), evaluate the held-out slices with the Rand error."""

import json
import subprocess
import sys

import numpy as np
import pytest
from mlflow import MlflowClient

from helpers import ROOT, SHARED_DATA, run_runner
from unetlab.precision import resolve

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (SHARED_DATA / "isbi2012").is_dir(), reason="needs ../shared/data/isbi2012")]

SHRUNK = ["model.filters=4", "model.depth=2", "trainer.epochs=1", "trainer.steps_per_epoch=2", "trainer.batch_size=2",
          "data.patch_size=64", "predict.tile_size=64", "trainer.verbose=0", "tracking.num_predictions=2"]


def test_holdout_split_links_the_last_slices_as_test(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "experiments" / "isbi2012_holdout.py"),
                             str(SHARED_DATA / "isbi2012"), str(tmp_path / "split"), "--test", "4"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (SHARED_DATA / "isbi2012" / "image").iterdir())
    for side, expected in (("train", names[:-4]), ("test", names[-4:])):
        for folder in ("image", "label"):
            assert sorted(p.name for p in (tmp_path / "split" / side / folder).iterdir()) == expected


def test_isbi2012_cpu_trains_and_its_model_is_evaluated_with_the_rand_error(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "experiments" / "isbi2012_holdout.py"), str(SHARED_DATA / "isbi2012"),
                    str(tmp_path / "split"), "--test", "2"], check=True, capture_output=True)
    train = run_runner("+experiment=isbi2012_cpu", f"data.root={tmp_path / 'split' / 'train'}", *SHRUNK,
                       cwd=tmp_path, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id], "tags.task = 'train'")
    assert run.info.status == "FINISHED" and run.data.params["loss.name"] == "weighted_bce"
    assert run.data.params["data.invert_masks"] == "True" and run.data.params["augment.elastic_grid"] == "3"
    assert run.data.params["trainer.precision"] == "auto" and run.data.params["precision"] == resolve("auto")[0]
    assert "weight_map.png" in {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert "failed_end_steps" not in run.data.tags

    evaluate = run_runner("task=evaluate", "data=isbi2012", f"data.root={tmp_path / 'split' / 'test'}",
                          f"run_id={run.info.run_id}", "predict.tile_size=64", "evaluate.output=eval", cwd=tmp_path,
                          timeout=600)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_images"] == 2 and 0.0 <= metrics["rand_error"] <= 1.0 and metrics["vi"] >= 0.0
    assert 0.0 <= metrics["pixel_error"] <= 1.0 and 0.0 <= metrics["v_rand"] <= 1.0  # the challenge's own
    per_image = (tmp_path / "eval" / "per_image.csv").read_text().splitlines()
    assert per_image[0].split(",")[-12:-8] == ["adapted_rand_error", "vi", "vi_split", "vi_merge"]
    assert per_image[0].split(",")[-8:-4] == ["pixel_error", "rand_error", "v_rand", "v_info"]
    assert np.isfinite([float(value) for value in per_image[1].split(",")[1:]]).all()
