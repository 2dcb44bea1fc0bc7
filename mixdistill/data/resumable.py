"""A train loader that a resumed ``fit`` continues mid-epoch: the same order, without the trained batches.

The order of epoch ``e`` is a permutation drawn from its own generator seeded by ``seed + e`` (as
``DistributedSampler`` does), so it depends on nothing else: not on the global random state, not on
when the iterator is made. The loader is ``_Stateful`` for Lightning: a checkpoint records the epoch
and the batches trained in it (read from the trainer's progress, not counted at the loader, which
runs ahead of training), and the first iterator after ``load_state_dict`` skips exactly those
batches' indices without loading them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

#: ``(epoch, batches trained in it)`` of the running fit.
Position = Callable[[], tuple[int, int]]


def shuffle_seed(data_seed: int) -> int:
    """The seed of the train order: ``seed_everything``'s seed when one was set, else ``data_seed``.

    Both are the same on every DDP rank (a seed drawn from the global random state would not be).
    """
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed is not None else data_seed


class EpochSampler(DistributedSampler):
    """Shuffled indices of this rank, a function of ``(seed, epoch)`` alone; can skip a prefix once.

    A ``DistributedSampler``, so Lightning keeps it under DDP (it shards by ``rank`` itself) instead
    of wrapping it in another one.

    Args:
        dataset: The sized dataset to index.
        seed: Seed of the order; epoch ``e`` uses ``seed + e``.
        num_replicas: Number of ranks sharing the epoch.
        rank: This process's rank.
    """

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._skip = 0  # indices the next iterator leaves out (set by ``resume_at``, used once)

    def resume_at(self, epoch: int, samples: int) -> None:
        """Make the next iterator yield epoch ``epoch``'s order without its first ``samples`` indices."""
        self.set_epoch(epoch)
        self._skip = samples

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


class ResumableLoader(DataLoader):
    """A ``DataLoader`` over an ``EpochSampler`` whose position travels in checkpoints.

    Its own ``generator`` is reseeded from ``(seed, epoch)`` whenever an iterator is made, so the
    workers' base seed (``generator`` draw + worker id) never draws from the global random state.

    Args:
        dataset: The sized dataset.
        sampler: Its ``EpochSampler``.
        position: ``(epoch, batches trained in it)`` of the running fit, read at checkpoint time.
        **kwargs: Further ``DataLoader`` arguments (``batch_size``, ``num_workers``, ...).
    """

    def __init__(self, dataset: Dataset, sampler: EpochSampler, position: Position, **kwargs: Any) -> None:
        super().__init__(dataset, sampler=sampler, generator=torch.Generator(), **kwargs)
        self.position = position

    def __iter__(self) -> Any:
        sampler: EpochSampler = self.sampler
        self.generator.manual_seed((sampler.seed + sampler.epoch) * 1_000_003 + sampler.rank)
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        """Where the fit stands: its epoch, the batches trained in it and what the order depends on."""
        epoch, trained = self.position()
        return {
            "epoch": epoch,
            "batches_trained": trained,
            "seed": self.sampler.seed,
            "num_samples": len(self.dataset),
            "batch_size": self.batch_size,
            "world_size": self.sampler.num_replicas,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at ``state``'s position: the next iterator skips the batches trained in its epoch.

        The checkpoint's seed is the run's, so it replaces this loader's. A different data size,
        batch size or number of ranks makes the position meaningless: then the epoch's order starts
        from its first batch, with a warning.
        """
        now = {"num_samples": len(self.dataset), "batch_size": self.batch_size}
        now["world_size"] = self.sampler.num_replicas
        changed = {k: (state.get(k), v) for k, v in now.items() if state.get(k) != v}
        if changed:
            rank_zero_warn(
                "train loader: the checkpoint's position cannot be restored exactly, "
                + ", ".join(f"{k} was {old}, is {new}" for k, (old, new) in changed.items())
                + f"; epoch {state['epoch']} continues from the first batch of its order."
            )
        if state["seed"] != self.sampler.seed:
            rank_zero_warn(
                f"train loader: shuffling with the checkpoint's seed {state['seed']} "
                f"(this run's seed_everything/data seed gives {self.sampler.seed})."
            )
            self.sampler.seed = state["seed"]
        skipped = 0 if changed else state["batches_trained"] * self.batch_size
        self.sampler.resume_at(state["epoch"], skipped)
