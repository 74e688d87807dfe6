"""NIfTI and PNG images as channel-first float arrays, and the intensity normalizers.

Arrays are ``(C, *spatial)``. NIfTI voxel axes are the spatial axes in
storage order (``(1, X, Y, Z)`` for a 3D volume, ``(C, X, Y, Z)`` for a 4D
one whose last axis holds channels); their stored values are returned as
they are. PNG images (8 or 16 bit, grey or RGB, alpha dropped) become
``(1, H, W)`` or ``(3, H, W)`` in [-1, 1]. PNG is decoded with the standard
library (``zlib``), so no imaging package is needed.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic import atomic_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")
PNG_SUFFIX = ".png"
IMAGE_SUFFIXES = (*NIFTI_SUFFIXES, PNG_SUFFIX)
NORMALIZERS = ("none", "tanh")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel
_NIFTI_INTENT_VECTOR = 1007
_TANH_LIMIT = 1.0 - 1e-6


def image_format(path: str | os.PathLike) -> str:
    """``"nifti"`` or ``"png"``, from the file name.

    Raises
    ------
    ValueError
        For any other suffix.
    """
    name = Path(path).name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(PNG_SUFFIX):
        return "png"
    raise ValueError(f"{os.fspath(path)}: not a NIfTI (.nii, .nii.gz) or PNG (.png) file")


def split_suffix(path: str | os.PathLike) -> tuple[str, str]:
    """``"a/b.nii.gz"`` -> ``("a/b", ".nii.gz")``: the path without its image suffix, and it."""
    text = os.fspath(path)
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if text.lower().endswith(suffix):
            return text[: -len(suffix)], text[-len(suffix):]
    raise ValueError(f"{text}: not a NIfTI (.nii, .nii.gz) or PNG (.png) file")


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


def _png_chunks(data: bytes, path: Path):
    if data[:8] != _PNG_SIGNATURE:
        raise ValueError(f"{path}: not a PNG file")
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        yield kind, data[position + 8:position + 8 + length]
        position += 12 + length


def _png_header(data: bytes, path: Path) -> tuple[int, int, int, int]:
    for kind, body in _png_chunks(data, path):
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if colour not in _PNG_CHANNELS or depth not in (8, 16) or interlace:
                raise ValueError(f"{path}: only non-interlaced 8/16-bit grey or RGB(A) PNGs "
                                 f"are supported (colour type {colour}, depth {depth})")
            return width, height, depth, _PNG_CHANNELS[colour]
    raise ValueError(f"{path}: PNG without a header chunk")


def _unfilter(filtered: np.ndarray, stride: int) -> np.ndarray:
    """Undo the per-row PNG filters (none, sub, up, average, Paeth)."""
    height, width = filtered.shape[0], filtered.shape[1] - 1
    out = np.zeros((height, width), dtype=np.uint8)
    previous = np.zeros(width, dtype=np.uint8)
    for r in range(height):
        kind, row = filtered[r, 0], filtered[r, 1:]
        if kind == 0:
            current = row
        elif kind == 1:
            current = np.cumsum(row.reshape(-1, stride), axis=0, dtype=np.uint8).ravel()
        elif kind == 2:
            current = row + previous
        elif kind in (3, 4):
            current = _sequential_unfilter(kind, row.tolist(), previous.tolist(), stride)
        else:
            raise ValueError(f"unknown PNG filter type {kind}")
        out[r] = previous = current
    return out


def _sequential_unfilter(kind: int, row: list[int], above: list[int], stride: int) -> np.ndarray:
    out = [0] * len(row)
    for i, value in enumerate(row):
        left = out[i - stride] if i >= stride else 0
        up = above[i]
        if kind == 3:
            out[i] = (value + (left + up) // 2) & 0xFF
            continue
        corner = above[i - stride] if i >= stride else 0
        estimate = left + up - corner
        distances = (abs(estimate - left), abs(estimate - up), abs(estimate - corner))
        predictor = (left, up, corner)[distances.index(min(distances))]
        out[i] = (value + predictor) & 0xFF
    return np.asarray(out, dtype=np.uint8)


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Decode a PNG to ``(H, W, samples)`` uint8 or uint16 values (alpha kept).

    Raises
    ------
    ValueError
        Not a PNG, or a palette, interlaced or sub-8-bit one.
    """
    path = Path(path)
    data = path.read_bytes()
    width, height, depth, samples = _png_header(data, path)
    compressed = b"".join(body for kind, body in _png_chunks(data, path) if kind == b"IDAT")
    stride = samples * depth // 8
    filtered = np.frombuffer(zlib.decompress(compressed), dtype=np.uint8)
    raw = _unfilter(filtered.reshape(height, 1 + width * stride), stride)
    if depth == 16:
        return raw.view(">u2").astype(np.uint16).reshape(height, width, samples)
    return raw.reshape(height, width, samples)


def _nifti_shape(shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    """``(C, *spatial)`` of a NIfTI image of storage shape ``shape``."""
    if len(shape) in (2, 3):
        return (1, *shape)
    if len(shape) == 4:
        return (shape[3], *shape[:3])
    raise ValueError(f"{path}: expected a 2D, 3D or 4D (channels last) NIfTI image, "
                     f"got shape {shape}")


@contextlib.contextmanager
def _readable_nifti(path: Path):
    """Report a NIfTI file nibabel cannot read (corrupt, truncated) as one ValueError naming it."""
    import nibabel as nib

    try:
        yield
    except FileNotFoundError:
        raise
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError,
            zlib.error) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"{path}: not a readable NIfTI image (corrupt or truncated?): "
                         f"{reason}") from error


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image as a ``(C, *spatial)`` float32 array.

    Parameters
    ----------
    path : path-like
        ``.nii``/``.nii.gz`` (stored values, scaled by the header's slope and
        intercept) or ``.png`` (mapped linearly from ``[0, max]`` to [-1, 1]).

    Returns
    -------
    ndarray of float32
    """
    path = Path(path)
    if image_format(path) == "png":
        pixels = read_png(path)
        samples = pixels.shape[-1]
        top = 255.0 if pixels.dtype == np.uint8 else 65535.0
        kept = pixels[..., : 1 if samples <= 2 else 3]
        return np.moveaxis(kept.astype(np.float32) / top * 2.0 - 1.0, -1, 0).copy()
    with _readable_nifti(path):
        import nibabel as nib

        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    channels_last = data.reshape(*_nifti_shape(data.shape, path)[1:], -1)
    return np.ascontiguousarray(np.moveaxis(channels_last, -1, 0))


def image_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The ``(C, *spatial)`` shape :func:`read_image` returns, read from the header only."""
    path = Path(path)
    if image_format(path) == "png":
        with open(path, "rb") as stream:
            width, height, _, samples = _png_header(stream.read(33), path)
        return (1 if samples <= 2 else 3, height, width)
    with _readable_nifti(path):
        import nibabel as nib

        shape = nib.load(path).shape
    return _nifti_shape(shape, path)


def _save_nifti(data: np.ndarray, path: Path, like: str | os.PathLike | None,
                intent: int | None = None) -> Path:
    import nibabel as nib

    if like is None:
        image = nib.Nifti1Image(data, np.eye(4))
    else:
        reference = nib.load(like)
        header = reference.header.copy()
        header.set_data_dtype(data.dtype)
        image = type(reference)(data, reference.affine, header)
        image.set_qform(reference.get_qform(), int(reference.header["qform_code"]))
        image.set_sform(reference.get_sform(), int(reference.header["sform_code"]))
    if intent is not None:
        image.header.set_intent(intent)
    with atomic_path(path) as temporary:
        nib.save(image, temporary)
    return path


def write_image(path: str | os.PathLike, image: np.ndarray, *,
                like: str | os.PathLike | None = None) -> Path:
    """Write a ``(C, *spatial)`` image, atomically, in the format its suffix names.

    Parameters
    ----------
    path : path-like
        ``.nii``/``.nii.gz``: float32 values as given; with ``like`` (a NIfTI
        file) its header, affine, qform and sform (with their codes) are kept.
        ``.png``: a 2D image with 1 or 3 channels, values in [-1, 1] written
        as 8-bit grey or RGB.
    image : ndarray
    like : path-like, optional
        The NIfTI image whose geometry and header the output keeps
        (ignored for PNG); the identity affine when omitted.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    image = np.asarray(image)
    if image_format(path) == "png":
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"{path}: PNG needs a (1, H, W) or (3, H, W) image, "
                             f"got shape {image.shape}")
        from ..figures import write_png

        pixels = np.round((np.clip(image, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
        return write_png(path, pixels[0] if image.shape[0] == 1 else np.moveaxis(pixels, 0, -1))
    if image.ndim not in (3, 4):
        raise ValueError(f"{path}: NIfTI needs a (C, X, Y) or (C, X, Y, Z) image, "
                         f"got shape {image.shape}")
    data = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    return _save_nifti(np.asarray(data, dtype=np.float32), path, like)


def write_displacement(path: str | os.PathLike, field: np.ndarray, *,
                       like: str | os.PathLike | None = None) -> Path:
    """Write a displacement field ``(D, *spatial)`` in voxels, channel ``i`` along axis ``i``.

    ``.nii``/``.nii.gz`` stores it as a NIfTI vector image ``(X, Y, Z, 1, D)``
    (intent code 1007; ``Z = 1`` for 2D) with ``like``'s geometry; ``.npy``
    stores the array as is.
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
    return _save_nifti(vector, path, like, intent=_NIFTI_INTENT_VECTOR)
