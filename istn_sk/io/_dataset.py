"""A lazy torch Dataset of image files, and batch iteration over it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ._images import Normalizer, image_shape, read_image


class ImageDataset(Dataset):
    """Images read from disk on demand: item ``i`` is ``(image, i)``.

    Only the headers are read up front (to check that every image has the
    same shape); pixels are read when an item is requested, so a
    :class:`~torch.utils.data.DataLoader` with ``num_workers > 0`` reads
    large 3D sets in parallel without holding them in memory.

    Parameters
    ----------
    paths : sequence of path-like
        Image files of any format :func:`istn_sk.io.read_image` reads.
    masks : sequence of path-like, optional
        One mask per image; voxels where the mask is 0 are set to 0 before
        normalizing.
    normalizer : {"none", "tanh"}, default="none"
        Applied to the stored intensities (raster images: after mapping to
        [-1, 1]).

    Attributes
    ----------
    shape : tuple of int
        ``(C, *spatial)`` of every image.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], *,
                 masks: Sequence[str | os.PathLike] | None = None,
                 normalizer: str = "none") -> None:
        self.paths = [Path(path) for path in paths]
        self.masks = None if masks is None else [Path(path) for path in masks]
        self.normalizer = Normalizer(normalizer)
        if not self.paths:
            raise ValueError("no images to read")
        if self.masks is not None and len(self.masks) != len(self.paths):
            raise ValueError(f"{len(self.masks)} masks for {len(self.paths)} images")
        self.shape = _common_shape(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = read_image(self.paths[index])
        if self.masks is not None:
            image = image * (read_image(self.masks[index])[:1] != 0)
        if not np.isfinite(image).all():
            raise ValueError(f"{self.paths[index]}: {int(np.isnan(image).sum())} NaN and "
                             f"{int(np.isinf(image).sum())} infinite values; images must be "
                             "finite")
        return torch.from_numpy(np.asarray(self.normalizer(image), dtype=np.float32)), index


def _common_shape(paths: Sequence[Path]) -> tuple[int, ...]:
    """The ``(C, *spatial)`` shape every file in ``paths`` has, read from the headers.

    Raises
    ------
    ValueError
        When the files differ: the message lists each shape with the first
        file that has it and how many files have it, in order of first
        appearance.
    """
    first: dict[tuple[int, ...], Path] = {}
    counts: dict[tuple[int, ...], int] = {}
    for path in paths:
        shape = image_shape(path)
        first.setdefault(shape, path)
        counts[shape] = counts.get(shape, 0) + 1
    if len(first) > 1:
        listed = ", ".join(
            f"{path} has shape {shape} "
            + ("(1 image)" if counts[shape] == 1 else f"(first of {counts[shape]} images)")
            for shape, path in first.items())
        raise ValueError(f"images of {len(first)} different shapes (channels first): {listed}; "
                         "all images must match")
    return next(iter(first))


def iter_batches(dataset: Dataset, *, batch_size: int = 16,
                 num_workers: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of ``(images, indices)`` as numpy arrays, in order.

    Parameters
    ----------
    dataset : Dataset
        Items ``(image tensor, index)``, e.g. :class:`ImageDataset`.
    batch_size : int, default=16
    num_workers : int, default=0
        Reader processes (:class:`torch.utils.data.DataLoader`).
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for images, indices in loader:
        yield images.numpy(), indices.numpy()


def load_images(dataset: Dataset, *, batch_size: int = 16, num_workers: int = 0) -> np.ndarray:
    """Read every image of ``dataset`` into one ``(n, C, *spatial)`` float32 array."""
    return np.concatenate([images for images, _ in iter_batches(
        dataset, batch_size=batch_size, num_workers=num_workers)])
