from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from unetlab.data import find_pairs, make_batches, make_folder_splits, make_synthetic_splits, split_pairs
from helpers import SHARED_DATA
from unetlab.errors import DataError


def as_arrays(dataset):
    images, masks = zip(*[(image.numpy(), mask.numpy()) for image, mask in dataset])
    return np.stack(images), np.stack(masks)


def synthetic(**overrides):
    params = dict(image_size=32, channels=1, num_classes=1, seed=3, num_train=6, num_val=3)
    return make_synthetic_splits(**{**params, **overrides})


def test_synthetic_data_is_a_function_of_the_seed():
    first, again, other = as_arrays(synthetic().train), as_arrays(synthetic().train), as_arrays(synthetic(seed=4).train)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_synthetic_validation_images_differ_from_training_images():
    splits = synthetic()
    train, val = as_arrays(splits.train)[0], as_arrays(splits.val)[0]
    assert not any(np.array_equal(v, t) for v in val for t in train)


@pytest.mark.parametrize("size, channels, num_classes", [(32, 1, 1), (48, 3, 4), (64, 2, 2)])
def test_synthetic_honours_size_channels_and_classes(size, channels, num_classes):
    images, masks = as_arrays(synthetic(image_size=size, channels=channels, num_classes=num_classes,
                                        num_train=12).train)
    assert images.shape == (12, size, size, channels) and masks.shape == (12, size, size, 1)
    assert 0.0 <= images.min() and images.max() <= 1.0
    classes = set(np.unique(masks).astype(int))
    assert classes <= set(range(max(num_classes, 2))) and len(classes) >= 2
    assert 0.02 < (masks > 0).mean() < 0.7  # shapes cover part of the image


def test_synthetic_mask_is_not_a_copy_of_the_image():
    images, masks = as_arrays(synthetic(noise=0.15).train)
    inside, outside = images[masks[..., 0] > 0], images[masks[..., 0] == 0]
    assert inside.mean() > outside.mean() + 0.1  # learnable contrast...
    assert ((images > 0.5) != (masks > 0)).mean() > 0.02  # ...but thresholding the image is not enough


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(array))


def make_folder(root: Path, count: int = 4, size: int = 20, mask_values=(0, 255), channels: int = 1):
    rng = np.random.default_rng(0)
    for i in range(count):
        write_png(root / "images" / f"s{i}.png", rng.integers(0, 256, (size, size, channels), dtype=np.uint8))
        write_png(root / "masks" / f"s{i}.png",
                  rng.choice(np.array(mask_values, np.uint8), size=(size, size, 1)))
    return root / "images", root / "masks"


@pytest.mark.parametrize("values, num_classes, expected", [((0, 255), 1, {0, 1}), ((0, 1), 1, {0, 1}),
                                                           ((0, 1, 2), 3, {0, 1, 2})])
def test_folder_masks_as_0_255_or_class_ids(tmp_path, values, num_classes, expected):
    images, masks = make_folder(tmp_path, mask_values=values)
    splits = make_folder_splits(images=str(images), masks=str(masks), image_size=16, channels=1,
                                num_classes=num_classes, seed=0, val_fraction=0.25)
    assert (splits.num_train, splits.num_val) == (3, 1)
    image, mask = as_arrays(splits.train)
    assert image.shape == (3, 16, 16, 1) and 0.0 <= image.min() and image.max() <= 1.0
    assert set(np.unique(mask).astype(int)) == expected  # nearest-neighbour resize keeps class ids


def test_folder_reads_rgb_images_as_configured_channels(tmp_path):
    images, masks = make_folder(tmp_path, channels=3)
    splits = make_folder_splits(images=str(images), masks=str(masks), image_size=16, channels=3, num_classes=1,
                                seed=0, val_images=str(images), val_masks=str(masks))
    assert as_arrays(splits.val)[0].shape == (4, 16, 16, 3)
    assert (splits.num_train, splits.num_val) == (4, 4)


def test_find_pairs_names_unpaired_files(tmp_path):
    images, masks = make_folder(tmp_path)
    (masks / "s1.png").unlink()
    write_png(masks / "extra.png", np.zeros((4, 4, 1), np.uint8))
    with pytest.raises(DataError, match=r"1 image\(s\) without mask .*: s1.png; 1 mask\(s\) without image .*extra.png"):
        find_pairs(images, masks)


def test_find_pairs_rejects_missing_and_empty_directories(tmp_path):
    with pytest.raises(DataError, match=r"data.images='.*nowhere' is not a directory"):
        find_pairs(tmp_path / "nowhere", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"data.images='.*empty' holds no images"):
        find_pairs(tmp_path / "empty", tmp_path)


def test_split_is_seeded_and_disjoint():
    pairs = [(f"i{i}", f"m{i}") for i in range(10)]
    train, val = split_pairs(pairs, 0.3, seed=1)
    assert split_pairs(pairs, 0.3, seed=1) == (train, val)
    assert len(val) == 3 and not set(train) & set(val) and set(train) | set(val) == set(pairs)
    assert split_pairs(pairs, 0.3, seed=2)[1] != val


def test_make_batches_crops_masks_for_valid_padding_models():
    splits = synthetic(image_size=40)
    image, mask = next(iter(make_batches(splits.train, 2, shuffle=True, seed=0, label_size=24)))
    assert image.shape == (2, 40, 40, 1) and mask.shape == (2, 24, 24, 1)


@pytest.mark.skipif(not (SHARED_DATA / "isbi2012").is_dir(), reason="needs ../shared/data/isbi2012")
def test_isbi_slices_load_as_binary_membrane_masks():
    root = SHARED_DATA / "isbi2012"
    splits = make_folder_splits(images=str(root / "image"), masks=str(root / "label"), image_size=64, channels=1,
                                num_classes=1, seed=0, val_fraction=0.25)
    assert (splits.num_train, splits.num_val) == (18, 6)
    _, masks = as_arrays(splits.val)
    assert 0.6 < masks.mean() < 0.9  # label 255 = cell interior, about 78% of pixels
