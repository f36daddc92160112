import numpy as np
import pytest

from unetlab.visualize import (GAP, HEADER_HEIGHT, LABEL_WIDTH, TILE_SIZE, dice_label, fit_tile, labelled_grid,
                               overlay, pair_grid, prediction_grid)


def test_pair_grid_crops_images_to_valid_padding_masks():
    images, masks = np.zeros((2, 40, 40, 1), np.float32), np.ones((2, 24, 24, 1), np.float32)
    assert pair_grid(images, masks).shape == (2 * 24, 2 * 24 + 2, 3)


def test_labelled_grid_enlarges_small_tiles_by_the_largest_whole_factor_up_to_256_px():
    tile = np.full((16, 24, 3), 50, np.uint8)  # 256 // 24 = 10: 160 x 240, aspect kept
    picture = labelled_grid([[tile, tile], [tile, tile]], ("image", "mask"))
    assert picture.shape == (HEADER_HEIGHT + GAP + 2 * 160 + GAP, 2 * 240 + GAP, 3)
    assert fit_tile(np.zeros((8, 8, 3), np.uint8)).shape == (TILE_SIZE, TILE_SIZE, 3)


def test_labelled_grid_shrinks_large_tiles_to_256_px_on_their_longer_side():
    tile = np.full((600, 400, 3), 50, np.uint8)  # 400 * 256 / 600 = 170.7
    picture = labelled_grid([[tile, tile, tile]], ("image", "truth", "prediction"), ["dice 0.50"])
    assert picture.shape == (HEADER_HEIGHT + GAP + 256, LABEL_WIDTH + GAP + 3 * 171 + 2 * GAP, 3)


def test_labelled_grid_names_the_columns_in_a_header_strip_above_the_tiles():
    tile = np.full((32, 32, 3), 50, np.uint8)
    picture = labelled_grid([[tile, tile]], ("image", "mask"))
    header, tile_pixels = picture[:HEADER_HEIGHT], picture[HEADER_HEIGHT + GAP:, :256]  # the first tile
    assert (tile_pixels == 50).all()
    assert (header != 50).all(axis=-1).mean() > 0.9  # a light strip ...
    assert (header < 100).all(axis=-1).sum() > 20  # ... with dark letters on it


def test_labelled_grid_widens_narrow_cells_to_fit_their_column_name():
    tall = np.zeros((512, 8, 3), np.uint8)  # 256 x 4 once shrunk: narrower than "prediction"
    picture = labelled_grid([[tall]], ("prediction",))
    assert picture.shape[0] == HEADER_HEIGHT + GAP + 256 and picture.shape[1] > 40


def test_labelled_grid_needs_one_tile_per_column():
    with pytest.raises(ValueError, match="one tile per column"):
        labelled_grid([[np.zeros((4, 4, 3), np.uint8)]], ("image", "mask"))


def test_dice_label_of_half_overlapping_binary_masks():
    truth, prediction = np.zeros((8, 8), np.int64), np.zeros((8, 8), np.int64)
    truth[:, :4], prediction[:, 2:6] = 1, 1  # 16 shared of 32 + 32 pixels: 2 * 16 / 64
    assert dice_label(truth, prediction, num_classes=1) == "dice 0.50"
    assert dice_label(truth, truth, num_classes=1) == "dice 1.00"


def test_dice_label_is_the_mean_over_foreground_classes_and_leaves_out_ignored_pixels():
    truth = np.array([[0, 1, 1, 2, 2, 255]])
    prediction = np.array([[0, 1, 1, 2, 0, 2]])  # class 1: 1.0; class 2: 2 * 1 / (2 + 1); 255 ignored
    assert dice_label(truth, prediction, num_classes=3) == f"dice {(1 + 2 / 3) / 2:.2f}"


def test_prediction_grid_rows_show_image_truth_prediction_and_overlay_with_their_dice():
    images = np.zeros((3, 16, 16), np.uint8)  # as decoded: any dtype, no channel axis
    truths, predictions = np.zeros((3, 16, 16, 1), np.float32), np.zeros((3, 16, 16), np.int64)
    picture = prediction_grid(images, truths, predictions, num_classes=4)
    assert picture.shape == (HEADER_HEIGHT + GAP + 3 * 256 + 2 * GAP, LABEL_WIDTH + GAP + 4 * 256 + 3 * GAP, 3)


def test_overlay_tints_only_foreground():
    image = np.full((4, 4), 100, np.uint8)
    classes = np.zeros((4, 4), np.int64)
    classes[0, 0] = 1
    tinted = overlay(image, classes)
    assert tinted.shape == (4, 4, 3) and (tinted[1:, 1:] == 100).all() and (tinted[0, 0] != 100).any()


def test_centre_crop_takes_a_square_or_a_height_and_width():
    from unetlab.visualize import centre_crop

    array = np.arange(6 * 8).reshape(6, 8)
    assert centre_crop(array, 4).shape == (4, 4) and centre_crop(array, 4)[0, 0] == array[1, 2]
    assert centre_crop(array, (6, 4)).shape == (6, 4) and centre_crop(array, (6, 4))[0, 0] == array[0, 2]
