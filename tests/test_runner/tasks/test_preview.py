"""task=preview: the pairs training would see, written as a PNG, with nothing trained or tracked."""

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
