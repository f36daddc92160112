"""`task=predict`: segment images of any size with a trained model (tiled, optional TTA)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from unetlab.errors import DataError

from ..schema import PredictConfig
from ..settings import to_config

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> dict:
    """Write a mask PNG (and optionally probabilities and an overlay) per input image."""
    config = to_config(cfg)
    import keras

    from unetlab.data.checks import read_array
    from unetlab.visualize import overlay, predicted_class_map, save_png

    from ..model_source import load_model_source

    settings = config.predict
    files = list_inputs(settings.input)
    loaded = load_model_source(config)
    output = Path(settings.output)
    output.mkdir(parents=True, exist_ok=True)
    scale = (f"resized to {loaded.preprocessing.resize}" if loaded.preprocessing.resize
             else f"tiles of {settings.tile_size or loaded.preprocessing.tile_size}")
    log.info("predicting %d image(s) with %s (%s, overlap %.2f, tta %s) -> %s", len(files), loaded.description,
             scale, settings.overlap, settings.tta.value, output)
    progress = keras.utils.Progbar(len(files), unit_name="image")
    for done, path in enumerate(files, start=1):
        image = read_array(path)
        probabilities = predict_image(loaded, image, settings)
        classes = predicted_class_map(probabilities)
        save_png(mask_png(classes, loaded.preprocessing.num_classes), output / f"{path.stem}.png")
        if settings.save_probabilities:
            np.save(output / f"{path.stem}.npy", probabilities.astype(np.float16))
        if settings.save_overlay:
            save_png(overlay(image, classes), output / f"{path.stem}_overlay.png")
        progress.update(done)
    log.info("wrote %d mask(s) to %s", len(files), output)
    return {"images": len(files), "output": str(output)}


def predict_image(loaded, image: np.ndarray, settings: PredictConfig) -> np.ndarray:
    """Probabilities (H, W, K) for one decoded image, preprocessed as in training."""
    from unetlab.inference import predict_image as predict_with_preprocessing

    return predict_with_preprocessing(loaded.model, image, loaded.preprocessing, tile_size=settings.tile_size,
                                      overlap=settings.overlap, batch_size=settings.batch_size,
                                      tta=settings.tta.value)


def mask_png(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids as a PNG-ready array: 0/255 for a binary model, ids (uint8/uint16) otherwise."""
    if num_classes == 1:
        return (classes * 255).astype(np.uint8)[..., None]
    return classes.astype(np.uint8 if num_classes <= 256 else np.uint16)[..., None]


def list_inputs(location: str) -> list[Path]:
    """The image files at `predict.input` (one file, or a directory's images)."""
    from unetlab.data.checks import READABLE_SUFFIXES

    path = Path(location)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"predict.input={location!r} is neither an image file nor a directory")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in READABLE_SUFFIXES)
    if not files:
        raise DataError(f"predict.input={location!r} holds no images ({', '.join(READABLE_SUFFIXES)})")
    return files
