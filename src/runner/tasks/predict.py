"""`task=predict`: segment images of any size with a trained model or an ensemble (tiled, optional TTA)."""

from __future__ import annotations

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
from unetlab.visualize import overlay, predicted_class_map, save_png

from .. import builders
from ..model_source import describe, load_model_sources
from ..schema import Config

log = logging.getLogger(__name__)

SUBMISSION = "challenge.tif"  # predict.format=challenge: the file in predict.output


def predict(config: Config) -> dict:
    """Write a mask PNG (and optionally probabilities and an overlay) per input image, or with
    `predict.format=challenge` the ISBI 2012 submission stack; with several run ids, the members' mean
    probabilities decide; `predict.postprocess` applies before anything is written."""
    settings = config.predict
    files = list_inputs(settings.input)
    output = Path(settings.output)
    check_output(output, settings.input)
    members = load_model_sources(config)
    output.mkdir(parents=True, exist_ok=True)
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
    log.info("postprocessing: %s", builders.describe_postprocessing(config, watershed))
    progress, pages = keras.utils.Progbar(len(files), unit_name="image"), []
    for done, path in enumerate(files, start=1):
        image = read_array(path)
        probabilities = builders.postprocessed(
            predict_ensemble(ensemble, image, **builders.prediction_settings(config)), watershed)
        classes = predicted_class_map(probabilities)
        if submission:
            pages.append(challenge.cell_probability(probabilities).astype(np.float32))
        else:
            save_png(mask_png(classes, num_classes), output / f"{path.stem}.png")
        if settings.save_probabilities:
            np.save(output / f"{path.stem}.npy", probabilities.astype(np.float32))
        if settings.save_overlay:
            save_png(overlay(image, classes), output / f"{path.stem}_overlay.png")
        progress.update(done)
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


def list_inputs(location: str) -> list[Path]:
    """The image files at `predict.input`: one file, or a directory's images (one per stem, as each
    gives its mask's name; names must be UTF-8)."""
    path = Path(location)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"predict.input={location!r} is neither an image file nor a directory")
    return sorted(list_images(path, "predict.input").values())


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
