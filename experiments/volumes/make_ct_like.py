"""Write a CT-like nnU-Net v2 raw dataset of anisotropic volumes, for `data=nnunet` studies on a machine
without medical data: `python experiments/volumes/make_ct_like.py OUT [--cases 24] [--seed 0]`.

Each case is a torso-like cross-section stack: air (-1000 HU) around an elliptic body of soft tissue
(about 40 HU, textured), a bright spine (about 700 HU) and one organ (label 1, about 90 HU, a smoothly
deformed ellipsoid) that touches tissue of similar brightness; Gaussian noise of 25 HU. Shapes and
spacings vary per case as in abdominal CT: 28-44 slices of 2.5-5 mm, 96-128 pixels of 0.7-0.9 mm.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage


def make_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(image (z, y, x) float32 HU, label (z, y, x) uint8, spacing (z, y, x) mm)."""
    shape = (int(rng.integers(28, 45)), int(rng.integers(96, 129)), int(rng.integers(96, 129)))
    spacing = (float(rng.uniform(2.5, 5.0)), *[float(rng.uniform(0.7, 0.9))] * 2)
    z, y, x = (np.arange(n) * s for n, s in zip(shape, spacing))  # millimetres
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    centre = np.array([z[-1], y[-1], x[-1]]) / 2
    body = ((yy - centre[1]) / (0.45 * y[-1])) ** 2 + ((xx - centre[2]) / (0.48 * x[-1])) ** 2 <= 1
    tissue = 40 + 15 * ndimage.gaussian_filter(rng.normal(size=shape), (1, 4, 4)) / 0.05
    image = np.where(body, tissue, -1000.0)
    spine = ((yy - centre[1] - 0.3 * y[-1]) / 9) ** 2 + ((xx - centre[2]) / 9) ** 2 <= 1
    image[spine] = 700
    organ_centre = centre + rng.uniform([-0.2, -0.15, -0.15], [0.2, 0.05, 0.15]) * np.array([z[-1], y[-1], x[-1]])
    radius = rng.uniform([25, 18, 22], [45, 30, 40])
    warp = 0.25 * ndimage.gaussian_filter(rng.normal(size=shape), (2, 8, 8)) / 0.02
    distance = sum(((axis - c) / r) ** 2 for axis, c, r in zip((zz, yy, xx), organ_centre, radius))
    label = ((distance + warp) <= 1) & body
    image[label] = 90 + 10 * ndimage.gaussian_filter(rng.normal(size=shape), 1)[label] / 0.2
    image += rng.normal(0, 25, shape)
    return image.astype(np.float32), label.astype(np.uint8), spacing


def write_dataset(out: Path, cases: int, seed: int, name: str = "Dataset101_CTLike") -> Path:
    root = Path(out) / name
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(cases):
        image, label, spacing = make_case(rng)
        affine = np.diag([-spacing[2], -spacing[1], spacing[0], 1.0])  # RAS: x and y flipped, as scanners write
        affine[:3, 3] = rng.uniform(-200, 200, 3)
        case = f"ct_{index:03d}"
        nib.save(nib.Nifti1Image(image.transpose(2, 1, 0), affine), root / "imagesTr" / f"{case}_0000.nii.gz")
        nib.save(nib.Nifti1Image(label.transpose(2, 1, 0), affine), root / "labelsTr" / f"{case}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1},
                                                  "numTraining": cases, "file_ending": ".nii.gz", "name": name}, indent=2))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    print(write_dataset(parser.parse_args().out, parser.parse_args().cases, parser.parse_args().seed))


if __name__ == "__main__":
    main()
