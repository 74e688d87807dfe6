"""Built-in content losses: ``patch_nce``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from istn_sk.hookspecs import hookimpl

if TYPE_CHECKING:   # torch is imported when a loss is built, not when plugins load
    from torch import nn


def patch_nce_loss(weight: float, channels: Sequence[int]) -> nn.Module:
    """PatchNCE (CUT): each output patch picks out the input patch at its own position."""
    from istn_sk._content_losses import PatchNCELoss

    return PatchNCELoss(weight, channels)


@hookimpl
def istn_sk_register_content_losses(register) -> None:
    """Register the built-in content losses."""
    register.add("patch_nce", patch_nce_loss,
                 description="patch-wise contrastive loss between the ITN's input and output")
