"""task=preview: the pairs training would see, written as a PNG, and the model's layer table, with nothing
trained or tracked."""

import numpy as np
import pytest

from helpers import run_runner

pytestmark = pytest.mark.slow


def test_preview_writes_the_augmented_pairs_without_training_or_tracking(tmp_path):
    result = run_runner("task=preview", "augment=paper", "data.image_size=32", "tracking.num_predictions=3",
                        "output_dir=preview", cwd=tmp_path, timeout=120, with_store=False)
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    grid = np.asarray(Image.open(tmp_path / "preview" / "augmentations.png"))
    assert grid.shape == (3 * 32, 2 * 32 + 2, 3)  # rows of image | mask
    assert not (tmp_path / "mlflow.db").exists()



def test_preview_prints_and_writes_the_layer_table_of_the_model_the_config_builds(tmp_path):
    from unetlab.models import build_unet_plus_plus

    result = run_runner("task=preview", "model=unetpp", "model.depth=2", "model.filters=4", "data.image_size=32",
                        "tracking.num_predictions=1", "output_dir=preview", cwd=tmp_path, timeout=120, with_store=False)
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "preview" / "model_summary.txt").read_text()
    count = build_unet_plus_plus((32, 32, 1), depth=2, filters=4).count_params()
    assert "x0_2_concat" in table and f"Total params: {count:,}" in table and table in result.stdout
    assert f"U-Net++ depth=2 filters=4: 0.0M params ({count:,})" in result.stdout + result.stderr
