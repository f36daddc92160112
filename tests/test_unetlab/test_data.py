from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from unetlab.data import (find_pairs, make_batches, make_folder_splits, make_patch_sampler, make_synthetic_splits,
                          make_tiles, split_folds, split_pairs)
from unetlab.data.pipeline import tile_starts
from helpers import SHARED_DATA
from unetlab.errors import ConfigError, DataError


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


# --- patches, tiles, k-fold ----------------------------------------------------------------------

def coordinate_pairs(shapes, blob=None):
    """Images whose two channels are each pixel's row and column, and masks (one foreground blob, or none)."""
    images, masks = [], []
    for height, width in shapes:
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        images.append(np.stack([rows, cols], -1).astype(np.float32))
        mask = np.zeros((height, width, 1), np.float32)
        if blob is not None:
            row, col = blob
            mask[row:row + 3, col:col + 3] = 1
        masks.append(mask)
    if len({shape for shape in shapes}) == 1:
        return tf.data.Dataset.from_tensor_slices((np.stack(images), np.stack(masks)))
    return tf.data.Dataset.from_generator(lambda: zip(images, masks), output_signature=(
        tf.TensorSpec([None, None, 2], tf.float32), tf.TensorSpec([None, None, 1], tf.float32)))


def mirrored(index, size):
    period = max(2 * (size - 1), 1)
    index = index % period
    return np.where(index > size - 1, period - index, index)


def test_random_patches_are_windows_of_the_image_with_their_mask():
    pairs = coordinate_pairs([(40, 30)], blob=(20, 10)).repeat(16)
    for image, mask in pairs.apply(make_patch_sampler(16, seed=0, foreground_oversample=0.5)):
        image, mask = image.numpy(), mask.numpy()
        rows, cols = image[:, 0, 0].astype(int), image[0, :, 1].astype(int)
        assert image.shape == (16, 16, 2) and mask.shape == (16, 16, 1)
        np.testing.assert_array_equal(np.diff(rows), 1)  # a contiguous window...
        np.testing.assert_array_equal(np.diff(cols), 1)
        assert 0 <= rows[0] <= 40 - 16 and 0 <= cols[0] <= 30 - 16  # ...inside the image
        blob = (rows[:, None] >= 20) & (rows[:, None] < 23) & (cols >= 10) & (cols < 13)
        np.testing.assert_array_equal(mask[..., 0], blob)  # the mask moved with the image


def test_images_smaller_than_the_patch_are_mirror_padded():
    pairs = coordinate_pairs([(10, 40)]).repeat(4)
    for image, _ in pairs.apply(make_patch_sampler(16, seed=1)):
        rows = image.numpy()[:, 0, 0]
        np.testing.assert_array_equal(rows, mirrored(np.arange(16) - 3, 10))  # 3 rows mirrored above, 3 below


def foreground_fraction(oversample, seed=0):
    sparse = coordinate_pairs([(64, 64)], blob=(50, 7)).repeat(48)  # 9 of 4096 pixels are foreground
    patches = sparse.apply(make_patch_sampler(16, seed=seed, foreground_oversample=oversample, ignore_index=255))
    return np.mean([mask.numpy().max() > 0 for _, mask in patches])


def test_foreground_oversample_forces_patches_onto_foreground():
    assert foreground_fraction(1.0) == 1.0
    assert foreground_fraction(0.0) < 0.35  # a uniform 16x16 crop hits a 3x3 blob ~13% of the time
    assert foreground_fraction(0.0) < foreground_fraction(0.5) < 1.0


def test_ignored_pixels_are_not_foreground_for_oversampling():
    mask = np.full((1, 64, 64, 1), 255, np.float32)
    mask[0, :, :32] = 0
    pairs = tf.data.Dataset.from_tensor_slices((np.zeros((1, 64, 64, 1), np.float32), mask)).repeat(12)
    patches = pairs.apply(make_patch_sampler(16, seed=0, foreground_oversample=1.0, ignore_index=255))
    assert any(m.numpy().max() == 0 for _, m in patches)  # no foreground: uniform crops, some in the 0 half


def test_patches_repeat_with_the_seed_and_change_every_epoch():
    def run(seed):
        return coordinate_pairs([(40, 30)] * 4, blob=(5, 5)).cache().apply(
            make_patch_sampler(8, seed=seed, foreground_oversample=0.33))

    first = run(3)
    epoch1, epoch2 = as_arrays(first), as_arrays(first)
    again, other = as_arrays(run(3)), as_arrays(run(4))
    np.testing.assert_array_equal(epoch1[0], again[0])
    np.testing.assert_array_equal(epoch1[1], again[1])
    assert not np.array_equal(epoch1[0], epoch2[0])
    assert not np.array_equal(epoch1[0], other[0])


@pytest.mark.parametrize("size, patch_size, starts", [(50, 16, [0, 16, 32, 34]), (48, 16, [0, 16, 32]),
                                                      (16, 16, [0]), (10, 16, [0])])
def test_tile_starts_cover_the_axis_with_the_last_tile_flush(size, patch_size, starts):
    assert tile_starts(size, patch_size) == starts


@pytest.mark.parametrize("shape", [(50, 37), (16, 20), (10, 12)])
def test_validation_tiles_cover_the_image(shape):
    tiles = as_arrays(make_tiles(coordinate_pairs([shape], blob=(2, 3)), 16))
    height, width = shape
    row_starts, col_starts = tile_starts(height, 16), tile_starts(width, 16)
    assert len(tiles[0]) == len(row_starts) * len(col_starts)
    covered = np.zeros(shape, bool)
    for image, mask in zip(*tiles):
        rows, cols = image[:, 0, 0].astype(int), image[0, :, 1].astype(int)
        np.testing.assert_array_equal(image[..., 0], np.repeat(rows[:, None], 16, 1))
        np.testing.assert_array_equal(mask[..., 0], (rows[:, None] >= 2) & (rows[:, None] < 5)
                                      & (cols >= 3) & (cols < 6))
        covered[np.ix_(rows, cols)] = True
    assert covered.all()
    if height < 16:  # centred mirror padding
        np.testing.assert_array_equal(tiles[0][0, :, 0, 0], mirrored(np.arange(16) - (16 - height) // 2, height))


def test_folder_patches_train_on_random_crops_and_validate_on_tiles(tmp_path):
    images, masks = make_folder(tmp_path, count=4, size=20, mask_values=(0, 1, 255))
    splits = make_folder_splits(images=str(images), masks=str(masks), image_size=8, channels=1, num_classes=1,
                                seed=0, folds=2, fold=0, ignore_index=255, patch_size=16,
                                foreground_oversample=0.5)
    assert (splits.patch_size, splits.foreground_oversample, splits.ignore_index) == (16, 0.5, 255)
    assert as_arrays(splits.train)[0].shape == (2, 20, 20, 1)  # full resolution, not resized
    assert as_arrays(splits.val)[0].shape == (2 * 4, 16, 16, 1)  # 2 x 2 tiles per 20 x 20 image
    batches = make_batches(splits.train, 2, shuffle=True, seed=0, patch_size=splits.patch_size,
                           foreground_oversample=splits.foreground_oversample, ignore_index=splits.ignore_index)
    image, mask = next(iter(batches))
    assert image.shape == (2, 16, 16, 1) and set(np.unique(mask)) <= {0, 1, 255}


def test_patch_settings_are_checked():
    with pytest.raises(ConfigError, match="data.patch_size must be a positive integer"):
        make_patch_sampler(0, seed=0)
    with pytest.raises(ConfigError, match=r"data.foreground_oversample must be a fraction in \[0, 1\]"):
        make_patch_sampler(16, seed=0, foreground_oversample=1.5)


def test_k_fold_validates_every_pair_exactly_once():
    pairs = [(f"i{i}", f"m{i}") for i in range(11)]
    folds = [split_folds(pairs, 4, fold, seed=5) for fold in range(4)]
    vals = [val for _, val in folds]
    assert sorted(pair for val in vals for pair in val) == sorted(pairs)  # each pair in exactly one fold
    assert sorted(len(val) for val in vals) == [2, 3, 3, 3]
    for train, val in folds:
        assert not set(train) & set(val) and sorted(train + val) == sorted(pairs)
    assert split_folds(pairs, 4, 1, seed=5) == folds[1]
    assert [split_folds(pairs, 4, f, seed=6)[1] for f in range(4)] != vals


@pytest.mark.parametrize("folds, fold, message", [(1, 0, "data.folds must be an integer >= 2"),
                                                  (3, 3, r"data.fold must be an integer in \[0, 2\]"),
                                                  (20, 0, "needs at least 20 image/mask pairs")])
def test_k_fold_rejects_bad_settings(folds, fold, message):
    with pytest.raises((ConfigError, DataError), match=message):
        split_folds([(f"i{i}", f"m{i}") for i in range(5)], folds, fold, seed=0)


def test_folder_splits_expose_their_file_lists(tmp_path):
    images, masks = make_folder(tmp_path, count=6)
    names = [f"s{i}.png" for i in range(6)]
    for fold in range(3):
        splits = make_folder_splits(images=str(images), masks=str(masks), image_size=8, channels=1, num_classes=1,
                                    seed=2, folds=3, fold=fold)
        train, val = split_folds(find_pairs(images, masks), 3, fold, seed=2)
        assert splits.val_files == [Path(i).name for i, _ in val] and len(splits.val_files) == 2
        assert sorted(splits.train_files + splits.val_files) == names
    splits = make_folder_splits(images=str(images), masks=str(masks), image_size=8, channels=1, num_classes=1,
                                seed=2, val_fraction=0.5)
    assert len(splits.val_files) == 3 and sorted(splits.train_files + splits.val_files) == names
    with pytest.raises(ConfigError, match="data.folds .* cannot be combined with data.val_images"):
        make_folder_splits(images=str(images), masks=str(masks), image_size=8, channels=1, num_classes=1,
                           seed=2, folds=3, val_images=str(images), val_masks=str(masks))


def test_find_pairs_reads_tiff_and_rejects_two_files_with_one_stem(tmp_path):
    images, masks = make_folder(tmp_path, count=2)
    (images / "s1.png").rename(images / "s1.tif")
    assert [Path(i).name for i, _ in find_pairs(images, masks)] == ["s0.png", "s1.tif"]
    write_png(images / "s1.png", np.zeros((4, 4, 1), np.uint8))
    with pytest.raises(DataError, match="s1.png and s1.tif .* share the stem 's1'"):
        find_pairs(images, masks)


def test_ignored_pixels_reach_the_loss_and_metrics_unchanged(tmp_path):
    from unetlab.losses import build_loss
    from unetlab.metrics import build_metrics

    images, masks = make_folder(tmp_path, count=2, size=16, mask_values=(0, 1, 255))
    splits = make_folder_splits(images=str(images), masks=str(masks), image_size=16, channels=1, num_classes=1,
                                seed=0, val_images=str(images), val_masks=str(masks), ignore_index=255)
    _, mask = next(iter(make_batches(splits.val, 2, shuffle=False, seed=0)))
    assert set(np.unique(mask)) == {0, 1, 255}
    wrong_where_ignored = np.where(mask == 255, 1.0, mask).astype(np.float32)  # right elsewhere
    assert float(build_loss("dice", ignore_index=255)(mask, wrong_where_ignored)) == pytest.approx(0.0, abs=1e-6)
    dice = build_metrics(1, ignore_index=255)[0]
    dice.update_state(mask, wrong_where_ignored)
    assert float(dice.result()) == 1.0
