"""Batch-norm statistics that match the trained weights and the domain being transformed."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import update_bn


def recompute_batch_norm(module: nn.Module, images: torch.Tensor, batch_size: int,
                         memory_format: torch.memory_format = torch.contiguous_format) -> None:
    """Replace ``module``'s batch-norm running statistics by those of ``images``.

    During adversarial training the ISTN normalises every batch with its own
    statistics, and the source batches (the ``S2T`` pass) and target batches
    (the identity pass) alternate, so the running averages blend both domains
    and lag behind weights that keep moving. ``transform`` runs in eval mode,
    so without this it would apply statistics that no training batch had.
    One pass in training mode over the images to be transformed (the
    source domain for ``S2T``), averaging the batch statistics with equal
    weight (``torch.optim.swa_utils.update_bn``), fixes the statistics to the
    final weights. It is deterministic; dropout (3D) is active during the
    pass, as in training.

    Parameters
    ----------
    module : nn.Module
        Network with batch-norm layers (left in eval mode).
    images : tensor of shape (n, C, *spatial)
        The domain the module will be applied to.
    batch_size : int
        Images per pass (the training batch size, so the statistics are those
        training saw).
    memory_format : torch.memory_format
        Layout of the batches, as in training.
    """
    device = next(module.parameters()).device
    # one batch at a time: a list would hold a converted copy of the whole domain at once
    batches = (images[start:start + batch_size].to(device).contiguous(memory_format=memory_format)
               for start in range(0, len(images), batch_size))
    update_bn(batches, module)
    module.eval()
