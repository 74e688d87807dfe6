"""Label-free epoch selection: keep the epoch whose snapshot scores best on held-out rows.

A user has no target labels, so the criteria read the source labels and
unlabelled target images only. Only the second half of the epochs compete:
on the shift suite (docs/results.md, "Label-free selection"), prediction
entropy preferred the first epoch of every slow run (lr 3e-4: true accuracy
0.34 there against 0.90 at the end), a confidently wrong model. Restricted to
the second half, neither criterion kept a better epoch than the last one with
the weight averages (mean difference +0.003 over 27 runs), which is why
``select_epoch`` is off by default.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from skorch.callbacks import Callback

from ._batch_norm import recompute_batch_norm

CRITERIA = ("prediction_entropy", "mapped_source_accuracy")


def check_epoch_selection(adapter) -> None:
    """Raise one ``ValueError`` if ``select_epoch`` / ``validation_fraction`` cannot apply."""
    if adapter.select_epoch is None:
        return
    if adapter.select_epoch not in CRITERIA:
        raise ValueError(f"select_epoch must be None or one of {CRITERIA}, "
                         f"got {adapter.select_epoch!r}")
    if adapter.task is None or getattr(adapter.task, "_regression", True):
        raise ValueError("select_epoch scores the task model trained alongside: it needs "
                         "task=TaskClassifier(...)")
    if adapter.checkpoint_dir is not None:
        raise ValueError("select_epoch cannot be combined with checkpoint_dir: the kept epoch's "
                         "weights are not part of a checkpoint")
    fraction = adapter.validation_fraction
    if isinstance(fraction, bool) or not isinstance(fraction, float) or not 0 < fraction < 0.5:
        raise ValueError(f"validation_fraction must be a float in (0, 0.5), got {fraction!r}")


def held_out_rows(fraction: float, is_source: np.ndarray) -> np.ndarray:
    """A boolean mask of ``fraction`` of each domain's rows (at least one), kept out of training.

    Drawn from torch's global stream, which ``fit`` seeds from ``random_state``.
    """
    held = np.zeros(len(is_source), dtype=bool)
    for domain in (is_source, ~is_source):
        rows = np.flatnonzero(domain)
        count = max(1, round(fraction * len(rows)))
        if len(rows) - count < 2:
            raise ValueError(f"validation_fraction={fraction} leaves fewer than 2 training "
                             f"images in a domain of {len(rows)}")
        held[rows[torch.randperm(len(rows))[:count].numpy()]] = True
    return held


class KeepBestEpoch(Callback):
    """Scores each epoch's snapshot on held-out rows and restores the best one at the end.

    The snapshot is what ``transform`` and ``predict`` would use had training
    stopped there (the weight averages when kept). The score of every epoch
    is recorded in the history as ``selection_score``; only epochs after the
    first half of ``max_epochs`` compete, and the one kept is ``best_epoch_``.

    Parameters
    ----------
    criterion : {"prediction_entropy", "mapped_source_accuracy"}
        Minus the mean prediction entropy of the task model on the held-out
        target images, or its accuracy on the held-out source images mapped
        to S2T, against their source labels.
    source_train : torch.Tensor
        The training source images (batch-norm statistics of the mapped domain).
    source_val, source_val_targets, target_val : torch.Tensor
        The held-out rows.
    """

    def __init__(self, criterion: str, source_train: torch.Tensor, source_val: torch.Tensor,
                 source_val_targets: torch.Tensor, target_val: torch.Tensor) -> None:
        self.criterion = criterion
        self.source_train = source_train
        self.source_val = source_val
        self.source_val_targets = source_val_targets
        self.target_val = target_val

    def on_train_begin(self, net, **kwargs) -> None:
        self.best_score_, self.best_epoch_, self.best_state_ = -np.inf, 0, None

    def score(self, net) -> float:
        """The criterion on this epoch's snapshot (higher is better)."""
        snapshot = net.networks_in_use()
        task = copy.deepcopy(snapshot["task"]).eval()
        with torch.no_grad():
            if self.criterion == "prediction_entropy":
                proba = torch.softmax(task(self.target_val), dim=1).clamp_min(1e-12)
                return float((proba * proba.log()).sum(1).mean())
            istn = copy.deepcopy(snapshot["istn"]["s2t"])
        recompute_batch_norm(istn, self.source_train, net.batch_size, net.memory_format)
        with torch.no_grad():
            predicted = task(istn.eval()(self.source_val)).argmax(1)
        return float((predicted == self.source_val_targets).float().mean())

    def on_epoch_end(self, net, **kwargs) -> None:
        score = self.score(net)
        net.history.record("selection_score", score)
        if len(net.history) > net.max_epochs // 2 and score > self.best_score_:
            self.best_score_, self.best_epoch_ = score, len(net.history)
            self.best_state_ = copy.deepcopy({
                "module": net.module_.state_dict(),
                "task": net.task_net.module_.state_dict(),
                "averages": None if net.averages_ is None else net.averages_.state_dict(),
            })

    def on_train_end(self, net, **kwargs) -> None:
        if self.best_state_ is None:
            return
        net.module_.load_state_dict(self.best_state_["module"])
        net.task_net.module_.load_state_dict(self.best_state_["task"])
        if net.averages_ is not None:
            net.averages_.load_state_dict(self.best_state_["averages"])


def split_for_selection(adapter, source: torch.Tensor, target: torch.Tensor,
                        source_targets: torch.Tensor | None, is_source: np.ndarray):
    """The training parts of both domains and the selection callbacks (none without it).

    Returns
    -------
    source, target, source_targets : torch.Tensor
        What the ISTN (and the task model) train on.
    callbacks : list
        ``[KeepBestEpoch(...)]`` with ``select_epoch``, else empty.
    """
    if adapter.select_epoch is None:
        return source, target, source_targets, []
    held = held_out_rows(adapter.validation_fraction, is_source)
    held_source = torch.from_numpy(held[is_source])
    held_target = torch.from_numpy(held[~is_source])
    selector = KeepBestEpoch(adapter.select_epoch, source[~held_source], source[held_source],
                             source_targets[held_source], target[held_target])
    return (source[~held_source], target[~held_target], source_targets[~held_source],
            [selector])
