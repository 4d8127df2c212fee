"""The synthetic corpus in the ASVspoof 5 layout: `generate_corpus.py --layout asvspoof5` (data/asvspoof5.py reads it).

Same voices, attacks and rendering as the ASVspoof 2019 LA layout (synthetic/layout.py), written with the official
names: audio `ASVspoof5/flac_{T,D,E_eval}/{T,D,E}_0000000000.flac`, speakers `T_0001`-style, the final protocol
names under `ASVspoof5/ASVspoof5_protocols/`. Like the real corpus:
- train, dev and eval have their own speakers (genders alternate) and attacks: A01-A08, A09-A16, A17-A32, each a
  stand-in rendered by one of the synthetic attack systems (ATTACK_SYSTEM);
- every speaker has bona fide speech; spoofs imitate the enrolled speakers (train: all speakers);
- dev and eval enrol some speakers with 1-3 files that are in no Track 1 list; the Track 2 trials are every bona
  fide utterance of an enrolled speaker (target), every spoof (spoof), and claims of other speakers' bona fide
  utterances by enrolled speakers of the same gender (nontarget) up to the preset's trial count;
- eval also holds coded copies (CODEC, CODEC_Q, CODEC_SEED) made by the real encoders of the conditions this
  machine has (synthetic/codecs.py); their sources are uncoded eval utterances of the same kind, and they are
  trials like their sources. The manifest records which conditions were made and why not the others.
Presets: `tiny` (tests, seconds), `default` (the demo), `scale` (the official counts on 0.25-0.4 s audio, for
bench/scale.py; about a million files).

`audio_pool=N` (for dry runs at full counts) renders at most N recordings and N coded copies a split folder, evenly
spread over its list, and makes every other file a hard link to the rendered one before it: the protocols, names and
counts are the full corpus's, the audio is N distinct files a folder. Generating the `scale` preset that way takes
minutes instead of about two CPU hours. The manifest records the pool, so a pooled corpus never passes for a full one.
A linked coded copy holds the audio (and codec) of the copy it links to: the lists' conditions are not the audio's.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from common.errors import InputError

from . import attacks as A
from . import codecs
from .layout import (
    MANIFEST,
    files_identity,
    finalize,
    manifest_problem,
    prepare_output,
    render_all,
    write_audio,
    write_texts,
)
from .plan import Job
from .voice import sample_voice

log = logging.getLogger(__name__)

VERSION = 1
TOP = "ASVspoof5"                          # the database folder under the output folder
PROTOCOLS = f"{TOP}/ASVspoof5_protocols"
SPLITS = ("train", "dev", "eval")
FOLDER = {"train": "flac_T", "dev": "flac_D", "eval": "flac_E_eval"}
PREFIX = {"train": "T_", "dev": "D_", "eval": "E_"}
ATTACKS = {"train": tuple(f"A{i:02d}" for i in range(1, 9)), "dev": tuple(f"A{i:02d}" for i in range(9, 17)),
           "eval": tuple(f"A{i:02d}" for i in range(17, 33))}
# ASVspoof 5 attack label -> the synthetic system that renders it: train and dev systems of the kinds the LA
# train set has, dev ones not in train; eval adds the unseen kinds (sinusoidal, Griffin-Lim, band-limited, ...).
ATTACK_SYSTEM = dict(zip([a for s in SPLITS for a in ATTACKS[s]], (
    "A01", "A02", "A03", "A04", "A05", "A06", "A10", "A12",                     # train A01-A08
    "A07", "A08", "A09", "A11", "A13", "A14", "A15", "A17",                     # dev A09-A16
    "A07", "A08", "A09", "A10", "A11", "A12", "A13", "A14", "A15", "A16", "A17", "A18", "A19",
    "A01", "A03", "A05"), strict=True))                                         # eval A17-A32
# RNG domains (second element of every seed sequence), apart from synthetic/layout.py's 1-8
_D_SPK, _D_VOICE, _D_IDS, _D_BONA, _D_SPOOF, _D_CLAIMS, _D_ENROL = range(101, 108)


@dataclass(frozen=True)
class SplitCounts:
    """What one split holds, counted as the official lists count it."""
    speakers: int                  # speakers (dev/eval: enrolled and others)
    bonafide: int                  # bona fide Track 1 utterances, coded copies included
    spoofs: int                    # spoofed Track 1 utterances, coded copies included
    coded: int = 0                 # coded copies among them (eval)
    enrolled: int = 0              # dev/eval: enrolled speakers
    enrol_files: int = 0           # dev/eval: their enrolment files (not in the Track 1 list)
    trials: int = 0                # dev/eval: Track 2 trials


@dataclass(frozen=True)
class Preset:
    """An ASVspoof 5 layout size: per-split counts and the utterance duration range in seconds."""
    name: str
    train: SplitCounts
    dev: SplitCounts
    eval: SplitCounts
    min_dur: float = 1.5
    max_dur: float = 2.4

    def __post_init__(self) -> None:
        for split in SPLITS:
            c: SplitCounts = getattr(self, split)
            where = f"asvspoof5 preset {self.name!r}: {split}"
            if any(not isinstance(getattr(c, f.name), int) or getattr(c, f.name) < 0 for f in fields(c)):
                raise ValueError(f"{where}: counts must be non-negative integers, got {c}")
            if c.speakers < 2 or c.bonafide - _coded(c)[0] < c.speakers or c.spoofs < 1:
                raise ValueError(f"{where}: needs >= 2 speakers, an uncoded bona fide utterance each, and spoofs")
            if split == "train" and (c.enrolled or c.enrol_files or c.trials or c.coded):
                raise ValueError(f"{where}: train has no enrolment, trials or coded copies")
            if split != "train" and not (2 <= c.enrolled <= c.speakers - 2 and c.enrol_files >= c.enrolled):
                raise ValueError(f"{where}: needs 2 <= enrolled <= speakers - 2 (one unenrolled speaker a gender) "
                                 f"and an enrolment file per enrolled speaker")
        if not 0.2 <= self.min_dur <= self.max_dur:
            raise ValueError(f"asvspoof5 preset {self.name!r}: need 0.2 <= min_dur <= max_dur")


def _coded(c: SplitCounts) -> tuple[int, int]:
    """(coded bona fide, coded spoofs): the copies split in proportion to the two kinds."""
    bona = round(c.coded * c.bonafide / (c.bonafide + c.spoofs)) if c.coded else 0
    return bona, c.coded - bona


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", SplitCounts(4, 8, 8),
                   SplitCounts(6, 12, 8, enrolled=4, enrol_files=7, trials=26),
                   SplitCounts(6, 14, 22, coded=10, enrolled=4, enrol_files=7, trials=44), min_dur=1.0, max_dur=1.5),
    "default": Preset("default", SplitCounts(20, 300, 288),
                      SplitCounts(14, 140, 240, enrolled=10, enrol_files=28, trials=600),
                      SplitCounts(16, 200, 384, coded=200, enrolled=12, enrol_files=34, trials=900)),
    # The official counts (database README; the bona fide / spoof split of each list and eval's 509,172 coded
    # copies as tallied from the released lists) with 0.25-0.4 s audio: for bench/scale.py.
    "scale": Preset("scale", SplitCounts(400, 18_797, 163_560),
                    SplitCounts(785, 31_334, 109_616, enrolled=398, enrol_files=1_184, trials=282_456),
                    SplitCounts(737, 138_688, 542_086, coded=509_172, enrolled=367, enrol_files=1_098,
                                trials=834_536), min_dur=0.25, max_dur=0.4),
}


def get_preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown asvspoof5 preset {preset!r}; choose one of {', '.join(PRESETS)} or pass a Preset")
    return PRESETS[preset]


def scaled(preset: str | Preset, fraction: float) -> Preset:
    """The preset with its utterances, coded copies and trials times `fraction`, its speakers and enrolment as they
    are (as `synthetic.presets.scaled` does for LA): a run at a fraction of the size shows how each stage grows
    with files and trials. A split keeps at least one uncoded bona fide utterance per speaker (the layout's
    minimum), so below about f = 0.025 (`scale`: dev's 785 speakers over its 31,334 bona fide utterances) the
    bona fide counts stop shrinking. Below f = 0.022 the `scale` train split has one bona fide utterance a speaker,
    too few for SASV training trials (a target trial pairs two of a speaker's): main.py task sasv refuses it."""
    p = get_preset(preset)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")

    def shrink(c: SplitCounts) -> SplitCounts:
        def n(v: int) -> int:
            return max(1, round(v * fraction)) if v else 0
        out = replace(c, bonafide=n(c.bonafide), spoofs=n(c.spoofs), coded=n(c.coded), trials=n(c.trials))
        while out.bonafide - _coded(out)[0] < out.speakers:     # one uncoded bona fide utterance a speaker
            out = replace(out, bonafide=out.bonafide + 1)
        return out

    return replace(p, name=f"{p.name}x{fraction:g}", train=shrink(p.train), dev=shrink(p.dev), eval=shrink(p.eval))


@dataclass(frozen=True)
class CodedJob:
    """One coded copy: the uncoded source file, the condition and its quality."""
    path: str
    source: str
    codec: str
    quality: int


@dataclass
class Plan:
    """Everything but the audio."""
    voices: list
    jobs: list[Job]
    coded: list[CodedJob]
    texts: dict[str, list[str]]


def plan(preset: Preset, seed: int, made: tuple[str, ...]) -> Plan:
    """Speakers, files, lists; `made`: the codec conditions coded copies are spread over."""
    out = Plan([], [], [], {})
    n_spk = sum(getattr(preset, s).speakers for s in SPLITS)
    numbers = np.random.default_rng([seed, _D_SPK]).choice(10_000, size=n_spk, replace=False).tolist()
    for si, split in enumerate(SPLITS):
        c: SplitCounts = getattr(preset, split)
        if c.coded and not made:
            raise InputError(f"asvspoof5 preset {preset.name!r}: eval needs {c.coded} coded copies, but no codec "
                             f"condition can be made here: {codecs.available()[1]}")
        _plan_split(out, split, si, c, seed, [f"{PREFIX[split]}{numbers.pop():04d}" for _ in range(c.speakers)],
                    made)
    return out


def _plan_split(out: Plan, split: str, si: int, c: SplitCounts, seed: int, speakers: list[str],
                made: tuple[str, ...]) -> None:
    genders = ["F" if j % 2 == 0 else "M" for j in range(len(speakers))]
    voice = []
    for j, g in enumerate(genders):
        rng = np.random.default_rng([seed, _D_VOICE, si, j])
        out.voices.append(sample_voice(rng, "female" if g == "F" else "male"))
        voice.append(len(out.voices) - 1)
    coded_b, coded_s = _coded(c)
    n_files = c.bonafide + c.spoofs + c.enrol_files
    ids = np.random.default_rng([seed, _D_IDS, si]).permutation(n_files).tolist()
    next_id = iter(f"{PREFIX[split]}{i:010d}" for i in ids)
    folder = f"{TOP}/{FOLDER[split]}"
    job = dict(channel_strength=0.7, snr_range=(18.0, 40.0))     # crowdsourced: a channel per recording
    rows: list[tuple] = []                                          # (utt, j, codec, q, seed utt, attack, key)
    bona = []
    for k in range(c.bonafide - coded_b):
        j, utt, key = k % len(speakers), next(next_id), (seed, _D_BONA, si, k)
        out.jobs.append(Job(f"{folder}/{utt}.flac", key, voice[j], None, None, (*key, 1), **job))
        rows.append((utt, j, "-", "-", "-", "bonafide", "bonafide"))
        bona.append(len(rows) - 1)
    targets = c.enrolled if split != "train" else len(speakers)      # spoofs imitate these speakers
    attacks = ATTACKS[split]
    spoofs = []
    for k in range(c.spoofs - coded_s):
        j, utt, key = k % targets, next(next_id), (seed, _D_SPOOF, si, k)
        system = A.get_attack(ATTACK_SYSTEM[attacks[k % len(attacks)]])
        source = None
        if system.method == "filter":      # another speaker's natural speech, converted
            o = int(np.random.default_rng(key).integers(len(speakers) - 1))
            source = voice[o + (o >= j)]
        out.jobs.append(Job(f"{folder}/{utt}.flac", key, voice[j], system.name, source, (*key, 1), **job))
        rows.append((utt, j, "-", "-", "-", attacks[k % len(attacks)], "spoof"))
        spoofs.append(len(rows) - 1)
    for n, pool in ((coded_b, bona), (coded_s, spoofs)):
        for k in range(n):
            src = rows[pool[k % len(pool)]]
            label, quality, utt = made[k % len(made)], (k // len(made)) % 5 + 1, next(next_id)
            out.coded.append(CodedJob(f"{folder}/{utt}.flac", f"{folder}/{src[0]}.flac", label, quality))
            rows.append((utt, src[1], label, str(quality), src[0], src[5], src[6]))
    tags = {a: f"AC{i % 3 + 1}" for i, a in enumerate(attacks)}
    name = "ASVspoof5.train.tsv" if split == "train" else f"ASVspoof5.{split}.track_1.tsv"
    out.texts[f"{PROTOCOLS}/{name}"] = [
        f"{speakers[j]} {utt} {genders[j]} {codec} {q} {src} {tags.get(attack, '-')} {attack} {key} -"
        for utt, j, codec, q, src, attack, key in sorted(rows)]
    if split == "train":
        return
    enrol: dict[int, list[str]] = {}
    for k in range(c.enrol_files):
        j, utt, key = k % c.enrolled, next(next_id), (seed, _D_ENROL, si, k)
        out.jobs.append(Job(f"{folder}/{utt}.flac", key, voice[j], None, None, (*key, 1), **job))
        enrol.setdefault(j, []).append(utt)
    out.texts[f"{PROTOCOLS}/ASVspoof5.{split}.track_2.enroll.tsv"] = [
        f"{speakers[j]} {','.join(utts)}" for j, utts in sorted(enrol.items())]
    trials = {(j, utt): (attack if key == "spoof" else "bonafide", "spoof" if key == "spoof" else "target")
              for utt, j, _, _, _, attack, key in rows if j < c.enrolled}
    need = c.trials - len(trials)
    if need < 0:
        raise ValueError(f"asvspoof5 {split}: {c.trials} trials are fewer than the {len(trials)} target and spoof "
                         f"trials the utterances make")
    bona_rows = [r for r in rows if r[6] == "bonafide"]
    rng = np.random.default_rng([seed, _D_CLAIMS, si])
    same = {g: [j for j in range(c.enrolled) if genders[j] == g] for g in ("F", "M")}
    possible = sum(len(same[genders[r[1]]]) - (r[1] < c.enrolled) for r in bona_rows)
    if need > possible:
        raise ValueError(f"asvspoof5 {split}: {c.trials} trials need {need} nontarget claims, only {possible} exist")
    while need:
        draws = 2 * need + 16
        for u, w in zip(rng.integers(len(bona_rows), size=draws).tolist(), rng.random(draws).tolist(), strict=True):
            utt, owner = bona_rows[u][0], bona_rows[u][1]
            claimants = same[genders[owner]]
            j = claimants[int(w * len(claimants))]
            if j != owner and (j, utt) not in trials:
                trials[j, utt] = ("bonafide", "nontarget")
                need -= 1
                if not need:
                    break
    out.texts[f"{PROTOCOLS}/ASVspoof5.{split}.track_2.trial.tsv"] = [
        f"{speakers[j]} {utt} {genders[j]} {attack} {key}" for (j, utt), (attack, key) in sorted(trials.items())]


def _code_chunk(args: tuple[list[CodedJob], str, float, float]) -> int:
    jobs, root = args[0], Path(args[1])
    for job in jobs:
        audio, _ = sf.read(str(root / job.source), dtype="float32")
        write_audio(root / job.path, codecs.code(audio, job.codec, job.quality))
    return len(jobs)


# ----------------------------------------------------------------------------------------------- the corpus
def count_files(root: Path) -> dict[str, int]:
    """Audio files per split folder (the manifest's completeness check)."""
    counts = {}
    for split, name in FOLDER.items():
        d = root / TOP / name
        counts[split] = sum(1 for e in os.scandir(d) if e.name.endswith(".flac")) if d.is_dir() else 0
    return counts


def _wanted(preset: Preset, seed: int, audio_pool: int = 0) -> dict:
    # audio_pool null when every file is rendered: what a manifest from before the option reads as, too
    return {"layout": "asvspoof5", "version": VERSION, "preset": asdict(preset), "seed": seed,
            "codecs_made": list(codecs.available()[0]), "audio_pool": audio_pool or None}


def why_incomplete(out_dir: str | os.PathLike, preset: str | Preset, seed: int, audio_pool: int = 0) -> str | None:
    """Why `out_dir` does not hold this preset + seed (+ pool) as written (None: it does, and is reused)."""
    root = Path(out_dir)
    return manifest_problem(root, _wanted(get_preset(preset), seed, audio_pool), lambda: count_files(root),
                            lambda: files_identity(root, (TOP,)))


def pooled(jobs: list, pool: int) -> tuple[list, list[tuple[str, str]]]:
    """(jobs to render, (path, rendered path) links): per folder, every ceil(n / pool)-th job is rendered and the
    jobs after it up to the next one link to it, so that the rendered ones spread over the list (bona fide, spoofs,
    enrolment files, durations) as the full corpus does. pool <= 0 renders every job."""
    if pool <= 0:
        return jobs, []
    by_folder: dict[str, list] = {}
    for job in jobs:
        by_folder.setdefault(os.path.dirname(job.path), []).append(job)
    render, links = [], []
    for items in by_folder.values():
        step = -(-len(items) // pool)
        for i, job in enumerate(items):
            if i % step:
                links.append((job.path, items[i - i % step].path))
            else:
                render.append(job)
    return render, links


def _link_all(root: Path, links: list[tuple[str, str]]) -> None:
    for path, target in links:
        os.link(root / target, root / path)


@dataclass(frozen=True)
class Paths:
    root: Path
    database: Path


def generate(out_dir: str | os.PathLike, preset: str | Preset = "tiny", seed: int = 0, force: bool = False,
             workers: int | None = None, progress: bool | None = None, audio_pool: int = 0) -> Paths:
    """Writes the corpus under out_dir/ASVspoof5 unless it is already complete for this preset + seed + pool (and
    the codec conditions this machine makes). audio_pool: see the module's docstring (0: every file rendered)."""
    p = get_preset(preset)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(audio_pool, int) or audio_pool < 0:
        raise ValueError(f"audio_pool must be a non-negative integer (0: every file rendered), got {audio_pool!r}")
    paths = Paths(Path(out_dir), Path(out_dir) / TOP)
    why = None if force else why_incomplete(paths.root, p, seed, audio_pool)
    if not force and why is None:
        return paths
    if why is not None and (paths.root / MANIFEST).exists():
        log.info(f"synthetic ASVspoof 5 corpus in {paths.root}: regenerating it: {why}")
    made, not_made = codecs.available()
    todo = plan(p, seed, made)
    n = len(todo.jobs) + len(todo.coded)
    workers = workers or (min(2, os.cpu_count() or 1) if n > 300 else 1)
    progress = n > 300 if progress is None else progress
    prepare_output(paths)
    start = time.perf_counter()
    jobs, links = pooled(todo.jobs, audio_pool)
    coded, coded_links = pooled(todo.coded, audio_pool)
    render_all(jobs, todo.voices, paths.root, p, workers, progress)
    _link_all(paths.root, links)                     # before coding: a coded copy's source may be a link
    render_all(coded, [], paths.root, p, workers, progress, work=_code_chunk, desc="coded copies")
    _link_all(paths.root, coded_links)
    write_texts(paths.root, todo.texts)
    used = sorted({j.codec for j in coded})
    pool = {"distinct_recordings": len(jobs) + len(coded)} if audio_pool else {}
    record = {"generator": "synthetic", **_wanted(p, seed, audio_pool), **pool, "counts": count_files(paths.root),
              "text_files": sorted(todo.texts), "files_identity": files_identity(paths.root, (TOP,)),
              "codecs": {"made": {c: codecs.CONDITIONS[c].name for c in used},
                         "not_made": {c: why for c, why in not_made.items()}},
              "seconds": round(time.perf_counter() - start, 1)}
    finalize(paths, record)
    return paths
