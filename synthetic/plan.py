"""What a corpus plan is made of, shared by the planners (`layout`: the uniform LA plan and VoxCeleb, `la_plan`: LA by
speaker groups): the splits and their ASVspoof 2019 LA names, the RNG domains that keep every file's randomness its
own, and the `Job` that describes one file to render. It lives apart so that the planners import it, not each other.
"""
from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "dev", "eval")
PREFIX = {"train": "LA_T_", "dev": "LA_D_", "eval": "LA_E_"}      # utterance id prefix per split
CM_NAME = {"train": "ASVspoof2019.LA.cm.train.trn.txt", "dev": "ASVspoof2019.LA.cm.dev.trl.txt",
           "eval": "ASVspoof2019.LA.cm.eval.trl.txt"}
# RNG domains: the second element of every seed sequence, so that no two kinds of draw share a stream.
D_LA_VOICE, D_LA_BONA, D_LA_SPOOF, D_VOX_VOICE, D_VOX_UTT, D_IDS, D_VOX_META, D_CLAIMS = range(1, 9)


@dataclass(frozen=True)
class Job:
    """One audio file to render."""
    path: str                      # relative to the output root
    key: tuple[int, ...]           # RNG seed sequence
    voice: int                     # index into the job list's voices
    attack: str | None             # None = bona fide
    source: int | None             # voice index of a conversion source ('filter' attacks)
    channel_key: tuple[int, ...]   # RNG for the recording channel (shared by a VoxCeleb video)
    channel_strength: float
    snr_range: tuple[float, float]
