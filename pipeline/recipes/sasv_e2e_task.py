"""`task: sasv_e2e` for main.py: one embedding network for speaker verification and spoof rejection at once,
scored by a single cosine (the SASV2 baseline: Mun et al., "Towards single integrated spoofing-aware speaker
verification embeddings", Interspeech 2023). Its three-stage recipe is three configs of this one task:

    stage 1  speakers only: a VoxCeleb layout (data.voxceleb), AAM-softmax + angular prototypical;
    stage 2  copy-synthesis: that bona fide speech plus its vocoded copies (data.copy_synthesis, written by
             copy_synthesis.py) as one spoof class;
    stage 3  in domain: ASVspoof 2019 LA train, or train + dev (data.train_on), bona fide speakers + spoof class.

Classes are the training speakers plus one spoof class (every spoofed utterance, whatever its claimed speaker
and attack); batches hold `train.batch_size` bona fide pairs of distinct speakers and `sampler.spoof_pairs`
spoof pairs claiming those speakers (data.samplers.SASVPairSampler); the loss is asv.losses.sasv_e2e.

Scoring: speaker model = mean of the L2-normalised embeddings of the enrolment utterances (`asv.enrol_mean: unit`,
this task's default; or the embedding of the concatenated enr_audio file: `enrolment: concat`); SASV score =
cosine(model, test). With data.database set, every epoch is scored on LA dev (unless dev is trained on: then
selection uses the training loss and the log and results.json say so; eval is never scored before training
ends), and the selected epoch on dev and eval:
scores/sasv_{split}.txt (SASV 2022 format, readable by evaluate.py) and results.json with the metrics of the
other systems. The network is exported as `sasv_embedding.pt` (asv.checkpoint layout: it also loads as the
ASV front-end of any SASV config, or as the next stage's initial weights). As the ASV front-end of a SASV config
with the same asv section (arch, model, crop, `enrol_mean: unit`) and `backend.name: asv_only`, the stages give
these very SASV scores, so ablate.py can fuse it with a CM and verify.py can use it (docs/backends.md).
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

import asv
from asv.checkpoint import load_asv_state, save_asv_state
from asv.losses.sasv_e2e import SASVEmbeddingLoss
from asv.score_norm import normalise_scores
from common.config import OPTIONAL_PATH, REQUIRED_PATH, ConfigError, FreeForm, Rule
from common.dispatch import check_kwargs
from common.errors import InputError, MissingFilesError
from common.io import file_sha256, load_weights
from common.provenance import provenance
from common.runs import RunFolders, write_results
from data.asvspoof import SASVTrial, check_files_exist, protocol_lines
from data.audio import CropSpec
from data.augment import AugmentChain, SpeedPerturb, build_augment
from data.databases import FORMAT, Database, open_database
from data.datasets import SpeakerDataset
from data.embeddings import EmbeddingTable
from data.samplers import SASVPairSampler
from data.score_files import write_sasv_scores
from data.voxceleb import TRIAL_LIST, VoxCeleb
from engine import (
    TrainData,
    fit,
    is_main_process,
    load_model_weights,
    seed_everything,
    train_schema,
)
from metrics.report import evaluate_trials, format_table, json_ready
from pipeline.recipes.asv_task import SpeakerNet, SpeakerNetTask, TrialList, verification_metrics
from pipeline.recipes.front_end_checks import check_training_config
from pipeline.stages.cache import ScoreMemo
from pipeline.stages.enrolment import ENROL_MEAN, ENROLMENT, enrol_mean, enrolment_audio, speaker_models
from pipeline.stages.experiment import resolve_device
from pipeline.stages.extract import InputFloor, extract
from pipeline.stages.frontends import ASV_SECTION, asv_embed_fn, frontends_record
from pipeline.stages.trials import sasv_rows

log = logging.getLogger(__name__)

SPOOF = "spoof"                    # name of the spoof class in the exported class list
LA_SPLITS_TRAINABLE = ("train", "dev")

SCHEMA = {
    "task": Rule("sasv_e2e", choices=("sasv_e2e",)),
    "output_dir": REQUIRED_PATH,
    # 1 | 2 | 3: a label recorded in results.json (the data keys decide what trains)
    "stage": Rule(None, kind=int, choices=(1, 2, 3)),
    "data": {
        "voxceleb": OPTIONAL_PATH,         # VoxCeleb-layout root: bona fide speakers (stages 1 and 2)
        "format": FORMAT,                  # the layout of data.database (docs/datasets.md); auto: the one it fits
        "train_list": OPTIONAL_PATH,       # default <voxceleb>/train_list.txt
        # selection when there is no LA database: O | O-clean | E | E-clean | H | H-clean (the VoxCeleb1 lists in
        # trial_root) or a path; null: O (veri_test.txt)
        "trial_list": TRIAL_LIST,
        "trial_root": OPTIONAL_PATH,       # folder whose wav/ holds the trial audio (VoxCeleb1); default voxceleb
        "copy_synthesis": OPTIONAL_PATH,   # folder written by copy_synthesis.py: its copies are the spoof class
        "database": OPTIONAL_PATH,         # ASVspoof 2019 LA folder: dev/eval SASV scoring, and training when train_on
        # LA splits trained on (stage 3): [train] or [train, dev]; bona fide + spoofs (eval never)
        "train_on": Rule([], unique=True, items=Rule("train", choices=LA_SPLITS_TRAINABLE)),
        # training crop (what the model gets, after speed perturbation); shorter audio is repeat-padded
        "train_samples": Rule(32000, low=1),
        # e.g. [0.9, 1.0, 1.1]: each item played at one of these speeds ([]: off)
        "speed_perturb": Rule([], items=Rule(1.0, low=SpeedPerturb.FACTORS[0], high=SpeedPerturb.FACTORS[1])),
        "augment": {"enabled": False, "options": FreeForm({})},   # data.augment.WaveAugment (MUSAN / RIR)
    },
    "enrolment": ENROLMENT,        # lists: mean of the listed utterances | concat: the enr_audio file
    "enr_audio": OPTIONAL_PATH,    # default <database>/enr_audio
    "eval_batch_size": Rule(16, low=1),   # extraction batch size when scoring
    # the embedding network; asv.checkpoint: initial weights (an earlier stage); speaker models average unit vectors
    "asv": {**ASV_SECTION, "enrol_mean": ENROL_MEAN.with_default("unit")},
    "init": {
        "reset_head": False,       # True: start a new classification head (another class set than the checkpoint's)
    },
    # AAM-softmax margin and scale, angular prototypical w and b (asv.losses.sasv_e2e)
    "loss": {"margin": Rule(0.2, low=0.0), "scale": Rule(30.0, above=0.0), "init_w": Rule(10.0, above=0.0),
             "init_b": Rule(-5.0)},
    "sampler": {
        "spoof_pairs": Rule(8, low=0),   # spoof pairs per (global) batch; train.batch_size: bona fide pairs
        "max_utts_per_speaker": Rule(None, kind=int, low=1),
    },
    "train": train_schema("dev_sasv_eer"),
}

DEV_METRICS = ("dev_sasv_eer", "dev_sv_eer", "dev_spf_eer", "dev_min_a_dcf")


# ================================================================================================
# Training data
# ================================================================================================
@dataclass
class TrainingSet:
    """Every training item with its class (speaker, or the spoof class last) and the speaker it is of or
    claims (spoofs), as the sampler needs them; `sources` counts items per origin for the log."""
    paths: list
    classes: np.ndarray
    speakers: np.ndarray
    spoof: np.ndarray
    class_names: list[str]
    sources: dict[str, int] = field(default_factory=dict)

    @property
    def spoof_class(self) -> int | None:
        return len(self.class_names) - 1 if self.class_names and self.class_names[-1] == SPOOF else None


Where = Callable[[], str]   # names where a spoof is listed; called only for an error message


def _protocol_line(protocol: Path, utt: str) -> str:
    """'<protocol> line N' of an utterance (blank lines count, as in an editor): read again on the error path only."""
    number = next((n for n, fields in protocol_lines(protocol) if len(fields) > 1 and fields[1] == utt), None)
    return f"{protocol} line {number}" if number is not None else str(protocol)


def _la_items(db: Database, splits: Sequence[str]) -> tuple[list, list[str], list[tuple[Path, str, Where]]]:
    """(bona fide paths, their speakers, spoofs as (path, claimed speaker, where)) of the LA splits."""
    paths, speakers, spoofs = [], [], []
    for split in splits:
        db.check_split(split)
        protocol = db.cm_protocol_path(split)
        for e in db.cm_entries(split):
            if e.is_bonafide:
                paths.append(db.audio(split, e.utt))
                speakers.append(e.speaker)
            else:
                spoofs.append((db.audio(split, e.utt), e.speaker, functools.partial(_protocol_line, protocol, e.utt)))
    return paths, speakers, spoofs


def _copy_items(folder: str) -> list[tuple[Path, str, Where]]:
    """Vocoded copies (copy_synthesis.py) as spoofs claiming the speaker of their source."""
    from data.vocoders import LIST_NAME, read_copy_synthesis_list

    where = functools.partial(str, Path(folder) / LIST_NAME)
    return [(e.path, e.speaker, where) for e in read_copy_synthesis_list(folder)]


def training_set(cfg: Mapping) -> TrainingSet:
    """The configured sources as one list. A spoof must claim a speaker the bona fide data trains on (its
    negatives are that speaker's): otherwise one line names the spoof and where it is listed."""
    d = cfg["data"]
    bona_paths: list = []
    bona_speakers: list[str] = []
    spoofs: list[tuple[Path, str, Where]] = []
    sources: dict[str, int] = {}
    if d["voxceleb"]:
        vox = VoxCeleb.from_data_section(d)
        paths, labels, names = vox.train_set(check=True)
        by_label = {v: k for k, v in names.items()}
        bona_paths += list(paths)
        bona_speakers += [by_label[int(label)] for label in labels]
        sources["VoxCeleb bona fide"] = len(paths)
    if d["train_on"]:
        paths, speakers, la_spoofs = _la_items(open_database(d["database"], d["format"]), d["train_on"])
        bona_paths += paths
        bona_speakers += speakers
        spoofs += la_spoofs
        sources[f"LA {'+'.join(d['train_on'])} bona fide"] = len(paths)
        sources[f"LA {'+'.join(d['train_on'])} spoofed"] = len(la_spoofs)
    if d["copy_synthesis"]:
        copies = _copy_items(d["copy_synthesis"])
        spoofs += copies
        sources["copy-synthesis"] = len(copies)
    names = sorted(set(bona_speakers))
    index = {s: i for i, s in enumerate(names)}
    for path, claimed, where in spoofs:
        if claimed in ("", "-"):
            raise InputError(f"{where()}: spoofed utterance {Path(path).name} claims no speaker (speaker column "
                             f"{claimed!r}); the spoof class needs the speaker each spoof imitates")
        if claimed not in index:
            raise InputError(f"{where()}: spoofed utterance {Path(path).name} claims speaker {claimed}, who has no "
                             f"bona fide utterance in the training data ({len(names)} speakers)")
    check_files_exist([p for p, _, _ in spoofs], "spoofed training audio")
    spoof_class = len(names)
    class_names = names + ([SPOOF] if spoofs else [])
    return TrainingSet(
        paths=bona_paths + [p for p, _, _ in spoofs],
        classes=np.array([index[s] for s in bona_speakers] + [spoof_class] * len(spoofs), dtype=np.int64),
        speakers=np.array([index[s] for s in bona_speakers] + [index[c] for _, c, _ in spoofs], dtype=np.int64),
        spoof=np.r_[np.zeros(len(bona_paths), bool), np.ones(len(spoofs), bool)],
        class_names=class_names, sources=sources)


def _augment(cfg: Mapping) -> tuple[int, Callable | None]:
    """(samples the dataset crops, the augmentation chain): speed first (it changes the length), then MUSAN/RIR."""
    d = cfg["data"]
    speed = SpeedPerturb(d["speed_perturb"], d["train_samples"]) if d["speed_perturb"] else None
    wave = build_augment(dict(d["augment"]["options"]) if d["augment"]["enabled"] else None)
    if speed is None:
        return d["train_samples"], wave
    return speed.input_samples, speed if wave is None else AugmentChain(speed, wave)


# ================================================================================================
# Scoring: one cosine between speaker model and test embedding
# ================================================================================================
class SASVTrialScorer:
    """A split's SASV trials scored with the single embedding: every test and enrolment file embedded once,
    speaker models as the enrolment embeddings averaged by the mode `asv.enrol_mean` (the task's default `unit`:
    L2-normalised; `pipeline.stages.enrolment`, as the SASV stages average them), or the enr_audio file's
    embedding."""

    def __init__(self, cfg: Mapping, db: Database, split: str):
        self.cfg, self.db, self.split = cfg, db, split
        self.trials: list[SASVTrial] = db.sasv_trials(split)
        self.form, self.enrol_mean = cfg["enrolment"], enrol_mean(cfg["asv"])
        self.enrol = enrolment_audio(db, split, self.form)
        self.tests = [(u, db.audio(split, u)) for u in dict.fromkeys(t.utt for t in self.trials)]
        self.keys = [t.key for t in self.trials]

    def check(self) -> None:
        check_files_exist([p for _, p in self.tests] + [p for _, p in self.enrol], f"{self.split} scoring audio")

    def score(self, model: nn.Module, device: torch.device) -> np.ndarray:
        # enrolment ids get a prefix: with `concat` they are speaker ids, which must not meet utterance ids
        items = [("test/" + u, p) for u, p in self.tests] + [("enrol/" + i, p) for i, p in self.enrol]
        out = extract(items, asv_embed_fn(model, device), CropSpec.from_config(self.cfg["asv"]["crop"]),
                      batch_size=self.cfg["eval_batch_size"], desc=f"single-embedding {self.split}",
                      floor=InputFloor.of(model))
        rows = dict(zip(out.ids, out.arrays["embeddings"], strict=True))
        tests = EmbeddingTable.from_mapping({u[5:]: e for u, e in rows.items() if u.startswith("test/")})
        enrolled = EmbeddingTable.from_mapping({i[6:]: e for i, e in rows.items() if i.startswith("enrol/")})
        if self.form == "lists":
            models = EmbeddingTable.from_mapping(speaker_models(self.db.enrolment(self.split), enrolled,
                                                                self.enrol_mean))
        else:
            models = enrolled
        models.require([t.speaker for t in self.trials], f"the {self.split} SASV trials (speaker models)")
        return normalise_scores("none", models.embeddings, tests.embeddings,
                                [models.index[t.speaker] for t in self.trials],
                                [tests.index[t.utt] for t in self.trials])


class SASVEmbeddingTask(SpeakerNetTask):
    """engine.Task: the sasv_e2e loss on pair batches; dev SASV metrics after each epoch (or VoxCeleb SV EER
    when no LA database is configured, or nothing when dev is in the training data). `memo` keeps each epoch's
    dev SASV scores with its weights' fingerprint, so `run` scores the selected epoch's dev once (`scores`)."""

    def __init__(self, cfg: Mapping, dev: SASVTrialScorer | None, vox_trials: TrialList | None):
        self.cfg, self.dev, self.vox_trials = cfg, dev, vox_trials
        self.vox_labels = np.array([p[2] for p in vox_trials.pairs]) if vox_trials is not None else None
        self.memo = ScoreMemo()

    def scores(self, scorer: SASVTrialScorer, model: nn.Module, device: torch.device) -> np.ndarray:
        """`scorer.score(model, device)`, or what this task already computed with these very weights on that
        device type."""
        return self.memo.get_or_compute((scorer.split, device.type), model, lambda: scorer.score(model, device))

    def evaluate(self, model: SpeakerNet) -> dict[str, float]:
        if not is_main_process():
            return {}
        device = next(model.parameters()).device
        if self.dev is not None:
            m = evaluate_trials(self.dev.keys, self.scores(self.dev, model.model, device))
            return {f"dev_{k}": float(v) for k, v in m.items() if f"dev_{k}" in DEV_METRICS}
        if self.vox_trials is not None:
            return verification_metrics(self.vox_trials.score(model.model, self.cfg, device), self.vox_labels)
        return {}


# ================================================================================================
# Checks, run
# ================================================================================================
def _selection(cfg: Mapping) -> str:
    """Which data selects the kept epoch (recorded in results.json and logged)."""
    d, metric = cfg["data"], cfg["train"]["select_metric"]
    if metric == "train_loss":
        why = "; dev is in the training data" if "dev" in d["train_on"] else ""
        return f"training loss (no held-out data{why}; eval is never scored before training ends)"
    if d["database"]:
        return f"{metric} on {open_database(d['database'], d['format']).title} dev"
    return f"{metric} on {VoxCeleb.from_data_section(d).trial_list_title}"


def _selects_on_voxceleb(cfg: Mapping) -> bool:
    """Whether the kept epoch is chosen on the VoxCeleb trial list (no LA database, a trial-list metric)."""
    return cfg["train"]["select_metric"] != "train_loss" and not cfg["data"]["database"]


def check(cfg: Mapping) -> TrainingSet:
    """Everything that needs no model, before main.py locks or writes anything; returns the training data."""
    d, metric = cfg["data"], cfg["train"]["select_metric"]
    check_training_config(cfg, SCHEMA, "sasv_e2e", "asv")
    if d["train_on"] and not d["database"]:
        raise ConfigError("data.train_on names LA splits but data.database is not set")
    if not d["voxceleb"] and not d["train_on"]:
        raise ConfigError("task sasv_e2e: no training data; set data.voxceleb (stages 1-2) and/or data.train_on "
                          "with data.database (stage 3)")
    if d["copy_synthesis"] and not Path(d["copy_synthesis"]).is_dir():
        raise MissingFilesError(f"data.copy_synthesis {d['copy_synthesis']}: folder does not exist "
                                f"(write it with copy_synthesis.py)")
    if cfg["asv"]["checkpoint"] and not Path(cfg["asv"]["checkpoint"]).is_file():
        raise MissingFilesError(f"asv.checkpoint {cfg['asv']['checkpoint']}: checkpoint file does not exist")
    if metric in DEV_METRICS:
        if not d["database"]:
            raise ConfigError(f"train.select_metric {metric} needs data.database (LA dev); without it use eer "
                              f"(VoxCeleb trials) or train_loss")
        if "dev" in d["train_on"]:
            raise ConfigError(f"train.select_metric is {metric}, but dev is in data.train_on: a model selected on "
                              f"data it trained on is not selected; use train_loss (and nothing looks at eval)")
    elif metric in ("eer", "min_dcf_p001", "min_dcf_p005") and (d["database"] or not d["voxceleb"]):
        raise ConfigError(f"train.select_metric {metric} is the VoxCeleb trial-list metric; with data.database "
                          f"use one of {', '.join(DEV_METRICS)}")
    elif metric not in DEV_METRICS + ("train_loss", "eer", "min_dcf_p001", "min_dcf_p005"):
        raise ConfigError(f"train.select_metric {metric!r} is not computed by task sasv_e2e (choose from "
                          f"{', '.join(DEV_METRICS + ('eer', 'train_loss'))})")
    if d["database"]:
        db = open_database(d["database"], d["format"], cfg["enr_audio"])
        for split in ("dev", "eval"):
            db.check_split(split, enr_audio=cfg["enrolment"] == "concat")
    data = training_set(cfg)
    if _selects_on_voxceleb(cfg):
        vox = VoxCeleb.from_data_section(d)
        vox.check_disjoint(data.class_names, vox.trial_files(check=True))
    elif d["trial_list"] is not None or d["trial_root"] is not None:
        raise ConfigError(f"data.trial_list and data.trial_root name the VoxCeleb trials that select the epoch; this "
                          f"run selects by {_selection(cfg)}: unset them")
    pairs = cfg["train"]["batch_size"]
    speakers = len(set(data.speakers[~data.spoof].tolist()))
    if pairs > speakers:
        raise InputError(f"train.batch_size is {pairs} bona fide pairs of distinct speakers per batch, but the "
                         f"training data has only {speakers} speakers")
    if cfg["sampler"]["spoof_pairs"] and data.spoof_class is None:
        log.info("no spoofed training data (stage 1): batches hold bona fide pairs only")
    _check_head(cfg, data.class_names)
    return data


def folders(cfg: Mapping) -> RunFolders:
    return RunFolders.trained_in_output_dir(cfg["output_dir"], "sasv_embedding.pt")


def _check_head(cfg: Mapping, classes: list[str]) -> None:
    """Before anything is written: an initial checkpoint whose head was trained for another class set is one
    clear error unless init.reset_head (a silent re-initialisation would hide a wrong checkpoint)."""
    path = cfg["asv"]["checkpoint"]
    if not path or cfg["init"]["reset_head"]:
        return
    state = load_weights(path)
    theirs = state.get("classes") if isinstance(state, Mapping) else None
    if theirs is not None and list(theirs) != classes:
        same = "same count, other speakers" if len(theirs) == len(classes) else "another class set"
        raise InputError(f"{path}: its head has {len(theirs)} classes, this run {len(classes)} ({same}); set "
                         f"init.reset_head=true to start a new head from the pretrained network")


def _initial_weights(cfg: Mapping, model: nn.Module, loss: SASVEmbeddingLoss) -> None:
    """An earlier stage's weights (checked by `_check_head`): the network, and its head unless init.reset_head."""
    path = cfg["asv"]["checkpoint"]
    if cfg["init"]["reset_head"]:
        load_asv_state(model, None, path, strict=True)
        log.info(f"initial weights {path}: model loaded, classification head re-initialised (init.reset_head)")
    else:
        load_asv_state(model, loss, path, strict=True)


def run(cfg: Mapping, resume: bool = False, *, checked: TrainingSet | None = None) -> dict:
    """`checked`: the result of check(cfg) when the caller already ran it, e.g. main.py (None: run checks)."""
    out = Path(cfg["output_dir"])
    data = checked if checked is not None else check(cfg)
    d = cfg["data"]
    spec_augment = bool(cfg["asv"]["model"].get("spec_augment"))   # the model's masks, applied in training only
    log.info("training data: " + ", ".join(f"{n} {k}" for k, n in data.sources.items())
             + f"; {len(data.class_names)} classes" + (" (speakers + spoof)" if data.spoof_class is not None else ""))
    log.info(f"augmentation: {'on ' + json.dumps(dict(d['augment']['options'])) if d['augment']['enabled'] else 'off'}"
             f"; speed perturbation: {d['speed_perturb'] or 'off'}; SpecAugment: {'on' if spec_augment else 'off'}")
    log.info(f"model selection: {_selection(cfg)}")
    seed_everything(cfg["train"]["seed"])
    model = asv.build_model(cfg["asv"]["arch"], **cfg["asv"]["model"])
    options = dict(cfg["loss"])
    check_kwargs(SASVEmbeddingLoss, "sasv_e2e", options, "loss", fixed=("embedding_dim", "num_classes", "spoof_class"))
    loss = SASVEmbeddingLoss(model.embedding_dim, len(data.class_names), data.spoof_class, **options)
    if cfg["asv"]["checkpoint"]:
        _initial_weights(cfg, model, loss)
    net = SpeakerNet(model, loss, 2, spec_augment=spec_augment)
    samples, augment = _augment(cfg)
    dataset = SpeakerDataset(data.paths, data.classes, n_samples=samples, seed=cfg["train"]["seed"], augment=augment)
    spoof_pairs = cfg["sampler"]["spoof_pairs"] if data.spoof_class is not None else 0

    def batches(rank: int, world_size: int, seed: int, batch_size: int) -> SASVPairSampler:
        if spoof_pairs % world_size:
            raise ConfigError(f"sampler.spoof_pairs ({spoof_pairs}) must divide evenly between {world_size} ranks")
        return SASVPairSampler(data.speakers, data.spoof, batch_size, spoof_pairs // world_size, seed=seed,
                               rank=rank, world_size=world_size,
                               max_utts_per_speaker=cfg["sampler"]["max_utts_per_speaker"])

    db = open_database(d["database"], d["format"], cfg["enr_audio"]) if d["database"] else None
    scorers = {s: SASVTrialScorer(cfg, db, s) for s in ("dev", "eval")} if db is not None else {}
    for scorer in scorers.values():
        scorer.check()
    selecting = cfg["train"]["select_metric"] != "train_loss"
    dev = scorers.get("dev") if selecting else None
    vox_trials = None
    if _selects_on_voxceleb(cfg):    # the list and its audio were checked by `check`
        vox = VoxCeleb.from_data_section(d)
        trials = vox.trials()
        vox_trials = TrialList([(t.enrol, t.test, t.label) for t in trials],
                               {r: vox.trial_wav(r) for t in trials for r in (t.enrol, t.test)})
    task = SASVEmbeddingTask(cfg, dev, vox_trials)
    result = fit(net, task, TrainData(dataset, batch_sampler=batches), cfg["train"], out, resume=resume)
    if not is_main_process():
        return {}
    best = load_model_weights(net, result.best_checkpoint or result.last_checkpoint)
    save_asv_state(out / "sasv_embedding.pt", net.model, net.loss, arch=cfg["asv"]["arch"],
                   model_config=json.dumps(dict(cfg["asv"]["model"])), classes=data.class_names,
                   spoof_class=data.spoof_class, note=f"task sasv_e2e stage {cfg['stage']}")
    payload: dict = {"system": "single SASV embedding", "stage": cfg["stage"], "selected_on": _selection(cfg),
                     "best_epoch": int(best["epoch"]), "classes": len(data.class_names),
                     "training_data": data.sources}
    exported = {**cfg["asv"], "checkpoint": str(out / "sasv_embedding.pt")}
    if scorers:
        device = resolve_device(cfg["train"]["device"])
        net.model.to(device).eval()
        with torch.no_grad():
            for split, scorer in scorers.items():
                scores = task.scores(scorer, net.model, device)    # dev: reused from fit when selected on it
                write_sasv_scores(out / "scores" / f"sasv_{split}.txt", sasv_rows(scorer.trials, scores))
                payload[split] = json_ready(evaluate_trials(scorer.keys, scores))
        print(format_table({f"single SASV embedding ({s})": payload[s] for s in scorers}))
    else:
        payload.update({k: float(v) for k, v in best["metrics"].items() if k in ("eer", "min_dcf_p001")})
    payload["frontends"] = frontends_record({**cfg, "asv": exported}, kinds=("asv",))
    write_results(out, payload, provenance(
        cfg, checkpoints={"initial": cfg["asv"]["checkpoint"], "sasv_embedding": out / "sasv_embedding.pt"},
        protocols=protocol_digests(cfg), seeds={"train": cfg["train"]["seed"]}, device=cfg["train"]["device"],
        database=db))
    print(f"single SASV embedding ({cfg['asv']['arch']}, stage {cfg['stage']}): best epoch {payload['best_epoch']} "
          f"by {_selection(cfg)} -> {out / 'sasv_embedding.pt'}")
    return payload


def protocol_digests(cfg: Mapping) -> dict[str, str]:
    """SHA-256 of the lists that defined the training, selection and scoring data."""
    d = cfg["data"]
    db = open_database(d["database"], d["format"], cfg["enr_audio"]) if d["database"] else None
    files: list[Path] = []
    if d["voxceleb"]:
        vox = VoxCeleb.from_data_section(d)
        files += [vox.train_list_path] + ([vox.trial_list_path] if vox.trial_list_path.is_file() else [])
    if db is not None:
        files += db.protocol_files(sorted({*d["train_on"], "dev", "eval"}), concat=cfg["enrolment"] == "concat")
    if d["copy_synthesis"]:
        files += sorted(Path(d["copy_synthesis"]).glob("copy_synthesis_list.txt"))
    return {str(p): file_sha256(p) for p in files}
