"""The offline SASV stages: ASV embeddings and scores, CM embeddings and scores, SASV trial scores.

Each stage reads the config's `database` and writes under `output_dir`:

    embeddings/asv_{split}.npz        ASV embedding of every utterance of the split (CM protocol + enrolment)
    embeddings/asv_enrol_{split}.npz  speaker models (ids = speakers) for dev/eval (asv_enrol_concat_*: enr_audio form)
    embeddings/cm_{split}.npz         CM embedding and score (bona fide logit) of every CM protocol utterance
    scores/asv_{split}.txt            SASV 2022 format `SPK UTT ATTACK KEY SCORE`: ASV cosine score per trial
    scores/cm_{split}.txt             ASVspoof 2019 CM format `UTT ATTACK KEY SCORE`
    scores/cm_trials_{split}.txt      the CM score of each SASV trial's test utterance (SASV 2022 format)
    scores/sasv_{split}.txt           the back-end's SASV score per trial (SASV 2022 format)

Work is skipped when its output exists and was made by the same model, checkpoint and crop (`--force`
recomputes); every file is written atomically.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from asv.score_norm import normalise_scores, speaker_mean_cohort
from common.config import REQUIRED, ConfigError, FreeForm
from common.errors import InputError
from data.asvspoof import ENROLMENT_SPLITS, LADatabase, SASVTrial, check_files_exist
from data.datasets import EmbeddingTable, speaker_models
from data.score_files import CMScores, SASVScores, write_cm_scores, write_sasv_scores
from metrics.eer import det_eer
from pipeline.cache import file_digest, fingerprint, load_if_current, save_with_fingerprint
from pipeline.extract import extract
from pipeline.frontends import (ASV_SECTION, CM_SECTION, asv_embed_fn, build_asv, build_cm, cm_embed_fn,
                                crop_spec)

SPLITS = ("train", "dev", "eval")

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
    "device": "auto",
    "asv": ASV_SECTION,
    "cm": CM_SECTION,
    "score_norm": {"method": "none", "top_n": 100},   # ASV score normalisation: none|znorm|tnorm|snorm|asnorm
    "backend": {"name": "score_sum", "options": FreeForm({}), "checkpoint": None, "fit_on": "dev"},
    "det": True,                   # draw DET curves next to results.json
}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def database(cfg: Mapping) -> LADatabase:
    return LADatabase(cfg["database"], cfg["enr_audio"])


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _frontend_fingerprint(section: Mapping, kind: str) -> str:
    return fingerprint(kind=kind, arch=section["arch"], model=dict(section["model"]),
                       checkpoint=file_digest(section["checkpoint"]), crop=dict(section["crop"]))


# ---------------------------------------------------------------------------------------------
# ASV
# ---------------------------------------------------------------------------------------------
def asv_stage(cfg: Mapping, force: bool = False) -> None:
    """ASV embeddings of every split, speaker models and ASV trial scores for dev/eval."""
    db, exp, device = database(cfg), experiment(cfg), resolve_device(cfg["device"])
    concat = _enrolment_mode(cfg) == "concat"
    ids_per_split = {s: db.check_split(s, enr_audio=concat) for s in cfg["splits"]}  # fail before compute
    check_trials(db, cfg["splits"])
    fp = _frontend_fingerprint(cfg["asv"], "asv")
    model = None
    for split, ids in ids_per_split.items():
        path = exp.asv_embeddings(split)
        cached = None if force else load_if_current(path, fp)
        if cached is not None:
            _say(f"asv {split}: {path} is up to date, skipped")
            table = EmbeddingTable(cached["ids"].tolist(), cached["embeddings"], str(path))
        else:
            model = model or build_asv(cfg["asv"], device)
            out = extract([(u, db.flac(split, u)) for u in ids], asv_embed_fn(model, device), crop_spec(cfg["asv"]),
                          batch_size=cfg["batch_size"], num_workers=cfg["num_workers"],
                          desc=f"ASV embeddings {split}", skip_bad_audio=cfg["skip_bad_audio"])
            save_with_fingerprint(path, fp, {"ids": np.asarray(out.ids, dtype=str), **out.arrays})
            table = EmbeddingTable(out.ids, out.arrays["embeddings"], str(path))
            _say(f"asv {split}: {len(out.ids)} embeddings -> {path}")
        if split in ENROLMENT_SPLITS:
            models = _speaker_models(cfg, db, split, table, fp, force, lambda: model or build_asv(cfg["asv"], device))
            write_asv_scores(cfg, split, models, table)


def check_trials(db: LADatabase, splits: Sequence[str]) -> None:
    """Fails before compute when a SASV trial's test audio is missing or not in the split's CM protocol
    (the stages embed the CM protocol utterances, so such a trial could never be scored)."""
    for split in (s for s in splits if s in ENROLMENT_SPLITS):
        utts = list(dict.fromkeys(t.utt for t in db.sasv_trials(split)))
        check_files_exist((db.flac(split, u) for u in utts),
                          f"{db.sasv_trials_path(split)}: test audio in {db.flac_dir(split)}")
        known = {e.utt for e in db.cm_entries(split)}
        unknown = [u for u in utts if u not in known]
        if unknown:
            shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
            raise InputError(f"{db.sasv_trials_path(split)}: {len(unknown)} test utterances are not in the CM protocol "
                             f"{db.cm_protocol_path(split)}: {shown}")


def _enrolment_mode(cfg: Mapping) -> str:
    mode = cfg["enrolment"]
    if mode not in ("lists", "concat"):
        raise ConfigError(f"'enrolment' must be 'lists' or 'concat', got {mode!r}")
    return mode


def _speaker_models(cfg: Mapping, db: LADatabase, split: str, table: EmbeddingTable, fp: str, force: bool,
                    get_model) -> EmbeddingTable:
    """Speaker models: mean of per-gender list embeddings, or one embedding of the concatenated enr_audio file."""
    exp, device = experiment(cfg), resolve_device(cfg["device"])
    mode = _enrolment_mode(cfg)
    path = exp.asv_models(split, mode)
    fp_models = fingerprint(base=fp, enrolment=mode)
    cached = None if force else load_if_current(path, fp_models)
    if cached is not None:
        return EmbeddingTable(cached["ids"].tolist(), cached["embeddings"], str(path))
    if mode == "lists":
        enrolment = db.enrolment(split)
        if cfg["skip_bad_audio"]:  # average what could be read; a speaker with nothing left still fails
            kept = {spk: [u for u in utts if u in table] for spk, utts in enrolment.items()}
            dropped = sum(len(v) for v in enrolment.values()) - sum(len(v) for v in kept.values())
            if dropped:
                _say(f"asv {split}: {dropped} enrolment utterances skipped (unreadable audio)")
            enrolment = kept
        try:
            models = speaker_models(enrolment, table)
        except ValueError as e:
            raise InputError(str(e)) from None
        ids, emb = list(models), np.stack(list(models.values()))
    else:
        stems = db.enrolment_concat(split)
        out = extract([(spk, db.enr_audio_file(split, stem)) for spk, stem in stems.items()],
                      asv_embed_fn(get_model(), device), crop_spec(cfg["asv"]), num_workers=cfg["num_workers"],
                      desc=f"ASV enrolment {split}")
        ids, emb = out.ids, out.arrays["embeddings"]
    save_with_fingerprint(path, fp_models, {"ids": np.asarray(ids, dtype=str), "embeddings": emb})
    return EmbeddingTable(ids, emb, str(path))


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
    """Score-normalisation cohort: mean ASV embedding of each training speaker's bona fide utterances."""
    exp, db = experiment(cfg), database(cfg)
    path = exp.asv_embeddings("train")
    if not path.exists():
        raise InputError(f"score_norm needs the train ASV embeddings ({path}); include 'train' in 'splits'")
    table = EmbeddingTable.load(path)
    bona = [e for e in db.cm_entries("train") if e.is_bonafide and e.utt in table]
    _, cohort = speaker_mean_cohort(np.stack([table[e.utt] for e in bona]), [e.speaker for e in bona])
    return cohort


def write_asv_scores(cfg: Mapping, split: str, models: EmbeddingTable, tests: EmbeddingTable) -> None:
    db, exp = database(cfg), experiment(cfg)
    trials = [t for t in db.sasv_trials(split) if t.utt in tests]   # test audio skipped as unreadable: no score
    dropped = len(db.sasv_trials(split)) - len(trials)
    if dropped:
        _say(f"asv {split}: {dropped} trials skipped (test audio was unreadable and skipped)")
    scores = asv_trial_scores(cfg, split, trials, models, tests)
    write_sasv_scores(exp.scores("asv", split), _sasv_rows(trials, scores))
    keys = np.array([t.key for t in trials])
    eer = det_eer(scores[keys == "target"], scores[keys == "nontarget"]).eer
    _say(f"asv {split}: ASV EER (target vs nontarget) {100 * eer:.2f} % -> {exp.scores('asv', split)}")


def _sasv_rows(trials: Sequence[SASVTrial], scores: np.ndarray) -> SASVScores:
    return SASVScores([t.speaker for t in trials], [t.utt for t in trials], [t.attack for t in trials],
                      [t.key for t in trials], scores)


# ---------------------------------------------------------------------------------------------
# CM
# ---------------------------------------------------------------------------------------------
def cm_stage(cfg: Mapping, force: bool = False) -> dict[str, float]:
    """CM embeddings and scores of every CM protocol utterance; returns the CM EER (percent) per split."""
    db, exp, device = database(cfg), experiment(cfg), resolve_device(cfg["device"])
    entries = {s: db.cm_entries(s) for s in cfg["splits"]}
    for split, ents in entries.items():  # fail before compute
        check_files_exist((db.flac(split, e.utt) for e in ents), f"ASVspoof 2019 LA {split} audio in {db.flac_dir(split)}")
    check_trials(db, cfg["splits"])
    fp = _frontend_fingerprint(cfg["cm"], "cm")
    model, eers = None, {}
    for split, ents in entries.items():
        path = exp.cm_embeddings(split)
        cached = None if force else load_if_current(path, fp)
        if cached is not None:
            _say(f"cm {split}: {path} is up to date, skipped")
            ids, scores = cached["ids"].tolist(), cached["scores"]
        else:
            model = model or build_cm(cfg["cm"], device)
            out = extract([(e.utt, db.flac(split, e.utt)) for e in ents], cm_embed_fn(model, device),
                          crop_spec(cfg["cm"]), batch_size=cfg["batch_size"], num_workers=cfg["num_workers"],
                          desc=f"CM scores {split}", skip_bad_audio=cfg["skip_bad_audio"])
            save_with_fingerprint(path, fp, {"ids": np.asarray(out.ids, dtype=str), **out.arrays})
            ids, scores = out.ids, out.arrays["scores"]
        by_utt = {e.utt: e for e in ents}
        kept = [by_utt[u] for u in ids]
        write_cm_scores(exp.scores("cm", split), CMScores(ids, [e.system for e in kept], [e.key for e in kept], scores))
        keys = np.array([e.key for e in kept])
        eers[split] = 100 * det_eer(scores[keys == "bonafide"], scores[keys == "spoof"]).eer
        _say(f"cm {split}: CM EER {eers[split]:.2f} % -> {exp.scores('cm', split)}")
        if split in ENROLMENT_SPLITS:
            table = dict(zip(ids, scores))
            trials = [t for t in db.sasv_trials(split) if t.utt in table]
            write_sasv_scores(exp.scores("cm_trials", split),
                              _sasv_rows(trials, np.array([table[t.utt] for t in trials])))
    return eers
