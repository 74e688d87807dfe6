"""Task estimators: skorch classifiers and regressors on images, trained on labelled source rows."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._available_if import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
from skorch import NeuralNet, NeuralNetClassifier, NeuralNetRegressor
from torch import nn

from ._augment import get_augmentation
from ._lr_schedule import CosineDecay
from ._validation import check_finite, image_layout
from .nn import FullyConvolutionalNet

LR_SCHEDULES = ("cosine", "constant")


class TaskNetwork(FullyConvolutionalNet):
    """The paper's fully convolutional task network: batch norm, dropout 0.5, raw scores.

    Parameters are those of :class:`istn_sk.nn.FullyConvolutionalNet`, with
    ``norm_kind="batch"`` and ``p_dropout=0.5`` as defaults.
    """

    def __init__(self, spatial_dims: int, in_channels: int, image_shape: tuple[int, ...],
                 n_outputs: int = 1, nf: int = 16, norm_kind: str | None = "batch",
                 p_dropout: float = 0.5) -> None:
        super().__init__(spatial_dims, in_channels, image_shape, n_outputs=n_outputs, nf=nf,
                         norm_kind=norm_kind, p_dropout=p_dropout)


def labelled_source_rows(y: np.ndarray, sample_domain, *, regression: bool) -> np.ndarray:
    """Rows a task model may learn from: source rows whose label is not masked.

    A row is a target row when ``sample_domain < 0``; a label is masked when
    it is NaN (regression) or -1 (classification).
    """
    y = np.asarray(y)
    if regression and not (np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.bool_)):
        raise ValueError(f"Unknown label type: TaskRegressor needs numeric targets, got dtype "
                         f"{y.dtype}")
    if regression and np.isinf(y.astype(float)).any():
        raise ValueError("Input y contains infinity; mask target rows with NaN, not inf")
    if regression:
        keep = ~np.isnan(y.astype(float)).reshape(len(y), -1).any(axis=1)
    else:
        keep = y != -1
    if sample_domain is not None:
        domains = np.asarray(sample_domain).ravel()
        if domains.shape[0] != y.shape[0]:
            raise ValueError(f"sample_domain has {domains.shape[0]} entries but y has "
                             f"{y.shape[0]}")
        keep = keep & (domains > 0)
    if not keep.any():
        raise ValueError("no labelled source rows to train on: every row is a target row "
                         "(sample_domain < 0) or has a masked label (-1, or NaN for regression)")
    return keep


def _load_state(init_params) -> Mapping:
    if isinstance(init_params, Mapping):
        return init_params
    if isinstance(init_params, (str, os.PathLike)):
        if not os.path.exists(init_params):
            raise FileNotFoundError(f"init_params file {os.fspath(init_params)!r} does not exist")
        return torch.load(init_params, map_location="cpu", weights_only=True)
    raise TypeError("init_params must be a state dict (e.g. fitted.module_.state_dict()) or "
                    f"the path of one saved with save_params; got {type(init_params).__name__}")


class _TaskMixin:
    """What the classifier and the regressor share: image layout, rows, seeding, fine-tuning."""

    _regression = False
    __metadata_request__fit = {"sample_domain": True}

    def __init__(self, module, *, criterion, nf=16, lr=1e-3, max_epochs=10, batch_size=32,
                 optimizer=torch.optim.Adam, train_split=None, image_shape=None,
                 spatial_dims=None, init_params=None, random_state=None, device="cpu",
                 verbose=0, augmentation=None, lr_schedule="cosine", **kwargs):
        self.nf = nf
        self.augmentation = augmentation
        self.lr_schedule = lr_schedule
        self.image_shape = image_shape
        self.spatial_dims = spatial_dims
        self.init_params = init_params
        self.random_state = random_state
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr,
                         max_epochs=max_epochs, batch_size=batch_size, train_split=train_split,
                         device=device, verbose=verbose, **kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    def get_default_callbacks(self):
        """skorch's defaults, and the cosine learning-rate decay of ``lr_schedule``."""
        callbacks = list(super().get_default_callbacks())
        if self.lr_schedule == "cosine":
            callbacks.append(("lr_schedule", CosineDecay()))
        return callbacks

    def initialize_module(self):
        """Build ``module_`` for the shape and outputs seen in ``fit``; load ``init_params``."""
        params = self.get_params_for("module")
        params.setdefault("nf", self.nf)
        self.module_ = self.module(spatial_dims=len(self.image_shape_),
                                   in_channels=self.n_channels_, image_shape=self.image_shape_,
                                   n_outputs=self.n_outputs_, **params)
        if self.init_params is not None:
            self.module_.load_state_dict(_load_state(self.init_params))
        self.augment_ = get_augmentation(self.augmentation)
        return self

    def train_step_single(self, batch, **fit_params):
        """skorch's training step, on the batch's images augmented by ``augmentation``."""
        if self.augment_ is not None:
            images, targets = batch
            batch = (self.augment_(images), targets)
        return super().train_step_single(batch, **fit_params)

    def _images(self, X, *, reset: bool) -> np.ndarray:
        check_finite(X)
        X = validate_data(self, X, allow_nd=True, dtype=[np.float32, np.float64], reset=reset)
        layout = image_layout(X, image_shape=self.image_shape, spatial_dims=self.spatial_dims)
        if reset:
            self.n_channels_, self.image_shape_ = layout.channels, layout.spatial
        else:
            layout.check_matches(self.n_channels_, self.image_shape_, type(self).__name__)
        return np.ascontiguousarray(layout.to_images(X), dtype=np.float32)

    def fit(self, X, y, sample_domain=None, **fit_params):
        """Train on the labelled source rows of ``X``.

        Parameters
        ----------
        X : array-like of shape (n, C, *spatial), (n, *spatial) or (n, n_values)
            Images in [-1, 1] (e.g. S2T from an :class:`~istn_sk.ISTNAdapter`);
            flattened rows ``(n, n_values)`` need ``image_shape``.
        y : array-like of shape (n,)
            Labels; -1 (classification) or NaN (regression) masks a row.
        sample_domain : array-like of shape (n,), optional
            Rows with ``sample_domain < 0`` (target) are never trained on.
        **fit_params
            Passed to skorch's ``fit``.

        Returns
        -------
        self
        """
        images, targets = self.training_data(X, y, sample_domain)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if not self.warm_start or not self.initialized_:
                self.initialize()
            NeuralNet.partial_fit(self, images, targets, _routing_method="fit", **fit_params)
        return self

    def partial_fit(self, X, y, classes=None, sample_domain=None, **fit_params):
        """Train ``max_epochs`` more epochs on ``X`` without re-initialising.

        The first call behaves like ``fit``. Later calls need images of the
        same shape and, for a classifier, only labels seen in the first call.
        """
        if not self.initialized_ or not hasattr(self, "n_outputs_"):
            return self.fit(X, y, sample_domain=sample_domain, **fit_params)
        images = self._images(X, reset=False)
        y = np.asarray(y) if self._regression else column_or_1d(y)
        rows = labelled_source_rows(y, sample_domain, regression=self._regression)
        NeuralNet.partial_fit(self, images[rows], self._encode_more(y[rows]), **fit_params)
        return self

    def training_data(self, X, y, sample_domain=None) -> tuple[np.ndarray, np.ndarray]:
        """Validate ``X`` and ``y`` and keep the labelled source rows.

        Records the image layout and the label encoding (fitted attributes),
        so ``initialize()`` can build the network afterwards; ``fit`` and the
        adapter's simultaneous scheme both start here.

        Returns
        -------
        images : ndarray of shape (m, C, *spatial), float32
        targets : ndarray
            Class indices (classifier) or float32 targets ``(m, n_outputs)``.
        """
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got "
                             f"{self.lr_schedule!r}")
        images = self._images(X, reset=True)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None")
        y = np.asarray(y) if self._regression else column_or_1d(y, warn=True)
        if y.shape[0] != images.shape[0]:
            raise ValueError(f"y has {y.shape[0]} entries but X has {images.shape[0]} rows")
        rows = labelled_source_rows(y, sample_domain, regression=self._regression)
        return images[rows], self._encode(y[rows])


class TaskClassifier(_TaskMixin, NeuralNetClassifier):
    """A fully convolutional image classifier (binary or multi-class) as a skorch estimator.

    Trains only on labelled source rows, so it chains after an
    :class:`~istn_sk.ISTNAdapter` in a :class:`~sklearn.pipeline.Pipeline`:
    rows marked as target by ``sample_domain < 0`` or by a masked label -1
    are left out. Predicts on any images; under the paper's protocol, target
    images are given unmodified.

    Parameters
    ----------
    module : type, default=TaskNetwork
        Network class, called with ``spatial_dims``, ``in_channels``,
        ``image_shape``, ``n_outputs``, ``nf`` and any ``module__*`` parameter.
    nf : int, default=16
        Channels of the first convolution.
    lr : float, default=1e-3
    max_epochs : int, default=10
    batch_size : int, default=32
    optimizer : torch optimizer class, default=torch.optim.Adam
    criterion : torch loss class, default=torch.nn.CrossEntropyLoss
    train_split : callable or None, default=None
        skorch's validation split; None trains on every labelled source row.
    image_shape : tuple of int, optional
        Spatial shape, needed for flattened rows.
    spatial_dims : {2, 3}, optional
        Read a 4-D ``X`` as single-channel 3D volumes when 3.
    init_params : dict or path, optional
        Fine-tune: start from these weights (``fitted.module_.state_dict()``
        or a file written by ``save_params(f_params=...)``, loaded with
        ``weights_only=True``) instead of a random initialisation.
    random_state : int, RandomState or None, default=None
        Seeds weights, shuffling and dropout; fixed => identical fits on CPU.
    device : str, default="cpu"
    verbose : int, default=0
    augmentation : str, optional
        Registered augmentation policy for every training batch (never in
        ``predict``), e.g. ``"reference"``: the reference code's p=0.5 shift
        by up to ±3 voxels and p=0.5 flip of the last axis.
    lr_schedule : {"cosine", "constant"}, default="cosine"
        ``"cosine"`` decays the learning rate from ``lr`` towards 0 over the
        ``max_epochs`` of each ``fit`` or ``partial_fit`` call
        (:class:`~istn_sk._lr_schedule.CosineDecay`), so the model it returns
        is a settled one rather than the last step of a noisy walk: a fresh
        model trained on S2T at a constant rate scored 0.62 to 0.70 on the
        target where the same data with the decay gave 0.80 to 0.84
        (docs/results.md). ``"constant"`` keeps ``lr`` (add your own
        skorch ``LRScheduler`` in ``callbacks`` then). A model trained alongside an
        ISTNAdapter is stepped by the adapter, which averages its weights
        instead.
    **kwargs
        Other skorch parameters (``callbacks``, ``module__*``, ``optimizer__*``, ...).

    Attributes
    ----------
    classes_ : ndarray
        Labels seen in ``fit`` (masked rows excluded).
    module_ : torch.nn.Module
        The trained network.
    history_ : skorch.History
    """

    def __init__(self, module=TaskNetwork, *, criterion=nn.CrossEntropyLoss, **kwargs):
        super().__init__(module, criterion=criterion, **kwargs)

    def _encode(self, y: np.ndarray) -> np.ndarray:
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"TaskClassifier needs at least 2 classes among the labelled "
                             f"source rows, got one class: {classes.tolist()}")
        self.fitted_classes_ = classes
        self.n_outputs_ = len(classes)
        return codes.astype(np.int64)

    def _encode_more(self, y: np.ndarray) -> np.ndarray:
        unknown = np.setdiff1d(y, self.fitted_classes_)
        if len(unknown):
            raise ValueError(f"labels {unknown.tolist()} were not seen in the first fit "
                             f"(classes {self.fitted_classes_.tolist()})")
        return np.searchsorted(self.fitted_classes_, y).astype(np.int64)

    @property
    def classes_(self):
        check_is_fitted(self, "fitted_classes_")
        return self.fitted_classes_

    def predict_proba(self, X):
        """Class probabilities ``(n, n_classes)`` in the order of ``classes_``."""
        check_is_fitted(self, "fitted_classes_")
        return super().predict_proba(self._images(X, reset=False))

    def predict(self, X):
        """Predicted labels (from ``classes_``)."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class TaskRegressor(_TaskMixin, NeuralNetRegressor):
    """A fully convolutional image regressor (MSE) as a skorch estimator.

    Trains only on labelled source rows (target rows are marked by
    ``sample_domain < 0`` or a NaN label). Parameters are those of
    :class:`TaskClassifier`, with ``criterion=torch.nn.MSELoss``.

    Attributes
    ----------
    n_outputs_ : int
        Targets per row.
    module_ : torch.nn.Module
    history_ : skorch.History
    """

    _regression = True

    def __init__(self, module=TaskNetwork, *, criterion=nn.MSELoss, **kwargs):
        super().__init__(module, criterion=criterion, **kwargs)

    def _encode_more(self, y: np.ndarray) -> np.ndarray:
        targets = y.reshape(len(y), -1).astype(np.float32)
        if targets.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {targets.shape[1]} targets per row, but the first fit had "
                             f"{self.n_outputs_}")
        return targets

    def _encode(self, y: np.ndarray) -> np.ndarray:
        self.target_ndim_ = y.ndim
        targets = y.reshape(len(y), -1).astype(np.float32)
        self.n_outputs_ = targets.shape[1]
        return targets

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    @available_if(lambda self: False)
    def predict_proba(self, X):
        """Not offered by a regressor; use ``predict``."""

    def predict(self, X):
        """Predicted targets, shaped like the ``y`` given to ``fit``."""
        check_is_fitted(self, "target_ndim_")
        out = self.forward(self._images(X, reset=False)).numpy().astype(np.float64)
        return out.ravel() if self.target_ndim_ == 1 else out
