"""Exponential moving averages of the ISTN and task-model weights (Yazici et al. 2019)."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def warmed_up_decay(decay: float, n_averaged: int) -> float:
    """``min(decay, (1 + n) / (10 + n))``: the decay after ``n`` averaged steps.

    The average then spans about a tenth of the steps taken so far, until
    that reaches the ``1 / (1 - decay)`` steps of ``decay``: a short training
    is not dominated by its untrained first weights (a fixed 0.99 over 50
    steps keeps 60% of the initial weights), a long one averages over its
    last ``1 / (1 - decay)`` steps (the warm-up of TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)``).
    """
    return min(decay, (1.0 + n_averaged) / (10.0 + n_averaged))


class WarmedUpAverage:
    """``multi_avg_fn`` of :class:`~torch.optim.swa_utils.AveragedModel` for a warmed-up EMA.

    A class rather than a closure, so fitted estimators still pickle.

    Parameters
    ----------
    decay : float
        Largest per-step decay (see :func:`warmed_up_decay`).
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay

    @torch.no_grad()
    def __call__(self, averaged: list[torch.Tensor], current: list[torch.Tensor],
                 n_averaged) -> None:
        """Move every average toward its current value by ``1 - warmed_up_decay``."""
        weight = 1.0 - warmed_up_decay(self.decay, int(n_averaged))
        for average, value in zip(averaged, current, strict=True):
            if average.is_floating_point():
                average.lerp_(value, weight)
            else:                       # counters such as num_batches_tracked
                average.copy_(value)


def averaged_copy(module: nn.Module, decay: float) -> AveragedModel:
    """An EMA shadow of ``module``: ``avg = d * avg + (1 - d) * w`` after each update.

    ``d`` is :func:`warmed_up_decay`; buffers (batch-norm statistics) are
    averaged too; the first update copies the weights.

    Parameters
    ----------
    module : nn.Module
        The network being trained.
    decay : float
        Largest per-step decay, in (0, 1).
    """

    return AveragedModel(module, multi_avg_fn=WarmedUpAverage(decay), use_buffers=True)


class WeightAverages(nn.Module):
    """The EMA shadows of one training run, updated after every step and swapped in at its end.

    Parameters
    ----------
    modules : dict of str to nn.Module
        The networks to average (the ISTNs ``"istn"`` and, with the
        simultaneous scheme, the task model ``"task"``).
    decay : float
        Largest per-step decay of every average (see :func:`warmed_up_decay`).
    """

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        super().__init__()
        self.shadows = nn.ModuleDict({name: averaged_copy(module, decay)
                                      for name, module in modules.items()})

    def update(self, modules: dict[str, nn.Module]) -> None:
        """Fold the current weights of ``modules`` into their averages."""
        for name, module in modules.items():
            self.shadows[name].update_parameters(module)

    def copy_into(self, modules: dict[str, nn.Module]) -> None:
        """Load each average into its network (the networks ``transform`` and ``predict`` use)."""
        for name, module in modules.items():
            module.load_state_dict(self.shadows[name].module.state_dict())
