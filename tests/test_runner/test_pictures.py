"""The run's pictures: predictions.png (image | truth | prediction | overlay, with each row's Dice),
augmentations.png (image | mask) and weight_map.png (image | mask | weights)."""

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from runner.pictures import save_augmentation_grid, save_prediction_grid, save_weight_map
from unetlab.visualize import GAP, HEADER_HEIGHT, LABEL_WIDTH


def pairs(count, size=8):
    images = np.random.default_rng(0).random((count, size, size, 1)).astype("float32")
    masks = (images > 0.5).astype("float32")
    return tf.data.Dataset.from_tensor_slices((images, masks))


def test_prediction_grid_has_a_labelled_row_per_sample_and_four_columns(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 1, activation="sigmoid")])
    path = save_prediction_grid(model, pairs(5).batch(2), 3, tmp_path)
    grid = np.asarray(Image.open(path))
    assert path.name == "predictions.png"  # 8-px tiles enlarged 32 times, under a header, Dice on the left
    assert grid.shape == (HEADER_HEIGHT + GAP + 3 * 256 + 2 * GAP, LABEL_WIDTH + GAP + 4 * 256 + 3 * GAP, 3)


def test_augmentation_grid_shows_image_and_mask_side_by_side(tmp_path):
    path = save_augmentation_grid(pairs(4), 2, tmp_path / "new")
    grid = np.asarray(Image.open(path))
    assert path == tmp_path / "new" / "augmentations.png" and grid.shape == (2 * 8, 2 * 8 + 2, 3)


def test_weight_map_shows_image_mask_and_weights_under_their_names(tmp_path):
    images = np.zeros((1, 12, 12, 1), "float32")
    masks, weights = np.zeros((1, 8, 8, 1), "float32"), np.ones((1, 8, 8), "float32")  # valid padding
    path = save_weight_map(tf.data.Dataset.from_tensor_slices((images, masks, weights)), tmp_path)
    grid = np.asarray(Image.open(path))
    assert path.name == "weight_map.png" and grid.shape == (HEADER_HEIGHT + GAP + 256, 3 * 256 + 2 * GAP, 3)
