"""tf.data pipelines: decode and resize image/mask files, then cache, shuffle, batch, prefetch."""

from __future__ import annotations

from typing import Callable

import tensorflow as tf


def decode_image(path, channels: int):
    """Decode a PNG/JPEG/BMP/GIF file to float32 in [0, 1] (8- and 16-bit PNG)."""
    raw = tf.io.read_file(path)
    return tf.io.decode_image(raw, channels=channels, dtype=tf.float32, expand_animations=False)


def decode_mask(path, num_classes: int):
    """Decode a mask to class ids (H, W, 1) float32; 0/255 and 0/1 both mean binary."""
    raw = tf.io.read_file(path)
    mask = tf.io.decode_image(raw, channels=1, dtype=tf.uint8, expand_animations=False)
    if num_classes <= 2:
        mask = tf.cast(mask > 0, tf.uint8)
    return tf.cast(mask, tf.float32)


def make_folder_dataset(pairs: list[tuple[str, str]], *, image_size: int, channels: int,
                        num_classes: int) -> tf.data.Dataset:
    """Unbatched (image, mask) pairs, decoded in parallel and resized to image_size.

    Images are resized bilinearly, masks with nearest neighbour (class ids are never
    interpolated).
    """
    image_paths = [image for image, _ in pairs]
    mask_paths = [mask for _, mask in pairs]

    def load(image_path, mask_path):
        image = tf.image.resize(decode_image(image_path, channels), [image_size, image_size], method="bilinear")
        mask = tf.image.resize(decode_mask(mask_path, num_classes), [image_size, image_size], method="nearest")
        image.set_shape([image_size, image_size, channels])
        mask.set_shape([image_size, image_size, 1])
        return image, mask

    dataset = tf.data.Dataset.from_tensor_slices((image_paths, mask_paths))
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def make_batches(dataset: tf.data.Dataset, batch_size: int, *, shuffle: bool, seed: int, cache: bool = True,
                 label_size: int | None = None, repeat: bool = False,
                 augment: Callable[[tf.data.Dataset], tf.data.Dataset] | None = None) -> tf.data.Dataset:
    """Cache -> seeded shuffle (reshuffled each epoch) -> augment -> batch -> prefetch.

    `augment` is a dataset transform (`unetlab.data.augment.make_augmenter`), applied
    after the cache so every epoch sees new variants. `label_size` centre-crops masks
    to the model's output size (valid-padding U-Net).
    """
    if cache:
        dataset = dataset.cache()
    if shuffle:
        size = dataset.cardinality()
        buffer = int(size) if size > 0 else 1024
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    if augment is not None:
        dataset = dataset.apply(augment)
    if label_size is not None:
        dataset = dataset.map(lambda image, mask: (image, _centre_crop(mask, label_size)),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _centre_crop(mask, size: int):
    offset = (tf.shape(mask)[0] - size) // 2
    return mask[offset:offset + size, offset:offset + size, :]
