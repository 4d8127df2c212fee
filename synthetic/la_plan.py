"""Plans the LA part of a preset given as speaker groups (`Preset.la_groups`): the structure of the real lists.

In the official ASVspoof 2019 LA dev/eval lists each enrolled speaker has its own number of target trials and
spoofs per attack (by gender), and its nontarget trials are every bona fide utterance of a few speakers who are
never enrolled, of the same gender. Planning per speaker group reproduces those counts exactly (the `scale`
preset), which a uniform "N claims per utterance" model cannot.

Like the uniform plan, every file gets its own RNG key, ids are unique random 7-digit numbers per split, and
the work is linear in the number of files: nothing here scans a list per utterance.
"""
from __future__ import annotations

import numpy as np

from . import attacks as A
from .plan import CM_NAME, D_CLAIMS, D_IDS, D_LA_BONA, D_LA_SPOOF, D_LA_VOICE, PREFIX, SPLITS, Job
from .presets import Preset, SpeakerGroup
from .voice import Voice, sample_voice

_ASV = "LA/ASVspoof2019_LA_asv_protocols/ASVspoof2019.LA.asv"
_LA_JOB = dict(channel_strength=0.35, snr_range=(30.0, 45.0))


def split_files(groups: tuple[SpeakerGroup, ...], n_attacks: int) -> int:
    """Audio files of one split: enrolment and bona fide test speech, spoofs, the nontarget speakers' speech."""
    return sum(g.speakers * (g.enrol_utts + g.bonafide + n_attacks * g.spoofs_per_attack)
               + g.nontarget_speakers * g.nontarget_utts for g in groups)


def plan_la_groups(preset: Preset, seed: int, voices: list[Voice], jobs: list[Job], texts: dict[str, list[str]],
                   enrol_sets: dict) -> None:
    """Appends the LA voices and render jobs, and fills the LA protocol texts and enrolment sets."""
    assert preset.la_groups is not None
    counter = 0
    for si, split in enumerate(SPLITS):
        groups: tuple[SpeakerGroup, ...] = getattr(preset.la_groups, split)
        attacks = A.EVAL_ATTACKS if split == "eval" else A.TRAIN_ATTACKS
        # Speakers LA_00nn numbered on from the previous split: each group's enrolled (or training) speakers,
        # then its nontarget speakers. Entries: (speaker id, voice index, group index, enrolled).
        speakers: list[tuple[str, int, int, bool]] = []
        for gi, g in enumerate(groups):
            for enrolled, n in ((True, g.speakers), (False, g.nontarget_speakers)):
                for _ in range(n):
                    counter += 1
                    voices.append(sample_voice(np.random.default_rng([seed, D_LA_VOICE, counter]), g.gender))
                    speakers.append((f"LA_{counter:04d}", len(voices) - 1, gi, enrolled))
        n_files = split_files(groups, len(attacks))
        ids = np.random.default_rng([seed, D_IDS, si]).choice(9_000_000, size=n_files, replace=False) + 1_000_000
        next_id = iter(f"{PREFIX[split]}{int(i)}" for i in ids.tolist())
        folder = f"LA/ASVspoof2019_LA_{split}/flac"

        cm_lines: list[str] = []
        enrol: dict[str, list[str]] = {}
        tests: dict[str, list[str]] = {}      # bona fide CM utterances per speaker
        spoofs: dict[str, list[tuple[str, str]]] = {}   # (utt, attack) per claimed (= source) speaker
        for j, (spk, vi, gi, enrolled) in enumerate(speakers):
            g = groups[gi]
            n_enrol = g.enrol_utts if enrolled else 0
            n_bona = n_enrol + (g.bonafide if enrolled else g.nontarget_utts)
            for k in range(n_bona):
                utt = next(next_id)
                key = (seed, D_LA_BONA, si, j, k)
                jobs.append(Job(f"{folder}/{utt}.flac", key, vi, None, None, (*key, 1), **_LA_JOB))
                (enrol if k < n_enrol else tests).setdefault(spk, []).append(utt)
            cm_lines += [f"{spk} {utt} - - bonafide" for utt in tests[spk]]
            if not enrolled:
                continue
            for ai, attack in enumerate(attacks):
                is_filter = A.get_attack(attack).method == "filter"
                for k in range(g.spoofs_per_attack):
                    utt = next(next_id)
                    key = (seed, D_LA_SPOOF, si, ai, j, k)
                    source = None
                    if is_filter:  # another speaker of the split, whose natural speech is converted
                        o = int(np.random.default_rng(key).integers(len(speakers) - 1))
                        source = speakers[o + (o >= j)][1]
                    jobs.append(Job(f"{folder}/{utt}.flac", key, vi, attack, source, (*key, 1), **_LA_JOB))
                    spoofs.setdefault(spk, []).append((utt, attack))
            cm_lines += [f"{spk} {utt} - {attack} spoof" for utt, attack in spoofs[spk]]
        texts[f"LA/ASVspoof2019_LA_cm_protocols/{CM_NAME[split]}"] = cm_lines
        if split != "train":
            _trial_texts(split, si, seed, groups, speakers, enrol, tests, spoofs, texts)
            enrol_sets[split] = {spk: (folder, sorted(enrol[spk])) for spk, _, _, on in speakers if on}


def _trial_texts(split: str, si: int, seed: int, groups: tuple[SpeakerGroup, ...],
                 speakers: list[tuple[str, int, int, bool]], enrol: dict[str, list[str]], tests: dict[str, list[str]],
                 spoofs: dict[str, list[tuple[str, str]]], texts: dict[str, list[str]]) -> None:
    """SASV trial list and enrolment lists of a dev/eval split. Each enrolled speaker claims every bona fide
    utterance of `claims` of its group's nontarget speakers, drawn at random (the real lists' structure)."""
    rng = np.random.default_rng([seed, D_CLAIMS, si])
    nontarget_of = {gi: [spk for spk, _, g, on in speakers if g == gi and not on] for gi in range(len(groups))}
    trl: list[str] = []
    for spk, _, gi, enrolled in speakers:
        if not enrolled:
            continue
        owners = nontarget_of[gi]
        trl += [f"{spk} {utt} bonafide target" for utt in tests[spk]]
        for o in sorted(rng.permutation(len(owners))[:groups[gi].claims].tolist()):
            trl += [f"{spk} {utt} bonafide nontarget" for utt in tests[owners[o]]]
        trl += [f"{spk} {utt} {attack} spoof" for utt, attack in spoofs[spk]]
    texts[f"{_ASV}.{split}.gi.trl.txt"] = trl
    for gender in ("female", "male"):
        texts[f"{_ASV}.{split}.{gender}.trn.txt"] = [
            f"{spk} {','.join(sorted(enrol[spk]))}" for spk, _, gi, on in speakers
            if on and groups[gi].gender == gender]
    texts[f"{_ASV}.{split}.gi.trn.txt"] = [f"{spk} {spk}_{min(enrol[spk])}" for spk, _, _, on in speakers if on]
