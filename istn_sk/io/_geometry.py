"""Multi-site geometry: reorient volumes to RAS+ and resample them to a common grid, saying how.

Volumes from several sites often differ in voxel order (LPS, LAS, ...),
voxel size and shape, which a convolutional network sees as different
images. :func:`harmonise_geometry` puts one volume on a common footing, as
an explicit step:

1. **reorient** (exact: axes permuted and flipped, no interpolation) to the
   closest canonical orientation, RAS+, as ``nibabel.as_closest_canonical``
   does (an oblique volume keeps its small rotation in the affine);
2. on request, **resample** to a voxel size (mm) and/or a shape: the new
   grid keeps the volume's directions and is centred on its field of view
   (when only the shape changes, it is cropped or zero-padded by whole
   voxels, so no value is interpolated); samples are interpolated linearly
   for images, by nearest neighbour for masks (labels stay labels), and
   points outside the volume's field of view are 0.

Each call returns the new array, its affine and a record of what was done
(orientation codes, voxel size and shape before and after, and the changes
as sentences) for callers to print or log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INTERPOLATIONS = {"linear": 1, "nearest": 0}
_IDENTITY_ORIENTATION = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


def _codes(affine: np.ndarray) -> str:
    import nibabel as nib

    return "".join(nib.aff2axcodes(affine))


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """The voxel size (mm) along each voxel axis: the norms of the affine's first 3 columns."""
    return np.sqrt(np.sum(np.asarray(affine, dtype=float)[:3, :3] ** 2, axis=0))


def _triple(value, name: str, kind: type) -> tuple | None:
    if value is None:
        return None
    values = (value,) * 3 if np.ndim(value) == 0 else tuple(value)
    if len(values) != 3 or any(not np.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"{name} must be one positive number or three, got {value!r}")
    if kind is int and any(int(v) != v for v in values):
        raise ValueError(f"{name} must be whole numbers of voxels, got {value!r}")
    return tuple(kind(v) for v in values)


@dataclass(frozen=True)
class GeometryPlan:
    """What :meth:`Geometry.plan` found for one volume, computed from its header only.

    Attributes
    ----------
    orientation : ndarray or None
        nibabel orientation ``(axis, flip)`` rows taking the input to RAS+,
        None when already RAS+ (or reorientation was not asked for).
    matrix, offset : ndarray or None
        Resampling: new voxel ``j`` samples the (reoriented) input at
        ``matrix * j + offset`` (per axis); None without resampling.
    shape : tuple of int
        The output's spatial shape.
    affine : ndarray
        The output's voxel-to-world affine.
    input_shape : tuple of int
        The spatial shape the plan was made for.
    record : dict
        What was done, see :func:`harmonise_geometry`.
    """

    orientation: np.ndarray | None
    matrix: np.ndarray | None
    offset: np.ndarray | None
    input_shape: tuple[int, ...]
    shape: tuple[int, ...]
    affine: np.ndarray
    record: dict


@dataclass(frozen=True)
class Geometry:
    """A geometry harmonisation step: reorientation to RAS+, then optional resampling.

    Parameters
    ----------
    reorient : bool, default=True
        Permute and flip the voxel axes to the closest canonical (RAS+)
        orientation.
    voxel_size : float or 3 floats, optional
        Resample to this voxel size in mm (one number: isotropic).
    out_shape : 3 ints, optional
        The output's spatial shape. Without ``voxel_size`` the voxel size is
        kept and the volume cropped or zero-padded about its centre; without
        ``out_shape`` the shape is what keeps the field of view.
    """

    reorient: bool = True
    voxel_size: float | Sequence[float] | None = None
    out_shape: Sequence[int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "voxel_size", _triple(self.voxel_size, "voxel_size", float))
        object.__setattr__(self, "out_shape", _triple(self.out_shape, "out_shape", int))

    @property
    def active(self) -> bool:
        """Whether this step can change anything (False: arrays pass through)."""
        return bool(self.reorient) or self.voxel_size is not None or self.out_shape is not None

    def plan(self, shape: Sequence[int], affine: np.ndarray, *,
             interpolation: str = "linear") -> GeometryPlan:
        """The output grid and the record for a volume of spatial ``shape`` and ``affine``."""
        from nibabel.orientations import inv_ornt_aff, io_orientation

        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {tuple(INTERPOLATIONS)}, "
                             f"got {interpolation!r}")
        shape = tuple(int(n) for n in shape)
        if len(shape) != 3:
            raise ValueError(f"geometry harmonisation needs a 3D volume, got spatial shape "
                             f"{shape}")
        affine, input_shape = np.asarray(affine, dtype=float), shape
        record = {"original_orientation": _codes(affine),
                  "original_voxel_size": voxel_sizes(affine).round(6).tolist(),
                  "original_shape": list(shape), "reoriented": False, "resampled": False,
                  "interpolation": None}
        changes = []
        orientation = None
        if self.reorient:
            ornt = io_orientation(affine)
            if not np.array_equal(ornt, _IDENTITY_ORIENTATION):
                orientation = ornt
                affine = affine @ inv_ornt_aff(ornt, shape)
                new_shape = [0, 0, 0]
                for axis, (target, _) in enumerate(ornt):
                    new_shape[int(target)] = shape[axis]
                shape = tuple(new_shape)
                record["reoriented"] = True
                changes.append(f"reoriented {record['original_orientation']} -> "
                               f"{_codes(affine)}")
        matrix = offset = None
        if self.voxel_size is not None or self.out_shape is not None:
            zooms = voxel_sizes(affine)
            target = zooms if self.voxel_size is None else np.asarray(self.voxel_size)
            ratio = target / zooms
            ratio = np.where(np.isclose(ratio, 1.0, rtol=1e-6, atol=0), 1.0, ratio)
            if self.out_shape is None:
                out_shape = tuple(max(1, int(np.rint(n * z / t)))
                                  for n, z, t in zip(shape, zooms, target, strict=True))
            else:
                out_shape = self.out_shape
            old, new = np.asarray(shape, dtype=float), np.asarray(out_shape, dtype=float)
            start = (old - 1) / 2 - (new - 1) / 2 * ratio      # centres matched
            start = np.where(ratio == 1.0, np.floor(start + 1e-9), start)   # whole voxels
            if np.any(ratio != 1.0) or np.any(start != 0) or out_shape != shape:
                matrix, offset = ratio, start
                step = np.eye(4)
                step[:3, :3] = np.diag(ratio)
                step[:3, 3] = start
                before = f"{_sizes(zooms)} mm {shape}"
                affine = affine @ step
                shape = tuple(out_shape)
                record["resampled"] = True
                record["interpolation"] = interpolation
                how = (f"{interpolation} interpolation" if np.any(ratio != 1.0)
                       else "cropped/padded by whole voxels")
                changes.append(f"resampled {before} -> {_sizes(voxel_sizes(affine))} mm "
                               f"{shape} ({how})")
        record.update(orientation=_codes(affine), voxel_size=voxel_sizes(affine).round(6).tolist(),
                      shape=list(shape), affine=affine.copy(), changes=changes,
                      summary="; ".join(changes) if changes else "geometry unchanged")
        return GeometryPlan(orientation, matrix, offset, input_shape, shape, affine, record)

    def apply(self, image: np.ndarray, affine: np.ndarray, *,
              interpolation: str = "linear") -> tuple[np.ndarray, np.ndarray, dict]:
        """``(image, affine, record)`` of a ``(C, X, Y, Z)`` volume after this step."""
        image = np.asarray(image)
        if image.ndim != 4:
            raise ValueError(f"geometry harmonisation needs a (C, X, Y, Z) volume, got shape "
                             f"{image.shape}")
        plan = self.plan(image.shape[1:], affine, interpolation=interpolation)
        return resample(image, plan), plan.affine, plan.record


def _sizes(zooms: np.ndarray) -> str:
    return "x".join(f"{z:g}" for z in np.round(zooms, 4))


def resample(image: np.ndarray, plan: GeometryPlan) -> np.ndarray:
    """Apply a :class:`GeometryPlan` to a ``(C, X, Y, Z)`` array of the planned input shape."""
    from nibabel.orientations import apply_orientation
    from scipy import ndimage

    if tuple(image.shape[1:]) != plan.input_shape:
        raise ValueError(f"a volume of shape {image.shape[1:]} for a plan made for "
                         f"{plan.input_shape}")
    if plan.orientation is not None:
        image = np.moveaxis(apply_orientation(np.moveaxis(image, 0, -1), plan.orientation),
                            -1, 0)
    if plan.matrix is not None:
        order = INTERPOLATIONS[plan.record["interpolation"]]
        old = image.shape[1:]
        inside = np.ones(plan.shape, dtype=bool)
        for axis, (n, m, r, o) in enumerate(zip(old, plan.shape, plan.matrix, plan.offset,
                                                strict=True)):
            position = r * np.arange(m) + o
            keep = (position >= -0.5 - 1e-6) & (position <= n - 0.5 + 1e-6)
            inside &= keep.reshape([-1 if a == axis else 1 for a in range(3)])
        image = np.stack([
            ndimage.affine_transform(channel, plan.matrix, offset=plan.offset,
                                     output_shape=plan.shape, order=order, mode="nearest")
            * inside for channel in image])
    return np.ascontiguousarray(image)


def harmonise_geometry(image: np.ndarray, affine: np.ndarray, *, reorient: bool = True,
                       voxel_size: float | Sequence[float] | None = None,
                       out_shape: Sequence[int] | None = None,
                       interpolation: str = "linear") -> tuple[np.ndarray, np.ndarray, dict]:
    """Reorient a volume to RAS+ and, on request, resample it to a voxel size and/or shape.

    Parameters
    ----------
    image : ndarray
        ``(C, X, Y, Z)``, as :func:`istn_sk.io.read_volume` returns it.
    affine : ndarray
        Its 4x4 voxel-to-world affine.
    reorient : bool, default=True
        Permute/flip the axes to the closest canonical orientation (RAS+),
        as ``nibabel.as_closest_canonical``.
    voxel_size : float or 3 floats, optional
        New voxel size in mm.
    out_shape : 3 ints, optional
        New spatial shape (see :class:`Geometry`).
    interpolation : {"linear", "nearest"}, default="linear"
        ``"nearest"`` for masks and label maps.

    Returns
    -------
    image : ndarray
        ``(C, *new spatial)``, same dtype.
    affine : ndarray
        The new voxel-to-world affine: every voxel keeps its place in the world.
    record : dict
        ``original_orientation`` (axis codes, e.g. ``"LPS"``),
        ``original_voxel_size``, ``original_shape``, the same after
        (``orientation``, ``voxel_size``, ``shape``, ``affine``),
        ``reoriented`` and ``resampled`` (bool), ``interpolation``,
        ``changes`` (sentences) and ``summary`` (them joined, or
        ``"geometry unchanged"``).
    """
    return Geometry(reorient, voxel_size, out_shape).apply(image, affine,
                                                           interpolation=interpolation)
