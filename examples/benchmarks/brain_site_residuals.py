"""How much of the site difference a map may leave before a site classifier sees it.

The brain harness asks a mapped source site (S2T) to be indistinguishable
from the target site by a linear site classifier (balanced accuracy <= 0.7).
This benchmark measures what that asks of a map, on the simulator's own
ground truth, with no training at all. For each direction S -> T
(camcan -> ukbb and ukbb -> camcan):

* the target set is ``n`` subjects with T's ages imaged at T;
* the "mapped" set is ``n`` other subjects with S's ages (as a mapped S test
  set has) imaged at a site equal to T except for one group of scanner
  factors, which is left a fraction ``residual`` of the way back to S's
  values: 0 is a perfect map of that group, 1 is no map at all.

Numeric factors are interpolated linearly; the receive bias field as its
log-field vector (amplitude times direction). Each group but the last keeps
T's noise, so its ``residual = 0`` row is the population difference alone.
The group ``every scanner factor but the noise`` keeps S's noise at every
fraction, as a plain deterministic map does (it cannot add T's independent
noise, nor, without denoising, remove S's), so its ``residual = 1`` row is the
unmapped S site.
The classifier is the harness's
(:func:`istn_sk.harmonisation.site_classification_score`: 4^3-pooled voxels,
standardised, L2 logistic regression, 5-fold), on the harness's test-set size;
the voxel-wise site effect (:func:`istn_sk.harmonisation.site_effect`, its
excess over sampling noise inside every brain) is the harness's too, so a
method's excess in the harness reads off this table as the residual fraction
of the whole site difference it is equivalent to.

Run: ``OMP_NUM_THREADS=1 python examples/benchmarks/brain_site_residuals.py --out results``
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brain_site_factors import images, scans

from istn_sk.datasets._brain_scanner import SITES, Site
from istn_sk.evaluate import to_markdown, write_report
from istn_sk.harmonisation import site_classification_score, site_effect

#: Factor groups, by the Site fields that keep part of camcan's values.
GROUPS = {
    "receive bias field": ("bias", "bias_direction"),
    "head placement": ("rotation_offset", "translation_offset"),
    "gradient scale": ("gradient_scale",),
    "contrast (sequence, inversion, transmit, gamma)": (
        "tr", "te", "ti", "flip", "inversion_efficiency", "transmit", "gamma"),
    "every scanner factor but the noise": tuple(
        f.name for f in fields(Site)
        if f.name not in ("name", "description", "age_range", "noise")),
}
RESIDUALS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
DIRECTIONS = ("camcan -> ukbb", "ukbb -> camcan")


def _log_bias_vector(site: Site) -> np.ndarray:
    """The site's log receive field as one vector: ``bias * direction / |direction|``."""
    direction = np.asarray(site.bias_direction, float)
    return site.bias * direction / np.linalg.norm(direction)


def partway(target: Site, source: Site, residual: float, names: tuple[str, ...]) -> Site:
    """``target`` with the fields ``names`` moved a fraction ``residual`` back towards ``source``.

    The bias field is interpolated as the vector ``bias * direction / |direction|``.
    """
    changes = {}
    for name in set(names) - {"bias", "bias_direction"}:
        a, b = np.asarray(getattr(target, name), float), np.asarray(getattr(source, name), float)
        value = a + residual * (b - a)
        changes[name] = tuple(value.tolist()) if value.ndim else float(value)
    if "bias" in names:
        log_field = _log_bias_vector(target) + residual * (_log_bias_vector(source)
                                                           - _log_bias_vector(target))
        amplitude = float(np.linalg.norm(log_field))
        changes["bias"] = amplitude
        changes["bias_direction"] = tuple((log_field / max(amplitude, 1e-12)).tolist())
    return replace(target, **changes)


def run(n: int, shape: int, seeds: list[int], permutations: int,
        directions: tuple[str, ...] = DIRECTIONS) -> pd.DataFrame:
    """One row per direction, group, residual fraction and seed."""
    rows = []
    for direction in directions:
        source_index, target_index = (0, 1) if direction == DIRECTIONS[0] else (1, 0)
        source, target_site = SITES[source_index], SITES[target_index]
        for seed in seeds:
            target = images(scans(n, target_index, target_site.age_range, seed), shape,
                            target_site)
            mapped_subjects = scans(n, source_index, source.age_range, seed)
            scored: dict[Site, dict] = {}   # every single group's residual 0 is T itself
            for group, names in GROUPS.items():
                for residual in RESIDUALS:
                    site = partway(target_site, source, residual, names)
                    if group.startswith("every"):
                        site = replace(site, noise=source.noise)
                    if site not in scored:
                        scored[site] = _scores(images(mapped_subjects, shape, site), target,
                                               permutations, seed)
                    rows.append({"direction": direction, "group": group, "residual": residual,
                                 "seed": seed, **scored[site]})
                    print(f"{direction}, seed {seed}, {group}, residual {residual:.2f}: "
                          f"site {scored[site]['site balanced accuracy']:.3f}, "
                          f"excess {scored[site]['site effect excess']:.3f}", flush=True)
    return pd.DataFrame(rows)


def _scores(mapped: np.ndarray, target: np.ndarray, permutations: int, seed: int) -> dict:
    """The harness's site classifier and voxel-wise site effect of ``mapped`` against ``target``."""
    score = site_classification_score(mapped, target, n_permutations=permutations,
                                      random_state=seed)
    every_brain = (mapped != 0).all(axis=(0, 1)) & (target != 0).all(axis=(0, 1))
    effect = site_effect(mapped, target, mask=every_brain)
    return {"site balanced accuracy": score["balanced_accuracy"],
            "site p-value": score["p_value"], "site effect excess": effect["excess_rms"]}


def summary(runs: pd.DataFrame, column: str = "site balanced accuracy") -> pd.DataFrame:
    """Mean ± sd of ``column`` over seeds: a row per direction and group, a column per fraction."""
    keys = ["direction", "group"]
    grouped = runs.groupby([*keys, "residual"], sort=False)[column]
    cells = grouped.agg(["mean", "std"]).reset_index()
    cells["text"] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(cells["mean"], cells["std"], strict=True)]
    table = cells.pivot(index=keys, columns="residual", values="text")
    order = [(d, g) for d in DIRECTIONS for g in GROUPS if (d, g) in table.index]
    table = table.loc[order]
    table.columns = [f"residual {c:g}" for c in table.columns]
    return table.reset_index()


def main(argv: list[str] | None = None) -> None:
    """Run from the command line; writes the tables (csv and md) into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmark-output"))
    parser.add_argument("--n", type=int, default=30,
                        help="subjects per set (the harness tests on 30 per site)")
    parser.add_argument("--shape", type=int, default=32, help="cube side")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--permutations", type=int, default=20)
    parser.add_argument("--directions", nargs="+", choices=DIRECTIONS, default=list(DIRECTIONS))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = run(args.n, args.shape, args.seeds, args.permutations, tuple(args.directions))
    write_report(runs, args.out / "brain-site-residuals-runs")
    table = summary(runs)
    write_report(table, args.out / "brain-site-residuals")
    write_report(summary(runs, "site effect excess"), args.out / "brain-site-residuals-excess")
    print(to_markdown(table), flush=True)


if __name__ == "__main__":
    main()
