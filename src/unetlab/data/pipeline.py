"""tf.data pipelines: decode, normalise and resize (or patch) image/mask files, then cache, shuffle, batch.

Images: PNG (8- and 16-bit), JPEG, BMP, GIF (first frame) with TensorFlow's decoders;
TIFF (.tif/.tiff, single page, 8/16-bit integer or float) with `tifffile` inside
`tf.numpy_function`. Any channel count; a file whose channel count differs from
`channels` is an error naming the file (raised when the pipeline reads it;
`unetlab.data.checks.check_folders` finds every such file up front).

Normalisation (`normalize`), the same as `unetlab.preprocessing.normalize` at prediction time:

- `"scale"` (default): integers divided by their type's maximum (255, 65535) -> [0, 1];
  float images are used as stored;
- `"minmax"`: per image, (x - min) / (max - min) over all pixels and channels;
- `"zscore"`: per image, (x - mean) / std over all pixels and channels;
- `"dataset"`: (x - mean[c]) / std[c] per channel, with the mean and std of the
  `"scale"` values over the training images (`dataset_statistics`).

Masks become (H, W, 1) float32 class ids; pixels to ignore carry the value `ignore_index`:

- `palette` (list of [r, g, b], index = class id): RGB(A) masks, each colour mapped to its
  index; a colour not in the palette is `ignore_index` if set, else an error;
- binary (`num_classes` 1 or 2): a pixel equal to `ignore_index` stays ignored, every other
  non-zero pixel is foreground (1). So 0/1 and 0/255 masks both work, except that with
  `ignore_index=255` a 255 means "ignore": such masks must then be 0/1;
- `num_classes=K` > 2: class ids 0..K-1 (and `ignore_index`); another value is an error.

Masks with several channels hold the class id in every colour channel (alpha is dropped).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from ..errors import ConfigError, DataError
from .folder import check_ignore_index, palette_colours

NORMALIZE = ("scale", "minmax", "zscore", "dataset")
_EPSILON = 1e-6
_TIFF_PATTERN = r"(?i).*\.tiff?"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Patch sampling folds these into each element's key; augment.py folds 0..10 into the same
# stream (tf.data.Dataset.random(seed)), so these stay clear of them.
_PATCH_FORCE, _PATCH_ROW, _PATCH_COL, _PATCH_CLASS, _PATCH_PIXEL = range(1001, 1006)


# --- decoding ------------------------------------------------------------------------------------

def decode_values(path):
    """Pixel values of an image file as stored, and the range of its type.

    Returns (values (H, W, C) float32, value range float32 scalar): 255 for 8-bit files,
    65535 for 16-bit PNG/TIFF, the integer type's maximum for other integer TIFFs, 1 for
    float TIFFs.
    """
    path = tf.convert_to_tensor(path, tf.string)
    values, value_range = tf.cond(tf.strings.regex_full_match(path, _TIFF_PATTERN),
                                  lambda: _decode_tiff(path), lambda: _decode_with_tensorflow(path))
    values.set_shape([None, None, None])
    value_range.set_shape([])
    return values, value_range


def _decode_with_tensorflow(path):
    raw = tf.io.read_file(path)
    header = tf.strings.join([tf.strings.substr(raw, 0, 25), b"\0" * 25])  # short files: no out-of-range read
    is_png16 = (tf.equal(tf.strings.substr(header, 0, 8), _PNG_SIGNATURE)
                & tf.equal(tf.strings.substr(header, 24, 1), b"\x10"))  # IHDR bit depth

    def png16():
        return tf.cast(tf.io.decode_png(raw, channels=0, dtype=tf.uint16), tf.float32), tf.constant(65535.0)

    def eight_bit():
        image = tf.io.decode_image(raw, channels=0, dtype=tf.uint8, expand_animations=False)
        return tf.cast(image, tf.float32), tf.constant(255.0)

    return tf.cond(is_png16, png16, eight_bit)


def _decode_tiff(path):
    values, value_range = tf.numpy_function(_read_tiff, [path], [tf.float32, tf.float32], stateful=False)
    return values, value_range


def _read_tiff(path: bytes):
    from .checks import read_array  # the integrity check's reader: the same decoding in both places

    array = read_array(path.decode())
    if array.dtype == bool:
        value_range = 1.0
    elif np.issubdtype(array.dtype, np.integer):
        value_range = float(np.iinfo(array.dtype).max)
    elif np.issubdtype(array.dtype, np.floating):
        value_range = 1.0
    else:
        raise DataError(f"{path.decode()} has pixels of type {array.dtype}; expected integers or floats")
    return array.astype(np.float32), np.float32(value_range)


def decode_image(path, channels: int | None):
    """Decode an image file to float32 (H, W, channels): integers scaled to [0, 1], floats as stored.

    The file must have `channels` channels (None: any); otherwise reading it fails with an
    error that names the file.
    """
    values, value_range = decode_values(path)
    image = values / value_range
    if channels is not None:
        found = tf.shape(image)[-1]
        check = tf.debugging.Assert(tf.equal(found, channels), [tf.strings.join([
            "image ", path, " has ", tf.strings.as_string(found), " channel(s) but data.channels=",
            str(channels)])])
        with tf.control_dependencies([check]):
            image = tf.identity(image)
        image.set_shape([None, None, channels])
    return image


def normalize_image(image, normalize: str = "scale", mean=None, std=None):
    """Normalise a decoded image (values of `decode_image`); see the module docstring."""
    if normalize == "scale":
        return image
    if normalize == "minmax":
        low, high = tf.reduce_min(image), tf.reduce_max(image)
        return (image - low) / tf.maximum(high - low, _EPSILON)
    if normalize == "zscore":
        return (image - tf.reduce_mean(image)) / tf.maximum(tf.math.reduce_std(image), _EPSILON)
    if normalize == "dataset":
        if mean is None or std is None:
            raise ConfigError("normalize='dataset' needs the training statistics: pass mean and std "
                              "(see unetlab.data.dataset_statistics)")
        return (image - tf.constant(mean, tf.float32)) / tf.maximum(tf.constant(std, tf.float32), _EPSILON)
    raise ConfigError(f"data.normalize must be one of {', '.join(NORMALIZE)}. Received: normalize={normalize!r}")


def decode_mask(path, num_classes: int, *, ignore_index: int | None = None,
                palette: Sequence[Sequence[int]] | None = None):
    """Decode a mask to class ids (H, W, 1) float32, ignored pixels set to `ignore_index`.

    See the module docstring for the conventions; a mask that breaks them fails with an
    error naming the file when it is read.
    """
    ignore_index = check_ignore_index(ignore_index, num_classes)
    values, _ = decode_values(path)
    found = tf.shape(values)[-1]
    if palette is not None:
        colours = palette_colours(palette, num_classes, ignore_index)
        check = tf.debugging.Assert((found == 3) | (found == 4), [tf.strings.join([
            "mask ", path, " has ", tf.strings.as_string(found), " channel(s), but data.palette needs RGB masks"])])
        with tf.control_dependencies([check]):
            rgb = tf.cast(values[..., :3], tf.int32)
        code = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
        codes = tf.constant([r * 65536 + g * 256 + b for r, g, b in colours], tf.int32)
        matches = tf.equal(code[..., None], codes)
        known = tf.reduce_any(matches, axis=-1)
        ids = tf.cast(tf.argmax(tf.cast(matches, tf.int32), axis=-1), tf.float32)
        if ignore_index is not None:
            return tf.where(known, ids, float(ignore_index))[..., None]
        unknown = tf.logical_not(known)
        first = _first_colour(rgb, unknown)
        check = tf.debugging.Assert(tf.reduce_all(known), [tf.strings.join([
            "mask ", path, " has ", tf.strings.as_string(tf.reduce_sum(tf.cast(unknown, tf.int32))),
            " pixel(s) of colours not in data.palette, e.g. ", first, " (set data.ignore_index to ignore them)"])])
        with tf.control_dependencies([check]):
            return tf.identity(ids)[..., None]

    colour_channels = tf.where((found == 2) | (found == 4), found - 1, found)  # alpha is dropped
    first = values[..., :1]
    same = tf.reduce_all(tf.equal(values[..., :colour_channels], first))
    check = tf.debugging.Assert(same, [tf.strings.join([
        "mask ", path, " has ", tf.strings.as_string(found), " channels with different values; a mask holds one "
        "class id per pixel (set data.palette for colour masks)"])])
    with tf.control_dependencies([check]):
        mask = tf.identity(first)
    ignored = tf.equal(mask, float(ignore_index)) if ignore_index is not None else tf.zeros_like(mask, tf.bool)
    if num_classes <= 2:
        return tf.where(ignored, mask, tf.cast(mask > 0, tf.float32))
    valid = ignored | ((mask >= 0) & (mask < num_classes) & tf.equal(mask, tf.round(mask)))
    allowed = f"0..{num_classes - 1}" + (f" and {ignore_index}" if ignore_index is not None else "")
    bad = tf.boolean_mask(mask, tf.logical_not(valid))
    check = tf.debugging.Assert(tf.reduce_all(valid), [tf.strings.join([
        "mask ", path, " has values outside the class ids ", allowed, f" (data.num_classes={num_classes}), e.g. ",
        tf.strings.as_string(tf.concat([bad, [0.0]], 0)[0], shortest=True)])])
    with tf.control_dependencies([check]):
        return tf.identity(mask)


def _first_colour(rgb, unknown):
    """"[r, g, b]" of the first pixel where `unknown` is true ("[0, 0, 0]" if none), for messages."""
    flat = tf.reshape(rgb, [-1, 3])
    index = tf.argmax(tf.cast(tf.reshape(unknown, [-1]), tf.int32), output_type=tf.int32)
    colour = tf.strings.as_string(flat[index])
    return tf.strings.join(["[", tf.strings.reduce_join(colour, separator=", "), "]"])


# --- folder datasets -----------------------------------------------------------------------------

def make_folder_dataset(pairs: list[tuple[str, str]], *, image_size: int | None, channels: int,
                        num_classes: int, ignore_index: int | None = None,
                        palette: Sequence[Sequence[int]] | None = None, normalize: str = "scale",
                        mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> tf.data.Dataset:
    """Unbatched (image, mask) pairs, decoded in parallel, normalised, resized to image_size.

    Images are resized bilinearly, masks with nearest neighbour (class ids are never
    interpolated). `image_size=None` keeps every image at its full resolution (for patches).
    Normalisation is applied to the full-resolution image, before resizing.
    """
    ignore_index = check_ignore_index(ignore_index, num_classes)
    if palette is not None:
        palette_colours(palette, num_classes, ignore_index)  # fail on a bad palette now, not in tf.data
    mean, std = check_normalize(normalize, channels, mean, std)
    image_paths = [image for image, _ in pairs]
    mask_paths = [mask for _, mask in pairs]

    def load(image_path, mask_path):
        image = normalize_image(decode_image(image_path, channels), normalize, mean, std)
        mask = decode_mask(mask_path, num_classes, ignore_index=ignore_index, palette=palette)
        image_size_, mask_size = tf.shape(image)[:2], tf.shape(mask)[:2]
        check = tf.debugging.Assert(tf.reduce_all(tf.equal(image_size_, mask_size)), [tf.strings.join([
            "image ", image_path, " is ", _size_text(image_size_), " but mask ", mask_path, " is ",
            _size_text(mask_size)])])
        with tf.control_dependencies([check]):
            image = tf.identity(image)
        if image_size is not None:
            image = tf.image.resize(image, [image_size, image_size], method="bilinear")
            mask = tf.image.resize(mask, [image_size, image_size], method="nearest")
        image.set_shape([image_size, image_size, channels])
        mask.set_shape([image_size, image_size, 1])
        return image, mask

    dataset = tf.data.Dataset.from_tensor_slices((image_paths, mask_paths))
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _size_text(size):
    return tf.strings.join([tf.strings.as_string(size[0]), "x", tf.strings.as_string(size[1])])


def check_normalize(normalize: str, channels: int, mean=None, std=None):
    """Validate `normalize` and, for "dataset", `mean`/`std` (a number or one per channel) -> lists or None."""
    if normalize not in NORMALIZE:
        raise ConfigError(f"data.normalize must be one of {', '.join(NORMALIZE)}. Received: normalize={normalize!r}")
    if normalize != "dataset":
        return None, None
    if mean is None or std is None:
        raise ConfigError("normalize='dataset' needs the training statistics: pass mean and std "
                          "(see unetlab.data.dataset_statistics)")
    values = []
    for name, given in (("mean", mean), ("std", std)):
        array = np.asarray(given, dtype=np.float64).reshape(-1)
        if array.size == 1:
            array = np.repeat(array, channels)
        if array.size != channels or not np.isfinite(array).all():
            raise ConfigError(f"data.{name} must be a number or {channels} finite number(s) (one per channel). "
                              f"Received: {name}={given!r}")
        if name == "std" and (array <= 0).any():
            raise ConfigError(f"data.std must be > 0. Received: std={given!r}")
        values.append([float(v) for v in array])
    return values[0], values[1]


def dataset_statistics(source, *, channels: int | None = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the images of `source`, over all their pixels.

    `source` is a list of (image path, mask path) pairs (read at full resolution, values as
    `normalize="scale"` gives them) or a `tf.data.Dataset` of images or (image, mask) pairs.
    Returns (mean, std) as lists of floats, one per channel: what `normalize="dataset"`
    subtracts and divides by. Accumulated in float64.
    """
    if isinstance(source, tf.data.Dataset):
        dataset = source.map(lambda *element: element[0]) if isinstance(source.element_spec, tuple) else source
        names = None
    else:
        paths = [pair[0] if isinstance(pair, (tuple, list)) else pair for pair in source]
        if not paths:
            raise DataError("dataset_statistics needs at least one image")
        dataset = tf.data.Dataset.from_tensor_slices(paths).map(lambda path: decode_image(path, channels),
                                                                num_parallel_calls=tf.data.AUTOTUNE,
                                                                deterministic=True)
        names = paths

    def sums(image):
        values = tf.cast(image, tf.float64)
        return (tf.reduce_sum(values, axis=[0, 1]), tf.reduce_sum(tf.square(values), axis=[0, 1]),
                tf.cast(tf.shape(values)[0] * tf.shape(values)[1], tf.float64))

    total = total_squares = None
    count = 0.0
    for index, (image_sum, image_squares, pixels) in enumerate(dataset.map(sums).as_numpy_iterator()):
        if total is None:
            total, total_squares = np.zeros_like(image_sum), np.zeros_like(image_squares)
        elif image_sum.shape != total.shape:
            where = f"{names[index]} has" if names else f"image {index} has"
            raise DataError(f"{where} {image_sum.shape[0]} channel(s), the images before it {total.shape[0]}")
        total += image_sum
        total_squares += image_squares
        count += pixels
    if total is None or count == 0:
        raise DataError("dataset_statistics needs at least one non-empty image")
    mean = total / count
    std = np.sqrt(np.maximum(total_squares / count - mean**2, 0.0))
    return [float(v) for v in mean], [float(v) for v in std]


# --- patches -------------------------------------------------------------------------------------

def tile_starts(size: int, patch_size: int) -> list[int]:
    """Start offsets of the tiles along one axis of `size` pixels: 0, P, 2P, ..., size - P.

    Tiles do not overlap except the last, which is flush with the border; an axis
    shorter than P gets one tile (of the mirror-padded image).
    """
    if size <= patch_size:
        return [0]
    count = -(-size // patch_size)
    return [min(i * patch_size, size - patch_size) for i in range(count)]


def _mirror(indices, size):
    """Map indices into [0, size - 1] by mirroring at the borders (reflect, edge not repeated)."""
    period = tf.maximum(2 * (size - 1), 1)
    indices = tf.math.floormod(indices, period)
    return tf.where(indices > size - 1, period - indices, indices)


def _padding(size, patch_size: int):
    """Rows (or columns) added before the image when it is mirror-padded to patch_size, and the padded size."""
    padded = tf.maximum(size, patch_size)
    return (padded - size) // 2, padded


def _crop(array, top, left, patch_size: int, before_rows, before_cols):
    """A patch_size x patch_size window at (top, left) of the mirror-padded `array`."""
    shape = tf.shape(array)
    offsets = tf.range(patch_size)
    rows = _mirror(top - before_rows + offsets, shape[0])
    cols = _mirror(left - before_cols + offsets, shape[1])
    return tf.gather(tf.gather(array, rows, axis=0), cols, axis=1)


def image_tiles(image, mask, patch_size: int):
    """A fixed tiling of one pair: images (N, P, P, C) and masks (N, P, P, 1), rows first.

    Tiles start at `tile_starts` along each axis, so they cover the whole image; an image
    smaller than patch_size along an axis is mirror-padded (centred) along it.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    pair = tf.concat([image, tf.cast(mask, image.dtype)], axis=-1)
    offsets = tf.range(patch_size)
    grids = []
    for size in (height, width):
        before, padded = _padding(size, patch_size)
        count = (padded + patch_size - 1) // patch_size
        starts = tf.minimum(tf.range(count) * patch_size, padded - patch_size)
        grids.append(_mirror(starts[:, None] + offsets[None, :] - before, size))  # (count, P)
    rows, cols = grids
    tiles = tf.gather(tf.gather(pair, rows, axis=0), cols, axis=2)  # (nr, P, nc, P, C + 1)
    tiles = tf.transpose(tiles, [0, 2, 1, 3, 4])
    tiles = tf.reshape(tiles, [-1, patch_size, patch_size, tf.shape(pair)[-1]])
    channels = image.shape[-1]
    return tiles[..., :channels], tf.cast(tiles[..., channels:], mask.dtype)


def make_tiles(dataset: tf.data.Dataset, patch_size: int) -> tf.data.Dataset:
    """Every (image, mask) pair of `dataset` cut into its fixed patch_size tiles (`image_tiles`)."""
    patch_size = check_patch_size(patch_size)
    channels = dataset.element_spec[0].shape[-1]

    def tile(image, mask):
        images, masks = image_tiles(image, mask, patch_size)
        images.set_shape([None, patch_size, patch_size, channels])
        masks.set_shape([None, patch_size, patch_size, 1])
        return tf.data.Dataset.from_tensor_slices((images, masks))

    return dataset.flat_map(tile)


def random_patch(image, mask, key, patch_size: int, foreground_oversample: float = 0.0,
                 ignore_index: int | None = None):
    """One random patch_size x patch_size crop of (image, mask); `key` is a shape-[2] seed.

    With probability `foreground_oversample` the crop is centred on a foreground pixel
    (clipped to the image): a foreground class present in the mask is drawn first, then one
    of its pixels (as nnU-Net does), so rare classes get patches too. Otherwise, or when
    the mask has no foreground, the crop is uniform over the image. Foreground is every
    class id > 0 other than `ignore_index`. An image smaller than patch_size is mirror-padded.
    """
    key = tf.convert_to_tensor(key)
    shape = tf.shape(image)
    before_rows, padded_rows = _padding(shape[0], patch_size)
    before_cols, padded_cols = _padding(shape[1], patch_size)

    def uniform():
        top = tf.random.stateless_uniform([], _fold(key, _PATCH_ROW), 0, padded_rows - patch_size + 1, tf.int32)
        left = tf.random.stateless_uniform([], _fold(key, _PATCH_COL), 0, padded_cols - patch_size + 1, tf.int32)
        return top, left

    if foreground_oversample > 0:
        labels = mask[..., 0]
        foreground = labels > 0
        if ignore_index is not None:
            foreground &= tf.not_equal(labels, float(ignore_index))
        pixels = tf.where(foreground)  # (N, 2), row-major: a deterministic order
        force = tf.random.stateless_uniform([], _fold(key, _PATCH_FORCE)) < foreground_oversample

        def on_foreground():
            classes, class_of_pixel = tf.unique(tf.gather_nd(labels, pixels))
            chosen = tf.random.stateless_uniform([], _fold(key, _PATCH_CLASS), 0, tf.size(classes), tf.int32)
            members = tf.where(tf.equal(class_of_pixel, chosen))[:, 0]
            pick = tf.random.stateless_uniform([], _fold(key, _PATCH_PIXEL), 0, tf.size(members), tf.int32)
            centre = tf.cast(tf.gather(pixels, tf.gather(members, pick)), tf.int32)
            top = tf.clip_by_value(centre[0] + before_rows - patch_size // 2, 0, padded_rows - patch_size)
            left = tf.clip_by_value(centre[1] + before_cols - patch_size // 2, 0, padded_cols - patch_size)
            return top, left

        top, left = tf.cond(force & (tf.shape(pixels)[0] > 0), on_foreground, uniform)
    else:
        top, left = uniform()
    patch_image = _crop(image, top, left, patch_size, before_rows, before_cols)
    patch_mask = _crop(mask, top, left, patch_size, before_rows, before_cols)
    patch_image.set_shape([patch_size, patch_size, image.shape[-1]])
    patch_mask.set_shape([patch_size, patch_size, mask.shape[-1]])
    return patch_image, patch_mask


def make_patch_sampler(patch_size: int, seed: int, foreground_oversample: float = 0.0,
                       ignore_index: int | None = None):
    """Return `sample(dataset)`, to use as `dataset.apply(sample)`: one `random_patch` per pair.

    Each pair is zipped with a key from `tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)`, as `unetlab.data.augment.make_augmenter` does: new
    patches every epoch, the same ones in every run with the same seed. Apply it after
    `cache` (or the first epoch's patches are cached).
    """
    patch_size = check_patch_size(patch_size)
    foreground_oversample = check_foreground_oversample(foreground_oversample)

    def sample(dataset: tf.data.Dataset) -> tf.data.Dataset:
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

        @tf.autograph.experimental.do_not_convert
        def crop(key, pair):
            image, mask = pair
            return random_patch(image, mask, tf.stack([tf.constant(seed, tf.int64), key]), patch_size,
                                foreground_oversample, ignore_index)

        return tf.data.Dataset.zip((keys, dataset)).map(crop, num_parallel_calls=tf.data.AUTOTUNE,
                                                        deterministic=True)

    return sample


def _fold(key, index: int):
    return tf.random.experimental.stateless_fold_in(key, index)


def check_patch_size(patch_size):
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)) or patch_size < 1:
        raise ConfigError(f"data.patch_size must be a positive integer or null. Received: patch_size={patch_size!r}")
    return int(patch_size)


def check_foreground_oversample(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
        raise ConfigError(f"data.foreground_oversample must be a fraction in [0, 1]. "
                          f"Received: foreground_oversample={value!r}")
    return float(value)


# --- batches -------------------------------------------------------------------------------------

def make_batches(dataset: tf.data.Dataset, batch_size: int, *, shuffle: bool, seed: int, cache: bool = True,
                 label_size: int | None = None, repeat: bool = False,
                 augment: Callable[[tf.data.Dataset], tf.data.Dataset] | None = None,
                 patch_size: int | None = None, foreground_oversample: float = 0.33,
                 ignore_index: int | None = None) -> tf.data.Dataset:
    """Cache -> seeded shuffle (reshuffled each epoch) -> patches -> augment -> batch -> prefetch.

    `patch_size` (training): one random patch_size crop of every pair per pass, drawn after
    the cache so every epoch sees new patches (`make_patch_sampler`, with
    `foreground_oversample` and `ignore_index`); None keeps the pairs whole. Validation data
    is tiled by its source instead. `augment` is a dataset transform
    (`unetlab.data.augment.make_augmenter`), applied after the cache so every epoch sees new
    variants. `label_size` centre-crops masks to the model's output size (valid-padding U-Net).
    """
    if cache:
        dataset = dataset.cache()
    if shuffle:
        size = dataset.cardinality()
        buffer = int(size) if size > 0 else 1024
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    if patch_size is not None:
        dataset = dataset.apply(make_patch_sampler(patch_size, seed, foreground_oversample, ignore_index))
    if augment is not None:
        dataset = dataset.apply(augment)
    if label_size is not None:
        dataset = dataset.map(lambda image, mask: (image, _centre_crop(mask, label_size)),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _centre_crop(mask, size: int):
    offset = (tf.shape(mask)[0] - size) // 2
    return mask[offset:offset + size, offset:offset + size, :]
