"""Volume files: a 3-D image read into one record (array, spacing, geometry), and a prediction written back.

Chosen by the file's ending: NIfTI-1/-2 (`.nii`, `.nii.gz`; https://nifti.nimh.nih.gov/nifti-1) with nibabel,
the format of nnU-Net, the Medical Segmentation Decathlon and most medical datasets; TIFF stacks (`.tif`,
`.tiff`) with tifffile, one grayscale page per slice, with the voxel size of ImageJ hyperstacks (description
`spacing=`, `unit=`; X/YResolution tags) or of OME-TIFF (`Pixels` PhysicalSizeX/Y/Z, OME data model).

Every reader returns the array in the axis order (z, y, x): slowest to fastest, as a TIFF stack is stored.
A NIfTI's data array, indexed (i, j, k), is transposed to (k, j, i), as nnU-Net's SimpleITK reader does;
its affine stays that of the file's (i, j, k) order, so a prediction written `like` its input carries
the input's affine and header and lies on it in ITK-SNAP or 3D Slicer.
"""

from __future__ import annotations

import os
import secrets
import xml.etree.ElementTree as ElementTree
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .image_files import printable

NIFTI_SUFFIXES = (".nii.gz", ".nii")
TIFF_SUFFIXES = (".tif", ".tiff")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + TIFF_SUFFIXES
# The most voxels a volume may have, checked from the file's header before its voxels are decoded:
# 1024^3 is 4 GiB as float32. Raise it (before reading) for larger volumes you trust.
MAX_VOXELS = 1024**3


@dataclass(frozen=True)
class Volume:
    """A 3-D image and its geometry.

    array: the voxels, axis order (z, y, x). spacing: the voxel size in the same (z, y, x) order, in `unit`.
    affine: NIfTI only (else None), the 4x4 voxel-to-world (RAS+ mm) matrix of the file's (i, j, k) order,
    i.e. of `array.transpose(2, 1, 0)`. header: NIfTI only (else None), the nibabel header to write back.
    unit: the unit of `spacing` as the file states it ("mm", "um", ...), None when it states none.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray | None = None
    header: Any = None
    unit: str | None = None


def _suffix(path: str | Path) -> str | None:
    name = Path(path).name.lower()
    return next((suffix for suffix in VOLUME_SUFFIXES if name.endswith(suffix)), None)


def is_volume_file(path: str | Path) -> bool:
    """Whether `path` ends in one of VOLUME_SUFFIXES (any case)."""
    return _suffix(path) is not None


def volume_stem(path: str | Path) -> str:
    """The file name without its volume suffix: "CASE_0000.nii.gz" -> "CASE_0000" (else `Path.stem`)."""
    name, suffix = Path(path).name, _suffix(path)
    return name[: -len(suffix)] if suffix else Path(path).stem


def read_volume(path: str | Path, key: str = "image") -> Volume:
    """The NIfTI or TIFF volume at `path` (chosen by suffix); `key` names its role in errors.

    A 4-D NIfTI whose 4th axis has length 1 is squeezed to 3-D, and a single TIFF page is a volume of one
    slice. Raises a one-line `DataError` naming the file when it is missing, corrupt, not 3-D grayscale,
    larger than MAX_VOXELS, or of another format.
    """
    suffix = _suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti(Path(path), key)
    if suffix in TIFF_SUFFIXES:
        return _read_tiff(Path(path), key)
    raise DataError(f"{key} {printable(path)}: not a volume file ({', '.join(VOLUME_SUFFIXES)})")


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _check_size(path: Path, key: str, shape: tuple[int, ...]) -> None:
    if int(np.prod(shape, dtype=np.float64)) > MAX_VOXELS:
        raise DataError(f"{key} {printable(path)}: {'x'.join(map(str, shape))} is more than MAX_VOXELS="
                        f"{MAX_VOXELS} voxels (unetlab.data.volume_files.MAX_VOXELS)")


def _read_nifti(path: Path, key: str) -> Volume:
    import nibabel as nib

    try:
        image = nib.load(path)
        shape = tuple(image.shape)
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise DataError(f"{key} {printable(path)}: a {len(shape)}D NIfTI image {shape}; expected a 3D volume")
        _check_size(path, key, shape)
        data = np.asanyarray(image.dataobj).reshape(shape)
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, OSError, EOFError, zlib.error,
            ValueError) as error:  # a truncated, corrupt or foreign file
        raise DataError(f"{key} {printable(path)} could not be read as NIfTI ({_first_line(error)})") from None
    unit = image.header.get_xyzt_units()[0]
    return Volume(array=np.ascontiguousarray(data.transpose(2, 1, 0)),
                  spacing=tuple(float(zoom) for zoom in reversed(image.header.get_zooms()[:3])),
                  affine=np.array(image.affine), header=image.header,
                  unit=None if unit == "unknown" else unit)


def _read_tiff(path: Path, key: str) -> Volume:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            if not tiff.series:
                raise ValueError("no image in it")
            series = tiff.series[0]
            axes, shape = series.axes, tuple(series.shape)
            order = _stack_order(path, key, axes, shape)
            _check_size(path, key, shape)
            array = series.asarray()
            spacing, unit = _tiff_spacing(tiff)
    except DataError:
        raise
    except Exception as error:  # tifffile raises many types for corrupt files
        raise DataError(f"{key} {printable(path)} could not be read as TIFF ({_first_line(error)})") from None
    size_one_axes = [i for i in range(array.ndim) if i not in order]
    volume = array.transpose(order + size_one_axes).reshape([1] * (3 - len(order)) + [shape[i] for i in order])
    return Volume(array=np.ascontiguousarray(volume), spacing=spacing, unit=unit)


def _stack_order(path: Path, key: str, axes: str, shape: tuple[int, ...]) -> list[int]:
    """The (stack, Y, X) axes of a TIFF series (Y, X alone for one page); refuses RGB and hyperstacks."""
    where = f"{key} {printable(path)}: a {'x'.join(map(str, shape))} TIFF (axes {axes})"
    if "Y" not in axes or "X" not in axes:
        raise DataError(f"{where} has no 2-D image")
    if any(axis in "SC" and length > 1 for axis, length in zip(axes, shape)):
        raise DataError(f"{where} has several channels; expected grayscale, one file per channel")
    stacked = [i for i, (axis, length) in enumerate(zip(axes, shape)) if axis not in "YXSC" and length > 1]
    if len(stacked) > 1:
        raise DataError(f"{where} stacks along {len(stacked)} axes; expected one stack of slices")
    return stacked + [axes.index("Y"), axes.index("X")]


def _tiff_spacing(tiff: Any) -> tuple[tuple[float, float, float], str | None]:
    """(z, y, x) voxel size and unit from ImageJ or OME metadata; 1.0 and None where absent."""
    if tiff.is_ome and tiff.ome_metadata:
        ome = ElementTree.fromstring(tiff.ome_metadata)
        pixels = next((element for element in ome.iter() if element.tag.endswith("Pixels")), None)
        if pixels is not None and "PhysicalSizeX" in pixels.attrib:
            sizes = tuple(float(pixels.get(f"PhysicalSize{axis}", 1.0)) for axis in "ZYX")
            return sizes, pixels.get("PhysicalSizeXUnit", "µm")  # µm: the OME schema's default
    if tiff.is_imagej and tiff.imagej_metadata:
        tags = tiff.pages[0].tags
        y, x = (_reciprocal(tags.get(name)) for name in ("YResolution", "XResolution"))
        return (float(tiff.imagej_metadata.get("spacing", 1.0)), y, x), tiff.imagej_metadata.get("unit")
    return (1.0, 1.0, 1.0), None


def _reciprocal(tag: Any) -> float:
    """Pixel size (1/resolution) from an XResolution/YResolution tag, a (numerator, denominator) rational."""
    return tag.value[1] / tag.value[0] if tag is not None and tag.value[0] else 1.0


def write_volume(path: str | Path, array: np.ndarray, like: Volume | None = None, *,
                 spacing: tuple[float, float, float] | None = None) -> Path:
    """Write `array` (z, y, x) as NIfTI or TIFF (chosen by `path`'s suffix), atomically; returns `path`.

    `like` is the volume it was predicted from: a NIfTI gets its affine and a copy of its header (data
    type set to the array's, intensity display range cleared), so it aligns with the input; a TIFF gets
    its spacing and unit. Without `like`, `spacing` (z, y, x; default 1.0) gives a diagonal affine.
    Booleans are written as uint8; an ImageJ TIFF holds uint8, uint16 or float32.
    """
    path, suffix = Path(path), _suffix(path)
    array = np.asarray(array)
    array = array.astype(np.uint8) if array.dtype == bool else array
    if suffix is None:
        raise ValueError(f"path must end in one of {', '.join(VOLUME_SUFFIXES)}. Received: path={str(path)!r}")
    if array.ndim != 3:
        raise ValueError(f"array must be 3-D (z, y, x). Received: array.shape={array.shape}")
    if like is not None and like.array.shape != array.shape:
        raise ValueError(f"array must have the shape of `like`, {like.array.shape}. Received: {array.shape}")
    if like is not None and spacing is not None:
        raise ValueError(f"spacing comes from `like`; pass one of them. Received: spacing={spacing}")
    spacing = tuple(float(s) for s in (like.spacing if like is not None else spacing or (1.0, 1.0, 1.0)))
    temporary = path.with_name(f".{volume_stem(path)}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        if suffix in NIFTI_SUFFIXES:
            _write_nifti(temporary, array, like, spacing)
        else:
            _write_tiff(temporary, array, spacing, like.unit if like is not None else None)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _write_nifti(path: Path, array: np.ndarray, like: Volume | None, spacing: tuple[float, ...]) -> None:
    import nibabel as nib

    data = array.transpose(2, 1, 0)  # (z, y, x) -> the file's (i, j, k)
    header = like.header if like is not None else None
    affine = like.affine if like is not None and like.affine is not None else np.diag([*spacing[::-1], 1.0])
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    image = image_class(data, affine, header=header, dtype=array.dtype)  # the header is copied
    image.header["cal_min"], image.header["cal_max"] = 0, 0  # the input's display range would hide labels
    nib.save(image, path)


def _write_tiff(path: Path, array: np.ndarray, spacing: tuple[float, ...], unit: str | None) -> None:
    import tifffile

    metadata = {"axes": "ZYX", "spacing": spacing[0], **({"unit": unit} if unit else {})}
    tifffile.imwrite(path, array, imagej=True, resolution=(1 / spacing[2], 1 / spacing[1]), metadata=metadata)
