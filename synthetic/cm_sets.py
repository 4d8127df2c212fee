"""Small ASVspoof 2021 LA / DF, In-the-Wild and Kaldi-style `lists` layouts made from a synthetic ASVspoof 2019 LA
corpus, with the official file names and columns: the test rig of their readers (data/asvspoof2021.py,
data/in_the_wild.py, data/kaldi_lists.py) and of the CM-only evaluation on them.

They reuse the corpus's utterances (2021: its eval part; In-the-Wild: dev and eval; lists: every split), so they
cost a copy, not a rendering. The condition columns (codec, transmission, compression, source, vocoder) are
labels cycled over the organisers' documented values: the audio is not coded. What they test is that every
column is read where it belongs, not what a codec does to a countermeasure.

`write_layout(name, corpus, dest)` writes one into `dest` (a folder it made before is replaced; any other
existing folder is refused); `generate_corpus.py --layout NAME` calls it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from common.errors import InputError
from common.io import atomic_write, write_lines, writing
from data.asvspoof import CMEntry, LADatabase
from data.asvspoof2021 import DF_COMPRESSIONS, DF_SOURCES, DF_VOCODERS, LA_CODECS, LA_TRANSMISSIONS

from .layout import CorpusPaths

MARK = "synthetic_layout.json"
# the SUBSET of the n-th key line: mostly eval, as in the real keys, with some progress and hidden lines
_SUBSETS = ("eval", "progress", "eval", "hidden", "eval")


def _subset(i: int) -> tuple[str, str]:
    """(SUBSET, TRIM) of the i-th line: the hidden subset is the trimmed one."""
    subset = _SUBSETS[i % len(_SUBSETS)]
    return subset, "trim" if subset == "hidden" else "notrim"


def _attack(e: CMEntry) -> str:
    return "bonafide" if e.is_bonafide else e.system


def _copy(src: Path, dst: Path) -> None:
    with writing(dst):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def write_asvspoof2021_la(corpus: CorpusPaths, dest: Path) -> Path:
    """ASVspoof2021_LA_eval/flac/ + keys/LA/{CM,ASV}/trial_metadata.txt + the ASV scores, from the corpus's eval
    part; returns the `database` folder."""
    db = LADatabase(corpus.la)
    entries = db.cm_entries("eval")
    cm, files = [], []
    for i, e in enumerate(entries):
        subset, trim = _subset(i)
        cm.append(f"{e.speaker} {e.utt} {LA_CODECS[i % len(LA_CODECS)]} {LA_TRANSMISSIONS[i % len(LA_TRANSMISSIONS)]} "
                  f"{_attack(e)} {e.key} {trim} {subset}")
        _copy(db.audio("eval", e.utt), dest / "ASVspoof2021_LA_eval" / "flac" / f"{e.utt}.flac")
        files.append(e.utt)
    write_lines(dest / "ASVspoof2021_LA_eval" / "ASVspoof2021.LA.cm.eval.trl.txt", files)   # shipped with the audio
    write_lines(dest / "keys" / "LA" / "CM" / "trial_metadata.txt", cm)
    # ASV trials: the corpus's eval trials through two channels, named per channel as in the real key
    rng = np.random.default_rng(2021)
    asv, scores = [], []
    mean = {"target": 3.0, "nontarget": -3.0, "spoof": 1.0}
    for c, (codec, trans) in enumerate([("alaw", "ita_tx"), ("g722", "loc_tx")]):
        for i, t in enumerate(db.sasv_trials("eval")):
            subset, trim = _subset(i + c)
            spk, utt = f"{t.speaker}-{codec}-{trans}", f"{t.utt}-{codec}-{trans}"
            asv.append(f"{spk} {utt} {codec} {trans} {t.attack} {t.key} {trim} {subset}")
            scores.append(f"{spk} {utt} {mean[t.key] + rng.normal():.6f}")
    write_lines(dest / "keys" / "LA" / "ASV" / "trial_metadata.txt", asv)
    write_lines(dest / "keys" / "LA" / "ASV" / "ASVTorch_Kaldi" / "score.txt", scores)
    return dest


def write_asvspoof2021_df(corpus: CorpusPaths, dest: Path) -> Path:
    """ASVspoof2021_DF_eval/flac/DF_E_*.flac + keys/DF/CM/trial_metadata.txt (13 columns), from the corpus's dev and
    eval parts; every third line from VCC 2020 and every third from VCC 2018, as sources the DF key names."""
    db = LADatabase(corpus.la)
    lines = []
    for i, (split, e) in enumerate((s, e) for s in ("dev", "eval") for e in db.cm_entries(s)):
        utt = f"DF_E_{2000000 + 11 * i + 1}"
        subset, trim = _subset(i)
        source = DF_SOURCES[i % len(DF_SOURCES)]
        spk, attack, extra = e.speaker, _attack(e), "- - - -"
        if source == "vcc2020":
            spk = ("TEF1", "TEM2")[i % 2]
            if not e.is_bonafide:
                attack, extra = "Task1-team20", "Task1 team20 FF E"
        elif source == "vcc2018":
            spk = ("VCC2SF1", "VCC2TM2")[i % 2]
            if not e.is_bonafide:
                attack = "SPO-N12"
        vocoder = "bonafide" if e.is_bonafide else DF_VOCODERS[i % len(DF_VOCODERS)]
        lines.append(f"{spk} {utt} {DF_COMPRESSIONS[i % len(DF_COMPRESSIONS)]} {source} {attack} {e.key} {trim} "
                     f"{subset} {vocoder} {extra}")
        _copy(db.audio(split, e.utt), dest / "ASVspoof2021_DF_eval" / "flac" / f"{utt}.flac")
    write_lines(dest / "ASVspoof2021_DF_eval" / "ASVspoof2021.DF.cm.eval.trl.txt", [f.split()[1] for f in lines])
    write_lines(dest / "keys" / "DF" / "CM" / "trial_metadata.txt", lines)
    return dest


def write_in_the_wild(corpus: CorpusPaths, dest: Path) -> Path:
    """release_in_the_wild/meta.csv + N.wav from the corpus's dev and eval parts; speaker names with a space
    (`LA 0001`), as the release's are (`Alec Guinness`). Returns the release folder."""
    db = LADatabase(corpus.la)
    release = dest / "release_in_the_wild"
    rows = ["file,speaker,label"]
    for i, (split, e) in enumerate((s, e) for s in ("dev", "eval") for e in db.cm_entries(s)):
        audio, rate = sf.read(str(db.audio(split, e.utt)), dtype="int16")
        with writing(release / f"{i}.wav"):
            release.mkdir(parents=True, exist_ok=True)
            sf.write(str(release / f"{i}.wav"), audio, rate, subtype="PCM_16")
        rows.append(f"{i}.wav,{e.speaker.replace('_', ' ')},{'bona-fide' if e.is_bonafide else 'spoof'}")
    write_lines(release / "meta.csv", rows)
    return release


def write_lists(corpus: CorpusPaths, dest: Path) -> Path:
    """train/, dev/, eval/ with wav.scp, utt2spk, utt2label, and (dev, eval) trials and spk2utt, from every split
    of the corpus. train's audio is copied beside its lists (relative paths, one with a space in its folder
    name), dev's and eval's listed where the corpus has it (absolute paths); dev's spoofs have no attack column."""
    db = LADatabase(corpus.la)
    for split in ("train", "dev", "eval"):
        folder = dest / split
        entries = db.cm_entries(split)
        enrolment = db.enrolment(split) if split != "train" else {}
        speaker = {e.utt: e.speaker for e in entries} | {u: s for s, us in enrolment.items() for u in us}
        scp = []
        for k, utt in enumerate(speaker):
            if split == "train":
                rel = f"{'wav dir' if k == 0 else 'wav'}/{utt}.flac"
                _copy(db.audio(split, utt), folder / rel)
                scp.append(f"{utt} {rel}")
            else:
                scp.append(f"{utt} {db.audio(split, utt).resolve()}")
        write_lines(folder / "wav.scp", scp)
        write_lines(folder / "utt2spk", [f"{u} {s}" for u, s in speaker.items()])
        write_lines(folder / "utt2label", [f"{e.utt} bonafide" if e.is_bonafide else
                                           f"{e.utt} spoof" + ("" if split == "dev" else f" {e.system}")
                                           for e in entries])
        if split != "train":
            write_lines(folder / "trials", [f"{t.speaker} {t.utt} {t.key}" for t in db.sasv_trials(split)])
            write_lines(folder / "spk2utt", [f"{s} {' '.join(us)}" for s, us in enrolment.items()])
    return dest


# layout name (its data.format) -> writer(corpus, dest) -> the folder to give as `database`
LAYOUTS: dict[str, Callable[[CorpusPaths, Path], Path]] = {
    "asvspoof2021_la": write_asvspoof2021_la,
    "asvspoof2021_df": write_asvspoof2021_df,
    "in_the_wild": write_in_the_wild,
    "lists": write_lists,
}


def write_layout(name: str, corpus: CorpusPaths, dest: str | os.PathLike) -> Path:
    """Writes layout `name` from `corpus` into `dest`, replacing a folder this function wrote before (it is
    remade each time: a copy of a few hundred files); returns the `database` folder of the layout."""
    if name not in LAYOUTS:
        raise InputError(f"unknown synthetic layout {name!r}; choose one of {', '.join(LAYOUTS)}")
    dest = Path(dest)
    if dest.exists():
        if not (dest / MARK).is_file():
            raise InputError(f"{dest}: exists and was not written by the synthetic layout writer; choose another "
                             f"output folder or remove it")
        with writing(dest):
            shutil.rmtree(dest)
    database = LAYOUTS[name](corpus, dest)
    with atomic_write(dest / MARK) as f:
        json.dump({"generator": "synthetic layout", "layout": name, "source": str(corpus.la),
                   "database": os.path.relpath(database, dest)}, f, indent=1)
        f.write("\n")
    return database
