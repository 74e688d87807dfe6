"""Morpho-MNIST morphometry and perturbations (after Castro et al., 2019).

Digits are analysed and edited at four times their resolution: the image is
upscaled, binarised, and described by its distance transform and medial axis
(skeleton). Stroke thickness is twice the mean distance to the background
along the skeleton; slant comes from the second-order central moments.
Perturbations act on the upscaled binary image, which is then reduced back to
the original grid.

References
----------
D. C. Castro, J. Tan, B. Kainz, E. Konukoglu and B. Glocker, "Morpho-MNIST:
Quantitative Assessment and Diagnostics for Representation Learning", JMLR
20(178), 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SCALE = 4
THRESHOLD = 0.5
SWELL_STRENGTH = 3.0
SWELL_RADIUS = 7.0
FRACTURE_THICKNESS = 1.5
FRACTURE_PRUNE = 2.0
N_FRACTURES = 3


@dataclass(frozen=True)
class Morphology:
    """An upscaled, binarised digit with its distance map and skeleton (thinned medial axis).

    Attributes
    ----------
    binary : ndarray of bool, shape (SCALE * h, SCALE * w)
        Foreground of the upscaled digit.
    distance : ndarray of float, same shape
        Euclidean distance of each foreground pixel to the background.
    skeleton : ndarray of bool, same shape
        One-pixel-wide skeleton of ``binary`` (its medial axis, by thinning).
    """

    binary: np.ndarray
    distance: np.ndarray
    skeleton: np.ndarray

    @classmethod
    def from_binary(cls, binary: np.ndarray) -> Morphology:
        """Describe an upscaled binary image."""
        from skimage.morphology import skeletonize

        return cls(binary, ndimage.distance_transform_edt(binary), skeletonize(binary))

    @property
    def thickness(self) -> float:
        """Mean stroke thickness in pixels of the original grid (NaN if empty)."""
        if not self.skeleton.any():
            return float("nan")
        return float(2.0 * self.distance[self.skeleton].mean() / SCALE)

    @property
    def slant(self) -> float:
        """Slant in degrees, positive when the digit leans to the right (NaN if empty)."""
        return _slant(self.binary.astype(float))


def upscale(image: np.ndarray) -> np.ndarray:
    """Bicubic ``SCALE``-fold upscaling of an image with intensities in [0, 1]."""
    from skimage.transform import pyramid_expand

    return np.clip(pyramid_expand(image, upscale=SCALE, order=3), 0.0, 1.0)


def downscale(binary: np.ndarray) -> np.ndarray:
    """Anti-aliased ``SCALE``-fold reduction of an upscaled binary image to [0, 1]."""
    from skimage.transform import pyramid_reduce

    return np.clip(pyramid_reduce(binary.astype(float), downscale=SCALE), 0.0, 1.0)


def binarise(upscaled: np.ndarray) -> np.ndarray:
    """Foreground of an upscaled image in [0, 1]."""
    return upscaled >= THRESHOLD


def _slant(image: np.ndarray) -> float:
    from skimage.measure import moments_central

    mu = moments_central(image, order=2)
    if mu[0, 0] <= 0 or mu[2, 0] <= 0:
        return float("nan")
    return float(np.degrees(np.arctan(-mu[1, 1] / mu[2, 0])))


def shear_to_slant(upscaled: np.ndarray, target_degrees: float) -> np.ndarray:
    """Shear an upscaled image horizontally so that its slant becomes ``target_degrees``.

    A horizontal shear ``col' = col + k (row_c - row)`` adds ``k`` to the tangent of
    the moment-based slant, so ``k = tan(target) - tan(current)``.
    """
    current = _slant(upscaled)
    if np.isnan(current):
        return upscaled
    k = np.tan(np.radians(target_degrees)) - np.tan(np.radians(current))
    rows = np.arange(upscaled.shape[0], dtype=float)
    total = upscaled.sum()
    row_centre = (upscaled.sum(axis=1) @ rows) / total
    matrix = np.array([[1.0, 0.0], [k, 1.0]])
    offset = np.array([0.0, -k * row_centre])
    return ndimage.affine_transform(upscaled, matrix, offset=offset, order=1, mode="constant")


def set_thickness(binary: np.ndarray, target: float) -> np.ndarray:
    """Thin or thicken an upscaled binary digit to a mean thickness of ``target`` pixels.

    The stroke is eroded or dilated by a (possibly fractional) radius read off
    the Euclidean distance transform; one correction step absorbs the bias of
    the medial-axis estimate.
    """
    result = binary
    for _ in range(2):
        current = Morphology.from_binary(result).thickness
        if np.isnan(current):
            return result
        radius = abs(target - current) * SCALE / 2.0
        if target >= current:
            result = ndimage.distance_transform_edt(~result) <= radius
        else:
            thinned = ndimage.distance_transform_edt(result) > radius
            if not thinned.any():
                return result
            result = thinned
    return result


def swell(morph: Morphology, rng: np.random.Generator) -> np.ndarray:
    """Magnify the stroke locally around a random skeleton point.

    Pixels within ``SWELL_RADIUS`` (original pixels) of the centre sample the
    image at ``centre + d (|d| / R) ** (strength - 1)``, which inflates the
    neighbourhood of the centre.
    """
    points = np.argwhere(morph.skeleton)
    if len(points) == 0:
        return morph.binary
    centre = points[rng.integers(len(points))].astype(float)
    radius = SWELL_RADIUS * SCALE
    grid = np.indices(morph.binary.shape, dtype=float)
    delta = grid - centre[:, None, None]
    r = np.sqrt((delta**2).sum(axis=0))
    factor = np.where(r < radius, (r / radius) ** (SWELL_STRENGTH - 1.0), 1.0)
    coords = centre[:, None, None] + delta * factor
    warped = ndimage.map_coordinates(morph.binary.astype(float), coords, order=1)
    return warped >= 0.5


def _skeleton_special_points(skeleton: np.ndarray) -> np.ndarray:
    """End points and junctions of a skeleton."""
    neighbours = ndimage.convolve(skeleton.astype(int), np.ones((3, 3), int), mode="constant")
    neighbours -= skeleton
    return skeleton & ((neighbours == 1) | (neighbours >= 3))


def fracture(morph: Morphology, rng: np.random.Generator) -> np.ndarray:
    """Cut ``N_FRACTURES`` thin gaps across the stroke at random skeleton points.

    Each cut is a band ``FRACTURE_THICKNESS`` pixels wide, perpendicular to
    the local skeleton direction, spanning the stroke's local width. Points
    within ``FRACTURE_PRUNE`` pixels of a skeleton end or junction are avoided.
    """
    skeleton = morph.skeleton
    points = np.argwhere(skeleton)
    if len(points) == 0:
        return morph.binary
    special = _skeleton_special_points(skeleton)
    if special.any():
        far = ndimage.distance_transform_edt(~special) > FRACTURE_PRUNE * SCALE
        candidates = np.argwhere(skeleton & far)
        if len(candidates) > 0:
            points = candidates
    result = morph.binary.copy()
    grid = np.indices(result.shape, dtype=float)
    chosen: list[np.ndarray] = []
    for index in rng.permutation(len(points)):
        if len(chosen) == N_FRACTURES:
            break
        point = points[index].astype(float)
        if any(np.hypot(*(point - c)) < 3 * FRACTURE_THICKNESS * SCALE for c in chosen):
            continue
        chosen.append(point)
        result &= ~_cut(morph, point, grid)
    return result


def _cut(morph: Morphology, point: np.ndarray, grid: np.ndarray) -> np.ndarray:
    all_points = np.argwhere(morph.skeleton).astype(float)
    near = all_points[np.hypot(*(all_points - point).T) <= 2 * SCALE]
    if len(near) >= 2:
        _, _, vt = np.linalg.svd(near - near.mean(axis=0), full_matrices=False)
        tangent = vt[0]
    else:
        tangent = np.array([1.0, 0.0])
    normal = np.array([-tangent[1], tangent[0]])
    delta = grid - point[:, None, None]
    along = np.abs(np.tensordot(tangent, delta, axes=1))
    across = np.abs(np.tensordot(normal, delta, axes=1))
    half_width = morph.distance[tuple(point.astype(int))] + SCALE
    return (along <= FRACTURE_THICKNESS * SCALE / 2.0) & (across <= half_width)
