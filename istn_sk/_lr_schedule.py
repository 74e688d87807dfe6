"""The task models' learning-rate schedule: a cosine decay over each ``fit``."""

from __future__ import annotations

import math

from skorch.callbacks import Callback


class CosineDecay(Callback):
    """Learning rate ``lr * (1 + cos(pi * k / K)) / 2`` in epoch ``k`` of a fit of ``K`` epochs.

    ``K`` is the net's ``max_epochs`` and ``k`` counts from 0 in every call
    of ``fit`` or ``partial_fit``, so each call decays from ``lr`` again
    (skorch's ``LRScheduler`` would continue the cosine past ``K``, back
    up). The epoch's rate is recorded in the history as ``"lr"``.
    """

    def on_train_begin(self, net, **kwargs) -> None:
        """Remember where this call's epochs start in the history."""
        self.first_epoch_ = len(net.history)

    def on_epoch_begin(self, net, **kwargs) -> None:
        """Set every parameter group's rate for the epoch that begins."""
        k = len(net.history) - 1 - self.first_epoch_
        rate = net.lr * (1.0 + math.cos(math.pi * k / net.max_epochs)) / 2.0
        for group in net.optimizer_.param_groups:
            group["lr"] = rate
        net.history.record("lr", rate)
