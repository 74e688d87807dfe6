"""Random augmentation of training batches, and the lookup of a named policy."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


class RandomShiftFlip:
    """Per image, each with its own chance: a whole-voxel translation, then a last-axis flip.

    Parameters
    ----------
    max_shift : int
        Largest translation in voxels along each spatial axis; offsets are
        drawn uniformly from ``[-max_shift, max_shift]``.
    p_shift, p_flip : float
        Probability that an image is translated / flipped.

    Notes
    -----
    Works on ``(n, C, *spatial)`` tensors of any spatial rank. The border a
    translation uncovers takes the image's own minimum (the background of
    images in [-1, 1]). Random numbers come from torch's global stream.
    The reference code draws its offsets with numpy's exclusive upper bound
    (``randint(-3, 3)`` in-plane and ``randint(-3, 1)`` along the last axis,
    so [-3, 2] and [-3, 0]) and pads with 0; here the offsets are symmetric
    and the border is the image's background, on purpose.
    """

    def __init__(self, max_shift: int, p_shift: float, p_flip: float) -> None:
        self.max_shift = max_shift
        self.p_shift = p_shift
        self.p_flip = p_flip

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        n, spatial = len(images), images.shape[2:]
        shifted = torch.rand(n) < self.p_shift
        offsets = torch.randint(-self.max_shift, self.max_shift + 1, (n, len(spatial)))
        flipped = torch.rand(n) < self.p_flip
        out = images.clone()
        for i in torch.nonzero(shifted).flatten().tolist():
            out[i] = _translate(images[i], offsets[i].tolist())
        if flipped.any():
            out[flipped] = out[flipped].flip(-1)
        return out


class TranslateCutout:
    """DiffAugment's translation and cutout (Zhao et al. 2020), for discriminator inputs.

    Every image is translated by a whole number of voxels in
    ``[-shift, shift]`` per axis, ``shift = round(translation * side)``
    (border at the image's minimum), then a box of ``cutout`` times each side,
    at a random place, is set to 0 (mid-grey in [-1, 1]). Both steps are
    differentiable in the image, so the ISTN learns through them.

    Parameters
    ----------
    translation : float
        Largest shift as a fraction of each side (DiffAugment: 1/8).
    cutout : float
        Box side as a fraction of each side (DiffAugment: 1/2).
    """

    def __init__(self, translation: float, cutout: float) -> None:
        self.translation = translation
        self.cutout = cutout

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        n, spatial = len(images), images.shape[2:]
        shifts = [max(1, round(self.translation * side)) for side in spatial]
        offsets = torch.stack([torch.randint(-s, s + 1, (n,)) for s in shifts], dim=1)
        moved = torch.stack([_translate(image, offset.tolist())
                             for image, offset in zip(images, offsets, strict=True)])
        keep = torch.ones_like(moved[:, :1])
        for i in range(n):
            box = [slice(None)]
            for side in spatial:
                size = max(1, round(self.cutout * side))
                start = int(torch.randint(0, side - size + 1, (1,)))
                box.append(slice(start, start + size))
            keep[(i, *box)] = 0.0
        return moved * keep


class GaussianLowPass:
    """A Gaussian blur of every image (separable, per spatial axis), for discriminator inputs.

    Deterministic and differentiable. Shown to the discriminator, real and
    fake alike, it hides what the ISTN cannot change: a deterministic map
    cannot add the target site's independent noise, so a discriminator that
    sees the noise wins on it whatever the ITN does to contrast, bias field
    or shape. Borders are replicated.

    Parameters
    ----------
    sigma : float
        Standard deviation in voxels; the kernel spans ``2 * ceil(3 sigma) + 1``.
    """

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        radius = max(1, math.ceil(3 * self.sigma))
        offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
        kernel = torch.exp(-0.5 * (offsets / self.sigma) ** 2)
        kernel = kernel / kernel.sum()
        n, channels, *spatial = images.shape
        out = images.reshape(n * channels, 1, *spatial)
        convolve = F.conv2d if len(spatial) == 2 else F.conv3d
        for axis in range(len(spatial)):
            shape = [1, 1] + [1] * len(spatial)
            shape[2 + axis] = len(offsets)
            padding = [0, 0] * len(spatial)
            padding[2 * (len(spatial) - 1 - axis):2 * (len(spatial) - axis)] = [radius, radius]
            out = convolve(F.pad(out, padding, mode="replicate"), kernel.view(shape))
        return out.reshape(n, channels, *spatial)


def _translate(image: torch.Tensor, offsets: list[int]) -> torch.Tensor:
    """``image`` (C, *spatial) moved by ``offsets`` voxels, the uncovered border at its minimum."""
    moved = torch.full_like(image, image.detach().min().item())
    target, source = [slice(None)], [slice(None)]
    for size, offset in zip(image.shape[1:], offsets, strict=True):
        target.append(slice(max(offset, 0), size + min(offset, 0)))
        source.append(slice(max(-offset, 0), size + min(-offset, 0)))
    moved[tuple(target)] = image[tuple(source)]
    return moved


def get_augmentation(name: str | None, parameter: str = "augmentation") -> Callable | None:
    """The registered policy called ``name`` (a callable on batches), or None for None.

    Raises
    ------
    istn_sk.PluginError
        ``name`` is not a registered augmentation policy.
    """
    if name is None:
        return None
    from ._registry import get_registry

    return get_registry().get("augmentation", name, parameter=parameter).factory()
