"""The image transformer network (ITN): appearance changes at the image level."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._coordinates import coordinate_channels
from ._film import apply_film
from ._layers import LINEAR_MODE, check_spatial_dims, conv, conv_block, n_halvings

ITN_OUTPUTS = ("full_range", "clip", "tanh")
#: ``full_range`` works on images squeezed into ±0.95 (artanh(±0.95) = ±1.83), so the
#: tanh has headroom past ±1: exact ±1 (real background) is reachable, not only approached.
SQUEEZE = 0.95


def full_range_output(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``clamp(tanh(artanh(0.95 x) + h) / 0.95, -1, 1)``, the clamp straight-through.

    The identity for ``h = 0``; any value in [-1, 1] is reachable from any
    input, exact ±1 included (real images have an exact background, and a
    map that only approaches it is told apart by any linear classifier);
    the clamp's gradient is that of the identity, so no pixel is ever cut off
    from training.
    """
    y = torch.tanh(torch.atanh(SQUEEZE * x) + h) / SQUEEZE
    return y + (y.clamp(-1.0, 1.0) - y).detach()


class ImageTransformerNetwork(nn.Module):
    """A UNet with additive (residual) skips, upsample+conv decoder and tanh output.

    Encoder: a stride-1 block with ``nf`` channels, then ``depth`` stride-2
    blocks doubling the channels; bottleneck: two blocks (``2x`` then back);
    decoder: per level, linear upsampling to the skip's exact size, a block,
    and the skip added. Works for any input size, odd ones included.

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    in_channels : int
        Image channels (the output has the same number).
    image_shape : tuple of int
        Spatial shape of the input; chooses ``depth`` when it is None.
    nf : int, default=16
        Channels of the first block.
    depth : int, optional
        Number of stride-2 levels; by default halvings of the largest side
        until it is at most 8 (28 -> 2, 64 -> 3), as in the paper.
    p_dropout : float, optional
        Dropout in the decoder blocks; by default 0 in 2D and 0.5 in 3D, as in
        the paper.
    output : {"full_range", "clip", "tanh"}, default="full_range"
        How the last convolution's map ``h`` becomes an image.
        ``"full_range"``: :func:`full_range_output`; with the last
        convolution zero-initialised a fresh ITN is the identity (like the
        STNs), every output in [-1, 1] is reachable from every input (a
        background pixel can become a stroke) and no gradient is ever cut. ``"clip"``:
        ``clip(x + tanh(h), -1, 1)``, also the identity at initialisation,
        but a pixel moves by less than 1, so background (-1) cannot pass
        mid-grey, and the clip zeroes gradients at both ends. ``"tanh"``:
        the paper's plain ``tanh(h)``, full range but not the identity at
        initialisation.
    coordinates : bool, default=False
        Give the encoder each voxel's position as ``spatial_dims`` extra input
        channels (:func:`~istn_sk.nn._coordinates.coordinate_channels`), so
        the ITN can change intensities by position (a site's receive bias
        field), which a convolutional network otherwise infers only from the
        zero padding at the borders. The output keeps ``in_channels``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, image_shape: tuple[int, ...],
                 nf: int = 16, depth: int | None = None, p_dropout: float | None = None,
                 output: str = "full_range", coordinates: bool = False) -> None:
        super().__init__()
        if output not in ITN_OUTPUTS:
            raise ValueError(f"output must be one of {ITN_OUTPUTS}, got {output!r}")
        self.output = output
        self.coordinates = bool(coordinates)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if depth is None:
            depth = n_halvings(tuple(image_shape), 8, highest=4)
        if p_dropout is None:
            p_dropout = 0.0 if spatial_dims == 2 else 0.5
        widths = [nf * 2**level for level in range(depth + 1)]
        self.stem = conv_block(spatial_dims, in_channels + spatial_dims * self.coordinates, nf)
        self.down = nn.ModuleList(
            conv_block(spatial_dims, widths[level], widths[level + 1], stride=2)
            for level in range(depth)
        )
        self.bottleneck = nn.Sequential(
            conv_block(spatial_dims, widths[-1], 2 * widths[-1]),
            conv_block(spatial_dims, 2 * widths[-1], widths[-1]),
        )
        self.up = nn.ModuleList(
            conv_block(spatial_dims, widths[level + 1], widths[level], p_dropout=p_dropout)
            for level in reversed(range(depth))
        )
        self.out = conv(spatial_dims, nf, in_channels)
        #: Channels of the maps an optional FiLM conditioning modulates, in ``forward``'s
        #: order: the bottleneck output, then each decoder level's output (coarse to fine).
        self.film_channels = (widths[-1], *reversed(widths[:-1]))
        #: Channels of the maps :meth:`encode` returns, finest first.
        self.encoder_channels = tuple(widths)
        if output != "tanh":
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps, finest first: the stem's, then each stride-2 level's.

        Their channels are ``encoder_channels``; a content loss compares them
        between an image and its transformed version.
        """
        if self.coordinates:
            x = torch.cat([x, coordinate_channels(x)], dim=1)
        features = [self.stem(x)]
        for block in self.down:
            features.append(block(features[-1]))
        return features

    def forward(self, x: torch.Tensor, film=None) -> torch.Tensor:
        """Transformed images, same shape as ``x``, in [-1, 1].

        ``film``, optional: one ``(scale, shift)`` pair of ``(n, C)`` tensors per
        entry of ``film_channels``; each map ``h`` becomes ``h * (1 + scale) + shift``
        (:func:`~istn_sk.nn._film.apply_film`). None (the default) modulates nothing.
        """
        skips = self.encode(x)
        h = self.bottleneck(skips.pop())
        if film is not None:
            h = apply_film(h, film[0])
        mode = LINEAR_MODE[self.spatial_dims]
        for level, block in enumerate(self.up):
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[2:], mode=mode, align_corners=False)
            h = block(h) + skip
            if film is not None:
                h = apply_film(h, film[level + 1])
        h = self.out(h)
        if self.output == "full_range":
            return full_range_output(x.clamp(-1.0, 1.0), h)
        if self.output == "clip":
            return (x + torch.tanh(h)).clamp(-1.0, 1.0)
        return torch.tanh(h)
