"""Networks of istn-sk, generic over 2D and 3D images.

Image transformer (ITN), discriminator and task networks, and spatial
transformers split as in MONAI: builders produce a dense displacement field
(:class:`AffineSTN`, :class:`BSplineSTN`, or a plugin's), one :class:`Warp`
samples it.
"""

from ._affine import AffineSTN, affine_displacement
from ._bias_field import PolynomialBiasField
from ._bspline import BSplineSTN, bspline_displacement, control_grid_shape, cubic_bspline_kernel
from ._encoder import ConvEncoder, FullyConvolutionalNet
from ._istn import ISTN, STNContext
from ._itn import ImageTransformerNetwork
from ._warp import Warp, voxel_grid

__all__ = [
    "AffineSTN",
    "BSplineSTN",
    "ConvEncoder",
    "FullyConvolutionalNet",
    "ISTN",
    "ImageTransformerNetwork",
    "PolynomialBiasField",
    "STNContext",
    "Warp",
    "affine_displacement",
    "bspline_displacement",
    "control_grid_shape",
    "cubic_bspline_kernel",
    "voxel_grid",
]
