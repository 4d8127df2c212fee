"""The `ablation` config section: every system checked and resolved into its own SASV config before anything runs."""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from common.config import OPTIONAL_PATH, ConfigError, Rule, with_changes
from common.dispatch import check_kwargs
from common.errors import InputError
from engine.seeding import SEED
from fusion import BACKENDS, is_score_backend, outputs_llr
from metrics.thresholds import FAR, NEGATIVES
from pipeline.recipes.sasv_task import SCHEMA as SASV_SCHEMA
from pipeline.stages.experiment import check_sasv_config, experiment
from pipeline.tools.ablation.cm_scores import CM_SCORES

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

SYSTEM_KEYS = ("name", "backend", "options", "overrides", "cm_score", "seeds", "calibrated")

# Config keys a system may not override: they define the shared embeddings or are set by the system entry.
FIXED_KEYS = ("task", "mode", "database", "enr_audio", "output_dir", "embeddings_dir", "splits", "asv", "cm",
              "ablation", "backend", "backend.name", "backend.options", "backend.checkpoint")

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
        return not is_score_backend(self.backend)

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


def parse_systems(cfg: Mapping) -> list[System]:
    """The grid of `cfg['ablation']`, checked before anything runs (names, back-ends, options, overrides)."""
    section = cfg["ablation"]
    entries = section["systems"]
    if not entries:
        raise ConfigError("ablation.systems is empty: list the systems to compare (see docs/ablation.md)")
    if cfg["mode"] != "frozen":
        raise ConfigError(f"ablation runs frozen back-ends on cached embeddings; 'mode' is {cfg['mode']!r}")
    default_seeds = tuple(section["seeds"])
    root, names, systems = ablation_dir(cfg), set(), []
    for i, entry in enumerate(entries):
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
        who = f"ablation system {name!r}"
        backend = entry.get("backend")
        if backend not in BACKENDS:
            raise ConfigError(f"{who}: 'backend' is {backend!r}; valid back-ends: {', '.join(BACKENDS)}")
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
        trained = not is_score_backend(backend)
        if "seeds" in entry and not trained:
            raise ConfigError(f"{who}: 'seeds' is for trained back-ends; {backend!r} is fitted deterministically")
        try:
            seeds = tuple(SEEDS.check("seeds", entry["seeds"])) if "seeds" in entry else default_seeds
        except ConfigError as e:
            raise ConfigError(f"{who}: {e}") from None
        calibrated = entry.get("calibrated", outputs_llr(backend))   # default: an LLR by construction
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


def _check_options(backend: str, options: Mapping, who: str) -> None:
    try:
        check_kwargs(BACKENDS[backend], backend, options, "fusion back-end")
    except InputError as e:
        raise ConfigError(f"{who}: {e}") from None
