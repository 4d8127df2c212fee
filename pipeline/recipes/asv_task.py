"""Standalone speaker-model training (`task: asv`): VoxCeleb-layout data or ASVspoof bona fide speech.

Trains `asv.arch` with `loss.name` (voxceleb_trainer's losses) on speaker classification batches of
`train.batch_size` speakers x `data.utts_per_speaker` utterances, evaluates EER / minDCF on a trial list
after every epoch, keeps the best, and exports it as `asv_model.pt` for the SASV configs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

import asv
import ssl_models
from asv.checkpoint import load_asv_state, save_asv_state
from asv.losses import LOSSES, build_loss
from common.config import OPTIONAL_PATH, REQUIRED_PATH, ConfigError, FreeForm, Rule
from common.errors import InputError, MissingFilesError
from common.io import file_sha256
from common.provenance import provenance
from common.runs import RunFolders, write_results
from data.audio import CropSpec
from data.augment import build_augment
from data.databases import FORMAT, open_database
from data.datasets import SpeakerDataset
from data.embeddings import EmbeddingTable
from data.samplers import SpeakerBatchSampler
from data.voxceleb import TRIAL_LIST, VoxCeleb
from engine import (
    TrainData,
    fit,
    is_main_process,
    load_model_weights,
    seed_everything,
    train_schema,
)
from metrics.dcf import DCF_P001, DCF_P005, min_dcf
from metrics.eer import roc_eer
from pipeline.recipes.front_end_checks import check_training_config
from pipeline.stages.enrolment import enrol_mean, speaker_models
from pipeline.stages.extract import extract
from pipeline.stages.frontends import ASV_SECTION, asv_embed_fn

SCHEMA = {
    "task": Rule("asv", choices=("asv",)),
    "output_dir": REQUIRED_PATH,
    "data": {
        "voxceleb": OPTIONAL_PATH,     # VoxCeleb-layout root (wav/, train_list.txt, veri_test.txt), or
        "database": OPTIONAL_PATH,     # an ASVspoof 2019 LA folder: train on train bona fide, test on dev trials
        "format": FORMAT,              # the layout of data.database (docs/datasets.md); auto: the one it fits
        "train_list": OPTIONAL_PATH,   # default <voxceleb>/train_list.txt
        # O | O-clean | E | E-clean | H | H-clean (the VoxCeleb1 lists in trial_root) or a path; null: O
        "trial_list": TRIAL_LIST,
        "trial_root": OPTIONAL_PATH,   # folder whose wav/ holds the trial audio (a VoxCeleb1 root); default voxceleb
        "train_samples": Rule(32000, low=1),   # training crop (2 s); at least the model's shortest input
        "utts_per_speaker": Rule(1, low=1),    # M: metric losses (angleproto, ge2e, ...) need >= 2
        "augment": {"enabled": False, "options": FreeForm({})},   # data.augment.WaveAugment options
    },
    "asv": ASV_SECTION,            # asv.checkpoint: initial weights (fine-tuning), optional
    "loss": {"name": Rule("aamsoftmax", choices=tuple(LOSSES)), "options": FreeForm({})},
    "train": train_schema("eer"),
}


class SpeakerNet(nn.Module):
    """Speaker model + loss head in one module (voxceleb_trainer's SpeakerNet), trained as one."""

    def __init__(self, model: nn.Module, loss: nn.Module, utts_per_speaker: int, spec_augment: bool = False):
        super().__init__()
        self.model, self.loss, self.m, self.spec_augment = model, loss, utts_per_speaker, spec_augment

    def forward(self, wave: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # SpecAugment masks the model's features in training only (the model's spec_augment option sets them)
        emb = self.model(wave, aug=True) if self.spec_augment and self.training else self.model(wave)
        return self.loss(emb.view(-1, self.m, emb.shape[-1]), label.view(-1, self.m)[:, 0])


_TRIAL_CHUNK = 8192


class TrialList:
    """A verification trial list as (enrolment id, test id, label) with the audio of each id."""

    def __init__(self, pairs: list[tuple[str, str, int]], audio: dict[str, Path],
                 enrolment: Mapping[str, list[str]] | None = None):
        self.pairs, self.audio, self.enrolment = pairs, audio, enrolment

    def score(self, model: nn.Module, cfg: Mapping, device: torch.device) -> np.ndarray:
        out = extract(list(self.audio.items()), asv_embed_fn(model, device), CropSpec.from_config(cfg["asv"]["crop"]),
                      batch_size=cfg["train"]["batch_size"], desc="ASV dev embeddings")
        table = EmbeddingTable(out.ids, out.arrays["embeddings"])
        if self.enrolment is not None:   # ASVspoof: speaker models from the enrolment lists
            table = EmbeddingTable.from_mapping({**dict(zip(table.ids, table.embeddings, strict=True)),
                                                 **speaker_models(self.enrolment, table, enrol_mean(cfg["asv"]))})
        e = _unit(table.embeddings)
        a = np.array([table.index[p[0]] for p in self.pairs])
        b = np.array([table.index[p[1]] for p in self.pairs])
        # in chunks: VoxCeleb1-H (552k trials) with 512-d embeddings would copy 2 x 1.1 GB per evaluation
        out = np.empty(len(a), dtype=e.dtype)
        for start in range(0, len(a), _TRIAL_CHUNK):
            rows = slice(start, start + _TRIAL_CHUNK)
            out[rows] = np.einsum("ij,ij->i", e[a[rows]], e[b[rows]])
        return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def verification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    tar, non = scores[labels == 1], scores[labels == 0]
    return {"eer": 100 * roc_eer(tar, non).eer, "min_dcf_p001": min_dcf(tar, non, DCF_P001).value,
            "min_dcf_p005": min_dcf(tar, non, DCF_P005).value}


def _data(cfg: Mapping) -> tuple[list[Path], list[int], TrialList]:
    d = cfg["data"]
    if bool(d["voxceleb"]) == bool(d["database"]):
        raise InputError("task asv: set exactly one of data.voxceleb (VoxCeleb layout) "
                         "or data.database (ASVspoof 2019 LA)")
    if d["database"] and (d["trial_list"] is not None or d["trial_root"] is not None):
        raise ConfigError("data.trial_list and data.trial_root name VoxCeleb trials; with data.database task asv "
                          "selects on the database's dev trials: unset them")
    if d["voxceleb"]:
        vox = VoxCeleb.from_data_section(d)
        paths, labels, speakers = vox.train_set(check=True)
        trials = vox.trials()
        vox.check_disjoint(speakers, vox.trial_files(check=True))
        audio = {rel: vox.trial_wav(rel) for t in trials for rel in (t.enrol, t.test)}
        return paths, labels, TrialList([(t.enrol, t.test, t.label) for t in trials], audio)
    db = open_database(d["database"], d["format"])
    db.check_split("train")
    db.check_split("dev")
    bona = [e for e in db.cm_entries("train") if e.is_bonafide]
    speakers = {s: i for i, s in enumerate(sorted({e.speaker for e in bona}))}
    paths, labels = [db.audio("train", e.utt) for e in bona], [speakers[e.speaker] for e in bona]
    enrolment = db.enrolment("dev")
    trials = [t for t in db.sasv_trials("dev") if t.key != "spoof"]
    if not trials:
        raise InputError(f"{db.sasv_trials_path('dev')}: no target or nontarget trials (only spoofs), so no ASV "
                         f"metric can select an epoch")
    audio = {t.utt: db.audio("dev", t.utt) for t in trials}
    audio.update({u: db.audio("dev", u) for utts in enrolment.values() for u in utts})
    pairs = [(t.speaker, t.utt, int(t.key == "target")) for t in trials]
    return paths, labels, TrialList(pairs, audio, enrolment)


def _selection_split(cfg: Mapping) -> str:
    d = cfg["data"]
    if d["voxceleb"]:
        return VoxCeleb.from_data_section(d).trial_list_title
    return f"{open_database(d['database'], d['format']).title} dev"


def protocol_digests(cfg: Mapping) -> dict[str, str]:
    """SHA-256 of the lists that defined the training and selection data."""
    d = cfg["data"]
    if d["voxceleb"]:
        vox = VoxCeleb.from_data_section(d)
        files = [vox.train_list_path, vox.trial_list_path]
    else:
        files = open_database(d["database"], d["format"]).protocol_files(["train", "dev"])
    return {str(p): file_sha256(p) for p in files}


class SpeakerNetTask:
    """What every speaker-embedding task shares (engine.Task): a SpeakerNet's loss on a batch, and an SSL
    encoder's own learning rate and freeze-from-epoch switch. Subclasses add `evaluate`."""

    def param_groups(self, model: SpeakerNet) -> list[dict]:
        """An SSL encoder (SSL-ECAPA, SSL-MHFA) trains at its own `encoder.lr`; other models give one group."""
        return ssl_models.param_groups(model)

    def on_epoch_start(self, model: SpeakerNet, epoch: int) -> None:
        """An SSL encoder with `freeze: N` is fine-tuned from epoch N."""
        ssl_models.set_epoch(model, epoch)

    def training_step(self, model: SpeakerNet, batch) -> tuple[torch.Tensor, dict]:
        wave, label = batch
        loss, accuracy = model(wave, label)
        return loss, {"accuracy": accuracy.detach()}


class ASVTask(SpeakerNetTask):
    """Speaker classification batches; EER / minDCF on the trial list after each epoch."""

    def __init__(self, cfg: Mapping, trials: TrialList):
        self.cfg, self.trials = cfg, trials
        self.labels = np.array([p[2] for p in trials.pairs])

    def evaluate(self, model: SpeakerNet) -> dict[str, float]:
        if not is_main_process():
            return {}
        device = next(model.parameters()).device
        return verification_metrics(self.trials.score(model.model, self.cfg, device), self.labels)


def check(cfg: Mapping) -> tuple[list[Path], list[int], TrialList]:
    """Everything that needs no model (folders, training settings, crops the model can take, lists, audio present,
    batch size, initial checkpoint), before main.py locks or writes anything; returns the training data."""
    check_training_config(cfg, SCHEMA, "asv", "asv")
    if cfg["asv"]["checkpoint"] and not Path(cfg["asv"]["checkpoint"]).is_file():
        raise MissingFilesError(f"asv.checkpoint {cfg['asv']['checkpoint']}: checkpoint file does not exist")
    paths, labels, trials = _data(cfg)
    speakers = len(set(labels))
    if cfg["train"]["batch_size"] > speakers:
        raise InputError(f"train.batch_size is {cfg['train']['batch_size']} speakers per batch, "
                         f"but the training list has only {speakers} speakers")
    return paths, labels, trials


def folders(cfg: Mapping) -> RunFolders:
    return RunFolders.trained_in_output_dir(cfg["output_dir"], "asv_model.pt")


def run(cfg: Mapping, resume: bool = False, *,
        checked: tuple[list[Path], list[int], TrialList] | None = None) -> dict:
    """`checked`: the result of check(cfg) when the caller already ran it, e.g. main.py (None: run checks)."""
    out = Path(cfg["output_dir"])
    paths, labels, trials = checked if checked is not None else check(cfg)
    d = cfg["data"]
    seed_everything(cfg["train"]["seed"])  # the initial weights (fit seeds what follows)
    model = asv.build_model(cfg["asv"]["arch"], **cfg["asv"]["model"])
    if cfg["asv"]["checkpoint"]:
        load_asv_state(model, None, cfg["asv"]["checkpoint"], strict=True)
    loss = build_loss(cfg["loss"]["name"], model.embedding_dim, max(labels) + 1, **cfg["loss"]["options"])
    net = SpeakerNet(model, loss, d["utts_per_speaker"])
    augment = build_augment(dict(d["augment"]["options"]) if d["augment"]["enabled"] else None)
    dataset = SpeakerDataset(paths, labels, n_samples=d["train_samples"], seed=cfg["train"]["seed"], augment=augment)

    def batches(rank: int, world_size: int, seed: int, batch_size: int) -> SpeakerBatchSampler:
        return SpeakerBatchSampler(labels, batch_size, d["utts_per_speaker"], seed=seed, rank=rank,
                                   world_size=world_size)

    result = fit(net, ASVTask(cfg, trials), TrainData(dataset, batch_sampler=batches), cfg["train"], out, resume=resume)
    if not is_main_process():
        return {}
    best = load_model_weights(net, result.best_checkpoint or result.last_checkpoint)
    save_asv_state(out / "asv_model.pt", net.model, net.loss, arch=cfg["asv"]["arch"],
                   model_config=json.dumps(dict(cfg["asv"]["model"])))
    metrics = {k: float(v) for k, v in best["metrics"].items() if k in ("eer", "min_dcf_p001", "min_dcf_p005")}
    metrics["best_epoch"] = int(best["epoch"])
    write_results(out, {**metrics, "selected_on": _selection_split(cfg)},
                  provenance(cfg, checkpoints={"initial": cfg["asv"]["checkpoint"], "asv_model": out / "asv_model.pt"},
                             protocols=protocol_digests(cfg), seeds={"train": cfg["train"]["seed"]},
                             device=cfg["train"]["device"],
                             database=open_database(d["database"], d["format"]) if d["database"] else None))
    print(f"ASV {cfg['asv']['arch']}: EER {metrics.get('eer', float('nan')):.2f} %, minDCF(0.01) "
          f"{metrics.get('min_dcf_p001', float('nan')):.4f} (best epoch {metrics['best_epoch']}) "
          f"-> {out / 'asv_model.pt'}")
    return metrics
