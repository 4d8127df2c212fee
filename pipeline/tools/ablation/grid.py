"""The ablation config: its source of scores and its `ablation` section, every system checked and resolved into its
own config before anything runs.

The scores come from one of two sources. Cached embeddings: the config is a SASV config (`database`, the front-ends
`asv` / `cm`, ...; SCHEMA) and each system a SASV config of its own. Score files: the config names each split's ASV and
CM score files (and trial list) under `scores` instead (SCORE_FILES_SCHEMA), read as fuse.py reads them; its systems
are the score-level back-ends with their options, and whatever needs embeddings is refused naming the system."""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from common.config import (
    OPTIONAL_PATH,
    REQUIRED_PATH,
    ConfigError,
    Rule,
    apply_override,
    load_config,
    read_raw,
    with_changes,
)
from common.dispatch import check_kwargs
from common.errors import InputError
from engine.seeding import SEED
from fusion import BACKENDS, backend_class
from metrics.thresholds import FAR, NEGATIVES
from pipeline.recipes.sasv_task import SCHEMA as SASV_SCHEMA
from pipeline.stages.experiment import check_sasv_config, experiment
from pipeline.tools.ablation.cm_scores import CM_SCORES
from pipeline.tools.fuse import check_rule, score_backends

SEEDS = Rule([0, 1, 2], nonempty=True, unique=True, items=SEED)   # ablation.seeds and a system's own `seeds`

ABLATION_SECTION = {
    "dir": OPTIONAL_PATH,          # default <output_dir>/ablation
    "pictures": True,              # per-system hist.png / det.png / reliability.png (ablation_det.png always)
    "seeds": SEEDS,                # seeds of trained (embedding-level) back-ends unless a system sets its own
    "thresholds": {
        "far": FAR,                # target false-accept rate of the 'far' threshold
        # negatives of the 'eer' and 'far' thresholds: nontarget | spoof | both
        "negatives": Rule("both", choices=tuple(NEGATIVES)),
    },
    "systems": [],                 # [{name, backend, options, overrides, cm_score, seeds, calibrated}, ...]
}

SCHEMA = {**SASV_SCHEMA, "ablation": ABLATION_SECTION}

# The score-file source: per split the ASV and CM score files and optionally the trial list, in any format fuse.py
# reads (pipeline.tools.fuse.load_split); the corpus, front-end and stage keys of SCHEMA have no meaning here.
SPLIT_SCORE_FILES = {"asv": REQUIRED_PATH, "cm": REQUIRED_PATH, "trials": OPTIONAL_PATH}
SCORE_SPLITS = ("dev", "eval")
SCORE_FILES_SCHEMA = {"task": SASV_SCHEMA["task"], "output_dir": REQUIRED_PATH,
                      "scores": {split: dict(SPLIT_SCORE_FILES) for split in SCORE_SPLITS},
                      "ablation": ABLATION_SECTION}

SYSTEM_KEYS = ("name", "backend", "options", "overrides", "cm_score", "seeds", "calibrated")

# Config keys a system may not override: they define the shared embeddings or are set by the system entry.
FIXED_KEYS = ("task", "mode", "database", "enr_audio", "output_dir", "embeddings_dir", "splits", "asv", "cm",
              "ablation", "backend", "backend.name", "backend.options", "backend.checkpoint")

SCORE_FILE_CM = "file"   # the `cm_score` of a score-file system: the CM file's scores, as given

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class System:
    """One entry of the grid, with its resolved SASV config (output_dir = its folder)."""
    name: str
    backend: str
    options: dict
    overrides: dict
    cm_score: str
    seeds: tuple            # (None,) for score-level back-ends
    calibrated: bool
    cfg: dict = field(repr=False)

    @property
    def trained(self) -> bool:
        return not backend_class(self.backend).score_level

    @property
    def folder(self) -> Path:
        return Path(self.cfg["output_dir"])

    def run_dir(self, seed: int | None) -> Path:
        return self.folder if seed is None else self.folder / f"seed_{seed}"

    def run_config(self, seed: int | None) -> dict:
        if seed is None:
            return self.cfg
        cfg = copy.deepcopy(self.cfg)
        cfg["train"]["seed"] = int(seed)
        return cfg


def ablation_dir(cfg: Mapping) -> Path:
    return Path(cfg["ablation"]["dir"]) if cfg["ablation"]["dir"] else Path(cfg["output_dir"]) / "ablation"


def load_ablation_config(path: str | Path, overrides: Sequence[str]) -> dict:
    """The config of ablate.py, against the schema of its source: `scores` (score files, SCORE_FILES_SCHEMA) or
    `database` (cached embeddings of a corpus, SCHEMA); one line when it gives both, neither, or a key of the other
    source."""
    raw = read_raw(path)
    for item in overrides:
        apply_override(raw, item)
    given = {k for k, v in raw.items() if v is not None}
    if "scores" in given and "database" in given:
        raise ConfigError(f"{path}: 'scores' (score files) and 'database' (the cached embeddings of a corpus) are two "
                          f"sources of the systems' scores: give one")
    if "scores" not in given and "database" not in given:
        raise ConfigError(f"{path}: no source of scores: give 'scores' (each split's score files: scores.dev.asv, "
                          f"scores.dev.cm, scores.eval.asv, scores.eval.cm) or 'database' with the front-ends 'asv' "
                          f"and 'cm' (cached embeddings); see docs/ablation.md")
    if "scores" in given:
        other = next((k for k in raw if k in SCHEMA and k not in SCORE_FILES_SCHEMA), None)
        if other is not None:
            raise ConfigError(f"{path}: '{other}' belongs to an ablation on cached embeddings; an ablation of score "
                              f"files ('scores') takes only {', '.join(SCORE_FILES_SCHEMA)}")
    return load_config(path, overrides, SCORE_FILES_SCHEMA if "scores" in given else SCHEMA)


def score_files(cfg: Mapping) -> bool:
    """Whether the grid's scores come from score files (`scores`) rather than cached embeddings."""
    return "scores" in cfg


def parse_systems(cfg: Mapping) -> list[System]:
    """The grid of `cfg['ablation']`, checked before anything runs (names, back-ends, options, overrides)."""
    section = cfg["ablation"]
    entries = section["systems"]
    if not entries:
        raise ConfigError("ablation.systems is empty: list the systems to compare (see docs/ablation.md)")
    if score_files(cfg):
        return _score_file_systems(cfg, entries)
    if cfg["mode"] != "frozen":
        raise ConfigError(f"ablation runs frozen back-ends on cached embeddings; 'mode' is {cfg['mode']!r}")
    default_seeds = tuple(section["seeds"])
    root, names, systems = ablation_dir(cfg), set(), []
    for i, entry in enumerate(entries):
        name, who, backend = _entry_backend(entry, i, names)
        options = dict(entry.get("options") or {})
        _check_options(backend, options, who)
        overrides = dict(entry.get("overrides") or {})
        for key in overrides:
            if any(key == k or key.startswith(k + ".") for k in FIXED_KEYS if k != "backend") or key == "backend":
                raise ConfigError(f"{who}: override {key!r} is not allowed (the front-ends, corpus and folders are "
                                  f"shared by every system; set the back-end with 'backend' and 'options')")
        cm_score = entry.get("cm_score", "logit")
        if cm_score not in CM_SCORES:
            raise ConfigError(f"{who}: 'cm_score' is {cm_score!r}; choose one of {', '.join(CM_SCORES)}")
        trained = not backend_class(backend).score_level
        if "seeds" in entry and not trained:
            raise ConfigError(f"{who}: 'seeds' is for trained back-ends; {backend!r} is fitted deterministically")
        try:
            seeds = tuple(SEEDS.check("seeds", entry["seeds"])) if "seeds" in entry else default_seeds
        except ConfigError as e:
            raise ConfigError(f"{who}: {e}") from None
        calibrated = entry.get("calibrated", backend_class(backend).outputs_llr)   # default: an LLR by construction
        if not isinstance(calibrated, bool):
            raise ConfigError(f"{who}: 'calibrated' must be true or false, got {calibrated!r}")
        changes = {**overrides, "backend.name": backend, "backend.options": options, "backend.checkpoint": None,
                   "output_dir": str(root / name), "embeddings_dir": str(experiment(cfg).embeddings)}
        base = {k: v for k, v in cfg.items() if k != "ablation"}
        sys_cfg = with_changes(base, changes, SASV_SCHEMA, who)
        if trained and "train" not in sys_cfg["splits"]:
            raise ConfigError(f"{who}: a trained back-end needs the train embeddings: include 'train' in 'splits'")
        try:
            check_sasv_config(sys_cfg)        # what every SASV entry point checks, for each system's config
        except ConfigError as e:
            raise ConfigError(f"{who}: {e}") from None
        systems.append(System(name, backend, options, overrides, cm_score, seeds if trained else (None,),
                              calibrated, sys_cfg))
    return systems


def _entry_backend(entry: object, i: int, names: set[str]) -> tuple[str, str, str]:
    """(name, how messages name the system, its back-end) of the i-th entry, both checked."""
    name = _entry_name(entry, i, names)
    who = f"ablation system {name!r}"
    backend = entry.get("backend")
    if backend not in BACKENDS:
        raise ConfigError(f"{who}: 'backend' is {backend!r}; valid back-ends: {', '.join(BACKENDS)}")
    return name, who, backend


def _entry_name(entry: object, i: int, names: set[str]) -> str:
    """The checked name of the i-th entry (added to `names`): a mapping of known keys with a new folder-safe name."""
    who = f"ablation.systems[{i}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{who}: must be a mapping with keys {', '.join(SYSTEM_KEYS)}, got {entry!r}")
    unknown = sorted(set(entry) - set(SYSTEM_KEYS))
    if unknown:
        raise ConfigError(f"{who}: unknown key {unknown[0]!r}; valid keys: {', '.join(SYSTEM_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{who}: 'name' must be a folder-safe string (letters, digits, _ . + -), got {name!r}")
    if name in names:
        raise ConfigError(f"{who}: system name {name!r} appears twice")
    names.add(name)
    return name


# What a system of a score-file grid cannot have, and why (the files hold scores, not embeddings).
_NEEDS_EMBEDDINGS = {
    "overrides": "its keys change how the scores are made from embeddings (score_norm cohorts, the enrolment "
                 "form) or train an embedding back-end; score files hold finished scores",
    "cm_score": "it makes the CM score from the CM embeddings (both logits); a score file's CM scores are fused as "
                "given (baseline1_v2 applies the sigmoid)",
    "seeds": "seeds are for back-ends trained on embeddings",
}


def _score_file_systems(cfg: Mapping, entries: Sequence) -> list[System]:
    """The systems of a score-file grid: score-level back-ends with their options (each built once as a check),
    nothing that needs embeddings. Each system's config holds its folder and back-end, fitted on dev."""
    root, names, systems = ablation_dir(cfg), set(), []
    for i, entry in enumerate(entries):
        name, who, backend = _entry_backend(entry, i, names)
        if not backend_class(backend).score_level:
            raise ConfigError(f"{who}: {backend} is an embedding back-end, trained on this toolkit's cached "
                              f"embeddings; an ablation of score files fits score-level back-ends only: "
                              f"{', '.join(score_backends())}")
        key = next((k for k in _NEEDS_EMBEDDINGS if k in entry), None)
        if key is not None:
            raise ConfigError(f"{who}: '{key}' needs embeddings and this ablation reads score files: "
                              f"{_NEEDS_EMBEDDINGS[key]}")
        options = dict(entry.get("options") or {})
        try:
            check_rule(backend, options, who)
        except InputError as e:
            raise ConfigError(str(e)) from None
        calibrated = entry.get("calibrated", backend_class(backend).outputs_llr)
        if not isinstance(calibrated, bool):
            raise ConfigError(f"{who}: 'calibrated' must be true or false, got {calibrated!r}")
        sys_cfg = {"output_dir": str(root / name), "scores": copy.deepcopy(cfg["scores"]),
                   "backend": {"name": backend, "options": options, "fit_on": "dev"}}
        systems.append(System(name, backend, options, {}, SCORE_FILE_CM, (None,), calibrated, sys_cfg))
    return systems


def _check_options(backend: str, options: Mapping, who: str) -> None:
    try:
        check_kwargs(backend_class(backend), backend, options, "fusion back-end")
    except InputError as e:
        raise ConfigError(f"{who}: {e}") from None
