"""The ASV stage (save_asv_embeddings.py): embeddings of every utterance, speaker models, ASV trial scores.

Writes under `output_dir` (embeddings under `embeddings_dir` when set):

    embeddings/asv_{split}.npz        ASV embedding of every utterance of the split (CM protocol + enrolment)
    embeddings/asv_enrol_{split}.npz  speaker models (ids = speakers) for dev/eval (asv_enrol_concat_*: enr_audio form;
                                      lists: the embeddings averaged by the mode asv.enrol_mean)
    scores/asv_{split}.txt            SASV 2022 format `SPK UTT ATTACK KEY SCORE`: ASV cosine score per trial
    scores/asvspoof5/asv_{split}.tsv  the same as an ASVspoof 5 evaluation package Track 2 file (asv-score column; the
    scores/asvspoof5/asv_keys_{split}.tsv   package's `--asv_org` form), with its key file

Under torchrun the ranks share the embedding (pipeline/stages/sharding.py); rank 0 makes the speaker models from
lists and writes the scores.
"""
from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from common.errors import InputError
from data.audio import CropSpec
from data.databases import Database, say_layout
from data.embeddings import EmbeddingTable
from data.score_files import write_sasv_scores
from metrics.eer import det_eer
from pipeline.stages.cache import save_cache
from pipeline.stages.enrolment import enrol_mean, enrolment_form, speaker_models
from pipeline.stages.experiment import check_stage_inputs, database, experiment, resolve_device
from pipeline.stages.extract import DEFAULT_BATCH, Extracted, extract
from pipeline.stages.frontends import frontend
from pipeline.stages.outputs import asv_embeddings_spec, cached_or_none, speaker_models_spec, table_of
from pipeline.stages.sharding import Compute, extract_cached
from pipeline.stages.trials import asv_trial_scores, sasv_rows, scorable_trials, write_package_sasv

log = logging.getLogger(__name__)


def asv_stage(cfg: Mapping, force: bool = False) -> None:
    """ASV embeddings of every split, speaker models and ASV trial scores for dev/eval."""
    check_stage_inputs(cfg, asv=True, cm=False)          # fail before compute
    db, device = database(cfg), resolve_device(cfg["device"])
    runner = None

    def embedder(desc: str, batch_size: int, skip_bad_audio: bool) -> Compute:
        def compute(items: list[tuple[str, str]]) -> Extracted:
            nonlocal runner
            runner = runner or frontend(cfg, "asv", experiment(cfg).embeddings, device)   # torch or ONNX (asv.runtime)
            return extract(items, runner.embed, CropSpec.from_config(cfg["asv"]["crop"]), batch_size=batch_size,
                           num_workers=cfg["num_workers"], desc=desc, skip_bad_audio=skip_bad_audio,
                           floor=runner.floor)
        return compute

    for split in cfg["splits"]:
        spec = asv_embeddings_spec(cfg, split, db)
        arrays = extract_cached(spec, cfg, f"asv {split}",
                                embedder(f"ASV embeddings {split}", cfg["batch_size"], cfg["skip_bad_audio"]),
                                force=force, batch_size=cfg["batch_size"], rows="embeddings")
        table = None if arrays is None else table_of(arrays, spec.path)   # None: a rank other than 0
        if split in db.trial_splits:
            if enrolment_form(cfg) == "concat":
                models = _concat_speaker_models(cfg, db, split, force,
                                                embedder(f"ASV enrolment {split}", DEFAULT_BATCH, False))
            else:
                models = None if table is None else _list_speaker_models(cfg, db, split, table, force)
            if table is not None and models is not None:
                write_asv_scores(cfg, split, models, table)
    say_layout(db)


def _concat_speaker_models(cfg: Mapping, db: Database, split: str, force: bool,
                           compute: Compute) -> EmbeddingTable | None:
    """One embedding of each speaker's concatenated enr_audio file (None on ranks other than 0)."""
    spec = speaker_models_spec(cfg, split, db)
    arrays = extract_cached(spec, cfg, f"asv {split} speaker models", compute, force=force, batch_size=DEFAULT_BATCH)
    return None if arrays is None else table_of(arrays, spec.path)


def _list_speaker_models(cfg: Mapping, db: Database, split: str, table: EmbeddingTable,
                         force: bool) -> EmbeddingTable:
    """Each speaker's per-gender list embeddings averaged by the mode asv.enrol_mean."""
    spec = speaker_models_spec(cfg, split, db)
    cached = cached_or_none(spec, cfg, force, f"asv {split} speaker models")
    if cached is not None:
        return table_of(cached, spec.path)
    enrolment = db.enrolment(split)
    skipped = [u for u in spec.inputs.ids if u not in table]   # unreadable and skipped (skip_bad_audio)
    if skipped:
        log.info(f"asv {split}: {len(skipped)} enrolment utterances skipped (unreadable audio)")
        enrolment = {spk: [u for u in utts if u in table] for spk, utts in enrolment.items()}
    try:
        models = speaker_models(enrolment, table, enrol_mean(cfg["asv"]))
    except ValueError as e:
        raise InputError(str(e)) from None
    ids, emb = list(models), np.stack(list(models.values()))
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
