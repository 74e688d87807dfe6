"""What the image normalisers of :mod:`istn_sk.normalisation` share: validation, masks, tanh."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

_EDGE = 1e-6
_MIN_SD = 1e-6


class _ImageNormaliser(TransformerMixin, BaseEstimator):
    """Shared plumbing: validation, foreground, squashing, per-image loop."""

    def __init__(self, *, background: float | None = 0.0, squash: str | None = "tanh") -> None:
        self.background = background
        self.squash = squash

    def _check_params(self) -> None:
        if self.squash not in ("tanh", None):
            raise ValueError(f"squash must be 'tanh' or None, got {self.squash!r}")
        if self.background is not None and not np.isfinite(self.background):
            raise ValueError(f"background must be a finite number or None, got "
                             f"{self.background!r}")

    def _images(self, X, mask, *, reset: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated images (float), their un-squashed values and the foreground."""
        X = validate_data(self, X, reset=reset, allow_nd=True, dtype=[np.float64, np.float32],
                          ensure_min_features=1)
        if X.ndim not in (4, 5):
            raise ValueError(f"X must be images of shape (n, C, H, W) or (n, C, D, H, W), "
                             f"got an array of shape {X.shape}")
        if min(X.shape[1:]) == 0:
            raise ValueError(f"X's images have no voxels (shape {X.shape})")
        if mask is None:
            keep = (np.ones(X.shape, bool) if self.background is None
                    else X != self.background)
        else:
            mask = np.asarray(mask)
            if mask.dtype != bool:
                raise ValueError(f"mask must be a bool array, got dtype {mask.dtype}")
            try:
                keep = np.broadcast_to(mask, X.shape)
            except ValueError:
                raise ValueError(f"mask of shape {mask.shape} does not broadcast to the images' "
                                 f"shape {X.shape}; pass (*spatial) or (n, 1, *spatial)") from None
        values = X.astype(np.float64)
        if self.squash == "tanh":
            values = np.arctanh(np.clip(values, -1 + _EDGE, 1 - _EDGE))
        return X, values, keep

    def _output(self, X: np.ndarray, values: np.ndarray, keep: np.ndarray) -> np.ndarray:
        if self.squash == "tanh":
            values = np.tanh(values)
        return np.where(keep, values, X).astype(X.dtype, copy=False)

    def _foregrounds(self, values: np.ndarray, keep: np.ndarray):
        """Yield ``(index, foreground values)`` per image channel that has a foreground."""
        for index in np.ndindex(*values.shape[:2]):
            inside = keep[index]
            if inside.any():
                yield index, values[index][inside]

    def fit(self, X, y=None, *, mask=None):
        """Check the parameters and images (and learn what the normaliser learns).

        Parameters
        ----------
        X : array-like, shape (n, C, H, W) or (n, C, D, H, W)
        y : ignored
        mask : array-like of bool, optional
            Foreground, broadcastable to ``X``.

        Returns
        -------
        self
        """
        self._check_params()
        X, values, keep = self._images(X, mask, reset=True)
        self._learn(values, keep)
        return self

    def _learn(self, values: np.ndarray, keep: np.ndarray) -> None:
        """Stateless by default."""

    def transform(self, X, *, mask=None) -> np.ndarray:
        """Normalise each image channel inside its foreground.

        Parameters
        ----------
        X : array-like, shape (n, C, H, W) or (n, C, D, H, W)
        mask : array-like of bool, optional
            Foreground, broadcastable to ``X``.

        Returns
        -------
        ndarray, X's shape (and float dtype)
        """
        check_is_fitted(self)
        X, values, keep = self._images(X, mask, reset=False)
        result = values.copy()
        for index, inside in self._foregrounds(values, keep):
            result[index][keep[index]] = self._normalise(inside)
        return self._output(X, result, keep)

    def fit_transform(self, X, y=None, *, mask=None) -> np.ndarray:
        """``fit(X, mask=mask).transform(X, mask=mask)``."""
        return self.fit(X, y, mask=mask).transform(X, mask=mask)

    def _normalise(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
