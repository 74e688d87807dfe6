"""Summarise shift-suite runs (``suite.csv`` files) as a markdown table of mean ± sd over seeds.

Run::

    python examples/benchmarks/summarise_suite.py OUT1/suite.csv OUT2/suite.csv ...

One row per (setting, target, thread count): accuracy on the unmodified target
test digits of each path, and the fraction of the no-adaptation → oracle gap
that the path recovers (mean over seeds of the per-seed fractions).
"""

from __future__ import annotations

import sys

import pandas as pd

PATHS = ("alongside", "scratch", "scratch_shift", "handover")
#: Content measures shown when the runs have them (see suite.py).
CONTENT = ("oracle_on_s2t", "fractures_kept", "swellings_kept", "paired_ssim", "unmapped_ssim",
           "paired_mae", "unmapped_mae")


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd per setting, target and thread count, with the recovered gap per path."""
    rows = []
    for (name, target, threads), group in runs.groupby(["name", "target", "threads"], sort=False):
        row = {"setting": name, "target": target, "threads": threads, "seeds": len(group)}
        gap = group.oracle - group.no_da
        for column in ("no_da", "oracle", *PATHS, *CONTENT):
            if column in group and group[column].notna().any():
                row[column] = f"{group[column].mean():.3f} ± {group[column].std(ddof=1):.3f}"
        for path in PATHS:
            if path in group and group[path].notna().any():
                recovered = (group[path] - group.no_da) / gap
                row[f"{path} recovered"] = f"{recovered.mean():.2f}"
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def markdown(table: pd.DataFrame) -> str:
    """A pipe table of ``table``'s text cells."""
    lines = ["| " + " | ".join(table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(value) for value in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    frames = [pd.read_csv(path) for path in sys.argv[1:]]
    print(markdown(summarise(pd.concat(frames, ignore_index=True))))
