"""Volumes of the optional formats, with their world geometry: NRRD/MetaImage, DICOM series.

NRRD (``.nrrd``) and MetaImage (``.mha``, ``.mhd`` with its data file) are
read and written by SimpleITK (extra ``istn-sk[sitk]``); a DICOM series, a
folder of one series' slice files, is read by pydicom (extra
``istn-sk[dicom]``). Both libraries are imported only when such a file is
read, so ``import istn_sk`` never needs them.

Arrays are ``(C, X, Y, Z)`` (``(C, X, Y)`` for a 2D image) in the voxel
order of the file's first index running fastest, as nibabel gives NIfTI
volumes; the geometry is a 4x4 voxel-to-world affine in RAS+ millimetres,
NIfTI's convention. SimpleITK and DICOM describe the world in LPS+ (x to
the patient's left, y to the back), so their first two world axes are
negated on the way in and out.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._raster import readable

#: LPS+ <-> RAS+ world coordinates (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: SOP class of a DICOMDIR file (a media index, not an image).
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
#: Tags a slice needs for its place in the world.
_GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
#: Tolerances: direction cosines (unitless) and positions/spacings (mm).
_COSINE_TOLERANCE = 1e-4
_SPACING_TOLERANCE = 1e-2
_PIXEL_SPACING_TOLERANCE = 1e-4
_EXTRAS = {"SimpleITK": "sitk", "pydicom": "dicom"}


def _require(module: str, what: str):
    """Import an optional reader, or raise one ImportError naming its extra."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError as error:
        raise ImportError(f"{what} needs {module}; install it with "
                          f"pip install \"istn-sk[{_EXTRAS[module]}]\"") from error


# --------------------------------------------------------------------------- SimpleITK


def _sitk():
    return _require("SimpleITK", "reading and writing NRRD and MetaImage (.nrrd, .mha, .mhd)")


def _sitk_affine(size, spacing, origin, direction) -> np.ndarray:
    """The RAS+ 4x4 affine of an ITK image's LPS+ spacing, origin and direction."""
    dimension = len(size)
    if dimension not in (2, 3):
        raise ValueError(f"expected a 2D or 3D image, got {dimension} dimensions")
    lps = np.eye(4)
    lps[:dimension, :dimension] = (np.reshape(direction, (dimension, dimension))
                                   * np.asarray(spacing, dtype=float))
    lps[:dimension, 3] = origin
    return LPS_TO_RAS @ lps


def sitk_header(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    """``((C, *spatial), affine)`` of an NRRD/MetaImage file, read from its header."""
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with readable(path, "NRRD/MetaImage", also=(RuntimeError,)):
        reader.ReadImageInformation()
        size = reader.GetSize()
        affine = _sitk_affine(size, reader.GetSpacing(), reader.GetOrigin(),
                              reader.GetDirection())
    return (reader.GetNumberOfComponents(), *size), affine


def read_sitk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(image, affine)`` of an NRRD/MetaImage file: ``(C, *spatial)`` float32, RAS+ affine."""
    sitk = _sitk()
    with readable(path, "NRRD/MetaImage", also=(RuntimeError,)):
        image = sitk.ReadImage(str(path))
        affine = _sitk_affine(image.GetSize(), image.GetSpacing(), image.GetOrigin(),
                              image.GetDirection())
        samples = sitk.GetArrayFromImage(image)     # (z, y, x[, c]): last index fastest
    dimension = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() == 1:
        samples = samples[..., None]
    spatial = samples.transpose(*reversed(range(dimension)), dimension)   # (x, y, z, c)
    return np.ascontiguousarray(np.moveaxis(spatial, -1, 0), dtype=np.float32), affine


def write_sitk(path: Path, image: np.ndarray, affine: np.ndarray) -> Path:
    """Write a ``(C, *spatial)`` image with a RAS+ affine as NRRD/MetaImage.

    The files appear whole: they are written in a temporary folder beside
    ``path`` and moved into place (a ``.mhd`` header with its data file).
    """
    sitk = _sitk()
    dimension = image.ndim - 1
    if dimension not in (2, 3):
        raise ValueError(f"{path}: NRRD/MetaImage needs a (C, X, Y) or (C, X, Y, Z) image, "
                         f"got shape {image.shape}")
    samples = np.moveaxis(np.asarray(image, dtype=np.float32), 0, -1)
    samples = samples.transpose(*reversed(range(dimension)), dimension)     # (z, y, x, c)
    vector = samples.shape[-1] > 1
    itk = sitk.GetImageFromArray(samples if vector else samples[..., 0], isVector=vector)
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=float)
    columns = lps[:dimension, :dimension]
    spacing = np.linalg.norm(columns, axis=0)
    if np.any(spacing == 0):
        raise ValueError(f"{path}: the affine has a zero voxel size")
    itk.SetSpacing([float(s) for s in spacing])
    itk.SetOrigin([float(o) for o in lps[:dimension, 3]])
    itk.SetDirection([float(d) for d in (columns / spacing).ravel()])
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".tmp-", dir=path.parent) as folder:
        sitk.WriteImage(itk, str(Path(folder) / path.name))
        for written in sorted(Path(folder).iterdir(), key=lambda file: file.name == path.name):
            os.replace(written, path.parent / written.name)  # the header last
    return path


# --------------------------------------------------------------------------- DICOM


def _pydicom():
    return _require("pydicom", "reading DICOM series")


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series folder's slices, in order along the slice normal, and its geometry.

    Attributes
    ----------
    files : tuple of Path
        Slice files, first to last along the normal (row x column direction).
    shape : tuple of int
        ``(C, X, Y, Z)``: 1 channel, columns, rows, slices.
    affine : ndarray
        Voxel ``(column, row, slice)`` -> RAS+ millimetres.
    """

    files: tuple[Path, ...]
    shape: tuple[int, ...]
    affine: np.ndarray


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether a file starts as a DICOM file does (128 bytes of preamble, then ``DICM``)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _slice_files(folder: Path) -> list[Path]:
    return sorted(file for file in folder.iterdir()
                  if file.is_file() and not file.name.startswith("."))


def _tag(header, name: str, file: Path):
    value = getattr(header, name, None)
    if value is None or (not isinstance(value, (int, float)) and len(value) == 0):
        raise ValueError(f"{file}: DICOM slice without {name}; a series needs "
                         f"{', '.join(_GEOMETRY_TAGS)}, Rows and Columns to be read as "
                         "one volume")
    return value


def dicom_series(folder: str | os.PathLike) -> DicomSeries:
    """Read the headers of a DICOM series folder: slice order and geometry.

    Files that are not DICOM (and a DICOMDIR) are ignored. Slices are sorted
    by the position of ``ImagePositionPatient`` along the slice normal (the
    cross product of ``ImageOrientationPatient``'s row and column
    directions); the affine's columns are the row direction times the
    column spacing, the column direction times the row spacing
    (``PixelSpacing``), and the step from one slice's position to the next.

    Raises
    ------
    ValueError
        The folder holds no DICOM slice, slices of several series, slices
        without geometry tags, of different sizes or orientations, two
        slices at one position, unevenly spaced slices, or multi-frame files.
    """
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    headers = []
    for file in _slice_files(folder):
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError):
            continue
        meta = getattr(header, "file_meta", None)
        if (str(getattr(meta, "MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS
                or "DirectoryRecordSequence" in header):
            continue
        headers.append((file, header))
    if not headers:
        raise ValueError(f"{folder}: no DICOM files in this folder (a DICOM series is read "
                         "from a folder of its slice files)")
    series: dict[str, list[Path]] = {}
    for file, header in headers:
        series.setdefault(str(getattr(header, "SeriesInstanceUID", "")), []).append(file)
    if len(series) > 1:
        listed = "; ".join(f"{uid or '(no SeriesInstanceUID)'}: {len(files)} files, e.g. "
                           f"{files[0].name}" for uid, files in series.items())
        raise ValueError(f"{folder}: DICOM files of {len(series)} series ({listed}); "
                         "put each series in a folder of its own")
    rows, columns, positions, orientations, spacings = [], [], [], [], []
    for file, header in headers:
        if int(getattr(header, "NumberOfFrames", 1) or 1) > 1:
            raise ValueError(f"{file}: multi-frame DICOM files are not read; convert the "
                             "series to single-frame slices or NIfTI first")
        if int(getattr(header, "SamplesPerPixel", 1) or 1) != 1:
            raise ValueError(f"{file}: colour DICOM slices are not read (SamplesPerPixel "
                             f"{header.SamplesPerPixel}); one sample per pixel is needed")
        rows.append(int(_tag(header, "Rows", file)))
        columns.append(int(_tag(header, "Columns", file)))
        positions.append(np.asarray(_tag(header, "ImagePositionPatient", file), dtype=float))
        orientations.append(np.asarray(_tag(header, "ImageOrientationPatient", file),
                                       dtype=float))
        spacings.append(np.asarray(_tag(header, "PixelSpacing", file), dtype=float))
        if positions[-1].shape != (3,) or orientations[-1].shape != (6,) \
                or spacings[-1].shape != (2,):
            raise ValueError(f"{file}: malformed geometry tags (ImagePositionPatient needs 3 "
                             "values, ImageOrientationPatient 6, PixelSpacing 2)")
    files = [file for file, _ in headers]
    for name, values, tolerance in (("Rows", rows, 0), ("Columns", columns, 0),
                                    ("ImageOrientationPatient", orientations, _COSINE_TOLERANCE),
                                    ("PixelSpacing", spacings, _PIXEL_SPACING_TOLERANCE)):
        differs = [i for i, value in enumerate(values)
                   if np.max(np.abs(np.asarray(value) - values[0])) > tolerance]
        if differs:
            raise ValueError(f"{folder}: the slices differ in {name} ({files[0].name}: "
                             f"{np.asarray(values[0]).tolist()}, {files[differs[0]].name}: "
                             f"{np.asarray(values[differs[0]]).tolist()})")
    row_direction, column_direction = orientations[0][:3], orientations[0][3:]
    normal = np.cross(row_direction, column_direction)
    if abs(np.linalg.norm(normal) - 1) > 1e-3:
        raise ValueError(f"{folder}: ImageOrientationPatient {orientations[0].tolist()} is "
                         "not two orthogonal unit vectors")
    distances = np.array([normal @ position for position in positions])
    order = np.argsort(distances, kind="stable")
    distances = distances[order]
    gaps = np.diff(distances)
    if gaps.size and gaps.min() < _SPACING_TOLERANCE:
        first = int(np.argmin(gaps))
        raise ValueError(f"{folder}: two slices at one position ({files[order[first]].name} "
                         f"and {files[order[first + 1]].name}, {distances[first]:.3f} mm along "
                         "the slice normal); a series of several echoes, phases or times "
                         "is not one volume")
    if gaps.size and gaps.max() - gaps.min() > max(_SPACING_TOLERANCE, 0.01 * gaps.mean()):
        raise ValueError(f"{folder}: unevenly spaced slices ({gaps.min():.3f} to "
                         f"{gaps.max():.3f} mm apart); missing slices?")
    first_position = positions[order[0]]
    if len(files) > 1:
        step = (positions[order[-1]] - first_position) / (len(files) - 1)
    else:
        header = headers[0][1]
        thickness = getattr(header, "SpacingBetweenSlices", None) or getattr(
            header, "SliceThickness", None) or 1.0
        step = normal * float(thickness)
    row_spacing, column_spacing = spacings[0]
    lps = np.eye(4)
    lps[:3, 0] = row_direction * column_spacing    # along a row: the column index grows
    lps[:3, 1] = column_direction * row_spacing    # down a column: the row index grows
    lps[:3, 2] = step
    lps[:3, 3] = first_position
    return DicomSeries(tuple(files[i] for i in order), (1, columns[0], rows[0], len(files)),
                       LPS_TO_RAS @ lps)


def read_dicom(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(image, affine)`` of a DICOM series folder: ``(1, X, Y, Z)`` float32, RAS+ affine.

    Values are the stored samples times ``RescaleSlope`` plus
    ``RescaleIntercept`` (each slice's own; 1 and 0 when absent).
    """
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    series = dicom_series(folder)
    volume = np.empty(series.shape[1:], dtype=np.float32)
    for k, file in enumerate(series.files):
        with readable(file, "DICOM", also=(InvalidDicomError, RuntimeError, AttributeError)):
            dataset = pydicom.dcmread(file)
            samples = np.asarray(dataset.pixel_array, dtype=np.float64)
        slope = float(getattr(dataset, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(dataset, "RescaleIntercept", 0.0) or 0.0)
        volume[:, :, k] = (samples * slope + intercept).T     # (rows, columns) -> (X, Y)
    return volume[None], series.affine

