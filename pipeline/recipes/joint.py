"""Joint optimisation: ASV and CM front-ends fine-tuned end to end with an embedding back-end.

Training trials are drawn from the ASVspoof train protocol (2-class or 4-class schemes of
data.datasets), on waveforms. Optional auxiliary losses keep each front-end doing its own job: a
verification loss on the ASV cosine of bona fide pairs, and the CM's cross-entropy on the test utterance.
Each epoch re-embeds the dev set with the current front-ends and selects by dev SASV-EER.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import ssl_models
from common.errors import InputError
from data.asvspoof import check_files_exist
from data.audio import CropSpec
from data.embeddings import EmbeddingTable
from data.trial_kinds import NONTARGET, TARGET
from data.trial_sampling import TRIAL_KINDS, SASVTrialSampler, SASVWaveTrialDataset
from engine import TrainData, is_main_process
from metrics.sasv import sasv_eers
from pipeline.stages.enrolment import enrol_mean, enrolment_audio, enrolment_form, speaker_models
from pipeline.stages.experiment import database
from pipeline.stages.extract import extract
from pipeline.stages.frontends import asv_embed_fn, cm_embed_fn
from pipeline.stages.sasv import TrialInputs, score_embeddings
from pipeline.stages.trials import asv_trial_scores

# Trial kinds travel in batches as their index in TRIAL_KINDS (tensors cannot hold strings).
TARGET_INDEX, NONTARGET_INDEX = TRIAL_KINDS.index(TARGET), TRIAL_KINDS.index(NONTARGET)


class JointSASV(nn.Module):
    """ASV front-end + CM front-end + back-end in one module, so the engine optimises and checkpoints all three."""

    def __init__(self, asv: nn.Module, cm: nn.Module, backend: nn.Module):
        super().__init__()
        self.asv, self.cm, self.backend = asv, cm, backend
        # auxiliary verification head: logit = scale * cosine + bias (target vs zero-effort nontarget)
        self.aux_scale = nn.Parameter(torch.tensor(10.0))
        self.aux_bias = nn.Parameter(torch.tensor(-5.0))

    def forward(self, enrol: torch.Tensor, test: torch.Tensor):
        enr = self.asv(enrol)
        tst = self.asv(test)
        cm_emb, cm_logits = self.cm(test)
        return self.backend(enr, tst, cm_emb), cm_logits, enr, tst


class _TrialsWithKind(Dataset):
    """Adds each trial's kind (its index in TRIAL_KINDS) to the waveform trial items, for the auxiliary losses."""

    def __init__(self, base: SASVWaveTrialDataset):
        self.base = base

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        enrol, test, _ = self.base[i]
        return enrol, test, TRIAL_KINDS.index(self.base.trials[i].kind)


def joint_train_data(cfg: Mapping, seed: int) -> TrainData:
    db = database(cfg)
    entries = db.cm_entries("train")
    paths = {e.utt: db.audio("train", e.utt) for e in entries}
    check_files_exist(paths.values(), f"{db.title} train audio in {db.audio_dir('train')}")
    scheme = cfg["sampling"]["scheme"]
    if scheme not in ("2class", "4class"):
        raise InputError("joint training samples waveform trials: sampling.scheme must be 2class or 4class, "
                         f"got {scheme!r}")
    joint = cfg["joint"]
    base = SASVWaveTrialDataset(SASVTrialSampler.from_cm_entries(entries, scheme), paths,
                                epoch_length=cfg["sampling"]["trials_per_epoch"] or len(entries),
                                n_samples=joint["test_samples"], enrol_samples=joint["enrol_samples"], seed=seed)
    return TrainData(_TrialsWithKind(base))


class JointTask:
    """Engine task for joint optimisation (see the module docstring)."""

    def __init__(self, cfg: Mapping):
        self.cfg = cfg
        self.joint = cfg["joint"]
        self._dev = None

    def param_groups(self, model: JointSASV) -> list[dict]:
        """The back-end at train.optimizer.lr, the front-ends at joint.frontend_lr, and the pre-trained weights of
        an SSL encoder inside a front-end (SSL-AASIST, SSL-ECAPA, ...) at its own `encoder.lr`. A frozen front-end
        (joint.freeze_asv / freeze_cm) and an encoder with `freeze: true` stay out of every group."""
        encoders = ssl_models.encoders(model)
        never = {id(p) for enc in encoders if enc.freeze is True for p in enc.encoder_parameters()}
        for part, frozen in ((model.asv, self.joint["freeze_asv"]), (model.cm, self.joint["freeze_cm"])):
            for p in part.parameters():
                p.requires_grad_(not frozen and id(p) not in never)
        pretrained = {id(p) for enc in encoders for p in enc.encoder_parameters()}
        front = [p for m in (model.asv, model.cm) for p in m.parameters()
                 if p.requires_grad and id(p) not in pretrained]
        back = list(model.backend.parameters()) + [model.aux_scale, model.aux_bias]
        groups = [{"params": back}]
        if front:
            groups.append({"params": front, "lr": self.joint["frontend_lr"]})
        groups += [{"params": [p for p in enc.encoder_parameters() if p.requires_grad], "lr": enc.lr}
                   for enc in encoders]
        return groups

    def on_epoch_start(self, model: JointSASV, epoch: int) -> None:
        """An SSL encoder with `freeze: N` is fine-tuned from epoch N."""
        ssl_models.set_epoch(model, epoch)

    def training_step(self, model: JointSASV, batch) -> tuple[torch.Tensor, dict]:
        enrol, test, kind = batch
        output, cm_logits, enr, tst = model(enrol, test)
        target = (kind == TARGET_INDEX).long()
        bona_fide_test = (kind == TARGET_INDEX) | (kind == NONTARGET_INDEX)   # same speaker or not, no spoof
        loss = model.backend.loss(output, target)
        logs = {"backend_loss": loss.detach()}
        if self.joint["aux_cm_weight"] > 0:
            weights = torch.tensor(self.joint["aux_cm_class_weights"], dtype=cm_logits.dtype, device=cm_logits.device)
            cm_loss = F.cross_entropy(cm_logits, bona_fide_test.long(), weight=weights)
            loss = loss + self.joint["aux_cm_weight"] * cm_loss
            logs["aux_cm_loss"] = cm_loss.detach()
        if self.joint["aux_asv_weight"] > 0:
            pairs = bona_fide_test
            if pairs.any():
                cos = F.cosine_similarity(enr[pairs], tst[pairs])
                logit = model.aux_scale * cos + model.aux_bias
                asv_loss = F.binary_cross_entropy_with_logits(logit, target[pairs].float())
            else:
                asv_loss = (model.aux_scale + model.aux_bias) * 0.0
            loss = loss + self.joint["aux_asv_weight"] * asv_loss
            logs["aux_asv_loss"] = asv_loss.detach()
        return loss, logs

    def evaluate(self, model: JointSASV) -> dict[str, float]:
        if not is_main_process():
            return {}
        inputs = embed_split(self.cfg, model, "dev")
        scores = score_embeddings(model.backend, inputs)
        return {f"dev_{k}": 100 * v for k, v in sasv_eers(scores, inputs.keys).items()}


def embed_split(cfg: Mapping, model: JointSASV, split: str) -> TrialInputs:
    """Embeds a split's trial and enrolment audio with the model's current front-ends (no caching)."""
    db = database(cfg)
    trials = db.sasv_trials(split)
    device = next(model.parameters()).device
    tests = sorted({t.utt for t in trials})
    form = enrolment_form(cfg)
    enrolment = enrolment_audio(db, split, form)
    asv_items = [(u, db.audio(split, u)) for u in tests]
    if form == "lists":     # the listed utterances are embedded with the tests; models are their means
        asv_items = list(dict(asv_items + enrolment).items())
    asv_crop = CropSpec.from_config(cfg["asv"]["crop"])
    was_training = model.training
    model.eval()
    try:
        asv_out = extract(asv_items, asv_embed_fn(model.asv, device), asv_crop,
                          batch_size=cfg["batch_size"], desc=f"ASV {split}")
        asv = EmbeddingTable(asv_out.ids, asv_out.arrays["embeddings"])
        if form == "lists":
            models = EmbeddingTable.from_mapping(speaker_models(db.enrolment(split), asv, enrol_mean(cfg["asv"])))
        else:
            enr_out = extract(enrolment, asv_embed_fn(model.asv, device), asv_crop,
                              desc=f"ASV enrolment {split}")
            models = EmbeddingTable(enr_out.ids, enr_out.arrays["embeddings"])
        cm_out = extract([(u, db.audio(split, u)) for u in tests], cm_embed_fn(model.cm, device),
                         CropSpec.from_config(cfg["cm"]["crop"]), batch_size=cfg["batch_size"], desc=f"CM {split}")
    finally:
        model.train(was_training)
    cm = EmbeddingTable(cm_out.ids, cm_out.arrays["embeddings"])
    cm_scores = dict(zip(cm_out.ids, cm_out.arrays["scores"], strict=True))
    return TrialInputs(split, trials, asv_trial_scores(cfg, split, trials, models, asv),
                       np.array([cm_scores[t.utt] for t in trials], dtype=np.float64), models, asv, cm)


__all__ = ["JointSASV", "JointTask", "joint_train_data", "embed_split"]
