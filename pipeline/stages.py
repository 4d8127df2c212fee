"""The offline SASV stages: ASV embeddings and scores, CM embeddings and scores, SASV trial scores.

Each stage reads the config's `database` and writes under `output_dir`:

    embeddings/asv_{split}.npz        ASV embedding of every utterance of the split (CM protocol + enrolment)
    embeddings/asv_enrol_{split}.npz  speaker models (ids = speakers) for dev/eval (asv_enrol_concat_*: enr_audio form)
    embeddings/cm_{split}.npz         CM embedding and score (bona fide logit) of every CM protocol utterance
    scores/asv_{split}.txt            SASV 2022 format `SPK UTT ATTACK KEY SCORE`: ASV cosine score per trial
    scores/cm_{split}.txt             ASVspoof 2019 CM format `UTT ATTACK KEY SCORE`
    scores/cm_trials_{split}.txt      the CM score of each SASV trial's test utterance (SASV 2022 format)
    scores/sasv_{split}.txt           the back-end's SASV score per trial (SASV 2022 format)

A cached `.npz` is reused only when everything that made it is unchanged (front-end, checkpoint content,
crop, the utterance list, each audio file's path, size and mtime, and skipping; pipeline/cache.py), else it is
recomputed and the log says why; `--force` recomputes regardless. The SASV stage refuses cached outputs that
were not made by what the config names. Every file is written atomically.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from asv.score_norm import METHODS as NORM_METHODS
from asv.score_norm import normalise_scores, speaker_mean_cohort
from common.config import REQUIRED, ConfigError, FreeForm
from common.errors import InputError
from common.io import check_folder, file_sha256
from data.asvspoof import ENROLMENT_SPLITS, SPLITS, LADatabase, SASVTrial, check_files_exist
from data.datasets import EmbeddingTable, speaker_models
from data.score_files import CMScores, SASVScores, write_cm_scores, write_sasv_scores
from engine.distributed import resolve_device as engine_device
from metrics.eer import det_eer
from pipeline.cache import Inputs, load_cache, save_cache
from pipeline.extract import InputFloor, extract
from pipeline.frontends import (ASV_SECTION, CM_SECTION, asv_embed_fn, build_asv, build_cm,
                                check_scoring_checkpoint, cm_embed_fn, crop_spec, frontend_identity)

# Keys shared by every SASV entry point (stage scripts and main.py).
SASV_COMMON = {
    "task": "sasv",
    "database": REQUIRED,          # the ASVspoof 2019 LA folder (holding ASVspoof2019_LA_{train,dev,eval}/)
    "enr_audio": None,             # folder of concatenated enrolment audio {dev,eval}/SPK_UTT.flac; default <database>/enr_audio
    "output_dir": REQUIRED,
    "embeddings_dir": None,        # cached embeddings; default <output_dir>/embeddings (share it between back-ends)
    "enrolment": "lists",          # lists: average the per-gender list embeddings | concat: embed the enr_audio file
    "splits": ["train", "dev", "eval"],
    "batch_size": 16,              # extraction batch size
    "num_workers": 0,              # audio-reading workers during extraction
    "skip_bad_audio": False,       # True: skip unreadable files and list them instead of stopping
    "allow_random_weights": False,  # True: score with untrained front-ends when a checkpoint is not set (dry runs, tests)
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


def say(message: str) -> None:
    """A progress line of the stages on stderr (stdout carries the result tables)."""
    print(message, file=sys.stderr, flush=True)


def enrolment_mode(cfg: Mapping) -> str:
    mode = cfg["enrolment"]
    if mode not in ("lists", "concat"):
        raise ConfigError(f"'enrolment' must be 'lists' or 'concat', got {mode!r}")
    return mode


# ---------------------------------------------------------------------------------------------
# What each cached output is made of (one definition for the stage that writes it and those that read it)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheSpec:
    path: Path
    made_by: dict
    inputs: Inputs
    stage: str                     # the stage script that writes it


def asv_embeddings_spec(cfg: Mapping, split: str, db: LADatabase | None = None) -> CacheSpec:
    db = db or database(cfg)
    return CacheSpec(experiment(cfg).asv_embeddings(split), frontend_identity(cfg["asv"], "asv"),
                     Inputs.of([(u, db.flac(split, u)) for u in db.utterances(split)]), "save_asv_embeddings.py")


def cm_embeddings_spec(cfg: Mapping, split: str, db: LADatabase | None = None) -> CacheSpec:
    db = db or database(cfg)
    return CacheSpec(experiment(cfg).cm_embeddings(split), frontend_identity(cfg["cm"], "cm"),
                     Inputs.of([(e.utt, db.flac(split, e.utt)) for e in db.cm_entries(split)]), "save_cm_score.py")


def speaker_models_spec(cfg: Mapping, split: str, db: LADatabase | None = None) -> CacheSpec:
    """Lists: the mean of the listed utterances' embeddings (the lists' content is part of what made it);
    concat: one embedding of each speaker's enr_audio file."""
    db, mode = db or database(cfg), enrolment_mode(cfg)
    made_by = {**frontend_identity(cfg["asv"], "asv"), "enrolment": mode}
    if mode == "lists":
        enrolment = db.enrolment(split)
        made_by["lists_sha256"] = hashlib.sha256(json.dumps(enrolment, sort_keys=True).encode()).hexdigest()
        utts = list(dict.fromkeys(u for us in enrolment.values() for u in us))
        inputs = Inputs.of([(u, db.flac(split, u)) for u in utts])
    else:
        inputs = Inputs.of([(spk, db.enr_audio_file(split, stem)) for spk, stem in db.enrolment_concat(split).items()])
    return CacheSpec(experiment(cfg).asv_models(split, mode), made_by, inputs, "save_asv_embeddings.py")


def current_output(spec: CacheSpec, cfg: Mapping, read_arrays: bool = True) -> dict[str, np.ndarray]:
    """The arrays of a cached output for a stage that only reads it: one line when it is missing or was made
    by something else than the config now names (another checkpoint, corpus, utterance list, audio...).
    `read_arrays=False` only checks (reads no data arrays)."""
    arrays, why = load_cache(spec.path, spec.made_by, spec.inputs, cfg["skip_bad_audio"], arrays=read_arrays)
    if arrays is None:
        what = f"{why}" if why else "missing"
        raise InputError(f"{spec.path}: {what}; run {spec.stage} with this config first (it recomputes it)")
    return arrays


def table_of(arrays: Mapping[str, np.ndarray], path: Path) -> EmbeddingTable:
    return EmbeddingTable(arrays["ids"].tolist(), arrays["embeddings"], str(path))


# ---------------------------------------------------------------------------------------------
# Checks before compute
# ---------------------------------------------------------------------------------------------
def check_outputs(cfg: Mapping) -> None:
    """output_dir and embeddings_dir must be folders (or not exist yet)."""
    check_folder(cfg["output_dir"], "output_dir")
    if cfg["embeddings_dir"]:
        check_folder(cfg["embeddings_dir"], "embeddings_dir")


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
        raise ConfigError(f"score_norm.method is {cfg['score_norm']['method']!r}; choose from {', '.join(NORM_METHODS)}")
    if cfg["score_norm"]["top_n"] < 1:
        raise ConfigError(f"score_norm.top_n must be >= 1, got {cfg['score_norm']['top_n']}")
    for key in ("asv", "cm"):
        crop = cfg[key]["crop"]
        if crop["policy"] not in ("first", "full", "even") or crop["samples"] < 1 or crop["count"] < 1:
            raise ConfigError(f"{key}.crop: policy first|full|even with samples >= 1 and count >= 1, got {dict(crop)}")


def check_stage_inputs(cfg: Mapping, asv: bool = True, cm: bool = True) -> None:
    """Every check of the ASV and/or CM stage that needs no model: folders, settings, checkpoints, protocols,
    audio, trials. Entry points call it before they lock folders or write anything."""
    check_outputs(cfg)
    check_settings(cfg)
    splits, db = check_splits(cfg), database(cfg)
    if asv:
        check_scoring_checkpoint(cfg["asv"], "asv", cfg["allow_random_weights"])
        concat = enrolment_mode(cfg) == "concat"
        for split in splits:
            db.check_split(split, enr_audio=concat)
    if cm:
        check_scoring_checkpoint(cfg["cm"], "cm", cfg["allow_random_weights"])
        for split in splits:
            check_files_exist((db.flac(split, e.utt) for e in db.cm_entries(split)),
                              f"ASVspoof 2019 LA {split} audio in {db.flac_dir(split)}")
    check_trials(db, splits, enrolment_mode(cfg))


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


# ---------------------------------------------------------------------------------------------
# ASV
# ---------------------------------------------------------------------------------------------
def _cached_or_none(spec: CacheSpec, cfg: Mapping, force: bool, label: str) -> dict[str, np.ndarray] | None:
    """The cached arrays when current (said), else None after saying why they are recomputed."""
    if force:
        say(f"{label}: recomputing {spec.path} (--force)")
        return None
    arrays, why = load_cache(spec.path, spec.made_by, spec.inputs, cfg["skip_bad_audio"])
    if arrays is not None:
        say(f"{label}: {spec.path} is up to date, skipped")
    elif why:
        say(f"{label}: recomputing {spec.path}: {why}")
    return arrays


def _extracted(out, spec: CacheSpec, label: str) -> None:
    if not out.ids:
        raise InputError(f"{label}: none of the {len(spec.inputs.ids)} files could be read (first: {out.skipped[0]})")


def asv_stage(cfg: Mapping, force: bool = False) -> None:
    """ASV embeddings of every split, speaker models and ASV trial scores for dev/eval."""
    check_stage_inputs(cfg, asv=True, cm=False)          # fail before compute
    db, device = database(cfg), resolve_device(cfg["device"])
    model = None

    def get_model():
        nonlocal model
        model = model or build_asv(cfg["asv"], device)
        return model

    for split in cfg["splits"]:
        spec = asv_embeddings_spec(cfg, split, db)
        cached = _cached_or_none(spec, cfg, force, f"asv {split}")
        if cached is not None:
            table = table_of(cached, spec.path)
        else:
            out = extract(spec.inputs.items(), asv_embed_fn(get_model(), device), crop_spec(cfg["asv"]),
                          batch_size=cfg["batch_size"], num_workers=cfg["num_workers"], desc=f"ASV embeddings {split}",
                          skip_bad_audio=cfg["skip_bad_audio"], floor=InputFloor.of(get_model()))
            _extracted(out, spec, f"asv {split}")
            save_cache(spec.path, spec.made_by, spec.inputs, {"ids": np.asarray(out.ids, dtype=str), **out.arrays},
                       skipped=out.skipped_ids)
            table = EmbeddingTable(out.ids, out.arrays["embeddings"], str(spec.path))
            say(f"asv {split}: {len(out.ids)} embeddings -> {spec.path}")
        if split in ENROLMENT_SPLITS:
            models = _speaker_models(cfg, db, split, table, force, get_model)
            write_asv_scores(cfg, split, models, table)


def _speaker_models(cfg: Mapping, db: LADatabase, split: str, table: EmbeddingTable, force: bool,
                    get_model) -> EmbeddingTable:
    """Speaker models: mean of per-gender list embeddings, or one embedding of the concatenated enr_audio file."""
    spec, device = speaker_models_spec(cfg, split, db), resolve_device(cfg["device"])
    cached = _cached_or_none(spec, cfg, force, f"asv {split} speaker models")
    if cached is not None:
        return table_of(cached, spec.path)
    skipped: list[str] = []
    if enrolment_mode(cfg) == "lists":
        enrolment = db.enrolment(split)
        skipped = [u for u in spec.inputs.ids if u not in table]   # unreadable and skipped (skip_bad_audio)
        if skipped:
            say(f"asv {split}: {len(skipped)} enrolment utterances skipped (unreadable audio)")
            enrolment = {spk: [u for u in utts if u in table] for spk, utts in enrolment.items()}
        try:
            models = speaker_models(enrolment, table)
        except ValueError as e:
            raise InputError(str(e)) from None
        ids, emb = list(models), np.stack(list(models.values()))
    else:
        out = extract(spec.inputs.items(), asv_embed_fn(get_model(), device), crop_spec(cfg["asv"]),
                      num_workers=cfg["num_workers"], desc=f"ASV enrolment {split}", floor=InputFloor.of(get_model()))
        ids, emb = out.ids, out.arrays["embeddings"]
    save_cache(spec.path, spec.made_by, spec.inputs, {"ids": np.asarray(ids, dtype=str), "embeddings": emb},
               skipped=skipped)
    return EmbeddingTable(ids, emb, str(spec.path))


def asv_trial_scores(cfg: Mapping, split: str, trials: Sequence[SASVTrial], models: EmbeddingTable,
                     tests: EmbeddingTable) -> np.ndarray:
    """Cosine scores of each trial (speaker model vs test embedding), normalised as `score_norm` says."""
    models.require([t.speaker for t in trials], f"the {split} SASV trials (speaker models)")
    tests.require([t.utt for t in trials], f"the {split} SASV trials (test utterances)")
    enrol_idx = np.array([models.index[t.speaker] for t in trials])
    test_idx = np.array([tests.index[t.utt] for t in trials])
    method = cfg["score_norm"]["method"]
    cohort = _cohort(cfg) if method != "none" else None
    return normalise_scores(method, models.embeddings, tests.embeddings, enrol_idx, test_idx,
                            cohort_emb=cohort, top_n=cfg["score_norm"]["top_n"])


def _cohort(cfg: Mapping) -> np.ndarray:
    """Score-normalisation cohort: mean ASV embedding of each training speaker's bona fide utterances, from
    train embeddings made by the configured front-end."""
    if "train" not in cfg["splits"]:
        raise ConfigError("score_norm needs the train ASV embeddings (the cohort); include 'train' in 'splits'")
    db = database(cfg)
    spec = asv_embeddings_spec(cfg, "train", db)
    table = table_of(current_output(spec, cfg), spec.path)
    bona = [e for e in db.cm_entries("train") if e.is_bonafide and e.utt in table]
    _, cohort = speaker_mean_cohort(np.stack([table[e.utt] for e in bona]), [e.speaker for e in bona])
    return cohort


def scorable_trials(cfg: Mapping, split: str, *tables: EmbeddingTable) -> list[SASVTrial]:
    """The split's trials whose test utterance has an entry in every table. Only skip_bad_audio leaves
    entries out; anything else missing is an error rather than a silently shorter trial list."""
    trials = database(cfg).sasv_trials(split)
    kept, missing = [], []
    for t in trials:
        (kept if all(t.utt in table for table in tables) else missing).append(t)
    if missing:
        if not cfg["skip_bad_audio"]:
            raise InputError(f"{split}: {len(missing)} trial(s) have no cached embedding of their test utterance "
                             f"(e.g. {missing[0].utt}); rerun the stages with this config")
        say(f"{split}: {len(missing)} trials skipped (test audio was unreadable and skip_bad_audio is on)")
    return kept


def write_asv_scores(cfg: Mapping, split: str, models: EmbeddingTable, tests: EmbeddingTable) -> None:
    exp = experiment(cfg)
    trials = [t for t in scorable_trials(cfg, split, tests) if t.speaker in models]
    scores = asv_trial_scores(cfg, split, trials, models, tests)
    write_sasv_scores(exp.scores("asv", split), sasv_rows(trials, scores))
    keys = np.array([t.key for t in trials])
    eer = det_eer(scores[keys == "target"], scores[keys == "nontarget"]).eer
    say(f"asv {split}: ASV EER (target vs nontarget) {100 * eer:.2f} % -> {exp.scores('asv', split)}")


def sasv_rows(trials: Sequence[SASVTrial], scores: np.ndarray) -> SASVScores:
    """Score-file rows of SASV trials (SASV 2022 format) with one score each."""
    return SASVScores([t.speaker for t in trials], [t.utt for t in trials], [t.attack for t in trials],
                      [t.key for t in trials], scores)


# ---------------------------------------------------------------------------------------------
# CM
# ---------------------------------------------------------------------------------------------
def cm_stage(cfg: Mapping, force: bool = False) -> dict[str, float]:
    """CM embeddings and scores of every CM protocol utterance; returns the CM EER (percent) per split."""
    check_stage_inputs(cfg, asv=False, cm=True)          # fail before compute
    db, exp, device = database(cfg), experiment(cfg), resolve_device(cfg["device"])
    model, eers = None, {}
    for split in cfg["splits"]:
        spec = cm_embeddings_spec(cfg, split, db)
        cached = _cached_or_none(spec, cfg, force, f"cm {split}")
        if cached is not None:
            ids, scores = cached["ids"].tolist(), cached["scores"]
        else:
            model = model or build_cm(cfg["cm"], device)
            out = extract(spec.inputs.items(), cm_embed_fn(model, device), crop_spec(cfg["cm"]),
                          batch_size=cfg["batch_size"], num_workers=cfg["num_workers"], desc=f"CM scores {split}",
                          skip_bad_audio=cfg["skip_bad_audio"], floor=InputFloor.of(model))
            _extracted(out, spec, f"cm {split}")
            save_cache(spec.path, spec.made_by, spec.inputs, {"ids": np.asarray(out.ids, dtype=str), **out.arrays},
                       skipped=out.skipped_ids)
            ids, scores = out.ids, out.arrays["scores"]
        by_utt = {e.utt: e for e in db.cm_entries(split)}
        kept = [by_utt[u] for u in ids]
        write_cm_scores(exp.scores("cm", split), CMScores(ids, [e.system for e in kept], [e.key for e in kept], scores))
        keys = np.array([e.key for e in kept])
        eers[split] = 100 * det_eer(scores[keys == "bonafide"], scores[keys == "spoof"]).eer
        say(f"cm {split}: CM EER {eers[split]:.2f} % -> {exp.scores('cm', split)}")
        if split in ENROLMENT_SPLITS:
            table = dict(zip(ids, scores))
            trials = scorable_trials(cfg, split, table)
            write_sasv_scores(exp.scores("cm_trials", split),
                              sasv_rows(trials, np.array([table[t.utt] for t in trials])))
    return eers


def protocol_digests(cfg: Mapping) -> dict[str, str]:
    """SHA-256 of every protocol file the configured splits read, recorded with results so that a number can be
    traced to the exact trial and enrolment lists that made it."""
    db = database(cfg)
    return {str(p): file_sha256(p) for p in db.protocol_files(cfg["splits"], enrolment_mode(cfg) == "concat")
            if p.exists()}
