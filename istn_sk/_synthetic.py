"""A synthetic two-domain image set with a known shift, for demos and tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.utils import check_random_state

from ._validation import SOURCE_DOMAIN, TARGET_DOMAIN

SHAPE_CLASSES = ("disc", "square", "cross")


def _draw_shape(kind: str, grid: tuple[np.ndarray, ...], centre: np.ndarray,
                radius: float) -> np.ndarray:
    offsets = [axis - c for axis, c in zip(grid, centre, strict=True)]
    if kind == "disc":
        return sum(o**2 for o in offsets) <= radius**2
    if kind == "square":
        return np.all([np.abs(o) <= radius * 0.8 for o in offsets], axis=0)
    arms = [np.abs(o) <= radius * 0.3 for o in offsets]
    inside = np.all([np.abs(o) <= radius for o in offsets], axis=0)
    return inside & np.any([np.all([a for j, a in enumerate(arms) if j != i], axis=0)
                            for i in range(len(arms))], axis=0)


def make_shifted_shapes(n_per_domain: int = 200, image_shape: tuple[int, ...] = (28, 28), *,
                        shift: tuple[float, ...] | float = 3.0, gamma: float = 0.5,
                        contrast: float = 0.7, noise: float = 0.0, random_state=None):
    """Discs, squares and crosses at a source site, and the same images shifted at a target site.

    Source images are shapes (class 0 disc, 1 square, 2 cross) of random
    size and position on a -1 background, slightly blurred. Target row ``i``
    is source row ``i`` translated by ``shift`` voxels, its intensities
    (mapped to [0, 1]) raised to ``gamma`` and scaled by ``contrast``: a
    known appearance and shape shift that an ISTN with an affine STN can
    undo. Pairs are ground truth for scoring (``|S2T - T|``); the adapter
    never uses them as pairs.

    Parameters
    ----------
    n_per_domain : int, default=200
        Images per domain (balanced classes).
    image_shape : tuple of int, default=(28, 28)
        2D or 3D spatial shape.
    shift : float or tuple of float, default=3.0
        Target translation in voxels (per axis, or along every axis).
    gamma : float, default=0.5
        Target intensity gamma.
    contrast : float, default=0.7
        Target intensity scale in [0, 1] space.
    noise : float, default=0.0
        Standard deviation of Gaussian noise added to target images.
    random_state : int, RandomState or None

    Returns
    -------
    X : ndarray of shape (2 * n_per_domain, 1, *image_shape), float32 in [-1, 1]
        Source rows first.
    y : ndarray of shape (2 * n_per_domain,), int64
        Shape class of every row (mask the target part before fitting).
    sample_domain : ndarray of shape (2 * n_per_domain,), int64
        1 for source rows, -2 for target rows (skada's convention).
    """
    rng = check_random_state(random_state)
    shape = tuple(int(s) for s in image_shape)
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    shifts = np.broadcast_to(np.asarray(shift, dtype=float), (len(shape),))
    sources, labels = [], []
    for i in range(n_per_domain):
        label = i % len(SHAPE_CLASSES)
        size = min(shape)
        radius = rng.uniform(0.18, 0.28) * size
        centre = np.array([s / 2 for s in shape]) + rng.uniform(-0.08, 0.08, len(shape)) * size
        mask = _draw_shape(SHAPE_CLASSES[label], grid, centre, radius).astype(np.float32)
        sources.append(np.clip(ndimage.gaussian_filter(mask, 0.7), 0.0, 1.0))
        labels.append(label)
    targets = []
    for unit in sources:
        moved = np.clip(ndimage.shift(unit, shifts, order=1, mode="constant", cval=0.0), 0, 1)
        moved = contrast * moved**gamma + noise * rng.standard_normal(shape)
        targets.append(np.clip(moved, 0.0, 1.0))
    images = [2.0 * unit - 1.0 for unit in sources + targets]
    labels = labels + labels
    X = np.stack(images)[:, None].astype(np.float32)
    y = np.asarray(labels, dtype=np.int64)
    sample_domain = np.repeat([SOURCE_DOMAIN, TARGET_DOMAIN], n_per_domain).astype(np.int64)
    return X, y, sample_domain
