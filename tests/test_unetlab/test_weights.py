"""The U-Net paper's border weight map against one computed by hand, and the map in the tf.data pipeline."""

import numpy as np
import pytest
import tensorflow as tf

from unetlab.data.pipeline import make_batches
from unetlab.data.weights import BorderWeights, border_weight_map
from unetlab.errors import ConfigError


def three_cells(shape=(24, 30)):
    """Class ids: three foreground cells (1) on background (0); two of them 2 px apart."""
    mask = np.zeros(shape, np.int64)
    mask[2:8, 2:10] = 1
    mask[2:8, 12:20] = 1
    mask[13:20, 5:25] = 1
    return mask


def by_hand(mask, w0, sigma, objects_class):
    """eq. 2 of the paper computed the slow way: every pixel's distance to every pixel of every cell."""
    from scipy import ndimage

    objects = mask == 0 if objects_class == "background" else mask > 0
    cells, count = ndimage.label(objects)
    rows, cols = np.indices(mask.shape)
    distances = []
    for index in range(1, count + 1):
        cell_rows, cell_cols = np.nonzero(cells == index)
        d = np.sqrt((rows[..., None] - cell_rows) ** 2 + (cols[..., None] - cell_cols) ** 2).min(axis=-1)
        distances.append(d)
    d1, d2 = np.sort(np.stack(distances), axis=0)[:2]
    classes, counts = np.unique(mask, return_counts=True)
    class_weight = np.zeros(mask.shape)
    for value, n in zip(classes, counts):
        class_weight[mask == value] = mask.size / (len(classes) * n)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma ** 2))
    return class_weight + np.where(objects, 0.0, border)


@pytest.mark.parametrize("objects", ["foreground", "background"])
def test_the_map_equals_equation_2_computed_by_hand(objects):
    mask = three_cells()
    if objects == "background":  # the same cells, drawn as 0 between membranes of 1
        mask = 1 - mask
    expected = by_hand(mask, 10.0, 5.0, objects)
    found = border_weight_map(mask, BorderWeights(w0=10.0, sigma=5.0, objects=objects))
    assert found.dtype == np.float32 and found.shape == mask.shape
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-3)  # atol: border terms below 1e-4 * w0 dropped
    gap = found[4, 10:12]  # the 2-pixel gap between the two nearby cells weighs most
    assert gap.min() > 8 and found[22, 0] < 1.5


def test_without_class_balance_or_border_only_the_other_part_remains():
    mask = three_cells()
    plain = border_weight_map(mask, BorderWeights(w0=0.0, class_balance=False))
    np.testing.assert_array_equal(plain, np.ones(mask.shape, np.float32))
    balanced = border_weight_map(mask, BorderWeights(w0=0.0))
    share = mask.mean()
    np.testing.assert_allclose(balanced[mask == 1], 0.5 / share, rtol=1e-6)
    np.testing.assert_allclose(balanced[mask == 0], 0.5 / (1 - share), rtol=1e-6)


def test_ignored_pixels_weigh_nothing_and_are_no_cells():
    mask = three_cells()
    mask[0, :] = 255
    weights = border_weight_map(mask, BorderWeights(), ignore_index=255)
    assert (weights[0] == 0).all() and (weights[1:] > 0).all()


def test_one_cell_has_no_border_term():
    mask = np.zeros((16, 16), np.int64)
    mask[4:10, 4:10] = 1
    weights = border_weight_map(mask, BorderWeights(class_balance=False))
    np.testing.assert_allclose(weights, 1.0)


@pytest.mark.parametrize("settings, message", [
    (dict(w0=-1.0), r"^w0 must be >= 0"), (dict(sigma=0.0), r"^sigma must be > 0"),
    (dict(objects="cells"), r"^objects must be one of foreground, background"),
])
def test_bad_settings_are_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        BorderWeights(**settings)


def masks_dataset(count=3, size=32):
    rng = np.random.default_rng(1)
    masks = []
    for _ in range(count):
        mask = np.zeros((size, size, 1), np.float32)
        for _ in range(4):
            top, left = rng.integers(0, size - 8, 2)
            mask[top:top + 8, left:left + 8] = 1
        masks.append(mask)
    images = rng.uniform(size=(count, size, size, 1)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((images, np.stack(masks)))


def test_batches_carry_each_masks_map_through_flips_and_quarter_turns():
    """Flips and quarter turns move the map with the mask: it still equals the map of the moved mask."""
    from unetlab.data.augment import AugmentConfig, make_augmenter

    settings = BorderWeights(w0=10.0, sigma=3.0)
    batches = make_batches(masks_dataset(), 3, shuffle=True, seed=0, weights=settings,
                           augment=make_augmenter(AugmentConfig(flip=True, rotate90=True), 0, keyed=True))
    images, masks, weights = next(iter(batches))
    assert weights.shape == (3, 32, 32) and masks.shape == (3, 32, 32, 1)
    for mask, weight in zip(masks.numpy(), weights.numpy()):
        np.testing.assert_allclose(weight, border_weight_map(mask[..., 0], settings), rtol=1e-5)


def test_patches_and_label_crops_cut_the_map_of_the_whole_mask():
    settings = BorderWeights(w0=10.0, sigma=3.0)
    dataset = masks_dataset(count=1)
    [(image, mask)] = [(i.numpy(), m.numpy()) for i, m in dataset]
    whole = border_weight_map(mask[..., 0], settings)
    batches = make_batches(dataset, 1, shuffle=True, seed=0, weights=settings, patch_size=16, label_size=8)
    patch_images, _, patch_weights = next(iter(batches))
    patch = patch_images.numpy()[0, ..., 0]
    [(top, left)] = [(t, c) for t in range(17) for c in range(17) if np.array_equal(image[t:t + 16, c:c + 16, 0], patch)]
    np.testing.assert_allclose(patch_weights.numpy()[0], whole[top + 4:top + 12, left + 4:left + 12], rtol=1e-6)
