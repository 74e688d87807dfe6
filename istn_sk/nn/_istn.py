"""The image-and-spatial transformer network: an ITN feeding an STN, trained as one unit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._warp import Warp


@dataclass(frozen=True)
class STNContext:
    """What an STN factory is told about the images it will transform.

    Attributes
    ----------
    image_shape : tuple of int
        Spatial shape; its length is the number of spatial dimensions.
    in_channels : int
        Image channels.
    nf : int
        Base number of filters chosen for the adapter's networks.
    cp_spacing : tuple of int
        Control-point spacing per axis (B-spline-like STNs).
    max_displacement : float
        Displacement cap as a fraction of the image size.
    options : dict
        Extra keyword options given by the user (``stn_options``), for
        third-party STNs.
    """

    image_shape: tuple[int, ...]
    in_channels: int
    nf: int
    cp_spacing: tuple[int, ...]
    max_displacement: float
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.image_shape)


class ISTN(nn.Module):
    """Appearance (ITN) then shape (STN): ``warp(itn(x), stn(itn(x)))``.

    With a ``bias_field``, ``f = bias_field(itn(x), x)`` stands between them:
    ``warp(f, stn(f))``.

    Parameters
    ----------
    itn : nn.Module or None
        Image transformer; None leaves intensities alone (STN only).
    stn : nn.Module or None
        Displacement-field builder; None applies no spatial transform (ITN
        only).
    warp : Warp, optional
        The sampler; a default :class:`Warp` when omitted.
    bias_field : nn.Module, optional
        A smooth intensity field applied to the ITN's output
        (:class:`~istn_sk.nn.PolynomialBiasField`); called as
        ``bias_field(appearance, x)``. It is not part of :meth:`appearance`,
        so an identity term on the ITN does not constrain it.
    """

    def __init__(self, itn: nn.Module | None, stn: nn.Module | None,
                 warp: Warp | None = None, bias_field: nn.Module | None = None) -> None:
        super().__init__()
        self.itn = itn
        self.stn = stn
        self.warp = Warp() if warp is None else warp
        self.bias_field = bias_field

    def forward(self, x: torch.Tensor, film=None) -> torch.Tensor:
        """Transformed images, same shape as ``x``."""
        return self.explain(x, film)["output"]

    @property
    def encoder_channels(self) -> tuple[int, ...] | None:
        """Channels of :meth:`encode`'s maps; None without an ITN (or one with no encoder)."""
        return getattr(self.itn, "encoder_channels", None)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ITN encoder's feature maps of ``x``, finest first (what content losses compare)."""
        return self.itn.encode(x)

    def appearance(self, x: torch.Tensor, film=None) -> torch.Tensor:
        """The ITN's output alone (``x`` itself without an ITN); ``film`` as in :meth:`explain`."""
        itn_film = (film or {}).get("itn")
        if self.itn is None:
            return x
        return self.itn(x) if itn_film is None else self.itn(x, itn_film)

    def explain(self, x: torch.Tensor, film=None) -> dict[str, torch.Tensor | None]:
        """Every stage of the transform.

        ``film``, optional: ``{"itn": [...], "stn": (scale, shift)}``, FiLM
        conditioning passed to the ITN and the STN (see
        :class:`~istn_sk.nn._film.SiteConditionedISTN`); None modulates nothing.

        Returns
        -------
        dict
            ``appearance``: the ITN output (``x`` itself without an ITN);
            ``displacement``: the field ``(n, D, *spatial)`` in voxels (None
            without an STN); ``output``: the final image.
        """
        film = film or {}
        appearance = self.appearance(x, film)
        corrected = appearance if self.bias_field is None else self.bias_field(appearance, x)
        if self.stn is None:
            return {"appearance": appearance, "displacement": None, "output": corrected}
        # Geometry in float32 even under bfloat16 autocast: a displacement of a tenth of a
        # voxel is lost in bfloat16 positions, and the STN's gradients with it.
        appearance, corrected = appearance.float(), corrected.float()
        stn_film = None if film.get("stn") is None else tuple(f.float() for f in film["stn"])
        with torch.autocast(appearance.device.type, enabled=False):
            displacement = (self.stn(corrected) if stn_film is None
                            else self.stn(corrected, stn_film))
            output = self.warp(corrected, displacement)
        return {"appearance": appearance, "displacement": displacement, "output": output}
