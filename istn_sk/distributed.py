"""Data-parallel training of an ISTN across processes (``torch.distributed``).

:func:`fit_distributed` trains an :class:`~istn_sk.ISTNAdapter` with each of
``n`` processes holding one ``n``-th of every global batch: on one machine
it spawns the processes itself (gloo on CPU, NCCL with one GPU each); under
``torchrun`` (or any launcher that has initialised a process group) every
process calls it and trains in that group. The processes draw the same
shuffles, dropout masks, soft labels and augmentations as one process
training on the global batch would, normalise by the global batch's
statistics and average their gradients before every optimizer step, so a
fit matches a single-process fit with ``batch_size`` the global batch and
the same ``random_state`` up to floating-point rounding (docs/distributed.md
gives the measured tolerance), and every process ends with the same weights
(checked at the end of training).

Examples
--------
>>> from istn_sk import ISTNAdapter
>>> from istn_sk.distributed import fit_distributed
>>> adapter = ISTNAdapter(max_epochs=10, random_state=0)
>>> fitted = fit_distributed(adapter, X, sample_domain=sd, n_processes=2,
...                          global_batch_size=32)      # doctest: +SKIP
>>> fitted.transform(X[sd > 0])                          # doctest: +SKIP
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.base import clone
from sklearn.utils import check_random_state

from ._distributed_training import distributed_fit

__all__ = ["fit_distributed"]

BACKENDS = ("gloo", "nccl")


def fit_distributed(adapter, X, y=None, sample_domain=None, *, n_processes: int | None = None,
                    global_batch_size: int | None = None, backend: str = "gloo",
                    return_all_ranks: bool = False):
    """Fit a clone of ``adapter`` data-parallel: each process trains on its shard of every batch.

    Parameters
    ----------
    adapter : ISTNAdapter
        Not modified; its clone is fitted. ``random_state`` should be an int:
        otherwise one seed is drawn (on rank 0) and shared by every process.
    X, y, sample_domain
        As in :meth:`ISTNAdapter.fit <istn_sk.ISTNAdapter.fit>`; every process
        reads them whole and keeps its shard of each batch.
    n_processes : int, optional
        Processes to spawn (default 2), each with
        ``global_batch_size / n_processes`` image pairs per step. Inside an
        initialised process group (``torchrun``) none are spawned: the
        group's processes train, and ``n_processes`` must be None or its size.
    global_batch_size : int, optional
        Source images (and as many target images) per step over all
        processes: the ``batch_size`` of the single-process fit this one
        reproduces (default ``adapter.batch_size``); a multiple of the number
        of processes.
    backend : {"gloo", "nccl"}, default="gloo"
        Of the spawned process group: gloo on CPU (127.0.0.1, a free port);
        NCCL on GPUs (``adapter.device`` must be ``"cuda"``), process ``k`` on
        ``cuda:k``. Ignored inside an initialised group.
    return_all_ranks : bool, default=False
        Return every process's fitted adapter (rank 0 first), e.g. to check
        that they agree; spawned processes only.

    Returns
    -------
    ISTNAdapter or list of ISTNAdapter
        Rank 0's fitted clone (under ``torchrun``, this process's), with
        ``batch_size`` the global batch and ``random_state`` the shared seed:
        the parameters of the single-process fit it reproduces.

    Raises
    ------
    ValueError
        For an invalid ``n_processes``, ``global_batch_size`` or ``backend``,
        a ``checkpoint_dir`` (not supported), several source sites with
        ``multi_source="independent"`` (not supported), or a last batch of an
        epoch with fewer image pairs than processes.
    RuntimeError
        If the processes end with different weights (they fell out of step).

    Any error of ``adapter.fit`` in a spawned process is raised again here,
    with its type and message.
    """
    grouped = dist.is_available() and dist.is_initialized()
    world = _check_processes(n_processes, grouped)
    batch = _check_arguments(adapter, world, global_batch_size, backend, sample_domain,
                             return_all_ranks and grouped)
    if grouped:
        return _fit_in_group(adapter, X, y, sample_domain, batch)
    if backend == "nccl" and (str(adapter.device) != "cuda"
                              or torch.cuda.device_count() < world):
        raise ValueError(f"backend='nccl' runs one process per GPU: it needs "
                         f"device='cuda' (got {adapter.device!r}) and {world} GPUs "
                         f"({torch.cuda.device_count()} found)")
    with tempfile.TemporaryDirectory(prefix="istn-sk-distributed-") as folder:
        arguments = (world, backend, _free_port(), adapter, X, y, sample_domain, batch,
                     folder, return_all_ranks)
        try:
            mp.spawn(_worker, args=arguments, nprocs=world, join=True)
        except Exception as failure:
            raised = _error_of(Path(folder), world)
            if raised is None:
                raise
            raise raised from failure
        ranks = range(world) if return_all_ranks else [0]
        fitted = [_load(Path(folder) / f"rank-{rank}.pkl") for rank in ranks]
    return fitted if return_all_ranks else fitted[0]


def _fit_in_group(adapter, X, y, sample_domain, global_batch_size: int):
    """Fit a clone of ``adapter`` in the initialised process group (every rank calls this).

    The clone gets ``batch_size=global_batch_size``, a seed shared by every
    rank, this rank's GPU for a bare ``"cuda"`` device under NCCL, and
    ``verbose=0`` on ranks other than 0.
    """
    rank = dist.get_rank()
    fitted = clone(adapter)
    params = {"batch_size": global_batch_size}
    if dist.get_backend() == dist.Backend.NCCL:
        local = int(os.environ.get("LOCAL_RANK", rank % max(1, torch.cuda.device_count())))
        torch.cuda.set_device(local)
        if str(adapter.device) == "cuda":
            params["device"] = f"cuda:{local}"
        if adapter.task is not None and str(adapter.task.device) == "cuda":
            params["task__device"] = f"cuda:{local}"
    params["random_state"] = _shared_seed(adapter.random_state)
    if rank:
        params["verbose"] = 0
    fitted.set_params(**params)
    with distributed_fit():
        fitted.fit(X, y, sample_domain=sample_domain)
    return fitted


def _check_processes(n_processes, grouped: bool) -> int:
    if n_processes is not None and (isinstance(n_processes, bool)
                                    or not isinstance(n_processes, Integral) or n_processes < 1):
        raise ValueError(f"n_processes must be None or a positive integer, got {n_processes!r}")
    if not grouped:
        if not dist.is_available():
            raise ValueError("this torch build has no torch.distributed")
        return 2 if n_processes is None else int(n_processes)
    world = dist.get_world_size()
    if n_processes is not None and n_processes != world:
        raise ValueError(f"n_processes={n_processes}, but the initialised process group has "
                         f"{world} processes: pass None (or {world}) inside a group")
    return world


def _check_arguments(adapter, world: int, global_batch_size, backend, sample_domain,
                     grouped_all_ranks: bool) -> int:
    from ._adapter import ISTNAdapter

    if not isinstance(adapter, ISTNAdapter):
        raise ValueError(f"fit_distributed trains an ISTNAdapter, got {type(adapter).__name__}")
    batch = adapter.batch_size if global_batch_size is None else global_batch_size
    if isinstance(batch, bool) or not isinstance(batch, Integral) or batch < 1:
        raise ValueError(f"global_batch_size must be a positive integer, got {batch!r}")
    if batch % world:
        raise ValueError(f"global_batch_size={batch} is not divisible by the {world} "
                         f"processes: each process takes an equal part of every batch")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if adapter.checkpoint_dir is not None:
        raise ValueError("checkpoint_dir is not supported by fit_distributed: every process "
                         "would write and resume the same checkpoint; leave it None")
    if sample_domain is not None and adapter.multi_source == "independent":
        domains = np.asarray(sample_domain).ravel()
        if len(np.unique(domains[domains > 0])) > 1:
            raise ValueError("several source sites with multi_source='independent' are not "
                             "supported by fit_distributed (a site's networks would run on "
                             "some processes only); use multi_source='conditioned'")
    if grouped_all_ranks:
        raise ValueError("return_all_ranks is for spawned processes; inside a process group "
                         "each process gets its own adapter")
    return int(batch)


def _shared_seed(random_state) -> int:
    """``random_state`` if an int, else a seed drawn on rank 0; the same on every rank."""
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        return int(random_state)
    drawn = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    device = "cuda" if dist.get_backend() == dist.Backend.NCCL else "cpu"
    seed = torch.tensor([drawn], dtype=torch.int64, device=device)
    dist.broadcast(seed, src=0)
    return int(seed)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, world: int, backend: str, port: int, adapter, X, y, sample_domain,
            global_batch_size: int, folder: str, keep_all: bool) -> None:
    """One spawned process: join the group, fit, and leave the result (or error) in ``folder``."""
    os.environ.setdefault("LOCAL_RANK", str(rank))
    if backend == "gloo":
        torch.set_num_threads(max(1, torch.get_num_threads() // world))
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        fitted = _fit_in_group(adapter, X, y, sample_domain, global_batch_size)
        if rank == 0 or keep_all:
            with open(Path(folder) / f"rank-{rank}.pkl", "wb") as file:
                pickle.dump(fitted, file)
    except Exception as error:
        try:
            with open(Path(folder) / f"error-{rank}.pkl", "wb") as file:
                pickle.dump(error, file)
        except Exception:   # an error that does not pickle: the spawn error tells it
            pass
        raise
    finally:
        dist.destroy_process_group()


def _error_of(folder: Path, world: int) -> BaseException | None:
    """The error the lowest failing rank raised, if it could be saved."""
    for rank in range(world):
        path = folder / f"error-{rank}.pkl"
        if path.exists():
            try:
                return _load(path)
            except Exception:
                return None
    return None


def _load(path: Path):
    with open(path, "rb") as file:
        return pickle.load(file)   # written by this call's own processes
