"""Data-parallel training (istn_sk.distributed): 2 gloo processes on loopback against one process.

Tolerances (docs/distributed.md): with the same global batch and seed, the
processes draw what one process draws, so the fits differ by floating-point
rounding only (batch-norm statistics and gradients summed in two halves).
Measured here: two processes against one, transforms 8e-7, task
probabilities 3e-8, weights and statistics 9e-7, losses 2e-7; one process in
a group, transforms 3e-6 and weights 7e-6. With the soft labels drawn per
process instead, transforms moved by 3e-2. The tests assert 1e-4 on
outputs and losses and 1e-3 on weights; the processes' weights must agree
bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from istn_sk import ISTNAdapter, TaskClassifier, make_shifted_shapes
from istn_sk._distributed_sharding import Shard, ShardedBatchSampler, shard_sizes
from istn_sk._distributed_training import KeepInStep, prepare_net
from istn_sk.distributed import fit_distributed

OUTPUT_TOLERANCE = 1e-4
WEIGHT_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def shapes():
    """21 images per domain: batches of 8, 8 and 5 (shared 3 + 2 by two processes)."""
    X, y, sd = make_shifted_shapes(21, (16, 16), shift=2.0, random_state=0)
    return X, np.where(sd > 0, y, -1), sd


def _adapter(**params) -> ISTNAdapter:
    return ISTNAdapter(**{"nf": 2, "max_epochs": 2, "batch_size": 8, "random_state": 0,
                          **params})


def _states(adapter: ISTNAdapter) -> dict[str, np.ndarray]:
    modules = {"istn": adapter.net_.module_, "discriminator": adapter.net_.discriminator_}
    if adapter.task_ is not None:
        modules["task"] = adapter.task_.module_
    return {f"{name}.{key}": value.detach().double().numpy()
            for name, module in modules.items()
            for key, value in module.state_dict().items() if value.is_floating_point()}


def _assert_close_fits(fitted: ISTNAdapter, single: ISTNAdapter, X, sd) -> None:
    source = X[sd > 0]
    np.testing.assert_allclose(fitted.transform(source), single.transform(source),
                               rtol=0, atol=OUTPUT_TOLERANCE)
    for key, value in _states(single).items():
        np.testing.assert_allclose(_states(fitted)[key], value, rtol=0, atol=WEIGHT_TOLERANCE,
                                   err_msg=key)
    for name in ("train_loss", "dis_loss"):
        np.testing.assert_allclose(fitted.history_[:, name], single.history_[:, name],
                                   rtol=0, atol=OUTPUT_TOLERANCE, err_msg=name)


def test_two_processes_match_one_process(shapes):
    X, y, sd = shapes
    params = {"task": TaskClassifier(nf=2), "augmentation": "reference",
              "dis_augmentation": "translation_cutout"}
    single = _adapter(**params).fit(X, y, sample_domain=sd)
    ranks = fit_distributed(_adapter(**params, batch_size=32), X, y, sample_domain=sd,
                            n_processes=2, global_batch_size=8, return_all_ranks=True)
    assert len(ranks) == 2
    first, second = ranks
    assert first.batch_size == 8 and first.random_state == 0
    for key, value in _states(first).items():          # every process holds the same weights
        np.testing.assert_array_equal(_states(second)[key], value, err_msg=key)
    np.testing.assert_array_equal(first.transform(X), second.transform(X))
    _assert_close_fits(first, single, X, sd)
    np.testing.assert_allclose(first.predict_proba(X), single.predict_proba(X), rtol=0,
                               atol=OUTPUT_TOLERANCE)
    assert first.history_[-1, "batches", -1, "train_batch_size"] == 5   # the global batch


def test_inside_an_initialised_group(shapes, tmp_path):
    """The torchrun path: a process group already exists (here: one gloo process)."""
    X, _, sd = shapes
    single = _adapter().fit(X, sample_domain=sd)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        with pytest.raises(ValueError, match="n_processes=2, but the initialised process"):
            fit_distributed(_adapter(), X, sample_domain=sd, n_processes=2)
        with pytest.raises(ValueError, match="return_all_ranks is for spawned processes"):
            fit_distributed(_adapter(), X, sample_domain=sd, return_all_ranks=True)
        fitted = fit_distributed(_adapter(), X, sample_domain=sd)
    finally:
        dist.destroy_process_group()
    _assert_close_fits(fitted, single, X, sd)


def test_errors_in_the_processes_are_raised_here(shapes):
    X, _, sd = shapes
    rows = np.r_[np.flatnonzero(sd > 0)[:17], np.flatnonzero(sd < 0)[:17]]
    with pytest.raises(ValueError, match=r"1 image pair.* cannot be shared by 2 processes"):
        fit_distributed(_adapter(max_epochs=1), X[rows], sample_domain=sd[rows],
                        n_processes=2)   # 17 pairs in batches of 8: the last has 1


@pytest.mark.parametrize(("arguments", "message"), [
    ({"n_processes": 0}, "n_processes must be None or a positive integer"),
    ({"n_processes": 1.5}, "n_processes must be None or a positive integer"),
    ({"n_processes": True}, "n_processes must be None or a positive integer"),
    ({"n_processes": 2, "global_batch_size": 7}, "global_batch_size=7 is not divisible"),
    ({"n_processes": 3}, "global_batch_size=8 is not divisible by the 3 processes"),
    ({"global_batch_size": 0}, "global_batch_size must be a positive integer"),
    ({"backend": "mpi"}, "backend must be one of"),
    ({"backend": "nccl"}, "backend='nccl' runs one process per GPU"),
])
def test_bad_arguments(shapes, arguments, message):
    X, _, sd = shapes
    with pytest.raises(ValueError, match=message):
        fit_distributed(_adapter(), X, sample_domain=sd, **arguments)


@pytest.mark.parametrize(("adapter", "message"), [
    (TaskClassifier(), "fit_distributed trains an ISTNAdapter"),
    (_adapter(checkpoint_dir="ckpt"), "checkpoint_dir is not supported"),
    (_adapter(multi_source="independent"), "multi_source='independent' are not supported"),
])
def test_unsupported_fits(shapes, adapter, message):
    X, _, sd = shapes
    sites = np.where(sd > 0, 1 + np.arange(len(sd)) % 2, sd)
    with pytest.raises(ValueError, match=message):
        fit_distributed(adapter, X, sample_domain=sites)


def test_shards_of_each_batch_are_one_process_batches():
    dataset = list(range(21))
    torch.manual_seed(3)
    one_process = [batch.tolist() for batch in DataLoader(dataset, batch_size=8, shuffle=True)]
    shards = []
    for rank in range(2):
        torch.manual_seed(3)
        batches = BatchSampler(RandomSampler(dataset), 8, drop_last=False)
        loader = DataLoader(dataset, batch_sampler=ShardedBatchSampler(batches, rank, 2))
        shards.append([batch.tolist() for batch in loader])
    assert [first + second for first, second in zip(*shards, strict=True)] == one_process
    assert [len(shard) for shard in shards[1]] == [4, 4, 2]
    assert shard_sizes(5, 2) == [3, 2]
    with pytest.raises(ValueError, match="cannot be shared by 2 processes"):
        shard_sizes(1, 2)
    # fakes then reals of rank 1's 2 rows in a global batch of 5: rows 3, 4 and 8, 9
    assert Shard((3, 2), 1).rows(4).tolist() == [3, 4, 8, 9]


def test_single_process_nets_are_untouched(shapes):
    """Outside fit_distributed the training net is built exactly as before."""
    X, _, sd = shapes
    net = _adapter(max_epochs=1).fit(X, sample_domain=sd).net_
    assert net.iterator_train is DataLoader
    assert not any(isinstance(callback, KeepInStep) for _, callback in net.callbacks_)
    assert prepare_net(net) is net and net.iterator_train is DataLoader
