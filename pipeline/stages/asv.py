"""The ASV stage (save_asv_embeddings.py): embeddings of every utterance, speaker models, ASV trial scores.

Writes under `output_dir` (embeddings under `embeddings_dir` when set):

    embeddings/asv_{split}.npz        ASV embedding of every utterance of the split (CM protocol + enrolment)
    embeddings/asv_enrol_{split}.npz  speaker models (ids = speakers) for dev/eval (asv_enrol_concat_*: enr_audio form;
                                      lists: the mean of raw or L2-normalised embeddings, asv.enrol_mean)
    scores/asv_{split}.txt            SASV 2022 format `SPK UTT ATTACK KEY SCORE`: ASV cosine score per trial
    scores/asvspoof5/asv_{split}.tsv  the same as an ASVspoof 5 evaluation package Track 2 file (asv-score column; the
    scores/asvspoof5/asv_keys_{split}.tsv   package's `--asv_org` form), with its key file
"""
from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from common.errors import InputError
from data.databases import Database, say_layout
from data.embeddings import EmbeddingTable, speaker_models
from data.score_files import write_sasv_scores
from metrics.eer import det_eer
from pipeline.stages.cache import save_cache
from pipeline.stages.experiment import check_stage_inputs, database, enrolment_form, experiment, resolve_device
from pipeline.stages.extract import InputFloor, extract
from pipeline.stages.frontends import asv_embed_fn, build_asv, crop_spec, unit_enrol_mean
from pipeline.stages.outputs import (
    asv_embeddings_spec,
    cached_or_none,
    require_extracted,
    speaker_models_spec,
    table_of,
)
from pipeline.stages.trials import asv_trial_scores, sasv_rows, scorable_trials, write_package_sasv

log = logging.getLogger(__name__)


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
        cached = cached_or_none(spec, cfg, force, f"asv {split}")
        if cached is not None:
            table = table_of(cached, spec.path)
        else:
            out = extract(spec.inputs.items(), asv_embed_fn(get_model(), device), crop_spec(cfg["asv"]),
                          batch_size=cfg["batch_size"], num_workers=cfg["num_workers"], desc=f"ASV embeddings {split}",
                          skip_bad_audio=cfg["skip_bad_audio"], floor=InputFloor.of(get_model()))
            require_extracted(out, spec, f"asv {split}")
            save_cache(spec.path, spec.made_by, spec.inputs, {"ids": np.asarray(out.ids, dtype=str), **out.arrays},
                       skipped=out.skipped_ids)
            table = EmbeddingTable(out.ids, out.arrays["embeddings"], str(spec.path))
            log.info(f"asv {split}: {len(out.ids)} embeddings -> {spec.path}")
        if split in db.trial_splits:
            models = _speaker_models(cfg, db, split, table, force, get_model)
            write_asv_scores(cfg, split, models, table)
    say_layout(db)


def _speaker_models(cfg: Mapping, db: Database, split: str, table: EmbeddingTable, force: bool,
                    get_model) -> EmbeddingTable:
    """Speaker models: mean of per-gender list embeddings (raw or L2-normalised: asv.enrol_mean), or one embedding
    of the concatenated enr_audio file."""
    spec, device = speaker_models_spec(cfg, split, db), resolve_device(cfg["device"])
    cached = cached_or_none(spec, cfg, force, f"asv {split} speaker models")
    if cached is not None:
        return table_of(cached, spec.path)
    skipped: list[str] = []
    if enrolment_form(cfg) == "lists":
        enrolment = db.enrolment(split)
        skipped = [u for u in spec.inputs.ids if u not in table]   # unreadable and skipped (skip_bad_audio)
        if skipped:
            log.info(f"asv {split}: {len(skipped)} enrolment utterances skipped (unreadable audio)")
            enrolment = {spk: [u for u in utts if u in table] for spk, utts in enrolment.items()}
        try:
            models = speaker_models(enrolment, table, normalize=unit_enrol_mean(cfg["asv"]))
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


def write_asv_scores(cfg: Mapping, split: str, models: EmbeddingTable, tests: EmbeddingTable) -> None:
    exp = experiment(cfg)
    trials = [t for t in scorable_trials(cfg, split, tests) if t.speaker in models]
    scores = asv_trial_scores(cfg, split, trials, models, tests)
    write_sasv_scores(exp.scores("asv", split), sasv_rows(trials, scores))
    write_package_sasv(cfg, split, "asv", trials, {"asv": scores})
    keys = np.array([t.key for t in trials])
    eer = det_eer(scores[keys == "target"], scores[keys == "nontarget"]).eer
    log.info(f"asv {split}: ASV EER (target vs nontarget) {100 * eer:.2f} % -> {exp.scores('asv', split)}")
