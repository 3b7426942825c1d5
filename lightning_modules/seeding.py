"""Per-epoch seeding, so that a resumed run ends bit-for-bit where the uninterrupted run ends.

Every random draw of a training epoch (the shuffle when it uses the global RNG, augmentation, dropout
masks, DataLoader worker seeds) comes from the global RNGs, which :class:`EpochSeeding` resets at the start
of each epoch to a seed derived from ``(run seed, epoch, process rank)``. An epoch's randomness is then a
function of that triple alone, not of what ran before it in the same process: resuming from the checkpoint
written after epoch ``k`` replays epoch ``k + 1`` exactly as the uninterrupted run draws it. The run seed is
saved in the checkpoint and restored on resume (it wins over a new ``seed_everything`` value, so that the
resumed epochs are those of the interrupted run).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import RandomSampler


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 63-bit seed for ``(seed, epoch, rank)``, well mixed by ``numpy.random.SeedSequence``.

    Examples::

        >>> epoch_seed(0, 1) == epoch_seed(0, 1), epoch_seed(0, 1) == epoch_seed(0, 2)
        (True, False)
    """
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class EpochSeeding(Callback):
    """Reseeds the global RNGs at the start of every training epoch from ``(seed, epoch, global rank)``.

    Args:
        seed: the run seed; ``None`` takes ``seed_everything``'s (``PL_GLOBAL_SEED``), else a random one.
    """

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = seed

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.seed is None:
            env = os.environ.get("PL_GLOBAL_SEED")
            self.seed = int(env) if env is not None else random.SystemRandom().randrange(2**32)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seed_all(epoch_seed(self.seed, trainer.current_epoch, trainer.global_rank))

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seed = int(state_dict["seed"])


class EpochShuffle(RandomSampler):
    """A ``RandomSampler`` whose permutation is a function of ``(seed, epoch)`` alone.

    Lightning calls :meth:`set_epoch` before each training epoch (as for ``DistributedSampler``, which
    replaces this sampler under DDP and is also seeded per epoch), so a resumed run shuffles its next
    epoch exactly as the uninterrupted run does. ``loader_generator`` is meant as the ``DataLoader``'s
    ``generator``: the loader draws its worker base seed from it, so that draw neither depends on nor
    advances the global RNG; it is reseeded for each epoch too.

    Args:
        data_source: the dataset (its length is what matters).
        seed: the shuffle seed.
        epoch: the first epoch (a resumed run starts at the checkpoint's epoch).
    """

    def __init__(self, data_source: Sized, seed: int, epoch: int = 0) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = seed
        self.loader_generator = torch.Generator()
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Shuffle (and seed the loader's draws) for ``epoch``."""
        self.epoch = epoch
        self.loader_generator.manual_seed(epoch_seed(self.seed, epoch, rank=1))

    def __iter__(self) -> Iterator[int]:
        # Runs at the first next(), so after Lightning's set_epoch even when the iterator was made before it.
        self.generator.manual_seed(epoch_seed(self.seed, self.epoch))
        yield from super().__iter__()
