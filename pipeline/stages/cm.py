"""The CM stage (save_cm_score.py): CM embedding and score of every CM protocol utterance.

Writes under `output_dir` (embeddings under `embeddings_dir` when set):

    embeddings/cm_{split}.npz         CM embedding and score (bona fide logit) of every CM protocol utterance
    scores/cm_{split}.txt             ASVspoof 2019 CM format `UTT ATTACK KEY SCORE`
    scores/asvspoof5/cm_{split}.tsv   the same scores as the ASVspoof 5 evaluation package's Track 1 file, with its
    scores/asvspoof5/cm_keys_{split}.tsv   key file (+ attack, codec, codec_q columns)
    scores/cm_trials_{split}.txt      the CM score of each SASV trial's test utterance (SASV 2022 format)

Under torchrun the ranks share the scoring (pipeline/stages/sharding.py); rank 0 writes the score files.
"""
from __future__ import annotations

import logging
from functools import partial
from typing import Mapping

import numpy as np

from data.audio import CropSpec
from data.databases import say_layout
from data.score_files import CMScores, write_asvspoof5_cm, write_cm_scores, write_sasv_scores
from metrics.eer import det_eer
from pipeline.stages.experiment import check_stage_inputs, database, experiment, resolve_device
from pipeline.stages.extract import Extracted, extract
from pipeline.stages.frontends import frontend
from pipeline.stages.outputs import cm_embeddings_spec
from pipeline.stages.sharding import extract_cached
from pipeline.stages.trials import sasv_rows, scorable_trials

log = logging.getLogger(__name__)


def cm_stage(cfg: Mapping, force: bool = False) -> dict[str, float]:
    """CM embeddings and scores of every CM protocol utterance; returns the CM EER (percent) per split (rank 0;
    other ranks of a torchrun job return {})."""
    check_stage_inputs(cfg, asv=False, cm=True)          # fail before compute
    db, exp, device = database(cfg), experiment(cfg), resolve_device(cfg["device"])
    runner, eers = None, {}

    def compute(items: list[tuple[str, str]], desc: str) -> Extracted:
        nonlocal runner
        runner = runner or frontend(cfg, "cm", experiment(cfg).embeddings, device)   # torch or ONNX (cm.runtime)
        return extract(items, runner.embed, CropSpec.from_config(cfg["cm"]["crop"]), batch_size=cfg["batch_size"],
                       num_workers=cfg["num_workers"], desc=desc, skip_bad_audio=cfg["skip_bad_audio"],
                       floor=runner.floor)

    for split in cfg["splits"]:
        spec = cm_embeddings_spec(cfg, split, db)
        arrays = extract_cached(spec, cfg, f"cm {split}", partial(compute, desc=f"CM scores {split}"), force=force,
                                batch_size=cfg["batch_size"])
        if arrays is None:      # a rank other than 0: rank 0 writes the score files
            continue
        ids, scores = arrays["ids"].tolist(), arrays["scores"]
        by_utt = {e.utt: e for e in db.cm_entries(split)}
        kept = [by_utt[u] for u in ids]
        rows = CMScores(ids, [e.system for e in kept], [e.key for e in kept], scores, [e.codec for e in kept],
                        [e.codec_q for e in kept])
        write_cm_scores(exp.scores("cm", split), rows)
        write_asvspoof5_cm(exp.package_scores("cm", split), exp.package_keys("cm", split), rows)
        keys = np.array([e.key for e in kept])
        eers[split] = 100 * det_eer(scores[keys == "bonafide"], scores[keys == "spoof"]).eer
        log.info(f"cm {split}: CM EER {eers[split]:.2f} % -> {exp.scores('cm', split)}")
        if split in db.trial_splits:
            table = dict(zip(ids, scores, strict=True))
            trials = scorable_trials(cfg, split, table)
            write_sasv_scores(exp.scores("cm_trials", split),
                              sasv_rows(trials, np.array([table[t.utt] for t in trials])))
    say_layout(db)
    return eers
