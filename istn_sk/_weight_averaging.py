"""Exponential moving averages of the ISTN and task-model weights (Yazici et al. 2019)."""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def averaged_copy(module: nn.Module, decay: float) -> AveragedModel:
    """An EMA shadow of ``module``: after each update ``avg = decay * avg + (1 - decay) * w``.

    Buffers (batch-norm statistics) are averaged too; the first update copies
    the weights.

    Parameters
    ----------
    module : nn.Module
        The network being trained.
    decay : float
        Per-step decay in (0, 1); the average spans about ``1 / (1 - decay)``
        steps.
    """
    return AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class WeightAverages(nn.Module):
    """The EMA shadows of one training run, updated after every step and swapped in at its end.

    Parameters
    ----------
    modules : dict of str to nn.Module
        The networks to average (the ISTNs ``"istn"`` and, with the
        simultaneous scheme, the task model ``"task"``).
    decay : float
        Per-step decay of every average.
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
