"""Classical intensity normalisation and feature harmonisation baselines, as transformers.

What a neuroimaging user reaches for before an ISTN, on the same arrays:

* :class:`ZScoreNormaliser`: each image z-scored inside its brain mask.
* :class:`WhiteStripeNormaliser`: each image standardised by its
  normal-appearing white matter (Shinohara et al. 2014).
* :class:`NyulNormaliser`: piecewise-linear histogram standardisation onto a
  landmark scale learned from training images (Nyúl & Udupa 1999; Nyúl,
  Udupa & Zhang 2000).
* :class:`ComBatHarmoniser`: empirical-Bayes ComBat on a feature matrix
  (Johnson et al. 2007; Fortin et al. 2018), keeping covariate effects.

The image normalisers are our own implementations (no extra dependency);
their results were checked against the ``intensity-normalization`` package
(3.0.1) in ``tests/test_normalisation.py``, which skips those checks when
the package is missing.

Images, masks and the value range
---------------------------------
Images are arrays ``(n, C, H, W)`` or ``(n, C, D, H, W)``; every channel of
every image is normalised on its own. The foreground of image ``i`` is
``mask[i]`` when a ``mask`` (bool, broadcastable to ``X``: one
``(*spatial)`` mask for all, or ``(n, 1, *spatial)`` per image) is passed to
``fit``/``transform``/``fit_transform``; otherwise the voxels that differ
from ``background`` (default 0, the background of
:func:`istn_sk.datasets.simulate_brain_sites`), or every voxel when
``background=None``. Voxels outside the foreground are returned unchanged.

With ``squash="tanh"`` (the default) inputs are read as ``tanh`` of the
intensities, the convention of the library's brain data (``tanh`` of images
standardised inside the mask), so values are un-squashed with ``arctanh``
(clipped to ``1 - 1e-6`` in magnitude), normalised, and squashed back with
``tanh``: the output stays in (-1, 1). With ``squash=None`` values are
normalised as given and returned unbounded (e.g. plain z-scores), for images
scaled linearly.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

from ._combat import ComBatHarmoniser
from ._intensity import _MIN_SD, _ImageNormaliser

__all__ = [
    "ComBatHarmoniser",
    "NyulNormaliser",
    "WhiteStripeNormaliser",
    "ZScoreNormaliser",
]

class ZScoreNormaliser(_ImageNormaliser):
    """Per-image z-score inside the foreground: ``z = (x - mean) / sd``.

    The output is ``tanh(z)`` (``squash="tanh"``), so ``arctanh`` of the
    output has mean 0 and standard deviation 1 inside each image's mask; or
    ``z`` itself (``squash=None``). A foreground of constant value maps to
    0 (its sd is floored at 1e-6). ``fit`` learns nothing.

    The simulated brain sites are already standardised this way before
    their ``tanh``, so on them this normaliser is the identity (up to the
    ``arctanh`` clipping): it is the "per-image z-score" row of a baseline
    table, not a harmonisation.

    Parameters
    ----------
    background : float or None, default=0.0
        Value of the background voxels when no ``mask`` is passed (None:
        every voxel is foreground).
    squash : {"tanh", None}, default="tanh"
        How values relate to intensities (see the module's docstring).

    Attributes
    ----------
    n_features_in_ : int
        Channels of the images seen in ``fit``.
    """

    def _normalise(self, values: np.ndarray) -> np.ndarray:
        return (values - values.mean()) / max(float(values.std()), _MIN_SD)


class WhiteStripeNormaliser(_ImageNormaliser):
    """WhiteStripe: standardise each image by its normal-appearing white matter.

    Following Shinohara et al. (2014), per image channel: the mode is
    searched among the foreground values (for T1 those above their mean, as
    the WhiteStripe R package does) below their ``tail`` quantile, binned
    into ``bins`` bins and smoothed by a Gaussian of ``smooth`` bins; the
    white-matter mode is the last (brightest) interior peak whose prominence
    is at least ``min_prominence`` times the highest smoothed bin
    (``contrast="T1"``; the highest bin if there is none), or the highest
    bin (``contrast="T2"`` and ``"FLAIR"``).
    The stripe is the foreground values whose quantiles lie within ``tau``
    of the mode's quantile; with its mean ``mu`` and sd ``sigma``, the
    WhiteStripe value is ``w = (x - mu) / sigma``. The output is
    ``stripe_value + stripe_scale * w`` (then ``tanh`` with
    ``squash="tanh"``): the stripe's mean maps to ``stripe_value``
    (``tanh(stripe_value)`` after squashing) and one stripe sd to
    ``stripe_scale``. ``stripe_value=0, stripe_scale=1, squash=None`` is
    the textbook ``(x - mu) / sigma``. The defaults keep the units of a
    per-image z-score on the simulated brain sites (their white matter sits
    near z = 1.5 and its stripe sd is about 0.1 of the brain's sd at 32^3),
    so the ``tanh`` does not flatten the darker tissues. ``fit`` learns nothing.

    Checked against ``intensity_normalization.WhiteStripeNormalizer``
    (a KDE rather than a smoothed histogram) in the tests: the same stripe
    mean and sd within a few percent of the stripe's spread.

    Parameters
    ----------
    tau : float, default=0.05
        Half-width of the stripe in quantiles, in (0, 0.5).
    contrast : {"T1", "T2", "FLAIR"}, default="T1"
    stripe_value : float, default=1.5
    stripe_scale : float, default=0.1
        Must be positive.
    bins : int, default=200
    smooth : float, default=3.0
        Gaussian sigma of the histogram smoothing, in bins (0: none).
    tail : float, default=0.99
        Quantile above which values are ignored when finding the mode.
    min_prominence : float, default=0.05
        Smallest peak prominence counted as a tissue mode, relative to the
        highest smoothed bin.
    background, squash
        As in :class:`ZScoreNormaliser`.

    Attributes
    ----------
    n_features_in_ : int
        Channels of the images seen in ``fit``.
    """

    def __init__(self, tau: float = 0.05, contrast: str = "T1", stripe_value: float = 1.5,
                 stripe_scale: float = 0.1, bins: int = 200, smooth: float = 3.0,
                 tail: float = 0.99, min_prominence: float = 0.05, *,
                 background: float | None = 0.0, squash: str | None = "tanh") -> None:
        super().__init__(background=background, squash=squash)
        self.tau = tau
        self.contrast = contrast
        self.stripe_value = stripe_value
        self.stripe_scale = stripe_scale
        self.bins = bins
        self.smooth = smooth
        self.tail = tail
        self.min_prominence = min_prominence

    def _check_params(self) -> None:
        super()._check_params()
        if not 0 < self.tau < 0.5:
            raise ValueError(f"tau must be in (0, 0.5), got {self.tau!r}")
        if self.contrast not in ("T1", "T2", "FLAIR"):
            raise ValueError(f"contrast must be 'T1', 'T2' or 'FLAIR', got {self.contrast!r}")
        if not self.stripe_scale > 0:
            raise ValueError(f"stripe_scale must be positive, got {self.stripe_scale!r}")
        if isinstance(self.bins, bool) or not isinstance(self.bins, (int, np.integer)) \
                or self.bins < 3:
            raise ValueError(f"bins must be an int >= 3, got {self.bins!r}")
        if not self.smooth >= 0:
            raise ValueError(f"smooth must be >= 0, got {self.smooth!r}")
        if not 0 < self.tail <= 1:
            raise ValueError(f"tail must be in (0, 1], got {self.tail!r}")
        if not 0 <= self.min_prominence < 1:
            raise ValueError(f"min_prominence must be in [0, 1), got {self.min_prominence!r}")

    def white_matter_mode(self, values: np.ndarray) -> float:
        """The white-matter mode of one image's foreground values (in un-squashed units).

        Parameters
        ----------
        values : ndarray, shape (m,)

        Returns
        -------
        float
        """
        values = np.asarray(values, np.float64).ravel()
        if self.contrast == "T1":
            values = values[values > values.mean()] if np.ptp(values) > 0 else values
        kept = values[values <= np.quantile(values, self.tail)]
        counts, edges = np.histogram(kept, bins=self.bins)
        density = counts.astype(np.float64)
        if self.smooth:
            density = ndimage.gaussian_filter1d(density, self.smooth, mode="nearest")
        centres = (edges[:-1] + edges[1:]) / 2
        if self.contrast == "T1":
            peaks, _ = signal.find_peaks(density, prominence=self.min_prominence * density.max())
            if len(peaks):
                return float(centres[peaks[-1]])
        return float(centres[np.argmax(density)])

    def stripe(self, values: np.ndarray) -> tuple[float, float]:
        """Mean and sd of one image's white stripe (in un-squashed units).

        Parameters
        ----------
        values : ndarray, shape (m,)
            Foreground values.

        Returns
        -------
        mean, sd : float
        """
        values = np.asarray(values, np.float64).ravel()
        quantile = float(np.mean(values < self.white_matter_mode(values)))
        low, high = np.quantile(values, (max(quantile - self.tau, 0.0),
                                         min(quantile + self.tau, 1.0)))
        stripe = values[(values >= low) & (values <= high)]
        return float(stripe.mean()), max(float(stripe.std()), _MIN_SD)

    def _normalise(self, values: np.ndarray) -> np.ndarray:
        mean, sd = self.stripe(values)
        return self.stripe_value + self.stripe_scale * (values - mean) / sd


class NyulNormaliser(_ImageNormaliser):
    """Nyúl-Udupa piecewise-linear histogram standardisation onto a learned landmark scale.

    ``fit`` computes, for each training image channel, the landmarks
    ``np.percentile(foreground, percentiles)``, maps them linearly so that
    the first and last landmarks land on ``standard_range`` and averages
    them over the training images: that is ``standard_scale_``.
    ``transform`` maps each image's landmarks onto ``standard_scale_``,
    linearly between consecutive landmarks and by the end segments' lines
    beyond the first and last (as ``intensity_normalization.NyulNormalizer``
    does; the tests check that both give the same standard scale and
    output). It is monotone, and every image's landmarks map exactly onto
    ``standard_scale_``. ``standard_range=None`` takes the mean first and
    last landmarks of the training images, so that fitting on the target
    site's images maps other images into the target's own units.

    Parameters
    ----------
    percentiles : sequence of float, default=(1, 10, 20, ..., 90, 99)
        Increasing, in [0, 100]; at least two.
    standard_range : (float, float) or None, default=None
        Where the first and last landmarks go (un-squashed units).
    background, squash
        As in :class:`ZScoreNormaliser`.

    Attributes
    ----------
    standard_scale_ : ndarray, shape (len(percentiles),)
        The standard landmarks (un-squashed units).
    n_features_in_ : int
        Channels of the images seen in ``fit``.
    """

    def __init__(self, percentiles=(1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99),
                 standard_range: tuple[float, float] | None = None, *,
                 background: float | None = 0.0, squash: str | None = "tanh") -> None:
        super().__init__(background=background, squash=squash)
        self.percentiles = percentiles
        self.standard_range = standard_range

    def _check_params(self) -> None:
        super()._check_params()
        percentiles = np.asarray(self.percentiles, np.float64)
        if percentiles.ndim != 1 or len(percentiles) < 2 or np.any(np.diff(percentiles) <= 0) \
                or percentiles[0] < 0 or percentiles[-1] > 100:
            raise ValueError(f"percentiles must be at least two increasing values in [0, 100], "
                             f"got {self.percentiles!r}")
        if self.standard_range is not None:
            low, high = (float(v) for v in self.standard_range)
            if not low < high:
                raise ValueError(f"standard_range must be (low, high) with low < high, got "
                                 f"{self.standard_range!r}")

    def landmarks(self, values: np.ndarray) -> np.ndarray:
        """The landmarks of one image's foreground values (un-squashed units).

        Parameters
        ----------
        values : ndarray, shape (m,)

        Returns
        -------
        ndarray, shape (len(percentiles),)
        """
        return np.percentile(np.asarray(values, np.float64), np.asarray(self.percentiles, float))

    def _learn(self, values: np.ndarray, keep: np.ndarray) -> None:
        marks = np.array([self.landmarks(inside) for _, inside in self._foregrounds(values, keep)])
        if not len(marks):
            raise ValueError("NyulNormaliser.fit needs foreground voxels; every mask is empty")
        if self.standard_range is None:
            low, high = marks[:, 0].mean(), marks[:, -1].mean()
        else:
            low, high = (float(v) for v in self.standard_range)
        spans = np.maximum(marks[:, -1] - marks[:, 0], _MIN_SD)
        scaled = low + (marks - marks[:, :1]) / spans[:, None] * (high - low)
        self.standard_scale_ = scaled.mean(axis=0)

    def _normalise(self, values: np.ndarray) -> np.ndarray:
        return self._piecewise(values, self.landmarks(values))

    def _piecewise(self, values: np.ndarray, marks: np.ndarray) -> np.ndarray:
        """Map ``values`` by the piecewise-linear map taking ``marks`` to the standard scale."""
        marks = _increasing(marks)
        scale = self.standard_scale_
        result = np.interp(values, marks, scale)
        for below, (i, j) in ((values < marks[0], (0, 1)), (values > marks[-1], (-2, -1))):
            slope = (scale[j] - scale[i]) / (marks[j] - marks[i])
            result[below] = scale[i] + slope * (values[below] - marks[i])
        return result


def _increasing(marks: np.ndarray) -> np.ndarray:
    """Landmarks made strictly increasing (ties, e.g. from few voxels, spread by 1e-9)."""
    marks = marks.copy()
    for i in range(1, len(marks)):
        marks[i] = max(marks[i], marks[i - 1] + 1e-9 * max(1.0, abs(marks[i - 1])))
    return marks
