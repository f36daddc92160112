"""The preprocessed-volume cache: preprocessing, atomic cases, memory-mapped patches, resumable streams, tiles."""

import json
import tracemalloc

import numpy as np
import pytest

from unetlab.data.volume_cache import (build_cache, cache_folder, case_tiles, class_locations, foreground_statistics,
                                       make_patch_stream, make_tile_stream, mark_complete, normalize_channels,
                                       preprocess_case, read_cached_case, sample_patch, write_cached_case)
from unetlab.errors import ConfigError, DataError


def coordinate_case(shape, blob=None):
    """An image whose channels are each voxel's coordinates, and labels with one cube of class 3 (or none)."""
    image = np.stack(np.indices(shape), axis=-1).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    if blob is not None:
        label[tuple(slice(start, start + 2) for start in blob)] = 3
    return image, label


def cached(folder, cases, complete=True):
    """Write (name, image, label) cases as they are, with their class locations."""
    for name, image, label in cases:
        write_cached_case(folder, name, image, label, class_locations(label), {"original_shape": list(label.shape)})
    if complete:
        mark_complete(folder)
    return folder


def test_preprocess_case_normalises_each_channel_resamples_and_locates_classes():
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(50, 10, (8, 20, 20)), rng.uniform(-1000, 1000, (8, 20, 20))], -1)
    label = np.zeros((8, 20, 20), np.int64)
    label[2:6, 5:10, 5:10] = 1
    label[3, 12:15, 12:15] = 2
    out, out_label, locations = preprocess_case(
        image, label, (2.0, 1.0, 1.0), target_spacing=(2.0, 2.0, 2.0), normalization=["zscore", "ct"],
        ct_statistics=[None, (100.0, 50.0, -200.0, 300.0)], locations_per_class=10)
    assert out.shape == (8, 10, 10, 2) and out.dtype == np.float32 and out_label.dtype == np.uint8
    assert out_label.shape == (8, 10, 10) and set(np.unique(out_label)) <= {0, 1, 2}
    statistics = {"mean": 100, "std": 50, "p005": -200, "p995": 300}
    normalized = normalize_channels(image, ["zscore", "ct"], [None, statistics])
    assert abs(normalized[..., 0].mean()) < 1e-5 and abs(normalized[..., 0].std() - 1) < 1e-4
    assert normalized[..., 1].min() == pytest.approx(-6.0) and normalized[..., 1].max() == pytest.approx(4.0)
    assert set(locations) == set(np.unique(out_label)) - {0}
    for value, voxels in locations.items():
        assert voxels.shape[1] == 3 and len(voxels) <= 10
        assert (out_label[tuple(voxels.T)] == value).all()


def test_preprocess_case_rejects_labels_that_are_not_class_ids_and_ct_without_statistics():
    image = np.zeros((4, 4, 4, 1), np.float32)
    with pytest.raises(DataError, match="class ids"):
        preprocess_case(image, np.full((4, 4, 4), 0.5), (1, 1, 1), target_spacing=None, normalization=["zscore"])
    with pytest.raises(ConfigError, match="ct_statistics"):
        preprocess_case(image, None, (1, 1, 1), target_spacing=None, normalization=["ct"])


def test_foreground_statistics_describe_the_foreground_intensities_only():
    image = np.zeros((10, 10, 10, 1), np.float32)
    image[:5] = 100.0
    label = np.zeros((10, 10, 10), np.uint8)
    label[:5] = 1
    (statistics,) = foreground_statistics([(image, label)], samples_per_case=100)
    assert statistics == {"mean": 100.0, "std": 0.0, "p005": 100.0, "p995": 100.0}


def test_cached_case_round_trip_is_memory_mapped_and_keeps_properties(tmp_path):
    image, label = coordinate_case((6, 7, 8), blob=(1, 2, 3))
    cached(tmp_path, [("case_0", image, label)])
    read_image, read_label, properties = read_cached_case(tmp_path, "case_0")
    assert isinstance(read_image, np.memmap) and isinstance(read_label, np.memmap)
    assert np.array_equal(read_image, image) and np.array_equal(read_label, label) and read_label.dtype == np.uint8
    assert properties["original_shape"] == [6, 7, 8] and properties["shape"] == [6, 7, 8]
    assert np.array_equal(properties["class_locations"][3], class_locations(label)[3])
    assert not isinstance(read_cached_case(tmp_path, "case_0", mmap=False)[0], np.memmap)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".complete", "case_0.json", "case_0.npy", "case_0_seg.npy"]  # no temporary files left


def test_a_cache_without_its_complete_marker_is_not_used(tmp_path):
    image, label = coordinate_case((6, 7, 8), blob=(1, 2, 3))
    cached(tmp_path, [("case_0", image, label)], complete=False)
    with pytest.raises(DataError, match="incomplete"):
        read_cached_case(tmp_path, "case_0")
    with pytest.raises(DataError, match="incomplete"):
        make_patch_stream(tmp_path, ["case_0"], (4, 4, 4), 2, seed=0)


def test_cache_folder_changes_with_the_settings_and_build_cache_resumes(tmp_path):
    settings = {"target_spacing": [1.0, 1.0, 1.0], "normalization": ["zscore"]}
    folder = cache_folder(tmp_path, "abc123", settings)
    assert folder == cache_folder(tmp_path, "abc123", dict(settings))
    assert folder != cache_folder(tmp_path, "abc123", {**settings, "target_spacing": [2.0, 1.0, 1.0]})
    assert folder != cache_folder(tmp_path, "abc124", settings)
    loads = []

    def case(name):
        def load():
            loads.append(name)
            image, label = coordinate_case((4, 6, 6), blob=(1, 1, 1))
            return image[..., :1], label, (2.0, 1.0, 1.0)
        return name, load

    write_cached_case(folder, "a", *preprocess_case(*case("a")[1](), target_spacing=[1.0, 1.0, 1.0],
                                                    normalization=["zscore"]), {})
    loads.clear()  # "a" was written before an interruption: building again loads only "b"
    build_cache(folder, [case("a"), case("b")], settings=settings, target_spacing=[1.0, 1.0, 1.0],
                normalization=["zscore"])
    assert loads == ["b"]
    image, label, properties = read_cached_case(folder, "b")
    assert image.shape == (8, 6, 6, 1) and properties["original_spacing"] == [2.0, 1.0, 1.0]
    assert json.loads((folder / ".complete").read_text())["settings"] == settings


def test_sample_patch_reads_the_asked_shape_and_forced_patches_hold_foreground():
    image, label = coordinate_case((20, 30, 40), blob=(15, 3, 33))
    locations = class_locations(label)
    rng = np.random.default_rng(0)
    for force in (False, True) * 10:
        patch, patch_label = sample_patch(image, label, locations, (8, 12, 10), rng, force)
        assert patch.shape == (8, 12, 10, 3) and patch.dtype == np.float32 and patch_label.shape == (8, 12, 10)
        corner = patch[0, 0, 0].astype(int)
        assert np.array_equal(patch[..., 0][:, 0, 0], corner[0] + np.arange(8))  # a window of the image
        assert np.array_equal(patch_label, label[corner[0]:corner[0] + 8, corner[1]:corner[1] + 12,
                                                  corner[2]:corner[2] + 10])
        if force:
            assert (patch_label == 3).any()


def test_sample_patch_pads_a_case_smaller_than_the_patch_and_centres_it():
    image, label = coordinate_case((3, 10, 10), blob=(1, 4, 4))
    image += 1  # so that padding (0) differs from every voxel
    patch, patch_label = sample_patch(image, label, class_locations(label), (8, 6, 6), np.random.default_rng(1), True)
    assert patch.shape == (8, 6, 6, 3)
    inside = patch[..., 0] > 0
    assert np.array_equal(np.flatnonzero(inside.any(axis=(1, 2))), [2, 3, 4])  # 5 slices of padding, 2 before
    assert (patch_label[~inside] == 0).all() and (patch_label == 3).any()


def test_sample_patch_reads_only_the_window_of_a_large_memory_mapped_case(tmp_path):
    shape = (64, 512, 512)  # 64 MiB of float32
    image = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=shape + (1,))
    for z in range(shape[0]):
        image[z] = z
    image.flush()
    del image
    label = np.lib.format.open_memmap(tmp_path / "big_seg.npy", mode="w+", dtype=np.uint8, shape=shape)
    label[40:44, 100:104, 200:204] = 1
    label.flush()
    del label
    (tmp_path / "big.json").write_text(json.dumps({"class_locations": {"1": [[41, 101, 201]]}}))
    mark_complete(tmp_path)
    image, label, properties = read_cached_case(tmp_path, "big")

    class Counted:
        def __init__(self, array):
            self.array, self.shape, self.dtype, self.read = array, array.shape, array.dtype, 0

        def __getitem__(self, key):
            part = self.array[key]
            self.read += part.size
            return part

    counted_image, counted_label = Counted(image), Counted(label)
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        for force in (False, True) * 5:
            patch, patch_label = sample_patch(counted_image, counted_label, properties["class_locations"],
                                              (32, 32, 32), rng, force)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counted_image.read == counted_label.read == 10 * 32**3  # exactly the windows, nothing more
    assert peak < 4 * 2**20  # NumPy allocations: a few patches, against a 64 MiB case
    assert (patch_label == 1).any()


def test_patch_stream_is_deterministic_and_resumes_at_a_step(tmp_path):
    cases = [(f"case_{index}", *coordinate_case((10 + index, 12, 14), blob=(index, 5, 6))) for index in range(3)]
    cached(tmp_path, cases)
    names = [name for name, _, _ in cases]
    stream = make_patch_stream(tmp_path, names, (6, 8, 8), batch_size=3, seed=7, foreground_oversample=0.33)
    assert stream.element_spec[0].shape == (3, 6, 8, 8, 3) and stream.element_spec[1].shape == (3, 6, 8, 8, 1)
    first = [tuple(part.numpy() for part in batch) for batch in stream.take(6)]
    again = [tuple(part.numpy() for part in batch) for batch in stream.take(6)]
    resumed = [tuple(part.numpy() for part in batch) for batch in
               make_patch_stream(tmp_path, names, (6, 8, 8), 3, seed=7, first_step=4).take(2)]
    other_seed = next(iter(make_patch_stream(tmp_path, names, (6, 8, 8), 3, seed=8)))[0].numpy()
    for left, right in zip(first, again):
        assert np.array_equal(left[0], right[0]) and np.array_equal(left[1], right[1])
    for left, right in zip(first[4:], resumed):
        assert np.array_equal(left[0], right[0]) and np.array_equal(left[1], right[1])
    assert not np.array_equal(first[0][0], other_seed)
    assert all((labels[-1] == 3).any() for _, labels in first)  # the last patch of each batch is forced


def test_patch_stream_works_on_2d_cases(tmp_path):
    cached(tmp_path, [("slice", *coordinate_case((30, 20), blob=(10, 10)))])
    images, labels = next(iter(make_patch_stream(tmp_path, ["slice"], (16, 16), 4, seed=0, foreground_oversample=0.5)))
    assert images.shape == (4, 16, 16, 2) and labels.shape == (4, 16, 16, 1)
    assert (labels.numpy()[2:] == 3).any(axis=(1, 2, 3)).all()
    with pytest.raises(ConfigError, match="patch_size"):
        make_patch_stream(tmp_path, ["slice"], (16, 16, 16), 4, seed=0)


def test_tiles_cover_every_voxel_of_every_case(tmp_path):
    image, label = coordinate_case((5, 13, 17), blob=(1, 2, 3))
    image += 1  # so that padding (0) differs from every voxel
    covered = np.zeros(label.shape, bool)
    for tile, tile_label in case_tiles(image, label, (8, 6, 6)):
        assert tile.shape == (8, 6, 6, 3) and tile_label.shape == (8, 6, 6)
        inside = tile[..., 0] > 0
        assert np.array_equal(np.flatnonzero(inside.any(axis=(1, 2))), [1, 2, 3, 4, 5])  # centred along z
        coordinates = tile[inside].astype(int) - 1
        covered[tuple(coordinates.T)] = True
        assert np.array_equal(tile_label[inside], label[tuple(coordinates.T)])
    assert covered.all()
    assert len(list(case_tiles(image, label, (8, 6, 6)))) == 1 * 3 * 3
    cached(tmp_path, [("a", image, label), ("b", *coordinate_case((8, 6, 6)))])
    tiles = list(make_tile_stream(tmp_path, ["a", "b"], (8, 6, 6)).as_numpy_iterator())
    assert len(tiles) == 9 + 1 and tiles[0][1].shape == (8, 6, 6, 1)
    assert (np.concatenate([labels for _, labels in tiles]) == 3).sum() == (label == 3).sum()
