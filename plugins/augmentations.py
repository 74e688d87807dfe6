"""Built-in augmentation policies: ``reference``, ``shift``, ``translation_cutout``, ``lowpass``.

A policy given as ``augmentation`` is applied to every training batch (the
ISTN's source and target images, a task model's images); one given as the
adapter's ``dis_augmentation`` to every discriminator input (DiffAugment);
never at ``transform`` or ``predict`` time.
It draws from torch's global random stream, which ``fit`` seeds from
``random_state``: the same seed gives the same augmented batches.
"""

from __future__ import annotations

from collections.abc import Callable

from istn_sk.hookspecs import hookimpl


def reference_policy() -> Callable:
    """The reference code's training augmentation, for 2D and 3D batches.

    Each image, independently and each with probability 0.5: a random
    translation by a whole number of voxels in [-3, 3] along every spatial
    axis (the uncovered border takes the image's own minimum, its
    background), and a flip along the last array axis.
    """
    from istn_sk._augment import RandomShiftFlip

    return RandomShiftFlip(max_shift=3, p_shift=0.5, p_flip=0.5)


def shift_policy() -> Callable:
    """The reference policy without the flip: for images whose left and right differ in meaning."""
    from istn_sk._augment import RandomShiftFlip

    return RandomShiftFlip(max_shift=3, p_shift=0.5, p_flip=0.0)


def translation_cutout_policy() -> Callable:
    """DiffAugment's translation (up to 1/8 of each side) and cutout (half of each side)."""
    from istn_sk._augment import TranslateCutout

    return TranslateCutout(translation=0.125, cutout=0.5)


def lowpass_policy() -> Callable:
    """A Gaussian blur of sigma 1 voxel, for discriminator inputs: the noise hidden from D."""
    from istn_sk._augment import GaussianLowPass

    return GaussianLowPass(sigma=1.0)


@hookimpl
def istn_sk_register_augmentations(register) -> None:
    """Register the built-in augmentation policies."""
    register.add("reference", reference_policy,
                 description="p=0.5 shift by up to ±3 voxels, p=0.5 flip of the last axis")
    register.add("shift", shift_policy, description="p=0.5 shift by up to ±3 voxels")
    register.add("translation_cutout", translation_cutout_policy,
                 description="DiffAugment's shift by 1/8 and cutout of 1/2 (for D inputs)")
    register.add("lowpass", lowpass_policy,
                 description="Gaussian blur, sigma 1 voxel (for D inputs: hides the noise)")
