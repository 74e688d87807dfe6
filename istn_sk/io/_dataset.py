"""A lazy torch Dataset of image files, and batch iteration over it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ._geometry import Geometry
from ._images import Normalizer, image_shape, read_image, read_volume, volume_header


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
    reorient : bool, default=False
        Reorient every volume to the closest canonical orientation (RAS+),
        :func:`istn_sk.io.harmonise_geometry`'s first step (volumes only).
    voxel_size : float or 3 floats, optional
        Resample every volume to this voxel size (mm): linear for images,
        nearest neighbour for masks.
    out_shape : 3 ints, optional
        Resample (or crop/pad) every volume to this spatial shape.

    Attributes
    ----------
    shape : tuple of int
        ``(C, *spatial)`` of every image (after the geometry step, if any).
    geometry_records : list of dict or None
        With a geometry step: one record per image of what it does
        (:func:`istn_sk.io.harmonise_geometry`), planned from the headers;
        ``record["affine"]`` is the affine of the image as this Dataset gives it.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], *,
                 masks: Sequence[str | os.PathLike] | None = None,
                 normalizer: str = "none", reorient: bool = False,
                 voxel_size: float | Sequence[float] | None = None,
                 out_shape: Sequence[int] | None = None) -> None:
        self.paths = [Path(path) for path in paths]
        self.masks = None if masks is None else [Path(path) for path in masks]
        self.normalizer = Normalizer(normalizer)
        if not self.paths:
            raise ValueError("no images to read")
        if self.masks is not None and len(self.masks) != len(self.paths):
            raise ValueError(f"{len(self.masks)} masks for {len(self.paths)} images")
        geometry = Geometry(reorient, voxel_size, out_shape)
        self.geometry = geometry if geometry.active else None
        self.geometry_records = None
        if self.geometry is None:
            self.shape = _common_shape(self.paths)
            return
        shapes, self.geometry_records = [], []
        for path in self.paths:
            shape, affine = volume_header(path)
            record = self.geometry.plan(shape[1:], affine).record
            shapes.append((shape[0], *record["shape"]))
            self.geometry_records.append(record)
        self.shape = _common_shape(self.paths, shapes)

    def _read(self, index: int) -> np.ndarray:
        """Image ``index`` (after the geometry step), masked."""
        if self.geometry is None:
            image = read_image(self.paths[index])
            if self.masks is not None:
                image = image * (read_image(self.masks[index])[:1] != 0)
            return image
        image, _ = read_volume(self.paths[index], geometry=self.geometry)
        if self.masks is not None:
            mask, _ = read_volume(self.masks[index], geometry=self.geometry,
                                  interpolation="nearest")
            if mask.shape[1:] != image.shape[1:]:
                raise ValueError(f"{self.masks[index]}: the mask's grid after the geometry "
                                 f"step, {mask.shape[1:]}, is not its image's, "
                                 f"{image.shape[1:]}; masks must share their image's grid")
            image = image * (mask[:1] != 0)
        return image

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self._read(index)
        _check_finite(image, self.paths[index])
        return torch.from_numpy(np.asarray(self.normalizer(image), dtype=np.float32)), index


class SampleDataset(Dataset):
    """Dict samples (e.g. MONAI's) run through a transform on demand: item ``i`` is ``(image, i)``.

    The dict counterpart of :class:`ImageDataset`, with the same items, so
    :func:`iter_batches` and :func:`load_images` read it: each sample, e.g.
    ``{"image": "sub-01.nii.gz", "domain": 1}``, goes through ``transform``
    (any callable from dict to dict, such as a ``monai.transforms.Compose``
    of ``LoadImaged``, ``Spacingd``, ...) when its item is requested, and
    the array under ``image_key`` is the image. :mod:`istn_sk.monai` builds
    such samples from a manifest.

    Parameters
    ----------
    samples : sequence of mapping
        One dict per image; never modified (the transform gets a shallow copy).
    transform : callable, optional
        Dict -> dict; without it the samples must already hold
        ``(C, *spatial)`` arrays or tensors.
    image_key : str, default="image"
        The key whose value, after ``transform``, is the ``(C, *spatial)`` image.
    """

    def __init__(self, samples: Sequence[Mapping], transform: Callable | None = None, *,
                 image_key: str = "image") -> None:
        self.samples = list(samples)
        self.transform = transform
        self.image_key = image_key
        if not self.samples:
            raise ValueError("no samples to read")

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, index: int) -> dict:
        """Sample ``index`` after ``transform`` (a new dict, all keys kept)."""
        sample = dict(self.samples[index])
        return sample if self.transform is None else self.transform(sample)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.sample(index)
        if not isinstance(sample, Mapping) or self.image_key not in sample:
            keys = list(sample) if isinstance(sample, Mapping) else type(sample).__name__
            raise KeyError(f"sample {index} has no key {self.image_key!r} after the "
                           f"transform (it has: {keys})")
        image = sample[self.image_key]
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        image = np.asarray(image, dtype=np.float32)
        _check_finite(image, f"sample {index} ({self.image_key!r})")
        return torch.from_numpy(image), index


def _check_finite(image: np.ndarray, where: object) -> None:
    """Raise ValueError, counting NaN and infinite values, unless ``image`` is finite."""
    if not np.isfinite(image).all():
        raise ValueError(f"{where}: {int(np.isnan(image).sum())} NaN and "
                         f"{int(np.isinf(image).sum())} infinite values; images must be "
                         "finite")


def _common_shape(paths: Sequence[Path],
                  shapes: Sequence[tuple[int, ...]] | None = None) -> tuple[int, ...]:
    """The ``(C, *spatial)`` shape every file in ``paths`` has, read from the headers.

    ``shapes``, when given, are the files' shapes (e.g. after a geometry step).

    Raises
    ------
    ValueError
        When the files differ: the message lists each shape with the first
        file that has it and how many files have it, in order of first
        appearance.
    """
    first: dict[tuple[int, ...], Path] = {}
    counts: dict[tuple[int, ...], int] = {}
    for i, path in enumerate(paths):
        shape = image_shape(path) if shapes is None else tuple(shapes[i])
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
        Items ``(image tensor, index)``, e.g. :class:`ImageDataset` or
        :class:`SampleDataset`.
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
