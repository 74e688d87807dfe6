"""How well images are harmonised, without a task model: the measures reviewers ask for.

* :func:`site_classification_score`: can a fresh classifier still tell two
  image sets apart? Balanced accuracy near 0.5 (and a large permutation
  p-value) means the site is no longer visible.
* :func:`multi_site_classification_score`: the same question for any number
  of sites at once; balanced accuracy near ``1 / n_sites`` means no site is
  visible.
* :func:`intensity_distance`: Wasserstein distance between the intensity
  distributions of two image sets.
* :func:`paired_similarity`: MAE, PSNR, SSIM (scikit-image's) and correlation of each
  image against its paired ground truth (travelling subjects: the same
  subject at the target site), optionally inside a mask.
* :func:`site_effect`: the voxel-wise standardised difference between two
  image sets, against what sampling alone gives, and the share of it that
  is a smooth field (a bias field an ISTN's ``bias_field`` can undo).
* :func:`jacobian_determinant` and :func:`folding_fraction`: how a
  displacement field (``ISTNAdapter.explain(X)["displacement"]``) changes
  local volume, and where it folds space.

Image sets are arrays ``(n, C, *spatial)``, 2D or 3D, as the estimators take
them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, permutation_test_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ._site_effect import site_effect

__all__ = [
    "folding_fraction",
    "intensity_distance",
    "jacobian_determinant",
    "multi_site_classification_score",
    "paired_similarity",
    "site_classification_score",
    "site_effect",
]


def site_classification_score(images_a, images_b, *, pool: int = 4, cv: int = 5,
                              n_permutations: int = 100,
                              random_state: int | None = 0) -> dict[str, float]:
    """Cross-validated balanced accuracy of a linear classifier telling two image sets apart.

    The images are average-pooled by ``pool`` along every spatial axis,
    standardised and classified by an L2 logistic regression; a permutation
    test (labels shuffled ``n_permutations`` times) gives the p-value of the
    score against chance.

    Parameters
    ----------
    images_a, images_b : array-like, shape (n_a, C, *spatial) and (n_b, C, *spatial)
        The two sets, e.g. S2T and T, with the same image shape.
    pool : int, default=4
        Pooling factor per spatial axis (1 keeps every voxel).
    cv : int, default=5
        Stratified folds.
    n_permutations : int, default=100
    random_state : int or None, default=0
        Seeds the folds and the permutations.

    Returns
    -------
    dict
        ``balanced_accuracy`` (0.5 is chance), ``p_value`` and
        ``permutation_mean`` (the mean score under shuffled labels).
    """
    a, b = _pair_of_sets(images_a, images_b)
    features = np.concatenate([_pooled(a, pool), _pooled(b, pool)])
    labels = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
    if min(len(a), len(b)) < cv:
        raise ValueError(f"site_classification_score needs at least cv={cv} images per set, "
                         f"got {len(a)} and {len(b)}")
    score, permuted, p_value = permutation_test_score(
        _linear_classifier(), features, labels, scoring="balanced_accuracy",
        cv=StratifiedKFold(cv, shuffle=True, random_state=random_state),
        n_permutations=n_permutations, random_state=random_state,
    )
    return {"balanced_accuracy": float(score), "p_value": float(p_value),
            "permutation_mean": float(np.mean(permuted))}


def multi_site_classification_score(images, sites, *, pool: int = 4, cv: int = 5,
                                    random_state: int | None = 0) -> dict[str, float]:
    """Cross-validated balanced accuracy of a linear classifier telling any number of sites apart.

    The features and the classifier are those of
    :func:`site_classification_score` (average pooling by ``pool`` along every
    spatial axis, standardisation, L2 logistic regression, here multinomial),
    scored by stratified ``cv``-fold cross-validation. Balanced accuracy is
    the mean over sites of the fraction of a site's images given to that
    site, so unequal site sizes do not move chance away from ``1 / n_sites``.
    No permutation test: compare with ``chance``.

    Parameters
    ----------
    images : array-like, shape (n, C, *spatial)
        Every site's images (2D or 3D), e.g. the mapped images of each source
        site and the target's.
    sites : array-like, shape (n,)
        The site of each image (any labels: ints, names).
    pool : int, default=4
        Pooling factor per spatial axis (1 keeps every voxel).
    cv : int, default=5
        Stratified folds; every site needs at least ``cv`` images.
    random_state : int or None, default=0
        Seeds the folds.

    Returns
    -------
    dict
        ``balanced_accuracy`` (mean of the ``cv`` folds' scores), ``chance``
        (``1 / n_sites``) and ``n_sites``.

    Raises
    ------
    ValueError
        If ``images`` is not one finite ``(n, C, *spatial)`` array, ``sites``
        is not one label per image, there are fewer than two sites, or a
        site has fewer than ``cv`` images.
    """
    images = _image_set(images, "images")
    sites = np.asarray(sites)
    if sites.ndim != 1 or len(sites) != len(images):
        raise ValueError(f"sites must hold one label per image: {len(images)} images, got "
                         f"sites of shape {sites.shape}")
    names, counts = np.unique(sites, return_counts=True)
    if len(names) < 2:
        raise ValueError(f"multi_site_classification_score needs at least 2 sites, got "
                         f"{names.tolist()}")
    if counts.min() < cv:
        small = {str(name): int(count) for name, count in zip(names, counts, strict=True)
                 if count < cv}
        raise ValueError(f"multi_site_classification_score needs at least cv={cv} images per "
                         f"site; fewer: {small}")
    scores = cross_val_score(_linear_classifier(), _pooled(images, pool), sites,
                             scoring="balanced_accuracy",
                             cv=StratifiedKFold(cv, shuffle=True, random_state=random_state))
    return {"balanced_accuracy": float(np.mean(scores)), "chance": 1.0 / len(names),
            "n_sites": len(names)}


def intensity_distance(images_a, images_b, *, mask_a=None, mask_b=None) -> float:
    """1-D Wasserstein distance between the voxel intensities of two image sets.

    Parameters
    ----------
    images_a, images_b : array-like
        Image sets (any shapes); all their voxels are pooled.
    mask_a, mask_b : array-like of bool, optional
        Voxels to keep, broadcastable to each set (e.g. brain masks).

    Returns
    -------
    float
        In intensity units; 0 for identical distributions.
    """
    values = []
    for images, mask, name in ((images_a, mask_a, "images_a"), (images_b, mask_b, "images_b")):
        images = _finite(images, name)
        if mask is None:
            kept = images.ravel()
        else:
            kept = images[np.broadcast_to(np.asarray(mask, bool), images.shape)]
        if kept.size == 0:
            raise ValueError(f"the mask of {name} keeps no voxel")
        values.append(kept)
    return float(stats.wasserstein_distance(*values))


def paired_similarity(images, references, *, data_range: float = 2.0, sigma: float = 1.5,
                      mask=None) -> pd.DataFrame:
    """MAE, PSNR, SSIM and correlation of each image against its paired reference.

    PSNR and SSIM are scikit-image's (:func:`skimage.metrics.peak_signal_noise_ratio`
    and :func:`skimage.metrics.structural_similarity`); SSIM follows Wang et
    al. (2004): a Gaussian window of ``sigma`` voxels (truncated at 3.5
    sigma, so 11 voxels wide for the default), population covariances,
    ``K1, K2 = 0.01, 0.03``, the SSIM map averaged away from the image
    borders (half a window) and over channels.

    With ``mask``, voxels outside it do not count, so a zero (or any)
    background does not inflate the scores: MAE and PSNR are computed over
    the masked voxels, and SSIM is the SSIM map averaged over the masked
    voxels (away from the borders), the map being computed with the image's
    voxels outside the mask replaced by the reference's, so a difference
    outside the mask does not leak into windows that straddle its edge.

    MAE, PSNR and SSIM reward an output whose contrast is shrunk towards a
    constant (two flat images are close in all three, and SSIM's constants
    then dominate); the Pearson ``correlation`` of the compared voxels does
    not change under any increasing affine map of either image's
    intensities, so a method cannot raise it by flattening its images.

    Parameters
    ----------
    images, references : array-like, shape (n, C, *spatial)
        Row ``i`` of ``images`` (e.g. S2T of a travelling subject's source
        scan) is compared with row ``i`` of ``references`` (the same
        subject's target scan).
    data_range : float, default=2.0
        Intensity range, 2 for images in [-1, 1].
    sigma : float, default=1.5
        Width of the SSIM window; every spatial side must be at least the
        window's size.
    mask : array-like of bool, optional
        Voxels to compare, broadcastable to ``images``' shape: one
        ``(*spatial)`` mask for every pair, or ``(n, 1, *spatial)`` per pair
        (e.g. brain masks). Every pair's mask must keep a voxel at least half
        a window from the borders.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``mae``, ``psnr`` (dB; inf for identical images),
        ``ssim`` (1 for identical images), ``correlation`` (Pearson's r of the
        compared voxels; 1 for identical images, nan when either is constant).
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    images, references = _pair_of_sets(images, references, paired=True)
    spatial = images.shape[2:]
    window = 2 * int(3.5 * sigma + 0.5) + 1
    if min(spatial) < window:
        raise ValueError(f"SSIM's window with sigma={sigma} is {window} voxels wide; images of "
                         f"spatial shape {spatial} are smaller (lower sigma)")
    keep = None if mask is None else np.broadcast_to(np.asarray(mask, bool), images.shape)
    interior = np.zeros(images.shape[1:], bool)
    interior[(slice(None), *[slice(window // 2, size - window // 2) for size in spatial])] = True
    options = {"data_range": data_range, "gaussian_weights": True, "sigma": sigma,
               "use_sample_covariance": False, "win_size": window, "channel_axis": 0}
    rows = []
    for i, (image, reference) in enumerate(zip(images, references, strict=True)):
        inside = None if keep is None else keep[i]
        if inside is not None and not (inside & interior).any():
            raise ValueError(f"the mask of pair {i} keeps no voxel at least {window // 2} "
                             "voxels from the borders")
        if inside is None:
            ssim = structural_similarity(image, reference, **options)
            compared, truth = image, reference
        else:
            ssim_map = structural_similarity(np.where(inside, image, reference), reference,
                                             full=True, **options)[1]
            ssim = ssim_map[inside & interior].mean()
            compared, truth = image[inside], reference[inside]
        with np.errstate(divide="ignore"):
            psnr = peak_signal_noise_ratio(truth, compared, data_range=data_range)
        rows.append({"mae": float(np.mean(np.abs(compared - truth))), "psnr": float(psnr),
                     "ssim": float(ssim), "correlation": _correlation(compared, truth)})
    return pd.DataFrame(rows)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two equal-sized voxel sets (nan when either is constant)."""
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    norm = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / norm) if norm > 0 else float("nan")


def jacobian_determinant(displacement) -> np.ndarray:
    """Jacobian determinant of ``x -> x + u(x)`` for voxel displacement fields.

    Parameters
    ----------
    displacement : array-like, shape (n, D, *spatial)
        Displacements in voxels, channel ``i`` along spatial axis ``i``
        (what ``ISTNAdapter.explain`` returns), D = 2 or 3.

    Returns
    -------
    ndarray, shape (n, *spatial)
        1 where volume is kept, > 1 where it grows, <= 0 where space folds.
        Derivatives are central differences (one-sided at the borders).
    """
    field = _finite(displacement, "displacement")
    if field.ndim < 4 or field.shape[1] != field.ndim - 2 or field.shape[1] not in (2, 3):
        raise ValueError(f"displacement must have shape (n, D, *spatial) with D = 2 or 3 "
                         f"spatial axes, got {field.shape}")
    dims = field.shape[1]
    jacobian = np.empty((field.shape[0], *field.shape[2:], dims, dims))
    for i in range(dims):
        for j, derivative in enumerate(np.gradient(field[:, i], axis=tuple(range(1, dims + 1)))):
            jacobian[..., i, j] = derivative + (i == j)
    return np.linalg.det(jacobian)


def folding_fraction(displacement) -> np.ndarray:
    """Fraction of each field's voxels where space folds (Jacobian determinant <= 0).

    Parameters
    ----------
    displacement : array-like, shape (n, D, *spatial)

    Returns
    -------
    ndarray, shape (n,)
    """
    determinant = jacobian_determinant(displacement)
    return (determinant <= 0).reshape(len(determinant), -1).mean(axis=1)


def _linear_classifier():
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))


def _pooled(images: np.ndarray, pool: int) -> np.ndarray:
    if pool < 1:
        raise ValueError(f"pool must be a positive integer, got {pool!r}")
    spatial = images.shape[2:]
    cropped = images[(slice(None), slice(None),
                      *(slice(0, size - size % pool) for size in spatial))]
    shape = [images.shape[0], images.shape[1]]
    for size in cropped.shape[2:]:
        shape += [size // pool, pool]
    pooled = cropped.reshape(shape).mean(axis=tuple(range(3, len(shape), 2)))
    return pooled.reshape(len(images), -1)


def _pair_of_sets(a, b, paired: bool = False) -> tuple[np.ndarray, np.ndarray]:
    a, b = _finite(a, "first image set"), _finite(b, "second image set")
    if a.ndim not in (4, 5) or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"image sets must be (n, C, *spatial) arrays of one image shape, got "
                         f"{a.shape} and {b.shape}")
    if paired and len(a) != len(b):
        raise ValueError(f"paired image sets need as many rows, got {len(a)} and {len(b)}")
    return a, b


def _image_set(values, name: str) -> np.ndarray:
    array = _finite(values, name)
    if array.ndim not in (4, 5):
        raise ValueError(f"{name} must be an (n, C, *spatial) array with 2 or 3 spatial axes, "
                         f"got shape {array.shape}")
    return array


def _finite(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return array
