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
    """Yields lists of B*M dataset indices (B = `speakers_per_batch`, M = `utts_per_speaker`), speaker-major:
    `[s0u0 .. s0u(M-1), s1u0, ..]`.

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
        self.speakers_per_batch, self.utts_per_speaker = int(speakers_per_batch), int(utts_per_speaker)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.max_utts_per_speaker = max_utts_per_speaker
        self.epoch = 0
        self._cache: tuple[int, np.ndarray] | None = None
        _, codes, counts = np.unique(self.labels, return_inverse=True, return_counts=True)
        # speakers as dense codes in label order; 16-bit codes let the per-epoch stable sort be a radix sort
        self._codes = codes.reshape(-1).astype(np.uint16 if len(counts) <= 1 << 16 else np.int64)
        eligible = counts >= self.utts_per_speaker
        if int(eligible.sum()) < self.speakers_per_batch:
            raise ValueError(f"only {int(eligible.sum())} speakers have >= {self.utts_per_speaker} utterances; "
                             f"a batch needs {self.speakers_per_batch} distinct speakers")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def all_batches(self) -> np.ndarray:
        """The epoch's batches, (n_batches, speakers_per_batch * utts_per_speaker) dataset indices, all ranks;
        cached per epoch.

        Linear in the number of utterances: grouping by speaker is one stable (radix) argsort of 16-bit speaker
        codes, and only the packing of groups into batches is a Python loop, once per group. (At VoxCeleb2 size,
        1.09 M utterances, the earlier dict-of-lists build per utterance took ~20 s, 13x its time at a
        quarter of the size; docs/benchmarks.md.)"""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        per_speaker, per_batch = self.utts_per_speaker, self.speakers_per_batch
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.labels))
        # Each speaker's utterances in shuffled order, speakers ascending (stable sort keeps the shuffle).
        by_speaker = order[np.argsort(self._codes[order], kind="stable")]
        speaker = self._codes[by_speaker]
        starts = np.flatnonzero(np.r_[True, speaker[1:] != speaker[:-1]])
        counts = np.diff(np.r_[starts, len(speaker)])
        kept = counts if self.max_utts_per_speaker is None else np.minimum(counts, self.max_utts_per_speaker)
        usable = kept - kept % per_speaker              # a remainder < utts_per_speaker is left out this epoch
        take = np.arange(len(speaker)) - np.repeat(starts, counts) < np.repeat(usable, counts)
        groups = by_speaker[take].reshape(-1, per_speaker)  # (n_groups, utts_per_speaker): one speaker's utterances
        group_speaker = speaker[take][::per_speaker]
        shuffle = rng.permutation(len(groups))
        groups, group_speaker = groups[shuffle], group_speaker[shuffle]
        packed = _pack(group_speaker.tolist(), per_batch)
        packed = packed[:len(packed) - len(packed) % self.world_size]
        rows = np.asarray(packed, dtype=np.int64).reshape(len(packed), per_batch)
        batches = groups[rows].reshape(len(packed), per_batch * per_speaker)
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.all_batches()[self.rank::self.world_size]:
            yield batch.tolist()

    def __len__(self) -> int:
        return len(self.all_batches()) // self.world_size


def _pack(speakers: list[int], size: int) -> list[list[int]]:
    """Packs groups (given by their speakers, in order) into batches of `size` distinct speakers: a group whose
    speaker is already in the open batch is deferred and retried, in order, as soon as that batch closes.
    Returns each batch as group positions. The retry pass visits every deferred group, which stays cheap
    because few are deferred at a time (VoxCeleb2, 200 speakers a batch: at most ~15 of 0.5-1 M groups);
    a list where one speaker holds a large share of all utterances defers most of its groups every batch:
    cap it with `max_utts_per_speaker`."""
    batches: list[list[int]] = []
    open_batch: list[int] = []           # group positions of the batch being filled
    in_batch: set[int] = set()           # and their speakers
    deferred: list[tuple[int, int]] = []  # (group, speaker) that clashed with the open batch

    def add(group: int, speaker: int) -> bool:
        """Puts a group in the open batch; closes the batch when it is full. True when it closed."""
        nonlocal open_batch, in_batch
        open_batch.append(group)
        in_batch.add(speaker)
        if len(open_batch) < size:
            return False
        batches.append(open_batch)
        open_batch, in_batch = [], set()
        return True

    for group, speaker in enumerate(speakers):
        if speaker in in_batch:
            deferred.append((group, speaker))
        elif add(group, speaker):
            # retry deferred groups first: they only clashed with the batch just closed
            waiting, deferred = deferred, []
            for d_group, d_speaker in waiting:
                if d_speaker in in_batch:
                    deferred.append((d_group, d_speaker))
                else:
                    add(d_group, d_speaker)
    return batches


class SASVPairSampler(Sampler[list[int]]):
    """Batches of the single-embedding SASV loss (asv.losses.sasv_e2e): `bona_pairs` pairs of bona fide
    utterances of as many distinct speakers, then `spoof_pairs` pairs of spoofed utterances, each pair two
    spoofs (random attacks) that claim the same speaker, chosen among the batch's speakers. Indices are
    pair-major: `[b0u0, b0u1, b1u0, ..., s0u0, s0u1, ...]`, so `wave.view(P, 2, T)` gives the loss's layout.

    Why spoofs of the batch's own speakers: the prototypical term then meets, for a speaker, the spoofs that
    claim that speaker, the negatives a SASV trial list tests. A batch none of whose speakers has two spoofs
    (a speaker without copies) draws from any speaker that has them.

    `speakers[i]`: speaker code of item i (the claimed speaker of a spoof), `spoof[i]`: whether it is spoofed.
    The bona fide pairs are `SpeakerBatchSampler` batches (M = 2) of the bona fide items, so an epoch is one
    pass over them; the spoof pairs of batch b are drawn from `default_rng([seed, epoch, b])`. Batches are
    split between ranks as SpeakerBatchSampler does; call `set_epoch` before each epoch.
    """

    def __init__(self, speakers: Sequence[int], spoof: Sequence[bool], bona_pairs: int, spoof_pairs: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1, max_utts_per_speaker: int | None = None):
        speakers, spoof = np.asarray(speakers, dtype=np.int64), np.asarray(spoof, dtype=bool)
        if speakers.shape != spoof.shape or speakers.ndim != 1:
            raise ValueError(f"speakers {speakers.shape} and spoof {spoof.shape} must be flat and of equal length")
        if spoof_pairs < 0:
            raise ValueError(f"spoof_pairs must be >= 0, got {spoof_pairs}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.bona_index = np.flatnonzero(~spoof)
        self.bona = SpeakerBatchSampler(speakers[self.bona_index], bona_pairs, 2, seed=seed,
                                        max_utts_per_speaker=max_utts_per_speaker)
        self.spoof_pairs, self.seed, self.rank, self.world_size = int(spoof_pairs), int(seed), int(rank), world_size
        spoof_index = np.flatnonzero(spoof)
        order = spoof_index[np.argsort(speakers[spoof_index], kind="stable")]
        claimed, starts = np.unique(speakers[order], return_index=True)
        groups = np.split(order, starts[1:]) if len(order) else []
        self.pools = {int(s): pool for s, pool in zip(claimed, groups, strict=True) if len(pool) >= 2}
        if self.spoof_pairs and not self.pools:
            raise ValueError(f"spoof_pairs is {spoof_pairs}, but no speaker is claimed by two or more spoofed "
                             f"utterances ({len(spoof_index)} spoofed utterances in all)")
        self._speakers = speakers
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.bona.set_epoch(epoch)

    def _batch(self, number: int, bona_positions: np.ndarray) -> list[int]:
        bona = self.bona_index[bona_positions]
        if not self.spoof_pairs:
            return bona.tolist()
        rng = np.random.default_rng([self.seed, self.epoch, number])
        in_batch = [s for s in dict.fromkeys(self._speakers[bona[::2]].tolist()) if s in self.pools]
        choices = in_batch or sorted(self.pools)
        claimed = rng.choice(choices, size=self.spoof_pairs, replace=len(choices) < self.spoof_pairs)
        pairs = [rng.choice(self.pools[int(s)], size=2, replace=False) for s in claimed]
        return bona.tolist() + np.concatenate(pairs).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.bona.all_batches()
        usable = len(batches) - len(batches) % self.world_size
        for number in range(self.rank, usable, self.world_size):
            yield self._batch(number, batches[number])

    def __len__(self) -> int:
        return len(self.bona) // self.world_size
