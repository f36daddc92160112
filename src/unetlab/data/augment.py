"""Seeded augmentation of (image, mask) pairs inside `tf.data`.

Geometric transforms (flips, 90-degree turns, rotation, scale, shift and an
elastic deformation) are composed into one coordinate map that is sampled once:
bilinear for the image, nearest neighbour for the mask, so a mask only ever
holds class ids it had before. Borders are mirrored (reflect without repeating
the edge pixel) for both. Intensity transforms (blur, brightness, contrast,
gamma, noise) touch only the image, which is clipped to [0, 1].

Only stateless random ops are used: a pair's augmentation is a function of its
shape-[2] key, so seeded runs repeat and `tf.config.experimental.
enable_op_determinism()` leaves parallel `map` calls parallel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import tensorflow as tf

from ..errors import ConfigError
from .patches import keyed_map

# Each transform draws from its own key, folded in from the pair's key, so
# switching one transform on or off never changes what the others draw.
_FLIP, _ROT90, _ROTATION, _SCALE, _SHIFT, _ELASTIC, _BLUR, _BRIGHTNESS, _CONTRAST, _GAMMA, _NOISE = range(11)
VOLUME_KEYS = ("flip", "rotate90", "brightness", "contrast", "gamma", "noise")  # what volumes take


@dataclass(frozen=True)
class AugmentConfig:
    """What to augment and how strongly; the defaults switch everything off.

    flip: random horizontal and vertical flips. rotate90: random multiple of 90
    degrees (only 0/180 on non-square images, so the shape is kept).
    rotation: max angle in degrees. scale: (low, high) zoom factor, > 1 zooms in.
    shift: max translation as a fraction of the image size. elastic_grid: random
    displacements on an elastic_grid x elastic_grid grid (0 = off), with std
    elastic_sigma pixels, upsampled bicubically to a dense field.
    brightness: max added offset. contrast: max relative change of the distance
    to the channel mean. gamma: max |log gamma|. noise: Gaussian noise std.
    blur: max Gaussian blur sigma in pixels.
    """

    flip: bool = False
    rotate90: bool = False
    rotation: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shift: float = 0.0
    elastic_grid: int = 0
    elastic_sigma: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    noise: float = 0.0
    blur: float = 0.0

    def __post_init__(self):
        if isinstance(self.scale, (list, tuple)):  # YAML gives lists; keep the dataclass hashable
            object.__setattr__(self, "scale", tuple(self.scale))
        validate(self)


def validate(config: AugmentConfig) -> None:
    """Raise ConfigError, naming the field and its value, for a value that cannot work."""
    for name in ("flip", "rotate90"):
        _check(config, name, isinstance(getattr(config, name), bool), "must be true or false")
    for name in ("rotation", "shift", "elastic_sigma", "brightness", "contrast", "gamma", "noise", "blur"):
        value = getattr(config, name)
        _check(config, name, _is_number(value) and value >= 0, "must be a number >= 0")
    _check(config, "rotation", config.rotation <= 180, "must be in [0, 180] degrees")
    _check(config, "shift", config.shift < 1, "must be a fraction of the image size in [0, 1)")
    _check(config, "contrast", config.contrast < 1, "must be in [0, 1) so the contrast factor stays positive")
    _check(config, "brightness", config.brightness <= 1, "must be in [0, 1]")
    scale = config.scale
    _check(config, "scale", isinstance(scale, tuple) and len(scale) == 2 and all(map(_is_number, scale))
           and 0 < scale[0] <= scale[1], "must be (low, high) with 0 < low <= high")
    grid = config.elastic_grid
    _check(config, "elastic_grid", isinstance(grid, int) and not isinstance(grid, bool) and (grid == 0 or grid >= 2),
           "must be 0 (off) or an integer >= 2")


def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def _check(config, name, ok, expected):
    if not ok:
        raise ConfigError(f"{name} {expected}. Received: {name}={getattr(config, name)!r}")


def augment_pair(image, mask, seed, config: AugmentConfig):
    """Augment one image (H, W, C) float32 in [0, 1] and its mask (H, W, 1) of class ids; or a volume
    (D, H, W, C) and its mask: flips along each axis, quarter turns in the (H, W) planes, brightness,
    contrast, gamma and noise (`VOLUME_KEYS`).

    `seed` is a shape-[2] integer tensor; the same seed gives the same result.
    """
    seed = tf.convert_to_tensor(seed)
    if len(image.shape) == 4 and (_has_warp(config) or config.blur > 0):
        raise ConfigError(f"volumes take augment.{', augment.'.join(VOLUME_KEYS)}; rotation, scale, shift, elastic "
                          "deformation and blur work on 2D images")
    if _has_warp(config):
        image, mask = _warp(image, mask, seed, config)
    elif config.flip or config.rotate90:
        image, mask = _flip_and_rotate90(image, mask, seed, config)
    if _has_intensity(config):
        image = _intensity(image, seed, config)
    return image, mask


def make_augmenter(config: AugmentConfig, seed: int, keyed: bool = False):
    """Return `augment(dataset)`, to use as `dataset.apply(augment)` on unbatched (image, mask) pairs.

    Each pair is zipped with a key from `tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)`: a new deterministic stream on every
    iteration (epoch, or pass of `repeat`), so epochs differ and a run with the
    same seed (and the same global TF seed, if one is set) repeats exactly.
    `keyed=True` takes and returns (key, (image, mask)) elements with the caller's
    int64 keys instead (`make_batches` keys pairs by pass and position).
    Apply it after `cache` (or augmentations get cached) and before the mask is
    cropped and the pairs are batched.
    """
    validate(config)
    if not (_has_warp(config) or config.flip or config.rotate90 or _has_intensity(config)):
        return lambda dataset: dataset

    @tf.autograph.experimental.do_not_convert  # no tensor-dependent Python control flow: skip autograph
    def apply(key, pair):
        image, mask = pair
        return key, augment_pair(image, mask, tf.stack([tf.constant(seed, tf.int64), key]), config)

    return keyed_map(apply, seed, keyed)


# --- geometry ---------------------------------------------------------------------------------

def _flip_and_rotate90(image, mask, seed, config):
    """Flips (along every axis) and quarter turns (of the (H, W) planes) alone: exact permutations, no
    resampling."""
    flips, quarter_turns = _discrete_draws(image, seed, config)
    pair = tf.concat([image, tf.cast(mask, image.dtype)], axis=-1)
    for axis in range(len(image.shape) - 1):
        pair = tf.where(flips[axis], tf.reverse(pair, [axis]), pair)
    pair = tf.image.rot90(pair, quarter_turns)  # a volume's depth is rot90's batch axis: its (H, W) planes turn
    pair.set_shape(image.shape[:-1].concatenate(pair.shape[-1:]))
    channels = image.shape[-1]
    return pair[..., :channels], tf.cast(pair[..., channels:], mask.dtype)


def _discrete_draws(image, seed, config):
    flips = (tf.random.stateless_uniform([len(image.shape) - 1], _key(seed, _FLIP)) < 0.5) & config.flip
    quarter_turns = tf.random.stateless_uniform([], _key(seed, _ROT90), 0, 4, dtype=tf.int32)
    shape = tf.shape(image)
    square = tf.equal(shape[-3], shape[-2])
    quarter_turns = tf.where(square, quarter_turns, 2 * (quarter_turns // 2))
    return flips, quarter_turns * int(config.rotate90)


def _warp(image, mask, seed, config):
    """All geometric transforms as one source-coordinate map, sampled once."""
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    centre = tf.stack([(height - 1) / 2, (width - 1) / 2])
    rows, cols = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
    points = tf.stack([rows, cols], axis=-1) - centre  # output pixel, relative to the centre

    source = tf.linalg.matvec(_affine_matrix(image, seed, config), points)
    if config.shift > 0:
        shift = tf.random.stateless_uniform([2], _key(seed, _SHIFT), -config.shift, config.shift)
        source += shift * tf.stack([height, width])
    if config.elastic_grid > 0 and config.elastic_sigma > 0:
        grid = config.elastic_grid
        coarse = config.elastic_sigma * tf.random.stateless_normal([1, grid, grid, 2], _key(seed, _ELASTIC))
        source += tf.image.resize(coarse, shape[:2], method="bicubic")[0]
    source += centre
    rows = _reflect(source[..., 0], height)
    cols = _reflect(source[..., 1], width)
    return _sample(image, mask, rows, cols)


def _affine_matrix(image, seed, config):
    """2x2 map from output to source offsets: flips, quarter turns, rotation, 1/scale."""
    flips, quarter_turns = _discrete_draws(image, seed, config)
    matrix = tf.linalg.diag(tf.where(flips, -1.0, 1.0))
    # Exact values (unlike cos(k * pi / 2)), turning the same way as tf.image.rot90.
    cos_k = tf.gather([1.0, 0.0, -1.0, 0.0], quarter_turns)
    sin_k = tf.gather([0.0, -1.0, 0.0, 1.0], quarter_turns)
    matrix = matrix @ _rotation_matrix(cos_k, sin_k)
    if config.rotation > 0:
        angle = tf.random.stateless_uniform([], _key(seed, _ROTATION), -config.rotation, config.rotation)
        angle = angle * (math.pi / 180)
        matrix = matrix @ _rotation_matrix(tf.cos(angle), tf.sin(angle))
    if config.scale != (1.0, 1.0):
        matrix /= tf.random.stateless_uniform([], _key(seed, _SCALE), *config.scale)
    return matrix


def _rotation_matrix(cos, sin):
    return tf.stack([tf.stack([cos, -sin]), tf.stack([sin, cos])])


def _reflect(coords, size):
    """Mirror coordinates into [0, size - 1] (..., 2, 1, 0, 1, 2, ..., size - 2, size - 1, size - 2, ...)."""
    period = tf.maximum(2 * (size - 1), 1.0)
    coords = tf.math.floormod(coords, period)
    coords = tf.where(coords > size - 1, period - coords, coords)
    return tf.clip_by_value(coords, 0.0, size - 1)


def _sample(image, mask, rows, cols):
    """Bilinear image and nearest-neighbour mask at (rows, cols), from the same four gathers."""
    pair = tf.concat([image, tf.cast(mask, image.dtype)], axis=-1)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    row0, col0 = tf.floor(rows), tf.floor(cols)
    row_weight, col_weight = (rows - row0)[..., None], (cols - col0)[..., None]
    row0, col0 = tf.cast(row0, tf.int32), tf.cast(col0, tf.int32)
    row1, col1 = tf.minimum(row0 + 1, height - 1), tf.minimum(col0 + 1, width - 1)

    def gather(r, c):
        return tf.gather_nd(pair, tf.stack([r, c], axis=-1))

    top_left, top_right = gather(row0, col0), gather(row0, col1)
    bottom_left, bottom_right = gather(row1, col0), gather(row1, col1)
    top = top_left + col_weight * (top_right - top_left)
    bottom = bottom_left + col_weight * (bottom_right - bottom_left)
    bilinear = top + row_weight * (bottom - top)
    right = col_weight >= 0.5
    nearest = tf.where(row_weight >= 0.5, tf.where(right, bottom_right, bottom_left),
                       tf.where(right, top_right, top_left))
    channels = image.shape[-1]
    warped_image = tf.ensure_shape(bilinear[..., :channels], image.shape)
    warped_mask = tf.ensure_shape(nearest[..., channels:], mask.shape)
    return warped_image, tf.cast(warped_mask, mask.dtype)


# --- intensity --------------------------------------------------------------------------------

def _intensity(image, seed, config):
    if config.blur > 0:
        image = _blur(image, tf.random.stateless_uniform([], _key(seed, _BLUR), 0.0, config.blur), config.blur)
    if config.brightness > 0:
        image += tf.random.stateless_uniform([], _key(seed, _BRIGHTNESS), -config.brightness, config.brightness)
    if config.contrast > 0:
        factor = tf.random.stateless_uniform([], _key(seed, _CONTRAST), 1 - config.contrast, 1 + config.contrast)
        mean = tf.reduce_mean(image, axis=list(range(len(image.shape) - 1)), keepdims=True)
        image = mean + factor * (image - mean)
    if config.gamma > 0:
        log_gamma = tf.random.stateless_uniform([], _key(seed, _GAMMA), -config.gamma, config.gamma)
        image = tf.pow(tf.clip_by_value(image, 0.0, 1.0), tf.exp(log_gamma))
    if config.noise > 0:
        image += config.noise * tf.random.stateless_normal(tf.shape(image), _key(seed, _NOISE))
    return tf.clip_by_value(image, 0.0, 1.0)


def _blur(image, sigma, max_sigma: float):
    """Separable Gaussian blur with mirrored borders; the kernel spans 3 * max_sigma."""
    radius = max(1, math.ceil(3 * max_sigma))
    if image.shape[0] is not None and image.shape[1] is not None:
        radius = max(1, min(radius, image.shape[0] - 1, image.shape[1] - 1))
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(offsets / tf.maximum(sigma, 1e-3)))
    kernel /= tf.reduce_sum(kernel)
    channels = tf.shape(image)[-1]
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    rows = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
    cols = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, cols, [1, 1, 1, 1], "VALID")
    return tf.ensure_shape(blurred[0], image.shape)


# --- helpers ----------------------------------------------------------------------------------

def _key(seed, index: int):
    return tf.random.experimental.stateless_fold_in(seed, index)


def _has_warp(config):
    return (config.rotation > 0 or config.scale != (1.0, 1.0) or config.shift > 0
            or (config.elastic_grid > 0 and config.elastic_sigma > 0))


def _has_intensity(config):
    return any(getattr(config, name) > 0 for name in ("brightness", "contrast", "gamma", "noise", "blur"))
