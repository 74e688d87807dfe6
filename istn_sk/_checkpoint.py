"""Resumable adversarial training: a checkpoint after every epoch, resumed by the next ``fit``.

A checkpoint holds the ISTN, discriminator and optional task weights, every
optimizer's state, the history and torch's RNG state, so a run killed at any
moment loses at most the epoch in progress, and on CPU a resumed run ends
bit-identical to one that was never interrupted. It is written to a
temporary file and renamed, and read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import torch
from skorch.callbacks import Callback
from skorch.history import History

from ._atomic import atomic_path
from ._persistence import _history

CHECKPOINT_NAME = "istn-checkpoint.pt"
FORMAT = "istn-sk-checkpoint/1"


# Parameters that do not change what an epoch computes: logging, the device (a run may
# resume elsewhere), callbacks, where checkpoints go, and how many epochs the run has in all.
_IGNORED_ANYWHERE = frozenset({"callbacks", "verbose", "device"})
_IGNORED_AT_TOP = frozenset({"checkpoint_dir", "max_epochs"})


def training_params(estimator) -> dict:
    """The parameters of ``estimator`` that a resumed fit must share, nested ones included.

    Parameters
    ----------
    estimator : estimator
        Usually an :class:`~istn_sk.ISTNAdapter`.

    Returns
    -------
    dict
        ``get_params(deep=True)`` without the callbacks, ``verbose`` and
        ``device`` at any depth (``task__verbose``, ``task__callbacks__*``) nor
        ``checkpoint_dir`` and ``max_epochs`` of ``estimator`` itself. A nested
        estimator is represented by its class, its own parameters being listed
        under its prefix.
    """
    params = {}
    for key, value in estimator.get_params(deep=True).items():
        parts = key.split("__")
        if _IGNORED_ANYWHERE.intersection(parts) or key in _IGNORED_AT_TOP:
            continue
        nested_estimator = not isinstance(value, type) and hasattr(value, "get_params")
        params[key] = type(value) if nested_estimator else value
    return params


def fingerprint(estimator, images: np.ndarray, is_source: np.ndarray,
                labels: np.ndarray | None = None) -> str:
    """A digest of a fit: its :func:`training_params` and the data it trains on.

    Parameters
    ----------
    estimator : estimator
        The estimator being fitted.
    images : ndarray
        The training images.
    is_source : ndarray of bool
        Which images are source images.
    labels : ndarray, optional
        The labels the fit reads (the source labels of a simultaneous task
        model); None when it reads none.

    Returns
    -------
    str
        A hex digest (:func:`joblib.hash` of values, not of their text).
    """
    return joblib.hash([training_params(estimator), np.ascontiguousarray(images),
                        np.ascontiguousarray(is_source), labels])


def _states(net) -> dict:
    states = {
        "module": net.module_.state_dict(),
        "discriminator": net.discriminator_.state_dict(),
        "optimizer": net.optimizer_.state_dict(),
        "optimizer_discriminator": net.optimizer_discriminator_.state_dict(),
    }
    if net.task_net is not None:
        states["task"] = net.task_net.module_.state_dict()
        states["optimizer_task"] = net.task_net.optimizer_.state_dict()
    if net.averages_ is not None:
        states["averages"] = net.averages_.state_dict()
    return states


class EpochCheckpoint(Callback):
    """skorch callback writing a full training checkpoint at the end of every epoch.

    Parameters
    ----------
    directory : path-like
        Folder of the checkpoint file ``istn-checkpoint.pt``.
    key : str
        The :func:`fingerprint` of this fit, checked when resuming.
    """

    def __init__(self, directory, key: str) -> None:
        self.directory = directory
        self.key = key

    def on_epoch_end(self, net, **kwargs) -> None:
        path = Path(self.directory) / CHECKPOINT_NAME
        payload = {"format": FORMAT, "key": self.key, "epoch": len(net.history),
                   "states": _states(net), "history": _history(net),
                   "rng": torch.get_rng_state()}
        with atomic_path(path) as temporary:
            torch.save(payload, temporary)


def read_checkpoint(directory, key: str) -> dict | None:
    """The checkpoint in ``directory`` for this fit, or None when there is none.

    Raises
    ------
    ValueError
        If the folder holds a checkpoint of a different fit (other
        parameters or data) or an unreadable one; it is left in place.
    """
    path = Path(directory) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"checkpoint {path} is unreadable ({type(error).__name__}); remove it "
                         "to start afresh") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an istn-sk training checkpoint")
    if payload["key"] != key:
        raise ValueError(f"checkpoint {path} belongs to a fit with other parameters or data; "
                         "remove it or choose another checkpoint_dir")
    return payload


def restore(net, payload: dict) -> None:
    """Load a checkpoint's weights, optimizer states, history and RNG state into ``net``."""
    states = payload["states"]
    net.module_.load_state_dict(states["module"])
    net.discriminator_.load_state_dict(states["discriminator"])
    net.optimizer_.load_state_dict(states["optimizer"])
    net.optimizer_discriminator_.load_state_dict(states["optimizer_discriminator"])
    if net.task_net is not None:
        net.task_net.module_.load_state_dict(states["task"])
        net.task_net.optimizer_.load_state_dict(states["optimizer_task"])
    if net.averages_ is not None:
        net.averages_.load_state_dict(states["averages"])
    net.history_ = History(payload["history"])
    torch.set_rng_state(payload["rng"])
