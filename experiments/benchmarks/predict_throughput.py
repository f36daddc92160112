"""Prediction throughput (megapixels/s) on image files: whole image vs tiled vs tiled + TTA.

Uses the default U-Net (depth 4, filters 32, 1 channel, sigmoid) with random weights (speed
does not depend on training) and `unetlab.inference`, the predictor behind task=predict,
task=evaluate and the registered MLflow model:
  whole   - one forward pass per image (mirror-padded to a multiple of 2**depth)
  tiled   - sliding 256x256 windows, overlap 0.5, Gaussian blending, batches of 4
  tiled + flips / d4 - the same with 4 / 8 test-time augmentation views

    python experiments/benchmarks/predict_throughput.py --root ../shared/data/isbi2012/image --images 6
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/isbi2012/image", help="folder of images")
    parser.add_argument("--images", type=int, default=6, help="images per measurement")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--filters", type=int, default=32)
    args = parser.parse_args()

    import keras

    from unetlab.data.image_files import read_array
    from unetlab.inference import predict_tiled, predict_whole
    from unetlab.models import build_unet
    from unetlab.preprocessing import to_unit_range

    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 1), 1, filters=args.filters)
    files = sorted(Path(args.root).iterdir())[: args.images]
    images = [to_unit_range(read_array(path)) for path in files]
    megapixels = sum(image.shape[0] * image.shape[1] for image in images) / 1e6
    print(f"{os.cpu_count()} CPUs; {len(images)} images of {images[0].shape[1]}x{images[0].shape[0]} "
          f"({megapixels:.2f} MP); U-Net filters {args.filters}; tile {args.tile_size}, overlap {args.overlap}")

    runs = {
        "whole": lambda image: predict_whole(model, image, multiple=16),
        "tiled": lambda image: predict_tiled(model, image, tile_size=args.tile_size, overlap=args.overlap),
        "tiled + flips": lambda image: predict_tiled(model, image, tile_size=args.tile_size, overlap=args.overlap,
                                                     tta="flips"),
        "tiled + d4": lambda image: predict_tiled(model, image, tile_size=args.tile_size, overlap=args.overlap,
                                                  tta="d4"),
    }
    for name, run in runs.items():
        run(images[0])  # trace and warm up
        start = time.perf_counter()
        for image in images:
            run(image)
        seconds = time.perf_counter() - start
        print(f"{name:14s}: {megapixels / seconds:6.3f} MP/s ({seconds / len(images):5.2f} s per image)", flush=True)


if __name__ == "__main__":
    main()
