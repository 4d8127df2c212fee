"""Speaker embedding extraction for evaluation and cosine scoring of trials.

Two extraction modes: the full utterance in one forward pass (ECAPA-TDNN recipe), or N evenly spaced fixed-length
crops whose L2-normalised embeddings are averaged (voxceleb_trainer's evaluation: 10 crops of `eval_frames` frames;
short utterances are wrap-padded first). Embeddings are returned L2-normalised, so a cosine score is a dot product.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asv.features import HOP_LENGTH, WIN_LENGTH
from common.errors import InputError
from data.audio import crop_even
from metrics.eer import roc_eer


def eval_samples(frames: int) -> int:
    """Samples in a crop of `frames` 10 ms frames (voxceleb_trainer: frames * 160 + 240)."""
    return frames * HOP_LENGTH + (WIN_LENGTH - HOP_LENGTH)


def _as_numpy(wave: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise InputError(f"expected a non-empty 1-D waveform, got shape {wave.shape}")
    return wave


@torch.inference_mode()
def extract_embeddings(model: nn.Module, waves: Iterable[np.ndarray | torch.Tensor], num_crops: int = 0,
                       eval_frames: int = 300, device: Optional[torch.device | str] = None) -> torch.Tensor:
    """(N, D) L2-normalised embeddings of 1-D 16 kHz waveforms, on the CPU.

    num_crops=0: each whole utterance in one pass. num_crops=k: k evenly spaced crops of `eval_frames` frames
    (batched in one pass per utterance), their normalised embeddings averaged and renormalised.
    The model runs in eval mode (restored afterwards) under torch.inference_mode().
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        rows = []
        for wave in waves:
            wave = _as_numpy(wave)
            if num_crops > 0:
                batch = torch.from_numpy(crop_even(wave, eval_samples(eval_frames), num_crops))
            else:
                batch = torch.from_numpy(wave).unsqueeze(0)
            emb = F.normalize(model(batch.to(device)).float(), dim=1)
            rows.append(F.normalize(emb.mean(dim=0), dim=0).cpu())
    finally:
        model.train(was_training)
    if not rows:
        return torch.empty(0, model.embedding_dim)
    return torch.stack(rows)


def cosine_scores(enrol: torch.Tensor | np.ndarray, test: torch.Tensor | np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) embedding sets (normalised here, so raw embeddings are fine)."""
    enrol = F.normalize(torch.as_tensor(np.asarray(enrol), dtype=torch.float32), dim=-1)
    test = F.normalize(torch.as_tensor(np.asarray(test), dtype=torch.float32), dim=-1)
    if enrol.shape != test.shape:
        raise InputError(f"cosine_scores: enrolment {tuple(enrol.shape)} and test {tuple(test.shape)} shapes differ")
    return (enrol * test).sum(dim=-1).numpy()


def score_trials(embeddings: Mapping[str, np.ndarray | torch.Tensor],
                 trials: Sequence[tuple[str, str]], source: str = "embeddings") -> np.ndarray:
    """Cosine score per (enrolment id, test id) trial; an id without an embedding is a one-line error.
    Enrolment ids may name a speaker model (e.g. an averaged enrolment embedding) as long as it is a key."""
    missing = sorted({i for pair in trials for i in pair if i not in embeddings})
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise InputError(f"{source}: no embedding for {len(missing)} trial ids ({shown})")
    if not trials:
        return np.zeros(0, dtype=np.float32)
    enrol = np.stack([np.asarray(embeddings[a], dtype=np.float32) for a, _ in trials])
    test = np.stack([np.asarray(embeddings[b], dtype=np.float32) for _, b in trials])
    return cosine_scores(enrol, test)


def trial_eer(scores: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """EER (fraction) of target (label 1) vs non-target (label 0) trial scores, SASV 2022 ROC convention."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.shape != labels.shape:
        raise InputError(f"trial_eer: {scores.size} scores but {labels.size} labels")
    return roc_eer(scores[labels == 1], scores[labels == 0]).eer
