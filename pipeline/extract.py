"""Run a front-end once over a list of audio files, with progress, clean errors and optional skipping.

Audio is read in DataLoader workers; a bad file is reported back as a value rather than raised inside the
worker, so the user sees one line naming the file instead of a worker traceback.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from data.audio import SAMPLE_RATE, AudioError, crop_even, crop_first, load_audio

EmbedFn = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class CropSpec:
    """How an utterance becomes model input: 'first' N samples (repeat-padded), 'full', or 'even' = `count` crops averaged."""
    policy: str = "first"
    samples: int = 64600
    count: int = 1

    def __post_init__(self) -> None:
        if self.policy not in ("first", "full", "even"):
            raise ValueError(f"crop policy {self.policy!r}: choose 'first', 'full' or 'even'")


@dataclass
class Extracted:
    ids: list[str]
    arrays: dict[str, np.ndarray]
    skipped: list[str] = field(default_factory=list)  # "UTT: reason" for files skipped on request

    @property
    def skipped_ids(self) -> list[str]:
        return [s.split(": ", 1)[0] for s in self.skipped]


@dataclass(frozen=True)
class InputFloor:
    """The shortest input a model accepts (its `min_samples`), checked per file where the audio is read, so
    that a too-short file is named (and skippable with skip_bad_audio) instead of failing inside the model."""
    samples: int = 1
    model: str = "the model"

    @classmethod
    def of(cls, model) -> "InputFloor":
        return cls(int(getattr(model, "min_samples", 1)), type(model).__name__)


def model_input(wave: np.ndarray, crop: CropSpec, floor: InputFloor = InputFloor(), path: str = "") -> np.ndarray:
    """The (crops, samples) model input of one utterance under `crop` ('first' and 'even' repeat-pad short
    audio to their length; 'full' takes the utterance as it is); AudioError when it is shorter than `floor`."""
    if crop.policy == "first":
        x = crop_first(wave, crop.samples)[None]
    elif crop.policy == "even":
        x = crop_even(wave, crop.samples, crop.count)
    else:
        x = wave[None]
    if x.shape[1] < floor.samples:
        raise AudioError(f"{path}: {len(wave)} samples ({len(wave) / SAMPLE_RATE:.3f} s) after loading; {floor.model} "
                         f"needs at least {floor.samples} ({floor.samples / SAMPLE_RATE:.3f} s) per input")
    return x


class _AudioItems(Dataset):
    def __init__(self, items: Sequence[tuple[str, str]], crop: CropSpec, floor: InputFloor):
        self.items, self.crop, self.floor = items, crop, floor

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        utt, path = self.items[i]
        try:
            x = model_input(load_audio(path), self.crop, self.floor, path)
        except AudioError as e:
            return utt, None, str(e)
        return utt, torch.from_numpy(np.ascontiguousarray(x)), None


def _collate(batch):
    return batch


def extract(items: Sequence[tuple[str, str | os.PathLike]], embed_fn: EmbedFn, crop: CropSpec, *,
            batch_size: int = 16, num_workers: int = 0, desc: str = "embedding",
            skip_bad_audio: bool = False, floor: InputFloor = InputFloor()) -> Extracted:
    """Applies `embed_fn` ((B, T) waveforms -> named (B, ...) outputs) to every (utt, path); crops are averaged.

    A file that cannot be read, or is shorter than the model's `floor` (InputFloor.of(model)), stops the run
    with its name, or is skipped and listed when `skip_bad_audio`.
    """
    items = [(u, str(p)) for u, p in items]
    if crop.policy == "full":
        batch_size = 1  # utterances differ in length; no padding that would change the embedding
    loader = DataLoader(_AudioItems(items, crop, floor), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_collate, shuffle=False)
    ids: list[str] = []
    chunks: dict[str, list[np.ndarray]] = {}
    skipped: list[str] = []
    with torch.inference_mode(), tqdm(total=len(items), desc=desc, unit="utt", file=sys.stderr,
                                      disable=None, leave=False) as bar:
        for batch in loader:
            good = []
            for utt, wave, error in batch:
                if error is None:
                    good.append((utt, wave))
                elif skip_bad_audio:
                    skipped.append(f"{utt}: {error}")
                else:
                    raise AudioError(error)
            if good:
                waves = torch.cat([w for _, w in good])          # (sum of crops, T)
                per_utt = [w.shape[0] for _, w in good]
                out = embed_fn(waves)
                for name, value in out.items():
                    value = value.float()
                    means = [v.mean(0) for v in torch.split(value, per_utt)]
                    chunks.setdefault(name, []).append(torch.stack(means).cpu().numpy())
                ids.extend(u for u, _ in good)
            bar.update(len(batch))
    arrays = {k: np.concatenate(v) for k, v in chunks.items()}
    if skipped:
        print(f"{desc}: skipped {len(skipped)} unreadable file(s), first: {skipped[0]}", file=sys.stderr)
    return Extracted(ids, arrays, skipped)
