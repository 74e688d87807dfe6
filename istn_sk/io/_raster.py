"""PNG, JPEG, BMP and TIFF files as ``(C, *spatial)`` sample arrays: Pillow, imagecodecs, tifffile.

PNG, JPEG and BMP are read and written by Pillow, except 16-bit PNGs with
colour or alpha, which Pillow narrows to 8 bits: those go through
imagecodecs' libpng codec. TIFF is read and written by tifffile (with
imagecodecs for LZW, JPEG and other compressions). Samples keep their
stored type; alpha (and any other TIFF extra sample) is dropped, so an image
has 1 (grey) or 3 (colour) channels — or, for a TIFF with a channel axis,
as many as it stores.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic import atomic_path

#: Formats Pillow reads and writes, by the name :func:`image_format` gives them.
PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP"}
#: Pillow modes of one grey channel; any other mode is converted to RGB.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I;16", "I;16B", "I;16L", "I;16N"})
#: PNG raw modes Pillow narrows to 8 bits -> the channels kept (alpha dropped).
_WIDE_PNG = {"RGB;16B": 3, "RGBA;16B": 3, "LA;16B": 1}
#: Sample types each format can write.
_WRITABLE = {"png": ("uint8", "uint16"), "jpeg": ("uint8",), "bmp": ("uint8",),
             "tiff": ("uint8", "uint16", "float32")}


@dataclass(frozen=True)
class RasterHeader:
    """What a raster file holds, read without decoding its pixels.

    Attributes
    ----------
    channels : int
        Channels :func:`read_raster` returns.
    spatial : tuple of int
        ``(H, W)``, or ``(D, H, W)`` for a TIFF stack.
    dtype : numpy.dtype
        Stored sample type: ``uint8`` (also for 1/2/4-bit and palette
        images), ``uint16``, ``bool`` (1-bit TIFF) or any TIFF sample type.
    """

    channels: int
    spatial: tuple[int, ...]
    dtype: np.dtype


@contextlib.contextmanager
def readable(path: Path, kind: str, *,
             also: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Report a file its library cannot decode (corrupt, truncated) as one ValueError naming it.

    Parameters
    ----------
    path : Path
    kind : str
        The format's name in the message (``"PNG"``, ``"NIfTI"``).
    also : tuple of exception types
        The library's own errors, besides the usual I/O and value errors.
    """
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError, SyntaxError, zlib.error, *also) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"{path}: not a readable {kind} image (corrupt or truncated?): "
                         f"{reason}") from error


def _pillow_header(image, path: Path) -> RasterHeader:
    """Channels and sample type of an opened, not yet decoded, Pillow image."""
    spatial = (image.height, image.width)
    # the raw mode of the decoder tile (Pillow's plugin API) names the stored bit depth
    rawmode = image.tile[0][3] if image.format == "PNG" and image.tile else None
    if rawmode in _WIDE_PNG:
        return RasterHeader(_WIDE_PNG[rawmode], spatial, np.dtype(np.uint16))
    if image.mode.startswith("I;16") or rawmode == "I;16B":
        return RasterHeader(1, spatial, np.dtype(np.uint16))
    if image.mode in ("I", "F"):
        raise ValueError(f"{path}: 32-bit {image.format} images are not supported")
    return RasterHeader(1 if image.mode in _GREY_MODES else 3, spatial, np.dtype(np.uint8))


def _tiff_layout(axes: str, shape: tuple[int, ...], extra: int,
                 path: Path) -> tuple[list[int], int, int, tuple[int, ...]]:
    """``(axis order, stored channels, kept channels, spatial shape)`` of a TIFF series.

    The channel axis (``S`` samples or ``C`` channels) goes first, then the
    spatial axes (``Y``, ``X`` and at most one more of size > 1, the depth
    of a stack); axes of size 1 are dropped. Extra samples (alpha) are not
    kept.
    """
    indices = range(len(axes))
    channel = [i for i in indices if axes[i] in "SC" and shape[i] > 1]
    spatial = [i for i in indices if i not in channel and (shape[i] > 1 or axes[i] in "YX")]
    if len(channel) > 1 or len(spatial) > 3:
        raise ValueError(f"{path}: a TIFF of axes {axes!r} {shape} is not a 2D or 3D image "
                         "with at most one channel axis")
    stored = shape[channel[0]] if channel else 1
    kept = stored - extra if channel and axes[channel[0]] == "S" else stored
    rest = [i for i in indices if i not in channel + spatial]
    return channel + spatial + rest, stored, kept, tuple(shape[i] for i in spatial)


def _open_tiff(path: Path):
    import tifffile

    with readable(path, "TIFF"):
        return tifffile.TiffFile(path)


def _tiff_series(tiff, path: Path):
    series = tiff.series[0]
    extra = len(series.keyframe.extrasamples)
    return series, _tiff_layout(series.axes, tuple(series.shape), extra, path)


def raster_header(path: str | os.PathLike, kind: str) -> RasterHeader:
    """The :class:`RasterHeader` of a ``"png"``, ``"jpeg"``, ``"bmp"`` or ``"tiff"`` file."""
    path = Path(path)
    if kind == "tiff":
        with _open_tiff(path) as tiff, readable(path, "TIFF"):
            series, (_, _, kept, spatial) = _tiff_series(tiff, path)
            return RasterHeader(kept, spatial, np.dtype(series.dtype))
    from PIL import Image

    with readable(path, PILLOW_FORMATS[kind]), Image.open(path) as image:
        return _pillow_header(image, path)


def read_raster(path: str | os.PathLike, kind: str) -> np.ndarray:
    """Decode a raster file to ``(C, *spatial)`` samples of its stored type (alpha dropped)."""
    path = Path(path)
    if kind == "tiff":
        with _open_tiff(path) as tiff, readable(path, "TIFF"):
            series, (order, stored, kept, spatial) = _tiff_series(tiff, path)
            data = series.asarray()
        return np.ascontiguousarray(
            np.transpose(data, order).reshape(stored, *spatial)[:kept])
    from PIL import Image

    with readable(path, PILLOW_FORMATS[kind]), Image.open(path) as image:
        header = _pillow_header(image, path)
        if image.format == "PNG" and image.tile and image.tile[0][3] in _WIDE_PNG:
            import imagecodecs

            pixels = imagecodecs.png_decode(path.read_bytes())[..., :header.channels]
        elif image.mode in ("LA", "La"):
            pixels = np.asarray(image.getchannel(0))
        elif image.mode == "1":
            pixels = np.asarray(image.convert("L"))
        elif header.channels == 3 and image.mode != "RGB":
            pixels = np.asarray(image.convert("RGB"))
        else:
            pixels = np.asarray(image)
    pixels = pixels.astype(header.dtype, copy=False)
    return np.ascontiguousarray(pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0))


def write_raster(path: str | os.PathLike, samples: np.ndarray, kind: str) -> Path:
    """Write ``(1 or 3, *spatial)`` samples (uint8, uint16 or, for TIFF, float32), atomically.

    PNG, JPEG and BMP take 2D images; TIFF also takes a 3D stack, written
    as one page per slice of the first spatial axis.

    Raises
    ------
    ValueError
        A shape or sample type the format cannot hold.
    """
    path = Path(path)
    samples = np.asarray(samples)
    dims = (2, 3) if kind == "tiff" else (2,)
    name = "TIFF" if kind == "tiff" else PILLOW_FORMATS[kind]
    if samples.shape[0] not in (1, 3) or samples.ndim - 1 not in dims:
        shapes = " or ".join(f"(1 or 3, {', '.join('DHW'[3 - d:])})" for d in dims)
        raise ValueError(f"{path}: {name} needs a {shapes} image, got shape {samples.shape}")
    if samples.dtype.name not in _WRITABLE[kind]:
        raise ValueError(f"{path}: {name} holds {' or '.join(_WRITABLE[kind])} samples, "
                         f"not {samples.dtype}")
    pixels = samples[0] if samples.shape[0] == 1 else np.moveaxis(samples, 0, -1)
    pixels = np.ascontiguousarray(pixels)
    with atomic_path(path) as temporary:
        if kind == "tiff":
            import tifffile

            tifffile.imwrite(temporary, pixels, compression="zlib",
                             photometric="rgb" if samples.shape[0] == 3 else "minisblack")
        elif kind == "png" and pixels.dtype == np.uint16 and pixels.ndim == 3:
            import imagecodecs

            temporary.write_bytes(imagecodecs.png_encode(pixels))
        else:
            from PIL import Image

            options = {"quality": 95} if kind == "jpeg" else {}
            Image.fromarray(pixels).save(temporary, format=PILLOW_FORMATS[kind], **options)
    return path
