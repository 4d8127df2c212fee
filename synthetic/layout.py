"""Plans the corpus (speakers, utterance ids, protocols) and writes it in the ASVspoof 2019 LA and VoxCeleb layouts.

Every audio file is rendered from its own RNG, `np.random.default_rng([seed, domain, ...])`, so the output is
byte-identical for the same preset and seed whatever the order or number of worker processes.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

from common.errors import InputError
from common.file_identity import identities, identities_digest
from common.io import atomic_write, write_lines, writing

from . import attacks as A
from .la_plan import plan_la_groups
from .plan import (
    CM_NAME,
    D_CLAIMS,
    D_IDS,
    D_LA_BONA,
    D_LA_SPOOF,
    D_LA_VOICE,
    D_VOX_META,
    D_VOX_UTT,
    D_VOX_VOICE,
    PREFIX,
    SPLITS,
    Job,
)
from .presets import Preset, preset_record
from .voice import Voice, finish, plan_utterance, render, sample_channel, sample_voice

SR = 16000
GENERATOR_VERSION = 2  # 2: nontarget claims per utterance, spoof-heavy dev/eval trial lists
MANIFEST = "synthetic_corpus.json"
_IN_PROGRESS = ".synthetic_corpus.incomplete"

@dataclass(frozen=True)
class CorpusPaths:
    """Where a generated corpus lives: `la` is the `database` folder, `voxceleb` the VoxCeleb root."""
    root: Path
    la: Path
    enr_audio: Path
    voxceleb: Path


def corpus_paths(out_dir: str | os.PathLike) -> CorpusPaths:
    root = Path(out_dir)
    return CorpusPaths(root=root, la=root / "LA", enr_audio=root / "LA" / "enr_audio", voxceleb=root / "VoxCeleb")


# ----------------------------------------------------------------------------------------------- planning
def plan_corpus(preset: Preset, seed: int) -> tuple[list[Voice], list[Job], dict[str, list[str]], dict]:
    """Everything but the audio: voices, render jobs, text files (relative path -> lines) and enrolment sets."""
    voices: list[Voice] = []
    jobs: list[Job] = []
    texts: dict[str, list[str]] = {}
    enrol_sets: dict = {}
    if preset.la_groups is not None:
        plan_la_groups(preset, seed, voices, jobs, texts, enrol_sets)
    else:
        _plan_la_uniform(preset, seed, voices, jobs, texts, enrol_sets)
    _plan_voxceleb(preset, seed, voices, jobs, texts)
    return voices, jobs, texts, enrol_sets


def _plan_la_uniform(preset: Preset, seed: int, voices: list[Voice], jobs: list[Job], texts: dict[str, list[str]],
                     enrol_sets: dict) -> None:
    """The LA part from the uniform per-split counts: every dev/eval speaker is enrolled and tested."""
    n_spk = {"train": preset.train_speakers, "dev": preset.dev_speakers, "eval": preset.eval_speakers}
    spk_counter = 0
    for si, split in enumerate(SPLITS):
        # Speakers of this split: LA_00nn numbered consecutively over the splits, genders alternating.
        spks = []
        for j in range(n_spk[split]):
            spk_counter += 1
            gender = ("female", "male")[j % 2]
            voices.append(sample_voice(np.random.default_rng([seed, D_LA_VOICE, spk_counter]), gender))
            spks.append((f"LA_{spk_counter:04d}", gender, len(voices) - 1))
        attacks = A.TRAIN_ATTACKS if split != "eval" else A.EVAL_ATTACKS
        n_spoofs = {"train": preset.train_spoofs, "dev": preset.dev_spoofs, "eval": preset.eval_spoofs}[split]
        n_bona = preset.train_bonafide if split == "train" else preset.enrol_utts + preset.trial_utts
        n_utts = len(spks) * n_bona + len(attacks) * n_spoofs
        ids = np.random.default_rng([seed, D_IDS, si]).choice(9_000_000, size=n_utts, replace=False) + 1_000_000
        next_id = iter(f"{PREFIX[split]}{int(i)}" for i in ids)
        folder = f"LA/ASVspoof2019_LA_{split}/flac"
        la_job = dict(channel_strength=0.35, snr_range=(30.0, 45.0))

        cm_lines: list[str] = []
        enrol: dict[str, list[str]] = {}
        trials: dict[str, list[str]] = {}
        for j, (spk, _gender, vi) in enumerate(spks):
            for k in range(n_bona):
                utt = next(next_id)
                key = (seed, D_LA_BONA, si, j, k)
                jobs.append(Job(f"{folder}/{utt}.flac", key, vi, None, None, (*key, 1), **la_job))
                if split != "train" and k < preset.enrol_utts:
                    enrol.setdefault(spk, []).append(utt)
                else:
                    trials.setdefault(spk, []).append(utt)
                    cm_lines.append(f"{spk} {utt} - - bonafide")
        spoofs: dict[str, list[tuple[str, str]]] = {}
        for ai, attack in enumerate(attacks):
            for k in range(n_spoofs):
                j = (ai + k) % len(spks)           # round-robin over target speakers
                spk, gender, vi = spks[j]
                utt = next(next_id)
                key = (seed, D_LA_SPOOF, si, ai, k)
                source = None
                if A.get_attack(attack).method == "filter":
                    others = [s for s in spks if s[0] != spk]
                    source = others[int(np.random.default_rng(key).integers(len(others)))][2]
                jobs.append(Job(f"{folder}/{utt}.flac", key, vi, attack, source, (*key, 1), **la_job))
                spoofs.setdefault(spk, []).append((utt, attack))
        for spk, _, _ in spks:
            cm_lines += [f"{spk} {utt} - {attack} spoof" for utt, attack in spoofs.get(spk, [])]
        texts[f"LA/ASVspoof2019_LA_cm_protocols/{CM_NAME[split]}"] = cm_lines
        if split == "train":
            continue

        asv = "LA/ASVspoof2019_LA_asv_protocols/ASVspoof2019.LA.asv"
        claims = _nontarget_claims(spks, trials, preset.nontarget_claims, np.random.default_rng([seed, D_CLAIMS, si]))
        trl: list[str] = []
        for spk, _gender, _ in spks:
            trl += [f"{spk} {utt} bonafide target" for utt in trials[spk]]
            trl += [f"{spk} {utt} bonafide nontarget" for utt in claims[spk]]
            trl += [f"{spk} {utt} {attack} spoof" for utt, attack in spoofs.get(spk, [])]
        texts[f"{asv}.{split}.gi.trl.txt"] = trl
        for g in ("female", "male"):
            texts[f"{asv}.{split}.{g}.trn.txt"] = [
                f"{spk} {','.join(sorted(enrol[spk]))}" for spk, gender, _ in spks if gender == g]
        texts[f"{asv}.{split}.gi.trn.txt"] = [f"{spk} {spk}_{min(enrol[spk])}" for spk, _, _ in spks]
        enrol_sets[split] = {spk: (folder, sorted(enrol[spk])) for spk, _, _ in spks}


def _nontarget_claims(spks: list[tuple[str, str, int]], trials: dict[str, list[str]], per_utt: int,
                      rng: np.random.Generator) -> dict[str, list[str]]:
    """Claimed speaker -> the bona fide test utterances it claims as nontarget trials: each utterance is claimed
    by `per_utt` other speakers of its gender, drawn at random (all of them when fewer). Few claims per
    utterance keep the trial list spoof-heavy like the real one (eval: 33,327 nontarget vs 63,882 spoof
    trials), so SASV-EER weighs spoof rejection as the challenge does instead of being mostly SV-EER."""
    claims: dict[str, list[str]] = {spk: [] for spk, _, _ in spks}
    for owner, gender, _ in spks:
        others = [spk for spk, g, _ in spks if g == gender and spk != owner]
        for utt in trials[owner]:
            for k in rng.permutation(len(others))[:per_utt]:
                claims[others[k]].append(utt)
    return claims


_VIDEO_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def _plan_voxceleb(preset: Preset, seed: int, voices: list[Voice], jobs: list[Job], texts: dict) -> None:
    """VoxCeleb layout: training speakers id0nnnn with train_list.txt, held-out id1nnnn speakers in veri_test.txt."""
    meta = np.random.default_rng([seed, D_VOX_META])
    train_ids = sorted(int(i) for i in meta.choice(np.arange(10, 10000), size=preset.vox_train_speakers, replace=False))
    names = [f"id{i:05d}" for i in train_ids] + [f"id{10270 + i:05d}" for i in range(preset.vox_test_speakers)]
    train_list: list[str] = []
    test_files: list[tuple[int, str]] = []
    for s, spk in enumerate(names):
        is_test = s >= preset.vox_train_speakers
        voices.append(sample_voice(np.random.default_rng([seed, D_VOX_VOICE, s]), ("female", "male")[s % 2]))
        vi = len(voices) - 1
        n_utts = preset.vox_test_utts if is_test else preset.vox_utts
        n_vid = max(1, min(preset.vox_videos, n_utts))
        videos = ["".join(meta.choice(_VIDEO_CHARS, size=11)) for _ in range(n_vid)]
        counters = [0] * n_vid
        for k in range(n_utts):
            v = k % n_vid
            counters[v] += 1
            rel = f"{spk}/{videos[v]}/{counters[v]:05d}.wav"
            jobs.append(Job(f"VoxCeleb/wav/{rel}", (seed, D_VOX_UTT, s, k), vi, None, None,
                            (seed, D_VOX_UTT, s, 100_000 + v), channel_strength=1.0, snr_range=(12.0, 30.0)))
            if is_test:
                test_files.append((s, rel))
            else:
                train_list.append(f"{spk} {rel}")
    # Verification pairs over the held-out speakers: every same-speaker pair and as many different-speaker pairs.
    same = [(a[1], b[1]) for i, a in enumerate(test_files) for b in test_files[i + 1:] if a[0] == b[0]]
    diff_all = [(a[1], b[1]) for i, a in enumerate(test_files) for b in test_files[i + 1:] if a[0] != b[0]]
    pick = meta.choice(len(diff_all), size=min(len(same), len(diff_all)), replace=False)
    lines = [f"1 {a} {b}" for a, b in same] + [f"0 {diff_all[i][0]} {diff_all[i][1]}" for i in sorted(pick)]
    order = meta.permutation(len(lines))
    texts["VoxCeleb/train_list.txt"] = train_list
    texts["VoxCeleb/veri_test.txt"] = [lines[i] for i in order]


# ----------------------------------------------------------------------------------------------- rendering
_VOICES: list[Voice] = []


def _init_worker(voices: list[Voice]) -> None:
    global _VOICES
    _VOICES = voices


def render_job(job: Job, voices: list[Voice], root: Path, min_dur: float, max_dur: float) -> None:
    """Renders one job and writes it (FLAC or WAV by extension, PCM_16), atomically."""
    rng = np.random.default_rng(list(job.key))
    crng = np.random.default_rng(list(job.channel_key))
    channel = sample_channel(crng, job.channel_strength)
    snr = float(crng.uniform(*job.snr_range)) + float(rng.normal(0, 2.0))
    duration = float(rng.uniform(min_dur, max_dur))
    voice = voices[job.voice]
    bits = None
    if job.attack is None:
        x = render(plan_utterance(rng, duration, voice.rate), voice, rng, channel_db=channel)
    else:
        source = voices[job.source] if job.source is not None else None
        x, bits = A.synthesize_spoof(A.get_attack(job.attack), voice, rng, duration, channel, source)
    audio = finish(x, rng, snr_db=snr, peak=float(rng.uniform(0.25, 0.7)), mu_law_bits=bits)
    write_audio(root / job.path, audio)


def write_audio(path: Path, audio: np.ndarray) -> None:
    """PCM_16 FLAC or WAV (by extension), written beside and renamed into place.

    Unlike `common.io.atomic_write` this skips the per-file fsync (4 ms each, a tenth of the generation time);
    `finalize` syncs once before the manifest, which alone marks the corpus complete. The file is encoded in
    memory and written with one call: libsndfile's FLAC encoder writing to a file spent ~4 ms per file closing
    it (a third of the time for short utterances) and 0.2 ms into memory, with the same bytes.
    """
    fmt = "FLAC" if path.suffix == ".flac" else "WAV"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    buffer = io.BytesIO()
    sf.write(buffer, audio, SR, subtype="PCM_16", format=fmt)
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _run_chunk(args: tuple[list[Job], str, float, float]) -> int:
    jobs, root, lo, hi = args
    for job in jobs:
        render_job(job, _VOICES, Path(root), lo, hi)
    return len(jobs)


def render_all(jobs: list, voices: list[Voice], root: Path, preset, workers: int, progress: bool,
               work: Callable[[tuple], int] | None = None, desc: str = "synthetic corpus") -> None:
    """Renders every job, in `workers` processes when > 1 (output does not depend on it). `work((jobs, root,
    min_dur, max_dur))` does a chunk of them (default: render `Job`s); `preset` needs `min_dur` and `max_dur`."""
    work = work or _run_chunk
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc=desc, unit="file")
    chunks = [jobs[i:i + 16] for i in range(0, len(jobs), 16)]
    if workers <= 1:
        _init_worker(voices)
        for chunk in chunks:
            work((chunk, str(root), preset.min_dur, preset.max_dur))
            if bar is not None:
                bar.update(len(chunk))
    else:
        # fork: workers need no re-import of the caller's main module (scripts without a __main__ guard work);
        # they only use numpy/scipy/soundfile, so forking a process that imported torch is harmless.
        ctx = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(voices,))
        try:
            for done in pool.map(work, [(c, str(root), preset.min_dur, preset.max_dur) for c in chunks]):
                if bar is not None:
                    bar.update(done)
        finally:   # on an error (a full disk), the chunks not yet started are dropped instead of rendered in vain
            pool.shutdown(wait=True, cancel_futures=True)
    if bar is not None:
        bar.close()


def write_enrolment_audio(enrol_sets: dict, paths: CorpusPaths) -> None:
    """enr_audio/{dev,eval}/SPK_UTT.flac: each speaker's enrolment utterances concatenated (joint-optimisation form)."""
    for split, speakers in enrol_sets.items():
        for spk, (folder, utts) in speakers.items():
            parts = [sf.read(str(paths.root / folder / f"{u}.flac"), dtype="float32")[0] for u in utts]
            write_audio(paths.enr_audio / split / f"{spk}_{utts[0]}.flac", np.concatenate(parts))


# ----------------------------------------------------------------------------------------------- manifest
def count_files(root: Path) -> dict[str, int]:
    """Audio files per folder group under the corpus root (the manifest's completeness check)."""
    counts: dict[str, int] = {}
    for split in SPLITS:
        d = root / "LA" / f"ASVspoof2019_LA_{split}" / "flac"
        counts[f"LA/{split}"] = sum(1 for e in os.scandir(d) if e.name.endswith(".flac")) if d.is_dir() else 0
    for split in ("dev", "eval"):
        d = root / "LA" / "enr_audio" / split
        counts[f"enr_audio/{split}"] = sum(1 for e in os.scandir(d) if e.name.endswith(".flac")) if d.is_dir() else 0
    d = root / "VoxCeleb" / "wav"
    counts["VoxCeleb"] = sum(len([f for f in fs if f.endswith(".wav")]) for _, _, fs in os.walk(d)) if d.is_dir() else 0
    return counts


def files_identity(root: Path, tops: Sequence[str] = ("LA", "VoxCeleb")) -> str:
    """One digest of every file under the corpus's folders `tops` (LA/ and VoxCeleb/): its path and identity (size,
    modification and change time, inode; common/file_identity.py). It changes when any file is added, removed,
    rewritten or replaced, even by one of the same size with its modification time copied back (`touch -r`)."""
    rels = sorted(os.path.relpath(os.path.join(folder, name), root)
                  for top in tops for folder, _, names in os.walk(root / top) for name in names)
    return identities_digest(rels, identities(root / rel for rel in rels))


def manifest_record(preset: Preset, seed: int, counts: dict[str, int], texts: dict[str, list[str]],
                    identity: str) -> dict:
    return {"generator": "synthetic", "version": GENERATOR_VERSION, "preset": preset_record(preset), "seed": seed,
            "counts": counts, "text_files": sorted(texts), "files_identity": identity}


def why_incomplete(paths: CorpusPaths, preset: Preset, seed: int) -> str | None:
    """Why the output is not this preset + seed as the generator wrote it (None: it is, and can be reused)."""
    wanted = {"version": GENERATOR_VERSION, "preset": preset_record(preset), "seed": seed}
    return manifest_problem(paths.root, wanted, lambda: count_files(paths.root), lambda: files_identity(paths.root))


def manifest_problem(root: Path, wanted: dict, counts: Callable[[], dict], identity: Callable[[], str]) -> str | None:
    """Why `root`'s manifest does not record `wanted` (generator version, preset, seed, layout ...) and the files
    now there (`counts()`, `identity()`, computed only when the rest agrees); None when it does. Every layout the
    generator writes follows this one rule."""
    try:
        m = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return "no manifest: never generated, or interrupted"
    if not isinstance(m, dict):
        return f"{MANIFEST} is not a manifest"
    if any(m.get(key) != value for key, value in wanted.items()):
        return "generated with another layout, preset, seed or generator version"
    missing = [t for t in m.get("text_files", []) if not (root / t).is_file()]
    if missing:
        return f"{missing[0]} is missing"
    if counts() != m.get("counts"):
        return "audio files were added or removed since it was written"
    if m.get("files_identity") != identity():
        return ("files changed since it was written (rewritten, replaced, or their permissions or links changed; "
                "a copied corpus has new inodes too)" if "files_identity" in m
                else "its manifest predates file identities")
    return None


def is_complete(paths: CorpusPaths, preset: Preset, seed: int) -> bool:
    """True when the manifest says this preset + seed was fully written and its files are still the ones written."""
    return why_incomplete(paths, preset, seed) is None


# every top folder a layout of the generator writes: regenerating any layout clears them all (one corpus a folder)
CORPUS_FOLDERS = ("LA", "VoxCeleb", "ASVspoof5")


def prepare_output(paths) -> None:
    """Clears a previous (possibly partial) synthetic corpus of any layout under `paths.root`; refuses to touch
    folders it did not write."""
    ours = (paths.root / MANIFEST).exists() or (paths.root / _IN_PROGRESS).exists()
    existing = [paths.root / name for name in CORPUS_FOLDERS if (paths.root / name).exists()]
    if existing and not ours:
        raise InputError(f"{existing[0]}: exists and was not written by the synthetic generator; "
                         f"choose another output folder or remove it")
    with atomic_write(paths.root / _IN_PROGRESS) as f:   # first: a read-only or full output stops before rendering
        f.write("generation started; the corpus is incomplete until synthetic_corpus.json exists\n")
    with writing(paths.root):
        (paths.root / MANIFEST).unlink(missing_ok=True)
        for p in existing:
            shutil.rmtree(p)


def finalize(paths, record: dict) -> None:
    """Writes the manifest (after one sync), which alone marks the corpus under `paths.root` complete."""
    os.sync()  # audio files were not fsynced one by one: make them durable before the manifest says "complete"
    with atomic_write(paths.root / MANIFEST) as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write("\n")
    with writing(paths.root / _IN_PROGRESS):
        (paths.root / _IN_PROGRESS).unlink(missing_ok=True)


def write_texts(root: Path, texts: dict[str, list[str]]) -> None:
    for rel, lines in texts.items():
        write_lines(root / rel, lines)
