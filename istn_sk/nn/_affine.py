"""Affine spatial transformer: translation, rotation, scale and shear regressed from the image."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._encoder import ConvEncoder
from ._film import apply_film
from ._layers import check_spatial_dims
from ._warp import voxel_grid


def affine_displacement(matrix: torch.Tensor, translation: torch.Tensor,
                        shape: tuple[int, ...]) -> torch.Tensor:
    """Dense displacement of the map ``q -> matrix @ q + translation``.

    ``q`` are voxel coordinates relative to the image centre, so rotations
    and scalings turn about the centre and are isotropic in voxel units.

    Parameters
    ----------
    matrix : tensor of shape (n, D, D)
    translation : tensor of shape (n, D)
        In voxels.
    shape : tuple of int
        The D spatial sizes.

    Returns
    -------
    tensor of shape (n, D, *shape)
        Displacement in voxels, channel ``i`` along axis ``i``.
    """
    grid = voxel_grid(shape, dtype=matrix.dtype, device=matrix.device)
    centre = torch.tensor([(size - 1) / 2 for size in shape], dtype=matrix.dtype,
                          device=matrix.device)
    q = (grid - centre.view(-1, *([1] * len(shape)))).flatten(1)
    moved = matrix @ q + translation.unsqueeze(-1)
    return (moved - q).view(matrix.shape[0], len(shape), *shape)


class AffineSTN(nn.Module):
    """Regresses an affine map per image and returns its displacement field.

    The map is ``R @ Sh @ S`` plus a translation: ``R`` a rotation (matrix
    exponential of a skew-symmetric matrix, so one code path serves 2D and
    3D), ``Sh`` an upper-triangular shear, ``S`` a diagonal scale. Heads are
    zero-initialised, so a fresh STN is the identity. Parameters are capped as
    in the original ISTN code: rotation and shear angles ``tanh(.) * pi/4``,
    scale ``exp(tanh(.) * max_log_scale)``, translation ``tanh(.) *
    max_translation`` of the half extent.

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
        Largest rotation and shear angle, in radians.
    max_log_scale : float, default=0.2
        Largest absolute log-scale.
    """

    def __init__(self, spatial_dims: int, in_channels: int, image_shape: tuple[int, ...],
                 nf: int = 16, max_translation: float = 0.25, max_angle: float = math.pi / 4,
                 max_log_scale: float = 0.2) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.image_shape = tuple(int(size) for size in image_shape)
        self.max_translation = max_translation
        self.max_angle = max_angle
        self.max_log_scale = max_log_scale
        d = spatial_dims
        self.n_pairs = d * (d - 1) // 2
        self.encoder = ConvEncoder(d, in_channels, self.image_shape, nf, norm_kind="batch",
                                   p_dropout=0.0)
        self.head = nn.Linear(self.encoder.out_channels, 2 * self.n_pairs + 2 * d)
        self.film_channels = self.encoder.out_channels   # features an optional FiLM modulates
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        rows, cols = torch.triu_indices(d, d, offset=1)
        self.register_buffer("_upper_rows", rows, persistent=False)
        self.register_buffer("_upper_cols", cols, persistent=False)

    def parameters_of(self, x: torch.Tensor, film=None) -> dict[str, torch.Tensor]:
        """The capped transform parameters for images ``x``.

        ``film``, optional: a ``(scale, shift)`` pair of ``(n, film_channels)``
        tensors modulating the pooled features before the head.

        Returns
        -------
        dict
            ``rotation`` and ``shear`` angles ``(n, D(D-1)/2)`` in radians,
            ``scale`` ``(n, D)``, ``translation`` ``(n, D)`` in voxels.
        """
        features = self.encoder(x).flatten(2).mean(dim=2)
        if film is not None:
            features = apply_film(features, film)
        raw = torch.tanh(self.head(features))
        k, d = self.n_pairs, self.spatial_dims
        half_extent = torch.tensor([(size - 1) / 2 for size in self.image_shape],
                                   dtype=raw.dtype, device=raw.device)
        return {
            "rotation": raw[:, :k] * self.max_angle,
            "shear": raw[:, k:2 * k] * self.max_angle,
            "scale": torch.exp(raw[:, 2 * k:2 * k + d] * self.max_log_scale),
            "translation": raw[:, 2 * k + d:] * self.max_translation * half_extent,
        }

    def matrix_of(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The linear part ``R @ Sh @ S`` ``(n, D, D)`` of the transform."""
        n, d = params["scale"].shape
        eye = torch.eye(d, dtype=params["scale"].dtype, device=params["scale"].device)
        skew = params["scale"].new_zeros(n, d, d)
        skew[:, self._upper_rows, self._upper_cols] = params["rotation"]
        rotation = torch.linalg.matrix_exp(skew - skew.transpose(1, 2))
        shear = eye.repeat(n, 1, 1)
        shear[:, self._upper_rows, self._upper_cols] = torch.tan(params["shear"])
        return rotation @ shear @ torch.diag_embed(params["scale"])

    def forward(self, x: torch.Tensor, film=None) -> torch.Tensor:
        """Displacement field ``(n, D, *spatial)`` in voxels (``film`` as in ``parameters_of``)."""
        params = self.parameters_of(x, film)
        return affine_displacement(self.matrix_of(params), params["translation"],
                                   tuple(x.shape[2:]))
