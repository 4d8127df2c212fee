"""Corpus sizes. `tiny` is for unit tests (seconds); `default` is for the end-to-end CPU demo (under a minute)."""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Preset:
    """How big each part of the synthetic corpus is. Dev/eval speakers alternate female/male."""
    name: str
    train_speakers: int = 20
    dev_speakers: int = 10
    eval_speakers: int = 12
    train_bonafide: int = 15          # bona fide utterances per train speaker
    enrol_utts: int = 4               # enrolment utterances per dev/eval speaker (not CM trials)
    trial_utts: int = 8               # bona fide test utterances per dev/eval speaker
    nontarget_claims: int = 2         # same-gender speakers claiming each bona fide test utterance (nontarget trials)
    train_spoofs: int = 36            # spoofs per attack system in train
    dev_spoofs: int = 40              # spoofs per attack system in dev
    eval_spoofs: int = 24             # spoofs per attack system in eval
    min_dur: float = 1.5              # utterance duration range in seconds
    max_dur: float = 2.4
    vox_train_speakers: int = 60
    vox_test_speakers: int = 8        # held-out speakers of veri_test.txt
    vox_utts: int = 10                # utterances per VoxCeleb training speaker
    vox_test_utts: int = 6            # utterances per VoxCeleb test speaker
    vox_videos: int = 3               # sessions (videos) per VoxCeleb speaker, each with its own channel

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name != "name" and (not isinstance(v, (int, float)) or v <= 0):
                raise ValueError(f"preset {self.name!r}: {f.name} must be a positive number, got {v!r}")
        for split in ("dev_speakers", "eval_speakers"):
            if getattr(self, split) < 4:
                raise ValueError(f"preset {self.name!r}: {split} must be >= 4 (two per gender for nontarget trials)")
        if self.train_speakers < 2 or self.vox_test_speakers < 2:
            raise ValueError(f"preset {self.name!r}: train_speakers and vox_test_speakers must be >= 2")
        if self.vox_test_utts < 2 or self.min_dur > self.max_dur or self.min_dur < 0.5:
            raise ValueError(f"preset {self.name!r}: need vox_test_utts >= 2 and 0.5 <= min_dur <= max_dur")


PRESETS: dict[str, Preset] = {
    "tiny": Preset(name="tiny", train_speakers=4, dev_speakers=4, eval_speakers=4, train_bonafide=4, enrol_utts=2,
                   trial_utts=2, nontarget_claims=1, train_spoofs=2, dev_spoofs=2, eval_spoofs=1, min_dur=1.0, max_dur=1.5,
                   vox_train_speakers=6, vox_test_speakers=2, vox_utts=3, vox_test_utts=3, vox_videos=2),
    "default": Preset(name="default"),
}


def get_preset(preset: str | Preset) -> Preset:
    """A preset by name ('tiny' or 'default'), or a custom `Preset` passed through."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)} or pass a Preset")
    return PRESETS[preset]
