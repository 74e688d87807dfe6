"""MONAI interoperability: manifests as dict samples, and a fitted adapter as a transform.

Needs the ``monai`` extra (``pip install "istn-sk[monai]"``); importing
:mod:`istn_sk` alone never imports MONAI.

Public API
----------
manifest_samples
    An istn-sk manifest as MONAI-style dict samples (``{"image": path,
    "mask": path, "domain": 1, ...}``) for ``LoadImaged``, ``Spacingd``, ...
load_samples
    Run dict samples through a transform (e.g. a MONAI ``Compose``) and stack
    them into the ``(X, y, sample_domain)`` arrays :class:`~istn_sk.ISTNAdapter`
    fits on (through :class:`istn_sk.io.SampleDataset`).
ISTNTransformd
    A fitted adapter as a MONAI dictionary transform (S -> S2T on the fly).

See docs/monai.md for a complete pipeline.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

try:
    from monai.config import KeysCollection
    from monai.transforms import MapTransform
    from monai.utils import TransformBackends, convert_to_dst_type
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("istn_sk.monai needs MONAI; install it with "
                      "pip install \"istn-sk[monai]\"") from error

from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ._adapter import ISTNAdapter
from .io import Manifest, SampleDataset, read_manifest

__all__ = ["ISTNTransformd", "load_samples", "manifest_samples"]

#: sample_domain values of source and target rows (skada's convention, as the CLI uses).
SOURCE_DOMAIN, TARGET_DOMAIN = 1, -2
_RANGE_SLACK = 1e-3


def manifest_samples(manifest: Manifest | str | os.PathLike, *,
                     source: str | Sequence[str] | None = None,
                     target: str | Sequence[str] | None = None, site_key: str = "site",
                     label_key: str | None = None,
                     mask_key: str | None = None) -> list[dict[str, Any]]:
    """The rows of a manifest as MONAI-style dict samples.

    Each row becomes ``{"image": <absolute path>, "mask": <absolute path>,
    "label": ..., "domain": 1 or -2, <every other column>: value}``, ready
    for ``LoadImaged(keys=["image", "mask"])`` and the transforms after it.

    Parameters
    ----------
    manifest : Manifest or path-like
        A :class:`~istn_sk.io.Manifest`, or what :func:`~istn_sk.io.read_manifest` reads.
    source, target : str or list of str, optional
        Sites (values of ``site_key``) of the source and target domains:
        ``"domain"`` is 1 for source rows and -2 for target rows, as
        ``sample_domain`` in :meth:`ISTNAdapter.fit <istn_sk.ISTNAdapter.fit>`.
        With one of them, every other row belongs to the other domain; with
        both, rows of other sites are left out; with neither, samples have
        no ``"domain"``.
    site_key : str, default="site"
        The column of sites.
    label_key : str, optional
        A column copied to ``"label"`` too (e.g. ``"sex"``).
    mask_key : str, optional
        The column of mask paths (e.g. ``"mask"`` in
        :func:`~istn_sk.datasets.make_brain_sites` manifests), when
        ``manifest`` does not name one already.

    Returns
    -------
    list of dict
        One per (kept) row, in manifest order, paths absolute. ``"mask"``
        only with a mask column; MONAI's ``MaskIntensityd(keys="image",
        mask_key="mask")`` applies it.

    Raises
    ------
    ValueError
        A missing column, or ``source`` and ``target`` sharing a site.
    """
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, mask_key=mask_key)
    elif mask_key is not None and mask_key != manifest.mask_key:
        manifest = replace(manifest, mask_key=mask_key)
    table = manifest.table
    columns = [c for c in table.columns if c not in (manifest.image_key, manifest.mask_key)]
    records = table[columns].to_dict("records")
    fixed: dict[str, list] = {"image": [str(path.resolve()) for path in manifest.paths]}
    if manifest.mask_paths is not None:
        fixed["mask"] = [str(path.resolve()) for path in manifest.mask_paths]
    if label_key is not None:
        fixed["label"] = manifest.column(label_key).tolist()
    keep = np.ones(len(records), dtype=bool)
    if source is not None or target is not None:
        domains, keep = _domains(manifest.column(site_key).astype(str), source, target)
        fixed["domain"] = domains.tolist()
    samples = []
    for row, record in enumerate(records):
        if keep[row]:
            sample = {key: values[row] for key, values in fixed.items()}
            sample.update((str(k), v) for k, v in record.items() if str(k) not in sample)
            samples.append(sample)
    return samples


def _domains(sites: np.ndarray, source, target) -> tuple[np.ndarray, np.ndarray]:
    """``sample_domain`` of every row, and which rows belong to either domain."""
    def as_list(value):
        return None if value is None else [str(v) for v in np.atleast_1d(value)]

    source, target = as_list(source), as_list(target)
    if source is not None and target is not None and set(source) & set(target):
        raise ValueError(f"sites {sorted(set(source) & set(target))} are in both source and "
                         "target")
    is_source = (np.isin(sites, source) if source is not None else ~np.isin(sites, target))
    is_target = (np.isin(sites, target) if target is not None else ~is_source)
    return np.where(is_source, SOURCE_DOMAIN, TARGET_DOMAIN), is_source | is_target


def load_samples(samples: Sequence[Mapping], transform=None, *, image_key: str = "image",
                 label_key: str | None = "label", domain_key: str | None = "domain",
                 num_workers: int = 0) -> tuple[np.ndarray, np.ndarray | None,
                                                np.ndarray | None]:
    """Run dict samples through ``transform`` and stack them for :class:`~istn_sk.ISTNAdapter`.

    Parameters
    ----------
    samples : sequence of mapping
        E.g. from :func:`manifest_samples`.
    transform : callable, optional
        Dict -> dict, e.g. ``monai.transforms.Compose([LoadImaged(...), ...,
        ScaleIntensityd("image", minv=-1, maxv=1)])``. Random transforms draw
        anew at every call (seed them with ``Compose.set_random_state``).
    image_key : str, default="image"
        The ``(C, *spatial)`` image after ``transform``; all must share one shape.
    label_key, domain_key : str or None, default="label", "domain"
        Keys of the label and of ``sample_domain`` in the samples (read from
        the samples as given, before ``transform``); None, or a key no sample
        has, gives None in their place.
    num_workers : int, default=0
        Reader processes (:class:`torch.utils.data.DataLoader`).

    Returns
    -------
    X : ndarray of shape (n, C, *spatial), float32
    y : ndarray of shape (n,) or None
    sample_domain : ndarray of shape (n,) of int or None
        ``adapter.fit(X, y, sample_domain=sample_domain)`` takes them as they are.

    Raises
    ------
    ValueError
        Images of different shapes, non-finite values, or a key some samples lack.
    """
    from torch.utils.data import DataLoader

    dataset = SampleDataset(samples, transform, image_key=image_key)
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers)
    images = []
    for image, index in loader:
        if images and image.shape != images[0].shape:
            raise ValueError(f"sample {index} has shape {tuple(image.shape)} after the "
                             f"transform, sample 0 {tuple(images[0].shape)}; all images must "
                             "match (resample and crop to one grid, e.g. with Spacingd and "
                             "ResizeWithPadOrCropd)")
        images.append(image.numpy())
    X = np.stack(images)
    return X, _column(dataset.samples, label_key), _column(dataset.samples, domain_key, int)


def _column(samples: list[Mapping], key: str | None, dtype=None) -> np.ndarray | None:
    if key is None or not any(key in sample for sample in samples):
        return None
    missing = [i for i, sample in enumerate(samples) if key not in sample]
    if missing:
        raise ValueError(f"{len(missing)} of {len(samples)} samples have no {key!r} "
                         f"(first: sample {missing[0]})")
    return np.asarray([sample[key] for sample in samples], dtype=dtype)


class ISTNTransformd(MapTransform):
    """A fitted :class:`~istn_sk.ISTNAdapter` as a MONAI dictionary transform: S -> S2T.

    Maps the image under each key with the adapter's ISTN, in eval mode,
    without gradients, on the adapter's ``device``; the result has the
    input's type (a ``MetaTensor`` keeps its meta data, affine included, and
    its device; numpy stays numpy) and floating dtype. Images are
    channel-first, ``(C, *spatial)`` as one sample, or ``(B, C, *spatial)``
    as a collated batch, with the channels and spatial shape seen in ``fit``.
    It gives what ``adapter.transform`` gives on the same images.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the images to map.
    adapter : ISTNAdapter
        Fitted.
    direction : {"s2t", "t2s"}, default="s2t"
        ``"t2s"`` (cyclegan mode) maps target images to the source instead.
    input_range : (float, float), default=(-1.0, 1.0)
        The intensity range the images are in. The adapter works in [-1, 1];
        either compose ``ScaleIntensityd(keys, minv=-1, maxv=1)`` before this
        transform (the default range), or give the images' range, e.g.
        ``(0.0, 1.0)`` after ``ScaleIntensityd(keys)``: images are mapped
        linearly from it to [-1, 1] and the output back.
    domain_key : str, optional
        A key holding ``sample_domain`` (e.g. ``"domain"`` of
        :func:`manifest_samples`): images whose value is < 0 (target; > 0
        with ``"t2s"``) pass unmodified, as in ``adapter.transform(X,
        sample_domain)``.
    check_range : bool, default=True
        Warn when an image leaves ``input_range`` (the ISTN's output is in
        (-1, 1), so values outside are lost).
    allow_missing_keys : bool, default=False
        Skip keys a sample lacks instead of raising KeyError.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        The adapter is not fitted (a ``TypeError`` for anything but an ISTNAdapter).
    KeyError
        When called: a sample lacks a key (or ``domain_key``).
    ValueError
        When called: an image of another shape than in ``fit``.

    Notes
    -----
    An adapter on a GPU cannot run in forked :class:`~monai.data.DataLoader`
    workers: keep ``num_workers=0`` there, or apply the transform to the
    collated batches in the training loop (it accepts ``(B, C, *spatial)``).

    Examples
    --------
    >>> from monai.transforms import Compose, LoadImaged, EnsureChannelFirstd, ScaleIntensityd
    >>> to_target = Compose([LoadImaged("image"), EnsureChannelFirstd("image"),
    ...                      ScaleIntensityd("image", minv=-1, maxv=1),
    ...                      ISTNTransformd("image", adapter)])   # doctest: +SKIP
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, keys: KeysCollection, adapter: ISTNAdapter, *, direction: str = "s2t",
                 input_range: tuple[float, float] = (-1.0, 1.0), domain_key: str | None = None,
                 check_range: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if not isinstance(adapter, ISTNAdapter):
            raise TypeError(f"adapter must be a fitted ISTNAdapter, got {type(adapter).__name__}")
        try:
            check_is_fitted(adapter)
        except NotFittedError:
            raise NotFittedError("ISTNTransformd needs a fitted ISTNAdapter; call "
                                 "adapter.fit(X, sample_domain=...) first") from None
        if direction not in adapter.net_.module_:
            raise ValueError(f"direction must be one of {list(adapter.net_.module_)} for this "
                             f"adapter (mode={adapter.mode!r}), got {direction!r}")
        low, high = (float(value) for value in input_range)
        if not np.isfinite([low, high]).all() or not low < high:
            raise ValueError(f"input_range must be two finite numbers, low < high; got "
                             f"{input_range!r}")
        self.adapter = adapter
        self.direction = direction
        self.input_range = (low, high)
        self.domain_key = domain_key
        self.check_range = check_range

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Map the images under ``keys``; a new dict, other keys as they were."""
        result = dict(data)
        for key in self.keys:
            if key not in result and not self.allow_missing_keys:
                raise KeyError(f"ISTNTransformd: no key {key!r} in the sample; it has "
                               f"{list(result)} (allow_missing_keys=True skips it)")
        for key in self.key_iterator(result):
            result[key] = self._map(result[key], key, self._keep(result))
        return result

    def _keep(self, data: Mapping[Hashable, Any]) -> np.ndarray | None:
        """Rows to pass unmodified (the other domain), or None."""
        if self.domain_key is None:
            return None
        if self.domain_key not in data:
            raise KeyError(f"ISTNTransformd: no domain key {self.domain_key!r} in the sample; "
                           f"it has {list(data)}")
        value = data[self.domain_key]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        domains = np.asarray(value).ravel()
        return domains > 0 if self.direction == "t2s" else domains < 0

    def _map(self, image, key: Hashable, keep: np.ndarray | None):
        adapter = self.adapter
        spatial = tuple(adapter.image_shape_)
        tensor = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
        batched = tensor.dim() == len(spatial) + 2
        if not batched and tensor.dim() != len(spatial) + 1:
            raise ValueError(f"ISTNTransformd: {key!r} has shape {tuple(tensor.shape)}; "
                             f"expected channel-first (C, *spatial) or (B, C, *spatial) with "
                             f"{len(spatial)} spatial axes")
        batch = tensor if batched else tensor[None]
        expected = (adapter.n_channels_, *spatial)
        if tuple(batch.shape[1:]) != expected:
            raise ValueError(f"ISTNTransformd: {key!r} has shape {tuple(tensor.shape)}, the "
                             f"adapter was fitted on images of shape (C, *spatial) = "
                             f"{expected}; resample and crop to it (e.g. Spacingd and "
                             "ResizeWithPadOrCropd)")
        if keep is not None and keep.shape[0] != batch.shape[0]:
            raise ValueError(f"ISTNTransformd: {self.domain_key!r} has {keep.shape[0]} values "
                             f"for {batch.shape[0]} image(s) under {key!r}")
        scaled = self._scale(batch.to(adapter.device, torch.float32), inverse=False)
        if self.check_range:
            self._warn_out_of_range(scaled, key)
        istn = adapter.net_.module_[self.direction].eval()
        with torch.no_grad():
            mapped = torch.cat([istn(part) for part in torch.split(scaled, adapter.batch_size)])
        out = self._scale(mapped, inverse=True)
        if keep is not None and keep.any():
            rows = torch.from_numpy(keep).to(out.device)
            out[rows] = batch.to(out.device, out.dtype)[rows]
        out = out if batched else out[0]
        dtype = image.dtype if _is_floating(image.dtype) else torch.float32
        converted, *_ = convert_to_dst_type(out, dst=image, dtype=dtype)
        return converted

    def _scale(self, images: torch.Tensor, inverse: bool) -> torch.Tensor:
        """``input_range`` -> [-1, 1], or back with ``inverse`` (no-op for (-1, 1))."""
        low, high = self.input_range
        if (low, high) == (-1.0, 1.0):
            return images
        if inverse:
            return (images + 1.0) * ((high - low) / 2.0) + low
        return (images - low) * (2.0 / (high - low)) - 1.0

    def _warn_out_of_range(self, scaled: torch.Tensor, key: Hashable) -> None:
        low, high = float(scaled.min()), float(scaled.max())
        if low < -1.0 - _RANGE_SLACK or high > 1.0 + _RANGE_SLACK:
            warnings.warn(f"ISTNTransformd: {key!r} leaves input_range={self.input_range} "
                          f"(scaled to [{low:.3g}, {high:.3g}] instead of [-1, 1]); compose "
                          "ScaleIntensityd(minv=-1, maxv=1) before it or set input_range",
                          UserWarning, stacklevel=3)


def _is_floating(dtype) -> bool:
    if isinstance(dtype, torch.dtype):
        return dtype.is_floating_point
    return np.issubdtype(np.dtype(dtype), np.floating)
