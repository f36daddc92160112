"""tf.data pipelines: image/mask files to (image, mask) pairs, and pairs to the batches `fit` reads.

`make_folder_dataset` decodes (`unetlab.data.decode`), normalises (`unetlab.data.normalize`)
and resizes each pair, or keeps it at full resolution for patches; `make_batches` caches,
shuffles, crops patches (`unetlab.data.patches`), augments (`unetlab.data.augment`) and batches.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

from ..labels import check_ignore_index, palette_colours
from .decode import check_invert, decode_image, decode_mask
from .normalize import check_normalize, normalize_image
from .patches import make_patch_sampler
from .weights import BorderWeights, add_weight_maps


def make_folder_dataset(pairs: list[tuple[str, str]], *, image_size: int | None, channels: int,
                        num_classes: int, ignore_index: int | None = None,
                        palette: Sequence[Sequence[int]] | None = None, normalize: str = "scale",
                        mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                        invert_masks: bool = False) -> tf.data.Dataset:
    """Unbatched (image, mask) pairs, decoded in parallel, normalised, resized to image_size.

    Images are resized bilinearly, masks with nearest neighbour (class ids are never
    interpolated). `image_size=None` keeps every image at its full resolution (for patches).
    Normalisation is applied to the full-resolution image, before resizing. `invert_masks`:
    the zero pixels of binary masks are the positive class (`unetlab.data.decode.decode_mask`).
    """
    ignore_index = check_ignore_index(ignore_index, num_classes)
    if palette is not None:
        palette_colours(palette, num_classes, ignore_index)  # fail on a bad palette now, not in tf.data
    mean, std = check_normalize(normalize, channels, mean, std)
    check_invert(invert_masks, num_classes, palette)
    image_paths = [image for image, _ in pairs]
    mask_paths = [mask for _, mask in pairs]

    def load(image_path, mask_path):
        image = normalize_image(decode_image(image_path, channels), normalize, mean, std)
        mask = decode_mask(mask_path, num_classes, ignore_index=ignore_index, palette=palette,
                           invert_masks=invert_masks)
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


class UnevenBatches(ValueError):
    """A batch would not split evenly over the replicas (`make_batches(multiple_of=)`)."""


def make_batches(dataset: tf.data.Dataset, batch_size: int, *, shuffle: bool, seed: int, cache: bool = True,
                 label_size: int | None = None, repeat: bool = False,
                 augment: Callable[[tf.data.Dataset], tf.data.Dataset] | None = None,
                 patch_size: int | None = None, foreground_oversample: float = 0.33,
                 ignore_index: int | None = None, skip: int = 0,
                 weights: BorderWeights | None = None, multiple_of: int = 1) -> tf.data.Dataset:
    """Weight maps -> cache -> seeded shuffle per pass -> patches -> augment -> batch -> prefetch.

    `shuffle=True` (training) gives an endless stream of passes over the pairs, each shuffled
    and augmented as a function of (seed, pass number, position) alone: `fit` reads it with
    `steps_per_epoch`, and a resumed run that skips the `skip` pairs already trained on sees
    exactly what an uninterrupted run would. Each pass is batched on its own (its last batch
    may be smaller) unless `repeat`, where batches run on across passes (for a
    `steps_per_epoch` shorter or longer than a pass). `shuffle=False` (validation) gives one
    pass in order.

    `patch_size` (training): one random patch_size crop of every pair per pass, drawn after
    the cache so every epoch sees new patches (`make_patch_sampler`, with
    `foreground_oversample` and `ignore_index`); None keeps the pairs whole. Validation data
    is tiled by its source instead. `augment` is `make_augmenter(config, seed, keyed=True)`,
    applied after the cache so every epoch sees new variants. `label_size` centre-crops masks
    to the model's output size (valid-padding U-Net).

    `weights` (e.g. the U-Net paper's border weights): each mask's weight map is computed once
    (`unetlab.data.weights.add_weight_maps`, before the cache), travels with the mask through
    patches, augmentation and crops, and the batches are (images, masks, weights (batch, H, W)):
    Keras passes the weights to the loss as sample weights (metrics stay unweighted).

    `multiple_of` (validation): UnevenBatches unless every batch's size divides by it, for
    replicas that each take an equal share of every batch.
    """
    if weights is not None:
        dataset = add_weight_maps(dataset, weights, ignore_index)
    if cache:
        dataset = dataset.cache()
    size = int(dataset.cardinality())
    if size < 0:  # e.g. after a filter or tiling: count once (this pass fills the cache), and say so, or
        # Keras cannot tell the validation batches' end from "Your input ran out of data" and warns
        size = int(dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(size))
    if not shuffle and size % batch_size % multiple_of:
        raise UnevenBatches(f"{size} pairs do not split evenly over {multiple_of} replicas (batches of {batch_size}, "
                            f"the last of {size % batch_size})")

    def one_pass(number):
        """Pass `number` as (key, pair): key = number * 2**32 + position, the pairs shuffled by (seed, number)."""
        keys = tf.data.Dataset.range(size).map(lambda position: number * 2**32 + position)
        return tf.data.Dataset.zip((keys, shuffled(number) if shuffle else dataset))

    def shuffled(number):
        """Called inside `flat_map` only. It sets that function graph's seed (not the process's):
        shuffle's seed pair is (graph seed, op seed), and TensorFlow cannot check (0, tensor)."""
        tf.random.set_seed(seed + 1)
        return dataset.shuffle(max(size, 1), seed=seed * 1_000_003 + number)

    def transform(keyed: tf.data.Dataset) -> tf.data.Dataset:
        if patch_size is not None:
            keyed = keyed.apply(make_patch_sampler(patch_size, seed, foreground_oversample, ignore_index, keyed=True))
        if augment is not None:
            keyed = keyed.apply(augment)
        pairs = keyed.map(lambda key, pair: pair)
        if label_size is not None:
            pairs = pairs.map(lambda image, mask: (image, _centre_crop(mask, label_size)),
                              num_parallel_calls=tf.data.AUTOTUNE)
        if weights is not None:  # the mask's second channel is its weight map
            pairs = pairs.map(lambda image, mask: (image, mask[..., :1], mask[..., 1]))
        return pairs

    if not shuffle:
        batches = transform(one_pass(tf.constant(0, tf.int64))).batch(batch_size)
    elif repeat:  # batches straddle passes; start `skip` pairs in
        first, offset = divmod(skip, max(size, 1))
        passes = tf.data.Dataset.range(first, 2**31).flat_map(one_pass).skip(offset)
        batches = transform(passes).batch(batch_size)
    else:  # whole passes, each batched on its own
        first = -(-skip // max(size, 1))
        batches = tf.data.Dataset.range(first, 2**31).flat_map(
            lambda number: transform(one_pass(number)).batch(batch_size))
    return batches.prefetch(tf.data.AUTOTUNE)


def _centre_crop(mask, size: int):
    offset = (tf.shape(mask)[0] - size) // 2
    return mask[offset:offset + size, offset:offset + size, :]
