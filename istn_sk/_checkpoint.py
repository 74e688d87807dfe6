"""Resumable adversarial training: a checkpoint after every epoch, resumed by the next ``fit``.

A checkpoint holds the ISTN, discriminator and optional task weights, every
optimizer's state, the history and torch's RNG state, so a run killed at any
moment loses at most the epoch in progress, and on CPU a resumed run ends
bit-identical to one that was never interrupted. It is written to a
temporary file and renamed, and read with ``torch.load(weights_only=True)``.
Inside :func:`resumable`, SIGINT and SIGTERM stop the fit with
:class:`~istn_sk.TrainingInterrupted` once no checkpoint is being written,
and one line says where the checkpoint is and how to resume.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import joblib
import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping
from skorch.history import History

from ._atomic import atomic_path, save_torch
from ._interrupt import TrainingInterrupted, signals_deferred, stop_on_signals
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
    if len(net.content_):
        states["content"] = net.content_.state_dict()
    return states


class EpochCheckpoint(Callback):
    """skorch callback writing a full training checkpoint at the end of every epoch.

    Parameters
    ----------
    directory : path-like
        Folder of the checkpoint file ``istn-checkpoint.pt``.
    key : str
        The :func:`fingerprint` of this fit, checked when resuming.
    epoch : int, default=0
        Epochs the checkpoint in ``directory`` holds (a resumed fit's start).

    Attributes
    ----------
    path : Path
        The checkpoint file.
    """

    def __init__(self, directory, key: str, epoch: int = 0) -> None:
        self.directory = directory
        self.key = key
        self.epoch = epoch

    @property
    def path(self) -> Path:
        return Path(self.directory) / CHECKPOINT_NAME

    def on_train_begin(self, net, **kwargs) -> None:
        """On a resumed fit, bring the other callbacks' state up to the restored history.

        Runs after theirs (this callback comes last), which reset it.
        """
        if len(net.history):
            replay_callback_states(net)

    def on_epoch_end(self, net, **kwargs) -> None:
        payload = {"format": FORMAT, "key": self.key, "epoch": len(net.history),
                   "states": _states(net), "history": _history(net),
                   "rng": torch.get_rng_state()}
        with signals_deferred():   # a stop signal waits until the file is whole
            with atomic_path(self.path) as temporary:
                save_torch(payload, temporary)
            self.epoch = payload["epoch"]


def replay_callback_states(net) -> None:
    """Give the scoring and early-stopping callbacks the state the restored history implies.

    A scoring callback's best score so far is the score of the last epoch
    flagged ``<name>_best``; :class:`skorch.callbacks.EarlyStopping` replays
    its count of epochs without improvement and its threshold over the
    history, so a resumed fit flags, and stops at, the epochs an
    uninterrupted one would (``load_best`` weights are not restored).
    """
    for _, callback in net.callbacks_:
        if isinstance(callback, EarlyStopping):
            callback.misses_ = 0
            for epoch in net.history:
                if callback.monitor not in epoch:
                    continue
                if callback._is_score_improved(epoch[callback.monitor]):
                    callback.misses_ = 0
                    callback.dynamic_threshold_ = callback._calc_new_threshold(
                        epoch[callback.monitor])
                    callback.best_epoch_ = epoch["epoch"]
                else:
                    callback.misses_ += 1
            continue
        name = getattr(callback, "name_", None) or getattr(callback, "name", None)
        if not hasattr(callback, "best_score_") or not isinstance(name, str):
            continue
        best = [epoch[name] for epoch in net.history if epoch.get(f"{name}_best")]
        if best:
            callback.best_score_ = best[-1]


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
    if len(net.content_):
        net.content_.load_state_dict(states["content"])
    net.history_ = History(payload["history"])
    torch.set_rng_state(payload["rng"])


def _fit_stopped(error: TrainingInterrupted) -> str:
    if not error.epoch:
        return (f"ISTNAdapter.fit stopped by {error.signal_name} before its first epoch ended; "
                "no checkpoint was written")
    return (f"ISTNAdapter.fit stopped by {error.signal_name} after epoch {error.epoch}; the "
            f"checkpoint is {error.checkpoint}: fit again with the same parameters, data and "
            f"checkpoint_dir={str(error.checkpoint.parent)!r} to resume")


@contextmanager
def resumable(callbacks: Sequence, checkpoint: dict | None = None) -> Iterator[None]:
    """Stop the fit on SIGINT or SIGTERM, keeping the checkpoint of the last finished epoch.

    Without an :class:`EpochCheckpoint` among ``callbacks`` this does
    nothing. With one, the signals raise :class:`~istn_sk.TrainingInterrupted`
    (exit status 130 or 143 when uncaught) carrying the checkpoint's path
    and epoch, and one line on stderr says how to resume (see
    :func:`~istn_sk._interrupt.stop_on_signals` for when handlers are
    installed).

    Parameters
    ----------
    callbacks : sequence of skorch callbacks
        The training net's extra callbacks.
    checkpoint : dict, optional
        The checkpoint the fit resumes from (:func:`read_checkpoint`).
    """
    writer = next((item for item in callbacks if isinstance(item, EpochCheckpoint)), None)
    if writer is None:
        yield
        return
    if checkpoint is not None:
        writer.epoch = checkpoint["epoch"]
    with stop_on_signals(report=_fit_stopped):
        try:
            yield
        except TrainingInterrupted as error:
            error.checkpoint, error.epoch = writer.path.absolute(), writer.epoch
            raise


def checkpointing(adapter, images: np.ndarray, is_source: np.ndarray, y,
                  domains: np.ndarray | None = None):
    """The checkpoint to resume ``adapter``'s fit from (or None), and the callbacks that write.

    The key covers the parameters (nested ones too), the images, the
    domains and the labels the fit reads: the source labels when a task
    model trains alongside, none otherwise. ``domains`` (e.g. each row's
    site) replaces ``is_source`` in the key when given. Without
    ``checkpoint_dir``: ``(None, [])``.
    """
    if adapter.checkpoint_dir is None:
        return None, []
    directory = Path(adapter.checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    labels = None if adapter.task is None or y is None else np.asarray(y)[is_source]
    key = fingerprint(adapter, images, is_source if domains is None else domains, labels)
    return read_checkpoint(directory, key), [EpochCheckpoint(directory, key)]
