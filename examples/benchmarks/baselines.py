"""Baselines for the reproduction harness: histogram matching and skada's DANN / DeepCORAL.

Histogram matching is image-level like the ISTN (a task model is retrained on
the matched source images); DANN and DeepCORAL are feature-level and train
the task model and the alignment together on labelled source and unlabelled
target images.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage import exposure
from sklearn.utils import check_random_state
from torch import nn

from istn_sk.nn import ConvEncoder


def match_histograms(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Map each source image's intensity distribution onto the pooled target distribution.

    Each source image goes through :func:`skimage.exposure.match_histograms`
    with every target value pooled as the reference: a source intensity at
    cumulative level ``q`` (the share of the image's voxels at or below it)
    becomes the pooled target intensity at level ``q``, interpolated linearly
    between target levels. Ties share one value, the source's intensity
    order is kept, and the brightest source voxels take the brightest
    target value.

    Parameters
    ----------
    source : ndarray of shape (n, ...)
        Source images, one per row of the first axis.
    target : ndarray
        Target images of any shape; all their values are pooled.

    Returns
    -------
    ndarray, same shape and dtype as ``source``
    """
    source = np.asarray(source)
    if source.ndim < 2:
        raise ValueError(f"expected images (n, ...), got shape {source.shape}")
    pooled = np.asarray(target).reshape(*[1] * (source.ndim - 2), -1)
    matched = [exposure.match_histograms(image, pooled) for image in source]
    return np.stack(matched).astype(source.dtype, copy=False)


class FeatureTaskNetwork(nn.Module):
    """:class:`istn_sk.TaskNetwork`'s encoder, a named feature layer and a linear head.

    skada's deep methods read the output of a named layer; here
    ``features`` is the global mean of the encoder's output, ``(n, C)``,
    where the task network's stride-2 output convolution would start.

    Parameters
    ----------
    image_shape : tuple of int
        Spatial shape of the images.
    n_outputs : int
        Number of classes.
    nf : int, default=16
        Channels of the first convolution (as ``TaskClassifier(nf=...)``).
    in_channels : int, default=1
    """

    def __init__(self, image_shape: tuple[int, ...], n_outputs: int, nf: int = 16,
                 in_channels: int = 1) -> None:
        super().__init__()
        spatial_dims = len(image_shape)
        self.encoder = ConvEncoder(spatial_dims, in_channels, tuple(image_shape), nf,
                                   norm_kind="batch", p_dropout=0.5)
        self.features = nn.Sequential(nn.AdaptiveAvgPool2d(1) if spatial_dims == 2
                                      else nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.head = nn.Linear(self.encoder.out_channels, n_outputs)

    def forward(self, x: torch.Tensor, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Class scores ``(n, n_outputs)``; skada passes ``sample_weight``, unused here."""
        return self.head(self.features(self.encoder(x)))


def skada_predict(method: str, source: tuple[np.ndarray, np.ndarray], target_train: np.ndarray,
                  target_test: np.ndarray, *, nf: int = 16, lr: float = 1e-3,
                  max_epochs: int = 10, batch_size: int = 32, reg: float = 1.0,
                  random_state: int = 0) -> np.ndarray:
    """Train skada's DANN or DeepCORAL and predict the target test labels.

    ``import skada`` switches scikit-learn's metadata routing on for the
    whole process, so skada is imported here and routing is switched off
    again before returning.

    Parameters
    ----------
    method : {"DANN", "DeepCORAL"}
    source : tuple (X, y)
        Labelled source images ``(n, C, H, W)`` and integer labels.
    target_train : ndarray
        Unlabelled target images seen in training.
    target_test : ndarray
        Target images to label.
    nf, lr, max_epochs, batch_size : training settings (``batch_size`` source
        and as many target images per step).
    reg : float, default=1.0
        Weight of the domain-alignment loss.
    random_state : int, default=0
        Seeds the weights, shuffling and dropout.

    Returns
    -------
    ndarray of shape (len(target_test),)
        Predicted labels (from the source labels).
    """
    import sklearn

    try:
        from skada.deep import DANN, DeepCoral

        X_source, y_source = source
        classes, codes = np.unique(y_source, return_inverse=True)
        module = FeatureTaskNetwork(X_source.shape[2:], len(classes), nf=nf,
                                    in_channels=X_source.shape[1])
        options = {"reg": reg, "lr": lr, "max_epochs": max_epochs, "batch_size": batch_size,
                   "optimizer": torch.optim.Adam, "train_split": None, "device": "cpu",
                   "verbose": 0}
        if method == "DANN":
            net = DANN(module, "features", num_features=module.encoder.out_channels, **options)
        elif method == "DeepCORAL":
            net = DeepCoral(module, "features", **options)
        else:
            raise ValueError(f"method must be 'DANN' or 'DeepCORAL', got {method!r}")
        X = np.concatenate([X_source, target_train]).astype(np.float32)
        y = np.r_[codes, -np.ones(len(target_train), dtype=np.int64)].astype(np.int64)
        sample_domain = np.r_[np.ones(len(X_source), dtype=np.int64),
                              -2 * np.ones(len(target_train), dtype=np.int64)]
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net.fit(X, y, sample_domain=sample_domain)
            codes_test = net.predict(np.asarray(target_test, dtype=np.float32),
                                     sample_domain=-2 * np.ones(len(target_test), np.int64))
        return classes[codes_test]
    finally:
        sklearn.set_config(enable_metadata_routing=False)
