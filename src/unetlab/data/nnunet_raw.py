"""nnU-Net v2 raw datasets as they lie on disk (documentation/dataset_format.md of MIC-DKFZ/nnUNet), and their check.

`DatasetXXX_Name/` holds dataset.json (channel_names {"0": "T2", ...}, labels {"background": 0, name: int},
numTraining, file_ending), imagesTr/CASE_XXXX{file_ending} (XXXX: the channel), labelsTr/CASE{file_ending} and
optionally imagesTs/. Region-based labels (lists of ints, regions_class_order) are refused; an "ignore" label must
be the highest value. `dims` is 3 for NIfTI (a one-slice NIfTI is a volume of one slice), 2 for PNG/BMP; TIFF is
read by nnU-Net as 2D or 3D, so it is 3 when the first training image stacks more than one page. A 3D TIFF's
spacing is that of nnU-Net's side file CASE.json ({"spacing": [z, y, x]}) if there is one, else the TIFF's.
RGB(A) natural images are ONE file per case, CASE_0000.png: a 2D dataset is read so when channel_names has 3 or 4
entries and the first training image holds that many channels. Listing reads no voxels; `read_case` and
`check_raw_dataset` read one case at a time, so datasets larger than memory can be checked and streamed.

    dataset = read_raw_dataset("nnUNet_raw/Dataset004_Hippocampus")
    verify_raw_dataset(dataset)  # one DataError: the first problem and how many others
    image, label, spacing, geometry = read_case(dataset.cases[0], dataset)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .image_files import printable, read_array
from .volume_files import NIFTI_SUFFIXES, Volume, read_volume
from .wording import plural, preview

FILE_ENDINGS = (*NIFTI_SUFFIXES, ".png", ".bmp", ".tif", ".tiff")  # lossless formats nnU-Net reads
REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
TOLERANCE = 1e-3  # relative tolerance of spacings; relative and absolute tolerance of affines


@dataclass(frozen=True)
class Case:
    """One case: its channel files (one per channel; one RGB(A) file for natural images) and label."""

    name: str
    images: tuple[Path, ...]
    label: Path | None  # None for test cases


@dataclass(frozen=True)
class RawDataset:
    """A dataset.json and the cases it describes; `cases` and `test_cases` are sorted by name."""

    root: Path
    channel_names: dict[str, str]  # in channel order
    labels: dict[str, int]
    file_ending: str
    num_training: int
    dims: int  # 2 or 3
    cases: list[Case]
    test_cases: list[Case]

    @property
    def ignore_label(self) -> int | None:
        return self.labels.get("ignore")

    @property
    def num_classes(self) -> int:
        return len(self.labels) - (self.ignore_label is not None)


def read_raw_dataset(root: str | Path, key: str = "data.root") -> RawDataset:
    """The dataset at `root`; `key` names it in errors. Raises one-line `DataError`s for a missing
    folder, a bad dataset.json, and cases with missing, extra or unpaired files (the first and a count)."""
    root = Path(root)
    where = f"{key}={printable(root)}"
    if not root.is_dir():
        raise DataError(f"{where} is not a directory")
    meta = _read_json(root / "dataset.json", where)
    channels, labels, ending = _channel_names(meta, where), _labels(meta, where), _file_ending(meta, where)
    num_training = meta["numTraining"]
    if isinstance(num_training, bool) or not isinstance(num_training, int):
        raise DataError(f"dataset.json numTraining must be an integer, not {num_training!r} ({where})")
    problems: list[str] = []
    images = _list_folder(root, "imagesTr", ending, where, problems)
    label_files = {name[: -len(ending)]: root / "labelsTr" / name for name in _names(root, "labelsTr", ending, where)}
    dims = _dims(ending, images, where)
    packed = dims == 2 and len(channels) in (3, 4) and _packed(images, len(channels))
    cases = [_case(name, images.get(name, {}), label_files.get(name), "imagesTr", ending, len(channels), packed,
                   problems) for name in sorted(set(images) | set(label_files))]
    if not cases:
        problems.append(f"imagesTr and labelsTr hold no *{ending} files")
    elif num_training != len(label_files):
        problems.append(f"dataset.json numTraining={num_training} but labelsTr holds "
                        f"{plural(len(label_files), 'label file')} (*{ending})")
    test_cases = []
    if (root / "imagesTs").is_dir():
        test_cases = [_case(name, files, None, "imagesTs", ending, len(channels), packed, problems)
                      for name, files in sorted(_list_folder(root, "imagesTs", ending, where, problems).items())]
    if problems:
        more = f"; +{plural(len(problems) - 1, 'more problem')}" if len(problems) > 1 else ""
        raise DataError(f"{problems[0]}{more} ({where})")
    return RawDataset(root=root, channel_names=channels, labels=labels, file_ending=ending,
                      num_training=num_training, dims=dims, cases=cases, test_cases=test_cases)


def modality(channel_name: str) -> str:
    """A dataset.json channel name as a modality: 'ct' for CT (any case, as nnU-Net reads it), else the name in
    lower case."""
    return channel_name.strip().lower()


def read_case(case: Case, dataset: RawDataset) -> tuple[np.ndarray, np.ndarray | None, tuple[float, ...],
                                                         Volume | None]:
    """(image, label, spacing, geometry) of one case.

    image: (z, y, x, C) or (y, x, C) float32, channels in `channel_names` order. label: (z, y, x) or (y, x),
    uint8 (int32 past 255 labels), None for a test case; its values are not checked here (that is
    `check_raw_dataset`'s job). spacing: (z, y, x) or (1.0, 1.0). geometry (3D only): the first channel's
    `Volume` (affine, header) over `image[..., 0]`, to write a prediction `like` it.
    Raises `DataError` naming the case and file for an unreadable file or a shape/spacing/affine mismatch.
    """
    image, label, spacing, geometry, problems = _inspect(case, dataset, keep=True)
    if problems:
        raise DataError(problems[0])
    if label is not None:
        label = label.astype(np.uint8 if max(dataset.labels.values()) < 256 else np.int32)
    return image, label, spacing, None if geometry is None else replace(geometry, array=image[..., 0])


def check_raw_dataset(dataset: RawDataset, *, max_problems: int = 100) -> list[str]:
    """Every problem of the training and test cases, one line each, naming the case and file(s):
    unreadable, corrupt or 4D files, shape/spacing/affine mismatches between channels and label, channel
    counts, label values not in dataset.json, NaN/Inf. Reads one case at a time; stops at `max_problems`."""
    if max_problems < 1:
        raise ConfigError(f"max_problems must be at least 1. Received: max_problems={max_problems}")
    problems: list[str] = []
    for case in dataset.cases + dataset.test_cases:
        try:
            problems += _inspect(case, dataset, keep=False)[-1]
        except DataError as error:
            problems.append(str(error))
        if len(problems) >= max_problems:
            return problems[:max_problems]
    return problems


def verify_raw_dataset(dataset: RawDataset, *, key: str = "data.root", max_problems: int = 100) -> None:
    """Raise one `DataError` (the first problem and how many others) unless `check_raw_dataset` finds none."""
    problems = check_raw_dataset(dataset, max_problems=max_problems)
    if problems:
        stopped = f", stopped at max_problems={max_problems}" if len(problems) >= max_problems else ""
        more = f"; +{plural(len(problems) - 1, 'more problem')}{stopped}" if len(problems) > 1 else ""
        raise DataError(f"{problems[0]}{more} ({key}={printable(dataset.root)})")


# --- dataset.json ----------------------------------------------------------------------------------------------

def _read_json(path: Path, where: str) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"dataset.json missing ({where})") from None
    except (OSError, ValueError) as error:
        raise DataError(f"dataset.json is not valid JSON ({str(error).splitlines()[0]}) ({where})") from None
    if not isinstance(meta, dict):
        raise DataError(f"dataset.json must hold a JSON object ({where})")
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise DataError(f"dataset.json has no {', '.join(map(repr, missing))} (nnU-Net v2 needs "
                        f"{', '.join(REQUIRED_KEYS)}; v1's 'modality' is v2's 'channel_names') ({where})")
    return meta


def _channel_names(meta: dict, where: str) -> dict[str, str]:
    names = meta["channel_names"]
    if not isinstance(names, dict) or sorted(names, key=str) != sorted(map(str, range(len(names)))) or not names:
        raise DataError(f"dataset.json channel_names must map \"0\", \"1\", ... to names. Received: {names!r} "
                        f"({where})")
    return {str(i): str(names[str(i)]) for i in range(len(names))}


def _labels(meta: dict, where: str) -> dict[str, int]:
    labels = meta["labels"]
    if not isinstance(labels, dict):
        raise DataError(f"dataset.json labels must map names to integers. Received: {labels!r} ({where})")
    regions = [name for name, value in labels.items() if isinstance(value, (list, tuple))]
    if regions or "regions_class_order" in meta:
        shown = f"label {regions[0]!r} is {labels[regions[0]]!r}, a region" if regions else "has regions_class_order"
        raise DataError(f"dataset.json {shown}: region-based training is not supported; use one label per class "
                        f"(name -> int) ({where})")
    for name, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(f"dataset.json label {name!r} must be an integer. Received: {value!r} ({where})")
    values = sorted(labels.values())
    if labels.get("background") != 0 or values != list(range(len(values))):
        raise DataError(f"dataset.json labels must be consecutive integers 0..K-1 with \"background\": 0. "
                        f"Received: {labels} ({where})")
    if "ignore" in labels and labels["ignore"] != values[-1]:
        raise DataError(f"dataset.json label 'ignore' must be the highest value. Received: {labels} ({where})")
    return dict(labels)


def _file_ending(meta: dict, where: str) -> str:
    ending = meta["file_ending"]
    ending = ending if not isinstance(ending, str) or ending.startswith(".") else "." + ending
    if ending not in FILE_ENDINGS:
        raise DataError(f"dataset.json file_ending {meta['file_ending']!r} is not supported (one of "
                        f"{', '.join(FILE_ENDINGS)}) ({where})")
    return ending


# --- listing cases ---------------------------------------------------------------------------------------------

def _names(root: Path, folder: str, ending: str, where: str) -> list[str]:
    if not (root / folder).is_dir():
        raise DataError(f"{folder}/ missing ({where})")
    return sorted(path.name for path in (root / folder).iterdir()
                  if path.name.endswith(ending) and not path.name.startswith(".") and path.is_file())


def case_and_channel(stem: str) -> tuple[str, int] | None:
    """('CASE', 1) for nnU-Net's channel file stem 'CASE_0001'; None for a stem not named that way."""
    match = re.fullmatch(r"(.+)_(\d{4})", stem)
    return None if match is None else (match[1], int(match[2]))


def _list_folder(root: Path, folder: str, ending: str, where: str, problems: list[str]) -> dict[str, dict[int, Path]]:
    """{case: {channel: path}} of an images folder; badly named files become problems."""
    cases: dict[str, dict[int, Path]] = {}
    for name in _names(root, folder, ending, where):
        named = case_and_channel(name[: -len(ending)])
        if named is None:
            problems.append(f"{folder}/{printable(name)} is not named CASE_XXXX{ending} (XXXX: the channel)")
        else:
            cases.setdefault(named[0], {})[named[1]] = root / folder / name
    return cases


def _case(name: str, files: dict[int, Path], label: Path | None, folder: str, ending: str, num_channels: int,
          packed: bool, problems: list[str]) -> Case:
    """The case `name` of `folder` (imagesTr or imagesTs); missing, extra and unpaired files become problems."""
    expected, shown, count = 1 if packed else num_channels, printable(name), plural(num_channels, "channel")
    if not files:
        problems.append(f"case {shown}: labelsTr/{shown}{ending} has no image ({folder}/{shown}_0000{ending} missing)")
    elif label is None and folder == "imagesTr":
        problems.append(f"case {shown}: {folder}/{printable(files[min(files)].name)} has no label "
                        f"(labelsTr/{shown}{ending} missing)")
    for channel in range(expected) if files else ():
        if channel not in files:
            problems.append(f"case {shown}: {folder}/{shown}_{channel:04d}{ending} missing "
                            f"(dataset.json channel_names has {count})")
    for channel in sorted(set(files) - set(range(expected))):
        problems.append(f"case {shown}: {folder}/{printable(files[channel].name)} is channel {channel}, but "
                        f"dataset.json channel_names has {count}" + (" (one RGB file)" if packed else ""))
    return Case(name=name, images=tuple(files[c] for c in range(expected) if c in files), label=label)


def _dims(ending: str, images: dict[str, dict[int, Path]], where: str) -> int:
    """3 for NIfTI, 2 for PNG/BMP; for TIFF, 3 when the first training image stacks more than one page."""
    if ending in NIFTI_SUFFIXES:
        return 3
    if ending not in (".tif", ".tiff") or not images:
        return 2
    first = min(images[min(images)].items())[1]
    try:
        import tifffile

        with tifffile.TiffFile(first) as tiff:
            series = tiff.series[0]
            stacked = [length for axis, length in zip(series.axes, series.shape) if axis not in "YXSC"]
            return 3 if max(stacked, default=1) > 1 else 2
    except Exception as error:  # tifffile raises many types for corrupt files
        raise DataError(f"{_display(first)} cannot be read as TIFF to tell 2D from 3D ({error!r}) ({where})") from None


def _packed(images: dict[str, dict[int, Path]], num_channels: int) -> bool:
    """Whether the first training case's _0000 file holds all `num_channels` channels (RGB or RGBA)."""
    first = images[min(images)].get(0) if images else None
    try:
        return first is not None and read_array(first).shape[-1] == num_channels
    except DataError:
        return False  # the integrity check reports the file


# --- reading and checking one case -----------------------------------------------------------------------------

def _display(path: Path) -> str:
    return f"{printable(path.parent.name)}/{printable(path.name)}"


def _read_file(path: Path, case: Case, dataset: RawDataset) -> tuple[np.ndarray, Volume | None]:
    """A channel or label file as (spatial..., C) and, in 3D, its Volume; a `DataError` names case and file."""
    prefix = f"case {printable(case.name)}:"
    try:
        if dataset.dims == 2:
            return read_array(path), None
        volume = read_volume(path, key=prefix)
        spacing = _side_file_spacing(path, case, dataset)
        return volume.array[..., np.newaxis], volume if spacing is None else replace(volume, spacing=spacing)
    except DataError as error:
        message = str(error).replace(str(path), _display(path))
        raise DataError(message if message.startswith(prefix) else f"{prefix} {message}") from None


def _side_file_spacing(path: Path, case: Case, dataset: RawDataset) -> tuple[float, float, float] | None:
    """A 3D TIFF's spacing from nnU-Net's CASE.json next to it, if there is one."""
    side_file = path.parent / f"{case.name}.json"
    if dataset.file_ending not in (".tif", ".tiff") or not side_file.is_file():
        return None
    try:
        spacing = tuple(float(s) for s in json.loads(side_file.read_text(encoding="utf-8"))["spacing"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{_display(side_file)} holds no valid \"spacing\" ({error})") from None
    if len(spacing) != 3 or min(spacing) <= 0:
        raise DataError(f"{_display(side_file)}: spacing must be 3 positive numbers (z, y, x). Received: {spacing}")
    return spacing


def _inspect(case: Case, dataset: RawDataset, keep: bool):
    """(image, label, spacing, geometry, problems) of one case, reading one file at a time.

    keep=False checks only (image None): also label values and NaN/Inf. A file that cannot be read raises.
    """
    name, num_channels = printable(case.name), len(dataset.channel_names)
    problems: list[str] = []
    label = reference = image = geometry = None
    if case.label is not None:
        array, volume = _read_file(case.label, case, dataset)
        if any(not np.array_equal(array[..., 0], array[..., c]) for c in range(1, array.shape[-1])):
            raise DataError(f"case {name}: {_display(case.label)} has {array.shape[-1]} different channels; a label "
                            f"holds one class id per pixel")
        label, reference = array[..., 0], (case.label, array.shape[:-1], volume)
    channel = 0
    for path in case.images:
        array, volume = _read_file(path, case, dataset)
        reference = reference or (path, array.shape[:-1], volume)
        geometry = geometry or volume
        problems += _geometry_problems(name, (path, array.shape[:-1], volume), reference)
        if not keep and np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            problems.append(f"case {name}: {_display(path)} has NaN/Inf values")
        if keep and not problems and channel + array.shape[-1] <= num_channels:
            image = np.empty((*reference[1], num_channels), np.float32) if image is None else image
            image[..., channel:channel + array.shape[-1]] = array
        channel += array.shape[-1]
    if channel != num_channels:
        files = ", ".join(map(_display, case.images))
        problems.append(f"case {name}: {files} hold {plural(channel, 'channel')}, but dataset.json channel_names "
                        f"has {num_channels}")
    if not keep and label is not None:
        values = np.unique(label)
        unexpected = values[~np.isin(values, list(dataset.labels.values()))]
        if unexpected.size:
            problems.append(f"case {name}: {_display(case.label)} has values {preview(unexpected)} not in "
                            f"dataset.json labels {sorted(dataset.labels.values())}")
    spacing = geometry.spacing if geometry is not None else (1.0,) * dataset.dims
    return image, label, spacing, geometry, problems


def _geometry_problems(name: str, file, reference) -> list[str]:
    """Shape, spacing and affine of `file` against the reference (label, else first channel): (path, shape, Volume)."""
    (path, shape, volume), (reference_path, reference_shape, reference_volume) = file, reference
    if path == reference_path:
        return []
    this, other = _display(path), _display(reference_path)
    if shape != reference_shape:
        return [f"case {name}: {this} is {'x'.join(map(str, shape))} but {other} is "
                f"{'x'.join(map(str, reference_shape))}"]
    if volume is None or reference_volume is None:
        return []
    if not np.allclose(volume.spacing, reference_volume.spacing, rtol=TOLERANCE, atol=0):
        return [f"case {name}: {this} has spacing (z, y, x) {_numbers(volume.spacing)} but {other} has "
                f"{_numbers(reference_volume.spacing)}"]
    if volume.affine is not None and reference_volume.affine is not None and \
            not np.allclose(volume.affine, reference_volume.affine, rtol=TOLERANCE, atol=TOLERANCE):
        difference = float(np.abs(volume.affine - reference_volume.affine).max())
        return [f"case {name}: {this} and {other} have different affines (entries differ by up to {difference:.4g})"]
    return []


def _numbers(values) -> str:
    return "x".join(f"{value:.4g}" for value in values)
