"""ISTNAdapter: an image-and-spatial transformer mapping source images to the target site."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data
from skorch.callbacks import ProgressBar

from ._adapter_params import check_adapter_params
from ._adversarial_net import AdversarialISTNNet, PairedDomains
from ._alongside import TrainedAlongsideMixin, task_to_train_alongside
from ._batch_norm import recompute_batch_norm
from ._checkpoint import checkpointing, restore, resumable
from ._epoch_selection import check_epoch_selection, split_for_selection
from ._mapping import MappingMixin
from ._multi_source import fit_many_sites, source_sites
from ._networks import build_istn, build_training_net
from ._validation import check_finite, image_layout, source_mask, warn_if_out_of_range
from .nn import ISTN


class ISTNAdapter(TrainedAlongsideMixin, MappingMixin, TransformerMixin, BaseEstimator):
    """Image-level domain adaptation with an adversarially trained ISTN.

    Fitted on unlabelled source (S) and target (T) images, it learns an image
    transformer (ITN: contrast, thickness, noise) feeding a spatial
    transformer (STN: affine or B-spline shape change) so that S2T = ISTN(S)
    looks like T to a discriminator D_T, while ISTN(T) stays T (identity
    loss). ``transform`` maps images S -> T; a task model trained on S2T with
    S's labels then applies to unmodified T images.

    Images are expected in [-1, 1] (the ITN ends in tanh).

    Parameters
    ----------
    itn : bool, default=True
        Use an image transformer network. ``False`` gives an STN-only ISTN.
    itn_output : {"full_range", "clip", "tanh"}, default="full_range"
        How the ITN turns its last feature map into an image (see
        :class:`~istn_sk.nn.ImageTransformerNetwork`; ``"tanh"`` is the
        paper's). Measured in docs/results.md.
    stn : str or None, default="affine"
        Registered spatial transformer: ``"affine"``, ``"bspline"``,
        ``"none"`` (None is the same as ``"none"``) or one from a plugin.
    cp_spacing : int or tuple of int, default=4
        B-spline control-point spacing in voxels, per axis or for all axes.
    max_displacement : float, default=0.2
        B-spline displacement cap as a fraction of the image size, in [0, 1].
    stn_options : dict, optional
        Extra keyword options for the STN factory (e.g. ``max_translation``
        for ``"affine"``).
    nf : int, default=8
        Base number of filters of the ITN, STN and discriminator (which uses
        ``2 * nf``, as in the paper); the shift suite's setting (docs/results.md).
    consistency_weight : float, default=10.0
        λ: the identity term is weighted ½λ and the cycle terms λ. Image
        terms compare images rescaled to [0, 1]. Larger values keep the
        transform closer to the identity and training more stable.
    identity_on : {"itn", "istn"}, default="itn"
        What the identity term keeps unchanged on target images: the whole
        ISTN (the paper's ½λ‖ISTN(T) - T‖₁) or only its ITN (½λ‖ITN(T) - T‖₁).
        The STN sees the ITN's output, which for a source image already looks
        like the target, so it cannot tell the domains apart; a shift that
        moves every source image (a site's head placement, a translation) is
        then exactly what an identity term on the whole ISTN forbids. With
        ``"itn"`` the STN is held by the adversarial term alone (and
        ``max_displacement``); an STN-only adapter then has no identity term.
    mode : {"unidirectional", "cyclegan"}, default="unidirectional"
        One ISTN and discriminator, or two of each with cycle terms.
    gan_loss, dis_loss, idt_loss : str, default="bce", "bce", "l1"
        Registered losses for the ISTN's adversarial term, the discriminator
        and the identity/cycle terms.
    lr : float, default=1e-3
        Adam learning rate of the ISTNs (betas 0.5, 0.999), and of the
        discriminators unless ``dis_lr`` is given.
    dis_lr : float, optional
        Adam learning rate of the discriminators. A discriminator that wins
        too early (``dis_loss`` near 0, ``gan_loss`` climbing in
        ``history_``) starves the ISTN of useful gradients; a smaller
        ``dis_lr`` slows it down.
    batch_size : int, default=32
        Source images (and as many target images) per step.
    max_epochs : int, default=20
        Passes over the larger domain.
    image_shape : tuple of int, optional
        Spatial shape of the images, needed when ``X`` holds flattened rows.
    spatial_dims : {2, 3}, optional
        Read a 4-D ``X`` as single-channel 3D volumes ``(n, D, H, W)`` when 3.
    device : str, default="cpu"
        Torch device for training and transforms.
    random_state : int, RandomState or None, default=None
        Seeds weights, shuffling, dropout and soft labels: a fixed value gives
        identical transforms on CPU.
    task : TaskClassifier or TaskRegressor, optional
        The simultaneous scheme of the reference code: a clone of this task
        estimator is trained on each batch's evolving S2T with the source
        labels (every source row needs a label in ``y``); the trained model
        is ``task_``. The sequential scheme is a :class:`~sklearn.pipeline.Pipeline`
        of the adapter and a task estimator instead.
    task_weight : float, default=1.0
        With ``task``, the weight of the source task loss on S2T in the
        ISTN's own objective (the joint, task-driven scheme: class content
        survives the appearance change); 0 does not steer the ISTN. Target
        labels are never read. Measured in docs/results.md.
    ema_decay : float or None, default=0.99
        Transform (and, with ``task``, predict) with exponential moving
        averages of the ISTN and task-model weights, updated after every step
        with this decay in (0, 1) (0.99 averages about the last 100 steps);
        None uses the last weights (measured in docs/results.md).
    augmentation : str, optional
        Registered policy for every training batch of both domains (never in
        ``transform``): ``"reference"`` (p=0.5 shift by up to ±3 voxels, p=0.5
        flip of the last axis), ``"shift"``, or a plugin's (docs/results.md).
    dis_augmentation : "auto", str or None, default="auto"
        Registered policy applied to every discriminator input, real and
        fake (differentiable; DiffAugment is ``"translation_cutout"``).
        ``"auto"``: ``"lowpass"`` (a Gaussian blur, sigma 1 voxel) for 3D
        images, none for 2D. On the simulated brain sites the low-pass
        discriminator never collapsed in 12 runs (6 seeds, both directions)
        where the plain one collapsed in 2 (and in 1 of 6 more with a
        model alongside), and it matched the travelling
        subjects better (docs/results.md, rounds 7 and 8); it was not
        measured on the 2D suite, whose defaults it leaves alone.
    dis_regularisers : dict of str to float, optional
        Discriminator regularisers and their weights, e.g. ``{"r1": 1.0}``
        or ``{"lecam": 0.1}`` (registered: ``"r1"``, ``"lecam"``, plugins').
    content_losses : "auto", str, dict of str to float or None, default="auto"
        Content losses on the ITN: a registered name (weight 1) or a dict of
        names and weights, e.g. ``{"patch_nce": 0.5}``; None for none;
        ``"auto"``: ``"patch_nce"`` when there is an ITN, none without.
        PatchNCE is CUT's content loss (Park et al. 2020): each patch of the
        ITN's output must pick out, among 256 patches of the input image, the
        one at its own position, in the ITN encoder's features. It asks the
        appearance change to keep what is where: on Morpho-MNIST A -> B and
        A -> D it raised the fresh task model (the ``Pipeline`` path) from
        0.90 / 0.84 to 0.92 / 0.91 and cut the seed spread to <= 0.02
        (docs/results.md). Named content losses with ``itn=False`` are an error.
    dis_coordinates : {"auto", True, False}, default="auto"
        Give every discriminator each voxel's coordinates as extra input
        channels (CoordConv; :class:`~istn_sk.nn._coordinates.WithCoordinates`),
        so it is told where content lies, not only what it looks like.
        ``"auto"``: only when the adapter has an STN, the part that moves
        content. With them the affine STN undid a synthetic translation on
        every seed and thread count measured, where without them one axis
        often drifted the wrong way; for an ITN-only adapter they cost
        accuracy on Morpho-MNIST A -> B (docs/results.md). False builds the
        paper's discriminator.
    select_epoch : {"prediction_entropy", "mapped_source_accuracy"}, optional
        With ``task``: keep ``validation_fraction`` of each domain out of
        training and, at the end, restore the epoch whose snapshot scores best
        there without target labels (:mod:`~istn_sk._epoch_selection`;
        measured in docs/results.md). None keeps the last epoch.
    validation_fraction : float, default=0.1
        The held-out part of each domain, with ``select_epoch`` only.
    checkpoint_dir : path-like, optional
        Write a checkpoint there after every epoch; a later ``fit`` with the
        same parameters and data resumes from it (on CPU bit-identical to an
        uninterrupted run; a larger ``max_epochs`` continues a finished run).
        SIGINT/SIGTERM stop such a fit with :class:`~istn_sk.TrainingInterrupted`
        (:mod:`~istn_sk._checkpoint`).
    callbacks : list of skorch callbacks, optional
        Added to the training net (e.g. ``skorch.callbacks.Checkpoint``).
    verbose : int, default=0
        0 silent, 1 a line per epoch, 2 also a progress bar per epoch.
    multi_source : {"conditioned", "independent"}, default="conditioned"
        With several source sites (``sample_domain`` 1, 2, ...): one ISTN
        conditioned on the site (FiLM) and one discriminator, or one ISTN and
        discriminator per site (:mod:`~istn_sk._multi_source`,
        docs/many-sites.md). One source site ignores it.
    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the training step's forward passes. ``"bfloat16"``
        trains under :func:`torch.autocast` (convolutions and matrix products
        in bfloat16; weights, optimizer states and losses in float32): a
        faster step on CPUs with AVX-512 BF16 or AMX and on recent GPUs, not
        on others; ``transform`` always runs in float32. Speed and adaptation
        quality measured in docs/results.md and the README.
    itn_options : dict, optional
        More ITN settings (:class:`~istn_sk.nn.ImageTransformerNetwork`):
        ``coordinates`` (bool: voxel positions as extra encoder inputs, so the
        ITN can undo a position-dependent gain such as a receive bias field),
        ``depth`` (stride-2 levels), ``p_dropout``, and ``bias_field`` (int,
        a polynomial degree up to 3: a learned smooth gain and offset by
        position after the ITN, the same for every image, outside the identity
        term; :class:`~istn_sk.nn.PolynomialBiasField`).

    Attributes
    ----------
    net_ : AdversarialISTNNet
        The trained skorch net; ``net_.module_["s2t"]`` is the ISTN.
    history_ : skorch.History
        Per-epoch (and per-batch) losses: ``train_loss`` (ISTN total),
        ``gan_loss``, ``idt_loss``, ``cyc_loss`` (cyclegan), ``dis_loss``.
    n_channels_ : int
        Image channels seen in ``fit``.
    image_shape_ : tuple of int
        Spatial shape seen in ``fit``.
    n_features_in_ : int
        ``X.shape[1]`` in ``fit`` (scikit-learn's convention).
    task_ : TaskClassifier or TaskRegressor or None
        The task model trained simultaneously (None without ``task``); apply
        it to unmodified target images.
    best_epoch_ : int or None
        The epoch ``select_epoch`` kept (None without it).
    source_sites_ : ndarray or None
        Sorted source site ids of ``fit`` (``[1]`` without ``sample_domain``; None: old file).

    Examples
    --------
    >>> adapter = ISTNAdapter(stn="affine", max_epochs=5, random_state=0)
    >>> adapter.fit(X, sample_domain=sd)          # doctest: +SKIP
    >>> S2T = adapter.transform(X[sd > 0])        # doctest: +SKIP
    """

    def __init__(self, itn=True, itn_output="full_range", stn="affine", cp_spacing=4,
                 max_displacement=0.2, stn_options=None, nf=8, consistency_weight=10.0,
                 identity_on="itn", mode="unidirectional", gan_loss="bce", dis_loss="bce",
                 idt_loss="l1", lr=1e-3,
                 dis_lr=None, batch_size=32, max_epochs=20, image_shape=None, spatial_dims=None,
                 device="cpu", random_state=None, task=None, task_weight=1.0, ema_decay=0.99,
                 augmentation=None, dis_augmentation="auto", dis_regularisers=None,
                 content_losses="auto", dis_coordinates="auto", select_epoch=None,
                 validation_fraction=0.1, checkpoint_dir=None, callbacks=None, verbose=0,
                 multi_source="conditioned", precision="float32", itn_options=None):
        self.itn = itn
        self.itn_output = itn_output
        self.stn = stn
        self.cp_spacing = cp_spacing
        self.max_displacement = max_displacement
        self.stn_options = stn_options
        self.nf = nf
        self.consistency_weight = consistency_weight
        self.identity_on = identity_on
        self.mode = mode
        self.gan_loss = gan_loss
        self.dis_loss = dis_loss
        self.idt_loss = idt_loss
        self.lr = lr
        self.dis_lr = dis_lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.image_shape = image_shape
        self.spatial_dims = spatial_dims
        self.device = device
        self.random_state = random_state
        self.task = task
        self.task_weight = task_weight
        self.ema_decay = ema_decay
        self.augmentation = augmentation
        self.dis_augmentation = dis_augmentation
        self.dis_regularisers = dis_regularisers
        self.content_losses = content_losses
        self.dis_coordinates = dis_coordinates
        self.select_epoch = select_epoch
        self.validation_fraction = validation_fraction
        self.checkpoint_dir = checkpoint_dir
        self.callbacks = callbacks
        self.verbose = verbose
        self.multi_source = multi_source
        self.precision = precision
        self.itn_options = itn_options

    __metadata_request__fit = {"sample_domain": True}
    __metadata_request__transform = {"sample_domain": True}
    __metadata_request__predict = {"sample_domain": True}
    __metadata_request__predict_proba = {"sample_domain": True}
    __metadata_request__score = {"sample_domain": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def fit(self, X, y=None, sample_domain=None):
        """Train the ISTN on the source and target rows of ``X``.

        Parameters
        ----------
        X : array-like of shape (n, C, *spatial), (n, *spatial) or (n, n_values)
            Source and target images together, in [-1, 1].
        y : array-like of shape (n,), optional
            Only read to find target rows when ``sample_domain`` is None:
            -1 (NaN for regression) marks a target row.
        sample_domain : array-like of shape (n,), optional
            skada's convention: > 0 source (its source site), < 0 target.

        Returns
        -------
        self : ISTNAdapter
        """
        check_finite(X)
        X = validate_data(self, X, allow_nd=True, dtype=[np.float32, np.float64])
        layout = image_layout(X, image_shape=self.image_shape, spatial_dims=self.spatial_dims)
        is_source = source_mask(y, sample_domain, n_samples=X.shape[0])
        check_adapter_params(self, layout.spatial)
        check_epoch_selection(self)
        sites = source_sites(self, sample_domain, is_source)
        warn_if_out_of_range(X)
        array = np.ascontiguousarray(layout.to_images(X), dtype=np.float32)
        if len(sites) > 1:
            return fit_many_sites(self, X, y, layout, array, is_source, sites, sample_domain)
        checkpoint, extra_callbacks = checkpointing(self, array, is_source, y)
        images = torch.from_numpy(array)
        source = images[torch.from_numpy(is_source)]
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with torch.random.fork_rng(devices=[]), resumable(extra_callbacks, checkpoint):
            torch.manual_seed(seed)
            task, source_targets = task_to_train_alongside(self, X[is_source], y, is_source)
            source, target, source_targets, selection = split_for_selection(
                self, source, images[torch.from_numpy(~is_source)], source_targets, is_source)
            net = self._build_net(layout, task, [*extra_callbacks, *selection])
            data = PairedDomains(source, target, source_targets)
            if checkpoint is None:
                net.fit(data)
            else:
                net.initialize()
                restore(net, checkpoint)
                if self.verbose:
                    print(f"resuming from the checkpoint after epoch {checkpoint['epoch']}")
                remaining = self.max_epochs - checkpoint["epoch"]
                if remaining > 0:
                    net.partial_fit(data, epochs=remaining)
            net.use_averages()
            domains = {"s2t": data.source, "t2s": data.target}
            for direction, istn in net.module_.items():
                recompute_batch_norm(istn, domains[direction], self.batch_size,
                                     net.memory_format)
        self.net_ = net
        self.best_epoch_ = selection[0].best_epoch_ if selection else None
        self.task_ = task
        self.history_ = net.history
        self.n_channels_ = layout.channels
        self.image_shape_ = layout.spatial
        self.source_sites_ = sites
        return self

    def fit_transform(self, X, y=None, sample_domain=None):
        """``fit``, then ``transform`` with the same ``sample_domain`` (target rows kept)."""
        return self.fit(X, y, sample_domain=sample_domain).transform(X, sample_domain)

    def _build_net(self, layout, task=None, extra_callbacks=(),
                   n_sites=1) -> AdversarialISTNNet:
        """The untrained skorch net for ``layout`` (:func:`~._networks.build_training_net`)."""
        return build_training_net(self, layout, task, [*self._training_callbacks(),
                                                        *extra_callbacks], n_sites)

    def _build_istn(self, layout) -> ISTN:
        """One untrained ISTN for ``layout`` (:func:`~._networks.build_istn`)."""
        return build_istn(self, layout)

    def _training_callbacks(self):
        callbacks = list(self.callbacks or [])
        if self.verbose >= 2:
            callbacks.append(ProgressBar())
        return callbacks
