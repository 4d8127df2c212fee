"""SASV training trials drawn from a CM protocol: the sampling schemes, the sampler, and the datasets on
waveforms (joint training) and on cached embeddings (frozen back-ends).

Randomness is a pure function of (seed, epoch): an epoch's trial list comes from
`np.random.default_rng([seed, epoch])` and an item's crop from `data.datasets.item_rng`, so results do
not depend on the number of DataLoader workers. Call `set_epoch(epoch)` before each epoch's iterator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from data.asvspoof import CMEntry, check_files_exist, utterances_by_speaker
from data.audio import AASIST_EVAL_SAMPLES
from data.databases import Database
from data.datasets import Augment, PathLike, item_rng, wave_tensor
from data.embeddings import EmbeddingSource, as_table
from data.trial_kinds import NONTARGET, SPOOF, TARGET

NONTARGET_SPOOF = "nontarget_spoof"   # a training-only kind: a spoof of another speaker than the claimed one
TRIAL_KINDS = (TARGET, NONTARGET, SPOOF, NONTARGET_SPOOF)


# scheme -> ((kind, proportion, label), ...)
#   2class: label 1 = target, 0 = nontarget or spoof (SASV 2022 Baseline2 / binary SASV back-ends)
#   4class: 0 = target, 1 = zero-effort nontarget, 2 = spoof of the claimed speaker,
#           3 = nontarget-spoof (spoof of another speaker); `target_label` gives each scheme's target label
TRIAL_SCHEMES: dict[str, tuple[tuple[str, float, int], ...]] = {
    "2class": ((TARGET, 0.5, 1), (NONTARGET, 0.25, 0), (SPOOF, 0.25, 0)),
    "4class": ((TARGET, 0.25, 0), (NONTARGET, 0.25, 1), (SPOOF, 0.25, 2), (NONTARGET_SPOOF, 0.25, 3)),
}


def target_label(scheme: str) -> int:
    """The label a scheme gives target trials (the SASV positive class)."""
    return next(label for kind, _, label in TRIAL_SCHEMES[scheme] if kind == TARGET)


@dataclass(frozen=True, slots=True)
class TrialDraw:
    """One sampled training trial: claimed speaker, enrolment utt (bona fide), test utt, kind and label."""

    speaker: str
    enrol: str
    test: str
    kind: str
    label: int


class SASVTrialSampler:
    """Draws (enrolment, test) training trials from per-speaker bona fide and spoof utterance lists.

    The one sampling implementation behind the waveform (joint training) and embedding (frozen back-end)
    trial datasets. Per draw: the claimed speaker is uniform over the speakers eligible for the trial kind;
    the enrolment is one of its bona fide utterances. target: another bona fide utt of the same speaker;
    nontarget: a bona fide utt of another speaker; spoof: a spoof of the claimed speaker (spoofs are
    listed under their source speaker in the CM protocol); nontarget_spoof: a spoof of another speaker.
    An epoch of n trials holds each kind in its exact proportion (remainders assigned at random), shuffled.
    """

    def __init__(self, bonafide: Mapping[str, Sequence[str]], spoof: Mapping[str, Sequence[str]],
                 scheme: str = "2class"):
        if scheme not in TRIAL_SCHEMES:
            raise ValueError(f"unknown trial scheme {scheme!r}; choose one of {', '.join(TRIAL_SCHEMES)}")
        self.scheme = scheme
        self.kinds = TRIAL_SCHEMES[scheme]
        self.bonafide = {s: list(u) for s, u in sorted(bonafide.items()) if len(u) > 0}
        self.spoof = {s: list(u) for s, u in sorted(spoof.items()) if len(u) > 0}
        self._bona_spk = list(self.bonafide)
        self._spoof_spk = list(self.spoof)
        self._spoof_pos = {s: k for k, s in enumerate(self._spoof_spk)}
        self._bona_pos = {s: k for k, s in enumerate(self._bona_spk)}
        self._pool = {
            TARGET: [s for s in self._bona_spk if len(self.bonafide[s]) >= 2],
            NONTARGET: self._bona_spk if len(self._bona_spk) >= 2 else [],
            SPOOF: [s for s in self._bona_spk if s in self.spoof],
            NONTARGET_SPOOF: [s for s in self._bona_spk if len(self._spoof_spk) - (s in self.spoof) >= 1],
        }
        for kind, _, _ in self.kinds:
            if not self._pool[kind]:
                raise ValueError(f"cannot draw {kind!r} trials from {len(self._bona_spk)} speakers with bona fide "
                                 f"and {len(self._spoof_spk)} with spoof utterances")

    @classmethod
    def from_cm_entries(cls, entries: Sequence[CMEntry], scheme: str = "2class") -> "SASVTrialSampler":
        """From a CM protocol (normally the ASVspoof 2019 LA train list)."""
        bona, spoof = utterances_by_speaker(entries)
        return cls(bona, spoof, scheme)

    def utterances(self) -> list[str]:
        """Every utterance a trial may use."""
        return [u for utts in self.bonafide.values() for u in utts] + [u for utts in self.spoof.values() for u in utts]

    @staticmethod
    def _other(rng: np.random.Generator, pool: list[str], pos: dict[str, int], exclude: str) -> str:
        k = pos.get(exclude)
        if k is None:
            return pool[int(rng.integers(len(pool)))]
        j = int(rng.integers(len(pool) - 1))
        return pool[j + (j >= k)]

    def _draw(self, rng: np.random.Generator, kind: str, label: int) -> TrialDraw:
        pool = self._pool[kind]
        spk = pool[int(rng.integers(len(pool)))]
        utts = self.bonafide[spk]
        if kind == TARGET:
            i = int(rng.integers(len(utts)))
            j = int(rng.integers(len(utts) - 1))
            return TrialDraw(spk, utts[i], utts[j + (j >= i)], kind, label)
        enrol = utts[int(rng.integers(len(utts)))]
        if kind == NONTARGET:
            other = self.bonafide[self._other(rng, self._bona_spk, self._bona_pos, spk)]
        elif kind == SPOOF:
            other = self.spoof[spk]
        else:  # NONTARGET_SPOOF
            other = self.spoof[self._other(rng, self._spoof_spk, self._spoof_pos, spk)]
        return TrialDraw(spk, enrol, other[int(rng.integers(len(other)))], kind, label)

    def sample(self, n: int, rng: np.random.Generator) -> list[TrialDraw]:
        """n trials with the scheme's exact proportions, in random order."""
        probs = np.array([p for _, p, _ in self.kinds])
        counts = np.floor(probs * n).astype(int)
        rest = n - int(counts.sum())
        if rest:
            counts[rng.choice(len(probs), size=rest, replace=False, p=probs / probs.sum())] += 1
        order = rng.permutation(np.repeat(np.arange(len(probs)), counts))
        return [self._draw(rng, self.kinds[k][0], self.kinds[k][2]) for k in order.tolist()]

    def epoch_trials(self, n: int, seed: int, epoch: int) -> list[TrialDraw]:
        """The trials of one epoch: a pure function of (seed, epoch)."""
        return self.sample(n, np.random.default_rng([int(seed), int(epoch)]))


class _TrialEpoch(Dataset):
    sampler: SASVTrialSampler
    epoch_length: int
    seed: int

    def set_epoch(self, epoch: int) -> None:
        """Draws the epoch's trials (and selects its crops)."""
        self.epoch = int(epoch)
        self.trials = self.sampler.epoch_trials(self.epoch_length, self.seed, self.epoch)

    def __len__(self) -> int:
        return self.epoch_length


class SASVWaveTrialDataset(_TrialEpoch):
    """Joint training on waveforms: item i is (enrolment wave (enrol_samples,), test wave (n_samples,), label).

    `paths` maps every utterance of the sampler to its audio file."""

    def __init__(self, sampler: SASVTrialSampler, paths: Mapping[str, PathLike], epoch_length: int,
                 n_samples: int = AASIST_EVAL_SAMPLES, enrol_samples: int | None = None,
                 crop_policy: str = "random", seed: int = 0, augment: Augment | None = None):
        missing = [u for u in sampler.utterances() if u not in paths]
        if missing:
            raise ValueError(f"{len(missing)} trial utterances have no audio path, e.g. {missing[0]}")
        if epoch_length < 1:
            raise ValueError(f"epoch_length must be >= 1, got {epoch_length}")
        self.sampler, self.paths, self.epoch_length = sampler, paths, int(epoch_length)
        self.n_samples, self.enrol_samples = n_samples, enrol_samples or n_samples
        self.crop_policy, self.seed, self.augment = crop_policy, int(seed), augment
        self.set_epoch(0)

    @classmethod
    def from_database(cls, db: Database, scheme: str = "2class", split: str = "train",
                      epoch_length: int | None = None, **kwargs) -> "SASVWaveTrialDataset":
        """Trials from a split's CM protocol (default: train); epoch length defaults to the protocol size."""
        entries = db.cm_entries(split)
        paths = {e.utt: db.audio(split, e.utt) for e in entries}
        check_files_exist(paths.values(), f"audio of {db.cm_protocol_path(split)}")
        sampler = SASVTrialSampler.from_cm_entries(entries, scheme)
        return cls(sampler, paths, epoch_length or len(entries), **kwargs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        t = self.trials[i]
        rng = item_rng(self.seed, self.epoch, i)
        enrol = wave_tensor(self.paths[t.enrol], self.crop_policy, self.enrol_samples, rng, self.augment)
        test = wave_tensor(self.paths[t.test], self.crop_policy, self.n_samples, rng, self.augment)
        return enrol, test, t.label


class SASVEmbeddingTrialDataset(_TrialEpoch):
    """Frozen back-ends on cached embeddings: item i is
    (enrolment ASV emb, test ASV emb, test CM emb, label), float32 tensors and an int."""

    def __init__(self, sampler: SASVTrialSampler, asv: EmbeddingSource, cm: EmbeddingSource,
                 epoch_length: int, seed: int = 0):
        self.asv, self.cm = as_table(asv), as_table(cm)
        utts = sampler.utterances()
        self.asv.require(utts, "the SASV training trials (ASV)")
        self.cm.require(utts, "the SASV training trials (CM)")
        if epoch_length < 1:
            raise ValueError(f"epoch_length must be >= 1, got {epoch_length}")
        self.sampler, self.epoch_length, self.seed = sampler, int(epoch_length), int(seed)
        self.set_epoch(0)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        t = self.trials[i]
        return (torch.from_numpy(self.asv[t.enrol]), torch.from_numpy(self.asv[t.test]),
                torch.from_numpy(self.cm[t.test]), t.label)


def baseline2_train_dataset(entries: Sequence[CMEntry], asv: EmbeddingSource, cm: EmbeddingSource,
                            seed: int = 0, epoch_length: int = 0) -> SASVEmbeddingTrialDataset:
    """The SASV 2022 Baseline2 training set: 2-class trials (50 % target, 25 % zero-effort nontarget,
    25 % spoof of the claimed speaker; label 1 = target) drawn from the train CM protocol's speakers, one
    epoch as long as the number of CM embeddings (the baseline's `len(cm_embd)`) unless `epoch_length` > 0;
    here seeded per epoch. On a small train set the published epoch is a few batches: the baseline's
    200 epochs over 25,380 embeddings draw ~5 M trials, 10 epochs over 500 draw 5,000."""
    cm_table = as_table(cm)
    sampler = SASVTrialSampler.from_cm_entries(entries, "2class")
    return SASVEmbeddingTrialDataset(sampler, asv, cm_table, epoch_length=epoch_length or len(cm_table), seed=seed)
