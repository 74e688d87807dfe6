"""The voxel-wise site effect between two image sets, and how much of it is a smooth field."""

from __future__ import annotations

import numpy as np
import torch

from .nn._bias_field import monomial_basis, monomial_exponents


def site_effect(images_a, images_b, *, mask=None, degree: int = 2) -> dict[str, float]:
    """How far apart two image sets are voxel by voxel, and how smooth that difference is.

    At each voxel the standardised mean difference (Cohen's d: the
    difference of the two sets' means over their pooled standard
    deviation). With no site effect its root mean square is about
    ``sqrt(1 / n_a + 1 / n_b)`` (``noise_rms``) from sampling alone; the
    excess over it is the site's. A least-squares fit of the monomials of
    the voxel coordinates up to ``degree`` says which share of the effect's
    variance is a smooth field (a receive bias, a transmit field) and so
    could be undone by one (``itn_options={"bias_field": degree}``).

    Parameters
    ----------
    images_a, images_b : array-like, shape (n_a, C, *spatial) and (n_b, C, *spatial)
        The two sets (e.g. S2T and T), 2D or 3D, at least 2 images each.
    mask : array-like of bool, shape (*spatial), optional
        The voxels to compare, e.g. those inside every brain; by default
        every voxel whose pooled standard deviation is not 0.
    degree : int, default=2
        Highest total degree of the smooth field.

    Returns
    -------
    dict
        ``effect_rms`` (root mean square of d over the voxels), ``noise_rms``
        (its expected value without a site effect), ``excess_rms``
        (``sqrt(max(effect_rms² - noise_rms², 0))``) and ``smooth_share``
        (fraction of d's variance the smooth field explains, in [0, 1]).
    """
    a, b = (np.asarray(images, dtype=np.float64) for images in (images_a, images_b))
    if a.ndim not in (4, 5) or a.shape[1:] != b.shape[1:] or min(len(a), len(b)) < 2:
        raise ValueError(f"site_effect needs two (n, C, *spatial) sets of one image shape with "
                         f"at least 2 images each, got {a.shape} and {b.shape}")
    spatial = a.shape[2:]
    pooled_sd = np.sqrt(0.5 * (a.var(axis=0, ddof=1) + b.var(axis=0, ddof=1)))
    keep = pooled_sd > 0
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != spatial:
            raise ValueError(f"mask must have the images' spatial shape {spatial}, "
                             f"got {mask.shape}")
        keep &= mask[None]
    if keep.sum() <= len(monomial_exponents(len(spatial), degree)):
        raise ValueError("site_effect needs more voxels inside the mask than terms of the "
                         "smooth field")
    d = ((a.mean(axis=0) - b.mean(axis=0))[keep] / pooled_sd[keep])
    basis = monomial_basis(torch.zeros(1, 1, *spatial, dtype=torch.float64), degree).numpy()
    basis = np.broadcast_to(np.moveaxis(basis, 0, -1), (a.shape[1], *spatial, len(basis)))[keep]
    coefficients, *_ = np.linalg.lstsq(basis, d, rcond=None)
    residual = d - basis @ coefficients
    effect_rms = float(np.sqrt(np.mean(d**2)))
    noise_rms = float(np.sqrt(1 / len(a) + 1 / len(b)))
    return {"effect_rms": effect_rms, "noise_rms": noise_rms,
            "excess_rms": float(np.sqrt(max(effect_rms**2 - noise_rms**2, 0.0))),
            "smooth_share": float(max(0.0, 1 - residual.var() / d.var())) if d.var() else 0.0}
