"""Built-in discriminator regularisers: ``r1`` and ``lecam``."""

from __future__ import annotations

from collections.abc import Callable

from istn_sk.hookspecs import hookimpl


def r1_penalty(weight: float) -> Callable:
    """R1 gradient penalty on real images, ``weight/2 · E‖∇ₓ D(x)‖²``."""
    from istn_sk._regularisers import R1Penalty

    return R1Penalty(weight)


def lecam_penalty(weight: float) -> Callable:
    """LeCam regularisation of the logits against moving-average anchors."""
    from istn_sk._regularisers import LeCamPenalty

    return LeCamPenalty(weight)


@hookimpl
def istn_sk_register_regularisers(register) -> None:
    """Register the built-in discriminator regularisers."""
    register.add("r1", r1_penalty, description="R1 gradient penalty on real images")
    register.add("lecam", lecam_penalty, description="LeCam penalty on D's logits")
