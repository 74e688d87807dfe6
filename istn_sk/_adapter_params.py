"""Validation of ISTNAdapter's parameters, done in ``fit`` (scikit-learn's convention)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from ._augment import get_augmentation
from ._content_losses import build_content_losses
from ._regularisers import build_regularisers
from .nn._itn import ITN_OUTPUTS

MODES = ("unidirectional", "cyclegan")
IDENTITY_ON = ("itn", "istn")
PRECISIONS = ("float32", "bfloat16")
#: The ITN settings ``itn_options`` may hold: ImageTransformerNetwork's keywords, and
#: ``bias_field``, the degree of a :class:`~istn_sk.nn.PolynomialBiasField` after the ITN.
ITN_OPTIONS = ("bias_field", "coordinates", "depth", "p_dropout")
#: Highest ``itn_options["bias_field"]`` degree (a receive field is smooth).
MAX_BIAS_FIELD_DEGREE = 3
#: What ``dis_augmentation="auto"`` gives 3D images (2D images get none).
DEFAULT_3D_DIS_AUGMENTATION = "lowpass"
#: What ``content_losses="auto"`` builds for an adapter with an ITN.
DEFAULT_CONTENT_LOSS = "patch_nce"


def check_adapter_params(adapter, spatial: tuple[int, ...]) -> None:
    """Raise one ``ValueError`` naming the first invalid parameter of ``adapter``.

    Parameters
    ----------
    adapter : ISTNAdapter
    spatial : tuple of int
        Spatial shape of the images being fitted (per-axis options must match it).
    """
    if adapter.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {adapter.mode!r}")
    if adapter.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {adapter.precision!r}")
    if adapter.identity_on not in IDENTITY_ON:
        raise ValueError(f"identity_on must be one of {IDENTITY_ON}, got {adapter.identity_on!r}")
    if not isinstance(adapter.itn, (bool, np.bool_)):
        raise ValueError(f"itn must be True or False, got {adapter.itn!r}")
    if not (isinstance(adapter.dis_coordinates, (bool, np.bool_))
            or adapter.dis_coordinates == "auto"):
        raise ValueError(f"dis_coordinates must be 'auto', True or False, got "
                         f"{adapter.dis_coordinates!r}")
    if not (adapter.itn_options is None or (isinstance(adapter.itn_options, dict)
            and set(adapter.itn_options) <= set(ITN_OPTIONS))):
        raise ValueError(f"itn_options must be None or a dict with keys among {ITN_OPTIONS}, "
                         f"got {adapter.itn_options!r}")
    degree = (adapter.itn_options or {}).get("bias_field", 0)
    if not (isinstance(degree, Integral) and not isinstance(degree, bool)
            and 0 <= degree <= MAX_BIAS_FIELD_DEGREE):
        raise ValueError(f"itn_options['bias_field'] must be a polynomial degree from 0 (none) "
                         f"to {MAX_BIAS_FIELD_DEGREE}, got {degree!r}")
    if adapter.itn_output not in ITN_OUTPUTS:
        raise ValueError(f"itn_output must be one of {ITN_OUTPUTS}, got {adapter.itn_output!r}")
    if not adapter.itn and not has_stn(adapter):
        raise ValueError("itn=False with stn=None leaves nothing to train: enable the ITN "
                         "or choose an STN")
    if not isinstance(adapter.max_displacement, Real) or not 0 <= adapter.max_displacement <= 1:
        raise ValueError(f"max_displacement must be in [0, 1] (a fraction of the image "
                         f"size), got {adapter.max_displacement!r}")
    per_axis(adapter.cp_spacing, len(spatial))
    for name in ("nf", "batch_size", "max_epochs"):
        value = getattr(adapter, name)
        if not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if adapter.ema_decay is not None and (not isinstance(adapter.ema_decay, Real)
                                          or not 0 < adapter.ema_decay < 1):
        raise ValueError(f"ema_decay must be None or a number in (0, 1), got "
                         f"{adapter.ema_decay!r}")
    for name in ("augmentation", "dis_augmentation"):
        policy = getattr(adapter, name)
        if name == "dis_augmentation":
            policy = resolved_dis_augmentation(adapter, len(spatial))
        if policy is not None and not isinstance(policy, str):
            raise ValueError(f"{name} must be None or the name of a registered policy, "
                             f"got {policy!r}")
        get_augmentation(policy, name)   # an unknown name lists the registered ones
    build_regularisers(adapter.dis_regularisers)
    if build_content_losses(resolved_content_losses(adapter), (1,)) and not adapter.itn:
        raise ValueError("content_losses compare the ITN's input and output features; "
                         "with itn=False there is no ITN: enable it or set content_losses=None")
    for name in ("lr", "dis_lr", "consistency_weight", "task_weight"):
        value = getattr(adapter, name)
        if name == "dis_lr" and value is None:
            continue
        if not isinstance(value, Real) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def per_axis(value, spatial_dims: int) -> tuple[int, ...]:
    """An int or a per-axis sequence of positive ints, as a tuple of ``spatial_dims`` ints."""
    values = tuple(np.atleast_1d(value).tolist())
    if len(values) == 1:
        values = values * spatial_dims
    if len(values) != spatial_dims or not all(isinstance(v, Integral) and v >= 1 for v in values):
        raise ValueError(f"cp_spacing must be a positive integer or {spatial_dims} of them, "
                         f"got {value!r}")
    return values


def has_stn(adapter) -> bool:
    """Whether ``adapter.stn`` names a spatial transformer (None and ``"none"`` do not)."""
    return adapter.stn not in (None, "none")


def resolved_content_losses(adapter):
    """``adapter.content_losses`` resolved: ``"auto"`` means PatchNCE when there is an ITN."""
    if adapter.content_losses == "auto":
        return DEFAULT_CONTENT_LOSS if adapter.itn else None
    return adapter.content_losses


def resolved_dis_augmentation(adapter, spatial_dims: int):
    """``adapter.dis_augmentation`` resolved: ``"auto"`` means ``"lowpass"`` for 3D images."""
    if adapter.dis_augmentation == "auto":
        return DEFAULT_3D_DIS_AUGMENTATION if spatial_dims == 3 else None
    return adapter.dis_augmentation


def discriminator_sees_coordinates(adapter) -> bool:
    """``adapter.dis_coordinates`` resolved: ``"auto"`` means "when there is an STN"."""
    if adapter.dis_coordinates == "auto":
        return has_stn(adapter)
    return bool(adapter.dis_coordinates)
