"""data=nnunet as a source: the plan (spacing, normalisation, patch) and the splits it streams."""

import numpy as np
import pytest

from helpers import write_nnunet_dataset
from unetlab.data import make_nnunet_splits
from unetlab.data.nnunet_raw import read_raw_dataset
from unetlab.data.nnunet_source import channel_normalization, head_classes, make_plan, plan_patch_size
from unetlab.errors import DataError


def test_a_planned_patch_fits_the_voxel_budget_and_the_networks_multiple():
    assert plan_patch_size((40, 120, 118), (16, 16, 16), 128, 10**9) == (32, 128, 112)  # nearest multiples
    assert plan_patch_size((45, 111, 108), (16, 16, 16), 128, 64**3 // 2) == (32, 64, 64)
    patch = plan_patch_size((40, 200, 200), (4, 16, 16), 128, 64**3)
    assert all(size % step == 0 for size, step in zip(patch, (4, 16, 16))) and np.prod(patch) <= 64**3
    assert patch[1] == patch[2] <= 128  # the axes shrink by their patch-to-median ratio: the aspect is kept
    assert plan_patch_size((5, 7), (16, 16), 128, 10**6) == (16, 16)  # at least one step per axis
    assert plan_patch_size((64, 64), (16, 16), 128, 10) == (16, 16)  # the smallest patch the network takes


def test_a_ct_dataset_is_planned_on_its_training_cases(tmp_path):
    dataset = read_raw_dataset(write_nnunet_dataset(tmp_path, cases=4, shape=(8, 24, 24), spacing=(3.0, 0.8, 0.8)))
    assert channel_normalization(dataset) == ("ct",) and head_classes(dataset) == 1
    plan = make_plan(dataset, dataset.cases, multiple=(4, 8, 8))
    assert plan.target_spacing == pytest.approx((3.0, 0.8, 0.8)) and plan.median_shape == (8, 24, 24)
    assert plan.patch_size == (8, 24, 24)
    mean, std, low, high = plan.ct_statistics[0]
    assert 0 < mean < 100 and 10 < std < 60 and low < mean < high  # the organ's intensities (50 +- 30)


def test_nnunet_splits_stream_planned_patches_with_foreground_and_tile_the_validation_cases(tmp_path):
    root = write_nnunet_dataset(tmp_path, cases=5, shape=(8, 24, 24))
    splits = make_nnunet_splits(root=str(root), seed=0, multiple=(4, 8, 8), cache_dir=tmp_path / "cache",
                                patches_per_epoch=6, val_fraction=0.4)
    assert splits.input_shape == (8, 24, 24, 1) and splits.num_train == 6 and len(splits.val_files) == 2
    images, labels = next(iter(splits.train_batches(4, 0)))
    assert images.shape == (4, 8, 24, 24, 1) and labels.shape == (4, 8, 24, 24, 1)
    assert labels[-1].numpy().max() == 1  # the last patch of a batch is centred on foreground
    again = next(iter(splits.train_batches(4, 3)))[0]
    assert not np.array_equal(again.numpy(), images.numpy())  # batch 3 is another draw than batch 0
    tiles = list(splits.val.as_numpy_iterator())
    assert len(tiles) == 2 and tiles[0][0].shape == (8, 24, 24, 1)
    image, label = np.concatenate([t[0] for t in tiles]), np.concatenate([t[1] for t in tiles])
    organ, rest = image[label > 0], image[label == 0]  # CT: the organ at mean 0, std 1; the rest clipped below it
    assert abs(organ.mean()) < 0.3 and 0.7 < organ.std() < 1.3 and rest.min() > -3.5 and np.median(rest) < -2


def test_a_dataset_with_one_case_is_refused_before_anything_is_preprocessed(tmp_path):
    root = write_nnunet_dataset(tmp_path, cases=1, shape=(4, 16, 16))
    with pytest.raises(DataError, match="1 training case"):
        make_nnunet_splits(root=str(root), seed=0, multiple=(1, 8, 8), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("preprocessed-*"))


def test_a_2d_rgb_dataset_with_several_labels_streams_2d_patches(tmp_path):
    """nnU-Net's natural-image layout: one RGB PNG per case, labels 0..2: 2D patches of 3 channels, 3 classes."""
    import json

    from PIL import Image

    root = tmp_path / "Dataset002_RGB"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        label = np.zeros((40, 50), np.uint8)
        label[5:15, 5:20], label[25:35, 30:45] = 1, 2
        image = (rng.normal(100, 10, (40, 50, 3)) + 60 * label[..., None]).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "imagesTr" / f"img_{index:03d}_0000.png")
        Image.fromarray(label).save(root / "labelsTr" / f"img_{index:03d}.png")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "R", "1": "G", "2": "B"},
                                                  "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 4,
                                                  "file_ending": ".png"}))
    splits = make_nnunet_splits(root=str(root), seed=0, multiple=(8, 8), cache_dir=tmp_path / "cache",
                                val_fraction=0.25)
    assert splits.input_shape == (40, 48, 3) and splits.preprocessing.num_classes == 3
    images, labels = next(iter(splits.train_batches(2, 0)))
    assert images.shape == (2, 40, 48, 3) and set(np.unique(labels.numpy())) <= {0, 1, 2}


def test_a_second_run_reads_its_plan_instead_of_every_case(tmp_path, monkeypatch):
    """The plan is remembered per dataset, split and settings: the same splits again read no case, and give
    the same plan and patches."""
    import unetlab.data.nnunet_source as source

    root = write_nnunet_dataset(tmp_path, cases=4, shape=(8, 24, 24))
    arguments = dict(root=str(root), seed=0, multiple=(4, 8, 8), cache_dir=tmp_path / "cache", val_fraction=0.25)
    first = make_nnunet_splits(**arguments)
    reads = []
    monkeypatch.setattr(source, "read_case", lambda *args: reads.append(args) or pytest.fail("a case was read"))
    again = make_nnunet_splits(**arguments)
    assert not reads and again.preprocessing == first.preprocessing and again.input_shape == first.input_shape
    np.testing.assert_array_equal(next(iter(again.train_batches(2, 1)))[0], next(iter(first.train_batches(2, 1)))[0])


def test_plans_that_differ_only_in_a_given_patch_share_one_planning_pass(tmp_path):
    from unetlab.data.nnunet_source import dataset_fingerprint, planned

    dataset = read_raw_dataset(write_nnunet_dataset(tmp_path, cases=3, shape=(8, 24, 24)))
    fingerprint, cache = dataset_fingerprint(dataset), tmp_path / "cache"
    first = planned(dataset, dataset.cases, cache, fingerprint, multiple=(4, 8, 8), patch_size=(8, 16, 16))
    second = planned(dataset, dataset.cases, cache, fingerprint, multiple=(2, 4, 4), patch_size=(4, 24, 24))
    assert first.patch_size == (8, 16, 16) and second.patch_size == (4, 24, 24)  # each as given
    assert first.target_spacing == second.target_spacing and len(list(cache.glob("plan-*.json"))) == 1
