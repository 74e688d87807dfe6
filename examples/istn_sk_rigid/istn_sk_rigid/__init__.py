"""istn-sk-rigid: a rigid (rotation + translation) spatial transformer, added as a plugin.

The distribution declares this module as an ``istn_sk`` entry point; istn-sk
finds it at start-up and calls the hook below, after which
``ISTNAdapter(stn="rigid")`` works. Only istn-sk's public API is used.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import istn_sk
from istn_sk.nn import ConvEncoder, STNContext, affine_displacement

__all__ = ["RigidSTN", "make_rigid", "istn_sk_register_spatial_transformers"]


class RigidSTN(nn.Module):
    """Regresses a rotation about the image centre and a translation per image.

    The rotation is the matrix exponential of a skew-symmetric matrix built
    from ``D(D-1)/2`` angles (one in 2D, three in 3D), so it is a proper
    rotation for any network output. The head is zero-initialised: a fresh
    STN returns a zero displacement field (the identity).

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    in_channels : int
        Image channels.
    image_shape : tuple of int
        Spatial shape of the input.
    nf : int, default=16
        Channels of the regressor's first convolution.
    max_translation : float, default=0.25
        Largest translation as a fraction of half the image extent.
    max_angle : float, default=pi/4
        Largest absolute value of each rotation angle, in radians.
    """

    def __init__(self, spatial_dims: int, in_channels: int, image_shape: tuple[int, ...],
                 nf: int = 16, max_translation: float = 0.25,
                 max_angle: float = math.pi / 4) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.max_translation = max_translation
        self.max_angle = max_angle
        self.encoder = ConvEncoder(spatial_dims, in_channels, tuple(image_shape), nf,
                                   norm_kind="batch", p_dropout=0.0)
        n_angles = spatial_dims * (spatial_dims - 1) // 2
        self.head = nn.Linear(self.encoder.out_channels, n_angles + spatial_dims)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("_upper", torch.triu_indices(spatial_dims, spatial_dims, offset=1),
                             persistent=False)
        half_extent = torch.tensor([(size - 1) / 2 for size in image_shape])
        self.register_buffer("_half_extent", half_extent, persistent=False)

    def motion(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rigid motion regressed for images ``x`` ``(n, C, *spatial)``.

        Returns
        -------
        rotation : tensor of shape (n, D, D)
            Orthogonal, determinant 1; it turns about the image centre.
        translation : tensor of shape (n, D)
            In voxels.
        """
        raw = torch.tanh(self.head(self.encoder(x).flatten(2).mean(dim=2)))
        n_angles = raw.shape[1] - self.spatial_dims
        skew = raw.new_zeros(raw.shape[0], self.spatial_dims, self.spatial_dims)
        skew[:, self._upper[0], self._upper[1]] = raw[:, :n_angles] * self.max_angle
        rotation = torch.linalg.matrix_exp(skew - skew.transpose(1, 2))
        translation = raw[:, n_angles:] * self.max_translation * self._half_extent.to(raw.dtype)
        return rotation, translation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Displacement field ``(n, D, *spatial)`` in voxels."""
        rotation, translation = self.motion(x)
        return affine_displacement(rotation, translation, tuple(x.shape[2:]))


def make_rigid(context: STNContext) -> RigidSTN:
    """STN factory: a :class:`RigidSTN`; ``stn_options`` go to its constructor."""
    return RigidSTN(context.spatial_dims, context.in_channels, context.image_shape,
                    nf=context.nf, **context.options)


@istn_sk.hookimpl
def istn_sk_register_spatial_transformers(register: istn_sk.Register) -> None:
    """Register the ``rigid`` STN type."""
    register.add("rigid", make_rigid, description="rotation about the centre + translation")
