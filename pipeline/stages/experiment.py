"""The SASV experiment a config describes: its keys, its folders, its corpus, and every check that needs no model.

The stage scripts, main.py's SASV task and the tools share these keys (`SASV_COMMON`, each with its rule) and one
check of how they fit together (`check_sasv_config`); entry points run the checks before they lock folders or
compute anything, so a mistake costs seconds, not an hour of embedding.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from asv.score_norm import METHODS as NORM_METHODS
from asv.score_norm import MIN_TOP_N
from common.config import OPTIONAL_PATH, REQUIRED_PATH, ConfigError, FreeForm, Rule
from common.dispatch import check_kwargs
from common.errors import InputError
from common.folders import check_output_path
from common.io import file_sha256
from data.asvspoof import ENROLMENT_SPLITS, SPLITS, check_files_exist, listed_at
from data.databases import FORMAT, Database, open_database
from data.trial_sampling import TRIAL_SCHEMES
from engine import check_train_config
from engine.distributed import DEVICES, env_local_rank
from engine.distributed import resolve_device as engine_device
from fusion import BACKENDS, backend_class, backend_names, build_backend
from pipeline.stages.enrolment import ENROLMENT, enrolment_form
from pipeline.stages.frontends import (
    ASV_SECTION,
    CM_SECTION,
    check_crop_fits,
    check_input_fits,
    check_scoring_checkpoint,
    input_floor,
)

# Keys shared by every SASV entry point (stage scripts and main.py), with the values each may take.
SASV_COMMON = {
    "task": Rule("sasv", choices=("sasv",)),
    "database": REQUIRED_PATH,     # the corpus folder, e.g. ASVspoof 2019 LA (ASVspoof2019_LA_{train,dev,eval}/, ...)
    "data": {"format": FORMAT},    # its layout (docs/datasets.md); auto: the one the folder fits
    # folder of concatenated enrolment audio {dev,eval}/SPK_UTT.flac; default <database>/enr_audio
    "enr_audio": OPTIONAL_PATH,
    "output_dir": REQUIRED_PATH,
    "embeddings_dir": OPTIONAL_PATH,   # cached embeddings; default <output_dir>/embeddings (share it between back-ends)
    "enrolment": ENROLMENT,        # lists: average the per-gender list embeddings | concat: embed the enr_audio file
    "splits": Rule(list(SPLITS), nonempty=True, unique=True, items=Rule("train", choices=SPLITS)),
    "batch_size": Rule(16, low=1),     # extraction batch size
    "num_workers": Rule(0, low=0),     # audio-reading workers during extraction
    "skip_bad_audio": False,       # True: skip unreadable files and list them instead of stopping
    # True: score with untrained front-ends when a checkpoint is not set (dry runs, tests)
    "allow_random_weights": False,
    "device": Rule("auto", choices=DEVICES),
    "asv": ASV_SECTION,
    "cm": CM_SECTION,
    "score_norm": {"method": Rule("none", choices=NORM_METHODS),    # ASV score normalisation
                   "top_n": Rule(100, low=MIN_TOP_N)},               # asnorm: the top cohort scores used
    # score-level back-ends are fitted on `fit_on` (a scored split); embedding-level ones load `checkpoint`
    # choices: the registry's live view of its names, so that a back-end registered in fusion.BACKENDS is a choice
    "backend": {"name": Rule("score_sum", choices=BACKENDS.keys()), "options": FreeForm({}),
                "checkpoint": OPTIONAL_PATH, "fit_on": Rule("dev", choices=ENROLMENT_SPLITS)},
    "det": True,                   # draw DET curves next to results.json
}


def resolve_device(name: str) -> torch.device:
    """The `device` key: auto (a GPU when there is one), cpu or cuda; the engine's rule, one line otherwise. Under
    torchrun each rank takes its LOCAL_RANK's GPU, as training does."""
    return engine_device(name, env_local_rank())


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

    def package_scores(self, kind: str, split: str) -> Path:
        """The ASVspoof 5 evaluation package's score file of `kind` (cm: Track 1; sasv, asv: Track 2 form)."""
        return self.root / "scores" / "asvspoof5" / f"{kind}_{split}.tsv"

    def package_keys(self, kind: str, split: str) -> Path:
        """The key file that goes with `package_scores(kind, split)`."""
        return self.root / "scores" / "asvspoof5" / f"{kind}_keys_{split}.tsv"

    @property
    def results(self) -> Path:
        return self.root / "results.json"


def experiment(cfg: Mapping) -> Experiment:
    root = Path(cfg["output_dir"])
    return Experiment(root, Path(cfg["embeddings_dir"]) if cfg["embeddings_dir"] else root / "embeddings")

_DATABASES: dict[tuple[str, str, str | None], Database] = {}


def database(cfg: Mapping) -> Database:
    """The config's corpus in the layout `data.format` names (or the one it fits); one object per folder, format
    and enr_audio in a process, so its protocols are parsed once."""
    key = (str(cfg["database"]), cfg["data"]["format"], None if cfg["enr_audio"] is None else str(cfg["enr_audio"]))
    if key not in _DATABASES:
        _DATABASES[key] = open_database(*key)
    return _DATABASES[key]


def check_outputs(cfg: Mapping) -> None:
    """output_dir and embeddings_dir must be named and be folders (common.locking checks, when an entry point takes
    them, that no one else's files are in them)."""
    check_output_path(cfg["output_dir"], "output_dir")
    if cfg["embeddings_dir"] is not None:     # null: <output_dir>/embeddings; an empty path is an error
        check_output_path(cfg["embeddings_dir"], "embeddings_dir")


def check_sasv_config(cfg: Mapping) -> None:
    """What a SASV config (pipeline.recipes.sasv_task.SCHEMA) must satisfy beyond each key's own rule, which
    `load_config` applies: keys that must agree with each other, the device, inputs the front-ends can take. Every
    SASV entry point runs it first (the stage scripts through `check_stage_inputs` / `check_scoring`, main.py's
    task sasv, verify.py, ablate.py), so a config one of them refuses is refused by all, before anything is
    read or written."""
    resolve_device(cfg["device"])
    check_train_config(cfg["train"])
    name, mode = cfg["backend"]["name"], cfg["mode"]
    score_level = backend_class(name).score_level
    try:     # a score-level back-end is built (milliseconds, no data) so that its options' values are checked too
        if score_level:
            build_backend(name, **cfg["backend"]["options"])
        else:
            check_kwargs(backend_class(name), name, cfg["backend"]["options"], "fusion back-end")
    except InputError as e:
        raise ConfigError(f"backend.options: {e}") from None
    if score_level and cfg["backend"]["checkpoint"]:   # recorded as an input, yet never read
        raise ConfigError(f"backend.checkpoint is set, but the score-level back-end {name!r} is fitted on "
                          f"backend.fit_on, not loaded: unset backend.checkpoint")
    weights = cfg["joint"]["aux_cm_class_weights"]
    if not sum(weights) > 0:
        raise ConfigError(f"'joint.aux_cm_class_weights' (spoof, bona fide) must have a positive sum, got {weights!r}")
    floors = {kind: input_floor(cfg[kind], kind) for kind in ("asv", "cm")}
    for kind, floor in floors.items():
        check_crop_fits(cfg[kind], kind, floor)
    if mode == "joint":
        if score_level:
            embedding = ", ".join(backend_names(score_level=False))
            raise ConfigError(f"mode joint needs an embedding back-end ({embedding}), not {name!r}")
        if cfg["sampling"]["scheme"] not in TRIAL_SCHEMES:
            raise ConfigError(f"mode joint samples waveform trials: 'sampling.scheme' must be one of "
                              f"{', '.join(TRIAL_SCHEMES)}, got {cfg['sampling']['scheme']!r}")
        for kind in ("asv", "cm"):                  # the test utterance feeds both front-ends, the enrolment the ASV
            check_input_fits(cfg["joint"]["test_samples"], floors[kind], "joint.test_samples")
        check_input_fits(cfg["joint"]["enrol_samples"], floors["asv"], "joint.enrol_samples")


def check_stage_inputs(cfg: Mapping, asv: bool = True, cm: bool = True) -> None:
    """Every check of the ASV and/or CM stage that needs no model: the config (`check_sasv_config`), folders,
    checkpoints, protocols, audio, trials. Entry points call it before they lock folders or write anything."""
    check_sasv_config(cfg)
    check_outputs(cfg)
    splits, db = list(cfg["splits"]), database(cfg)
    check_corpus(cfg, db)
    if asv:
        check_scoring_checkpoint(cfg["asv"], "asv", cfg["allow_random_weights"])
        concat = enrolment_form(cfg) == "concat"
        for split in splits:
            db.check_split(split, enr_audio=concat)
    if cm:
        check_scoring_checkpoint(cfg["cm"], "cm", cfg["allow_random_weights"])
        for split in splits:
            check_files_exist((db.audio(split, e.utt) for e in db.cm_entries(split)),
                              f"{db.title} {split} audio in {db.audio_dir(split)}",
                              lambda p, s=split: listed_at(db, s, p))
    check_trials(db, splits, enrolment_form(cfg))


def check_corpus(cfg: Mapping, db: Database) -> None:
    """What the config asks of the corpus that its layout must have: the splits, and the concatenated enrolment
    recordings of `enrolment: concat` (ASVspoof 2019 LA's enr_audio only)."""
    absent = [s for s in cfg["splits"] if s not in db.splits]
    if absent:
        raise ConfigError(f"splits: {absent[0]!r} is not a split of {db.title} ({db.root} has "
                          f"{', '.join(db.splits)}); set splits to some of those")
    if enrolment_form(cfg) == "concat" and not db.concat_enrolment:
        raise ConfigError(f"enrolment: concat needs concatenated enrolment recordings, which {db.title} "
                          f"({db.root}) does not have; use enrolment: lists")


def trial_splits(cfg: Mapping, splits: Sequence[str] = ("dev", "eval")) -> list[str]:
    """Those of `splits` that the corpus has SASV trials (and enrolment) for: what the SASV stage scores."""
    db = database(cfg)
    return [s for s in splits if s in db.trial_splits]


def check_trials(db: Database, splits: Sequence[str], enrolment: str = "lists") -> None:
    """Fails before compute when a SASV trial's test audio is missing or not in the split's CM protocol
    (the stages embed the CM protocol utterances, so such a trial could never be scored), or when it claims
    a speaker that has no enrolment."""
    for split in (s for s in splits if s in db.trial_splits):
        trials = db.sasv_trials(split)
        utts = list(dict.fromkeys(t.utt for t in trials))
        check_files_exist((db.audio(split, u) for u in utts),
                          f"{db.sasv_trials_path(split)}: test audio in {db.audio_dir(split)}",
                          lambda p, s=split: listed_at(db, s, p))
        known = {e.utt for e in db.cm_entries(split)}
        unknown = [u for u in utts if u not in known]
        if unknown:
            shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
            raise InputError(f"{db.sasv_trials_path(split)}: {len(unknown)} test utterances are not in the CM protocol "
                             f"{db.cm_protocol_path(split)}: {shown}")
        enrolled = db.enrolment(split) if enrolment == "lists" else db.enrolment_concat(split)
        lists = (" / ".join(map(str, db.enrolment_lists(split))) if enrolment == "lists"
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
