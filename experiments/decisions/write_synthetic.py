"""Write the embedded synthetic dataset (data=synthetic's shapes) as image/mask PNG folders, for task=evaluate
and task=compare, which score image files.

    python experiments/decisions/write_synthetic.py OUT_DIR [--images 48] [--first-index 100000] [--size 64]

OUT_DIR/images/NNNNN.png (uint8, the rendered image scaled to 0..255) and OUT_DIR/masks/NNNNN.png (0/255).
--first-index 100000 is far beyond the indices data=synthetic trains and validates on (0.. num_train and
unetlab.data.synthetic's validation offset), so the images are held out from any data=synthetic run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--first-index", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42, help="data=synthetic's seed is the run's (default 42)")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from unetlab.data.synthetic import make_synthetic_dataset

    for side in ("images", "masks"):
        (args.out / side).mkdir(parents=True, exist_ok=True)
    pairs = make_synthetic_dataset(args.images, image_size=args.size, seed=args.seed, first_index=args.first_index)
    for index, (image, mask) in enumerate(pairs.as_numpy_iterator()):
        name = f"{args.first_index + index:06d}.png"
        Image.fromarray(np.round(np.clip(image[..., 0], 0, 1) * 255).astype(np.uint8)).save(args.out / "images" / name)
        Image.fromarray((mask[..., 0] > 0).astype(np.uint8) * 255).save(args.out / "masks" / name)
    print(f"wrote {args.images} image/mask pairs to {args.out}")


if __name__ == "__main__":
    main()
