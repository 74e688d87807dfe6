"""The commands' data: a manifest, a folder or a registered dataset, read lazily or at once."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._settings import pairs_to_dict

if TYPE_CHECKING:
    import pandas as pd

    from istn_sk.io import Manifest

#: Sites of a registered dataset's rows (its ``sample_domain`` > 0 and < 0).
DATASET_SITES = ("source", "target")


@dataclass(frozen=True)
class ImageSet:
    """Images with a table of their metadata (one row per image).

    Either ``manifest`` (files, read on demand) or ``arrays`` (a registered
    dataset, loaded in memory) is set.
    """

    table: pd.DataFrame
    name: str
    manifest: Manifest | None = None
    arrays: np.ndarray | None = None
    normalizer: str = "none"

    def __len__(self) -> int:
        return len(self.table)

    def column(self, key: str) -> np.ndarray:
        """A metadata column (ValueError naming the closest column when absent)."""
        if key not in self.table.columns:
            from istn_sk.io._manifest import missing_column

            raise missing_column(key, list(self.table.columns), self.name)
        return self.table[key].to_numpy()

    def rows(self, keep: np.ndarray) -> ImageSet:
        """The images where the boolean ``keep`` is true."""
        keep = np.asarray(keep, dtype=bool)
        if self.manifest is not None:
            manifest = self.manifest.rows(keep)
            return ImageSet(manifest.table, self.name, manifest=manifest,
                            normalizer=self.normalizer)
        return ImageSet(self.table[keep].reset_index(drop=True), self.name,
                        arrays=self.arrays[keep], normalizer=self.normalizer)

    def batches(self, *, batch_size: int, num_workers: int
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(images, row indices)`` batches in row order; files are read on demand."""
        if self.arrays is not None:
            for start in range(0, len(self), batch_size):
                stop = min(start + batch_size, len(self))
                yield self.arrays[start:stop], np.arange(start, stop)
            return
        from istn_sk.io import iter_batches

        yield from iter_batches(self.manifest.dataset(self.normalizer), batch_size=batch_size,
                                num_workers=num_workers)

    def images(self, *, num_workers: int = 0) -> np.ndarray:
        """Every image in one ``(n, C, *spatial)`` float32 array."""
        if self.arrays is not None:
            return self.arrays
        from istn_sk.io import load_images

        return load_images(self.manifest.dataset(self.normalizer), num_workers=num_workers)

    def files(self) -> list[Path] | None:
        """The image files (None for a registered dataset)."""
        return None if self.manifest is None else self.manifest.paths

    def output_names(self) -> list[str]:
        """Per-row relative output paths without suffix (mirroring the inputs)."""
        if self.manifest is not None:
            return self.manifest.relative_outputs()
        return [str(name) for name in self.table["id"]]

    def output_suffixes(self) -> list[str]:
        """The suffix each row's outputs take: the input's, else by dimension.

        A DICOM series (a folder) gives ``.nii.gz``, with the series' geometry.
        """
        if self.manifest is None:
            return [".png" if self.arrays.ndim == 4 else ".nii.gz"] * len(self)
        from istn_sk.io._images import split_suffix

        return [split_suffix(path)[1].lower() or ".nii.gz" for path in self.manifest.paths]

    def labels(self, key: str | None, *, regression: bool) -> np.ndarray:
        """Task labels of every row: floats for regression, as stored otherwise.

        A registered dataset's labels are its ``label`` column, the default key.
        """
        if key is None and self.manifest is None:
            key = "label"
        if key is None:
            raise ValueError("training or scoring a task model needs --label-key (label_key)")
        values = self.column(key)
        if not regression:
            return values
        try:
            return values.astype(float)
        except ValueError:
            raise ValueError(f"{self.name}: column {key!r} holds labels that are not numbers "
                             f"(e.g. {next(v for v in values if not _is_number(v))!r}); a "
                             "regressor needs numeric labels") from None


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _dataset_names() -> list[str]:
    from istn_sk import get_registry

    return get_registry().names("dataset")


def load_image_set(spec: str | None, where: Any, settings: Mapping[str, Any], *,
                   role: str) -> ImageSet:
    """Open one data set of a command.

    Parameters
    ----------
    spec : str
        A manifest (``.tsv``/``.csv``), a folder (with ``manifest.tsv``, or
        of image files), or a registered dataset's name.
    where : pairs or mapping
        Row filters for a manifest; ``load`` options for a dataset.
    settings : mapping
        ``image_key``, ``mask_key`` and ``normalizer``.
    role : str
        The option that named it (for messages), e.g. ``"train_set"``.
    """
    from istn_sk.io import parse_value, read_manifest

    if not spec:
        raise ValueError(f"no {role} given (--{role.replace('_', '-')} or {role!r} in --config)")
    conditions = pairs_to_dict(where.items() if isinstance(where, Mapping) else where)
    if Path(spec).exists():
        manifest = read_manifest(spec, image_key=settings["image_key"],
                                 mask_key=settings.get("mask_key"))
        kept = manifest.where(conditions)
        if not len(kept):
            raise ValueError(f"{spec}: no rows left after the filters {conditions}")
        return ImageSet(kept.table, str(spec), manifest=kept, normalizer=settings["normalizer"])
    names = _dataset_names()
    if spec not in names:
        close = difflib.get_close_matches(spec, names, n=1)
        raise FileNotFoundError(
            f"{role} {spec!r} is neither an existing manifest or folder nor a registered "
            f"dataset ({', '.join(names)})" + (f"; did you mean {close[0]!r}?" if close else ""))
    import pandas as pd

    from istn_sk import datasets

    options = {key: parse_value(value) if isinstance(value, str) else value
               for key, value in conditions.items()}
    X, y, sample_domain = datasets.load(spec, **options)
    table = pd.DataFrame({
        "id": [f"{spec}-{i:05d}" for i in range(len(X))],
        "site": np.where(np.asarray(sample_domain) > 0, *DATASET_SITES),
        "label": y,
    })
    return ImageSet(table, spec, arrays=np.asarray(X, dtype=np.float32))


def chosen_sites(images: ImageSet, settings: Mapping[str, Any], roles: tuple[str, ...], *,
                 swap: bool = False) -> list[str]:
    """The site named by ``settings[role]`` for each role, checked against the data.

    A registered dataset's sites are ``"source"`` and ``"target"``, the
    defaults when the settings name none. ``swap`` exchanges the first two
    roles (``--b2a``).

    Raises
    ------
    ValueError
        A site is not named, or has no rows.
    """
    present = sorted({str(site) for site in images.column(settings["site_key"])})
    chosen = [settings.get(role) for role in roles]
    if set(present) <= set(DATASET_SITES):
        chosen = [DATASET_SITES[i] if value is None else value for i, value in enumerate(chosen)]
    if swap:
        chosen[:2] = chosen[1::-1]
    for role, site in zip(roles, chosen, strict=True):
        if site is None:
            raise ValueError(f"choose --{role.replace('_', '-')} among the sites "
                             f"{present} of {images.name} (column {settings['site_key']!r})")
        if str(site) not in present:
            raise ValueError(f"{images.name}: no rows of site {site!r} in column "
                             f"{settings['site_key']!r} (sites: {present})")
    return [str(site) for site in chosen]


def site_mask(images: ImageSet, settings: Mapping[str, Any], site: str) -> np.ndarray:
    """Rows of ``site`` (compared as text)."""
    return images.column(settings["site_key"]).astype(str) == site
