"""A learned smooth intensity field: a site's receive bias, between the ITN and the STN."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from ._coordinates import coordinate_channels
from ._itn import SQUEEZE


def monomial_exponents(spatial_dims: int, degree: int) -> list[tuple[int, ...]]:
    """Exponents of every monomial of the coordinates up to ``degree``, the constant first.

    In 3D, degree 1 gives 4 terms (1, x, y, z) and degree 2 gives 10.
    """
    return sorted((powers for powers in itertools.product(range(degree + 1), repeat=spatial_dims)
                   if sum(powers) <= degree), key=lambda powers: (sum(powers), powers[::-1]))


def monomial_basis(like: torch.Tensor, degree: int) -> torch.Tensor:
    """Every monomial of the voxel coordinates up to ``degree`` on ``like``'s grid.

    ``like`` is ``(n, C, *spatial)`` and gives the grid, dtype and device;
    the coordinates run from -1 to 1 along each axis. Returns
    ``(n_terms, *spatial)``, the terms in :func:`monomial_exponents`'s order.
    """
    coordinates = coordinate_channels(like[:1])[0]
    return torch.stack([torch.prod(torch.stack([c**k for c, k in zip(coordinates, powers,
                                                                      strict=True)]), dim=0)
                        for powers in monomial_exponents(len(coordinates), degree)])


class PolynomialBiasField(nn.Module):
    """``u -> u exp(a(p)) + b(p)`` on the foreground, ``a`` and ``b`` polynomials of position.

    ``u`` is an image in the ITN's working scale (``artanh(0.95 y)``, the
    inverse of its output's tanh) and ``p`` each voxel's position in
    [-1, 1] per axis. A scanner's receive bias multiplies the raw signal by
    a smooth field fixed in scanner coordinates; after the usual z-scoring
    inside the brain that is a smooth gain *and* a smooth offset, which is
    what ``a`` and ``b`` are. The coefficients are learned and the same for
    every image: the field describes the site, not the subject. A UNet can
    change intensities by position only through its zero padding; this
    module gives it the site's field with 2 coefficients per monomial.

    It sits after the ITN and before the STN (:class:`~istn_sk.nn.ISTN`), so
    the identity term on the ITN (``identity_on="itn"``) and the content
    losses do not hold it at zero on target images, as they do not hold the
    STN: only the adversarial term moves it.

    The arithmetic is float64 (the atanh's slope near ±1 turns float32
    rounding into differences of 1e-5 between runtimes), the output's clamp
    to [-1, 1] straight-through, as in the ITN's.

    Voxels of the input equal to its first voxel (the background: 0 outside
    a z-scored brain, -1 around a digit) are left as the ITN made them.

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    degree : int
        Highest total degree of the polynomials (1: a linear gradient, as
        a tilted receive coil; 2 adds curvature).
    """

    def __init__(self, spatial_dims: int, degree: int) -> None:
        super().__init__()
        self.spatial_dims = int(spatial_dims)
        self.degree = int(degree)
        self.exponents = monomial_exponents(self.spatial_dims, self.degree)
        self.gain = nn.Parameter(torch.zeros(len(self.exponents)))
        self.offset = nn.Parameter(torch.zeros(len(self.exponents)))

    def basis(self, like: torch.Tensor) -> torch.Tensor:
        """The monomials at every voxel of ``like``'s grid, ``(n_terms, *spatial)``."""
        return monomial_basis(like, self.degree)

    def fields(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The log-gain ``a`` and offset ``b`` on ``like``'s grid, each ``(1, 1, *spatial)``."""
        basis = self.basis(like)
        gain = torch.tensordot(self.gain.to(basis.dtype), basis, dims=1)
        offset = torch.tensordot(self.offset.to(basis.dtype), basis, dims=1)
        return gain[None, None], offset[None, None]

    def forward(self, y: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """``y`` (the ITN's output) with the field applied where ``reference`` is foreground.

        ``reference`` is the ITN's input, same shape as ``y``; its first voxel
        per image and channel is taken as the background value.
        """
        corner = reference.flatten(2)[:, :, :1].reshape(*reference.shape[:2],
                                                         *[1] * self.spatial_dims)
        foreground = (reference - corner).abs() > 1e-6
        # float64 through the atanh and back: its slope near +-1 would otherwise turn
        # float32 rounding into 1e-5 differences between runtimes (ONNX against torch)
        # (atanh as logs: ONNX Runtime has no float64 atanh)
        wide = SQUEEZE * y.double().clamp(-1.0, 1.0)
        gain, offset = self.fields(wide)
        u = 0.5 * (torch.log1p(wide) - torch.log1p(-wide))
        u = torch.where(foreground, u * torch.exp(gain) + offset, u)
        out = torch.tanh(u) / SQUEEZE
        return (out + (out.clamp(-1.0, 1.0) - out).detach()).to(y.dtype)
