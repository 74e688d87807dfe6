"""Built-in spatial transformers: ``affine``, ``bspline`` and ``none``.

The networks are imported when a factory runs, so listing plugins stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from istn_sk.hookspecs import hookimpl

if TYPE_CHECKING:
    from torch import nn

    from istn_sk.nn import STNContext


def make_affine(context: STNContext) -> nn.Module:
    """Affine STN (translation, rotation, scale, shear); extra options go to :class:`AffineSTN`."""
    from istn_sk.nn import AffineSTN

    return AffineSTN(context.spatial_dims, context.in_channels, context.image_shape,
                     nf=context.nf, **context.options)


def make_bspline(context: STNContext) -> nn.Module:
    """Cubic B-spline STN on a control grid ``cp_spacing`` voxels apart."""
    from istn_sk.nn import BSplineSTN

    for axis, (step, size) in enumerate(
            zip(context.cp_spacing, context.image_shape, strict=True)):
        if not 1 <= step <= size:
            raise ValueError(
                f"cp_spacing={context.cp_spacing}: spacing {step} along axis {axis} must be "
                f"between 1 and the image size {size}"
            )
    return BSplineSTN(context.spatial_dims, context.in_channels, context.image_shape,
                      cp_spacing=context.cp_spacing, max_displacement=context.max_displacement,
                      nf=context.nf, **context.options)


def make_none(context: STNContext) -> None:
    """No spatial transform: the ISTN is its ITN alone."""
    return None


@hookimpl
def istn_sk_register_spatial_transformers(register) -> None:
    """Register the built-in STN types."""
    register.add("affine", make_affine,
                 description="translation, rotation, scale and shear regressed per image")
    register.add("bspline", make_bspline,
                 description="cubic B-spline control-point displacements (cp_spacing, "
                             "max_displacement)")
    register.add("none", make_none, description="no spatial transform (ITN only)")
