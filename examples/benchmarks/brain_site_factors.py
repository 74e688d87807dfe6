"""Which of the simulated scanner differences a site classifier sees, one factor at a time.

The simulated ukbb site differs from camcan in its sequence, seven hidden
scanner factors and its population (a narrower age range). For each group
of factors below, ``n`` subjects are imaged at camcan and ``n`` other
subjects (same age range, camcan's) at a site equal to camcan except for
that group, which takes ukbb's values; a fresh site classifier
(:func:`istn_sk.harmonisation.site_classification_score`, the brain
harness's) then says whether that difference alone is visible, and the
intensity distance how far it moves the intensities. The last rows are
the population alone (ukbb's ages, camcan's scanner) and ukbb itself.

The ``undone by`` column says which kind of mapping can undo each group in
principle (a deterministic map cannot add the other site's independent
noise; an intensity method cannot move the head; a global intensity curve
cannot undo a smooth field).

Run: ``OMP_NUM_THREADS=1 python examples/benchmarks/brain_site_factors.py --out results``
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from istn_sk.datasets._brain import Scan, simulate_scan
from istn_sk.datasets._brain_scanner import SITES
from istn_sk.evaluate import to_markdown, write_report
from istn_sk.harmonisation import intensity_distance, site_classification_score

#: Factor groups: the Site fields that take ukbb's values, and what can undo them.
GROUPS = {
    "sequence (TR, TE, TI, flip)": (("tr", "te", "ti", "flip"), "ITN; histogram methods"),
    "inversion efficiency": (("inversion_efficiency",), "ITN; histogram methods"),
    "vendor contrast curve (gamma)": (("gamma",), "ITN; histogram methods"),
    "transmit field": (("transmit",), "ITN (a smooth field)"),
    "receive bias field": (("bias", "bias_direction"), "ITN (a smooth field)"),
    "blur": (("blur_mm",), "ITN (towards the blurrier site)"),
    "noise": (("noise",), "ITN towards the quieter site only (it cannot add noise)"),
    "head placement": (("rotation_offset", "translation_offset"), "affine STN"),
    "gradient scale": (("gradient_scale",), "affine STN"),
    "every scanner factor": (tuple(f for f in SITES[0].__dataclass_fields__
                                   if f not in ("name", "description", "age_range")),
                             "ITN + affine STN, but for the noise"),
}


def scans(n: int, site_index: int, ages: tuple[float, float], seed: int) -> list[Scan]:
    """``n`` scans at site ``site_index``: new subjects, ages uniform in ``ages``, half male."""
    rng = np.random.default_rng([seed, 90, site_index])
    age = np.round(rng.uniform(*ages, size=n), 1)
    sex = rng.permutation(np.arange(n) % 2)
    return [Scan(id=f"s{site_index}-{i}", subject=f"s{site_index}-{i}", site=site_index,
                 age=float(age[i]), sex=int(sex[i]), anatomy_key=(seed, 91, site_index, i),
                 scan_key=(seed, 92, site_index, i)) for i in range(n)]


def images(specs: list[Scan], shape: int, site) -> np.ndarray:
    """The images of ``specs``, every one simulated at ``site``."""
    results = [simulate_scan(spec, (shape,) * 3, site) for spec in specs]
    return np.tanh(np.stack([image for image, _ in results]))[:, None].astype(np.float32)


def run(n: int, shape: int, seed: int, permutations: int) -> pd.DataFrame:
    """One row per factor group, then the population alone and ukbb itself."""
    camcan, ukbb = SITES
    reference = images(scans(n, 0, camcan.age_range, seed), shape, camcan)
    cases = [(name, replace(camcan, **{f: getattr(ukbb, f) for f in fields}),
              camcan.age_range, undone)
             for name, (fields, undone) in GROUPS.items()]
    cases += [("population only (ukbb's ages)", camcan, ukbb.age_range, "nothing (biology)"),
              ("ukbb (everything)", ukbb, ukbb.age_range, "")]
    rows = []
    for name, site, ages, undone in cases:
        other = images(scans(n, 1, ages, seed), shape, site)
        score = site_classification_score(reference, other, n_permutations=permutations,
                                          random_state=seed)
        rows.append({"differs in": name, "site balanced accuracy": score["balanced_accuracy"],
                     "site p-value": score["p_value"],
                     "intensity distance": intensity_distance(reference, other,
                                                              mask_a=reference != 0,
                                                              mask_b=other != 0),
                     "undone by": undone})
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()
                                       if isinstance(v, float)), flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    """Run from the command line; writes brain-site-factors.{csv,md} into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmark-output"))
    parser.add_argument("--n", type=int, default=60, help="subjects per site and case")
    parser.add_argument("--shape", type=int, default=32, help="cube side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--permutations", type=int, default=20)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    table = run(args.n, args.shape, args.seed, args.permutations)
    write_report(table, args.out / "brain-site-factors")
    print(to_markdown(table), flush=True)


if __name__ == "__main__":
    main()
