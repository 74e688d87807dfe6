"""Manifests: tables with one image per row, as in the reference code's TSV files."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._images import IMAGE_SUFFIXES, split_suffix
from ._volumes import is_dicom_file

if TYPE_CHECKING:
    import pandas as pd

    from ._dataset import ImageDataset

MANIFEST_NAME = "manifest.tsv"
SEPARATORS = {".tsv": "\t", ".csv": ","}
#: The columns of the reference code's manifests, by position (they have no header line).
REFERENCE_COLUMNS = ("id", "image", "mask", "age", "sex", "scanner")
#: The reference code's dataset divides ages by this before they reach its task models.
REFERENCE_AGE_SCALE = 100.0


def missing_column(key: str, columns: Sequence[str], where: str) -> ValueError:
    """The error for a column that ``where`` lacks, with the closest existing name."""
    message = f"{where} has no column {key!r}; columns: {', '.join(map(str, columns))}"
    close = difflib.get_close_matches(key, [str(c) for c in columns], n=1)
    return ValueError(message + (f" (did you mean {close[0]!r}?)" if close else ""))


@dataclass(frozen=True)
class Manifest:
    """A table of images: one row per image, paths relative to ``root``.

    Parameters
    ----------
    table : pandas.DataFrame
        Any columns; ``image_key`` holds image paths (relative to ``root``
        or absolute), each image once; ``mask_key`` optional mask paths
        (rows may share a mask).
    root : pathlib.Path
        The folder relative paths start from (the manifest's folder).
        A path may name a folder: a DICOM series (see :func:`istn_sk.io.read_image`).
    image_key : str, default="image"
    mask_key : str, optional
    source : str, default=""
        Where the table came from, for messages.
    """

    table: pd.DataFrame
    root: Path
    image_key: str = "image"
    mask_key: str | None = None
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for key in (self.image_key, self.mask_key):
            if key is not None and key not in self.table.columns:
                raise missing_column(key, list(self.table.columns), self.source or "manifest")
        first_row: dict[str, int] = {}
        for row, text in enumerate(self.table[self.image_key].astype(str)):
            same = first_row.setdefault(os.path.normpath(self.root / text), row)
            if same != row:
                raise ValueError(f"{self.source or 'manifest'}: rows {same + 1} and {row + 1} "
                                 f"list the same image file ({text}); list each image once")

    def __len__(self) -> int:
        return len(self.table)

    @property
    def paths(self) -> list[Path]:
        """Image files, one per row."""
        return [self.root / str(path) for path in self.table[self.image_key]]

    @property
    def mask_paths(self) -> list[Path] | None:
        """Mask files, one per row, or None without ``mask_key``."""
        if self.mask_key is None:
            return None
        return [self.root / str(path) for path in self.table[self.mask_key]]

    def column(self, key: str) -> np.ndarray:
        """The values of one column, e.g. labels or sites.

        Raises
        ------
        ValueError
            No such column; the message names the closest one.
        """
        if key not in self.table.columns:
            raise missing_column(key, list(self.table.columns), self.source or "manifest")
        return self.table[key].to_numpy()

    def rows(self, keep: np.ndarray) -> Manifest:
        """The manifest of the rows where the boolean ``keep`` is true."""
        table = self.table[np.asarray(keep, dtype=bool)].reset_index(drop=True)
        return Manifest(table, self.root, self.image_key, self.mask_key, self.source)

    def where(self, conditions: Mapping[str, object]) -> Manifest:
        """Rows whose column equals a value (or one of a list of values), compared as text.

        Parameters
        ----------
        conditions : mapping of str to value or list of values
            E.g. ``{"split": "train", "domain": ["A", "B"]}``.
        """
        keep = np.ones(len(self), dtype=bool)
        for key, wanted in conditions.items():
            values = wanted if isinstance(wanted, (list, tuple)) else [wanted]
            keep &= np.isin(self.column(key).astype(str), [str(v) for v in values])
        return self.rows(keep)

    def check_files(self) -> Manifest:
        """Raise FileNotFoundError naming the first missing image, mask or series folder."""
        for kind, paths in (("image", self.paths), ("mask", self.mask_paths or [])):
            missing = [i for i, path in enumerate(paths)
                       if not (path.is_file() or path.is_dir())]
            if missing:
                first = missing[0]
                raise FileNotFoundError(
                    f"{self.source or 'manifest'}: {len(missing)} {kind} file(s) do not exist; "
                    f"first: {paths[first]} (row {first + 1})")
        return self

    def relative_outputs(self) -> list[str]:
        """Paths for per-row outputs, relative to an output folder, without image suffix.

        A relative image path inside ``root`` is kept (``A/train/x.png`` ->
        ``A/train/x``; a DICOM series folder ``A/series/`` -> ``A/series``);
        any other path gives its file name alone.

        Raises
        ------
        ValueError
            Two rows would write the same file.
        """
        outputs = []
        for text in self.table[self.image_key].astype(str):
            if (self.root / text).is_dir() and not text.lower().endswith(IMAGE_SUFFIXES):
                stem = text.rstrip("/" + os.sep) or text     # a DICOM series folder
            else:
                stem, _ = split_suffix(text)
            path = Path(stem)
            outputs.append(path.as_posix() if not path.is_absolute() and ".." not in path.parts
                           else path.name)
        if len(set(outputs)) != len(outputs):
            raise ValueError(f"{self.source or 'manifest'}: several rows have images of the "
                             "same name; give them distinct relative paths")
        return outputs

    def dataset(self, normalizer: str = "none", *, reorient: bool = False,
                voxel_size: float | Sequence[float] | None = None,
                out_shape: Sequence[int] | None = None) -> ImageDataset:
        """A lazy :class:`ImageDataset` over the rows' images (masks applied).

        ``reorient``, ``voxel_size`` and ``out_shape``: the opt-in geometry
        step of :class:`ImageDataset` (off by default).
        """
        from ._dataset import ImageDataset

        return ImageDataset(self.paths, masks=self.mask_paths, normalizer=normalizer,
                            reorient=reorient, voxel_size=voxel_size, out_shape=out_shape)


def read_manifest(path: str | os.PathLike, *, image_key: str = "image",
                  mask_key: str | None = None, check_files: bool = True) -> Manifest:
    """Read a TSV/CSV manifest, or list a folder of NIfTI/PNG images.

    Parameters
    ----------
    path : path-like
        A ``.tsv`` or ``.csv`` file (tab- or comma-separated, whatever the
        suffix) with a header line of column names; or one of the reference
        code's manifests, recognised by its first line being data (an id,
        then an image path): no header, columns by position ``id``,
        ``image``, ``mask``, ``age`` (divided by 100, as the reference's
        dataset does; ``age_years`` as written), ``sex``, ``scanner``, paths
        relative to the manifest's folder or, failing that, the current
        folder; or a folder holding ``manifest.tsv``
        (as written by ``istn_sk.datasets.make``); or any other folder, read
        recursively for image files of the known suffixes and for DICOM
        series (sub-folders holding DICOM files; a folder that is itself one
        series gives one row) (columns ``id``, ``image`` and ``site``, the
        first sub-folder's name, empty for files at the top).
    image_key : str, default="image"
        Column of image paths, relative to the manifest's folder.
    mask_key : str, optional
        Column of mask paths; voxels outside a mask (value 0) are set to 0.
    check_files : bool, default=True
        Check that every image and mask file exists.

    Returns
    -------
    Manifest

    Raises
    ------
    FileNotFoundError
        No such manifest, or (with ``check_files``) missing image files.
    ValueError
        Missing columns, an unknown suffix or a folder without images.
    """
    import pandas as pd

    path = Path(path)
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        path = path / MANIFEST_NAME
    if path.is_dir():
        return _folder_manifest(path, image_key, mask_key)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest or image folder at {path}")
    separator = SEPARATORS.get(path.suffix.lower())
    if separator is None:
        raise ValueError(f"{path}: a manifest is a .tsv or .csv file")
    first = _first_line(path)
    separator = _separator_of(first, separator)
    if _is_reference_row(first.split(separator)):
        manifest = _reference_manifest(path, separator, image_key, mask_key)
    else:
        table = pd.read_csv(path, sep=separator)
        manifest = Manifest(table, path.parent, image_key, mask_key, source=str(path))
    return manifest.check_files() if check_files else manifest


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8-sig", newline="") as file:
        return file.readline().rstrip("\r\n")


def _separator_of(first_line: str, by_suffix: str) -> str:
    """The suffix's separator, or the other one when only it is on the first line.

    The reference code's ``.tsv`` manifests are comma-separated.
    """
    other = "," if by_suffix == "\t" else "\t"
    return other if by_suffix not in first_line and other in first_line else by_suffix


def _is_reference_row(fields: Sequence[str]) -> bool:
    """A first line that is data, not a header: an id, then an image path (the reference's)."""
    return len(fields) >= 3 and fields[1].strip().lower().endswith(IMAGE_SUFFIXES)


def _reference_manifest(path: Path, separator: str, image_key: str,
                        mask_key: str | None) -> Manifest:
    """A manifest of the reference code: no header; id, image, mask, age, sex, scanner.

    Columns are named by position (further columns ``column_7``, ...).
    ``age`` is divided by 100, as the reference's dataset does before its
    task models see it (so its thresholds and errors keep their units);
    ``age_years`` holds the ages as written. Relative paths are relative to
    the manifest's folder, or, when the files are not all there but all are
    relative to the current folder (where the reference's scripts run),
    to the current folder.
    """
    import pandas as pd

    table = pd.read_csv(path, sep=separator, header=None, skipinitialspace=True)
    count = table.shape[1]
    table.columns = [*REFERENCE_COLUMNS[:count],
                     *(f"column_{i + 1}" for i in range(len(REFERENCE_COLUMNS), count))]
    if "age" in table.columns:
        if not pd.api.types.is_numeric_dtype(table["age"]):
            raise ValueError(f"{path}: the 4th column (age, in the reference code's layout: "
                             "id, image, mask, age, sex, scanner) holds values that are not "
                             "numbers")
        table["age_years"] = table["age"]
        table["age"] = table["age"] / REFERENCE_AGE_SCALE
    root = path.parent
    files = [str(value) for key in ("image", "mask") if key in table.columns
             for value in table[key]]
    if not all((root / file).is_file() for file in files) and all(
            Path(file).is_file() for file in files):
        root = Path.cwd()
    return Manifest(table, root, image_key, mask_key, source=str(path))


def combine_manifests(manifests: Sequence[Manifest], sites: Sequence[str], *,
                      site_key: str = "site") -> Manifest:
    """One manifest of several, with ``site_key`` set to each one's site.

    The reference code's ``siteA_train`` and ``siteB_train`` (or ``_val``)
    become one table. Image and mask paths are made absolute.

    Raises
    ------
    ValueError
        The manifests have different image or mask columns.
    """
    import pandas as pd

    if len({(m.image_key, m.mask_key) for m in manifests}) != 1:
        raise ValueError("the manifests to combine have different image or mask columns")
    tables = []
    for manifest, site in zip(manifests, sites, strict=True):
        table = manifest.table.copy()
        table[manifest.image_key] = [str(path.absolute()) for path in manifest.paths]
        if manifest.mask_key is not None:
            table[manifest.mask_key] = [str(path.absolute()) for path in manifest.mask_paths]
        table[site_key] = str(site)
        tables.append(table)
    first = manifests[0]
    return Manifest(pd.concat(tables, ignore_index=True), Path.cwd(), first.image_key,
                    first.mask_key, source=" + ".join(m.source for m in manifests))


def _series_folders(folder: Path, others: Sequence[Path]) -> list[Path]:
    """The folders (``folder`` itself included) directly holding DICOM files among ``others``."""
    found: dict[Path, bool] = {}
    for file in others:
        if not found.get(file.parent) and is_dicom_file(file):
            found[file.parent] = True
    return sorted(found)


def _folder_manifest(folder: Path, image_key: str, mask_key: str | None) -> Manifest:
    import pandas as pd

    files, others = [], []
    for file in sorted(folder.rglob("*")):
        if not file.is_file() or any(part.startswith(".")
                                     for part in file.relative_to(folder).parts):
            continue
        (files if file.name.lower().endswith(IMAGE_SUFFIXES) else others).append(file)
    series = _series_folders(folder, others)
    if series == [folder] and not files:      # one series: a row of it, from its parent
        table = pd.DataFrame({"id": [folder.name], image_key: [folder.name], "site": [""]})
        return Manifest(table, folder.parent, image_key, mask_key, source=str(folder))
    if folder in series:
        raise ValueError(f"{folder} holds DICOM files beside other images or series; put "
                         "each DICOM series in a folder of its own")
    files = sorted([*files, *series])
    if not files:
        raise ValueError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}) "
                         "nor DICOM series folders")
    relative = [file.relative_to(folder) for file in files]
    table = pd.DataFrame({
        "id": [Path(split_suffix(folder / path)[0]).name for path in relative],
        image_key: [path.as_posix() for path in relative],
        "site": [path.parts[0] if len(path.parts) > 1 else "" for path in relative],
    })
    return Manifest(table, folder, image_key, mask_key, source=str(folder))


def files_manifest(paths: Iterable[str | os.PathLike], *, image_key: str = "image") -> Manifest:
    """A manifest of image files given one by one (columns ``id`` and ``image``).

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    """
    import pandas as pd

    files = [Path(path).resolve() for path in paths]
    table = pd.DataFrame({"id": [Path(split_suffix(file)[0]).name for file in files],
                          image_key: [str(file) for file in files]})
    return Manifest(table, Path.cwd(), image_key, source="the image files").check_files()
