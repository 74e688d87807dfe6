"""Discriminator regularisers (R1, LeCam), and the lookup of the registered ones by name."""

from __future__ import annotations

from collections.abc import Mapping

import torch


class R1Penalty:
    """R1 gradient penalty on real images (Mescheder et al. 2018): ``weight/2 E|grad_x D(x)|^2``.

    Parameters
    ----------
    weight : float
        The paper's gamma.
    """

    needs_real_gradient = True

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def __call__(self, real: torch.Tensor, logits_real: torch.Tensor,
                 logits_fake: torch.Tensor) -> torch.Tensor:
        (gradient,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)
        return 0.5 * self.weight * gradient.pow(2).flatten(1).sum(1).mean()


class LeCamPenalty:
    """LeCam regularisation (Tseng et al. 2021) of the discriminator's logits.

    ``weight * (E[(D(real) - a_fake)^2] + E[(D(fake) - a_real)^2])``, where the
    anchors ``a`` are exponential moving averages (decay 0.99) of the mean
    logits on fake and real images; it keeps D's outputs from drifting apart
    when D wins.

    Parameters
    ----------
    weight : float
        λ of the paper.
    decay : float, default=0.99
    """

    needs_real_gradient = False

    def __init__(self, weight: float, decay: float = 0.99) -> None:
        self.weight = weight
        self.decay = decay
        self.anchor_real: float | None = None
        self.anchor_fake: float | None = None

    def __call__(self, real: torch.Tensor, logits_real: torch.Tensor,
                 logits_fake: torch.Tensor) -> torch.Tensor:
        mean_real = logits_real.detach().mean().item()
        mean_fake = logits_fake.detach().mean().item()
        if self.anchor_real is None:
            self.anchor_real, self.anchor_fake = mean_real, mean_fake
        else:
            self.anchor_real = self.decay * self.anchor_real + (1 - self.decay) * mean_real
            self.anchor_fake = self.decay * self.anchor_fake + (1 - self.decay) * mean_fake
        return self.weight * ((logits_real - self.anchor_fake).pow(2).mean()
                              + (logits_fake - self.anchor_real).pow(2).mean())


def build_regularisers(weights: Mapping[str, float] | None,
                       parameter: str = "dis_regularisers") -> list:
    """One instance per ``{name: weight}`` entry, from the registered regularisers.

    Raises
    ------
    ValueError
        ``weights`` is not a mapping of names to non-negative finite numbers.
    istn_sk.PluginError
        A name is not a registered regulariser.
    """
    if not weights:
        return []
    if not isinstance(weights, Mapping):
        raise ValueError(f"{parameter} must be None or a dict of regulariser names to weights, "
                         f"got {weights!r}")
    from ._registry import weighted_factories

    return [factory(weight)
            for _, factory, weight in weighted_factories("regulariser", weights, parameter)]
