"""Built-in losses: ``bce``, ``mse`` and ``l1`` (torch is imported when one is built)."""

from __future__ import annotations

from collections.abc import Callable

from istn_sk.hookspecs import hookimpl


def bce_loss() -> Callable:
    """Binary cross-entropy on probabilities, mean over elements."""
    from torch import nn

    return nn.BCELoss()


def mse_loss() -> Callable:
    """Mean squared error."""
    from torch import nn

    return nn.MSELoss()


def l1_loss() -> Callable:
    """Mean absolute error."""
    from torch import nn

    return nn.L1Loss()


@hookimpl
def istn_sk_register_losses(register) -> None:
    """Register the built-in losses (mean reduction, inputs and targets in [0, 1])."""
    register.add("bce", bce_loss, description="binary cross-entropy")
    register.add("mse", mse_loss, description="mean squared error")
    register.add("l1", l1_loss, description="mean absolute error")
