"""skorch callbacks for the reference code's validation step: sample images and task scores."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback

from ..evaluate import DEFAULT_THRESHOLDS, task_scores
from ._images import Normalizer, write_image

SAMPLE_FORMATS = ("nii", "png")


class SampleWriter(Callback):
    """Write the S2T images of a few fixed source images every ``every`` epochs.

    For :class:`istn_sk.ISTNAdapter` (``callbacks=[SampleWriter(...)]``):
    images go to ``<out_dir>/epoch-<NNNN>/<name>.nii.gz`` (with the intensity
    normalizer undone, and the geometry of ``like``) and/or ``<name>.png``
    (network values in [-1, 1]; the central slice of the first spatial axis
    for 3D images), the reference code's ``--nii`` and ``--png``.

    Parameters
    ----------
    images : ndarray of shape (n, C, *spatial)
        Source images, as given to ``fit``.
    out_dir : path-like
    names : sequence of str
        One file name stem per image.
    formats : sequence of {"nii", "png"}, default=("png",)
    every : int, default=1
        Epochs between writes.
    like : sequence of path-like, optional
        NIfTI files whose header and affine each ``.nii.gz`` sample keeps.
    normalizer : {"none", "tanh"}, default="none"
        The normalizer the images were read with, undone for NIfTI output.
    direction : {"s2t", "t2s"}, default="s2t"
        Which ISTN of the net to apply.
    """

    def __init__(self, images: np.ndarray, out_dir: str | os.PathLike, *,
                 names: Sequence[str], formats: Sequence[str] = ("png",), every: int = 1,
                 like: Sequence[str | os.PathLike] | None = None, normalizer: str = "none",
                 direction: str = "s2t") -> None:
        unknown = set(formats) - set(SAMPLE_FORMATS)
        if unknown:
            raise ValueError(f"unknown sample formats {sorted(unknown)}; use {SAMPLE_FORMATS}")
        if every < 1:
            raise ValueError(f"every must be a positive number of epochs, got {every}")
        if len(names) != len(images) or (like is not None and len(like) != len(images)):
            raise ValueError("give one name (and one 'like' file) per sample image")
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.out_dir = Path(out_dir)
        self.names = list(names)
        self.formats = tuple(formats)
        self.every = every
        self.like = like
        self.normalizer = Normalizer(normalizer)
        self.direction = direction

    def on_epoch_end(self, net, **kwargs) -> None:
        """Write the samples when the epoch number is a multiple of ``every``."""
        epoch = len(net.history)
        if epoch % self.every:
            return
        istn = net.module_[self.direction]
        was_training = istn.training
        with torch.no_grad():
            output = istn.eval()(torch.from_numpy(self.images).to(net.device)).cpu().numpy()
        istn.train(was_training)
        folder = self.out_dir / f"epoch-{epoch:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, (name, image) in enumerate(zip(self.names, output, strict=True)):
            if "nii" in self.formats:
                write_image(folder / f"{name}.nii.gz", self.normalizer.inverse(image),
                            like=None if self.like is None else self.like[i])
            if "png" in self.formats:
                shown = image[:, image.shape[1] // 2] if image.ndim == 4 else image
                write_image(folder / f"{name}.png", shown[:1] if shown.shape[0] != 3 else shown)


class EpochScores(Callback):
    """Score the task model on held-out images every ``every`` epochs.

    Records ``valid_accuracy`` (classifier) or ``valid_mae`` and
    ``valid_acc@<t>`` (regressor) in the net's history, the reference code's
    validation step. Works for a task estimator being fitted and for an
    :class:`istn_sk.ISTNAdapter` training a task model simultaneously (the
    task model, not the ISTN, is scored).

    Parameters
    ----------
    X : ndarray of shape (n, C, *spatial)
        Held-out images (under the paper's protocol, unmodified target images).
    y : ndarray of shape (n,)
        Their labels.
    every : int, default=1
        Epochs between evaluations.
    thresholds : sequence of float
        Regression accuracy thresholds.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, *, every: int = 1,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> None:
        if every < 1:
            raise ValueError(f"every must be a positive number of epochs, got {every}")
        self.X = X
        self.y = y
        self.every = every
        self.thresholds = tuple(thresholds)

    def on_epoch_end(self, net, **kwargs) -> None:
        """Record the scores (the net's epoch line prints them)."""
        epoch = len(net.history)
        if epoch % self.every:
            return
        task = getattr(net, "task_net", None)
        scores = task_scores(net if task is None else task, self.X, self.y, self.thresholds)
        for name, value in scores.items():
            net.history.record(f"valid_{name}", value)
