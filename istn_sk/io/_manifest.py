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

if TYPE_CHECKING:
    import pandas as pd

    from ._dataset import ImageDataset

MANIFEST_NAME = "manifest.tsv"
SEPARATORS = {".tsv": "\t", ".csv": ","}


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
        """Raise FileNotFoundError naming the first missing image or mask file."""
        for kind, paths in (("image", self.paths), ("mask", self.mask_paths or [])):
            missing = [i for i, path in enumerate(paths) if not path.is_file()]
            if missing:
                first = missing[0]
                raise FileNotFoundError(
                    f"{self.source or 'manifest'}: {len(missing)} {kind} file(s) do not exist; "
                    f"first: {paths[first]} (row {first + 1})")
        return self

    def relative_outputs(self) -> list[str]:
        """Paths for per-row outputs, relative to an output folder, without image suffix.

        A relative image path inside ``root`` is kept (``A/train/x.png`` ->
        ``A/train/x``); any other path gives its file name alone.

        Raises
        ------
        ValueError
            Two rows would write the same file.
        """
        outputs = []
        for text in self.table[self.image_key].astype(str):
            stem, _ = split_suffix(text)
            path = Path(stem)
            outputs.append(path.as_posix() if not path.is_absolute() and ".." not in path.parts
                           else path.name)
        if len(set(outputs)) != len(outputs):
            raise ValueError(f"{self.source or 'manifest'}: several rows have images of the "
                             "same name; give them distinct relative paths")
        return outputs

    def dataset(self, normalizer: str = "none") -> ImageDataset:
        """A lazy :class:`ImageDataset` over the rows' images (masks applied)."""
        from ._dataset import ImageDataset

        return ImageDataset(self.paths, masks=self.mask_paths, normalizer=normalizer)


def read_manifest(path: str | os.PathLike, *, image_key: str = "image",
                  mask_key: str | None = None, check_files: bool = True) -> Manifest:
    """Read a TSV/CSV manifest, or list a folder of NIfTI/PNG images.

    Parameters
    ----------
    path : path-like
        A ``.tsv`` or ``.csv`` file; or a folder holding ``manifest.tsv``
        (as written by ``istn_sk.datasets.make``); or any other folder, read
        recursively for ``.nii``, ``.nii.gz`` and ``.png`` files (columns
        ``id``, ``image`` and ``site``, the first sub-folder's name, empty for
        files at the top).
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
    table = pd.read_csv(path, sep=separator)
    manifest = Manifest(table, path.parent, image_key, mask_key, source=str(path))
    return manifest.check_files() if check_files else manifest


def _folder_manifest(folder: Path, image_key: str, mask_key: str | None) -> Manifest:
    import pandas as pd

    files = sorted(
        file for file in folder.rglob("*")
        if file.is_file() and file.name.lower().endswith(IMAGE_SUFFIXES)
        and not any(part.startswith(".") for part in file.relative_to(folder).parts)
    )
    if not files:
        raise ValueError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    relative = [file.relative_to(folder) for file in files]
    table = pd.DataFrame({
        "id": [Path(split_suffix(path.name)[0]).name for path in relative],
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
    table = pd.DataFrame({"id": [split_suffix(file.name)[0] for file in files],
                          image_key: [str(file) for file in files]})
    return Manifest(table, Path.cwd(), image_key, source="the image files").check_files()
