"""The SASV stage (save_sasv_score.py): back-ends over the stage outputs, scoring trial lists, and results.

Score-level back-ends (fusion.ScoreBackend) are fitted on `backend.fit_on` (dev by default) from the
per-trial ASV and CM scores. Embedding-level back-ends (fusion.EmbeddingBackend) are trained by
`main.py` on cached embeddings (pipeline/recipes/frozen.py) or end to end (pipeline/recipes/joint.py) and
score from a checkpoint; either kind comes ready from pipeline.stages.backend.ready_backend. Writes
`scores/sasv_{split}.txt` (SASV 2022 format), the same trials' SASV, ASV and CM scores as the ASVspoof 5 evaluation
package's Track 2 file `scores/asvspoof5/sasv_{split}.tsv` with its key file `sasv_keys_{split}.tsv`, results.json
and DET plots.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from common.errors import InputError
from common.provenance import provenance
from common.runs import write_results as write_results_json
from data.asvspoof import SASVTrial
from data.databases import say_layout
from data.embeddings import EmbeddingTable
from data.score_files import SASVScores, write_sasv_scores
from fusion import backend_class
from metrics.breakdown import Conditions, format_breakdown, results_entry, sasv_breakdown
from metrics.det import plot_det
from metrics.report import evaluate_trials, format_table, json_ready
from pipeline.stages.backend import backend_checkpoint, check_fit_on, ready_backend
from pipeline.stages.experiment import (
    check_outputs,
    check_sasv_config,
    database,
    experiment,
    protocol_digests,
    trial_splits,
)
from pipeline.stages.frontends import check_scoring_checkpoint, frontends_record
from pipeline.stages.outputs import (
    asv_embeddings_spec,
    cm_embeddings_spec,
    current_output,
    speaker_models_spec,
    table_of,
)
from pipeline.stages.trials import asv_trial_scores, sasv_rows, scorable_trials, write_package_sasv

log = logging.getLogger(__name__)


EVAL_SPLITS = ("dev", "eval")


@dataclass
class TrialInputs:
    """Everything a back-end may need for one split's SASV trial list, aligned with `trials`."""
    split: str
    trials: list[SASVTrial]
    asv_scores: np.ndarray        # cosine (normalised as configured)
    cm_scores: np.ndarray         # CM bona fide logit of the test utterance
    models: EmbeddingTable        # speaker models
    asv: EmbeddingTable           # test ASV embeddings
    cm: EmbeddingTable            # test CM embeddings

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.trials]

    def embeddings(self, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(speaker model, test ASV, test CM) embedding tensors, one row per trial of `rows`. Scoring gathers them a
        batch at a time: for every trial at once they are (trials x 544) float32 at the real sizes (1.8 GB for the
        ASVspoof 5 eval list), beside the tables they are gathered from."""
        trials = self.trials[rows]
        enr = self.models.embeddings[[self.models.index[t.speaker] for t in trials]]
        tst = self.asv.embeddings[[self.asv.index[t.utt] for t in trials]]
        cmv = self.cm.embeddings[[self.cm.index[t.utt] for t in trials]]
        return torch.from_numpy(enr), torch.from_numpy(tst), torch.from_numpy(cmv)

    def rows(self, scores: np.ndarray) -> SASVScores:
        """These trials with other scores, for the score-file writers: the interface ablate.py shares with the
        score files' trials (pipeline.tools.fuse.ScoredTrials.rows)."""
        return sasv_rows(self.trials, scores)


def trial_inputs(cfg: Mapping, split: str) -> TrialInputs:
    """Loads the stage outputs of a split and aligns them with its SASV trial list. Each cached output must have
    been made by what the config names (front-end, checkpoint, crop, corpus, audio): otherwise one line says what
    differs and which stage to rerun, instead of scoring with another model's numbers."""
    db = database(cfg)
    models_spec, asv_spec = speaker_models_spec(cfg, split, db), asv_embeddings_spec(cfg, split, db)
    cm_spec = cm_embeddings_spec(cfg, split, db)
    models = table_of(current_output(models_spec, cfg), models_spec.path)
    asv = table_of(current_output(asv_spec, cfg), asv_spec.path)
    cm_arrays = current_output(cm_spec, cfg)
    cm = table_of(cm_arrays, cm_spec.path)
    cm_score = dict(zip(cm_arrays["ids"].tolist(), cm_arrays["scores"], strict=True))
    trials = scorable_trials(cfg, split, asv, cm)
    return TrialInputs(split, trials, asv_trial_scores(cfg, split, trials, models, asv),
                       np.array([cm_score[t.utt] for t in trials], dtype=np.float64), models, asv, cm)


def scored_splits(cfg: Mapping) -> list[str]:
    """The splits the SASV stage scores: dev and eval where the corpus has SASV trials; one line when it has none
    (a CM-only evaluation set: score it with save_cm_score.py or task cm's evaluate mode)."""
    splits = trial_splits(cfg, EVAL_SPLITS)
    if not splits:
        db = database(cfg)
        raise InputError(f"database {db.root}: {db.title} has no SASV trials to score; a CM-only set is scored by "
                         f"save_cm_score.py or main.py (task cm, mode evaluate)")
    return splits


def check_scoring(cfg: Mapping, splits: Sequence[str] | None = None) -> None:
    """What save_sasv_score.py needs, checked before it writes anything: the config (`check_sasv_config`), the
    back-end's fitting split or checkpoint, and stage outputs made by what the config names (one line naming what
    differs otherwise)."""
    check_sasv_config(cfg)
    check_outputs(cfg)
    splits = scored_splits(cfg) if splits is None else splits
    for key in ("asv", "cm"):
        check_scoring_checkpoint(cfg[key], key, cfg["allow_random_weights"])
    if backend_class(cfg["backend"]["name"]).score_level:
        check_fit_on(cfg, splits)
    else:
        backend_checkpoint(cfg)
    db = database(cfg)
    for split in splits:
        db.sasv_trials(split)        # parsed now: a malformed or empty trial list is refused before anything is written
        for spec in (speaker_models_spec(cfg, split, db), asv_embeddings_spec(cfg, split, db),
                     cm_embeddings_spec(cfg, split, db)):
            current_output(spec, cfg, read_arrays=False)
    if cfg["score_norm"]["method"] != "none":          # the cohort comes from the train embeddings
        current_output(asv_embeddings_spec(cfg, "train", db), cfg, read_arrays=False)


@torch.no_grad()
def score_embeddings(backend: nn.Module, inputs: TrialInputs, batch_size: int = 4096) -> np.ndarray:
    backend.eval()
    device = next(backend.parameters()).device
    out = []
    for i in range(0, len(inputs.trials), batch_size):
        enr, tst, cmv = inputs.embeddings(slice(i, i + batch_size))
        out.append(backend(enr.to(device), tst.to(device), cmv.to(device))[0].float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


def score_splits(cfg: Mapping, splits: Sequence[str] | None = None, config_of_record: Mapping | None = None,
                 extra: Mapping | None = None) -> dict[str, dict]:
    """Scores the SASV trial lists with the configured back-end; writes score files, results.json, DET plots.

    `config_of_record`: the config the user ran (config.yaml), when `cfg` is derived from it by training
    (fine-tuned front-ends, the trained back-end); results.json records that one as its config and the
    front-ends actually used under `frontends`. `extra`: more top-level results.json entries (`best_epoch`).

    A score-level back-end is fitted on one split's sub-scores (`backend.fit_on`), so every split is loaded first.
    An embedding back-end scores one split at a time: a split's embedding tables and trials are the largest thing
    the stage holds (ASVspoof 5 eval's alone are about 1.4 GB), and dev's are gone before eval's are read."""
    splits = scored_splits(cfg) if splits is None else list(splits)
    outcomes: dict[str, SplitOutcome] = {}
    if backend_class(cfg["backend"]["name"]).score_level:
        inputs = {s: trial_inputs(cfg, s) for s in splits}
        backend = ready_backend(cfg, inputs, save=True)        # fitted: state saved
        for split, data in inputs.items():
            outcomes[split] = write_split(cfg, data, backend.score(data.asv_scores, data.cm_scores))
    else:
        backend = None
        for split in splits:
            data = trial_inputs(cfg, split)
            if backend is None:
                backend = ready_backend(cfg, dims=(data.asv.dim, data.cm.dim))
            outcomes[split] = write_split(cfg, data, score_embeddings(backend, data))
            del data                                            # before the next split's tables are read
    return write_results(cfg, outcomes, extra, config_of_record=config_of_record)


def config_checkpoints(cfg: Mapping) -> dict[str, str | None]:
    """The checkpoints a SASV config names (recorded with their SHA-256 in results.json)."""
    return {"asv": cfg["asv"]["checkpoint"], "cm": cfg["cm"]["checkpoint"], "backend": cfg["backend"]["checkpoint"]}


@dataclass
class SplitOutcome:
    """What results.json keeps of a scored split once its score files are written: its metrics and breakdown."""
    results: dict
    breakdown: dict


def write_split(cfg: Mapping, data: TrialInputs, scores: np.ndarray) -> SplitOutcome:
    """A split's score files, metrics and DET plot.

    The ASV and CM trial score files are rewritten from the very scores the metrics used (score
    normalisation included), so `evaluate.py --sasv --asv --cm` on the written files gives back results.json.
    A back-end whose output is an LLR (its class's `outputs_llr`) also gets the actual a-DCFs at the Bayes
    thresholds."""
    exp, split, name = experiment(cfg), data.split, cfg["backend"]["name"]
    write_sasv_scores(exp.scores("sasv", split), sasv_rows(data.trials, scores))
    write_sasv_scores(exp.scores("asv", split), sasv_rows(data.trials, data.asv_scores))
    write_sasv_scores(exp.scores("cm_trials", split), sasv_rows(data.trials, data.cm_scores))
    write_package_sasv(cfg, split, "sasv", data.trials, {"sasv": scores, "asv": data.asv_scores, "cm": data.cm_scores})
    results = evaluate_trials(data.keys, scores, data.asv_scores, data.cm_scores,
                              llr=backend_class(name).outputs_llr)
    rows = sasv_rows(data.trials, scores, cfg, split)   # with the test utterances' codec conditions
    breakdown = sasv_breakdown(data.keys, scores, Conditions(rows.attack, rows.codec, rows.codec_q),
                               data.asv_scores, data.cm_scores)
    if cfg["det"]:
        plot_det({name: (scores, data.keys)}, exp.root / f"det_{split}.png", title=f"{name} on {split}")
    return SplitOutcome(results, breakdown)


def write_results(cfg: Mapping, outcomes: Mapping[str, SplitOutcome], extra: Mapping | None = None,
                  config_of_record: Mapping | None = None) -> dict[str, dict]:
    """results.json with what made the scored splits (`write_split`), and their table on stdout."""
    exp, name = experiment(cfg), cfg["backend"]["name"]
    frontends = frontends_record(cfg)     # those that made these scores (joint runs: the fine-tuned ones)
    record = provenance(config_of_record or cfg, checkpoints=config_checkpoints(config_of_record or cfg),
                        protocols=protocol_digests(cfg),
                        seeds={"train": cfg["train"]["seed"]} if "train" in cfg else {},
                        device=cfg["device"], database=database(cfg))
    per_split = {s: results_entry(o.results, o.breakdown) for s, o in outcomes.items()}     # as evaluate.py --json
    payload = {"backend": name, **json_ready(per_split), **(extra or {}), "frontends": frontends}
    say_layout(database(cfg))
    write_results_json(exp.root, payload, record)
    print(format_table({f"{name} ({s})": o.results for s, o in outcomes.items()}))
    for split, entry in per_split.items():
        if "breakdown" in entry:
            print(f"\n{name} on {split}, per condition of the test utterance:\n"
                  f"{format_breakdown(entry['breakdown'], 'sasv')}")
    log.info(f"results -> {exp.results}")
    return {s: o.results for s, o in outcomes.items()}
