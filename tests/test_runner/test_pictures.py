"""The run's pictures: predictions.png (image | truth | prediction) and augmentations.png (image | mask)."""

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from runner.pictures import save_augmentation_grid, save_prediction_grid


def pairs(count, size=8):
    images = np.random.default_rng(0).random((count, size, size, 1)).astype("float32")
    masks = (images > 0.5).astype("float32")
    return tf.data.Dataset.from_tensor_slices((images, masks))


def test_prediction_grid_has_a_row_per_sample_and_three_columns(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 1, activation="sigmoid")])
    path = save_prediction_grid(model, pairs(5).batch(2), 3, tmp_path)
    grid = np.asarray(Image.open(path))
    assert path.name == "predictions.png" and grid.shape == (3 * 8, 3 * 8 + 4, 3)  # 2-px gaps


def test_augmentation_grid_shows_image_and_mask_side_by_side(tmp_path):
    path = save_augmentation_grid(pairs(4), 2, tmp_path / "new")
    grid = np.asarray(Image.open(path))
    assert path == tmp_path / "new" / "augmentations.png" and grid.shape == (2 * 8, 2 * 8 + 2, 3)
