"""Torch datasets for ASV, CM and SASV training and evaluation. No model code lives here.

Randomness is a pure function of (seed, epoch, index): an item's crop is drawn from
`np.random.default_rng([seed, epoch, index])` and a SASV epoch's trial list from
`np.random.default_rng([seed, epoch])`, so results do not depend on the number of DataLoader workers or
on which rank reads an item. Call `set_epoch(epoch)` before creating the epoch's DataLoader iterator
(workers copy the dataset when the iterator starts; do not combine with `persistent_workers=True`).

Audio errors propagate as `data.audio.AudioError` naming the file; DataLoader workers re-raise them in
the main process with the original message. Missing embeddings fail at construction, before compute.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from common.io import load_embeddings
from data.asvspoof import CMEntry, LADatabase, SASVTrial, check_files_exist, utterances_by_speaker
from data.audio import AASIST_EVAL_SAMPLES, SAMPLE_RATE, crop, crop_even, load_audio
from data.pathlist import as_path_sequence

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
PathLike = Union[str, os.PathLike]


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one item in one epoch (independent of worker count and sampling order)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class _Epoch:
    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose crops (and, for trial datasets, trials) the next iteration yields."""
        self.epoch = int(epoch)


def _wave(path: PathLike, policy: str, n: int | None, rng: np.random.Generator | None,
          augment: Augment | None = None, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    x = crop(load_audio(path, sample_rate), policy, n, rng)
    if augment is not None:
        x = augment(x, rng if rng is not None else np.random.default_rng())
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


# ================================================================================================
# Single-utterance datasets
# ================================================================================================
class SpeakerDataset(_Epoch, Dataset):
    """ASV training: item i is (wave (n_samples,) float32, speaker label int). Use with `SpeakerBatchSampler`.

    A `PathList` of paths (what `VoxCeleb.train_set` returns) is kept as it is and labels as one int64 array:
    at VoxCeleb2 size (1.09 M utterances) Python lists of them would take ~0.5 GB and be copied page by page
    into every DataLoader worker as reading items touches their reference counts."""

    def __init__(self, paths: Sequence[PathLike], labels: Sequence[int], n_samples: int = 32000,
                 crop_policy: str = "random", seed: int = 0, augment: Augment | None = None):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = as_path_sequence(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.ndim != 1:
            raise ValueError(f"labels must be a flat sequence of integers, got shape {self.labels.shape}")
        self.n_samples, self.crop_policy, self.seed, self.augment = n_samples, crop_policy, seed, augment

    @classmethod
    def from_voxceleb(cls, vox, **kwargs) -> "SpeakerDataset":
        """From a `data.voxceleb.VoxCeleb` train list (checks the files exist first)."""
        paths, labels, _ = vox.train_set(check=True)
        return cls(paths, labels, **kwargs)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = item_rng(self.seed, self.epoch, i)
        return _wave(self.paths[i], self.crop_policy, self.n_samples, rng, self.augment), int(self.labels[i])


class CMDataset(_Epoch, Dataset):
    """CM training/evaluation: item i is (wave (n_samples,) float32, label) with label 1 = bona fide, 0 = spoof.

    `train=True`: a random n-sample crop per epoch (repeat-padded when shorter); `train=False`: the first
    n samples, repeat-padded (AASIST evaluation, n = 64600)."""

    def __init__(self, paths: Sequence[PathLike], labels: Sequence[int], n_samples: int = AASIST_EVAL_SAMPLES,
                 train: bool = True, seed: int = 0, augment: Augment | None = None,
                 ids: Sequence[str] | None = None):
        if len(paths) != len(labels) or (ids is not None and len(ids) != len(paths)):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels"
                             + (f" and {len(ids)} ids" if ids is not None else ""))
        bad = [v for v in labels if v not in (0, 1)]
        if bad:
            raise ValueError(f"CM labels must be 1 (bona fide) or 0 (spoof), got {bad[0]!r}")
        self.paths, self.labels = list(paths), [int(v) for v in labels]
        self.n_samples, self.train, self.seed = n_samples, train, seed
        self.augment = augment if train else None
        self.ids = list(ids) if ids is not None else None  # utterance ids, for writing score files

    @classmethod
    def from_database(cls, db: LADatabase, split: str, **kwargs) -> "CMDataset":
        """All utterances of a split's CM protocol (checks the files exist first); `ids` keeps their order."""
        entries = db.cm_entries(split)
        paths = [db.flac(split, e.utt) for e in entries]
        check_files_exist(paths, f"audio of {db.cm_protocol_path(split)}")
        return cls(paths, [e.label for e in entries], ids=[e.utt for e in entries], **kwargs)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.train:
            rng = item_rng(self.seed, self.epoch, i)
            return _wave(self.paths[i], "random", self.n_samples, rng, self.augment), self.labels[i]
        return _wave(self.paths[i], "first", self.n_samples, None), self.labels[i]


class UtteranceDataset(Dataset):
    """Embedding extraction: item i is (wave, utterance id).

    crop_policy 'full' (variable length: batch_size=1), 'first' (n_samples, repeat-padded: AASIST) or
    'even' (`num_crops` evenly spaced n-sample windows stacked (num_crops, n): voxceleb_trainer test time)."""

    def __init__(self, paths: Sequence[PathLike], ids: Sequence[str], crop_policy: str = "full",
                 n_samples: int | None = None, num_crops: int = 10):
        if len(paths) != len(ids):
            raise ValueError(f"{len(paths)} paths but {len(ids)} ids")
        if crop_policy not in ("full", "first", "even"):
            raise ValueError(f"unknown crop policy {crop_policy!r}; choose 'full', 'first' or 'even'")
        if crop_policy != "full" and not n_samples:
            raise ValueError(f"crop policy {crop_policy!r} needs n_samples")
        self.paths, self.ids = list(paths), list(ids)
        self.crop_policy, self.n_samples, self.num_crops = crop_policy, n_samples, num_crops

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        x = load_audio(self.paths[i])
        if self.crop_policy == "even":
            x = crop_even(x, self.n_samples, self.num_crops)
        else:
            x = crop(x, self.crop_policy, self.n_samples)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), self.ids[i]


# ================================================================================================
# Cached embeddings
# ================================================================================================
class EmbeddingTable:
    """Embeddings keyed by utterance id (rows of one float32 array), e.g. from `common.io.save_embeddings`."""

    def __init__(self, ids: Sequence[str], embeddings: np.ndarray, source: str = "<memory>"):
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(ids) != len(embeddings):
            raise ValueError(f"{source}: need {len(ids)} embedding rows (2-D), got shape {embeddings.shape}")
        self.ids, self.embeddings, self.source = list(ids), embeddings, source
        self.index = {u: k for k, u in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            dup = next(u for k, u in enumerate(self.ids) if self.index[u] != k)
            raise ValueError(f"{source}: utterance id {dup} appears twice")

    @classmethod
    def load(cls, path: PathLike) -> "EmbeddingTable":
        ids, emb = load_embeddings(path)
        return cls(ids, emb, source=str(path))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, np.ndarray], source: str = "<memory>") -> "EmbeddingTable":
        ids = list(mapping)
        if not ids:
            raise ValueError(f"{source}: no embeddings")
        return cls(ids, np.stack([np.asarray(mapping[u], dtype=np.float32) for u in ids]), source)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, utt: str) -> bool:
        return utt in self.index

    def __getitem__(self, utt: str) -> np.ndarray:
        try:
            return self.embeddings[self.index[utt]]
        except KeyError:
            raise KeyError(f"{self.source}: no embedding for utterance {utt}") from None

    def require(self, ids: Sequence[str], what: str) -> None:
        """Fails (one line: count and first few ids) when any of `ids` has no embedding here."""
        missing = [u for u in dict.fromkeys(ids) if u not in self.index]
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise ValueError(f"{self.source}: {len(missing)} utterance ids needed by {what} have no embedding: {shown}")


EmbeddingSource = Union[EmbeddingTable, Mapping[str, np.ndarray], PathLike]


def as_table(source: EmbeddingSource) -> EmbeddingTable:
    """An EmbeddingTable from a table, a dict id -> vector, or a path to an embedding .npz."""
    if isinstance(source, EmbeddingTable):
        return source
    if isinstance(source, Mapping):
        return EmbeddingTable.from_mapping(source)
    return EmbeddingTable.load(source)


def speaker_models(enrolment: Mapping[str, Sequence[str]], asv: EmbeddingSource,
                   normalize: bool = False) -> dict[str, np.ndarray]:
    """Speaker -> mean of its enrolment ASV embeddings (SASV 2022 baseline speaker models).

    `normalize=True` length-normalises each embedding before averaging (for cosine back-ends)."""
    table = as_table(asv)
    table.require([u for utts in enrolment.values() for u in utts], "the enrolment lists")
    models = {}
    for spk, utts in enrolment.items():
        if not utts:
            raise ValueError(f"speaker {spk} has no enrolment utterances")
        e = np.stack([table[u] for u in utts])
        if normalize:
            e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        models[spk] = e.mean(axis=0).astype(np.float32)
    return models


# ================================================================================================
# SASV training trials
# ================================================================================================
TARGET, NONTARGET, SPOOF, NONTARGET_SPOOF = "target", "nontarget", "spoof", "nontarget_spoof"

# scheme -> ((kind, proportion, label), ...)
#   2class: label 1 = target, 0 = nontarget or spoof (SASV 2022 Baseline2 / binary SASV back-ends)
#   4class: 0 = target, 1 = zero-effort nontarget, 2 = spoof of the claimed speaker,
#           3 = nontarget-spoof (spoof of another speaker); `binary_label` maps to the 2-class labels
TRIAL_SCHEMES: dict[str, tuple[tuple[str, float, int], ...]] = {
    "2class": ((TARGET, 0.5, 1), (NONTARGET, 0.25, 0), (SPOOF, 0.25, 0)),
    "4class": ((TARGET, 0.25, 0), (NONTARGET, 0.25, 1), (SPOOF, 0.25, 2), (NONTARGET_SPOOF, 0.25, 3)),
}


def binary_label(kind: str) -> int:
    """1 for a target trial, 0 for every other kind (the SASV positive class)."""
    return 1 if kind == TARGET else 0


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
    def from_database(cls, db: LADatabase, scheme: str = "2class", split: str = "train",
                      epoch_length: int | None = None, **kwargs) -> "SASVWaveTrialDataset":
        """Trials from a split's CM protocol (default: train); epoch length defaults to the protocol size."""
        entries = db.cm_entries(split)
        paths = {e.utt: db.flac(split, e.utt) for e in entries}
        check_files_exist(paths.values(), f"audio of {db.cm_protocol_path(split)}")
        sampler = SASVTrialSampler.from_cm_entries(entries, scheme)
        return cls(sampler, paths, epoch_length or len(entries), **kwargs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        t = self.trials[i]
        rng = item_rng(self.seed, self.epoch, i)
        enrol = _wave(self.paths[t.enrol], self.crop_policy, self.enrol_samples, rng, self.augment)
        test = _wave(self.paths[t.test], self.crop_policy, self.n_samples, rng, self.augment)
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


# ================================================================================================
# SASV evaluation over a trial list
# ================================================================================================
class SASVEvalDataset(Dataset):
    """Item i of a SASV trial list: (speaker-model emb, test ASV emb, test CM emb), float32 tensors.

    `models` maps each claimed speaker to its model (e.g. `speaker_models(db.enrolment(split), asv)`);
    `trials` keeps the list (keys, attacks) for writing score files in the same order."""

    def __init__(self, trials: Sequence[SASVTrial], models: EmbeddingSource, asv: EmbeddingSource,
                 cm: EmbeddingSource):
        self.trials = list(trials)
        self.models, self.asv, self.cm = as_table(models), as_table(asv), as_table(cm)
        self.models.require([t.speaker for t in self.trials], "the SASV trial list (speaker models)")
        tests = [t.utt for t in self.trials]
        self.asv.require(tests, "the SASV trial list (ASV)")
        self.cm.require(tests, "the SASV trial list (CM)")

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self.trials[i]
        return (torch.from_numpy(self.models[t.speaker]), torch.from_numpy(self.asv[t.utt]),
                torch.from_numpy(self.cm[t.utt]))


class SASVWaveEvalDataset(Dataset):
    """Item i of a SASV trial list on audio: (enrolment wave, test wave) for jointly trained models.

    `enrol_paths` maps a claimed speaker to one enrolment recording (e.g. the concatenated `enr_audio`
    files of `LADatabase.enrolment_concat`); crops are the first n samples, repeat-padded (None: full)."""

    def __init__(self, trials: Sequence[SASVTrial], enrol_paths: Mapping[str, PathLike],
                 test_paths: Mapping[str, PathLike], n_samples: int | None = AASIST_EVAL_SAMPLES,
                 enrol_samples: int | None = None):
        self.trials = list(trials)
        for what, keys, table in (("speakers", [t.speaker for t in self.trials], enrol_paths),
                                  ("test utterances", [t.utt for t in self.trials], test_paths)):
            missing = [k for k in dict.fromkeys(keys) if k not in table]
            if missing:
                raise ValueError(f"{len(missing)} trial {what} have no audio path, e.g. {missing[0]}")
        self.enrol_paths, self.test_paths = enrol_paths, test_paths
        self.n_samples, self.enrol_samples = n_samples, enrol_samples if enrol_samples is not None else n_samples

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.trials[i]
        return (_wave(self.enrol_paths[t.speaker], "first", self.enrol_samples, None),
                _wave(self.test_paths[t.utt], "first", self.n_samples, None))
