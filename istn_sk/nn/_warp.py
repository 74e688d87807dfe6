"""Sampling images at displaced positions: the one place that calls ``grid_sample``.

Displacement fields here are dense, in voxel units, with channel ``i``
displacing along spatial axis ``i`` (tensor order, not ``grid_sample``'s
reversed x/y/z order). Builders (affine, B-spline, plugins) produce such a
field; :class:`Warp` samples an image with it. The reference grid and the
sampler use the same ``align_corners=True`` convention, so a zero field gives
the input back to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def voxel_grid(shape: tuple[int, ...], *, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Voxel coordinates ``(len(shape), *shape)``; channel ``i`` holds indices along axis ``i``."""
    axes = [torch.arange(size, dtype=dtype, device=device) for size in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


class Warp(nn.Module):
    """Resample images at ``identity + displacement`` with (bi/tri)linear interpolation.

    Parameters
    ----------
    padding_mode : {"border", "zeros", "reflection"}, default="border"
        Value used for positions outside the image (``grid_sample``'s modes).
    """

    def __init__(self, padding_mode: str = "border") -> None:
        super().__init__()
        self.padding_mode = padding_mode

    def forward(self, image: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
        """Warp ``image`` ``(n, C, *spatial)`` by ``displacement`` ``(n, D, *spatial)``.

        Linear interpolation only: nearest-neighbour sampling would give zero
        gradients with respect to the field.
        """
        spatial = image.shape[2:]
        if displacement.shape[1] != len(spatial) or displacement.shape[2:] != spatial:
            raise ValueError(
                f"displacement of shape {tuple(displacement.shape)} does not fit images of "
                f"shape {tuple(image.shape)}: expected "
                f"(n, {len(spatial)}, {', '.join(map(str, spatial))})"
            )
        position = voxel_grid(tuple(spatial), dtype=displacement.dtype,
                              device=displacement.device) + displacement
        extent = torch.tensor([max(size - 1, 1) for size in spatial], dtype=displacement.dtype,
                              device=displacement.device)
        extent = extent.view(1, -1, *([1] * len(spatial)))
        normalised = 2.0 * position / extent - 1.0
        grid = normalised.flip(1).movedim(1, -1)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode=self.padding_mode,
                             align_corners=True)
