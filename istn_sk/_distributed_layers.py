"""Layers whose training-time behaviour spans the global batch of a data-parallel fit.

:func:`shard_layers` swaps, in place, every batch norm of a network for a
:class:`GlobalBatchNorm` (statistics over the global batch, on CPU and GPU
alike: torch's ``SyncBatchNorm`` is CUDA-only) and wraps every dropout in a
:class:`GlobalDropout` (masks drawn for the global batch). Both share their
parameters and buffers with the layers they stand for, so optimizers, weight
averages and state dicts are unaffected; :func:`restore_layers` puts the
originals back. Outside a training step (no current shard) both behave
exactly as the layers they replace.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from ._distributed_sharding import ShardState, on_global_batch


class _SumOverRanks(torch.autograd.Function):
    """``all_reduce(SUM)`` whose gradient is that of the global batch's mean losses.

    Each process back-propagates its own mean loss, and its parameter
    gradients are later weighted by its ``share`` of the global batch and
    summed. The gradient reaching each local contribution to the sum is
    therefore ``Σ_j share_j · g_j / share_k``, so that after that weighting
    every path is weighted as in one process (with equal shares this is the
    plain sum, as in ``torch.distributed.nn.functional.all_reduce``).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, share: float) -> torch.Tensor:
        ctx.share = share
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad * ctx.share
        dist.all_reduce(grad)
        return grad / ctx.share, None


class GlobalBatchNorm(_BatchNorm):
    """Batch norm over the global batch of a data-parallel step (any spatial rank).

    Parameters
    ----------
    norm : torch.nn.modules.batchnorm._BatchNorm
        The layer it stands for; its parameters and buffers are shared, not copied.
    state : ShardState
        The current shard (None: an ordinary batch norm).
    """

    def __init__(self, norm: _BatchNorm, state: ShardState) -> None:
        super().__init__(norm.num_features, norm.eps, norm.momentum, norm.affine,
                         norm.track_running_stats)
        for name, tensor in [*norm.named_parameters(recurse=False),
                             *norm.named_buffers(recurse=False)]:
            setattr(self, name, tensor)
        self.train(norm.training)
        self.state = state

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least a 2D input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` by the global batch's statistics while training, else as ``norm``."""
        shard = self.state.current
        if shard is None or not self.training:
            return super().forward(x)
        dims, shape = [0, *range(2, x.dim())], (1, -1, *[1] * (x.dim() - 2))
        count = x.new_tensor([x.numel() // x.shape[1]])
        sums = _SumOverRanks.apply(torch.cat([x.sum(dims), count]), shard.share)
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims), shard.share) / n
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * n / (n - 1).clamp_min(1))
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        """``_BatchNorm``'s update: momentum, or a cumulative mean when ``momentum`` is None."""
        self.num_batches_tracked.add_(1)
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased_var, alpha=factor)


class GlobalDropout(nn.Module):
    """A dropout layer whose masks, while training on a shard, are drawn for the global batch.

    Parameters
    ----------
    dropout : torch.nn.modules.dropout._DropoutNd
        The layer it wraps (any of torch's dropouts).
    state : ShardState
        The current shard (None: ``dropout`` itself).
    """

    def __init__(self, dropout: _DropoutNd, state: ShardState) -> None:
        super().__init__()
        self.dropout = dropout
        self.state = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``dropout(x)``, this shard's rows of a draw over the global batch when sharded."""
        shard = self.state.current
        if shard is None or not self.training:
            return self.dropout(x)
        return on_global_batch(self.dropout, x, shard)


def shard_layers(root: nn.Module, state: ShardState) -> list[tuple[nn.Module, str, nn.Module]]:
    """Swap the batch norms and dropouts under ``root`` for their global-batch versions.

    Returns
    -------
    list of (parent, name, original)
        What :func:`restore_layers` puts back.
    """
    swapped = []
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm):
                replacement = GlobalBatchNorm(child, state)
            elif isinstance(child, _DropoutNd):
                replacement = GlobalDropout(child, state)
            else:
                continue
            setattr(parent, name, replacement)
            swapped.append((parent, name, child))
    return swapped


def restore_layers(swapped: list[tuple[nn.Module, str, nn.Module]]) -> None:
    """Put back the layers :func:`shard_layers` swapped, in their current train/eval mode."""
    for parent, name, original in reversed(swapped):
        original.train(getattr(parent, name).training)
        setattr(parent, name, original)
