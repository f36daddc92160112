"""The PNG pictures a run shows: predictions of validation samples, and the pairs training sees."""

from __future__ import annotations

from pathlib import Path


def save_prediction_grid(model, batches, count: int, output_dir: Path) -> Path:
    """Write image | truth | prediction for the first `count` pairs of `batches` as predictions.png."""
    import numpy as np

    from unetlab.visualize import prediction_grid, save_png

    images, masks = [], []
    for image_batch, mask_batch in batches:
        images.append(image_batch.numpy())
        masks.append(mask_batch.numpy())
        if sum(len(batch) for batch in images) >= count:
            break
    images, masks = np.concatenate(images)[:count], np.concatenate(masks)[:count]
    probabilities = model.predict(images, verbose=0)
    return save_png(prediction_grid(images, masks, probabilities), Path(output_dir) / "predictions.png")


def save_augmentation_grid(pairs, count: int, output_dir: Path) -> Path:
    """Write the first `count` (image, mask) pairs of an unbatched dataset as augmentations.png (image | mask)."""
    from unetlab.visualize import pair_grid, save_png

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    images, masks = zip(*[(image.numpy(), mask.numpy()) for image, mask in pairs.take(count)])
    return save_png(pair_grid(images, masks), output_dir / "augmentations.png")
