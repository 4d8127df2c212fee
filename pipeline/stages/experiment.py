"""The SASV experiment a config describes: its keys, its folders, its corpus, and every check that needs no model.

The stage scripts, main.py's SASV task and the tools share these keys (`SASV_COMMON`); entry points run the
checks before they lock folders or compute anything, so a mistake costs seconds, not an hour of embedding.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from asv.score_norm import METHODS as NORM_METHODS
from common.config import REQUIRED, ConfigError, FreeForm
from common.errors import InputError
from common.folders import check_output_path
from common.io import file_sha256
from data.asvspoof import ENROLMENT_SPLITS, SPLITS, LADatabase, check_files_exist
from data.audio import CropSpec
from engine.distributed import resolve_device as engine_device
from pipeline.stages.frontends import ASV_SECTION, CM_SECTION, check_scoring_checkpoint, unit_enrol_mean

# Keys shared by every SASV entry point (stage scripts and main.py).
SASV_COMMON = {
    "task": "sasv",
    "database": REQUIRED,          # the ASVspoof 2019 LA folder (holding ASVspoof2019_LA_{train,dev,eval}/)
    # folder of concatenated enrolment audio {dev,eval}/SPK_UTT.flac; default <database>/enr_audio
    "enr_audio": None,
    "output_dir": REQUIRED,
    "embeddings_dir": None,        # cached embeddings; default <output_dir>/embeddings (share it between back-ends)
    "enrolment": "lists",          # lists: average the per-gender list embeddings | concat: embed the enr_audio file
    "splits": ["train", "dev", "eval"],
    "batch_size": 16,              # extraction batch size
    "num_workers": 0,              # audio-reading workers during extraction
    "skip_bad_audio": False,       # True: skip unreadable files and list them instead of stopping
    # True: score with untrained front-ends when a checkpoint is not set (dry runs, tests)
    "allow_random_weights": False,
    "device": "auto",
    "asv": ASV_SECTION,
    "cm": CM_SECTION,
    "score_norm": {"method": "none", "top_n": 100},   # ASV score normalisation: none|znorm|tnorm|snorm|asnorm
    "backend": {"name": "score_sum", "options": FreeForm({}), "checkpoint": None, "fit_on": "dev"},
    "det": True,                   # draw DET curves next to results.json
}


def resolve_device(name: str) -> torch.device:
    """The `device` key: auto (a GPU when there is one), cpu or cuda; the engine's rule, one line otherwise."""
    return engine_device(name)


@dataclass(frozen=True)
class Experiment:
    """The files of one experiment folder (`output_dir`); embeddings may live in a shared folder."""
    root: Path
    embeddings: Path

    def asv_embeddings(self, split: str) -> Path:
        return self.embeddings / f"asv_{split}.npz"

    def asv_models(self, split: str, enrolment: str = "lists") -> Path:
        """Speaker models; the two enrolment forms are cached side by side."""
        suffix = "" if enrolment == "lists" else f"_{enrolment}"
        return self.embeddings / f"asv_enrol{suffix}_{split}.npz"

    def cm_embeddings(self, split: str) -> Path:
        return self.embeddings / f"cm_{split}.npz"

    def scores(self, kind: str, split: str) -> Path:
        return self.root / "scores" / f"{kind}_{split}.txt"

    @property
    def results(self) -> Path:
        return self.root / "results.json"


def experiment(cfg: Mapping) -> Experiment:
    root = Path(cfg["output_dir"])
    return Experiment(root, Path(cfg["embeddings_dir"]) if cfg["embeddings_dir"] else root / "embeddings")

_DATABASES: dict[tuple[str, str | None], LADatabase] = {}


def database(cfg: Mapping) -> LADatabase:
    """The config's corpus; one object per folder pair in a process, so its protocols are parsed once."""
    key = (str(cfg["database"]), None if cfg["enr_audio"] is None else str(cfg["enr_audio"]))
    if key not in _DATABASES:
        _DATABASES[key] = LADatabase(*key)
    return _DATABASES[key]


# How a speaker model is made (the `enrolment` key): the mean of the embeddings of the utterances listed in the
# per-gender enrolment lists (SASV 2022 baseline), or one embedding of the speaker's concatenated enr_audio file
# (EURECOM joint-optimisation recipes).
ENROLMENT_FORMS = ("lists", "concat")


def enrolment_form(cfg: Mapping) -> str:
    form = cfg["enrolment"]
    if form not in ENROLMENT_FORMS:
        raise ConfigError(f"'enrolment' must be 'lists' or 'concat', got {form!r}")
    return form


def enrolment_audio(db: LADatabase, split: str, form: str) -> list[tuple[str, Path]]:
    """(id, audio file) of what a split's speaker models are made from: each listed utterance once (lists: ids
    are utterances) or each speaker's concatenated file (concat: ids are speakers)."""
    if form == "lists":
        utts = dict.fromkeys(u for us in db.enrolment(split).values() for u in us)
        return [(u, db.flac(split, u)) for u in utts]
    return [(spk, db.enr_audio_file(split, stem)) for spk, stem in db.enrolment_concat(split).items()]


def check_outputs(cfg: Mapping) -> None:
    """output_dir and embeddings_dir must be named and be folders (common.locking checks, when an entry point takes
    them, that no one else's files are in them)."""
    check_output_path(cfg["output_dir"], "output_dir")
    if cfg["embeddings_dir"] is not None:     # null: <output_dir>/embeddings; an empty path is an error
        check_output_path(cfg["embeddings_dir"], "embeddings_dir")


def check_splits(cfg: Mapping) -> list[str]:
    splits = list(cfg["splits"])
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits or len(set(splits)) != len(splits):
        raise ConfigError(f"'splits' must list some of {', '.join(SPLITS)} once each, got {splits!r}")
    return splits


def check_settings(cfg: Mapping) -> None:
    """Values the schema's types do not catch, checked before anything is computed."""
    resolve_device(cfg["device"])
    for key, least in (("batch_size", 1), ("num_workers", 0)):
        if cfg[key] < least:
            raise ConfigError(f"'{key}' must be >= {least}, got {cfg[key]}")
    if cfg["score_norm"]["method"] not in NORM_METHODS:
        raise ConfigError(f"score_norm.method is {cfg['score_norm']['method']!r}; "
                          f"choose from {', '.join(NORM_METHODS)}")
    if cfg["score_norm"]["top_n"] < 1:
        raise ConfigError(f"score_norm.top_n must be >= 1, got {cfg['score_norm']['top_n']}")
    unit_enrol_mean(cfg["asv"])
    for key in ("asv", "cm"):
        crop = cfg[key]["crop"]
        try:
            CropSpec(crop["policy"], crop["samples"], crop["count"])
        except ValueError:
            raise ConfigError(f"{key}.crop: policy first|full|even with samples >= 1 and count >= 1, "
                              f"got {dict(crop)}") from None


def check_stage_inputs(cfg: Mapping, asv: bool = True, cm: bool = True) -> None:
    """Every check of the ASV and/or CM stage that needs no model: folders, settings, checkpoints, protocols,
    audio, trials. Entry points call it before they lock folders or write anything."""
    check_outputs(cfg)
    check_settings(cfg)
    splits, db = check_splits(cfg), database(cfg)
    if asv:
        check_scoring_checkpoint(cfg["asv"], "asv", cfg["allow_random_weights"])
        concat = enrolment_form(cfg) == "concat"
        for split in splits:
            db.check_split(split, enr_audio=concat)
    if cm:
        check_scoring_checkpoint(cfg["cm"], "cm", cfg["allow_random_weights"])
        for split in splits:
            check_files_exist((db.flac(split, e.utt) for e in db.cm_entries(split)),
                              f"ASVspoof 2019 LA {split} audio in {db.flac_dir(split)}")
    check_trials(db, splits, enrolment_form(cfg))


def check_trials(db: LADatabase, splits: Sequence[str], enrolment: str = "lists") -> None:
    """Fails before compute when a SASV trial's test audio is missing or not in the split's CM protocol
    (the stages embed the CM protocol utterances, so such a trial could never be scored), or when it claims
    a speaker that has no enrolment."""
    for split in (s for s in splits if s in ENROLMENT_SPLITS):
        trials = db.sasv_trials(split)
        utts = list(dict.fromkeys(t.utt for t in trials))
        check_files_exist((db.flac(split, u) for u in utts),
                          f"{db.sasv_trials_path(split)}: test audio in {db.flac_dir(split)}")
        known = {e.utt for e in db.cm_entries(split)}
        unknown = [u for u in utts if u not in known]
        if unknown:
            shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
            raise InputError(f"{db.sasv_trials_path(split)}: {len(unknown)} test utterances are not in the CM protocol "
                             f"{db.cm_protocol_path(split)}: {shown}")
        enrolled = db.enrolment(split) if enrolment == "lists" else db.enrolment_concat(split)
        lists = (f"{db.enrolment_path(split, 'female')} / male" if enrolment == "lists"
                 else str(db.enrolment_concat_path(split)))
        orphan = next((t for t in trials if t.speaker not in enrolled), None)
        if orphan is not None:
            raise InputError(f"{db.sasv_trials_path(split)}: the trial '{orphan.speaker} {orphan.utt}' claims speaker "
                             f"{orphan.speaker}, who has no enrolment in {lists}")


def protocol_digests(cfg: Mapping) -> dict[str, str]:
    """SHA-256 of every protocol file the configured splits read, recorded with results so that a number can be
    traced to the exact trial and enrolment lists that made it."""
    db = database(cfg)
    return {str(p): file_sha256(p) for p in db.protocol_files(cfg["splits"], enrolment_form(cfg) == "concat")
            if p.exists()}
