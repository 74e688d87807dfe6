"""Layer constructors generic over 2D and 3D images."""

from __future__ import annotations

import numpy as np
from torch import nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_DROPOUT = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}
LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 2 or 3, else raise ``ValueError``."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv(spatial_dims: int, in_channels: int, out_channels: int, *, kernel_size: int = 3,
         stride: int = 1, bias: bool = True) -> nn.Module:
    """A same-padded convolution (odd kernel) for ``spatial_dims``-D images."""
    return _CONV[spatial_dims](in_channels, out_channels, kernel_size, stride=stride,
                               padding=kernel_size // 2, bias=bias)


def norm(spatial_dims: int, kind: str | None, channels: int) -> nn.Module:
    """Batch (``"batch"``) or instance (``"instance"``) norm, or identity (``None``)."""
    if kind is None:
        return nn.Identity()
    if kind == "batch":
        return _BATCH_NORM[spatial_dims](channels)
    if kind == "instance":
        return _INSTANCE_NORM[spatial_dims](channels, affine=True)
    raise ValueError(f"norm must be 'batch', 'instance' or None, got {kind!r}")


def dropout(spatial_dims: int, p: float) -> nn.Module:
    """Channel dropout with drop probability ``p``, or identity when ``p == 0``."""
    return _DROPOUT[spatial_dims](p) if p > 0 else nn.Identity()


def conv_block(spatial_dims: int, in_channels: int, out_channels: int, *, stride: int = 1,
               norm_kind: str | None = "batch", p_dropout: float = 0.0,
               kernel_size: int = 3) -> nn.Sequential:
    """Convolution, normalisation, dropout and ReLU, the unit every network here uses."""
    return nn.Sequential(
        conv(spatial_dims, in_channels, out_channels, kernel_size=kernel_size, stride=stride,
             bias=norm_kind is None),
        norm(spatial_dims, norm_kind, out_channels),
        dropout(spatial_dims, p_dropout),
        nn.ReLU(inplace=True),
    )


def n_halvings(image_shape: tuple[int, ...], until: int, *, highest: int) -> int:
    """How often the largest side of ``image_shape`` halves before reaching ``until``.

    At most ``highest``; networks use it to choose their depth from the image
    size (28 -> 2 for the ITN, 64 -> 3). Halving stops before an image would
    shrink to a single voxel, which normalisation layers cannot train on.
    """
    shape, count = list(image_shape), 0
    while max(shape) > until:
        halved = [(size + 1) // 2 for size in shape]
        if count >= highest or np.prod(halved) <= 1:
            break
        shape = halved
        count += 1
    return count
