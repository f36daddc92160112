"""Augmentation: geometry applied alike to image and mask, class ids kept, seeded repeatability."""

from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from unetlab.data.augment import AugmentConfig, augment_pair, make_augmenter
from unetlab.errors import ConfigError
from unetlab_samples import as_arrays

# The U-Net paper's recipe (as conf/augment/paper.yaml): rotation, shift, elastic grid, gray values.
PAPER = AugmentConfig(rotation=15.0, shift=0.1, elastic_grid=3, elastic_sigma=10.0, brightness=0.05, contrast=0.1,
                      gamma=0.1)
FLIPS_AND_TURNS = AugmentConfig(flip=True, rotate90=True)
# Every geometric option on, intensity off.
ALL_GEOMETRY = replace(PAPER, flip=True, rotate90=True, scale=(0.8, 1.25), brightness=0.0, contrast=0.0, gamma=0.0)
INTENSITY_ONLY = AugmentConfig(brightness=0.2, contrast=0.3, gamma=0.3, noise=0.05, blur=1.5)


def label_maps(num_images=8, size=32, num_classes=4, seed=0):
    """(N, size, size, 1) float32 class ids: a few discs and rectangles per image, cheap to make."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size] / size
    labels = np.zeros((num_images, size, size), np.float32)
    for label in labels:
        for class_id in range(1, num_classes):
            (y, x), (ry, rx) = rng.uniform(0.2, 0.8, 2), rng.uniform(0.08, 0.2, 2)
            disc = ((rows - y) / ry) ** 2 + ((cols - x) / rx) ** 2 <= 1
            box = (abs(rows - y) <= ry) & (abs(cols - x) <= rx)
            label[disc if class_id % 2 else box] = class_id
    return labels[..., None]


LABELS = label_maps()
BINARY = (LABELS > 0).astype(np.float32)
IMAGES = np.clip(0.2 + 0.15 * LABELS + np.random.default_rng(1).normal(0, 0.05, LABELS.shape), 0, 1)
IMAGES = np.repeat(IMAGES, 3, axis=-1).astype(np.float32)


def pairs(images, masks):
    return tf.data.Dataset.from_tensor_slices((images, masks))


def test_geometry_moves_image_and_mask_together():
    # The image *is* the binary mask: bilinear-then-threshold must match nearest-neighbour
    # except on a thin band of boundary pixels (measured 99.6-99.7% over seeds 0-5).
    images, masks = as_arrays(pairs(BINARY, BINARY).apply(make_augmenter(ALL_GEOMETRY, seed=0)))
    assert np.mean((images > 0.5) == (masks > 0.5)) >= 0.98
    assert np.mean(masks != BINARY) > 0.05  # the masks really moved


def test_masks_keep_only_their_class_ids():
    images, masks = as_arrays(pairs(IMAGES, LABELS).apply(make_augmenter(ALL_GEOMETRY, seed=0)))
    assert set(np.unique(masks)) <= set(np.unique(LABELS)) == {0.0, 1.0, 2.0, 3.0}
    assert np.mean(masks != LABELS) > 0.05
    assert images.shape == IMAGES.shape and 0.0 <= images.min() and images.max() <= 1.0


def test_same_seed_repeats_other_seed_and_next_epoch_differ():
    def batches(seed):
        return pairs(IMAGES[:4], LABELS[:4]).cache().apply(make_augmenter(PAPER, seed=seed)).batch(4)

    run = batches(seed=7)
    epoch1, epoch2 = as_arrays(run), as_arrays(run)
    again, other = as_arrays(batches(seed=7)), as_arrays(batches(seed=8))
    np.testing.assert_array_equal(epoch1[0], again[0])
    np.testing.assert_array_equal(epoch1[1], again[1])
    assert not np.array_equal(epoch1[0], other[0])
    assert not np.array_equal(epoch1[0], epoch2[0])


def test_augment_pair_is_a_function_of_its_seed():
    seed = tf.constant([3, 4], tf.int64)
    one = augment_pair(IMAGES[0], LABELS[0], seed, PAPER)
    two = augment_pair(IMAGES[0], LABELS[0], seed, PAPER)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    assert one[0].shape == (32, 32, 3) and one[1].shape == (32, 32, 1)


def test_intensity_only_leaves_mask_untouched():
    image, mask = augment_pair(IMAGES[0], LABELS[0], tf.constant([1, 2]), INTENSITY_ONLY)
    np.testing.assert_array_equal(mask, LABELS[0])
    assert not np.allclose(image, IMAGES[0])
    assert 0.0 <= np.min(image) and np.max(image) <= 1.0


def test_default_config_is_the_identity():
    image, mask = augment_pair(IMAGES[0], LABELS[0], tf.constant([1, 2]), AugmentConfig())
    np.testing.assert_array_equal(image, IMAGES[0])
    np.testing.assert_array_equal(mask, LABELS[0])
    dataset = pairs(IMAGES, LABELS)
    assert dataset.apply(make_augmenter(AugmentConfig(), seed=0)) is dataset


def test_flips_and_quarter_turns_only_permute_pixels_and_keep_non_square_shapes():
    image = tf.reshape(tf.range(6 * 10, dtype=tf.float32) / 60, [6, 10, 1])
    mask = tf.cast(image > 0.5, tf.float32)
    for seed in range(6):
        new_image, new_mask = augment_pair(image, mask, tf.constant([seed, 0]), FLIPS_AND_TURNS)
        assert new_image.shape == (6, 10, 1)
        np.testing.assert_array_equal(np.sort(new_image.numpy().ravel()), np.sort(image.numpy().ravel()))
        np.testing.assert_array_equal(new_mask.numpy(), (new_image.numpy() > 0.5).astype(np.float32))


def test_flips_and_quarter_turns_are_the_same_when_folded_into_the_resampling():
    image = tf.reshape(tf.range(16 * 16, dtype=tf.float32), [16, 16, 1])
    resampled = AugmentConfig(flip=True, rotate90=True, scale=(1.0, 1.000001))  # any warp takes the resampling path
    for seed in range(8):
        key = tf.constant([seed, 0])
        permuted, _ = augment_pair(image, image, key, FLIPS_AND_TURNS)
        _, nearest = augment_pair(image, image, key, resampled)
        np.testing.assert_array_equal(nearest, permuted)


@pytest.mark.parametrize("overrides, message", [
    (dict(scale=(1.2, 0.8)), "scale must be (low, high) with 0 < low <= high. Received: scale=(1.2, 0.8)"),
    (dict(scale=(0.9,)), "scale must be (low, high) with 0 < low <= high. Received: scale=(0.9,)"),
    (dict(rotation=-5.0), "rotation must be a number >= 0. Received: rotation=-5.0"),
    (dict(rotation=270.0), "rotation must be in [0, 180] degrees. Received: rotation=270.0"),
    (dict(shift=1.5), "shift must be a fraction of the image size in [0, 1). Received: shift=1.5"),
    (dict(elastic_grid=1), "elastic_grid must be 0 (off) or an integer >= 2. Received: elastic_grid=1"),
    (dict(noise="abc"), "noise must be a number >= 0. Received: noise='abc'"),
    (dict(flip="yes"), "flip must be true or false. Received: flip='yes'"),
    (dict(contrast=1.0), "contrast must be in [0, 1) so the contrast factor stays positive. "
                         "Received: contrast=1.0"),
])
def test_invalid_values_name_the_field_and_the_value(overrides, message):
    with pytest.raises(ConfigError) as error:
        AugmentConfig(**overrides)
    assert str(error.value) == message


def test_defaults_switch_everything_off_and_lists_become_tuples():
    off = AugmentConfig()
    assert not (off.flip or off.rotate90) and off.scale == (1.0, 1.0) and off.elastic_grid == 0
    assert all(getattr(off, name) == 0.0 for name in ("rotation", "shift", "elastic_sigma", "brightness", "contrast",
                                                      "gamma", "noise", "blur"))
    assert AugmentConfig(scale=[0.9, 1.1]).scale == (0.9, 1.1)
    assert hash(AugmentConfig(scale=[0.9, 1.1])) == hash(AugmentConfig(scale=(0.9, 1.1)))


def test_volumes_are_flipped_along_every_axis_and_turned_in_their_planes_exactly():
    """A volume (D, H, W, C) takes flips and quarter turns as exact voxel permutations, its mask moving with it;
    over seeds every one of the three axes gets flipped."""
    volume = tf.reshape(tf.range(4 * 6 * 6, dtype=tf.float32), (4, 6, 6, 1))
    mask = tf.cast(volume > 70, tf.float32)
    config = AugmentConfig(flip=True, rotate90=True)
    seen_depth_flip = False
    for seed in range(12):
        image, moved = augment_pair(volume, mask, tf.constant([seed, 1], tf.int64), config)
        assert image.shape == (4, 6, 6, 1)
        np.testing.assert_array_equal(np.sort(image.numpy().ravel()), np.sort(volume.numpy().ravel()))
        np.testing.assert_array_equal(moved.numpy(), (image.numpy() > 70).astype(np.float32))
        seen_depth_flip |= image.numpy()[0, :, :, 0].min() >= 3 * 36  # slice 0 now holds the last slice's values
    assert seen_depth_flip


def test_a_volume_rotates_in_its_planes_as_each_slice_would_alone():
    """Rotation of a volume is about its depth axis: every (H, W) slice turns as the 2D warp turns that slice
    with the same seed (trilinear sampling with no depth offset is bilinear), its mask with it, exactly."""
    labels = label_maps(num_images=3, size=24)
    volume, mask = labels / 3.0, labels  # (3, 24, 24, 1): three different slices
    config = AugmentConfig(rotation=40.0)
    key = tf.constant([5, 1], tf.int64)
    image, moved = augment_pair(tf.constant(volume), tf.constant(mask), key, config)
    assert image.shape == volume.shape and not np.allclose(image.numpy(), volume)
    for depth in range(3):
        flat_image, flat_mask = augment_pair(tf.constant(volume[depth]), tf.constant(mask[depth]), key, config)
        np.testing.assert_allclose(image.numpy()[depth], flat_image.numpy(), atol=1e-5)
        np.testing.assert_array_equal(moved.numpy()[depth], flat_mask.numpy())


def test_a_volume_scales_and_deforms_along_its_depth_too_keeping_class_ids():
    """Scale acts on all three axes (a depth ramp zoomed 2x about the centre: value c + (d - c) / 2 at depth d,
    trilinear interpolation being exact on a ramp); the elastic field too; masks keep their class ids and
    a seed repeats its volume."""
    depth_ramp = np.broadcast_to(np.arange(9, dtype=np.float32)[:, None, None, None], (9, 8, 8, 1)) / 8
    zoomed, _ = augment_pair(tf.constant(depth_ramp), tf.zeros((9, 8, 8, 1)), tf.constant([0, 1], tf.int64),
                             AugmentConfig(scale=(2.0, 2.0)))
    np.testing.assert_allclose(zoomed.numpy()[:, 3, 3, 0], (4 + (np.arange(9) - 4) / 2) / 8, atol=1e-6)
    labels = np.stack([label_maps(num_images=1, size=16, seed=seed)[0] for seed in range(8)])  # (8, 16, 16, 1)
    config = AugmentConfig(rotation=30.0, scale=(0.8, 1.25), shift=0.1, elastic_grid=3, elastic_sigma=2.0,
                           flip=True, rotate90=True)
    key = tf.constant([3, 7], tf.int64)
    image, moved = augment_pair(tf.constant(labels / 3.0), tf.constant(labels), key, config)
    again, _ = augment_pair(tf.constant(labels / 3.0), tf.constant(labels), key, config)
    assert image.shape == moved.shape == labels.shape
    assert set(np.unique(moved.numpy())) <= set(np.unique(labels)) and not np.array_equal(moved.numpy(), labels)
    np.testing.assert_array_equal(image.numpy(), again.numpy())
    assert 0.0 <= image.numpy().min() and image.numpy().max() <= 1.0
    elastic_only, _ = augment_pair(tf.constant(depth_ramp), tf.zeros((9, 8, 8, 1)), key,
                                   AugmentConfig(elastic_grid=3, elastic_sigma=2.0))
    assert np.abs(elastic_only.numpy() - depth_ramp).max() > 0.05  # the depth ramp moves: depth is displaced


def test_volumes_refuse_blur_in_one_line():
    volume = tf.zeros((4, 8, 8, 1))
    with pytest.raises(ConfigError, match=r"augment.blur works on 2D images; volumes take every other augmentation"):
        augment_pair(volume, volume, tf.constant([0, 1], tf.int64), AugmentConfig(blur=1.0))
