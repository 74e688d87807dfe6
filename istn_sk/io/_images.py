"""Images as channel-first float arrays, and the intensity normalizers.

Arrays are ``(C, *spatial)``. Volumes (NIfTI ``.nii``/``.nii.gz`` and
FreeSurfer MGH ``.mgz``/``.mgh``, through nibabel) keep their voxel axes in
storage order (``(1, X, Y, Z)`` for a 3D volume, ``(C, X, Y, Z)`` for a 4D
one whose last axis holds channels) and their stored values. Raster images
(PNG of any bit depth, colour type and interlacing; JPEG; BMP; TIFF, a
multi-page TIFF being a 3D stack ``(C, D, H, W)``) of unsigned 8- or 16-bit
(or 1-bit) samples are mapped linearly from ``[0, max]`` to [-1, 1]; TIFFs of
any other sample type (float, signed) keep their stored values. Alpha is
dropped. See :mod:`istn_sk.io._raster` for the libraries that decode them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ._raster import raster_header, read_raster, readable, write_raster

#: File suffix -> format name, longest suffixes first where one ends another.
FORMATS = {
    ".nii.gz": "nifti", ".nii": "nifti", ".mgz": "mgh", ".mgh": "mgh",
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
    ".bmp": "bmp",
}
IMAGE_SUFFIXES = tuple(FORMATS)
VOLUME_FORMATS = ("nifti", "mgh")
NORMALIZERS = ("none", "tanh")

_NIFTI_INTENT_VECTOR = 1007
_TANH_LIMIT = 1.0 - 1e-6
_KIND_NAMES = {"nifti": "NIfTI", "mgh": "MGH"}
_BIT_DEPTHS = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16)}


def _suffix(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    for suffix in FORMATS:
        if text.lower().endswith(suffix):
            return text[-len(suffix):]
    raise ValueError(f"{text}: not an image file of a known format "
                     f"({', '.join(IMAGE_SUFFIXES)})")


def image_format(path: str | os.PathLike) -> str:
    """The format a file's suffix names.

    Returns
    -------
    str
        ``"nifti"``, ``"mgh"``, ``"png"``, ``"jpeg"``, ``"tiff"`` or ``"bmp"``.

    Raises
    ------
    ValueError
        For any other suffix.
    """
    return FORMATS[_suffix(path).lower()]


def split_suffix(path: str | os.PathLike) -> tuple[str, str]:
    """``"a/b.nii.gz"`` -> ``("a/b", ".nii.gz")``: the path without its image suffix, and it."""
    text, suffix = os.fspath(path), _suffix(path)
    return text[: -len(suffix)], suffix


@dataclass(frozen=True)
class Normalizer:
    """An intensity map applied after reading and undone before writing.

    Parameters
    ----------
    name : {"none", "tanh"}
        ``"tanh"`` squashes stored intensities (e.g. z-scores) into (-1, 1),
        the reference code's ``normalizer``; its inverse is ``arctanh`` of
        values clipped to ±(1 - 1e-6).
    """

    name: str = "none"

    def __post_init__(self) -> None:
        if self.name not in NORMALIZERS:
            raise ValueError(f"normalizer must be one of {NORMALIZERS}, got {self.name!r}")

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Stored intensities -> network values."""
        return np.tanh(values) if self.name == "tanh" else values

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Network values -> stored intensities."""
        if self.name == "tanh":
            return np.arctanh(np.clip(values, -_TANH_LIMIT, _TANH_LIMIT))
        return values


def _volume_shape(shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    """``(C, *spatial)`` of a NIfTI or MGH image of storage shape ``shape``."""
    if len(shape) in (2, 3):
        return (1, *shape)
    if len(shape) == 4:
        return (shape[3], *shape[:3])
    raise ValueError(f"{path}: expected a 2D, 3D or 4D (channels last) volume, "
                     f"got shape {shape}")


def _readable_volume(path: Path):
    """:func:`readable` for nibabel, whose unknown-file error is no OSError."""
    import nibabel as nib

    return readable(path, _KIND_NAMES[image_format(path)],
                    also=(nib.filebasedimages.ImageFileError,))


def _unit_range(samples: np.ndarray) -> np.ndarray:
    """Unsigned 1/8/16-bit samples -> [-1, 1]; any other sample type as stored."""
    if samples.dtype == np.bool_ or samples.dtype in _BIT_DEPTHS.values():
        top = 1.0 if samples.dtype == np.bool_ else float(np.iinfo(samples.dtype).max)
        return samples.astype(np.float32) * np.float32(2.0 / top) - np.float32(1.0)
    return samples.astype(np.float32)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image as a ``(C, *spatial)`` float32 array.

    Parameters
    ----------
    path : path-like
        ``.nii``/``.nii.gz``/``.mgz``/``.mgh``: stored values, scaled by the
        header's slope and intercept. ``.png``, ``.jpg``/``.jpeg``, ``.bmp``,
        ``.tif``/``.tiff``: unsigned 8- or 16-bit samples (also 1/2/4-bit
        and palette PNGs) mapped linearly from ``[0, max]`` to [-1, 1]; a
        TIFF of other samples (float, signed) as stored; a multi-page TIFF
        as a 3D stack ``(C, D, H, W)``. Alpha is dropped: 1 channel for grey
        images, 3 for colour ones.

    Returns
    -------
    ndarray of float32

    Raises
    ------
    ValueError
        An unknown suffix, or a file its library cannot decode.
    """
    path = Path(path)
    kind = image_format(path)
    if kind not in VOLUME_FORMATS:
        return _unit_range(read_raster(path, kind))
    import nibabel as nib

    with _readable_volume(path):
        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    channels_last = data.reshape(*_volume_shape(data.shape, path)[1:], -1)
    return np.ascontiguousarray(np.moveaxis(channels_last, -1, 0))


def image_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The ``(C, *spatial)`` shape :func:`read_image` returns, read from the header only."""
    path = Path(path)
    kind = image_format(path)
    if kind not in VOLUME_FORMATS:
        header = raster_header(path, kind)
        return (header.channels, *header.spatial)
    import nibabel as nib

    with _readable_volume(path):
        shape = nib.load(path).shape
    return _volume_shape(shape, path)


def _save_volume(data: np.ndarray, path: Path, like: str | os.PathLike | None,
                 intent: int | None = None) -> Path:
    """Write a NIfTI or MGH file with ``like``'s geometry (and header, if of the same kind)."""
    import nibabel as nib

    kind = nib.MGHImage if image_format(path) == "mgh" else nib.Nifti1Image
    reference = None if like is None else nib.load(like)
    if reference is None or not isinstance(reference, kind):
        image = kind(data, np.eye(4) if reference is None else reference.affine)
    else:
        header = reference.header.copy()
        header.set_data_dtype(data.dtype)
        image = type(reference)(data, reference.affine, header)
        if kind is nib.Nifti1Image:
            image.set_qform(reference.get_qform(), int(reference.header["qform_code"]))
            image.set_sform(reference.get_sform(), int(reference.header["sform_code"]))
    if intent is not None:
        image.header.set_intent(intent)
    with atomic_path(path) as temporary:
        nib.save(image, temporary)
    return path


def _sample_type(kind: str, like: str | os.PathLike | None, bit_depth: int | None) -> np.dtype:
    """The sample type a raster output gets: ``bit_depth``'s, else ``like``'s, else uint8."""
    if bit_depth is not None:
        if bit_depth not in _BIT_DEPTHS:
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
        return _BIT_DEPTHS[bit_depth]
    if like is None or image_format(like) in VOLUME_FORMATS:
        return _BIT_DEPTHS[8]
    stored = raster_header(like, image_format(like)).dtype
    if stored == np.uint16 and kind in ("png", "tiff"):
        return stored
    if kind == "tiff" and stored not in (np.bool_, np.uint8, np.uint16):
        return np.dtype(np.float32)
    return _BIT_DEPTHS[8]


def write_image(path: str | os.PathLike, image: np.ndarray, *,
                like: str | os.PathLike | None = None, bit_depth: int | None = None) -> Path:
    """Write a ``(C, *spatial)`` image, atomically, in the format its suffix names.

    Parameters
    ----------
    path : path-like
        ``.nii``/``.nii.gz``/``.mgz``/``.mgh``: float32 values as given
        (MGH: 3D or 4D). ``.png``, ``.jpg``/``.jpeg``, ``.bmp``: a 2D image
        with 1 or 3 channels, values in [-1, 1] mapped to grey or RGB
        samples; ``.tif``/``.tiff`` also takes a 3D stack (one page per
        slice of the first spatial axis).
    image : ndarray
    like : path-like, optional
        The input this image was made from. A volume of the output's kind
        lends its header, affine, qform and sform (with their codes); one of
        the other kind its affine (the identity when omitted). A raster
        file lends its sample type: 16-bit in, 16-bit out (PNG and TIFF);
        8-bit, 1/2/4-bit and palette in, 8-bit out; a TIFF of any other
        sample type gives a float32 TIFF of the values as given.
    bit_depth : {8, 16}, optional
        Raster samples, overriding ``like``'s (16: PNG and TIFF only).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        A shape or bit depth the format cannot hold.
    """
    path = Path(path)
    image = np.asarray(image)
    kind = image_format(path)
    if kind not in VOLUME_FORMATS:
        dtype = _sample_type(kind, like, bit_depth)
        if dtype.kind == "u":
            top = np.iinfo(dtype).max
            image = np.round((np.clip(image, -1.0, 1.0) + 1.0) * (top / 2.0))
        return write_raster(path, image.astype(dtype), kind)
    if bit_depth is not None:
        raise ValueError(f"{path}: bit_depth applies to raster images, not {kind} volumes")
    if image.ndim not in (3, 4) or (kind == "mgh" and image.ndim != 4):
        spatial = "(C, X, Y, Z)" if kind == "mgh" else "(C, X, Y) or (C, X, Y, Z)"
        raise ValueError(f"{path}: {_KIND_NAMES[kind]} needs a {spatial} image, "
                         f"got shape {image.shape}")
    data = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    return _save_volume(np.asarray(data, dtype=np.float32), path, like)


def write_displacement(path: str | os.PathLike, field: np.ndarray, *,
                       like: str | os.PathLike | None = None) -> Path:
    """Write a displacement field ``(D, *spatial)`` in voxels, channel ``i`` along axis ``i``.

    ``.nii``/``.nii.gz`` stores it as a NIfTI vector image ``(X, Y, Z, 1, D)``
    (intent code 1007; ``Z = 1`` for 2D) with ``like``'s geometry (a NIfTI
    or MGH volume); ``.npy`` stores the array as is.
    """
    path = Path(path)
    field = np.asarray(field, dtype=np.float32)
    if path.name.endswith(".npy"):
        with atomic_path(path) as temporary, open(temporary, "wb") as stream:
            np.save(stream, field)
        return path
    if image_format(path) != "nifti":
        raise ValueError(f"{path}: displacement fields are written as .nii, .nii.gz or .npy")
    spatial = field.shape[1:]
    vector = np.moveaxis(field, 0, -1).reshape(*spatial, *[1] * (3 - len(spatial)), 1, -1)
    return _save_volume(vector, path, like, intent=_NIFTI_INTENT_VECTOR)
