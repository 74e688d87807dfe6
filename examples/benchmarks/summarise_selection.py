"""How well each label-free candidate follows the true target accuracy (the suite's epochs.csv).

Reads the per-epoch rows that ``suite.py --epoch-scores`` writes and prints three
markdown tables, one row per target domain:

1. Spearman correlation of each candidate with the true target accuracy over
   every epoch of every setting and seed (the pooled ranking a grid search
   over epochs and settings relies on);
2. the mean over runs of the within-run Spearman correlation (epoch choice
   only);
3. the true target accuracy of the epoch each candidate would keep (mean over
   runs), beside the last epoch's and the best epoch's (an oracle choice).

Run::

    python examples/benchmarks/summarise_selection.py OUT/epochs.csv
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from label_free_scorers import SCORERS
from scipy.stats import spearmanr
from summarise_suite import markdown


def pooled(epochs: pd.DataFrame) -> pd.DataFrame:
    """Spearman of every candidate with ``target_acc`` over all rows of each target."""
    rows = []
    for target, group in epochs.groupby("target"):
        row = {"target": target, "runs": group.groupby(["name", "seed"]).ngroups,
               "epochs": len(group)}
        row.update({name: f"{spearmanr(group.target_acc, group[name]).statistic:.2f}"
                    for name in SCORERS})
        rows.append(row)
    return pd.DataFrame(rows)


def within_runs(epochs: pd.DataFrame) -> pd.DataFrame:
    """Mean over runs of the within-run Spearman correlation, per target."""
    rows = []
    for target, group in epochs.groupby("target"):
        runs = group.groupby(["name", "seed"])
        row = {"target": target, "runs": runs.ngroups}
        for name in SCORERS:
            values = [spearmanr(run.target_acc, run[name]).statistic for _, run in runs]
            row[name] = f"{np.nanmean(values):.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


def kept_accuracy(epochs: pd.DataFrame) -> pd.DataFrame:
    """True target accuracy of the epoch each candidate keeps, mean ± sd over runs."""
    kept = []
    for (target, _, _), run in epochs.groupby(["target", "name", "seed"]):
        run = run.sort_values("epoch")
        row = {"target": target, "last epoch": run.target_acc.iloc[-1],
               "best epoch (oracle)": run.target_acc.max()}
        row.update({name: run.target_acc.iloc[int(np.argmax(run[name].to_numpy()))]
                    for name in SCORERS})
        kept.append(row)
    kept = pd.DataFrame(kept)
    rows = []
    for target, group in kept.groupby("target"):
        row = {"target": target, "runs": len(group)}
        row.update({column: f"{group[column].mean():.3f} ± {group[column].std(ddof=1):.3f}"
                    for column in group.columns if column != "target"})
        rows.append(row)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    table = pd.concat([pd.read_csv(path) for path in sys.argv[1:]], ignore_index=True)
    for title, summary in (("Spearman over all epochs, settings and seeds", pooled),
                           ("Mean within-run Spearman (choice of epoch)", within_runs),
                           ("Target accuracy of the kept epoch", kept_accuracy)):
        print(f"**{title}**\n\n{markdown(summary(table))}\n")
