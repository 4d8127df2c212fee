"""Countermeasures (`task: cm`): AASIST / AASIST-L / LCNN / SSL-AASIST, trained or evaluated.

mode train: trains on the corpus's train split (ASVspoof 2019 LA, ASVspoof 5, your own lists), from scratch or
    from `cm.checkpoint` (e.g. the official AASIST.pth), selects by dev CM EER, reports every split in
    `eval_splits` with the best weights, and exports `cm_model.pt`.
mode evaluate: scores `eval_splits` with `cm.checkpoint` (a trained or published model) and reports, nothing
    trained: the CM-only evaluation sets (ASVspoof 2021 LA / DF, In-the-Wild) and any other corpus. The scores go
    through the stage code (same crop, same score as save_cm_score.py) and are cached like the stages' (reused
    while everything that made them is the same).
Both write scores/cm_<split>.txt (ASVspoof 2019 CM format) and results.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

import cm
import ssl_models
from cm.checkpoint import load_cm_state, save_cm_state
from cm.losses import LOSSES, build_loss
from common.config import REQUIRED_PATH, ConfigError, FreeForm, Rule
from common.errors import InputError, MissingFilesError
from common.io import file_sha256
from common.provenance import provenance
from common.runs import RunFolders, write_results
from data.asvspoof import check_files_exist, listed_at
from data.audio import CropSpec
from data.augment import build_augment
from data.databases import FORMAT, Database, open_database, say_layout
from data.datasets import CMDataset
from data.score_files import CMScores, write_asvspoof5_cm, write_cm_scores
from engine import (
    TrainData,
    distributed,
    fit,
    is_main_process,
    load_model_weights,
    seed_everything,
    train_schema,
)
from metrics.breakdown import Conditions, cm_breakdown, format_breakdown, per_condition
from metrics.eer import det_eer
from pipeline.recipes.front_end_checks import check_training_config
from pipeline.stages.cache import Inputs, ScoreMemo
from pipeline.stages.cli import SYNC_TIMEOUT_S
from pipeline.stages.experiment import Experiment, resolve_device
from pipeline.stages.extract import Extracted, InputFloor, ModelCall, extract
from pipeline.stages.frontends import CM_SECTION, build_cm, cm_embed_fn, frontend_identity
from pipeline.stages.outputs import CacheSpec
from pipeline.stages.sharding import extract_cached

MODES = ("train", "evaluate")

SCHEMA = {
    "task": Rule("cm", choices=("cm",)),
    "database": REQUIRED_PATH,     # the ASVspoof 2019 LA folder
    "output_dir": REQUIRED_PATH,
    "data": {
        "format": FORMAT,              # the layout of `database` (docs/datasets.md); auto: the one the folder fits
        "train_samples": Rule(64600, low=1),   # random training crop (AASIST: 64600 = 4.04 s); >= the model's floor
        "augment": {"enabled": False, "options": FreeForm({})},
    },
    "cm": CM_SECTION,              # cm.checkpoint: initial weights (fine-tuning), optional
    "loss": {"name": Rule("WeightedCE", choices=tuple(LOSSES)), "options": FreeForm({})},   # WeightedCE | OCSoftmax
    "mode": Rule("train", choices=MODES),
    # splits scored with the final weights (mode evaluate: the only ones read); each must be a split of the corpus
    "eval_splits": Rule(["dev", "eval"], nonempty=True, unique=True, items=Rule("dev", kind=str, nonempty=True)),
    "train": train_schema("dev_cm_eer"),
}


class CMNet(nn.Module):
    """CM model + loss (the OC-softmax loss has a learnable centre), trained and checkpointed as one."""

    def __init__(self, model: nn.Module, loss: nn.Module):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, wave: torch.Tensor, label: torch.Tensor | None = None):
        embedding, logits = self.model(wave)
        if label is None:
            return self.score(embedding, logits)
        return self.loss(embedding, logits, label)

    def score(self, embedding: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The loss's own score: the bona fide logit (wce) or the cosine to the OC-softmax centre."""
        return self.loss.score(embedding, logits)


def split_metrics(split: str, entries: list, scores: np.ndarray) -> dict:
    """A split's results.json entries: the ASVspoof 5 Track 1 metrics (minDCF, actDCF, Cllr) beside the EER, and
    the same per attack, codec condition and codec quality (metrics/breakdown.py), since a pooled number hides which
    attacks and channels a countermeasure misses."""
    breakdown = cm_breakdown([e.key for e in entries], scores, Conditions.of_entries(entries))
    out = {f"{split}_cm_{m}": breakdown["pooled"][m] for m in ("min_dcf", "act_dcf", "cllr")}
    out[f"{split}_cm_eer_per_attack"] = per_condition(breakdown, "attack", "eer")
    out[f"{split}_cm_breakdown"] = breakdown
    return out


def print_split_metrics(metrics: Mapping, splits: list[str]) -> None:
    for s in splits:
        print(f"\n{s}: minDCF {metrics[f'{s}_cm_min_dcf']:.5f}, actDCF {metrics[f'{s}_cm_act_dcf']:.5f}, "
              f"Cllr {metrics[f'{s}_cm_cllr']:.5f} bits, EER {metrics[f'{s}_cm_eer']:.3f} %")
        tables = format_breakdown(metrics[f"{s}_cm_breakdown"], "cm")
        if tables:
            print(tables)


def cm_eer(net: CMNet, cfg: Mapping, db: Database, split: str,
           device: torch.device) -> tuple[float, list, np.ndarray]:
    entries = db.cm_entries(split)
    # the loss's own score of the model's outputs; a ModelCall on the model alone, so that the SASV stage scoring this
    # split with the exported model reuses these outputs within the demo (pipeline/stages/cache.py, OutputMemo)
    embed = ModelCall(net.model, device, lambda out: {"scores": net.score(*out)})
    out = extract([(e.utt, db.audio(split, e.utt)) for e in entries], embed, CropSpec.from_config(cfg["cm"]["crop"]),
                  batch_size=cfg["train"]["batch_size"], desc=f"CM {split}")
    scores = out.arrays["scores"]
    labels = np.array([e.label for e in entries])
    return 100 * det_eer(scores[labels == 1], scores[labels == 0]).eer, entries, scores


class CMTask:
    """engine.Task: the CM loss on labelled crops; dev CM EER after each evaluated epoch. `memo` keeps each
    epoch's dev scores with its weights' fingerprint, so `run` scores the selected epoch's dev once (`scores`)."""

    def __init__(self, cfg: Mapping, db: Database):
        self.cfg, self.db = cfg, db
        self.memo = ScoreMemo()

    def scores(self, model: CMNet, split: str, device: torch.device) -> tuple[float, list, np.ndarray]:
        """cm_eer of `split`, or what this task already computed with these very weights on that device type."""
        return self.memo.get_or_compute((split, device.type), model,
                                        lambda: cm_eer(model, self.cfg, self.db, split, device))

    def param_groups(self, model: CMNet) -> list[dict]:
        """An SSL encoder (SSL-AASIST) trains at its own `encoder.lr`; other models give one group."""
        return ssl_models.param_groups(model)

    def on_epoch_start(self, model: CMNet, epoch: int) -> None:
        """An SSL encoder with `freeze: N` is fine-tuned from epoch N."""
        ssl_models.set_epoch(model, epoch)

    def training_step(self, model: CMNet, batch) -> tuple[torch.Tensor, dict]:
        wave, label = batch
        return model(wave, label), {}

    def evaluate(self, model: CMNet) -> dict[str, float]:
        if not is_main_process():
            return {}
        return {"dev_cm_eer": self.scores(model, "dev", next(model.parameters()).device)[0]}


def check(cfg: Mapping) -> Database:
    """Everything that needs no model (folders, training settings, crops the model can take, protocols, audio
    present, initial checkpoint), before main.py locks or writes anything; returns the database (its protocols
    parsed once)."""
    check_training_config(cfg, SCHEMA, "cm", "cm")
    if cfg["cm"]["checkpoint"] and not Path(cfg["cm"]["checkpoint"]).is_file():
        raise MissingFilesError(f"cm.checkpoint {cfg['cm']['checkpoint']}: checkpoint file does not exist")
    if cfg["mode"] == "evaluate" and not cfg["cm"]["checkpoint"]:
        raise ConfigError("mode evaluate scores a trained or published countermeasure: set cm.checkpoint")
    db = open_database(cfg["database"], cfg["data"]["format"])
    absent = [s for s in _splits(cfg) if s not in db.splits]
    if absent:
        raise ConfigError(f"{'eval_splits' if absent[0] in cfg['eval_splits'] else 'mode train'}: {absent[0]!r} is not "
                          f"a split of {db.title} ({db.root} has {', '.join(db.splits)})"
                          + ("; a CM-only evaluation set is scored with mode: evaluate" if cfg["mode"] == "train"
                             else ""))
    for split in _splits(cfg):
        check_files_exist((db.audio(split, e.utt) for e in db.cm_entries(split)),
                          f"{db.title} {split} audio in {db.audio_dir(split)}", lambda p, s=split: listed_at(db, s, p))
    return db


def _splits(cfg: Mapping) -> list[str]:
    """The splits a run reads: train and dev to train and select, then eval_splits (mode evaluate: only those)."""
    return list(dict.fromkeys([*(("train", "dev") if cfg["mode"] == "train" else ()), *cfg["eval_splits"]]))


def protocol_digests(cfg: Mapping) -> dict[str, str]:
    """SHA-256 of the CM protocols that defined the training, selection and evaluation data."""
    db = open_database(cfg["database"], cfg["data"]["format"])
    return {str(p): file_sha256(p) for p in dict.fromkeys(db.cm_protocol_path(s) for s in _splits(cfg))}


def folders(cfg: Mapping) -> RunFolders:
    if cfg["mode"] == "evaluate":    # nothing trained; the score cache is checked on use, so --overwrite keeps it
        return RunFolders(Path(cfg["output_dir"]), None, (("output_dir", cfg["output_dir"]),), ("embeddings",))
    return RunFolders.trained_in_output_dir(cfg["output_dir"], "cm_model.pt")


def run(cfg: Mapping, resume: bool = False, *, checked: Database | None = None) -> dict:
    """`checked`: the result of check(cfg) when the caller already ran it, e.g. main.py (None: run checks)."""
    out = Path(cfg["output_dir"])
    db = checked if checked is not None else check(cfg)
    if cfg["mode"] == "evaluate":
        return _evaluate(cfg, db)
    seed_everything(cfg["train"]["seed"])  # the initial weights (fit seeds what follows)
    model = cm.build_model(cfg["cm"]["arch"], **cfg["cm"]["model"])
    if cfg["cm"]["checkpoint"]:
        load_cm_state(model, cfg["cm"]["checkpoint"])
    net = CMNet(model, build_loss(cfg["loss"]["name"], model.embedding_dim, **cfg["loss"]["options"]))
    d = cfg["data"]
    augment = build_augment(dict(d["augment"]["options"]) if d["augment"]["enabled"] else None)
    dataset = CMDataset.from_database(db, "train", n_samples=d["train_samples"], train=True,
                                      seed=cfg["train"]["seed"], augment=augment)
    task = CMTask(cfg, db)
    result = fit(net, task, TrainData(dataset), cfg["train"], out, resume=resume)
    if not is_main_process():
        return {}
    best = load_model_weights(net, result.best_checkpoint or result.last_checkpoint)
    # The loss travels with the model: an OC-softmax CM scores by its learnt centre, not by a logit.
    save_cm_state(out / "cm_model.pt", net.model, loss=net.loss, arch=cfg["cm"]["arch"], loss_name=cfg["loss"]["name"])
    device = next(net.parameters()).device
    net.eval()
    with torch.inference_mode():
        evaluated = {s: task.scores(net, s, device) for s in cfg["eval_splits"]}   # dev: reused from fit
    metrics: dict = {f"{s}_cm_eer": eer for s, (eer, _, _) in evaluated.items()}
    metrics["best_epoch"] = int(best["epoch"])
    for s, (_, entries, scores) in evaluated.items():
        metrics.update(split_metrics(s, entries, scores))
    metrics["selected_on"] = "dev"
    say_layout(db)
    write_results(out, metrics, provenance(
        cfg, checkpoints={"initial": cfg["cm"]["checkpoint"], "cm_model": out / "cm_model.pt"},
        protocols=protocol_digests(cfg), seeds={"train": cfg["train"]["seed"]}, device=cfg["train"]["device"],
        database=db))
    shown = ", ".join(f"{s} {metrics[f'{s}_cm_eer']:.2f} %" for s in cfg["eval_splits"])
    print(f"CM {cfg['cm']['arch']}: EER {shown} (best epoch {metrics['best_epoch']}) -> {out / 'cm_model.pt'}")
    print_split_metrics(metrics, cfg["eval_splits"])
    return metrics


def _evaluate(cfg: Mapping, db: Database) -> dict:
    """Mode evaluate: each of eval_splits scored by cm.checkpoint through the stage code (cached in
    <output_dir>/embeddings like the stages' caches), its metrics written to results.json. Under torchrun
    (`torchrun --nproc_per_node=N main.py ...`) the ranks share the scoring as the stages do
    (pipeline/stages/sharding.py): each scores a slice, rank 0 merges the slices and writes every output."""
    # alone: no group, every call a no-op
    with distributed.closing(distributed.setup("cpu", SYNC_TIMEOUT_S, backend="gloo")) as ranks:
        return _score_splits(cfg, db, ranks.is_main)


def _score_splits(cfg: Mapping, db: Database, is_main: bool) -> dict:
    out, device = Path(cfg["output_dir"]), resolve_device(cfg["train"]["device"])
    model, metrics, shown = None, {}, []
    files = Experiment(out, out / "embeddings")
    for split in cfg["eval_splits"]:
        entries = db.cm_entries(split)
        if len({e.key for e in entries}) < 2:
            raise InputError(f"{db.cm_protocol_path(split)}: {split} has only {entries[0].key} utterances: no CM EER")
        items = Inputs.of([(e.utt, db.audio(split, e.utt)) for e in entries])
        # scored by the trained torch model in memory whatever cm.runtime says: its identity says so
        spec = CacheSpec(files.cm_embeddings(split), frontend_identity({**cfg["cm"], "runtime": "torch"}, "cm"), items,
                         "main.py (task cm, mode evaluate)")

        def compute(items: list[tuple[str, str]], split: str = split) -> Extracted:
            nonlocal model
            model = model or build_cm(cfg["cm"], device)
            return extract(items, cm_embed_fn(model, device), CropSpec.from_config(cfg["cm"]["crop"]),
                           batch_size=cfg["train"]["batch_size"], num_workers=cfg["train"]["num_workers"],
                           desc=f"CM scores {split}", floor=InputFloor.of(model))

        cached = extract_cached(spec, cfg, f"cm {split}", compute, force=False, batch_size=cfg["train"]["batch_size"])
        if cached is None:      # a rank other than 0: rank 0 writes the outputs
            continue
        scores = cached["scores"]
        rows = CMScores([e.utt for e in entries], [e.system for e in entries], [e.key for e in entries], scores,
                        [e.codec for e in entries], [e.codec_q for e in entries])
        write_cm_scores(files.scores("cm", split), rows)
        write_asvspoof5_cm(files.package_scores("cm", split), files.package_keys("cm", split), rows)
        labels = np.array([e.label for e in entries])
        metrics[f"{split}_cm_eer"] = 100 * det_eer(scores[labels == 1], scores[labels == 0]).eer
        metrics.update(split_metrics(split, entries, scores))
        shown.append(f"{split} {metrics[f'{split}_cm_eer']:.2f} %")
    if not is_main:
        return {}
    say_layout(db)
    write_results(out, metrics, provenance(cfg, checkpoints={"cm": cfg["cm"]["checkpoint"]},
                                           protocols=protocol_digests(cfg), device=cfg["train"]["device"],
                                           database=db))
    print(f"CM {cfg['cm']['arch']} ({cfg['cm']['checkpoint']}) on {db.title}: EER {', '.join(shown)}")
    print_split_metrics(metrics, cfg["eval_splits"])
    return metrics
