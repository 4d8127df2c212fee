"""Batch samplers: B speakers x M utterances per batch for speaker-embedding training (voxceleb_trainer style).

Metric losses (angular prototypical, GE2E) need M >= 2 utterances of each of B distinct speakers in a
batch; classification losses work with M = 1. The sampler is seeded, reshuffles with `set_epoch`, and
splits the batches of an epoch between distributed ranks so that every rank gets the same number.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class SpeakerBatchSampler(Sampler[list[int]]):
    """Yields lists of B*M dataset indices, speaker-major: `[s0u0 .. s0u(M-1), s1u0, ..]`.

    With `DataLoader(dataset, batch_sampler=this)` a batch of waves is (B*M, T); `wave.view(B, M, T)` and
    `label.view(B, M)[:, 0]` give the (B, M, ...) layout of the ASV losses. No speaker appears twice in a
    batch. Per epoch, each speaker's utterances (at most `max_utts_per_speaker`, shuffled) are cut into
    groups of M (a remainder < M is left out that epoch); groups are shuffled and packed into batches,
    deferring a group whose speaker is already in the open batch. The batch list is truncated to a
    multiple of `world_size`, and rank r takes batches r, r + world_size, ...

    Call `set_epoch(epoch)` before each epoch (as with DistributedSampler); the same seed and epoch give
    the same batches on every rank.
    """

    def __init__(self, labels: Sequence[int], speakers_per_batch: int, utts_per_speaker: int = 1,
                 seed: int = 0, rank: int = 0, world_size: int = 1, max_utts_per_speaker: int | None = None):
        if speakers_per_batch < 1 or utts_per_speaker < 1:
            raise ValueError(f"speakers_per_batch ({speakers_per_batch}) and utts_per_speaker "
                             f"({utts_per_speaker}) must be >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if max_utts_per_speaker is not None and max_utts_per_speaker < utts_per_speaker:
            raise ValueError(f"max_utts_per_speaker ({max_utts_per_speaker}) < utts_per_speaker ({utts_per_speaker})")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.B, self.M = int(speakers_per_batch), int(utts_per_speaker)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.max_utts = max_utts_per_speaker
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None
        eligible = np.unique(self.labels, return_counts=True)[1] >= self.M
        if int(eligible.sum()) < self.B:
            raise ValueError(f"only {int(eligible.sum())} speakers have >= {self.M} utterances; "
                             f"a batch needs {self.B} distinct speakers")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _all_batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.labels))
        by_speaker: dict[int, list[int]] = {}
        for i in order.tolist():
            by_speaker.setdefault(int(self.labels[i]), []).append(i)
        groups: list[tuple[int, list[int]]] = []
        for spk in sorted(by_speaker):
            idx = by_speaker[spk]
            if self.max_utts is not None:
                idx = idx[:self.max_utts]
            usable = len(idx) - len(idx) % self.M
            groups.extend((spk, idx[k:k + self.M]) for k in range(0, usable, self.M))
        groups = [groups[k] for k in rng.permutation(len(groups)).tolist()]

        batches: list[list[int]] = []
        current: list[list[int]] = []
        in_batch: set[int] = set()
        deferred: list[tuple[int, list[int]]] = []
        for spk, idx in groups:
            if spk in in_batch:
                deferred.append((spk, idx))
                continue
            current.append(idx)
            in_batch.add(spk)
            if len(current) == self.B:
                batches.append([i for g in current for i in g])
                current, in_batch = [], set()
                # retry deferred groups first: they only clashed with the batch just closed
                still = []
                for d_spk, d_idx in deferred:
                    if d_spk in in_batch or len(current) == self.B:
                        still.append((d_spk, d_idx))
                        continue
                    current.append(d_idx)
                    in_batch.add(d_spk)
                    if len(current) == self.B:
                        batches.append([i for g in current for i in g])
                        current, in_batch = [], set()
                deferred = still
        usable = len(batches) - len(batches) % self.world_size
        batches = batches[:usable]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._all_batches()[self.rank::self.world_size])

    def __len__(self) -> int:
        return len(self._all_batches()) // self.world_size
