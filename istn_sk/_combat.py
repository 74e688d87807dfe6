"""ComBat harmonisation of a feature matrix (our implementation, checked against neuroCombat)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


class ComBatHarmoniser(TransformerMixin, BaseEstimator):
    """Empirical-Bayes ComBat: remove per-site location and scale from each feature.

    Our own implementation of Johnson, Li & Rabinovic (2007) as adapted to
    neuroimaging by Fortin et al. (2018), following neuroCombat 0.2.12
    (the package behind neuroHarmonize): per feature ``g``, the model
    ``x_ig = alpha_g + c_i beta_g + gamma_sg + delta_sg e_ig`` for subject
    ``i`` at site ``s`` with covariates ``c_i``. ``fit`` estimates
    ``alpha``, ``beta`` and the site effects by least squares on the design
    ``[one-hot sites, covariates]``, pools the residual variance, and
    shrinks the standardised site means and variances towards priors shared
    by all features (parametric empirical Bayes: normal prior on ``gamma``,
    inverse-gamma on ``delta**2``, iterated to a relative change < ``tol``).
    ``transform`` removes the fitted site effects and keeps ``alpha +
    c_i beta``, so covariate effects (e.g. age, sex) survive.
    ``tests/test_normalisation.py`` checks the output against
    ``neuroCombat.neuroCombat`` when that package is installed (it is not a
    dependency; neuroHarmonize pins ``numpy < 2``).

    Parameters
    ----------
    empirical_bayes : bool, default=True
        Shrink the site effects (False: use each feature's own estimates).
    mean_only : bool, default=False
        Correct the site means only (variances kept).
    reference_site : object, optional
        A site whose data are left unchanged: the others are mapped onto
        its mean and variance (neuroCombat's ``ref_batch``).
    tol : float, default=1e-4
    max_iter : int, default=1000

    Attributes
    ----------
    sites_ : ndarray
        The site labels seen in ``fit``, sorted.
    grand_mean_ : ndarray, shape (n_features,)
    coef_ : ndarray, shape (n_covariates, n_features)
        Covariate effects ``beta``.
    var_pooled_ : ndarray, shape (n_features,)
    gamma_ : ndarray, shape (n_sites, n_features)
        Site location effects (standardised units), after shrinkage.
    delta_ : ndarray, shape (n_sites, n_features)
        Site variance factors, after shrinkage.
    n_iter_ : int
        Empirical-Bayes iterations run (0 without them).
    n_features_in_ : int
    """

    def __init__(self, empirical_bayes: bool = True, mean_only: bool = False,
                 reference_site=None, tol: float = 1e-4, max_iter: int = 1000) -> None:
        self.empirical_bayes = empirical_bayes
        self.mean_only = mean_only
        self.reference_site = reference_site
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y=None, *, sites, covariates=None):
        """Estimate the site effects.

        Parameters
        ----------
        X : array-like, shape (n, n_features)
        y : ignored
        sites : array-like, shape (n,)
            Site of each row; every site needs at least two rows.
        covariates : array-like, shape (n, n_covariates) or (n,), optional
            Numeric effects to keep (encode categories, e.g. sex as 0/1).

        Returns
        -------
        self
        """
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol!r}")
        X = validate_data(self, X, dtype=np.float64)
        codes, covariates = self._design(X, sites, covariates, fitting=True)
        onehot = np.eye(len(self.sites_))[codes]
        design = np.hstack([onehot, covariates])
        coef = np.linalg.lstsq(design, X, rcond=None)[0]
        self.coef_ = coef[len(self.sites_):]
        residual = X - design @ coef
        counts = onehot.sum(axis=0)
        if self.reference_site is None:
            self.grand_mean_ = counts / len(X) @ coef[:len(self.sites_)]
            self.var_pooled_ = np.mean(residual ** 2, axis=0)
        else:
            ref = self._reference
            self.grand_mean_ = coef[ref]
            self.var_pooled_ = np.mean(residual[codes == ref] ** 2, axis=0)
        self.var_pooled_ = np.maximum(self.var_pooled_, 1e-12)
        standard = self._standardised(X, covariates)
        gamma = np.array([standard[codes == k].mean(axis=0) for k in range(len(self.sites_))])
        delta = np.array([standard[codes == k].var(axis=0, ddof=1)
                          for k in range(len(self.sites_))])
        delta = np.ones_like(delta) if self.mean_only else np.maximum(delta, 1e-12)
        self.n_iter_ = 0
        if self.empirical_bayes:
            gamma, delta = self._shrink(standard, codes, gamma, delta, counts)
        if self.reference_site is not None:
            gamma[self._reference], delta[self._reference] = 0.0, 1.0
        self.gamma_, self.delta_ = gamma, delta
        return self

    def transform(self, X, *, sites, covariates=None) -> np.ndarray:
        """Remove the fitted site effects from rows of known sites.

        Parameters
        ----------
        X : array-like, shape (n, n_features)
        sites : array-like, shape (n,)
            Sites seen in ``fit``.
        covariates : array-like, optional
            The same covariates as in ``fit``.

        Returns
        -------
        ndarray, shape (n, n_features)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        codes, covariates = self._design(X, sites, covariates, fitting=False)
        standard = self._standardised(X, covariates)
        adjusted = (standard - self.gamma_[codes]) / np.sqrt(self.delta_[codes])
        return adjusted * np.sqrt(self.var_pooled_) + self.grand_mean_ + covariates @ self.coef_

    def fit_transform(self, X, y=None, *, sites, covariates=None) -> np.ndarray:
        """``fit`` then ``transform`` the same rows."""
        return self.fit(X, y, sites=sites, covariates=covariates).transform(
            X, sites=sites, covariates=covariates)

    def _standardised(self, X: np.ndarray, covariates: np.ndarray) -> np.ndarray:
        return (X - self.grand_mean_ - covariates @ self.coef_) / np.sqrt(self.var_pooled_)

    def _design(self, X: np.ndarray, sites, covariates, *, fitting: bool):
        if sites is None:
            raise ValueError("ComBatHarmoniser needs sites=: the site of each row")
        sites = np.asarray(sites)
        if sites.ndim != 1 or len(sites) != len(X):
            raise ValueError(f"sites must be 1-D with one entry per row of X ({len(X)}), got "
                             f"shape {sites.shape}")
        if fitting:
            self.sites_, codes, counts = np.unique(sites, return_inverse=True, return_counts=True)
            if len(self.sites_) < 2 or counts.min() < 2:
                found = dict(zip(self.sites_.tolist(), counts.tolist(), strict=True))
                raise ValueError(f"ComBat needs at least two sites of at least two rows each, "
                                 f"got {found}")
            if self.reference_site is not None and self.reference_site not in self.sites_:
                raise ValueError(f"reference_site {self.reference_site!r} is not among the "
                                 f"sites {self.sites_.tolist()}")
        else:
            unknown = set(np.unique(sites).tolist()) - set(self.sites_.tolist())
            if unknown:
                raise ValueError(f"sites {sorted(unknown)} were not seen in fit")
            codes = np.searchsorted(self.sites_, sites)
        if covariates is None:
            covariates = np.zeros((len(X), 0))
        else:
            covariates = check_array(covariates, dtype=np.float64, ensure_2d=False,
                                     input_name="covariates")
            covariates = covariates.reshape(len(covariates), -1)
            if len(covariates) != len(X):
                raise ValueError(f"covariates have {len(covariates)} rows, X has {len(X)}")
        if fitting:
            self.n_covariates_ = covariates.shape[1]
        elif covariates.shape[1] != self.n_covariates_:
            raise ValueError(f"covariates have {covariates.shape[1]} columns, fit saw "
                             f"{self.n_covariates_}")
        return codes, covariates

    @property
    def _reference(self) -> int:
        return int(np.flatnonzero(self.sites_ == self.reference_site)[0])

    def _shrink(self, standard, codes, gamma_hat, delta_hat, counts):
        """Parametric empirical-Bayes site effects (neuroCombat's ``it_sol``)."""
        gamma_bar = gamma_hat.mean(axis=1, keepdims=True)
        tau2 = gamma_hat.var(axis=1, ddof=1, keepdims=True)
        if self.mean_only:
            gamma = (tau2 * gamma_hat + gamma_bar) / (tau2 + 1.0)
            return gamma, delta_hat
        m = delta_hat.mean(axis=1, keepdims=True)
        s2 = np.maximum(delta_hat.var(axis=1, ddof=1, keepdims=True), 1e-12)
        a, b = (2 * s2 + m ** 2) / s2, (m * s2 + m ** 3) / s2
        n = counts[:, None]
        gamma, delta = gamma_hat.copy(), delta_hat.copy()
        for iteration in range(1, self.max_iter + 1):
            self.n_iter_ = iteration
            new_gamma = (tau2 * n * gamma_hat + delta * gamma_bar) / (tau2 * n + delta)
            sum2 = np.array([((standard[codes == k] - new_gamma[k]) ** 2).sum(axis=0)
                             for k in range(len(counts))])
            new_delta = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                change = np.nan_to_num(np.r_[(np.abs(new_gamma - gamma) / np.abs(gamma)).ravel(),
                                             (np.abs(new_delta - delta) / delta).ravel()],
                                       nan=0.0).max()
            gamma, delta = new_gamma, new_delta
            if change < self.tol:
                break
        return gamma, delta
