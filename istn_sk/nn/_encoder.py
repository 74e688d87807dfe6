"""The fully convolutional encoder shared by discriminators, task models and STNs."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import check_spatial_dims, conv, conv_block, n_halvings


class ConvEncoder(nn.Sequential):
    """A stride-1 convolution followed by stride-2 stages that double the channels.

    The number of stages follows the image size (until the largest side is at
    most 4: 28 -> 3 stages, 64 -> 4), channels are capped at ``8 * nf``, and
    the last stage applies dropout, as in the paper's discriminator and task
    networks.

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    in_channels : int
        Image channels.
    image_shape : tuple of int
        Spatial shape of the input.
    nf : int
        Channels of the first convolution.
    norm_kind : {"batch", "instance"} or None
        Normalisation of the stride-2 stages.
    p_dropout : float
        Drop probability of the last stage.
    until : int, default=4
        Stop adding stages once the largest side is at most this.
    """

    def __init__(self, spatial_dims: int, in_channels: int, image_shape: tuple[int, ...],
                 nf: int, *, norm_kind: str | None, p_dropout: float, until: int = 4) -> None:
        check_spatial_dims(spatial_dims)
        n_stages = n_halvings(image_shape, until, highest=5)
        layers = [conv_block(spatial_dims, in_channels, nf, norm_kind=None)]
        channels = nf
        for stage in range(n_stages):
            out = min(nf * 2 ** (stage + 1), nf * 8)
            last = stage == n_stages - 1
            layers.append(conv_block(spatial_dims, channels, out, stride=2, norm_kind=norm_kind,
                                     p_dropout=p_dropout if last else 0.0))
            channels = out
        super().__init__(*layers)
        self.out_channels = channels


class FullyConvolutionalNet(nn.Module):
    """Encoder, a stride-2 output convolution and a global mean: one vector per image.

    This is the paper's discriminator (instance norm, one logit) and task
    network (batch norm, one output per class or target). It returns raw
    scores (logits); apply a sigmoid or softmax outside.

    Parameters
    ----------
    spatial_dims : int
        2 or 3.
    in_channels : int
        Image channels.
    image_shape : tuple of int
        Spatial shape of the input.
    n_outputs : int, default=1
        Length of the output vector.
    nf : int, default=32
        Channels of the first convolution.
    norm_kind : {"batch", "instance"} or None, default="instance"
        Normalisation of the encoder stages.
    p_dropout : float, default=0.5
        Dropout before the output convolution.
    """

    def __init__(self, spatial_dims: int, in_channels: int, image_shape: tuple[int, ...],
                 n_outputs: int = 1, nf: int = 32, norm_kind: str | None = "instance",
                 p_dropout: float = 0.5) -> None:
        super().__init__()
        self.encoder = ConvEncoder(spatial_dims, in_channels, tuple(image_shape), nf,
                                   norm_kind=norm_kind, p_dropout=p_dropout)
        self.head = conv(spatial_dims, self.encoder.out_channels, n_outputs, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(n, n_outputs)`` for images ``(n, C, *spatial)``."""
        return self.head(self.encoder(x)).flatten(2).mean(dim=2)
