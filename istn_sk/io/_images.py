"""Images as channel-first float arrays, and the intensity normalizers.

Arrays are ``(C, *spatial)``. Volumes (NIfTI ``.nii``/``.nii.gz`` and
FreeSurfer MGH ``.mgz``/``.mgh``, through nibabel; NRRD ``.nrrd``/``.nhdr``
and MetaImage ``.mha``/``.mhd`` through SimpleITK, extra ``istn-sk[sitk]``;
a DICOM series folder through pydicom, extra ``istn-sk[dicom]``) keep their
voxel axes in storage order (``(1, X, Y, Z)`` for a 3D volume,
``(C, X, Y, Z)`` for a 4D one whose last axis holds channels) and their
stored values; :func:`read_volume` also gives their voxel-to-world affine
(RAS+ mm, NIfTI's convention, whatever the format's own). Raster images
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
from typing import TYPE_CHECKING

import numpy as np

from .._atomic import atomic_path
from ._raster import raster_header, read_raster, readable, write_raster

if TYPE_CHECKING:
    from ._geometry import Geometry

#: File suffix -> format name, longest suffixes first where one ends another.
FORMATS = {
    ".nii.gz": "nifti", ".nii": "nifti", ".mgz": "mgh", ".mgh": "mgh",
    ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "metaimage", ".mhd": "metaimage",
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
    ".bmp": "bmp",
}
IMAGE_SUFFIXES = tuple(FORMATS)
VOLUME_FORMATS = ("nifti", "mgh", "nrrd", "metaimage", "dicom")
#: Volume formats nibabel reads (and writes with a header); the others go through _volumes.
NIBABEL_FORMATS = ("nifti", "mgh")
SITK_FORMATS = ("nrrd", "metaimage")
NORMALIZERS = ("none", "tanh")

_NIFTI_INTENT_VECTOR = 1007
_TANH_LIMIT = 1.0 - 1e-6
_KIND_NAMES = {"nifti": "NIfTI", "mgh": "MGH", "nrrd": "NRRD", "metaimage": "MetaImage",
               "dicom": "DICOM"}
_BIT_DEPTHS = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16)}


def _known_suffix(text: str) -> str | None:
    for suffix in FORMATS:
        if text.lower().endswith(suffix):
            return text[-len(suffix):]
    return None


def _suffix(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    suffix = _known_suffix(text)
    if suffix is None:
        raise ValueError(f"{text}: not an image file of a known format "
                         f"({', '.join(IMAGE_SUFFIXES)}) nor a DICOM series folder")
    return suffix


def is_series_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a DICOM series: an existing folder without an image suffix."""
    return _known_suffix(os.fspath(path)) is None and Path(path).is_dir()


def image_format(path: str | os.PathLike) -> str:
    """The format a file's suffix names, or ``"dicom"`` for a folder (a DICOM series).

    Returns
    -------
    str
        ``"nifti"``, ``"mgh"``, ``"nrrd"``, ``"metaimage"``, ``"dicom"``,
        ``"png"``, ``"jpeg"``, ``"tiff"`` or ``"bmp"``.

    Raises
    ------
    ValueError
        For any other suffix.
    """
    if is_series_folder(path):
        return "dicom"
    return FORMATS[_suffix(path).lower()]


def split_suffix(path: str | os.PathLike) -> tuple[str, str]:
    """``"a/b.nii.gz"`` -> ``("a/b", ".nii.gz")``: the path without its image suffix, and it.

    A DICOM series folder has no suffix: ``"a/series/"`` -> ``("a/series", "")``.
    """
    if is_series_folder(path):
        return os.fspath(path).rstrip("/" + os.sep) or os.fspath(path), ""
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


def _volume_module():
    from . import _volumes

    return _volumes


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
        header's slope and intercept; ``.nrrd``/``.nhdr``/``.mha``/``.mhd``
        (SimpleITK) and a DICOM series folder (pydicom; slices sorted along
        their normal, ``RescaleSlope``/``RescaleIntercept`` applied): stored
        values, ``(C, X, Y, Z)`` in the file's index order. ``.png``, ``.jpg``/``.jpeg``, ``.bmp``,
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
    return read_volume(path)[0]


def read_volume(path: str | os.PathLike, *, geometry: Geometry | None = None,
                interpolation: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """Read a volume as a ``(C, *spatial)`` float32 array and its voxel-to-world affine.

    Parameters
    ----------
    path : path-like
        NIfTI, MGH (nibabel), NRRD, MetaImage (SimpleITK) or a DICOM series
        folder (pydicom): see :func:`read_image`.
    geometry : Geometry, optional
        A harmonisation step (:class:`istn_sk.io.Geometry`) applied after reading.
    interpolation : {"linear", "nearest"}, default="linear"
        For ``geometry``'s resampling (``"nearest"`` for masks).

    Returns
    -------
    image : ndarray of float32
    affine : ndarray
        4x4, voxel indices -> RAS+ millimetres (the format's LPS+ converted).

    Raises
    ------
    ValueError
        A raster image (it has no world geometry), or an unreadable file.
    ImportError
        The format's optional library is missing (the message names the extra).
    """
    path = Path(path)
    kind = image_format(path)
    if kind not in VOLUME_FORMATS:
        raise ValueError(f"{path}: a {kind} image has no world geometry; read_volume reads "
                         "NIfTI, MGH, NRRD, MetaImage and DICOM volumes")
    if kind in SITK_FORMATS:
        image, affine = _volume_module().read_sitk(path)
    elif kind == "dicom":
        image, affine = _volume_module().read_dicom(path)
    else:
        import nibabel as nib

        with _readable_volume(path):
            loaded = nib.load(path)
            data = np.asarray(loaded.dataobj, dtype=np.float32)
        channels_last = data.reshape(*_volume_shape(data.shape, path)[1:], -1)
        image, affine = np.ascontiguousarray(np.moveaxis(channels_last, -1, 0)), loaded.affine
    if geometry is not None and geometry.active:
        image, affine, _ = geometry.apply(image, affine, interpolation=interpolation)
    return image, np.asarray(affine, dtype=float)


def volume_header(path: str | os.PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    """``((C, *spatial), affine)`` of a volume, read from its header(s) only (no voxels)."""
    path = Path(path)
    kind = image_format(path)
    if kind not in VOLUME_FORMATS:
        raise ValueError(f"{path}: a {kind} image has no world geometry")
    if kind in SITK_FORMATS:
        return _volume_module().sitk_header(path)
    if kind == "dicom":
        series = _volume_module().dicom_series(path)
        return series.shape, series.affine
    import nibabel as nib

    with _readable_volume(path):
        loaded = nib.load(path)
    return _volume_shape(loaded.shape, path), np.asarray(loaded.affine, dtype=float)


def image_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The ``(C, *spatial)`` shape :func:`read_image` returns, read from the header only."""
    path = Path(path)
    kind = image_format(path)
    if kind not in VOLUME_FORMATS:
        header = raster_header(path, kind)
        return (header.channels, *header.spatial)
    return volume_header(path)[0]


def _like_affine(like: str | os.PathLike | None) -> np.ndarray:
    """The affine of a volume ``like`` (the identity for None or a raster image)."""
    if like is None or image_format(like) not in VOLUME_FORMATS:
        return np.eye(4)
    return volume_header(like)[1]


def _save_volume(data: np.ndarray, path: Path, like: str | os.PathLike | None,
                 intent: int | None = None, affine: np.ndarray | None = None) -> Path:
    """Write a NIfTI or MGH file with ``like``'s geometry (and header, if of the same kind).

    ``affine`` replaces ``like``'s (the header is still ``like``'s).
    """
    import nibabel as nib

    kind = nib.MGHImage if image_format(path) == "mgh" else nib.Nifti1Image
    reference = None
    if like is not None and image_format(like) in NIBABEL_FORMATS:
        reference = nib.load(like)
    if reference is None or not isinstance(reference, kind):
        if affine is None:
            affine = _like_affine(like) if reference is None else reference.affine
        image = kind(data, affine)
    else:
        header = reference.header.copy()
        header.set_data_dtype(data.dtype)
        image = type(reference)(data, reference.affine if affine is None else affine, header)
        if kind is nib.Nifti1Image:
            qform, qcode = reference.get_qform(), int(reference.header["qform_code"])
            sform, scode = reference.get_sform(), int(reference.header["sform_code"])
            if affine is not None:
                qform, sform, qcode, scode = affine, affine, qcode or 1, scode or 1
            image.set_qform(qform, qcode)
            image.set_sform(sform, scode)
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
                like: str | os.PathLike | None = None, bit_depth: int | None = None,
                affine: np.ndarray | None = None) -> Path:
    """Write a ``(C, *spatial)`` image, atomically, in the format its suffix names.

    Parameters
    ----------
    path : path-like
        ``.nii``/``.nii.gz``/``.mgz``/``.mgh``: float32 values as given
        (MGH: 3D or 4D); ``.nrrd``/``.nhdr``/``.mha``/``.mhd`` likewise
        (SimpleITK, with the affine as LPS+ spacing, origin and direction;
        a ``.nhdr``/``.mhd`` header gets its data file beside it). DICOM is
        read, not written. ``.png``, ``.jpg``/``.jpeg``, ``.bmp``: a 2D image
        with 1 or 3 channels, values in [-1, 1] mapped to grey or RGB
        samples; ``.tif``/``.tiff`` also takes a 3D stack (one page per
        slice of the first spatial axis).
    image : ndarray
    like : path-like, optional
        The input this image was made from. A volume of the output's kind
        lends its header, affine, qform and sform (with their codes); one of
        the other kind (NRRD, MetaImage, a DICOM series) its affine (the
        identity when omitted). A raster
        file lends its sample type: 16-bit in, 16-bit out (PNG and TIFF);
        8-bit, 1/2/4-bit and palette in, 8-bit out; a TIFF of any other
        sample type gives a float32 TIFF of the values as given.
    bit_depth : {8, 16}, optional
        Raster samples, overriding ``like``'s (16: PNG and TIFF only).
    affine : ndarray, optional
        A volume's 4x4 voxel-to-world affine, overriding ``like``'s (e.g.
        the one :func:`istn_sk.io.harmonise_geometry` returned); a NIfTI
        ``like`` still lends its header, with this affine as qform and sform.

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
    if affine is not None and np.shape(affine) != (4, 4):
        raise ValueError(f"affine must be a 4x4 array, got shape {np.shape(affine)}")
    if bit_depth is not None:
        raise ValueError(f"{path}: bit_depth applies to raster images, not {kind} volumes")
    if kind == "dicom":
        raise ValueError(f"{path}: DICOM series are read, not written; write .nii.gz (it "
                         "keeps the series' geometry) or another volume format")
    if kind in SITK_FORMATS:
        if image.ndim not in (3, 4):
            raise ValueError(f"{path}: {_KIND_NAMES[kind]} needs a (C, X, Y) or (C, X, Y, Z) "
                             f"image, got shape {image.shape}")
        return _volume_module().write_sitk(
            path, image, _like_affine(like) if affine is None else np.asarray(affine, float))
    if image.ndim not in (3, 4) or (kind == "mgh" and image.ndim != 4):
        spatial = "(C, X, Y, Z)" if kind == "mgh" else "(C, X, Y) or (C, X, Y, Z)"
        raise ValueError(f"{path}: {_KIND_NAMES[kind]} needs a {spatial} image, "
                         f"got shape {image.shape}")
    data = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    return _save_volume(np.asarray(data, dtype=np.float32), path, like,
                        affine=None if affine is None else np.asarray(affine, dtype=float))


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
