"""Data-parallel batches: each process's shard of every global batch, and draws made globally.

Every process iterates the same globally shuffled batches (same seed, same
permutation per epoch, drawn exactly as one process's ``DataLoader`` would)
and keeps a contiguous slice of each: rank ``k`` gets rows
``[offset_k, offset_k + size_k)`` of every global batch. A random draw over
the rows of a training batch (soft labels, dropout masks, augmentation) is
made for the whole global batch on every process, which keeps the random
streams of all processes equal to one another and to one process's, and
each process keeps its own rows of it (:func:`on_global_batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler


def shard_sizes(batch: int, world: int) -> list[int]:
    """Rows of a global batch of ``batch`` rows per rank: as even as possible, larger first.

    Raises
    ------
    ValueError
        If the batch has fewer rows than there are processes (some would get none).
    """
    if batch < world:
        raise ValueError(f"a global batch of {batch} image pair(s) cannot be shared by "
                         f"{world} processes (each needs at least one); the last batch of an "
                         "epoch is the remainder of the images per domain divided by the "
                         "global batch size: choose a global batch size that leaves no "
                         "remainder smaller than the number of processes")
    return [batch // world + (rank < batch % world) for rank in range(world)]


@dataclass(frozen=True)
class Shard:
    """This process's part of the current global batch.

    Parameters
    ----------
    sizes : tuple of int
        Rows of the global batch held by each rank.
    rank : int
        This process's rank.
    """

    sizes: tuple[int, ...]
    rank: int

    @property
    def size(self) -> int:
        """Rows held here."""
        return self.sizes[self.rank]

    @property
    def total(self) -> int:
        """Rows of the global batch."""
        return sum(self.sizes)

    @property
    def offset(self) -> int:
        """Index of this process's first row in the global batch."""
        return sum(self.sizes[:self.rank])

    @property
    def share(self) -> float:
        """This process's fraction of the global batch: the weight of its mean losses."""
        return self.size / self.total

    def segments(self, n_rows: int) -> int:
        """How many shards of the batch a tensor of ``n_rows`` rows stacks (fakes and reals: 2).

        Raises
        ------
        RuntimeError
            If ``n_rows`` is not a whole number of shards.
        """
        if n_rows == 0 or n_rows % self.size:
            raise RuntimeError(f"a random draw over {n_rows} rows in a training step whose "
                               f"shard has {self.size} rows: the draw cannot be made for the "
                               "global batch")
        return n_rows // self.size

    def rows(self, n_rows: int) -> torch.Tensor:
        """Indices, in the global tensor, of the rows of a local tensor of ``n_rows`` rows.

        A local tensor stacking ``s`` shards (e.g. fakes then reals) stands for
        a global tensor stacking the ``s`` global batches in the same order.
        """
        local = torch.arange(self.offset, self.offset + self.size)
        return torch.cat([local + part * self.total for part in range(self.segments(n_rows))])


def on_global_batch(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                    shard: Shard) -> torch.Tensor:
    """``fn`` applied to the global batch that ``x`` is this process's shard of; ``x``'s rows.

    The other processes' rows are zeros: ``fn`` must treat rows independently
    and make random draws that depend on the number of rows only (dropout,
    soft labels, the registered augmentation policies). Gradients flow to
    ``x``. Every process then draws the same numbers, in the order and
    amounts of one process training on the global batch.
    """
    before, after = shard.offset, shard.total - shard.offset - shard.size
    pieces = []
    for part in x.split(shard.size):
        pieces += [part.new_zeros((before, *part.shape[1:])), part,
                   part.new_zeros((after, *part.shape[1:]))]
    whole = torch.cat(pieces).contiguous(memory_format=_memory_format(x))
    return fn(whole)[shard.rows(len(x)).to(x.device)]


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """``x``'s layout, so a draw that follows memory order matches one on the real batch."""
    for dims, layout in ((4, torch.channels_last), (5, torch.channels_last_3d)):
        if x.dim() == dims and not x.is_contiguous() and x.is_contiguous(memory_format=layout):
            return layout
    return torch.contiguous_format


class ShardState:
    """The shard of the training batch being processed now; None outside training steps.

    Set by the training callback around each training step; read by the
    distributed layers and draws, which behave as ordinary ones while it is None.
    """

    def __init__(self) -> None:
        self.current: Shard | None = None


class ShardedBatchSampler(Sampler[list[int]]):
    """This rank's slice of each batch of ``batches`` (a sampler of global batches).

    Parameters
    ----------
    batches : torch.utils.data.BatchSampler
        The global batches, identical on every rank.
    rank, world : int
        This process's rank and the number of processes.
    """

    def __init__(self, batches: BatchSampler, rank: int, world: int) -> None:
        self.batches = batches
        self.rank = rank
        self.world = world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            sizes = shard_sizes(len(batch), self.world)
            start = sum(sizes[:self.rank])
            yield batch[start:start + sizes[self.rank]]

    def __len__(self) -> int:
        return len(self.batches)


class ShardedLoader(DataLoader):
    """skorch's ``iterator_train`` for a data-parallel fit: this rank's shard of every batch.

    Takes ``DataLoader``'s arguments with ``batch_size`` the *global* batch;
    with ``shuffle`` the permutation is drawn from torch's global stream
    exactly as ``DataLoader(dataset, batch_size, shuffle=True)`` draws it, so
    every rank (seeded alike) and a single process see the same batches.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, **kwargs) -> None:
        order = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        batches = BatchSampler(order, batch_size, drop_last=False)
        super().__init__(dataset, batch_sampler=ShardedBatchSampler(
            batches, dist.get_rank(), dist.get_world_size()), **kwargs)
