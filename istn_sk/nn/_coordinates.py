"""Voxel coordinates as extra input channels (CoordConv, Liu et al. 2018), for discriminators."""

from __future__ import annotations

import torch
from torch import nn


def coordinate_channels(like: torch.Tensor) -> torch.Tensor:
    """Each voxel's position, one channel per spatial axis from -1 to 1: ``(n, D, *spatial)``.

    Parameters
    ----------
    like : tensor of shape (n, C, *spatial)
        Gives the batch size, spatial shape, dtype and device.
    """
    spatial = like.shape[2:]
    axes = [torch.linspace(-1.0, 1.0, size, dtype=like.dtype, device=like.device)
            for size in spatial]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    return grid.unsqueeze(0).expand(like.shape[0], *grid.shape)


class WithCoordinates(nn.Module):
    """``network`` applied to the images with :func:`coordinate_channels` appended.

    A fully convolutional discriminator that ends in a mean over positions
    knows *where* content lies only through the zero padding at its borders.
    With the coordinates as inputs, the affine STN found a synthetic
    translation of every source image on every seed and thread count tried,
    where without them one axis often drifted the wrong way
    (docs/results.md). Why is not settled: trained as a plain classifier of
    two position distributions, a discriminator without coordinates does as
    well as one with them, so the gain is in the game (what the STN is
    pushed towards), not in what the discriminator can tell apart.

    Parameters
    ----------
    network : nn.Module
        Takes ``C + D`` channels for images of ``C`` channels and ``D`` spatial axes.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``network(cat([x, coordinates]))``."""
        return self.network(torch.cat([x, coordinate_channels(x)], dim=1))
