"""Content losses on the ITN: what an image keeps through the appearance change.

A content loss compares the ITN encoder's features of a source image with
those of the ITN's output for it, position by position (the ITN does not move
content, so the two are aligned even when an STN follows). The built-in one is
PatchNCE (Park et al. 2020, *Contrastive learning for unpaired image-to-image
translation*): a patch of the output must be more like the patch at the same
place in the input than like any other patch of that input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Positions sampled per image and feature level, as in CUT.
N_PATCHES = 256
#: Temperature of the contrastive softmax, as in CUT.
TEMPERATURE = 0.07
#: Width of the two-layer projection heads.
HEAD_WIDTH = 64


def _projection_head(channels: int, width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(channels, width), nn.ReLU(), nn.Linear(width, width))


class PatchNCELoss(nn.Module):
    """Patch-wise contrastive content loss between an image's features and its output's.

    At every feature level the same ``n_patches`` random positions are taken
    in both maps (all of them when there are fewer); each feature vector goes
    through that level's projection head (two linear layers, ReLU between)
    and is L2-normalised. For each output patch (the query) the input patch
    at the same position is the positive and the other sampled input patches
    of the same image are the negatives: the loss is the cross-entropy of
    picking the positive from ``query · keys / temperature``, averaged over
    patches, images and levels, times ``weight``. The input's features are
    the keys and carry no gradient; the heads learn with the ISTN.

    Parameters
    ----------
    weight : float
        Weight of the loss in the ISTN's objective (CUT's λ_NCE).
    channels : sequence of int
        Channels of each feature level (the ITN's ``encoder_channels``).
    n_patches : int, default=256
    temperature : float, default=0.07
    head_width : int, default=64
    """

    def __init__(self, weight: float, channels: Sequence[int], n_patches: int = N_PATCHES,
                 temperature: float = TEMPERATURE, head_width: int = HEAD_WIDTH) -> None:
        super().__init__()
        self.weight = weight
        self.n_patches = n_patches
        self.temperature = temperature
        self.heads = nn.ModuleList(_projection_head(c, head_width) for c in channels)

    def _project(self, head: nn.Module, features: torch.Tensor,
                 positions: torch.Tensor) -> torch.Tensor:
        """``(n, len(positions), head_width)`` unit vectors of ``features`` at ``positions``."""
        flat = features.flatten(2).transpose(1, 2)[:, positions]
        return F.normalize(head(flat), dim=-1)

    def forward(self, source_features: Sequence[torch.Tensor],
                mapped_features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The weighted loss (a scalar) for one batch.

        Parameters
        ----------
        source_features, mapped_features : sequence of tensors
            Per level, ``(n, C, *spatial)`` features of the input images and
            of their transformed versions, in the order of ``channels``.
        """
        total = 0.0
        for head, keys, queries in zip(self.heads, source_features, mapped_features,
                                       strict=True):
            n_positions = keys[0, 0].numel()
            positions = torch.randperm(n_positions, device=keys.device)[:self.n_patches]
            k = self._project(head, keys.detach(), positions).detach()
            q = self._project(head, queries, positions)
            logits = q @ k.transpose(1, 2) / self.temperature
            positives = torch.arange(len(positions), device=logits.device)
            total = total + F.cross_entropy(logits.flatten(0, 1),
                                            positives.repeat(len(logits)))
        return self.weight * total / len(self.heads)


def build_content_losses(weights: Mapping[str, float] | str | None, channels: Sequence[int],
                         parameter: str = "content_losses") -> nn.ModuleList:
    """One module per ``{name: weight}`` entry, from the registered content losses.

    Parameters
    ----------
    weights : dict of str to float, str or None
        A name alone stands for ``{name: 1.0}``.
    channels : sequence of int
        The ITN's ``encoder_channels``, passed to every factory.
    parameter : str
        The adapter parameter named in errors.

    Raises
    ------
    ValueError
        ``weights`` is not a mapping of names to non-negative finite numbers,
        or a factory does not return a :class:`torch.nn.Module`.
    istn_sk.PluginError
        A name is not a registered content loss.
    """
    if not weights:
        return nn.ModuleList()
    if isinstance(weights, str):
        weights = {weights: 1.0}
    if not isinstance(weights, Mapping):
        raise ValueError(f"{parameter} must be None, a content-loss name or a dict of names "
                         f"to weights, got {weights!r}")
    from ._registry import weighted_factories

    built = nn.ModuleList()
    for name, factory, weight in weighted_factories("content_loss", weights, parameter):
        loss = factory(weight, tuple(channels))
        if not isinstance(loss, nn.Module):
            raise ValueError(f"the content loss {name!r} factory returned "
                             f"{type(loss).__name__}, not a torch.nn.Module")
        built.append(loss)
    return built
