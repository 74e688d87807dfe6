"""Built-in losses: ``bce``, ``mse`` and ``l1`` (torch is imported when one is built)."""

from __future__ import annotations

from collections.abc import Callable

from istn_sk.hookspecs import hookimpl


def bce_loss() -> Callable:
    """Binary cross-entropy on probabilities, mean over elements."""
    from torch import nn

    return nn.BCELoss()


def bce_with_logits_loss() -> Callable:
    """Binary cross-entropy on the discriminator's logits (``takes_logits``), mean over elements.

    The same function as ``bce`` on ``sigmoid(logits)``, computed with the
    log-sum-exp trick, so it neither saturates nor loses its gradient when
    the discriminator is very sure (``bce`` on float32 probabilities is
    clamped at ``log(0) = -100`` once a logit passes about ±17).
    """
    from torch import nn

    loss = nn.BCEWithLogitsLoss()
    loss.takes_logits = True
    return loss


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
    register.add("bce_logits", bce_with_logits_loss,
                 description="binary cross-entropy on logits (adversarial terms only)")
    register.add("mse", mse_loss, description="mean squared error")
    register.add("l1", l1_loss, description="mean absolute error")
