"""Corpus sizes. `tiny` is for unit tests (seconds); `default` is for the end-to-end CPU demo (under a minute);
`scale` has the utterance, speaker and trial counts of the real ASVspoof 2019 LA lists with very short audio,
for dry runs of the pipeline at real size (bench/scale.py)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

GENDERS = ("female", "male")


@dataclass(frozen=True)
class SpeakerGroup:
    """Speakers of one gender in one LA split, counted per speaker the way the real protocols are built.

    The real dev/eval lists are not "every enrolled speaker claims every other": each split also has speakers who
    are never enrolled, and an enrolled speaker's nontarget trials are *all* bona fide utterances of a few of
    them. Counting per speaker is what lets a preset reproduce the official trial counts exactly.
    """
    gender: str                    # 'female' | 'male'
    speakers: int                  # train: training speakers; dev/eval: enrolled speakers
    bonafide: int                  # bona fide utterances per speaker (dev/eval: target trials, besides enrolment)
    spoofs_per_attack: int         # spoofs per attack system per speaker (dev/eval: spoof trials of that speaker)
    enrol_utts: int = 0            # dev/eval: enrolment utterances per enrolled speaker (not CM trials)
    nontarget_speakers: int = 0    # dev/eval: speakers never enrolled, whose bona fide speech is nontarget trials
    nontarget_utts: int = 0        # bona fide utterances per such speaker (all of them CM trials)
    claims: int = 0                # nontarget speakers each enrolled speaker is tested against (all their utts)

    def check(self, where: str, enrolled: bool) -> None:
        """Raises ValueError naming `where` when the group cannot give the trials its split needs."""
        if self.gender not in GENDERS:
            raise ValueError(f"{where}: gender must be 'female' or 'male', got {self.gender!r}")
        counts = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "gender"}
        bad = [k for k, v in counts.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0]
        if bad:
            raise ValueError(f"{where}: {bad[0]} must be a non-negative integer, got {counts[bad[0]]!r}")
        if self.speakers < 1 or self.bonafide < 1 or self.spoofs_per_attack < 1:
            raise ValueError(f"{where}: speakers, bonafide and spoofs_per_attack must be >= 1")
        extra = ("enrol_utts", "nontarget_speakers", "nontarget_utts", "claims")
        if enrolled:
            if self.enrol_utts < 1 or self.nontarget_utts < 1 or not 1 <= self.claims <= self.nontarget_speakers:
                raise ValueError(f"{where}: needs enrol_utts >= 1, nontarget_utts >= 1 and "
                                 f"1 <= claims <= nontarget_speakers ({self.nontarget_speakers}), got {counts}")
        elif any(counts[k] for k in extra):
            raise ValueError(f"{where}: train speakers are not enrolled; {', '.join(extra)} must be 0")


@dataclass(frozen=True)
class LAGroups:
    """The LA part of a preset as speaker groups per split (replaces the uniform per-split counts of `Preset`)."""
    train: tuple[SpeakerGroup, ...]
    dev: tuple[SpeakerGroup, ...]
    eval: tuple[SpeakerGroup, ...]

    def check(self, preset: str) -> None:
        for split in ("train", "dev", "eval"):
            groups = getattr(self, split)
            if not isinstance(groups, tuple) or not groups or not all(isinstance(g, SpeakerGroup) for g in groups):
                raise ValueError(f"preset {preset!r}: la_groups.{split} must be a non-empty tuple of SpeakerGroup")
            for i, g in enumerate(groups):
                g.check(f"preset {preset!r}: la_groups.{split}[{i}]", enrolled=split != "train")
        if sum(g.speakers for g in self.train) < 2:
            raise ValueError(f"preset {preset!r}: la_groups.train needs >= 2 speakers (the score-normalisation cohort)")


@dataclass(frozen=True)
class Preset:
    """How big each part of the synthetic corpus is. Dev/eval speakers alternate female/male.

    With `la_groups` set, the LA part is planned from those groups and the uniform LA counts below
    (train_speakers ... eval_spoofs) are not used; the VoxCeleb counts and durations still are."""
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
    la_groups: LAGroups | None = None  # per-gender speaker groups per split (the `scale` preset); None: uniform counts

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in ("name", "la_groups") and (not isinstance(v, (int, float)) or v <= 0):
                raise ValueError(f"preset {self.name!r}: {f.name} must be a positive number, got {v!r}")
        for split in ("dev_speakers", "eval_speakers"):
            if getattr(self, split) < 4:
                raise ValueError(f"preset {self.name!r}: {split} must be >= 4 (two per gender for nontarget trials)")
        if self.train_speakers < 2 or self.vox_test_speakers < 2:
            raise ValueError(f"preset {self.name!r}: train_speakers and vox_test_speakers must be >= 2")
        # 0.2 s: 3200 samples, above every front-end's minimum input (LCNN 2400 samples, ResNet/ECAPA 400)
        if self.vox_test_utts < 2 or self.min_dur > self.max_dur or self.min_dur < 0.2:
            raise ValueError(f"preset {self.name!r}: need vox_test_utts >= 2 and 0.2 <= min_dur <= max_dur")
        if self.la_groups is not None:
            if not isinstance(self.la_groups, LAGroups):
                raise ValueError(f"preset {self.name!r}: la_groups must be an LAGroups, "
                                 f"got {type(self.la_groups).__name__}")
            self.la_groups.check(self.name)


def preset_record(preset: Preset) -> dict[str, Any]:
    """The preset as the manifest stores it (JSON types). `la_groups` appears only when set, so the manifests of
    presets without it are the same as before the field existed (a complete corpus is not regenerated)."""
    record = asdict(preset)
    if record["la_groups"] is None:
        del record["la_groups"]
    else:
        record["la_groups"] = {split: [dict(g) for g in groups] for split, groups in record["la_groups"].items()}
    return record


def scaled(preset: Preset, fraction: float) -> Preset:
    """The preset with every per-speaker utterance count of its `la_groups` times `fraction` (at least 1):
    utterances and trials shrink in proportion while speakers, enrolment and the cohort stay, so a run at a
    fraction of the size shows how each stage grows with utterances and trials."""
    if preset.la_groups is None:
        raise ValueError(f"preset {preset.name!r} has no la_groups to scale")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")

    def shrink(g: SpeakerGroup) -> SpeakerGroup:
        def n(v: int) -> int:
            return max(1, round(v * fraction)) if v else 0
        return replace(g, bonafide=n(g.bonafide), spoofs_per_attack=n(g.spoofs_per_attack),
                       nontarget_utts=n(g.nontarget_utts))

    groups = LAGroups(*(tuple(shrink(g) for g in getattr(preset.la_groups, s)) for s in ("train", "dev", "eval")))
    return replace(preset, name=f"{preset.name}x{fraction:g}", la_groups=groups)


# ASVspoof 2019 LA, counted from the official protocol files (tests/test_synthetic.py compares the plan with them).
# Train genders are not in the protocols: the 12-speaker group is taken as female (the database paper's 12 F / 8 M).
_LA2019 = LAGroups(
    train=(SpeakerGroup("female", 12, bonafide=127, spoofs_per_attack=186),
           SpeakerGroup("male", 8, bonafide=132, spoofs_per_attack=196)),
    dev=(SpeakerGroup("female", 6, bonafide=154, spoofs_per_attack=414, enrol_utts=11, nontarget_speakers=6,
                      nontarget_utts=126, claims=6),
         SpeakerGroup("male", 4, bonafide=140, spoofs_per_attack=308, enrol_utts=19, nontarget_speakers=4,
                      nontarget_utts=77, claims=4)),
    eval=(SpeakerGroup("female", 27, bonafide=146, spoofs_per_attack=126, enrol_utts=11, nontarget_speakers=10,
                       nontarget_utts=113, claims=7),
          SpeakerGroup("male", 21, bonafide=68, spoofs_per_attack=72, enrol_utts=19, nontarget_speakers=9,
                       nontarget_utts=95, claims=6)),
)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(name="tiny", train_speakers=4, dev_speakers=4, eval_speakers=4, train_bonafide=4, enrol_utts=2,
                   trial_utts=2, nontarget_claims=1, train_spoofs=2, dev_spoofs=2, eval_spoofs=1, min_dur=1.0,
                   max_dur=1.5, vox_train_speakers=6, vox_test_speakers=2, vox_utts=3, vox_test_utts=3, vox_videos=2),
    "default": Preset(name="default"),
    # Real ASVspoof 2019 LA size (122,299 LA files, 102,579 eval trials) with 0.25-0.4 s audio; a token VoxCeleb part.
    "scale": Preset(name="scale", min_dur=0.25, max_dur=0.4, vox_train_speakers=4, vox_test_speakers=2, vox_utts=2,
                    vox_test_utts=2, vox_videos=1, la_groups=_LA2019),
}


def get_preset(preset: str | Preset) -> Preset:
    """A preset by name ('tiny', 'default' or 'scale'), or a custom `Preset` passed through."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)} or pass a Preset")
    return PRESETS[preset]
