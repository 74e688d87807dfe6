"""Cross-site evaluation: a leave-one-site-out splitter and skada-style domain expansion."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import check_random_state


def expand_sites(X, y, sites):
    """Present every site both as a source and as a target, in skada's convention.

    Row ``i`` of site ``s`` appears twice: as a source row (``sample_domain
    = +code(s)``) and as a target row (``-code(s)``), with codes 1, 2, ...
    for the sorted site names. Labels stay real in both copies; the
    estimators of istn-sk never read labels of target rows, so
    :class:`LeaveOneSiteOut` folds over the result hold one site out as an
    unlabelled target and score on its real labels.

    Parameters
    ----------
    X : array-like of shape (n, ...)
    y : array-like of shape (n,)
    sites : array-like of shape (n,)
        Site names (strings or ints).

    Returns
    -------
    X2 : ndarray of shape (2n, ...)
    y2 : ndarray of shape (2n,)
    sample_domain : ndarray of shape (2n,), int
    codes : dict
        Site name -> positive domain code.
    """
    X, y, sites = np.asarray(X), np.asarray(y), np.asarray(sites)
    if not len(X) == len(y) == len(sites):
        raise ValueError(f"X, y and sites have {len(X)}, {len(y)} and {len(sites)} rows")
    names, index = np.unique(sites, return_inverse=True)
    codes = index.astype(np.int64) + 1
    return (np.concatenate([X, X]), np.concatenate([y, y]), np.concatenate([codes, -codes]),
            {name.item() if hasattr(name, "item") else name: i + 1
             for i, name in enumerate(names)})


class LeaveOneSiteOut(BaseCrossValidator):
    """Hold out one site per fold.

    With ``sample_domain`` (skada's convention, e.g. from
    :func:`expand_sites`): for each domain ``k`` present as ``-k``, train on
    the source rows of every other domain plus the target rows ``-k``
    (unlabelled for the estimators), and test on the target rows ``-k`` —
    transductive adaptation, as in the paper. ``target_test_size`` instead
    keeps that share of site ``k``'s target rows out of training.

    With plain site labels (``groups``, strings or ints) and no
    ``sample_domain``: train on the other sites, test on the held-out one (no
    adaptation; the baseline).

    Parameters
    ----------
    target_test_size : float in (0, 1), optional
        Share of the held-out site's target rows used only for testing.
    random_state : int, RandomState or None, default=None
        Seeds that split.
    """

    __metadata_request__split = {"sample_domain": True, "groups": True}

    def __init__(self, target_test_size: float | None = None, random_state=None) -> None:
        self.target_test_size = target_test_size
        self.random_state = random_state

    def _folds(self, groups, sample_domain):
        if sample_domain is not None:
            domains = np.asarray(sample_domain).ravel()
            held_out = sorted({-d for d in domains.tolist() if d < 0 and -d in domains})
            if not held_out:
                raise ValueError("sample_domain has no domain present both as source (+k) and "
                                 "as target (-k); use expand_sites to build one")
            return "domains", domains, held_out
        if groups is None:
            raise ValueError("LeaveOneSiteOut needs site labels (groups=...) or sample_domain")
        sites = np.asarray(groups).ravel()
        names = np.unique(sites)
        if len(names) < 2:
            raise ValueError(f"LeaveOneSiteOut needs at least 2 sites, got {names.tolist()}")
        return "sites", sites, list(names)

    def get_n_splits(self, X=None, y=None, groups=None, sample_domain=None) -> int:
        """Number of held-out sites."""
        return len(self._folds(groups, sample_domain)[2])

    def split(self, X, y=None, groups=None, sample_domain=None):
        """Yield ``(train, test)`` index arrays, one pair per held-out site."""
        kind, labels, held_out = self._folds(groups, sample_domain)
        rng = check_random_state(self.random_state)
        for site in held_out:
            if kind == "sites":
                yield np.flatnonzero(labels != site), np.flatnonzero(labels == site)
                continue
            target = np.flatnonzero(labels == -site)
            sources = np.flatnonzero((labels > 0) & (labels != site))
            if self.target_test_size is None:
                yield np.concatenate([sources, target]), target
                continue
            if not 0 < self.target_test_size < 1:
                raise ValueError(f"target_test_size must be in (0, 1), got "
                                 f"{self.target_test_size!r}")
            shuffled = rng.permutation(target)
            n_test = max(1, round(self.target_test_size * len(target)))
            yield np.sort(np.concatenate([sources, shuffled[n_test:]])), np.sort(shuffled[:n_test])
