"""Built-in losses: ``bce``, ``mse`` and ``l1``."""

from __future__ import annotations

from torch import nn

from istn_sk.hookspecs import hookimpl


@hookimpl
def istn_sk_register_losses(register) -> None:
    """Register the built-in losses (mean reduction, inputs and targets in [0, 1])."""
    register.add("bce", nn.BCELoss, description="binary cross-entropy")
    register.add("mse", nn.MSELoss, description="mean squared error")
    register.add("l1", nn.L1Loss, description="mean absolute error")
