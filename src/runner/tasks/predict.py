"""`task=predict`: segment images of any size with a trained model or an ensemble (tiled, optional TTA)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import keras
import numpy as np

from unetlab import challenge
from unetlab.data.folder import list_images
from unetlab.data.image_files import read_array
from unetlab.errors import ConfigError, DataError
from unetlab.inference import predict_ensemble
from unetlab.visualize import overlay, save_png

from .. import builders, decision_settings
from ..model_source import describe, load_model_sources
from ..schema import Config

log = logging.getLogger(__name__)

SUBMISSION = "challenge.tif"  # predict.format=challenge: the file in predict.output
DECISION = "decision.json"  # in predict.output: how the masks were made (calibration, threshold, rules, watershed)


def predict(config: Config) -> dict:
    """Write a mask PNG (and optionally probabilities and an overlay) per input image, or with
    `predict.format=challenge` the ISBI 2012 submission stack; with several run ids, the members' mean
    probabilities decide; `predict.postprocess` applies before anything is written, and the model's decision
    layer (`runner.decision_settings`) makes the masks; decision.json says what ran."""
    settings = config.predict
    files = list_inputs(settings.input)
    output = Path(settings.output)
    check_output(output, settings.input)
    members = load_model_sources(config)
    output.mkdir(parents=True, exist_ok=True)
    if members[0].preprocessing.planned:
        decision_settings.check_threshold_applies(config, members[0].preprocessing)
        return predict_cases(config, members, files, output)
    scale = ", ".join(sorted({f"resized to {member.preprocessing.resize}, tiles of "
                              f"{settings.tile_size or member.preprocessing.resize}" if member.preprocessing.resize
                              else f"tiles of {settings.tile_size or member.preprocessing.tile_size}"
                              for member in members}))
    log.info("predicting %d image(s) with %s (%s, overlap %.2f, tta %s) -> %s", len(files), describe(members),
             scale, settings.overlap, settings.tta.value, output)
    ensemble, num_classes = [(m.model, m.preprocessing) for m in members], members[0].preprocessing.num_classes
    submission = settings.format.value == "challenge"
    if submission and num_classes > 2:
        raise ConfigError(f"predict.format=challenge writes a binary cell/membrane model's cell probabilities; this "
                          f"model has {num_classes} classes: use predict.format=masks")
    watershed = builders.postprocessing(config, members[0].preprocessing)  # auto: the (first) model's choice
    decision = decision_settings.ensemble_decision(config, members)
    log.info("postprocessing: %s; decision: %s", builders.describe_postprocessing(config, watershed),
             decision.describe())
    progress, pages = keras.utils.Progbar(len(files), unit_name="image"), []
    for done, path in enumerate(files, start=1):
        image = read_array(path)
        probabilities = builders.postprocessed(
            predict_ensemble(ensemble, image, **builders.prediction_settings(config)), watershed)
        classes = decision.classes(probabilities)
        if submission:
            pages.append(challenge.cell_probability(probabilities).astype(np.float32))
        else:
            save_png(mask_png(classes, num_classes), output / f"{path.stem}.png")
        if settings.save_probabilities:
            np.save(output / f"{path.stem}.npy", probabilities.astype(np.float32))
        if settings.save_overlay:
            save_png(overlay(image, classes), output / f"{path.stem}_overlay.png")
        progress.update(done)
    (output / DECISION).write_text(json.dumps({"watershed": str(watershed or "none"), **decision.as_dict()}, indent=2))
    if submission:
        written = write_submission(pages, output / SUBMISSION)
        log.info("wrote the ISBI 2012 submission of %d slice(s) to %s", len(pages), written)
    else:
        log.info("wrote %d mask(s) to %s", len(files), output)
    return {"images": len(files), "output": str(output)}


def write_submission(pages: list[np.ndarray], path: Path) -> Path:
    """The ISBI 2012 challenge's submission layout: one multi-page 32-bit float TIFF, a page per slice (in
    the order of the test stack), each pixel its cell probability: 0 certain membrane, 1 certain non-membrane
    (the challenge's instructions, http://brainiac2.mit.edu/isbi_challenge/; Fiji's metrics threshold the map
    so that values above the threshold are cells). Pages of different sizes cannot share one stack."""
    import tifffile

    if len({page.shape for page in pages}) > 1:
        sizes = ", ".join(sorted({"x".join(map(str, page.shape)) for page in pages}))
        raise DataError(f"predict.format=challenge stacks the slices into one TIFF; predict.input holds images "
                        f"of several sizes ({sizes})")
    tifffile.imwrite(path, np.stack(pages).astype(np.float32), imagej=True, metadata={"axes": "ZYX"})
    return path


def mask_png(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids as a PNG-ready array: 0/255 for a binary model, ids (uint8/uint16) otherwise."""
    if num_classes == 1:
        return (classes * 255).astype(np.uint8)[..., None]
    return classes.astype(np.uint8 if num_classes <= 256 else np.uint16)[..., None]


def predict_cases(config: Config, members, files: list[Path], output: Path) -> dict:
    """Models trained on planned patches (data=nnunet): every case of the input files (channel files
    CASE_0000, CASE_0001, ... as in nnU-Net's imagesTs, or one file per case for one channel) predicted
    with the sliding window at the training spacing, and its mask written in the input's format and
    geometry: NIfTI with the input's affine and header, a TIFF stack, or a PNG."""
    from unetlab.volume_inference import predict_case

    settings, preprocessing = config.predict, members[0].preprocessing
    cases = group_cases(files, preprocessing.channels)
    window = builders.case_prediction_settings(config)
    decision = decision_settings.ensemble_decision(config, members)  # the component rules training chose
    log.info("predicting %d case(s) with %s (patch %s at spacing %s, overlap %.2f, mirroring %s) -> %s", len(cases),
             describe(members), "x".join(map(str, preprocessing.patch_size)),
             "x".join(f"{value:.2f}" for value in preprocessing.target_spacing), window["overlap"],
             "on" if window["mirror"] else "off", output)
    log.info("postprocessing: %s", decision.describe_rules())
    progress = keras.utils.Progbar(len(cases), unit_name="case")
    for done, (name, paths) in enumerate(cases.items(), start=1):
        image, spacing, like, ending = read_case_files(paths, len(preprocessing.patch_size))
        probabilities = sum(predict_case(member.model, image, spacing, member.preprocessing, **window)
                            for member in members)
        probabilities /= len(members)
        classes = decision.classes(probabilities)
        write_case_mask(output / f"{name}{ending}", classes, like, preprocessing.num_classes)
        if settings.save_probabilities:
            np.save(output / f"{name}.npy", probabilities.astype(np.float32))
        progress.update(done)
    log.info("wrote %d mask(s) to %s", len(cases), output)
    return {"images": len(cases), "output": str(output)}


def group_cases(files: list[Path], channels: int) -> dict[str, list[Path]]:
    """{case: its channel files in order}: CASE_0000, CASE_0001, ... (nnU-Net's naming); with one channel,
    a file without the suffix is a case of its own. A case missing a channel is a one-line error."""
    from unetlab.data.nnunet_raw import case_and_channel
    from unetlab.data.volume_files import volume_stem

    cases: dict[str, dict[int, Path]] = {}
    for path in files:
        name, channel = case_and_channel(volume_stem(path)) or (volume_stem(path), 0)
        cases.setdefault(name, {})[channel] = path
    for name, found in cases.items():
        if sorted(found) != list(range(channels)):
            missing = sorted(set(range(channels)) - set(found)) or sorted(set(found) - set(range(channels)))
            raise DataError(f"predict.input: case {name} has channel files {sorted(found)}, the model takes "
                            f"{channels} (channel {missing[0]:04d} {'missing' if missing[0] < channels else 'extra'})")
    return {name: [found[c] for c in range(channels)] for name, found in sorted(cases.items())}


def read_case_files(paths: list[Path], dims: int):
    """(image (spatial..., C) float32, spacing, the first channel's Volume or None, the output file ending)."""
    from unetlab.data.volume_files import NIFTI_SUFFIXES, read_volume

    if dims == 3:
        volumes = [read_volume(path) for path in paths]
        shapes = {volume.array.shape for volume in volumes}
        if len(shapes) > 1:
            raise DataError(f"predict.input: the channel files of {paths[0].name} differ in shape: {sorted(shapes)}")
        ending = ".nii.gz" if paths[0].name.lower().endswith(NIFTI_SUFFIXES) else ".tif"
        return (np.stack([v.array for v in volumes], axis=-1).astype(np.float32), volumes[0].spacing, volumes[0],
                ending)
    arrays = [read_array(path) for path in paths]
    image = np.concatenate([a if a.ndim == 3 else a[..., None] for a in arrays], axis=-1).astype(np.float32)
    return image, (1.0, 1.0), None, ".png"


def write_case_mask(path: Path, classes: np.ndarray, like, num_classes: int) -> None:
    """A case's class ids as a NIfTI/TIFF volume in `like`'s geometry, or a PNG mask (0/255 when binary)."""
    from unetlab.data.volume_files import write_volume

    if like is not None:  # the smallest integer type of the classes (int64 is 8x the size; ImageJ TIFF refuses it)
        write_volume(path, classes.astype(np.uint8 if num_classes <= 256 else np.uint16), like=like)
    else:
        save_png(mask_png(classes, num_classes), path)


def list_inputs(location: str) -> list[Path]:
    """The image files at `predict.input`: one file, or a directory's NIfTI volumes, else its images (one
    per stem, as each gives its mask's name; names must be UTF-8)."""
    from unetlab.data.volume_files import NIFTI_SUFFIXES

    path = Path(location)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"predict.input={location!r} is neither an image file nor a directory")
    volumes = sorted(file for file in path.iterdir() if file.name.lower().endswith(NIFTI_SUFFIXES))
    return volumes or sorted(list_images(path, "predict.input").values())


def check_output(output: Path, location: str) -> None:
    """Refuse a `predict.output` that is (or is inside) the `predict.input` folder, or that would
    overwrite the input file: masks must not land among, or on, the images they come from."""
    source, target = Path(location).resolve(), output.resolve()
    if source.is_dir() and (target == source or source in target.parents):
        raise DataError(f"predict.output={str(output)!r} is inside predict.input={location!r}: "
                        f"write masks to a folder outside the images")
    if source.is_file() and target / f"{source.stem}.png" == source:
        raise DataError(f"predict.output={str(output)!r} would overwrite predict.input={location!r} with its mask")
    existing = next(path for path in (target, *target.parents) if path.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"predict.output={str(output)!r} cannot be created: {str(existing)!r} is "
                        f"{'not a folder' if not existing.is_dir() else 'not writable'}")
