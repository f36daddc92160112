"""Write small, seeded nnU-Net v2 raw datasets for comparing dataset planners (self-configuration).

    python experiments/planning/make_datasets.py OUT_DIR [--kind em2d rgb2d ct3d mr3d] [--cases N]
        [--small] [--seed 0] [--first-id 501] [--isbi DIR]

Each kind becomes OUT_DIR/DatasetXXX_NAME/ in nnU-Net v2's raw format: dataset.json (channel_names,
labels with "background": 0, numTraining, file_ending), imagesTr/CASE_0000.ext (one file per channel,
CASE_0001.ext for a second channel) and labelsTr/CASE.ext. The id is --first-id plus the kind's place
in KINDS (em2d 0, rgb2d 1, ct3d 2, mr3d 3), so Dataset501_EM2D .. Dataset504_MR3D by default.

- em2d (Dataset501_EM2D): 2D grayscale PNG, the real ISBI 2012 EM slices (--isbi, by default the
  shared folder beside the repository). Label 1 = membrane (the README's value 0), 0 = cell interior,
  as in the U-Net paper's setup (membranes are the positive class). Only the first 20 slices by name are
  used: experiments/README.md holds out the last 4 (slice_25 .. slice_28) as a test set. Case i is slice
  i % 20, turned by the dihedral transform number (i // 20) % 8 and, from i >= 160 on, with a mild
  random gamma; with --small, a random 256x256 crop of it.
- rgb2d (Dataset502_RGB2D): 2D RGB PNG (one file per case, channels R, G, B), 180..400 px per edge
  (64..128 with --small), non-square; textured, unevenly lit background with three foreground classes:
  1 red ellipses, 2 green irregular blobs, 3 blue rotated rectangles; every class in every case.
- ct3d (Dataset503_CT3D): 3D anisotropic CT-like NIfTI, int16 HU: 32-48 slices of 3-5 mm, 144-176 px of
  0.7-0.9 mm in-plane (16-24 x 56-72 px with --small); air (-1000 HU) around an elliptic body (about
  40 HU, textured), a bright spine (700 HU), an organ (label 1, about 90 HU) holding a lesion (label 2,
  about 120 HU); Gaussian noise of 20 HU. No voxel outside the body is zero, so cropping to the non-zero
  region keeps the whole volume (as in real CT).
- mr3d (Dataset504_MR3D): 3D near-isotropic MR-like NIfTI, two channels T1 (_0000) and T2 (_0001),
  int16 in arbitrary units with a per-case, per-channel gain and a smooth bias field: 96-128 voxels of
  0.95-1.05 mm per axis (48-64 with --small); a deformed ellipsoidal head (CSF rim, grey matter, white
  matter, ventricles), off-centre, with exact zeros outside it; its bounding box is about 45-65% of the
  volume (the head itself about a quarter to a third), so cropping to the non-zero region removes more
  than a quarter of each case. Labels: 1 edema, 2 tumour core inside it.

Axis order: the generator's arrays are numpy (z, y, x), axis 0 being the slice axis (z) and spacing
given as (z, y, x) in mm. NIfTI files store them transposed to (x, y, z) with the affine
diag(-sx, -sy, sz) (RAS, x and y flipped as scanners write, as experiments/volumes/make_ct_like.py
does) and a random origin; the header zooms are (sx, sy, sz). nnU-Net's SimpleITK reader gives back
the array in (z, y, x) order with spacing (sz, sy, sx), so its "first axis" is our z.
2D PNGs carry no spacing: nnU-Net uses (999, 1, 1).

Every case draws from its own generator, seeded by (seed, kind, case index), so a dataset of 30 cases
is the first 30 cases of one of 300; the output is byte-identical for the same arguments (the gzip
streams carry no time stamp). Needs numpy, scipy, nibabel and pillow only.

experiments/volumes/make_ct_like.py was not reused by import: its case generator has its size,
spacing (2.5-5 mm slices, 96-128 px) and single label fixed inside, while ct3d needs about 40 x 160 x
160 voxels, 3-5 mm slices and two labels, and a --small mode; ct3d follows its anatomy and its NIfTI
convention instead.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

KINDS = ("em2d", "rgb2d", "ct3d", "mr3d")
NAMES = {"em2d": "EM2D", "rgb2d": "RGB2D", "ct3d": "CT3D", "mr3d": "MR3D"}
DEFAULT_CASES = {"em2d": 20, "rgb2d": 20, "ct3d": 24, "mr3d": 24}
GENERATOR = "unetlab experiments/planning/make_datasets.py"
DEFAULT_ISBI = Path(__file__).resolve().parents[3] / "shared" / "data" / "isbi2012"
ISBI_HELD_OUT = 4  # experiments/README.md: the last 4 slices are the test set


def case_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, KINDS.index(kind), index])


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")
    return field / max(float(field.std()), 1e-8)


# ----------------------------------------------------------------------------------------------- em2d
def isbi_slices(isbi: Path) -> list[tuple[Path, Path]]:
    images = sorted((isbi / "image").glob("*.png"))
    if len(images) <= ISBI_HELD_OUT:
        raise SystemExit(f"em2d: no ISBI 2012 slices in {isbi}/image (give --isbi DIR)")
    pairs = [(image, isbi / "label" / image.name) for image in images[:-ISBI_HELD_OUT]]
    missing = [str(label) for _, label in pairs if not label.is_file()]
    if missing:
        raise SystemExit(f"em2d: labels missing: {missing}")
    return pairs


def make_em2d(rng: np.random.Generator, index: int, small: bool, slices: list[tuple[Path, Path]]):
    image_path, label_path = slices[index % len(slices)]
    image = np.asarray(Image.open(image_path).convert("L"))
    label = (np.asarray(Image.open(label_path).convert("L")) < 128).astype(np.uint8)  # 1 = membrane
    turn = (index // len(slices)) % 8
    image, label = (np.rot90(a, turn % 4) for a in (image, label))
    if turn >= 4:
        image, label = image[:, ::-1], label[:, ::-1]
    if index >= 8 * len(slices):  # all eight orientations used: vary the contrast a little
        gamma = rng.uniform(0.8, 1.25)
        image = np.clip(255.0 * (image / 255.0) ** gamma, 0, 255).round().astype(np.uint8)
    if small:
        y, x = (int(rng.integers(0, n - 256 + 1)) for n in image.shape)
        image, label = image[y:y + 256, x:x + 256], label[y:y + 256, x:x + 256]
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


# ---------------------------------------------------------------------------------------------- rgb2d
def make_rgb2d(rng: np.random.Generator, small: bool):
    low, high = (64, 129) if small else (180, 401)
    h, w = int(rng.integers(low, high)), int(rng.integers(low, high))
    while abs(h - w) < 0.1 * max(h, w):  # non-square
        w = int(rng.integers(low, high))
    base = rng.uniform(110, 170, 3)
    shading = 25 * smooth_noise(rng, (h, w), 0.12 * min(h, w))[..., None]  # mostly brightness, a little hue
    image = base + shading + 8 * np.stack([smooth_noise(rng, (h, w), 0.12 * min(h, w)) for _ in range(3)], -1)
    image += 10 * smooth_noise(rng, (h, w), 1.5)[..., None] * rng.uniform(0.5, 1.0, 3)  # grain
    label = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    colours = {1: (200, 60, 55), 2: (65, 165, 70), 3: (60, 85, 200)}
    objects = [c for c in (1, 2, 3) for _ in range(int(rng.integers(1, 4)))]
    rng.shuffle(objects)
    for cls in objects:
        r = rng.uniform(0.06, 0.15) * min(h, w)
        cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
        angle = rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
        v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
        aspect = rng.uniform(0.45, 1.0)
        if cls == 1:  # ellipse
            mask = (u / r) ** 2 + (v / (aspect * r)) ** 2 <= 1
        elif cls == 2:  # irregular blob: a disc with a wobbly rim
            wobble = 0.35 * smooth_noise(rng, (h, w), 0.04 * min(h, w))
            mask = np.hypot(u, v) / r + wobble <= 1
        else:  # rotated rectangle
            mask = (np.abs(u) <= r) & (np.abs(v) <= aspect * r)
        colour = np.array(colours[cls]) + rng.uniform(-25, 25, 3)
        shade = 1 + 0.08 * smooth_noise(rng, (h, w), 3)[mask][:, None]
        image[mask] = colour * shade
        label[mask] = cls
    light = 1 + 0.2 * ((yy / h - 0.5) * rng.uniform(-1, 1) + (xx / w - 0.5) * rng.uniform(-1, 1))
    image = image * light[..., None] + rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).round().astype(np.uint8), label


# ----------------------------------------------------------------------------------------------- ct3d
def make_ct3d(rng: np.random.Generator, small: bool):
    """(image (z, y, x) int16 HU, label (z, y, x) uint8, spacing (z, y, x) mm)."""
    if small:
        shape = (int(rng.integers(16, 25)), int(rng.integers(56, 73)), int(rng.integers(56, 73)))
    else:
        shape = (int(rng.integers(32, 49)), int(rng.integers(144, 177)), int(rng.integers(144, 177)))
    inplane = float(rng.uniform(0.7, 0.9))
    spacing = (float(rng.uniform(3.0, 5.0)), inplane, inplane)
    extent = np.array(shape) * np.array(spacing)  # mm
    zz, yy, xx = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")
    centre = extent / 2
    body = ((yy - centre[1]) / (0.44 * extent[1])) ** 2 + ((xx - centre[2]) / (0.47 * extent[2])) ** 2 <= 1
    sigma_tex = (1, 4, 4) if not small else (0.5, 1.5, 1.5)
    image = np.where(body, 40 + 15 * smooth_noise(rng, shape, sigma_tex), -1000.0)
    spine_r = 0.055 * extent[1]
    spine = ((yy - centre[1] - 0.3 * extent[1]) / spine_r) ** 2 + ((xx - centre[2]) / spine_r) ** 2 <= 1
    image[spine & body] = 700
    organ_centre = centre + rng.uniform([-0.15, -0.12, -0.15], [0.15, 0.05, 0.15]) * extent
    radius = rng.uniform([0.25, 0.15, 0.18], [0.4, 0.22, 0.28]) * extent
    warp = 0.25 * smooth_noise(rng, shape, (2, 8, 8) if not small else (1, 3, 3))
    distance = sum(((a - c) / r) ** 2 for a, c, r in zip((zz, yy, xx), organ_centre, radius))
    organ = ((distance + warp) <= 1) & body & ~spine
    lesion_centre = organ_centre + rng.uniform(-0.3, 0.3, 3) * radius
    lesion_radius = rng.uniform(0.35, 0.5, 3) * radius
    lesion_radius[0] = max(lesion_radius[0], 1.5 * spacing[0])  # at least a few slices
    lesion = sum(((a - c) / r) ** 2 for a, c, r in zip((zz, yy, xx), lesion_centre, lesion_radius)) <= 1
    lesion &= organ
    image[organ] = 90 + 10 * smooth_noise(rng, shape, 1)[organ]
    image[lesion] = 120 + 8 * smooth_noise(rng, shape, 1)[lesion]
    image += rng.normal(0, 20, shape)
    label = organ.astype(np.uint8)
    label[lesion] = 2
    return np.clip(image, -1024, 3071).round().astype(np.int16), label, spacing


# ----------------------------------------------------------------------------------------------- mr3d
def make_mr3d(rng: np.random.Generator, small: bool):
    """(image (2, z, y, x) int16 [T1, T2], label (z, y, x) uint8, spacing (z, y, x) mm)."""
    low, high = (48, 65) if small else (96, 129)
    shape = tuple(int(rng.integers(low, high)) for _ in range(3))
    spacing = tuple(float(s) for s in rng.uniform(0.95, 1.05, 3))
    grid = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    half = rng.uniform(0.38, 0.43, 3) * np.array(shape)  # semi-axes in voxels: bbox 2*half
    centre = np.array([rng.uniform(h + 2, n - h - 2) for h, n in zip(half, shape)])
    sigma = 0.06 * min(shape)
    rho = np.sqrt(sum(((g - c) / h) ** 2 for g, c, h in zip(grid, centre, half)))
    rho = rho + 0.04 * smooth_noise(rng, shape, sigma)  # head boundary: rho <= 1
    head = rho <= 1
    head = ndimage.binary_fill_holes(head)
    tissue = np.full(shape, 2, np.uint8)  # 0 CSF, 1 grey matter, 2 white matter
    folds = 0.06 * smooth_noise(rng, shape, 0.5 * sigma)
    tissue[rho + folds > 0.72] = 1
    tissue[rho > 0.9] = 0
    for side in (-1, 1):  # ventricles
        v_centre = centre + np.array([0.0, -0.05, side * 0.12]) * half
        v_half = np.array([0.25, 0.12, 0.07]) * half
        tissue[sum(((g - c) / h) ** 2 for g, c, h in zip(grid, v_centre, v_half)) <= 1] = 0
    label = np.zeros(shape, np.uint8)
    direction = rng.normal(size=3)
    l_centre = centre + rng.uniform(0.15, 0.45) * half * direction / np.linalg.norm(direction)
    l_half = rng.uniform(0.28, 0.42, 3) * half
    l_rho = np.sqrt(sum(((g - c) / h) ** 2 for g, c, h in zip(grid, l_centre, l_half)))
    l_rho = l_rho + 0.15 * smooth_noise(rng, shape, 0.5 * sigma)
    inside = head & (rho < 0.88)
    label[(l_rho <= 1) & inside] = 1  # edema
    label[(l_rho <= rng.uniform(0.45, 0.65)) & inside] = 2  # core
    t1_of = np.array([220.0, 520.0, 720.0])  # CSF, GM, WM
    t2_of = np.array([1000.0, 480.0, 320.0])
    t1, t2 = t1_of[tissue], t2_of[tissue]
    t1[label == 1], t2[label == 1] = 430, 820
    t1[label == 2], t2[label == 2] = 880, 560
    channels = []
    for values in (t1, t2):
        bias = 1 + 0.12 * smooth_noise(rng, shape, 2 * sigma)
        gain = rng.uniform(0.6, 1.6)
        texture = 1 + 0.04 * smooth_noise(rng, shape, 1)
        noisy = values * texture * bias * gain + rng.normal(0, 15, shape)
        channels.append(np.where(head, np.clip(noisy, 1, 32767), 0).round().astype(np.int16))
    return np.stack(channels), np.where(head, label, 0).astype(np.uint8), spacing


# ---------------------------------------------------------------------------------------------- files
def save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array, "RGB" if array.ndim == 3 else "L").save(path)


def save_nifti(array_zyx: np.ndarray, spacing_zyx, origin, path: Path) -> None:
    """Write a (z, y, x) array as NIfTI (x, y, z); gzip without time stamp, so the bytes are reproducible."""
    sz, sy, sx = spacing_zyx
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = origin
    img = nib.Nifti1Image(np.ascontiguousarray(array_zyx.transpose(2, 1, 0)), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.write_bytes(gzip.compress(img.to_bytes(), compresslevel=1, mtime=0))


def write_dataset(out: Path, kind: str, cases: int, small: bool, seed: int, dataset_id: int,
                  isbi: Path | None = None) -> Path:
    name = f"Dataset{dataset_id:03d}_{NAMES[kind]}"
    root = Path(out) / name
    slices = isbi_slices(isbi or DEFAULT_ISBI) if kind == "em2d" else None
    if root.exists():
        previous = root / "dataset.json"
        if not previous.is_file() or json.loads(previous.read_text()).get("generator") != GENERATOR:
            raise SystemExit(f"{root} exists and was not written by this script; not overwriting it")
        shutil.rmtree(root)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    prefix = kind[:-2]
    for index in range(cases):
        rng = case_rng(seed, kind, index)
        case = f"{prefix}_{index:03d}"
        images, labels = root / "imagesTr", root / "labelsTr"
        if kind in ("em2d", "rgb2d"):
            image, label = make_em2d(rng, index, small, slices) if kind == "em2d" else make_rgb2d(rng, small)
            save_png(image, images / f"{case}_0000.png")
            save_png(label, labels / f"{case}.png")
            continue
        if kind == "ct3d":
            image, label, spacing = make_ct3d(rng, small)
            image = image[None]
        else:
            image, label, spacing = make_mr3d(rng, small)
        origin = rng.uniform(-200, 200, 3)
        for channel, volume in enumerate(image):
            save_nifti(volume, spacing, origin, images / f"{case}_{channel:04d}.nii.gz")
        save_nifti(label, spacing, origin, labels / f"{case}.nii.gz")
    meta = {
        "em2d": ({"0": "EM"}, {"background": 0, "membrane": 1}, ".png",
                 "ISBI 2012 EM slices (Cardona et al. 2010; PNGs from zhixuhao/unet, MIT); 1 = membrane"),
        "rgb2d": ({"0": "R", "1": "G", "2": "B"},
                  {"background": 0, "red_ellipse": 1, "green_blob": 2, "blue_rectangle": 3}, ".png",
                  "synthetic RGB scenes, one RGB PNG per case"),
        "ct3d": ({"0": "CT"}, {"background": 0, "organ": 1, "lesion": 2}, ".nii.gz",
                 "synthetic anisotropic CT-like volumes, HU, air -1000 around the body"),
        "mr3d": ({"0": "T1", "1": "T2"}, {"background": 0, "edema": 1, "core": 2}, ".nii.gz",
                 "synthetic near-isotropic two-channel MR-like heads, zero outside the head"),
    }[kind]
    dataset = {"channel_names": meta[0], "labels": meta[1], "numTraining": cases, "file_ending": meta[2],
               "name": name, "description": meta[3] + (" (--small)" if small else ""),
               "generator": GENERATOR, "seed": seed}
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the nnUNet_raw folder to write into")
    parser.add_argument("--kind", nargs="+", action="extend", choices=KINDS,
                        help="kinds to write (repeatable); default: all four")
    parser.add_argument("--cases", type=int, help="cases per dataset; default: 20 (2D), 24 (3D)")
    parser.add_argument("--small", action="store_true", help="shrink the shapes (for timing many cases)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first-id", type=int, default=501, help="dataset id of em2d; the others follow")
    parser.add_argument("--isbi", type=Path, default=None, help=f"ISBI 2012 folder (default {DEFAULT_ISBI})")
    args = parser.parse_args(argv)
    if args.cases is not None and args.cases < 1:
        parser.error("--cases must be at least 1")
    for kind in dict.fromkeys(args.kind or KINDS):
        cases = args.cases or DEFAULT_CASES[kind]
        root = write_dataset(args.out, kind, cases, args.small, args.seed, args.first_id + KINDS.index(kind),
                             args.isbi)
        print(root, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
