"""Keeping the processes of a data-parallel ISTN fit in step with one another and with one process.

Inside :func:`distributed_fit`, :func:`prepare_net` (called by
:func:`~istn_sk._networks.build_training_net` on every net it builds; a
no-op elsewhere) gives the net a :class:`~._distributed_sharding.ShardedLoader`
and a :class:`KeepInStep` callback, which at the start of training

* broadcasts rank 0's networks (ISTNs, discriminators, task model, weight
  averages), so every process starts from the same weights;
* swaps batch norms and dropouts for their global-batch versions
  (:mod:`~._distributed_layers`) and wraps the augmentation policies so their
  draws are made for the global batch;
* makes every optimizer (``optimizer_``, ``optimizer_discriminator_``, the task
  model's ``optimizer_``) average the gradients over the processes, weighted by
  their shares of the global batch, before each step;

* draws the net's soft labels for the global batch (its ``soft_labels``);

and, around each training step, records which rows of the global batch this
process holds (for those layers, for the soft labels, and to turn the
per-batch losses in ``history`` into global-batch means). At the end of
training it restores the original layers and checks that every process holds
the same weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.distributed as dist
from skorch.callbacks import Callback
from torch import nn

from ._adversarial_net import soft_labels
from ._distributed_layers import restore_layers, shard_layers
from ._distributed_sharding import Shard, ShardedLoader, ShardState, on_global_batch

_ACTIVE: ContextVar[ShardState | None] = ContextVar("istn_sk_distributed_fit", default=None)


@contextmanager
def distributed_fit() -> Iterator[ShardState]:
    """Make the nets built inside train data-parallel in the initialised process group.

    Restored on leaving.
    """
    state = ShardState()
    token = _ACTIVE.set(state)
    try:
        yield state
    finally:
        _ACTIVE.reset(token)


def prepare_net(net):
    """``net``, set up to train data-parallel inside :func:`distributed_fit`; else unchanged."""
    state = _ACTIVE.get()
    if state is None:
        return net
    net.iterator_train = ShardedLoader
    net.callbacks = [*net.callbacks, KeepInStep(state)]
    return net


class _GlobalPolicy:
    """An augmentation policy applied to the global batch; this shard's rows kept."""

    def __init__(self, policy, state: ShardState) -> None:
        self.policy = policy
        self.state = state

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        shard = self.state.current
        if shard is None:
            return self.policy(images)
        return on_global_batch(self.policy, images, shard)


class _GlobalSoftLabels:
    """The net's soft labels drawn for the global batch; this shard's rows kept."""

    def __init__(self, state: ShardState) -> None:
        self.state = state

    def __call__(self, like: torch.Tensor, value: int) -> torch.Tensor:
        shard = self.state.current
        if shard is None:
            return soft_labels(like, value)
        return on_global_batch(lambda whole: soft_labels(whole, value), like, shard)


class KeepInStep(Callback):
    """The skorch callback that keeps a data-parallel fit's processes in step (module docstring).

    Parameters
    ----------
    state : ShardState
        Shared with the soft labels of :func:`distributed_fit`.
    """

    def __init__(self, state: ShardState) -> None:
        self.state = state

    def on_train_begin(self, net, **kwargs) -> None:
        self.rank_, self.world_ = dist.get_rank(), dist.get_world_size()
        # NCCL's collectives take tensors on this rank's GPU only; gloo's take any
        self.gpu_ = (next(net.module_.parameters()).device
                     if dist.get_backend() == dist.Backend.NCCL else None)
        self.device_ = torch.device("cpu") if self.gpu_ is None else self.gpu_
        for module in _networks(net).values():
            for tensor in module.state_dict().values():
                _broadcast_from_rank_0(tensor, self.gpu_)
        self.swapped_ = [swap for module in _trained(net) for swap in
                         shard_layers(module, self.state)]
        self.policies_ = {name: getattr(net, name) for name in ("augment_", "dis_augment_")
                          if getattr(net, name, None) is not None}
        for name, policy in self.policies_.items():
            setattr(net, name, _GlobalPolicy(policy, self.state))
        net.soft_labels = _GlobalSoftLabels(self.state)   # shadows the method until the end
        self.hooks_ = [optimizer.register_step_pre_hook(self._average_gradients)
                       for optimizer in _optimizers(net)]

    def on_batch_begin(self, net, batch=None, training=False, **kwargs) -> None:
        if not training:
            return
        size = torch.tensor([len(batch[0])], device=self.device_)
        sizes = [torch.zeros_like(size) for _ in range(self.world_)]
        dist.all_gather(sizes, size)
        self.state.current = Shard(tuple(int(s) for s in sizes), self.rank_)

    def on_batch_end(self, net, training=False, **kwargs) -> None:
        if not training:
            return
        shard, self.state.current = self.state.current, None
        row = net.history[-1]["batches"][-1]
        names = sorted(name for name, value in row.items()
                       if isinstance(value, float) and name != "train_batch_size")
        values = torch.tensor([row[name] for name in names], dtype=torch.float64,
                              device=self.device_) * shard.share
        dist.all_reduce(values)
        row.update(zip(names, values.tolist(), strict=True))
        row["train_batch_size"] = shard.total

    def on_train_end(self, net, **kwargs) -> None:
        self.state.current = None
        for hook in self.hooks_:
            hook.remove()
        for name, policy in self.policies_.items():
            setattr(net, name, policy)
        del net.soft_labels
        restore_layers(self.swapped_)
        self.hooks_, self.policies_, self.swapped_ = [], {}, []   # the fitted net keeps none
        check_in_step(_networks(net), self.gpu_)

    def _average_gradients(self, optimizer, args, kwargs) -> None:
        """Step pre-hook: every gradient becomes the global batch's, the same on every rank."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([grad.reshape(-1) for grad in grads]) * self.state.current.share
        dist.all_reduce(flat)
        start = 0
        for grad in grads:
            grad.copy_(flat[start:start + grad.numel()].view(grad.shape))
            start += grad.numel()


def _trained(net) -> list[nn.Module]:
    """The networks that train on the shards: ISTNs, discriminators and a task model."""
    modules = [net.module_, net.discriminator_]
    if net.task_net is not None:
        modules.append(net.task_net.module_)
    return modules


def _networks(net) -> dict[str, nn.Module]:
    """Every network whose weights must agree across processes, weight averages included."""
    modules = dict(zip(("istn", "discriminator", "task"), _trained(net), strict=False))
    if net.averages_ is not None:
        modules["averages"] = net.averages_
    return modules


def _optimizers(net) -> list[torch.optim.Optimizer]:
    optimizers = [net.optimizer_, net.optimizer_discriminator_]
    if net.task_net is not None:
        optimizers.append(net.task_net.optimizer_)
    return optimizers


def _on(device: torch.device | None, tensor: torch.Tensor, *, copy: bool = False) -> torch.Tensor:
    """``tensor`` as a collective takes it: contiguous, on ``device`` (NCCL: the GPU) if given."""
    return tensor.to(tensor.device if device is None else device,
                     memory_format=torch.contiguous_format, copy=copy)


def _broadcast_from_rank_0(tensor: torch.Tensor, device: torch.device | None) -> None:
    """Overwrite ``tensor`` (any memory layout, any device) with rank 0's."""
    buffer = _on(device, tensor)
    dist.broadcast(buffer, src=0)
    if buffer is not tensor:
        tensor.copy_(buffer)


def check_in_step(modules: dict[str, nn.Module], device: torch.device | None) -> None:
    """Raise on every rank if some rank's weights or buffers differ from rank 0's.

    ``device``: where the collectives run (NCCL: this rank's GPU); None: on
    each tensor's own device.

    Raises
    ------
    RuntimeError
        Naming the first differing tensor of this rank (or that another rank differs).
    """
    differing = []
    for name, module in modules.items():
        for key, tensor in module.state_dict().items():
            reference = _on(device, tensor, copy=True)
            dist.broadcast(reference, src=0)
            if not torch.equal(reference, _on(device, tensor)):
                differing.append(f"{name}.{key}")
    flag = torch.tensor([len(differing)], device=device)   # None: the CPU
    dist.all_reduce(flag)
    if int(flag):
        where = (f"{differing[0]} differs from rank 0's" if differing
                 else "another process's differ from rank 0's")
        raise RuntimeError(f"the processes of a data-parallel fit ended with different weights "
                           f"({where}): they fell out of step")
