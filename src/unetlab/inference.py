"""Sliding-window (tiled) prediction of images of any size, with test-time augmentation.

`predict_tiled` follows the overlap-tile strategy of the U-Net paper (Ronneberger
et al. 2015, arXiv:1505.04597): the image is mirror-padded at its borders and cut
into square tiles; a valid-padding model, whose output is the centre of its input,
gets the missing context from the mirrored border. Overlapping tile predictions
are blended with a Gaussian weight map as in nnU-Net (Isensee et al. 2021, Nature
Methods 18:203), so tile borders, where a network sees the least context, count
least and leave no seams.

    probabilities = predict_tiled(model, image, tile_size=256, overlap=0.5, tta="flips")
    classes = unetlab.visualize.predicted_class_map(probabilities)

`image` is one (height, width, channels) float32 array, already normalised like
the training data; the result is (height, width, K) float32 probabilities.
`predict_image` first prepares a decoded image as training did; `predict_ensemble`
averages several models' `predict_image` probabilities (nnU-Net's ensemble of folds).
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np

from .errors import ConfigError, DataError
from .names import TTA, check_choice

Transform = Callable[[np.ndarray], np.ndarray]


def predict_tiled(model, image: np.ndarray, *, tile_size: int, overlap: float = 0.5, batch_size: int = 4,
                  tta: str = "none") -> np.ndarray:
    """Predict probabilities (H, W, K) for one image (H, W, C) of any height and width.

    The model sees `tile_size` x `tile_size` input tiles. For a same-padding model
    the prediction of a tile covers the whole tile; for a valid-padding model it is
    the centre `out` x `out` region and the remaining `(tile_size - out) / 2` pixels
    on each side are context. Output windows of size `out` step over the image with
    a stride of at most `out * (1 - overlap)` (at least 1), evenly spaced so that
    the first and last are flush with the borders; the image is mirror-padded by the
    context margin (and up to one window if it is smaller than that).
    Overlapping predictions are averaged with `gaussian_weights(out)`.

    `tta`: `none`, `flips` (identity, horizontal, vertical, both) or `d4` (the 8
    rotations and reflections of the square); each tile batch is transformed, the
    predictions transformed back and the probabilities averaged.
    Same-padding models need `tile_size` divisible by 2**depth.
    """
    check_tiling_arguments(tile_size, overlap, batch_size, tta)
    image = _check_image(model, image)
    out, num_classes = tile_output(model, tile_size, image.shape[-1])
    margin = (tile_size - out) // 2

    height, width = image.shape[:2]
    canvas = (max(height, out), max(width, out))  # the output area that the windows cover
    top, bottom = _split(canvas[0] - height)
    left, right = _split(canvas[1] - width)
    padded = np.pad(image, ((margin + top, margin + bottom), (margin + left, margin + right), (0, 0)),
                    mode="reflect")  # numpy reflects repeatedly when the pad exceeds the image

    stride = max(1, int(out * (1.0 - overlap)))
    starts = [(row, col) for row in window_starts(canvas[0], out, stride)
              for col in window_starts(canvas[1], out, stride)]
    weights = gaussian_weights(out)[..., None]
    total = np.zeros((*canvas, num_classes), np.float32)
    weight_sum = np.zeros((*canvas, 1), np.float32)
    transforms = TTA_TRANSFORMS[tta]
    batch = min(batch_size, len(starts))  # one batch shape, so the predict function is traced once
    tiles = np.zeros((batch, tile_size, tile_size, image.shape[-1]), np.float32)
    for first in range(0, len(starts), batch):
        chunk = starts[first:first + batch]
        tiles[len(chunk):] = 0.0
        for i, (row, col) in enumerate(chunk):
            tiles[i] = padded[row:row + tile_size, col:col + tile_size]
        probabilities = _predict_with_tta(model, tiles, transforms)
        for (row, col), probability in zip(chunk, probabilities):
            total[row:row + out, col:col + out] += probability * weights
            weight_sum[row:row + out, col:col + out] += weights
    return (total / weight_sum)[top:top + height, left:left + width]


def predict_whole(model, image: np.ndarray, *, multiple: int) -> np.ndarray:
    """Predict a same-padding model on the whole image (H, W, C) at once -> (H, W, K).

    The image is mirror-padded (evenly on both sides) up to the next multiple of
    `multiple` (2**depth) and the prediction is cropped back. Memory grows with the
    image; this is the reference that `predict_tiled` approximates.
    """
    if not _is_int(multiple) or multiple < 1:
        raise ConfigError(f"multiple must be an integer >= 1 (2**depth). Received: multiple={multiple!r}")
    image = _check_image(model, image)
    height, width = image.shape[:2]
    top, bottom = _split(-height % multiple)
    left, right = _split(-width % multiple)
    padded = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    probabilities = np.asarray(model.predict_on_batch(padded[None]), np.float32)[0]
    if probabilities.shape[:2] != padded.shape[:2]:
        raise ConfigError(
            f"model must be a same-padding model for predict_whole: it mapped {padded.shape[0]}x{padded.shape[1]} "
            f"to {probabilities.shape[0]}x{probabilities.shape[1]}; use predict_tiled"
        )
    return probabilities[top:top + height, left:left + width]


def gaussian_weights(tile_size: int, sigma_scale: float = 1 / 8) -> np.ndarray:
    """A (tile_size, tile_size) float32 Gaussian centred on the tile, sigma = tile_size * sigma_scale.

    Its maximum is 1 and it is clipped to at least 1e-6, so every pixel of a tile
    gets a positive weight (nnU-Net's blending weights; the centre here is the
    exact middle, (tile_size - 1) / 2, so the map is symmetric under flips and
    rotations).
    """
    _check_tile_size(tile_size)
    if not isinstance(sigma_scale, numbers.Real) or not sigma_scale > 0:
        raise ConfigError(f"sigma_scale must be > 0. Received: sigma_scale={sigma_scale!r}")
    sigma = tile_size * sigma_scale
    offsets = np.arange(tile_size, dtype=np.float64) - (tile_size - 1) / 2
    line = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights = np.outer(line, line)
    return np.maximum(weights / weights.max(), 1e-6).astype(np.float32)


# --- test-time augmentation --------------------------------------------------------------------
# Each entry is (forward, inverse) on batches (N, H, W, C); H == W for the rotations.

def _rotation(k: int) -> tuple[Transform, Transform]:
    return (lambda x: np.rot90(x, k, axes=(1, 2)), lambda y: np.rot90(y, -k, axes=(1, 2)))


def _flipped_rotation(k: int) -> tuple[Transform, Transform]:
    return (lambda x: np.rot90(x[:, :, ::-1], k, axes=(1, 2)), lambda y: np.rot90(y, -k, axes=(1, 2))[:, :, ::-1])


def _flip(axes: tuple[int, ...]) -> tuple[Transform, Transform]:
    return (lambda x: np.flip(x, axes), lambda y: np.flip(y, axes))


TTA_TRANSFORMS: dict[str, list[tuple[Transform, Transform]]] = {
    "none": [_rotation(0)],
    "flips": [_rotation(0), _flip((2,)), _flip((1,)), _flip((1, 2))],
    "d4": [_rotation(k) for k in range(4)] + [_flipped_rotation(k) for k in range(4)],
}


def _predict_with_tta(model, tiles: np.ndarray, transforms) -> np.ndarray:
    """Mean over `transforms` of inverse(model(forward(tiles)))."""
    total = None
    for forward, inverse in transforms:
        prediction = np.asarray(model.predict_on_batch(np.ascontiguousarray(forward(tiles))), np.float32)
        prediction = inverse(prediction)
        total = prediction.copy() if total is None else total + prediction
    return total / len(transforms)


# --- geometry and checks -----------------------------------------------------------------------

def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Evenly spaced starts with gaps <= stride, first 0, last `length - window`, mirror-symmetric."""
    last = length - window
    if last <= 0:
        return [0]
    count = math.ceil(last / stride) + 1
    half = [(2 * i * last + count - 1) // (2 * (count - 1)) for i in range((count + 1) // 2)]  # round(i*step)
    return half + [last - start for start in reversed(half[:count // 2])]


def _split(extra: int) -> tuple[int, int]:
    """Split a padding amount between the two sides (the larger half after)."""
    return extra // 2, extra - extra // 2


def tile_output(model, tile_size: int, channels: int) -> tuple[int, int]:
    """(out, K): the model's output height/width and channels for a tile_size x tile_size input."""
    fixed = _model_input_shape(model)[1:3]
    if any(size is not None for size in fixed) and tuple(fixed) != (tile_size, tile_size):
        raise ConfigError(
            f"tile_size={tile_size} does not match the model's fixed input size "
            f"{fixed[0]}x{fixed[1]}; use tile_size={fixed[0]}"
        )
    try:
        # Run one zero tile eagerly (no tf.function trace): a same-padding U-Net traces any size
        # symbolically and fails on sizes not divisible by 2**depth only when it computes.
        shape = tuple(np.shape(model(np.zeros((1, tile_size, tile_size, channels), np.float32), training=False)))
    except Exception as error:  # noqa: BLE001 - Keras raises ValueError or a TensorFlow error
        raise ConfigError(
            f"tile_size={tile_size} does not fit the model (a same-padding U-Net needs a multiple "
            f"of 2**depth; a valid-padding one a size its convolutions and poolings divide evenly). "
            f"Received: tile_size={tile_size}"
        ) from error
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] > tile_size or (tile_size - shape[1]) % 2:
        raise ConfigError(
            f"model must map a tile to the centred square of it for predict_tiled; it maps "
            f"{tile_size}x{tile_size} to {shape[1:]}. Received: tile_size={tile_size}"
        )
    return shape[1], shape[3]


def check_tiling_arguments(tile_size, overlap, batch_size, tta) -> None:
    _check_tile_size(tile_size)
    if (not isinstance(overlap, numbers.Real) or isinstance(overlap, bool)
            or not 0.0 <= float(overlap) < 1.0):
        raise ConfigError(f"overlap must be in [0, 1). Received: overlap={overlap!r}")
    if not _is_int(batch_size) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    check_choice("tta", tta, TTA)


def _check_tile_size(tile_size) -> None:
    if not _is_int(tile_size) or tile_size < 1:
        raise ConfigError(f"tile_size must be a positive integer. Received: tile_size={tile_size!r}")


def _check_image(model, image) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise DataError(f"image must have shape (height, width, channels). Received: shape={image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise DataError(f"image must have a positive height and width. Received: shape={image.shape}")
    expected = _model_input_shape(model)[-1]
    if expected is not None and image.shape[-1] != expected:
        raise DataError(f"image has {image.shape[-1]} channels but the model expects {expected}")
    return image


def _model_input_shape(model) -> tuple:
    try:
        shape = tuple(model.input_shape)
    except (AttributeError, ValueError):  # a subclassed model that was never called
        return (None, None, None, None)
    return shape if len(shape) == 4 else (None, None, None, None)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def predict_image(model, image: np.ndarray, preprocessing, *, tile_size: int | None = None, overlap: float = 0.5,
                  batch_size: int = 4, tta: str = "none") -> np.ndarray:
    """Probabilities (H, W, K) for one decoded image of any size and dtype, prepared as in training.

    `preprocessing` (`unetlab.preprocessing.Preprocessing`) normalises the image, and its decision layer
    (`unetlab.decision`: the temperatures fitted after training) calibrates the probabilities; a model trained on
    whole images resized to `preprocessing.resize` predicts at that scale and its probabilities are
    resized back (in tiles of `tile_size` of the resized image when given), otherwise the image is
    predicted at full resolution in tiles of `tile_size` (default: the training size). A tile size
    other than the training size needs a model with an open input size
    (`unetlab.models.with_any_input_size`).
    """
    from .decision import Decision

    array = preprocessing.apply(image)
    decision = Decision.from_record(preprocessing.decision)
    if not preprocessing.resize:
        return decision.calibrated(predict_tiled(model, array, tile_size=tile_size or preprocessing.tile_size,
                                                 overlap=overlap, batch_size=batch_size, tta=tta))
    import tensorflow as tf

    size = preprocessing.resize
    small = tf.image.resize(array, [size, size], method="bilinear").numpy()
    probabilities = predict_tiled(model, small, tile_size=tile_size or size, overlap=overlap, batch_size=batch_size,
                                  tta=tta)
    return decision.calibrated(tf.image.resize(probabilities, array.shape[:2], method="bilinear").numpy())


def predict_ensemble(members, image: np.ndarray, **settings) -> np.ndarray:
    """Mean of `predict_image(model, image, preprocessing, **settings)` over the `(model, preprocessing)`
    pairs of `members` -> (H, W, K), as nnU-Net averages its folds.

    Each member prepares the image with its own preprocessing (folds normalised with their own
    dataset statistics) and predicts in its own tile size; they must agree on `num_classes`.
    """
    members = list(members)
    if not members:
        raise ConfigError("members must hold at least one (model, preprocessing) pair. Received: members=[]")
    first = members[0][1].num_classes
    for index, (_, preprocessing) in enumerate(members[1:], start=1):
        if preprocessing.num_classes != first:
            raise ConfigError(f"ensemble members must agree on num_classes: member 0 has num_classes={first}, "
                              f"member {index} has num_classes={preprocessing.num_classes}")
    total = None
    for model, preprocessing in members:
        probabilities = predict_image(model, image, preprocessing, **settings)
        total = probabilities if total is None else total + probabilities
    return total / len(members)
