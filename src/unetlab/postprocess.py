"""Postprocessing of a cell (non-membrane) probability map: cut cells apart where their membrane has a gap.

The ISBI 2012 challenge's Rand error punishes a merge of two cells by the square of their sizes, and one
missing membrane pixel merges them. `Watershed` splits merged cells the way the challenge's segmentation
entries did before scoring (a distance-transform watershed, e.g. Beier et al. 2017's seeds): the cells are
the smoothed probability above `threshold`; each cell's seeds are the h-maxima (`h` pixels) of its distance
to the nearest membrane, so two cells joined by a neck narrower than their bodies get two seeds; a
4-connected watershed of the negated distance from those seeds draws 1-pixel lines where regions meet.
The map keeps its probabilities and gets 0 (certain membrane) on the lines: thresholded anywhere, its cells
are cut along them, so the challenge's threshold sweep finds both the unchanged map's pixel error and the
split cells' Rand error.

`choose` picks, among candidate watersheds, the one with the lowest Rand error on labelled slices (at the
end of training, on its validation images: `predict.postprocess=auto`), or no cut when none beats the map.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Sequence

import numpy as np

from .errors import DataError


@dataclass(frozen=True)
class Watershed:
    """A distance-transform watershed of a cell probability map (module docstring)."""
    threshold: float = 0.5  # cells: the smoothed cell probability above this
    h: float = 4.0  # seeds: the h-maxima of the distance to the membranes, in pixels
    sigma: float = 1.0  # Gaussian smoothing of the probability before thresholding, in pixels (0: none)

    def lines(self, cell_probability: np.ndarray) -> np.ndarray:
        """The watershed's lines (bool, H x W): where two regions meet."""
        from scipy import ndimage
        from skimage.morphology import h_maxima
        from skimage.segmentation import watershed

        smooth = ndimage.gaussian_filter(cell_probability, self.sigma) if self.sigma else cell_probability
        distance = ndimage.gaussian_filter(ndimage.distance_transform_edt(smooth > self.threshold), 1.0)
        seeds = ndimage.label(h_maxima(distance, self.h))[0]
        if not seeds.any():  # no cell at all: nothing to cut
            return np.zeros(cell_probability.shape, bool)
        return watershed(-distance, seeds, connectivity=1, watershed_line=True) == 0

    def apply(self, cell_probability: np.ndarray) -> np.ndarray:
        """The map with 0 on the watershed's lines, unchanged elsewhere."""
        cut = np.array(cell_probability, dtype=np.float32, copy=True)
        cut[self.lines(cut)] = 0.0
        return cut

    def as_dict(self) -> dict:
        return {"method": "watershed", **asdict(self)}

    @classmethod
    def from_dict(cls, settings: dict) -> "Watershed":
        """The watershed of `as_dict`'s form (its `method` and any key it does not know are left out)."""
        return cls(**{field.name: settings[field.name] for field in fields(cls) if field.name in settings})

    def __str__(self) -> str:
        return f"watershed threshold={self.threshold:g} h={self.h:g} sigma={self.sigma:g}"


@dataclass(frozen=True)
class Choice:
    """What `choose` found: the watershed to apply (None: the map as predicted beats every candidate),
    its Rand error and the uncut map's on the slices it was chosen on, and every candidate's."""
    watershed: Watershed | None
    rand_error: float
    uncut_rand_error: float
    trials: tuple[tuple[Watershed, float], ...]

    def as_dict(self) -> dict:
        """The choice as a model records it (`Preprocessing.postprocess`): the method and its settings."""
        return self.watershed.as_dict() if self.watershed else {"method": "none"}


def candidates(threshold: Sequence[float], h: Sequence[float], sigma: Sequence[float]) -> list[Watershed]:
    """Every watershed of the grid threshold x h x sigma (the `predict.watershed.candidates` lists)."""
    return [Watershed(threshold=t, h=height, sigma=s) for t, height, s in itertools.product(threshold, h, sigma)]


def choose(labels: Sequence[np.ndarray], cell_maps: Sequence[np.ndarray], watersheds: Sequence[Watershed],
           grid: Sequence[float] | None = None, names: Sequence[str] | None = None) -> Choice:
    """The watershed of `watersheds` whose cut maps have the lowest challenge Rand error (pooled over the
    slices, best over the thresholds of `grid`: `unetlab.challenge.rand_error`) against `labels` (cell > 0,
    membrane 0), or None when the uncut `cell_maps` score at least as well. The first of equal ones wins."""
    from .challenge import rand_error

    if not len(labels) or len(labels) != len(cell_maps):
        raise DataError(f"choosing a postprocessing needs one cell map per label: got {len(labels)} labels and "
                        f"{len(cell_maps)} maps")
    uncut = rand_error(labels, cell_maps, grid, names).value
    trials = tuple((watershed, rand_error(labels, [watershed.apply(m) for m in cell_maps], grid, names).value)
                   for watershed in watersheds)
    best = min(trials, key=lambda trial: trial[1], default=None)
    if best is None or best[1] >= uncut:
        return Choice(None, uncut, uncut, trials)
    return Choice(best[0], best[1], uncut, trials)


def from_record(record: dict | None) -> Watershed | None:
    """The watershed a model recorded (`Choice.as_dict`), or None for "none" or no record."""
    if not record or record.get("method") != "watershed":
        return None
    return Watershed.from_dict(record)


def cut(probabilities: np.ndarray, watershed: Watershed | None) -> np.ndarray:
    """A binary model's probabilities (H, W, 1) or (H, W, 2) with its cells cut along `watershed`'s lines
    (unchanged for None)."""
    from .challenge import cell_probability

    if watershed is None:
        return probabilities
    if probabilities.shape[-1] > 2:
        raise ValueError(f"the watershed cuts the cells of a binary cell/membrane model; this model has "
                         f"{probabilities.shape[-1]} classes")
    return with_cells(probabilities, watershed.apply(cell_probability(probabilities)))


def with_cells(probabilities: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """A binary model's probabilities (H, W, 1) of the membrane or (H, W, 2) of cells and membranes, with
    the cell probability replaced by `cells` (H, W)."""
    cells = cells.astype(np.float32)
    if probabilities.shape[-1] == 1:
        return (1.0 - cells)[..., None]
    return np.stack([cells, 1.0 - cells], axis=-1)
