"""B-spline spatial transformer: control-point displacements made dense by a cubic B-spline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._encoder import ConvEncoder
from ._film import apply_film
from ._layers import LINEAR_MODE, check_spatial_dims, conv

_CONV_TRANSPOSE = {2: F.conv_transpose2d, 3: F.conv_transpose3d}


def cubic_bspline_kernel(spacing: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The cubic B-spline sampled every ``1/spacing``: ``4 * spacing - 1`` weights.

    Shifted copies ``spacing`` apart sum to one (partition of unity), so an
    interpolated displacement is never larger than its largest control point.
    """
    t = (torch.arange(4 * spacing - 1, dtype=torch.float64) - (2 * spacing - 1)).abs() / spacing
    inner = 2.0 / 3.0 - t**2 + t**3 / 2.0
    outer = (2.0 - t) ** 3 / 6.0
    return torch.where(t < 1, inner, outer).to(dtype)


def control_grid_shape(image_shape: tuple[int, ...], spacing: tuple[int, ...]) -> tuple[int, ...]:
    """Control points per axis: one before the image, and enough to cover it."""
    return tuple((size - 1) // step + 4 for size, step in zip(image_shape, spacing, strict=True))


def bspline_displacement(control: torch.Tensor, spacing: tuple[int, ...],
                         image_shape: tuple[int, ...]) -> torch.Tensor:
    """Dense field from control-point displacements.

    Control point ``j`` along an axis sits at voxel ``(j - 1) * spacing``.
    Each axis is interpolated in turn by a strided transposed convolution
    with the cubic kernel, then cropped to the image.

    Parameters
    ----------
    control : tensor of shape (n, D, *control_grid_shape)
    spacing : tuple of int
        Voxels between control points, per axis.
    image_shape : tuple of int

    Returns
    -------
    tensor of shape (n, D, *image_shape)
    """
    n, d = control.shape[0], len(spacing)   # d from a tuple, so tracing keeps it an int
    field = control.reshape(n * d, 1, *control.shape[2:])
    for axis, (step, size) in enumerate(zip(spacing, image_shape, strict=True)):
        kernel_shape = [1, 1] + [1] * d
        kernel_shape[2 + axis] = 4 * step - 1
        kernel = cubic_bspline_kernel(step, dtype=field.dtype).to(field.device)
        stride = [1] * d
        stride[axis] = step
        field = _CONV_TRANSPOSE[d](field, kernel.view(kernel_shape), stride=tuple(stride))
        field = field.narrow(2 + axis, 3 * step - 1, size)
    return field.reshape(n, d, *image_shape)


class BSplineSTN(nn.Module):
    """Regresses control-point displacements and returns the dense B-spline field.

    A convolutional encoder reduces the image to about the control grid's
    size; its features are resized to the grid exactly and a zero-initialised
    convolution outputs one displacement per axis and control point, capped
    at ``tanh(.) * max_displacement * size`` voxels per axis. A fresh STN is
    the identity.

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    in_channels : int
        Image channels.
    image_shape : tuple of int
        Spatial shape of the input.
    cp_spacing : tuple of int
        Voxels between control points per axis, each in ``[1, size]``.
    max_displacement : float, default=0.2
        Cap on displacements as a fraction of the image size, in ``[0, 1]``.
    nf : int, default=16
        Channels of the regressor's first convolution.
    """

    def __init__(self, spatial_dims: int, in_channels: int, image_shape: tuple[int, ...],
                 cp_spacing: tuple[int, ...], max_displacement: float = 0.2,
                 nf: int = 16) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.image_shape = tuple(int(size) for size in image_shape)
        self.cp_spacing = tuple(int(step) for step in cp_spacing)
        self.max_displacement = float(max_displacement)
        self.grid_shape = control_grid_shape(self.image_shape, self.cp_spacing)
        self.encoder = ConvEncoder(spatial_dims, in_channels, self.image_shape, nf,
                                   norm_kind="batch", p_dropout=0.0, until=max(self.grid_shape))
        self.head = conv(spatial_dims, self.encoder.out_channels, spatial_dims)
        self.film_channels = self.encoder.out_channels   # features an optional FiLM modulates
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        cap = torch.tensor([self.max_displacement * size for size in self.image_shape])
        self.register_buffer("_cap", cap.view(1, -1, *([1] * spatial_dims)), persistent=False)

    def control_points(self, x: torch.Tensor, film=None) -> torch.Tensor:
        """Capped control-point displacements ``(n, D, *grid_shape)`` in voxels.

        ``film``, optional: a ``(scale, shift)`` pair of ``(n, film_channels)``
        tensors modulating the features before the head.
        """
        features = F.interpolate(self.encoder(x), size=self.grid_shape,
                                 mode=LINEAR_MODE[self.spatial_dims], align_corners=False)
        if film is not None:
            features = apply_film(features, film)
        return torch.tanh(self.head(features)) * self._cap.to(features.dtype)

    def forward(self, x: torch.Tensor, film=None) -> torch.Tensor:
        """Displacement field ``(n, D, *spatial)`` in voxels (``film`` as in ``control_points``)."""
        return bspline_displacement(self.control_points(x, film), self.cp_spacing, self.image_shape)
