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

from data.audio import AudioError, crop_even, crop_first, load_audio

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


def model_input(wave: np.ndarray, crop: CropSpec) -> np.ndarray:
    """The (crops, T) float32 model input of one decoded utterance under `crop`."""
    if crop.policy == "first":
        x = crop_first(wave, crop.samples)[None]
    elif crop.policy == "even":
        x = crop_even(wave, crop.samples, crop.count)
    else:
        x = wave[None]
    return np.ascontiguousarray(x, dtype=np.float32)


@dataclass
class Extracted:
    ids: list[str]
    arrays: dict[str, np.ndarray]
    skipped: list[str] = field(default_factory=list)  # "UTT: reason" for files skipped on request


class _AudioItems(Dataset):
    def __init__(self, items: Sequence[tuple[str, str]], crop: CropSpec, min_samples: int):
        self.items, self.crop, self.min_samples = items, crop, min_samples

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        utt, path = self.items[i]
        try:
            x = load_audio(path, min_samples=self.min_samples)
        except AudioError as e:
            return utt, None, str(e)
        return utt, torch.from_numpy(model_input(x, self.crop)), None


def _collate(batch):
    return batch


def extract(items: Sequence[tuple[str, str | os.PathLike]], embed_fn: EmbedFn, crop: CropSpec, *,
            batch_size: int = 16, num_workers: int = 0, desc: str = "embedding",
            skip_bad_audio: bool = False, min_samples: int = 160) -> Extracted:
    """Applies `embed_fn` ((B, T) waveforms -> named (B, ...) outputs) to every (utt, path); crops are averaged.

    A file that cannot be read stops the run with its name, or is skipped and listed when `skip_bad_audio`.
    """
    items = [(u, str(p)) for u, p in items]
    if crop.policy == "full":
        batch_size = 1  # utterances differ in length; no padding that would change the embedding
    loader = DataLoader(_AudioItems(items, crop, min_samples), batch_size=batch_size, num_workers=num_workers,
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
