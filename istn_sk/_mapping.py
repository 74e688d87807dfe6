"""Applying a fitted ISTN: ``transform``, ``inverse_transform`` and ``explain``."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ._multi_source import mapped_batches
from ._validation import check_finite, image_layout


class MappingMixin:
    """The mapping methods of :class:`~istn_sk.ISTNAdapter`, for a fitted ``net_``."""

    def transform(self, X, sample_domain=None):
        """Map images to the target domain (S -> S2T).

        Parameters
        ----------
        X : array-like, same layout as in ``fit``
        sample_domain : array-like of shape (n,), optional
            Rows with ``sample_domain < 0`` (target) are returned unmodified,
            the paper's protocol for target data; without it every row is
            transformed. Needed after a fit on several source sites: each
            source row is mapped by its site's ISTN.

        Returns
        -------
        ndarray, same shape and floating dtype as ``X``
        """
        return self._apply("s2t", X, sample_domain, keep=lambda domains: domains < 0)

    def inverse_transform(self, X, sample_domain=None):
        """Map images to the source domain (T -> T2S); cyclegan mode only.

        Rows with ``sample_domain > 0`` (source) are returned unmodified.
        """
        check_is_fitted(self)
        if "t2s" not in self.net_.module_:
            raise AttributeError("inverse_transform needs an ISTNAdapter fitted with "
                                 "mode='cyclegan'")
        return self._apply("t2s", X, sample_domain, keep=lambda domains: domains > 0)

    def explain(self, X, direction: str = "s2t", sample_domain=None) -> dict[str, np.ndarray]:
        """The parts of the transform a person inspects, for each image.

        Parameters
        ----------
        X : array-like, same layout as in ``fit``
        direction : {"s2t", "t2s"}, default="s2t"
            ``"t2s"`` in cyclegan mode explains the inverse map.
        sample_domain : array-like of shape (n,), optional
            Each row's source site; needed after a fit on several sites.

        Returns
        -------
        dict of str to ndarray
            ``input`` and ``appearance`` (ITN output), ``output`` (S2T) and
            ``difference`` (output - input), all ``(n, C, *spatial)``;
            ``displacement`` ``(n, D, *spatial)`` in voxels, channel ``i``
            along spatial axis ``i`` (zeros without an STN).
        """
        check_is_fitted(self)
        images, _, dtype = self._images(X)
        istn = self._istn(direction)
        parts = {"appearance": [], "displacement": [], "output": []}
        for batch, explained in mapped_batches(self, istn, images, sample_domain, explain=True):
            if explained["displacement"] is None:
                explained["displacement"] = batch.new_zeros(
                    batch.shape[0], batch.dim() - 2, *batch.shape[2:])
            for key in parts:
                parts[key].append(explained[key].cpu().numpy())
        result = {key: np.concatenate(value).astype(dtype) for key, value in parts.items()}
        result["input"] = images.astype(dtype)
        result["difference"] = result["output"] - result["input"]
        return result

    def _apply(self, direction, X, sample_domain, keep):
        check_is_fitted(self)
        images, layout, dtype = self._images(X)
        istn = self._istn(direction)
        out = np.concatenate([mapped.cpu().numpy()
                              for _, mapped in mapped_batches(self, istn, images, sample_domain)])
        if sample_domain is not None:
            domains = np.asarray(sample_domain).ravel()
            if domains.shape[0] != images.shape[0]:
                raise ValueError(f"sample_domain has {domains.shape[0]} entries but X has "
                                 f"{images.shape[0]} rows")
            out[keep(domains)] = images[keep(domains)]
        return layout.to_rows(out).astype(dtype, copy=False)

    def _images(self, X):
        check_finite(X)
        X = validate_data(self, X, allow_nd=True, dtype=[np.float32, np.float64], reset=False)
        layout = image_layout(X, image_shape=self.image_shape, spatial_dims=self.spatial_dims)
        layout.check_matches(self.n_channels_, self.image_shape_, type(self).__name__)
        return np.ascontiguousarray(layout.to_images(X), dtype=np.float32), layout, X.dtype

    def _istn(self, direction: str) -> nn.Module:
        if direction not in self.net_.module_:
            raise ValueError(f"direction must be one of {list(self.net_.module_)}, "
                             f"got {direction!r}")
        return self.net_.module_[direction].eval()

    def _batches(self, images: np.ndarray):
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                batch = torch.from_numpy(images[start:start + self.batch_size])
                yield batch.to(self.device)
