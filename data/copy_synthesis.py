"""Copy-synthesis (SASV2 stage 2): vocoded copies of bona fide speech, a spoof class beside its own sources.

`copy_synthesize` writes `<out>/wav/<vocoder>/<source path>.wav` (16 kHz PCM_16), then
`<out>/copy_synthesis_list.txt` (`SPEAKER PATH VOCODER SOURCE`, read by `data.vocoders.read_copy_synthesis_list`)
and `copy_synthesis.json`. Resumable: a rerun makes only the copies that are missing, and again those of a source
file that changed since (`copy_synthesis_sources.npz` records each source's identity). The command:
copy_synthesis.py at the root. See docs/copy_synthesis.md.
"""
from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Container, Iterator, NamedTuple, Sequence

import numpy as np
import soundfile as sf

from common.cli import one_line
from common.errors import InputError
from common.file_identity import MISSING, describe_changes, identities
from common.folders import check_inputs_kept, check_output_path
from common.io import ArrayFile, atomic_write, read_json, save_arrays, write_json
from common.locking import hold_folders, remove_stale_temporaries
from data.asvspoof import check_files_exist
from data.audio import SAMPLE_RATE, AudioError, load_audio
from data.databases import open_database
from data.vocoders import LIST_NAME, MANIFEST_NAME, MIN_SAMPLES, VERSION, file_rng, vocode
from data.voxceleb import VoxCeleb


class Source(NamedTuple):
    """One bona fide utterance: its speaker and its path relative to the source audio root."""
    speaker: str
    rel: str


class Task(NamedTuple):
    """The copies one source still needs: (vocoder, output path relative to <out>/wav) each."""
    rel: str
    path: str
    outputs: tuple[tuple[str, str], ...]


# ----------------------------------------------------------------------------------------------- sources
def voxceleb_sources(root: Path) -> tuple[dict, list[Source]]:
    """Every line of `<root>/train_list.txt`, in list order; paths relative to `<root>/wav` (the reader refuses an
    empty list and a path that would lead outside `wav/`, so no copy is written outside `<out>/wav/<vocoder>`)."""
    vox = VoxCeleb(root)
    entries = vox.train_entries()
    described = {"kind": "voxceleb", "root": str(root.resolve()), "list": str(vox.train_list_path.resolve()),
                 "audio_root": str(vox.wav_dir.resolve())}
    return described, [Source(sys.intern(e.speaker), e.path) for e in entries]


def la_sources(root: Path, split: str) -> tuple[dict, list[Source]]:
    """The bona fide utterances of a split's CM protocol, in protocol order; paths relative to the corpus folder
    (ASVspoof 2019 LA, ASVspoof 5 or any layout of docs/datasets.md whose audio lies under it)."""
    db = open_database(root)
    described = {"kind": "la", "root": str(root.resolve()), "split": split,
                 "list": str(db.cm_protocol_path(split).resolve()), "audio_root": str(root.resolve())}
    sources = []
    for e in db.cm_entries(split):
        if e.is_bonafide:
            path = db.audio(split, e.utt)
            if not path.is_relative_to(db.root):
                raise InputError(f"{db.cm_protocol_path(split)}: the audio of {e.utt} ({path}) lies outside {db.root}; "
                                 f"copy-synthesis needs a corpus whose audio is under its folder")
            sources.append(Source(sys.intern(e.speaker), path.relative_to(db.root).as_posix()))
    if not sources:
        raise InputError(f"{db.cm_protocol_path(split)}: no bona fide utterances to copy")
    return described, sources


def limit_per_speaker_of(sources: list[Source], k: int | None) -> list[Source]:
    """The first k utterances of each speaker, in list order (all when k is None)."""
    if k is None:
        return sources
    taken: Counter = Counter()
    out = []
    for s in sources:
        if taken[s.speaker] < k:
            taken[s.speaker] += 1
            out.append(s)
    return out


def output_rel(vocoder: str, source_rel: str) -> str:
    """Where a copy goes under <out>/wav: the vocoder's folder, then the source's own relative path as .wav."""
    return f"{vocoder}/{PurePosixPath(source_rel).with_suffix('.wav').as_posix()}"


# ----------------------------------------------------------------------------------------------- the output folder
_DERIVED = ("list", "audio_root")    # follow from a source's kind, root and split: not worth a mention


def settings_differences(old: dict, new: dict) -> list[str]:
    """What differs between two runs' settings, as 'key OLD, now NEW' phrases (empty when none)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            shown = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in _DERIVED]
            out += [f"{key} {k} {a.get(k)}, now {b.get(k)}" for k in shown]
        else:
            out.append(f"{key} {_shown(a)}, now {_shown(b)}")
    return out


def _shown(value: object) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def prepare_output(out: Path, settings: dict, overwrite: bool) -> None:
    """Makes `out` ready for a run with `settings`: resumed when its manifest has the same settings, emptied of
    a previous run's outputs with --overwrite, refused otherwise (mixing copies made by different settings would
    corrupt the spoof class without any sign)."""
    manifest_path = out / MANIFEST_NAME
    wav_dir, list_path = out / "wav", out / LIST_NAME
    if not manifest_path.exists():
        if wav_dir.exists() or list_path.exists():
            raise InputError(f"{out}: holds {'wav/' if wav_dir.exists() else LIST_NAME} but no {MANIFEST_NAME}, "
                             "so it was not made by copy_synthesis.py; choose another --out")
        return
    old = read_json(manifest_path)
    old_settings = old.get("settings") if old is not None else None
    if overwrite:
        shutil.rmtree(wav_dir, ignore_errors=True)
        list_path.unlink(missing_ok=True)
        (out / SOURCES_NAME).unlink(missing_ok=True)
        manifest_path.unlink()
        print(f"--overwrite: removed the previous copy-synthesis output in {out}", file=sys.stderr)
        return
    if not isinstance(old_settings, dict):
        raise InputError(f"{manifest_path}: not a copy-synthesis manifest (unreadable or no 'settings'); "
                         "pass --overwrite to replace the output, or choose another --out")
    if old_settings != settings:
        raise InputError(f"{out}: holds copy-synthesis output made with other settings "
                         f"({'; '.join(settings_differences(old_settings, settings))}); "
                         "pass --overwrite to replace it, or choose another --out")


# ----------------------------------------------------------------------------------------------- source identities
SOURCES_NAME = "copy_synthesis_sources.npz"


class SourceRecord(NamedTuple):
    """The identity of each source file when its copies were last planned (copy_synthesis_sources.npz)."""
    rels: list[str]
    identity: np.ndarray        # (n, 4) int64, common.file_identity.FIELDS

    @classmethod
    def read(cls, path: Path) -> "SourceRecord | str":
        """The record, or why there is none ('' when there is no file)."""
        if not path.exists():
            return ""
        try:
            with ArrayFile(path) as z:
                text, rows = bytes(z["rels"]).decode("utf-8"), z["identity"]
        except (InputError, KeyError, UnicodeDecodeError) as e:
            return one_line(e) if str(path) in str(e) else f"{path}: damaged ({one_line(e)})"
        rels = text.split("\n") if text else []
        if rows.shape != (len(rels), 4):
            return f"{path}: damaged (identity of shape {rows.shape} for {len(rels)} sources)"
        return cls(rels, rows)

    def write(self, path: Path) -> None:
        save_arrays(path, rels=np.frombuffer("\n".join(self.rels).encode("utf-8"), dtype=np.uint8),
                    identity=self.identity)


def record_sources(out: Path, sources: list[Source], vocoders: list[str], audio_root: Path,
                   wav_dir: Path) -> int:
    """Records every source's identity before any copy is made, after deleting the copies of the sources whose
    file changed since their copies were made (so a kill in between leaves them missing, never stale); returns
    how many sources changed. A source missing now keeps its old record and its copies (for when it is back);
    sources of earlier runs that this one does not list keep theirs.

    Why identities and not names alone: a source replaced under the same name (even with its size and
    modification time kept) would otherwise keep its copies of the old audio, a spoof "copy" of other speech.
    The cost is one stat per source (~4 s per million files from the page cache on the 2-core dev box,
    docs/benchmarks.md "Cache identity") and a record of ~70 bytes per source."""
    path = out / SOURCES_NAME
    now = identities(audio_root / s.rel for s in sources)
    present = now[:, 0] != MISSING
    before = SourceRecord.read(path)
    if isinstance(before, str):
        if before or (out / "wav").exists():
            why = before or f"{path}: does not exist (copies made before this tool recorded its sources)"
            print(f"copy-synthesis: {why}; the copies there are kept as they are (--overwrite remakes them)",
                  file=sys.stderr)
        before = SourceRecord([], np.zeros((0, 4), np.int64))
    index = {rel: i for i, rel in enumerate(before.rels)}
    at = np.fromiter((index.get(s.rel, -1) for s in sources), dtype=np.int64, count=len(sources))
    known = np.flatnonzero((at >= 0) & present)
    changed = known[(before.identity[at[known]] != now[known]).any(axis=1)]
    if changed.size:
        said = describe_changes(before.identity[at[changed]], now[changed], [sources[k].rel for k in changed],
                                "source file", "their copies were made")
        print(f"copy-synthesis: {said}; their copies are made again", file=sys.stderr)
        for k in changed:
            for v in vocoders:
                (wav_dir / output_rel(v, sources[int(k)].rel)).unlink(missing_ok=True)
    rows = before.identity.copy()
    rows[at[known]] = now[known]
    first = {}                                     # sources not recorded yet, each once
    for k in np.flatnonzero(at < 0):
        first.setdefault(sources[k].rel, int(k))
    SourceRecord(before.rels + list(first), np.concatenate([rows, now[list(first.values())]])).write(path)
    return int(changed.size)


def plan_tasks(sources: list[Source], vocoders: list[str], audio_root: Path, wav_dir: Path) -> tuple[list[Task], int]:
    """(tasks for the sources with missing copies, number of copies already there).

    Any file under its final name is complete (copies are written to a temporary name and renamed), so a copy
    is missing exactly when its name is not in its folder. Each folder is listed once: a million stat calls on
    a network disk are slow."""
    listing: dict[str, set[str]] = {}
    tasks, done = [], 0
    for s in sources:
        outputs = []
        for v in vocoders:
            rel = output_rel(v, s.rel)
            folder, _, name = rel.rpartition("/")
            names = listing.get(folder)
            if names is None:
                try:
                    names = {e.name for e in os.scandir(wav_dir / folder) if e.is_file()}
                except (FileNotFoundError, NotADirectoryError):
                    names = set()
                listing[folder] = names
            if name in names:
                done += 1
            else:
                outputs.append((v, rel))
        if outputs:
            tasks.append(Task(s.rel, str(audio_root / s.rel), tuple(outputs)))
    return tasks, done


def write_list(path: Path, sources: list[Source], vocoders: list[str], bad: Container[str]) -> int:
    """`SPEAKER PATH VOCODER SOURCE` lines in sorted order, written atomically; returns their number. Built one
    speaker at a time (speaker ids sort before the rest of their lines), not as one list of millions of lines."""
    by_speaker: dict[str, list[str]] = {}
    for s in sources:
        if s.rel not in bad:
            by_speaker.setdefault(s.speaker, []).append(s.rel)
    count = 0
    with atomic_write(path) as f:
        for speaker in sorted(by_speaker):
            lines = sorted(f"{speaker} {output_rel(v, rel)} {v} {rel}" for rel in by_speaker[speaker] for v in vocoders)
            f.writelines(line + "\n" for line in lines)
            count += len(lines)
    return count


# ----------------------------------------------------------------------------------------------- the work
_WORKER: dict = {}


def _init_worker(wav_dir: str, seed: int) -> None:
    """One intra-op thread per process: the pool is the parallelism (and 1 thread also keeps torch fork-safe)."""
    import torch

    torch.set_num_threads(1)
    _WORKER.update(wav_dir=Path(wav_dir), seed=seed)


def write_wav(path: Path, wave: np.ndarray) -> None:
    """16 kHz PCM_16 WAV written to a temporary name and renamed: never a partial file under the final name."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    with atomic_write(path, "wb") as f:
        f.write(buffer.getbuffer())


def run_task(task: Task) -> tuple[str, str | None, int]:
    """Makes one source's missing copies; (source, error line or None, copies written)."""
    try:
        wave = load_audio(task.path, min_samples=MIN_SAMPLES)
    except AudioError as e:
        return task.rel, one_line(e), 0
    for vocoder, rel in task.outputs:
        write_wav(_WORKER["wav_dir"] / rel, vocode(vocoder, wave, file_rng(_WORKER["seed"], vocoder, task.rel)))
    return task.rel, None, len(task.outputs)


def run_all(tasks: list[Task], wav_dir: Path, seed: int, workers: int) -> Iterator[tuple[str, str | None, int]]:
    """Results of the tasks as they finish, in `workers` processes when > 1 (the files do not depend on it).
    The caller holds `wav_dir` (common/locking.py): after an error, temporaries under it are this run's."""
    if workers <= 1 or len(tasks) <= 1:
        import torch

        threads = torch.get_num_threads()
        try:
            _init_worker(str(wav_dir), seed)
            for task in tasks:
                yield run_task(task)
        finally:
            torch.set_num_threads(threads)
        return
    # fork: no re-import of torch per worker; safe because this process has not used torch's thread pool for
    # anything the workers need and each worker runs torch with one thread (as DataLoader workers do).
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    try:
        with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=(str(wav_dir), seed)) as pool:
            yield from pool.imap_unordered(run_task, tasks)
            pool.close()     # done: the workers leave on the pool's sentinels
            pool.join()
    except BaseException:
        # An error or Ctrl-C left the block through Pool.terminate, which kills the workers (SIGTERM, default
        # action) and waits for them: one killed inside a write left its `.NAME.XXXXXXXX.tmp` beside the copies.
        # No handler turns SIGTERM into an exception in the workers: a Python handler runs only when the worker
        # is back in bytecode, and one blocked on the task queue's lock (which the stopping pool holds) never is,
        # so Pool.terminate waited for it forever.
        remove_stale_temporaries(wav_dir)
        raise


# ----------------------------------------------------------------------------------------------- main
class Summary(NamedTuple):
    """What a run did, for the command's closing line."""
    out: Path
    files: int            # lines of the list
    vocoders: int
    sources: int          # readable source files
    written: int
    changed: int          # sources that changed since their copies were made
    already: int          # copies already there
    bad: int              # unreadable source files left out


def copy_synthesize(out: str | Path, sources_of: tuple[dict, list[Source]], vocoders: Sequence[str], *, seed: int = 0,
                    workers: int = 2, limit_per_speaker: int | None = None, skip_bad_audio: bool = False,
                    overwrite: bool = False, wait: bool = False) -> Summary:
    """Vocoded copies of every source (`voxceleb_sources` / `la_sources`) into `out`, resuming a run with the same
    settings; `out` is locked while it is written (common/locking.py)."""
    described, sources = sources_of
    vocoders = sorted(set(vocoders))
    sources = limit_per_speaker_of(sources, limit_per_speaker)
    audio_root = Path(described["audio_root"])
    if not skip_bad_audio:   # fail before any compute; with skip_bad_audio a missing file is one more bad one
        check_files_exist((audio_root / s.rel for s in sources), f"source audio listed in {described['list']}")
    settings = {"version": VERSION, "source": described, "vocoders": vocoders, "seed": seed}
    out = check_output_path(out, "--out")
    check_inputs_kept({"source audio": audio_root, "source list": described["list"]}, replaced=[out],
                      how="copy_synthesis.py writes its copies into (and --overwrite empties)")
    with hold_folders([("--out", out)], wait=wait):
        prepare_output(out, settings, overwrite)
        wav_dir, start = out / "wav", time.perf_counter()
        record = {"tool": "copy_synthesis.py", "version": VERSION, "settings": settings,
                  "limit_per_speaker": limit_per_speaker, "complete": False}
        write_json(out / MANIFEST_NAME, record)      # first: the settings this folder is being made with
        changed = record_sources(out, sources, vocoders, audio_root, wav_dir)
        tasks, already = plan_tasks(sources, vocoders, audio_root, wav_dir)
        bad, written = process(tasks, wav_dir, seed, workers, skip_bad_audio)
        n_lines = write_list(out / LIST_NAME, sources, vocoders, bad)
        good = len(sources) - len(bad)
        record.update(complete=True, counts={
            "sources": good, "speakers": len({s.speaker for s in sources if s.rel not in bad}),
            "files": n_lines, "per_vocoder": {v: good for v in vocoders}, "written": written,
            "already_there": already, "sources_changed": changed, "bad_audio": len(bad)},
            bad_audio=sorted(bad.values()), seconds=round(time.perf_counter() - start, 1))
        write_json(out / MANIFEST_NAME, record)
    return Summary(out, n_lines, len(vocoders), good, written, changed, already, len(bad))


def process(tasks: list[Task], wav_dir: Path, seed: int, workers: int, skip_bad: bool) -> tuple[dict[str, str], int]:
    """Runs the tasks with a progress bar; ({source: error line} of unreadable sources, copies written)."""
    from tqdm import tqdm

    bad: dict[str, str] = {}
    written = 0
    with tqdm(total=len(tasks), desc="copy-synthesis", unit="file", file=sys.stderr, disable=not tasks) as bar:
        for rel, error, n in run_all(tasks, wav_dir, seed, workers):
            if error is not None:
                if not skip_bad:
                    raise AudioError(f"{error} (--skip-bad-audio leaves such files out)")
                bad[rel] = error
                bar.write(f"skipping unreadable source: {error}", file=sys.stderr)
            written += n
            bar.update(1)
    return bad, written


