"""Seeded augmentation of (image, mask) pairs inside `tf.data`.

Geometric transforms (flips, 90-degree turns, rotation, scale, shift and an
elastic deformation) are composed into one coordinate map that is sampled once:
bilinear (trilinear for volumes) for the image, nearest neighbour for the mask,
so a mask only ever holds class ids it had before. Borders are mirrored (reflect
without repeating the edge pixel) for both. Volumes (D, H, W, C) turn and rotate
in their (H, W) planes, about the depth axis, the plane of the finest spacing
in anisotropic data (nnU-Net's in-plane rotation of such data); scale, shift
and the elastic field act on all three axes. Intensity transforms (blur, brightness, contrast,
gamma, noise) touch only the image, which is clipped to [0, 1].

Only stateless random ops are used: a pair's augmentation is a function of its
shape-[2] key, so seeded runs repeat and `tf.config.experimental.
enable_op_determinism()` leaves parallel `map` calls parallel.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from numbers import Real

import tensorflow as tf

from ..errors import ConfigError
from .patches import keyed_map

# Each transform draws from its own key, folded in from the pair's key, so
# switching one transform on or off never changes what the others draw.
_FLIP, _ROT90, _ROTATION, _SCALE, _SHIFT, _ELASTIC, _BLUR, _BRIGHTNESS, _CONTRAST, _GAMMA, _NOISE = range(11)


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
    (D, H, W, C) and its mask (every transform but blur: module docstring).

    `seed` is a shape-[2] integer tensor; the same seed gives the same result.
    """
    seed = tf.convert_to_tensor(seed)
    if len(image.shape) == 4 and config.blur > 0:
        raise ConfigError("augment.blur works on 2D images; volumes take every other augmentation. "
                          f"Received: augment.blur={config.blur}")
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
    dims = len(image.shape) - 1
    sizes = tf.cast(tf.shape(image)[:dims], tf.float32)
    centre = (sizes - 1) / 2
    points = tf.stack(tf.meshgrid(*(tf.range(sizes[axis]) for axis in range(dims)), indexing="ij"), axis=-1)
    source = tf.linalg.matvec(_affine_matrix(image, seed, config), points - centre)  # from the centre
    if config.shift > 0:
        source += tf.random.stateless_uniform([dims], _key(seed, _SHIFT), -config.shift, config.shift) * sizes
    if config.elastic_grid > 0 and config.elastic_sigma > 0:
        source += _elastic_field(tf.shape(image)[:dims], seed, config)
    source += centre
    return _sample(image, mask, [_reflect(source[..., axis], sizes[axis]) for axis in range(dims)])


def _elastic_field(shape, seed, config):
    """Displacements (..., dims) of std elastic_sigma on a coarse grid per axis, upsampled bicubically."""
    dims, grid = int(shape.shape[0]), config.elastic_grid
    coarse = config.elastic_sigma * tf.random.stateless_normal([grid] * dims + [dims], _key(seed, _ELASTIC))
    if dims == 2:
        return tf.image.resize(coarse[None], shape, method="bicubic")[0]
    planes = tf.image.resize(coarse, shape[1:], method="bicubic")  # (grid, H, W, 3): each depth's plane
    along_depth = tf.image.resize(tf.transpose(planes, [1, 0, 2, 3]), tf.stack([shape[0], shape[2]]), method="bicubic")
    return tf.transpose(along_depth, [1, 0, 2, 3])  # (D, H, W, 3)


def _affine_matrix(image, seed, config):
    """Map (dims x dims) from output to source offsets: flips, quarter turns and rotation in the (H, W) plane,
    1/scale."""
    flips, quarter_turns = _discrete_draws(image, seed, config)
    matrix = tf.linalg.diag(tf.where(flips, -1.0, 1.0))
    # Exact values (unlike cos(k * pi / 2)), turning the same way as tf.image.rot90.
    cos_k = tf.gather([1.0, 0.0, -1.0, 0.0], quarter_turns)
    sin_k = tf.gather([0.0, -1.0, 0.0, 1.0], quarter_turns)
    dims = len(image.shape) - 1
    matrix = matrix @ _plane_rotation(cos_k, sin_k, dims)
    if config.rotation > 0:
        angle = tf.random.stateless_uniform([], _key(seed, _ROTATION), -config.rotation, config.rotation)
        angle = angle * (math.pi / 180)
        matrix = matrix @ _plane_rotation(tf.cos(angle), tf.sin(angle), dims)
    if config.scale != (1.0, 1.0):
        matrix /= tf.random.stateless_uniform([], _key(seed, _SCALE), *config.scale)
    return matrix


def _plane_rotation(cos, sin, dims: int):
    """A rotation of the last two axes (H, W), the identity on a volume's depth."""
    rotation = tf.stack([tf.stack([cos, -sin]), tf.stack([sin, cos])])
    if dims == 2:
        return rotation
    return tf.pad(rotation, [[1, 0], [1, 0]]) + tf.pad(tf.ones([1, 1]), [[0, 2], [0, 2]])


def _reflect(coords, size):
    """Mirror coordinates into [0, size - 1] (..., 2, 1, 0, 1, 2, ..., size - 2, size - 1, size - 2, ...)."""
    period = tf.maximum(2 * (size - 1), 1.0)
    coords = tf.math.floormod(coords, period)
    coords = tf.where(coords > size - 1, period - coords, coords)
    return tf.clip_by_value(coords, 0.0, size - 1)


def _sample(image, mask, coords):
    """The image interpolated (bilinear, trilinear: 2^dims corner gathers) and the mask's nearest neighbour (one
    gather) at `coords`, one map per spatial axis."""
    sizes = tf.shape(image)
    lower = [tf.cast(tf.floor(c), tf.int32) for c in coords]
    weights = [(c - tf.floor(c))[..., None] for c in coords]
    upper = [tf.minimum(low + 1, sizes[axis] - 1) for axis, low in enumerate(lower)]
    interpolated = 0.0
    for corner in itertools.product((False, True), repeat=len(coords)):
        value = tf.gather_nd(image, tf.stack([u if up else low for up, low, u in zip(corner, lower, upper)], axis=-1))
        interpolated += math.prod((w if up else 1 - w) for up, w in zip(corner, weights)) * value
    nearest = tf.stack([tf.where(w[..., 0] >= 0.5, u, low) for low, u, w in zip(lower, upper, weights)], axis=-1)
    warped_image = tf.ensure_shape(interpolated, image.shape)
    return warped_image, tf.ensure_shape(tf.gather_nd(mask, nearest), mask.shape)


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
