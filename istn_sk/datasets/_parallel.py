"""Parallel map with joblib and an optional progress report."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any


def parallel_map(
    function: Callable[..., Any],
    arguments: Sequence[tuple[Any, ...]] | Iterable[tuple[Any, ...]],
    *,
    n_jobs: int | None,
    verbose: int,
    desc: str,
) -> list[Any]:
    """``[function(*args) for args in arguments]``, computed with joblib.

    Parameters
    ----------
    function : callable
        A module-level function (picklable for worker processes).
    arguments : sequence of tuple
        Positional arguments of each call.
    n_jobs : int or None
        Worker processes, as in joblib (``-1``: all cores; ``None``/``1``: serial).
    verbose : int
        Report progress when positive: a tqdm bar on a terminal, plain lines
        elsewhere (``istn_sk._progress.Progress``).
    desc : str
        Progress label.

    Returns
    -------
    list
        Results in the order of ``arguments``.
    """
    from joblib import Parallel, delayed

    arguments = list(arguments)
    results = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(function)(*args) for args in arguments
    )
    if verbose > 0:
        from istn_sk._progress import track

        results = track(results, len(arguments), desc=desc)
    return list(results)
