import numpy as np

from unetlab.visualize import overlay, pair_grid, prediction_grid


def test_pair_grid_crops_images_to_valid_padding_masks():
    images, masks = np.zeros((2, 40, 40, 1), np.float32), np.ones((2, 24, 24, 1), np.float32)
    assert pair_grid(images, masks).shape == (2 * 24, 2 * 24 + 2, 3)


def test_prediction_grid_rows_show_image_truth_prediction():
    images, masks = np.zeros((3, 16, 16, 1), np.float32), np.zeros((3, 16, 16, 1), np.float32)
    probabilities = np.zeros((3, 16, 16, 4), np.float32)
    assert prediction_grid(images, masks, probabilities).shape == (3 * 16, 3 * 16 + 4, 3)


def test_overlay_tints_only_foreground():
    image = np.full((4, 4), 100, np.uint8)
    classes = np.zeros((4, 4), np.int64)
    classes[0, 0] = 1
    tinted = overlay(image, classes)
    assert tinted.shape == (4, 4, 3) and (tinted[1:, 1:] == 100).all() and (tinted[0, 0] != 100).any()
