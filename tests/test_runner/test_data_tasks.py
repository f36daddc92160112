"""check_data, the integrity check before training, and folder-data options logged by a training run."""

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from helpers import SHARED_DATA, TINY, run_runner
from runner.tasks.train import train

pytestmark = pytest.mark.slow


def write_pairs(root: Path, count: int = 6, size: int = 40) -> tuple[Path, Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[rng.integers(0, size - 12):, rng.integers(0, size - 12):][:10, :10] = 255
        Image.fromarray(np.clip(60 + 0.5 * mask + rng.normal(0, 8, mask.shape), 0, 255).astype(np.uint8)).save(
            root / "images" / f"s{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    return root / "images", root / "masks"


def test_check_data_lists_every_problem_and_exits_non_zero(tmp_path):
    from PIL import Image

    images, masks = write_pairs(tmp_path)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(masks / "s1.png")  # wrong size
    (masks / "s2.png").unlink()  # image without mask
    Image.fromarray(np.full((40, 40), 7, np.uint8)).save(masks / "s3.png")  # not a class of 3
    result = run_runner("task=check_data", "data=folder", f"data.images={images}", f"data.masks={masks}",
                        "data.num_classes=3", cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "size_mismatch" in result.stdout and "s1.png" in result.stdout
    assert "missing_mask" in result.stdout and "s2" in result.stdout
    assert "label_values" in result.stdout and "[7]" in result.stdout
    assert "pairs:" in result.stdout and "Traceback" not in result.stderr


def test_training_refuses_a_broken_dataset_before_tracking_anything(tmp_path):
    images, masks = write_pairs(tmp_path)
    (images / "s4.png").write_bytes(b"broken")
    tiny = [o for o in TINY if not o.startswith("data.num_")]
    result = run_runner("data=folder", f"data.images={images}", f"data.masks={masks}", *tiny, cwd=tmp_path,
                        timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "undecodable" in errors[0] and "s4.png" in errors[0], result.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.skipif(not (SHARED_DATA / "isbi2012").is_dir(), reason="needs ../shared/data/isbi2012")
def test_isbi2012_config_checks_clean_on_the_shared_slices(tmp_path):
    result = run_runner("task=check_data", "data=isbi2012", f"data.root={SHARED_DATA / 'isbi2012'}", cwd=tmp_path,
                        timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pairs:             24" in result.stdout and "no problems found" in result.stdout


def test_patch_kfold_dataset_normalisation_run_logs_split_statistics_and_fingerprint(compose, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    images, masks = write_pairs(tmp_path, count=6, size=40)
    tiny = [o for o in TINY if not o.startswith("data.num_")]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = compose(tiny + ["data=folder", f"data.images={images}", f"data.masks={masks}", "data.patch_size=16",
                          "data.foreground_oversample=1.0", "data.folds=3", "data.fold=1", "data.normalize=dataset",
                          "augment=basic", f"tracking.uri={uri}", f"output_dir={tmp_path}/out"])
    train(cfg)
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("unetlab").experiment_id])[0]
    assert run.info.status == "FINISHED" and len(run.data.tags["data_fingerprint"]) == 16
    split = json.loads(Path(client.download_artifacts(run.info.run_id, "data/split.json")).read_text())
    assert len(split["val"]) == 2 and len(split["train"]) == 4 and not set(split["val"]) & set(split["train"])
    statistics = json.loads(Path(client.download_artifacts(run.info.run_id, "data/statistics.json")).read_text())
    preprocessing = json.loads(
        Path(client.download_artifacts(run.info.run_id, "checkpoints/preprocessing.json")).read_text())
    assert preprocessing["mean"] == statistics["mean"] and preprocessing["normalize"] == "dataset"
    assert preprocessing["tile_size"] == 16 and preprocessing["resize"] is None
    assert run.inputs.dataset_inputs[0].dataset.digest == run.data.tags["data_fingerprint"]
    assert "augmentations.png" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_preview_writes_the_augmented_pairs_without_training_or_tracking(tmp_path):
    result = run_runner("task=preview", "augment=paper", "data.image_size=32", "tracking.num_predictions=3",
                        "output_dir=preview", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    grid = np.asarray(Image.open(tmp_path / "preview" / "augmentations.png"))
    assert grid.shape == (3 * 32, 2 * 32 + 2, 3)  # rows of image | mask
    assert not (tmp_path / "mlflow.db").exists()
