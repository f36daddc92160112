"""tf.data pipelines: image/mask files to (image, mask) pairs, and pairs to the batches `fit` reads.

`make_folder_dataset` decodes (`unetlab.data.decode`), normalises (`unetlab.data.normalize`)
and resizes each pair, or keeps it at full resolution for patches; `make_batches` caches,
shuffles, crops patches (`unetlab.data.patches`), augments (`unetlab.data.augment`) and batches.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

from ..labels import check_ignore_index, palette_colours
from .decode import decode_image, decode_mask
from .normalize import check_normalize, normalize_image
from .patches import make_patch_sampler


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
