"""Input checks shared by the estimators: image layout and source/target domains."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

SOURCE_DOMAIN = 1
TARGET_DOMAIN = -2
#: Fewest images a domain may have in ``fit``. With one image a domain has no
#: distribution to match: every batch repeats that image, and the batch-norm
#: statistics recomputed for ``transform`` are one image's own (per-image
#: normalisation, and an error wherever a layer is down to one value per channel).
MIN_DOMAIN_IMAGES = 2


@dataclass(frozen=True)
class ImageLayout:
    """How the user's array maps to ``(n, C, *spatial)`` images and back.

    Attributes
    ----------
    row_shape : tuple of int
        Shape of one row of the user's array (``X.shape[1:]``).
    channels : int
        Image channels.
    spatial : tuple of int
        Spatial shape (2 or 3 axes).
    """

    row_shape: tuple[int, ...]
    channels: int
    spatial: tuple[int, ...]

    def to_images(self, X: np.ndarray) -> np.ndarray:
        """Reshape rows to ``(n, C, *spatial)``."""
        return X.reshape(X.shape[0], self.channels, *self.spatial)

    def to_rows(self, images: np.ndarray) -> np.ndarray:
        """Reshape ``(n, C, *spatial)`` images back to the user's layout."""
        return images.reshape(images.shape[0], *self.row_shape)

    def check_matches(self, channels: int, spatial: tuple[int, ...], fitted_by: str) -> None:
        """Raise ``ValueError`` unless these images have the channels and shape seen in ``fit``."""
        if (self.channels, self.spatial) != (channels, tuple(spatial)):
            raise ValueError(
                f"X holds images with {self.channels} channel(s) of shape {self.spatial}, but "
                f"{fitted_by} was fitted on {channels} channel(s) of shape {tuple(spatial)}"
            )


def image_layout(X: np.ndarray, *, image_shape=None, spatial_dims=None) -> ImageLayout:
    """Read the image layout of a validated array ``X``.

    Rules, in order: with ``image_shape``, the trailing axes of ``X`` (or its
    flattened rows) hold images of that spatial shape and the rest are
    channels. Without it, 3-D is ``(n, H, W)``, 4-D is ``(n, C, H, W)`` (or
    ``(n, D, H, W)`` with ``spatial_dims=3``) and 5-D is ``(n, C, D, H, W)``;
    a 2-D ``X`` (flattened rows) is an error, as its rows could be images of
    any shape.

    Raises
    ------
    ValueError
        When the array cannot hold images of the requested shape, or ``X``
        is 2-D and ``image_shape`` is not given.
    """
    row_shape = tuple(X.shape[1:])
    if spatial_dims not in (None, 2, 3):
        raise ValueError(f"spatial_dims must be 2, 3 or None, got {spatial_dims!r}")
    if image_shape is not None:
        spatial = tuple(int(size) for size in np.atleast_1d(image_shape))
        if len(spatial) not in (2, 3) or min(spatial) < 1:
            raise ValueError(f"image_shape must list 2 or 3 positive sizes, got {image_shape!r}")
        if spatial_dims is not None and len(spatial) != spatial_dims:
            raise ValueError(
                f"image_shape={spatial} does not have spatial_dims={spatial_dims} axes")
        n_values = int(np.prod(row_shape))
        voxels = int(np.prod(spatial))
        if X.ndim > 2 and row_shape[-len(spatial):] != spatial:
            raise ValueError(f"X has images of shape {row_shape}, which does not end in "
                             f"image_shape={spatial}")
        if n_values % voxels:
            raise ValueError(f"X rows hold {n_values} values, not a whole number of images of "
                             f"shape {spatial}")
        return ImageLayout(row_shape, n_values // voxels, spatial)
    ndim = X.ndim
    if ndim == 2:
        raise ValueError(f"X is 2-D (shape {X.shape}): its rows are flattened images of "
                         "unknown shape; pass image_shape=(H, W) or (D, H, W), or give X as "
                         "(n, [C,] *spatial)")
    if ndim == 3:
        return ImageLayout(row_shape, 1, row_shape)
    if ndim == 4 and spatial_dims == 3:
        return ImageLayout(row_shape, 1, row_shape)
    if ndim == 4:
        return ImageLayout(row_shape, row_shape[0], row_shape[1:])
    if ndim == 5:
        return ImageLayout(row_shape, row_shape[0], row_shape[1:])
    raise ValueError(f"X must be 2-D to 5-D, (n, [C,] *spatial), got {ndim} dimensions "
                     f"(shape {X.shape})")


def source_mask(y=None, sample_domain=None, *, n_samples: int,
                min_per_domain: int = MIN_DOMAIN_IMAGES) -> np.ndarray:
    """Which rows are source rows, following skada's convention.

    ``sample_domain > 0`` marks source rows and ``< 0`` target rows. Without
    ``sample_domain``, masked labels mark the target: NaN for regression
    (float ``y`` containing NaN), -1 otherwise. Labels are read for nothing
    else.

    Parameters
    ----------
    y : array-like of shape (n_samples,), optional
    sample_domain : array-like of shape (n_samples,), optional
    n_samples : int
    min_per_domain : int, default=MIN_DOMAIN_IMAGES
        Fewest rows each domain must have (2 for fitting; scoring accepts 1).

    Returns
    -------
    ndarray of bool, shape (n_samples,)

    Raises
    ------
    ValueError
        When the domains cannot be told, there is no source or no target row,
        or a domain has fewer than ``min_per_domain`` rows.
    """
    if sample_domain is not None:
        domains = np.asarray(sample_domain).ravel()
        if domains.shape[0] != n_samples:
            raise ValueError(f"sample_domain has {domains.shape[0]} entries but X has "
                             f"{n_samples} rows")
        if not np.issubdtype(domains.dtype, np.number) or np.any(domains == 0) \
                or not np.all(np.isfinite(domains)):
            raise ValueError("sample_domain must hold non-zero numbers: > 0 for source rows, "
                             "< 0 for target rows")
        is_source = domains > 0
        how = "sample_domain"
    elif y is not None:
        labels = np.asarray(y).ravel()
        if labels.shape[0] != n_samples:
            raise ValueError(f"y has {labels.shape[0]} entries but X has {n_samples} rows")
        if np.issubdtype(labels.dtype, np.floating) and np.isnan(labels).any():
            is_source = ~np.isnan(labels)
        else:
            is_source = labels != -1
        how = "masked labels in y (-1, or NaN for regression)"
    else:
        raise ValueError("cannot tell source from target rows: pass sample_domain (> 0 source, "
                         "< 0 target) or y with target labels masked as -1 (NaN for regression)")
    if not is_source.any():
        raise ValueError(f"no source rows: every row is marked as target by {how}")
    if is_source.all():
        raise ValueError(f"no target rows: no row is marked as target by {how}")
    for domain, rows in (("source", is_source), ("target", ~is_source)):
        if rows.sum() < min_per_domain:
            raise ValueError(
                f"the {domain} domain has {int(rows.sum())} image (row "
                f"{int(np.flatnonzero(rows)[0])}, as told by {how}); at least "
                f"{min_per_domain} images per domain are needed")
    return is_source


def check_finite(X, *, name: str = "X") -> None:
    """Raise ``ValueError`` counting the NaN and infinite values of ``X``, if it has any.

    Parameters
    ----------
    X : array-like
        Numeric values; other arrays (text, objects) are left to later checks.
    name : str, default="X"
        How the message names the array.

    Raises
    ------
    ValueError
        When ``X`` holds NaN or infinite values; the message gives how many
        of each and the first row holding one.
    """
    array = np.asarray(X)
    if not np.issubdtype(array.dtype, np.number):
        return
    bad = ~np.isfinite(array)
    if bad.any():
        rows = bad.reshape(bad.shape[0], -1).any(axis=1) if bad.ndim > 1 else bad
        raise ValueError(
            f"{name} holds {int(np.isnan(array).sum())} NaN and {int(np.isinf(array).sum())} "
            f"infinite values ({int(bad.sum())} non-finite, in {int(rows.sum())} row(s), the "
            f"first row {int(np.flatnonzero(rows)[0])}); images must be finite")


def warn_if_out_of_range(X: np.ndarray) -> None:
    """Warn (for the caller of ``fit``) when ``X`` leaves [-1, 1], the range the ITN outputs."""
    low, high = float(X.min()), float(X.max())
    if low < -1.0 - 1e-6 or high > 1.0 + 1e-6:
        warnings.warn(
            f"X holds values in [{low:.3g}, {high:.3g}], outside [-1, 1]; the ITN outputs "
            "(-1, 1), so scale images first (e.g. with tanh or min-max scaling)",
            UserWarning, stacklevel=3,
        )
