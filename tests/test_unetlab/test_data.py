"""Data sources: folder and synthetic Splits, their file lists, and the preprocessing they hand to prediction."""

from pathlib import Path

import numpy as np
import pytest

from helpers import SHARED_DATA
from unetlab.data import SOURCES, make_batches, make_folder_splits, make_nnunet_splits, make_synthetic_splits
from unetlab.data.folder import find_pairs, split_folds
from unetlab.errors import ConfigError
from unetlab.preprocessing import Preprocessing
from unetlab_samples import as_arrays, make_folder, save


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


@pytest.mark.skipif(not (SHARED_DATA / "isbi2012").is_dir(), reason="needs ../shared/data/isbi2012")
def test_isbi_slices_load_as_binary_membrane_masks():
    root = SHARED_DATA / "isbi2012"
    splits = make_folder_splits(images=str(root / "image"), masks=str(root / "label"), image_size=64, channels=1,
                                num_classes=1, seed=0, val_fraction=0.25)
    assert (splits.num_train, splits.num_val) == (18, 6)
    _, masks = as_arrays(splits.val)
    assert 0.6 < masks.mean() < 0.9  # label 255 = cell interior, about 78% of pixels


def test_folder_patches_train_on_random_crops_and_validate_on_tiles(tmp_path):
    images, masks = make_folder(tmp_path, count=4, size=20, mask_values=(0, 1, 255))
    patches = dict(patch_size=16, foreground_oversample=0.5, ignore_index=255)
    splits = make_folder_splits(images=str(images), masks=str(masks), image_size=8, channels=1, num_classes=1,
                                seed=0, folds=2, fold=0, **patches)
    assert "16x16 patches (foreground_oversample=0.5; val tiled)" in splits.description
    assert as_arrays(splits.train)[0].shape == (2, 20, 20, 1)  # full resolution, not resized
    assert as_arrays(splits.val)[0].shape == (2 * 4, 16, 16, 1)  # 2 x 2 tiles per 20 x 20 image
    batches = make_batches(splits.train, 2, shuffle=True, seed=0, **patches)  # the caller's own settings
    image, mask = next(iter(batches))
    assert image.shape == (2, 16, 16, 1) and set(np.unique(mask)) <= {0, 1, 255}


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
    with pytest.raises(ConfigError, match="^folds splits images into folds; it cannot be combined with val_images"):
        make_folder_splits(images=str(images), masks=str(masks), image_size=8, channels=1, num_classes=1,
                           seed=2, folds=3, val_images=str(images), val_masks=str(masks))


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


def two_tiffs(tmp_path):
    """Two 2-channel 16-bit TIFFs of different size and brightness (and empty masks), and their [0, 1] pixels."""
    pytest.importorskip("tifffile")
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 30000, (6, 5, 2)).astype(np.uint16),
              rng.integers(20000, 65535, (4, 7, 2)).astype(np.uint16)]
    for name, array in zip("ab", arrays):
        save(tmp_path / "images" / f"{name}.tif", array)
        save(tmp_path / "masks" / f"{name}.png", np.zeros(array.shape[:2], np.uint8))
    return tmp_path / "images", tmp_path / "masks", np.concatenate([a.reshape(-1, 2) / 65535 for a in arrays])


def test_dataset_normalisation_uses_training_statistics_or_the_given_ones(tmp_path):
    images, masks, pixels = two_tiffs(tmp_path)
    common = dict(images=str(images), masks=str(masks), image_size=4, channels=2, num_classes=1, seed=0,
                  val_images=str(images), val_masks=str(masks), normalize="dataset")
    splits = make_folder_splits(**common)
    np.testing.assert_allclose(splits.preprocessing.mean, pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(splits.preprocessing.std, pixels.std(0), rtol=1e-5)
    given = make_folder_splits(**common, mean=0.5, std=[0.1, 0.2])
    assert (given.preprocessing.mean, given.preprocessing.std) == ([0.5, 0.5], [0.1, 0.2])
    scaled = make_folder_splits(**{**common, "normalize": "scale"})
    assert (scaled.preprocessing.mean, scaled.preprocessing.std) == (None, None)
    with pytest.raises(ConfigError, match=r"^mean and std go together.*Received: mean=0\.5, std=None$"):
        make_folder_splits(**common, mean=0.5)


# --- Splits.preprocessing ------------------------------------------------------------------------

def test_folder_splits_of_whole_images_predict_resized_to_image_size(tmp_path):
    images, masks = make_folder(tmp_path, count=4, size=20)
    splits = make_folder_splits(images=str(images), masks=str(masks), image_size=16, channels=1, num_classes=2,
                                seed=0, normalize="zscore")
    assert splits.preprocessing == Preprocessing(channels=1, num_classes=2, normalize="zscore", mean=None, std=None,
                                                 tile_size=16, resize=16, invert_masks=False)


def test_folder_splits_of_patches_predict_at_full_resolution_in_patch_size_tiles(tmp_path):
    images, masks = make_folder(tmp_path, count=4, size=20, mask_values=(0, 1, 2))
    splits = make_folder_splits(images=str(images), masks=str(masks), image_size=64, channels=1, num_classes=3,
                                seed=0, patch_size=16)
    assert splits.preprocessing == Preprocessing(channels=1, num_classes=3, normalize="scale", mean=None, std=None,
                                                 tile_size=16, resize=None, invert_masks=False)


def test_folder_splits_with_dataset_normalisation_carry_the_training_statistics(tmp_path):
    images, masks, _ = two_tiffs(tmp_path)
    splits = make_folder_splits(images=str(images), masks=str(masks), image_size=4, channels=2, num_classes=1,
                                seed=0, val_fraction=0.5, normalize="dataset", patch_size=8)
    train_pixels = np.concatenate([image.numpy().reshape(-1, 2) for image, _ in splits.train])
    preprocessing = splits.preprocessing
    assert (preprocessing.normalize, preprocessing.channels, preprocessing.tile_size) == ("dataset", 2, 8)
    assert preprocessing.resize is None
    # train holds the normalised training images: (x - mean) / std has mean 0 and std 1 per channel
    np.testing.assert_allclose(train_pixels.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train_pixels.std(0), 1.0, rtol=1e-4)
    assert len(preprocessing.mean) == len(preprocessing.std) == 2


def test_synthetic_splits_predict_whole_images_unnormalised(tmp_path):
    splits = make_synthetic_splits(image_size=32, channels=2, num_classes=3, seed=0, num_train=2, num_val=1)
    assert splits.preprocessing == Preprocessing(channels=2, num_classes=3, normalize="scale", mean=None, std=None,
                                                 tile_size=32, resize=None)
    loaded = Preprocessing.load(splits.preprocessing.save(tmp_path / "preprocessing.json"))
    assert loaded == splits.preprocessing


def test_sources_are_selected_by_name():
    assert SOURCES == {"synthetic": make_synthetic_splits, "folder": make_folder_splits, "nnunet": make_nnunet_splits}
