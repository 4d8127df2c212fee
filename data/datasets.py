"""Torch datasets of single utterances (ASV, CM training) and of SASV trial lists (evaluation). No model code.

Cached embeddings live in data/embeddings.py, SASV training-trial sampling in data/trial_sampling.py.

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
from typing import Callable, Mapping, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from data.asvspoof import SASVTrial, check_files_exist
from data.audio import AASIST_EVAL_SAMPLES, SAMPLE_RATE, crop, load_audio
from data.databases import Database
from data.embeddings import EmbeddingSource, as_table
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


def wave_tensor(path: PathLike, policy: str, n: int | None, rng: np.random.Generator | None,
                augment: Augment | None = None, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """One training or evaluation input: the file read, cropped by `policy` (data.audio.crop), augmented."""
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
        return wave_tensor(self.paths[i], self.crop_policy, self.n_samples, rng, self.augment), int(self.labels[i])


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
    def from_database(cls, db: Database, split: str, **kwargs) -> "CMDataset":
        """All utterances of a split's CM protocol (checks the files exist first); `ids` keeps their order."""
        entries = db.cm_entries(split)
        paths = [db.audio(split, e.utt) for e in entries]
        check_files_exist(paths, f"audio of {db.cm_protocol_path(split)}")
        return cls(paths, [e.label for e in entries], ids=[e.utt for e in entries], **kwargs)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.train:
            rng = item_rng(self.seed, self.epoch, i)
            return wave_tensor(self.paths[i], "random", self.n_samples, rng, self.augment), self.labels[i]
        return wave_tensor(self.paths[i], "first", self.n_samples, None), self.labels[i]


# ================================================================================================
# SASV evaluation over a trial list
# ================================================================================================
class SASVEvalDataset(Dataset):
    """Item i of a SASV trial list: (speaker-model emb, test ASV emb, test CM emb), float32 tensors.

    `models` maps each claimed speaker to its model (e.g. `pipeline.stages.enrolment.speaker_models`);
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
        return (wave_tensor(self.enrol_paths[t.speaker], "first", self.enrol_samples, None),
                wave_tensor(self.test_paths[t.utt], "first", self.n_samples, None))
