import nibabel as nib
import numpy as np
import pytest
import tifffile

from unetlab.data.volume_files import Volume, is_volume_file, read_volume, volume_stem, write_volume
from unetlab.errors import DataError

SPACING = (3.0, 0.8, 0.7)  # (z, y, x)
# voxel (i, j, k) -> world: x flipped, anisotropic, translated; i runs along x, k along z
AFFINE = np.array([[-0.7, 0.0, 0.0, 12.5],
                   [0.0, 0.8, 0.0, -30.0],
                   [0.0, 0.0, 3.0, 4.0],
                   [0.0, 0.0, 0.0, 1.0]])


def volume_array(dtype=np.int16) -> np.ndarray:
    """A (z, y, x) = 5x7x9 array whose every voxel differs."""
    return np.arange(5 * 7 * 9, dtype=dtype).reshape(5, 7, 9)


def test_volume_stem_strips_nifti_and_tiff_suffixes():
    assert volume_stem("CASE_0000.nii.gz") == "CASE_0000"
    assert volume_stem("a/b/CASE.NII") == "CASE"
    assert volume_stem("stack.tiff") == "stack"
    assert is_volume_file("x.nii.gz") and is_volume_file("x.TIF") and not is_volume_file("x.png")


@pytest.mark.parametrize("name", ["case.nii", "case.nii.gz"])
def test_nifti_round_trip_keeps_array_spacing_and_affine(tmp_path, name):
    like = Volume(array=volume_array(), spacing=SPACING, affine=AFFINE)
    volume = read_volume(write_volume(tmp_path / name, volume_array(), like=like))
    assert volume.array.dtype == np.int16
    assert np.array_equal(volume.array, volume_array())
    assert volume.spacing == pytest.approx(SPACING)
    assert np.allclose(volume.affine, AFFINE, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_nifti_without_like_gets_a_diagonal_affine_of_the_spacing(tmp_path):
    volume = read_volume(write_volume(tmp_path / "case.nii.gz", volume_array(), spacing=SPACING))
    assert np.allclose(volume.affine, np.diag([0.7, 0.8, 3.0, 1.0]))
    assert volume.spacing == pytest.approx(SPACING)


def test_tiff_round_trip_keeps_array_spacing_and_unit(tmp_path):
    like = Volume(array=volume_array(np.uint16), spacing=SPACING, unit="um")
    volume = read_volume(write_volume(tmp_path / "stack.tif", volume_array(np.uint16), like=like))
    assert np.array_equal(volume.array, volume_array(np.uint16))
    assert volume.spacing == pytest.approx(SPACING, rel=1e-6)
    assert volume.unit == "um"
    assert volume.affine is None and volume.header is None


def test_nifti_data_i_j_k_is_read_as_array_k_j_i(tmp_path):
    data = np.random.default_rng(0).integers(0, 1000, size=(9, 7, 5)).astype(np.int16)  # (i, j, k)
    image = nib.Nifti1Image(data, np.diag([0.7, 0.8, 3.0, 1.0]), dtype=np.int16)
    nib.save(image, tmp_path / "case.nii.gz")
    volume = read_volume(tmp_path / "case.nii.gz")
    assert volume.array.shape == (5, 7, 9)
    assert volume.array[4, 2, 6] == data[6, 2, 4]
    assert np.array_equal(volume.array, data.transpose(2, 1, 0))
    assert volume.spacing == pytest.approx((3.0, 0.8, 0.7))


def test_prediction_written_like_its_input_has_the_input_affine_shape_and_qform(tmp_path):
    data = np.random.default_rng(0).normal(size=(9, 7, 5)).astype(np.float32)
    original = nib.Nifti1Image(data, AFFINE)
    original.set_qform(AFFINE, code="scanner")
    original.header["cal_min"], original.header["cal_max"] = -3.0, 3.0
    nib.save(original, tmp_path / "case.nii.gz")
    source = read_volume(tmp_path / "case.nii.gz")
    prediction = (source.array > 0).astype(np.uint8)
    write_volume(tmp_path / "case_pred.nii.gz", prediction, like=source)
    written = nib.load(tmp_path / "case_pred.nii.gz")
    assert np.allclose(written.affine, nib.load(tmp_path / "case.nii.gz").affine)
    assert written.shape == (9, 7, 5)
    assert written.get_data_dtype() == np.uint8
    assert written.header.get_qform(coded=True)[1] == 1  # the input's qform code (scanner), kept
    assert written.header["cal_max"] == 0  # the image's display range is not the labels'
    assert np.array_equal(np.asanyarray(written.dataobj), (data > 0).astype(np.uint8))


def test_imagej_tiff_spacing_is_read_from_resolution_and_spacing(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", volume_array(np.uint8), imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    volume = read_volume(tmp_path / "stack.tif")
    assert volume.array.shape == (5, 7, 9)
    assert volume.spacing == pytest.approx((2.0, 0.5, 0.5))
    assert volume.unit == "um"


def test_ome_tiff_spacing_is_read_from_physical_size(tmp_path):
    tifffile.imwrite(tmp_path / "stack.ome.tif", volume_array(np.uint16), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 1.5})
    volume = read_volume(tmp_path / "stack.ome.tif")
    assert np.array_equal(volume.array, volume_array(np.uint16))
    assert volume.spacing == pytest.approx((1.5, 0.3, 0.25))


def test_single_page_tiff_is_a_volume_of_one_slice_with_unit_spacing(tmp_path):
    tifffile.imwrite(tmp_path / "page.tif", volume_array(np.uint8)[0])
    volume = read_volume(tmp_path / "page.tif")
    assert volume.array.shape == (1, 7, 9)
    assert volume.spacing == (1.0, 1.0, 1.0)


def test_rgb_tiff_stack_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((4, 8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(DataError, match=r"rgb\.tif.*one file per channel"):
        read_volume(tmp_path / "rgb.tif")


def test_corrupt_nifti_gz_is_a_one_line_data_error_naming_the_file(tmp_path):
    whole = write_volume(tmp_path / "whole.nii.gz", volume_array(np.float32), spacing=SPACING).read_bytes()
    (tmp_path / "broken.nii.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"broken\.nii\.gz could not be read as NIfTI") as caught:
        read_volume(tmp_path / "broken.nii.gz")
    assert "\n" not in str(caught.value)


def test_4d_nifti_is_refused_naming_the_file_and_4d(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), tmp_path / "series.nii.gz")
    with pytest.raises(DataError, match=r"series\.nii\.gz.*4D"):
        read_volume(tmp_path / "series.nii.gz")


def test_4d_nifti_with_one_volume_is_squeezed_to_3d(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6, 1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "one.nii")
    volume = read_volume(tmp_path / "one.nii")
    assert np.array_equal(volume.array, data[..., 0].transpose(2, 1, 0))


def test_unsupported_suffix_is_refused_listing_the_volume_suffixes(tmp_path):
    (tmp_path / "scan.mha").write_bytes(b"not read")
    with pytest.raises(DataError, match=r"scan\.mha.*\.nii\.gz, \.nii, \.tif, \.tiff"):
        read_volume(tmp_path / "scan.mha")


def test_missing_nifti_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"absent\.nii"):
        read_volume(tmp_path / "absent.nii")


def test_write_volume_refuses_a_prediction_of_another_shape_than_like(tmp_path):
    like = Volume(array=volume_array(), spacing=SPACING, affine=AFFINE)
    with pytest.raises(ValueError, match=r"\(5, 7, 9\)"):
        write_volume(tmp_path / "case.nii.gz", volume_array()[:4], like=like)
    assert not list(tmp_path.iterdir())
