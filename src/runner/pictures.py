"""The PNG pictures a run shows: predictions of validation samples, and the pairs training sees."""

from __future__ import annotations

from pathlib import Path


def save_prediction_grid(model, batches, count: int, output_dir: Path) -> Path:
    """Write image | truth | prediction | overlay, with each row's Dice, for the first `count` pairs of
    `batches` as predictions.png; of volumes, their middle slices (and each slice's Dice)."""
    import numpy as np

    from unetlab.visualize import centre_crop, predicted_class_map, prediction_grid, save_png

    images, masks = [], []
    for image_batch, mask_batch, *_ in batches:  # (and weight maps)
        images.append(image_batch.numpy())
        masks.append(mask_batch.numpy())
        if sum(len(batch) for batch in images) >= count:
            break
    images, masks = np.concatenate(images)[:count], np.concatenate(masks)[:count]
    probabilities = model.predict(images, verbose=0)
    if images.ndim == 5:  # volumes (N, D, H, W, C): the middle slice of each (valid padding: of the prediction's)
        images, masks = (array[:, array.shape[1] // 2] for array in (images, masks))
        probabilities = probabilities[:, probabilities.shape[1] // 2]
    size = probabilities.shape[1:3]  # valid-padding models predict the centre
    images, masks = [centre_crop(image, size) for image in images], [centre_crop(mask, size) for mask in masks]
    return save_png(prediction_grid(images, masks, predicted_class_map(probabilities), probabilities.shape[-1]),
                    Path(output_dir) / "predictions.png")


def save_augmentation_grid(pairs, count: int, output_dir: Path) -> Path:
    """Write the first `count` (image, mask) pairs of an unbatched dataset as augmentations.png (image | mask)."""
    from unetlab.visualize import pair_grid, save_png

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    images, masks = zip(*[(pair[0].numpy(), pair[1].numpy()) for pair in pairs.take(count)])
    if images[0].ndim == 4:  # volumes: their middle slices
        images, masks = [image[len(image) // 2] for image in images], [mask[len(mask) // 2] for mask in masks]
    return save_png(pair_grid(images, masks), output_dir / "augmentations.png")


def save_weight_map(pairs, output_dir: Path) -> Path:
    """Write the first (image, mask, weights) triple of an unbatched dataset as weight_map.png:
    image | mask | weights (viridis, 0 to the maximum), under a header naming them."""
    from unetlab.visualize import centre_crop, colorize, heatmap, labelled_grid, save_png, to_rgb

    image, mask, weights = (part.numpy() for part in next(iter(pairs.take(1))))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    row = [to_rgb(centre_crop(image, mask.shape[0])), colorize(mask), heatmap(weights)]
    return save_png(labelled_grid([row], ("image", "mask", "weights")), output_dir / "weight_map.png")
