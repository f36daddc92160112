import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from unetlab.data.nnunet_raw import check_raw_dataset, read_case, read_raw_dataset, verify_raw_dataset
from unetlab.errors import DataError

SPACING = (3.0, 0.8, 0.7)  # (z, y, x), anisotropic
SHAPE = (6, 10, 12)  # (z, y, x)
LABELS = {"background": 0, "liver": 1, "tumour": 2}
CASES = [f"liver_{i:03d}" for i in range(4)]


def save_nifti(path, array, spacing=SPACING, offset=(0.0, 0.0, 0.0)):
    """Write a (z, y, x) array as NIfTI, the file's (i, j, k) = (x, y, z)."""
    affine = np.diag([*spacing[::-1], 1.0])
    affine[:3, 3] = offset
    nib.save(nib.Nifti1Image(np.asarray(array).transpose(2, 1, 0), affine), path)


def write_json(root, **changes):
    meta = {"channel_names": {"0": "T2", "1": "ADC"}, "labels": LABELS, "numTraining": len(CASES),
            "file_ending": ".nii.gz", **changes}
    (root / "dataset.json").write_text(json.dumps(meta))


@pytest.fixture
def root_3d(tmp_path):
    root = tmp_path / "Dataset001_Liver"
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, case in enumerate(CASES + ["liver_100"]):
        folder = "imagesTs" if case == "liver_100" else "imagesTr"
        for channel in range(2):
            save_nifti(root / folder / f"{case}_{channel:04d}.nii.gz",
                       rng.normal(size=SHAPE).astype(np.float32) + 10 * channel)
        if folder == "imagesTr":
            save_nifti(root / "labelsTr" / f"{case}.nii.gz", rng.integers(0, 3, size=SHAPE).astype(np.uint8))
    write_json(root)
    return root


@pytest.fixture
def root_2d(tmp_path):
    root = tmp_path / "Dataset120_Roads"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(1)
    for case in ("img_1", "img_2", "img_3"):
        Image.fromarray(rng.integers(0, 256, size=(8, 10, 3)).astype(np.uint8)).save(
            root / "imagesTr" / f"{case}_0000.png")
        Image.fromarray(rng.integers(0, 3, size=(8, 10)).astype(np.uint8)).save(root / "labelsTr" / f"{case}.png")
    write_json(root, channel_names={"0": "R", "1": "G", "2": "B"}, file_ending=".png", numTraining=3)
    return root


def test_read_raw_dataset_lists_a_3d_dataset(root_3d):
    dataset = read_raw_dataset(root_3d)
    assert dataset.dims == 3 and dataset.file_ending == ".nii.gz" and dataset.num_training == 4
    assert dataset.channel_names == {"0": "T2", "1": "ADC"}
    assert dataset.labels == LABELS and dataset.num_classes == 3 and dataset.ignore_label is None
    assert [case.name for case in dataset.cases] == CASES
    assert [path.name for path in dataset.cases[1].images] == ["liver_001_0000.nii.gz", "liver_001_0001.nii.gz"]
    assert dataset.cases[1].label == root_3d / "labelsTr" / "liver_001.nii.gz"
    assert [(case.name, case.label) for case in dataset.test_cases] == [("liver_100", None)]
    assert check_raw_dataset(dataset) == []
    verify_raw_dataset(dataset)


def test_read_case_stacks_channels_last_with_spacing_and_geometry(root_3d):
    dataset = read_raw_dataset(root_3d)
    image, label, spacing, geometry = read_case(dataset.cases[2], dataset)
    assert image.shape == (*SHAPE, 2) and image.dtype == np.float32
    channel_1 = nib.load(root_3d / "imagesTr" / "liver_002_0001.nii.gz").get_fdata().transpose(2, 1, 0)
    assert np.allclose(image[..., 1], channel_1)
    assert label.shape == SHAPE and label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1, 2}
    assert spacing == pytest.approx(SPACING)
    assert np.allclose(geometry.affine, np.diag([0.7, 0.8, 3.0, 1.0])) and geometry.array.shape == SHAPE
    image, label, _, _ = read_case(dataset.test_cases[0], dataset)
    assert image.shape == (*SHAPE, 2) and label is None


def test_a_2d_rgb_png_dataset_reads_one_file_per_case(root_2d):
    dataset = read_raw_dataset(root_2d)
    assert dataset.dims == 2 and [len(case.images) for case in dataset.cases] == [1, 1, 1]
    image, label, spacing, geometry = read_case(dataset.cases[0], dataset)
    assert image.shape == (8, 10, 3) and image.dtype == np.float32
    assert np.array_equal(image, np.asarray(Image.open(root_2d / "imagesTr" / "img_1_0000.png")))
    assert label.shape == (8, 10) and spacing == (1.0, 1.0) and geometry is None
    assert check_raw_dataset(dataset) == []


def test_a_2d_grayscale_dataset_reads_one_file_per_channel_and_an_ignore_label(tmp_path):
    root = tmp_path / "Dataset003_Two"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for channel in range(2):
        Image.fromarray(np.full((8, 10), 50 * channel, np.uint8)).save(root / "imagesTr" / f"a_{channel:04d}.png")
    Image.fromarray(np.full((8, 10), 2, np.uint8)).save(root / "labelsTr" / "a.png")
    write_json(root, labels={"background": 0, "road": 1, "ignore": 2}, file_ending=".png", numTraining=1)
    dataset = read_raw_dataset(root)
    assert dataset.ignore_label == 2 and dataset.num_classes == 2 and len(dataset.cases[0].images) == 2
    image, label, _, _ = read_case(dataset.cases[0], dataset)
    assert image.shape == (8, 10, 2) and image[0, 0].tolist() == [0.0, 50.0] and label.shape == (8, 10)
    assert check_raw_dataset(dataset) == []


def test_a_tiff_stack_dataset_is_3d_with_the_spacing_of_its_side_file(tmp_path):
    root = tmp_path / "Dataset002_Cells"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    tifffile.imwrite(root / "imagesTr" / "cell_0000.tif", np.ones((4, 8, 8), np.uint16), photometric="minisblack")
    tifffile.imwrite(root / "labelsTr" / "cell.tif", np.ones((4, 8, 8), np.uint8), photometric="minisblack")
    for folder in ("imagesTr", "labelsTr"):
        (root / folder / "cell.json").write_text(json.dumps({"spacing": [2.0, 0.5, 0.5]}))
    write_json(root, channel_names={"0": "nuclei"}, labels={"background": 0, "cell": 1}, file_ending=".tif",
               numTraining=1)
    dataset = read_raw_dataset(root)
    image, label, spacing, _ = read_case(dataset.cases[0], dataset)
    assert dataset.dims == 3 and image.shape == (4, 8, 8, 1) and spacing == (2.0, 0.5, 0.5)
    assert check_raw_dataset(dataset) == []


def one_line_error(call, *args) -> str:
    with pytest.raises(DataError) as error:
        call(*args)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_a_missing_channel_file_is_named_with_its_case(root_3d):
    (root_3d / "imagesTr" / "liver_002_0001.nii.gz").unlink()
    message = one_line_error(read_raw_dataset, root_3d)
    assert message.startswith("case liver_002: imagesTr/liver_002_0001.nii.gz missing "
                              "(dataset.json channel_names has 2 channels)")
    assert "data.root=" in message


def test_unpaired_files_are_named(root_3d):
    (root_3d / "labelsTr" / "liver_001.nii.gz").rename(root_3d / "labelsTr" / "liver_009.nii.gz")
    message = one_line_error(read_raw_dataset, root_3d)
    assert message.startswith("case liver_001: imagesTr/liver_001_0000.nii.gz has no label "
                              "(labelsTr/liver_001.nii.gz missing); +1 more problem")
    (root_3d / "imagesTr" / "liver_001_0000.nii.gz").unlink()
    (root_3d / "imagesTr" / "liver_001_0001.nii.gz").unlink()
    assert one_line_error(read_raw_dataset, root_3d).startswith(
        "case liver_009: labelsTr/liver_009.nii.gz has no image (imagesTr/liver_009_0000.nii.gz missing)")


def test_num_training_must_match_the_label_files(root_3d):
    write_json(root_3d, numTraining=5)
    assert one_line_error(read_raw_dataset, root_3d).startswith(
        "dataset.json numTraining=5 but labelsTr holds 4 label files (*.nii.gz)")


def test_region_based_labels_are_refused(root_3d):
    write_json(root_3d, labels={"background": 0, "whole tumour": [1, 2], "core": 2}, regions_class_order=[1, 2])
    message = one_line_error(read_raw_dataset, root_3d)
    assert "'whole tumour'" in message and "region-based training is not supported" in message
    assert "one label per class" in message


@pytest.mark.parametrize("changes, expected", [
    ({"labels": {"background": 0, "liver": 2}}, "consecutive integers 0..K-1"),
    ({"labels": {"bg": 0, "liver": 1}}, '"background": 0'),
    ({"file_ending": ".mha"}, "file_ending '.mha' is not supported"),
    ({"channel_names": {"1": "T2"}}, "channel_names must map"),
    ({"numTraining": "4"}, "numTraining must be an integer"),
])
def test_bad_dataset_json_values_are_named(root_3d, changes, expected):
    write_json(root_3d, **changes)
    assert expected in one_line_error(read_raw_dataset, root_3d)


def test_a_missing_or_broken_dataset_json_is_named(root_3d, tmp_path):
    assert "is not a directory" in one_line_error(read_raw_dataset, tmp_path / "nowhere")
    (root_3d / "dataset.json").write_text('{"labels": {}, "numTraining": 4, "file_ending": ".nii.gz"}')
    assert "dataset.json has no 'channel_names'" in one_line_error(read_raw_dataset, root_3d)
    (root_3d / "dataset.json").write_text("{not json")
    assert "dataset.json is not valid JSON" in one_line_error(read_raw_dataset, root_3d)
    (root_3d / "dataset.json").unlink()
    assert "dataset.json missing" in one_line_error(read_raw_dataset, root_3d)


def corrupt(root):
    (root / "imagesTr" / "liver_001_0000.nii.gz").write_bytes(b"\x1f\x8b not really gzip")


def four_d(root):
    array = np.zeros((12, 10, 6, 2), np.float32)  # (x, y, z, t)
    nib.save(nib.Nifti1Image(array, np.diag([*SPACING[::-1], 1.0])), root / "imagesTr" / "liver_001_0000.nii.gz")


@pytest.mark.parametrize("break_case, expected", [
    (lambda root: save_nifti(root / "labelsTr" / "liver_001.nii.gz", np.zeros((6, 10, 11), np.uint8)),
     "case liver_001: imagesTr/liver_001_0000.nii.gz is 6x10x12 but labelsTr/liver_001.nii.gz is 6x10x11"),
    (lambda root: save_nifti(root / "imagesTr" / "liver_001_0001.nii.gz", np.zeros(SHAPE), (2.5, 0.8, 0.7)),
     "case liver_001: imagesTr/liver_001_0001.nii.gz has spacing (z, y, x) 2.5x0.8x0.7 but "
     "labelsTr/liver_001.nii.gz has 3x0.8x0.7"),
    (lambda root: save_nifti(root / "imagesTr" / "liver_001_0001.nii.gz", np.zeros(SHAPE), offset=(5, 0, 0)),
     "case liver_001: imagesTr/liver_001_0001.nii.gz and labelsTr/liver_001.nii.gz have different affines"),
    (lambda root: save_nifti(root / "labelsTr" / "liver_001.nii.gz", np.full(SHAPE, 5, np.uint8)),
     "case liver_001: labelsTr/liver_001.nii.gz has values [5] not in dataset.json labels [0, 1, 2]"),
    (corrupt, "case liver_001: imagesTr/liver_001_0000.nii.gz could not be read as NIfTI"),
    (four_d, "case liver_001: imagesTr/liver_001_0000.nii.gz: a 4D NIfTI image"),
])
def test_the_integrity_check_names_the_case_and_file(root_3d, break_case, expected):
    break_case(root_3d)
    dataset = read_raw_dataset(root_3d)
    problems = check_raw_dataset(dataset)
    assert problems and problems[0].startswith(expected), problems
    message = one_line_error(verify_raw_dataset, dataset)
    assert message.startswith(expected) and message.endswith(f"(data.root={root_3d})")
    if "values" not in expected:  # label values are the check's job; read_case refuses the rest
        assert one_line_error(read_case, dataset.cases[1], dataset).startswith(expected)


def test_verify_names_the_first_problem_and_counts_the_others(root_3d):
    for case in CASES[1:]:
        save_nifti(root_3d / "labelsTr" / f"{case}.nii.gz", np.full(SHAPE, 7, np.uint8))
    dataset = read_raw_dataset(root_3d)
    message = one_line_error(verify_raw_dataset, dataset)
    assert message.startswith("case liver_001: labelsTr/liver_001.nii.gz has values [7]")
    assert "; +2 more problems (data.root=" in message
    assert len(check_raw_dataset(dataset, max_problems=2)) == 2
    assert "; +1 more problem, stopped at max_problems=2 (" in one_line_error(
        lambda: verify_raw_dataset(dataset, max_problems=2))


def test_a_2d_label_with_colours_is_refused(root_2d):
    Image.fromarray((np.zeros((8, 10, 3)) + [0, 1, 2]).astype(np.uint8)).save(root_2d / "labelsTr" / "img_2.png")
    dataset = read_raw_dataset(root_2d)
    assert check_raw_dataset(dataset) == ["case img_2: labelsTr/img_2.png has 3 different channels; a label "
                                          "holds one class id per pixel"]
