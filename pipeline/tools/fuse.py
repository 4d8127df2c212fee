"""Score-level fusion of other systems' score files (fuse.py, and ablate.py's `scores` section).

A researcher has ASV scores from one toolkit and CM scores from another. For each split the ASV file and the CM file
are read in any format of data/score_files.py (SASV 2022, the ASVspoof 5 package's files, the 2019 CM file of one
score per utterance, CSV), matched by trial (speaker, utterance; never line order) to each other and to the trial list
when one is given, and their labels merged and checked. Each score-level back-end of fusion.BACKENDS is fitted on
the labelled dev split and scores both splits; a split without labels is scored without metrics.

Everything that can be wrong with the input (files, trials, labels, a dev split without a class a rule needs) is
found by `load_split` / `fit_rules` before anything is written, and said in one line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from common.dispatch import check_kwargs
from common.errors import InputError
from common.io import copy_file
from data.score_files import (
    AS5_SASV_KEYS,
    UNKNOWN,
    CMScores,
    SASVScores,
    ScoreFileError,
    align_scores,
    cm_trial_scores,
    read_asvspoof5_keys,
    read_scores,
    score_texts,
    write_asvspoof5_sasv,
    write_sasv_scores,
)
from data.trial_kinds import SASV_KEYS
from fusion import BACKENDS, ScoreBackend, backend_names, build_backend
from metrics.breakdown import Conditions, results_entry, sasv_breakdown
from metrics.report import sasv_metrics, subscore_metrics
from pipeline.stages.backend import FitSplitError, ready_backend

SPLITS = ("dev", "eval")


@dataclass(frozen=True)
class SplitSources:
    """The files of one split: ASV scores, CM scores, and optionally the trial list (a SASV trial list or an ASVspoof 5
    package Track 2 key file) that gives the trials and their labels. `flags`: how messages name each file."""
    split: str
    asv: str
    cm: str
    trials: str | None = None
    flags: tuple[str, str, str] = ("ASV scores", "CM scores", "trial list")

    def named(self) -> dict[str, str]:
        """{'<flag> <path>' label: path} of the files given (for check_inputs_kept and provenance)."""
        pairs = zip(self.flags, (self.asv, self.cm, self.trials), strict=True)
        return {flag: str(path) for flag, path in pairs if path}


@dataclass
class ScoredTrials:
    """One split's trials with their ASV and CM scores, aligned; `labels` holds the trials (spk, utt), their merged
    labels (UNKNOWN throughout when no file gives them) and codec conditions."""
    split: str
    labels: SASVScores
    asv_scores: np.ndarray
    cm_scores: np.ndarray
    source: str                      # how messages name the split's trials

    @property
    def keys(self) -> list[str]:
        return self.labels.key

    @property
    def labelled(self) -> bool:
        return bool(self.labels.key) and self.labels.key[0] != UNKNOWN

    @cached_property
    def key_array(self) -> np.ndarray:
        """The keys as one str array, converted once: every metric and plot of every rule splits scores by them."""
        return np.asarray(self.keys, dtype=str)

    @cached_property
    def subscore_metrics(self) -> dict[str, float]:
        """The metrics of the ASV and CM scores alone (t-EER, t-DCFs, ASV-EER, CM-EER) of a labelled split: the same
        for every rule, so computed once."""
        return subscore_metrics(self.key_array, self.asv_scores, self.cm_scores)

    def rows(self, scores: np.ndarray) -> SASVScores:
        """These trials with other scores (for the score-file writers)."""
        t = self.labels
        return SASVScores(t.spk, t.utt, t.attack, t.key, scores, t.codec, t.codec_q)

    def counts(self) -> dict[str, int]:
        k = np.asarray(self.keys)
        return {c: int(np.count_nonzero(k == c)) for c in SASV_KEYS}


# ----------------------------------------------------------------------------------------------------- reading

def read_trial_list(path: str, flag: str) -> SASVScores:
    """A trial list as trials with labels and no scores: an ASVspoof 5 package Track 2 key file (header `spk filename
    cm-label asv-label ...`), an ASVspoof 2019 SASV trial list `SPK UTT ATTACK KEY`, or an ASVspoof 5 Track 2 trial
    list (`SPK UTT GENDER ATTACK KEY`, or the phase-2 `SPK UTT KEY`)."""
    from data.asvspoof import protocol_lines, read_sasv_trials
    from data.asvspoof5 import read_track2_trials

    first = next((f for _, f in protocol_lines(path, "trial list")), [])
    if tuple(first[:4]) == AS5_SASV_KEYS:
        keys = read_asvspoof5_keys(path, "sasv")
        spk, utt = [t[0] for t in keys], [t[1] for t in keys]
        values = list(keys.values())
        return SASVScores(spk, utt, [k.attack for k in values], [k.asv_label for k in values],
                          np.zeros(len(values)), [k.codec for k in values], [k.codec_q for k in values])
    if len(first) == 4:
        trials = read_sasv_trials(path)
    elif len(first) in (3, 5):
        trials = read_track2_trials(path)
    else:
        raise InputError(f"{flag} {path}: not a trial list: its first line is {' '.join(first)!r}; expected an "
                         f"ASVspoof 2019 SASV trial list 'SPK UTT ATTACK KEY', an ASVspoof 5 Track 2 trial list "
                         f"'SPK UTT GENDER ATTACK KEY', or an ASVspoof 5 package Track 2 key file "
                         f"'{' '.join(AS5_SASV_KEYS)} ...'")
    return SASVScores([t.speaker for t in trials], [t.utt for t in trials], [t.attack for t in trials],
                      [t.key for t in trials], np.zeros(len(trials)))


def _read(path: str, column: str, flag: str) -> SASVScores | CMScores:
    try:
        return read_scores(path, column)
    except ScoreFileError as e:
        text = str(e)
        raise ScoreFileError(text if text.startswith(str(path)) else f"{flag} {path}: {text}") from None


def load_split(sources: SplitSources) -> ScoredTrials:
    """Reads and aligns one split's files: the trials are the trial list's (in its order) or else the ASV file's; the
    ASV file must hold exactly those trials, the CM file too, or one score per utterance covering every tested one.
    Labels from every file are merged and must agree; a split is labelled throughout or not at all."""
    asv_flag, cm_flag, trials_flag = (f"{flag} {path}" for flag, path in
                                      zip(sources.flags, (sources.asv, sources.cm, sources.trials), strict=True))
    if not Path(sources.asv).is_file() or not Path(sources.cm).is_file() or \
            (sources.trials and not Path(sources.trials).is_file()):
        missing = next(f for f, p in ((asv_flag, sources.asv), (cm_flag, sources.cm), (trials_flag, sources.trials))
                       if p and not Path(p).is_file())
        raise InputError(f"{missing}: file does not exist")
    asv = _read(sources.asv, "asv", sources.flags[0])
    if isinstance(asv, CMScores):
        raise InputError(f"{asv_flag}: holds one score per utterance (a CM score file); ASV scores are per trial "
                         f"(speaker, utterance): give a SASV 2022, ASVspoof 5 package Track 2 or CSV file with "
                         f"speakers")
    if sources.trials:
        asv = align_scores(read_trial_list(sources.trials, sources.flags[2]), asv, (trials_flag, asv_flag))
    cm = _read(sources.cm, "cm", sources.flags[1])
    reference = trials_flag if sources.trials else asv_flag
    if isinstance(cm, CMScores):
        cm = cm_trial_scores(cm, asv, (reference, cm_flag))
    else:
        cm = align_scores(asv, cm, (reference, cm_flag))
    unknown = sum(k == UNKNOWN for k in cm.key)
    if 0 < unknown < len(cm):
        n = cm.key.index(UNKNOWN)
        raise InputError(f"{reference}: {unknown} of {len(cm)} trials have no label (the first '{cm.spk[n]} "
                         f"{cm.utt[n]}'): label every trial or none")
    return ScoredTrials(sources.split, cm, asv.score, cm.score, reference)


# ------------------------------------------------------------------------------------------------- the rules

@dataclass(frozen=True)
class Rule:
    """A score-level back-end by name with its options; `label` names it in tables and is its folder name."""
    label: str
    name: str
    options: Mapping[str, Any]

    @property
    def config(self) -> dict:
        """The rule as the `backend` section of a config (fitted on dev), for pipeline.stages.backend.ready_backend."""
        return {"backend": {"name": self.name, "options": dict(self.options), "fit_on": "dev", "checkpoint": None}}


def score_backends() -> list[str]:
    """Every score-level back-end of fusion.BACKENDS, in its order (fuse.py's default rules)."""
    return backend_names(score_level=True)


def check_rule(name: Any, options: Mapping[str, Any], who: str) -> Rule:
    """A score-level back-end and its options, checked by building it (one line naming `who` otherwise)."""
    if not isinstance(name, str) or name not in BACKENDS or not BACKENDS[name].score_level:
        raise InputError(f"{who}: {name!r} is not a score-level back-end; choose one of {', '.join(score_backends())}")
    try:
        check_kwargs(BACKENDS[name], name, options, "fusion back-end")
        build_backend(name, **options)
    except (InputError, TypeError, ValueError) as e:
        raise InputError(f"{who}: {e}") from None
    label = name + "".join(f"_{k}-{v}" for k, v in options.items())
    return Rule(re.sub(r"[^A-Za-z0-9_.+-]", "", label.replace(" ", "")), name, dict(options))


def parse_rule(text: str) -> Rule:
    """`name` or `name:key=value,key=value` (values read as YAML: `lr_fusion:prior=0.1`,
    `score_sum:normalise=zscore`), checked."""
    name, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InputError(f"--backends {text}: option {item!r} is not key=value")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"--backends {text}: option {key}: {value!r} is not a YAML value") from None
    return check_rule(name, options, f"--backends {text}")


def fit_rules(rules: Sequence[Rule], dev: ScoredTrials) -> dict[str, ScoreBackend]:
    """Each rule fitted on the dev split: it must be labelled and hold every class the rule needs (one line naming
    the rule, the class and the counts otherwise)."""
    if not dev.labelled:
        raise InputError(f"{dev.source}: the dev split has no labels (target / nontarget / spoof); the rules are "
                         f"fitted on a labelled dev split: give a score file with keys or a trial list")
    counts = dev.counts()
    shown = ", ".join(f"{n} {c}" for c, n in counts.items())
    fitted = {}
    for rule in rules:
        try:
            fitted[rule.label] = ready_backend(rule.config, {"dev": dev})
        except FitSplitError as e:    # a class the rule needs (its needs_classes), checked before it is fitted
            raise InputError(f"{dev.source}: fusion rule {rule.label} needs {e.need.replace('|', ' or ')} trials in "
                             f"the dev split to fit, and it has none ({shown})") from None
        except ValueError as e:       # a rule that says what it lacks only when fitting
            raise InputError(f"{dev.source}: fusion rule {rule.label} cannot be fitted on the dev split "
                             f"({shown}): {e}") from None
    return fitted


def evaluate(backend: ScoreBackend, data: ScoredTrials, sasv: np.ndarray, breakdown: bool = False) -> dict:
    """Every metric of evaluate.py for one rule on one labelled split (act a-DCF too for a rule whose output is an
    LLR); with `breakdown`, its per-attack / codec tables under 'breakdown' when the trials carry those labels (a
    metric set per cell: ~1 s a rule and split at LA size, so asked for, not default)."""
    # = evaluate_trials(keys, sasv, asv, cm, llr=...), the sub-scores' part computed once per split
    metrics = {**sasv_metrics(data.key_array, sasv, llr=backend.outputs_llr), **data.subscore_metrics}
    if not breakdown:
        return metrics
    t = data.labels
    tables = sasv_breakdown(data.keys, sasv, Conditions(t.attack, t.codec, t.codec_q), data.asv_scores,
                            data.cm_scores)
    return results_entry(metrics, tables)


# ------------------------------------------------------------------------------------------------- writing

def output_files(out: Path, labels: Sequence[str], splits: Mapping[str, bool], det: bool) -> dict[str, Path]:
    """Every file a fusion run writes under `out` ({what: path}), given the rule labels and {split: labelled}: known
    before anything is written, so that none of them can be one of the inputs."""
    files = {"results": out / "results.json", "table": out / "table.txt"}
    for split, labelled in splits.items():
        if labelled:
            files[f"asv {split}"] = out / "scores" / f"asv_{split}.txt"
            files[f"cm {split}"] = out / "scores" / f"cm_trials_{split}.txt"
            if det:
                files[f"det {split}"] = out / f"det_{split}.png"
        for label in labels:
            if labelled:
                files[f"{label} sasv {split}"] = out / label / f"sasv_{split}.txt"
                files[f"{label} keys {split}"] = out / label / "asvspoof5" / f"sasv_keys_{split}.tsv"
            files[f"{label} package {split}"] = out / label / "asvspoof5" / f"sasv_{split}.tsv"
    for label in labels:
        files[f"{label} state"] = out / label / "backend_state.json"
    return files


def split_texts(data: ScoredTrials) -> dict[str, list[str]]:
    """The split's ASV and CM scores as the score files write them (data.score_files.score_texts): every rule's
    package file and the aligned inputs carry them, so they are formatted once per split."""
    return {"asv": score_texts(data.asv_scores), "cm": score_texts(data.cm_scores)}


def write_split(out: Path, label: str, data: ScoredTrials, sasv: np.ndarray, texts: Mapping[str, Sequence[str]],
                keys_written: Path | None = None) -> Path | None:
    """One rule's scores of one split: the SASV 2022 file (labelled splits: it carries the keys) and the package's
    Track 2 file with the SASV, ASV and CM columns (its key file where labelled). `texts`: `split_texts(data)`.
    The key file holds the trials' labels, the same for every rule: `keys_written`, one another rule wrote for this
    split, is copied rather than formatted again. Returns this rule's key file (None: an unlabelled split)."""
    folder = out / label
    sasv_texts = score_texts(sasv)
    if data.labelled:
        write_sasv_scores(folder / f"sasv_{data.split}.txt", data.rows(sasv), sasv_texts)
    keys = folder / "asvspoof5" / f"sasv_keys_{data.split}.tsv" if data.labelled else None
    write_asvspoof5_sasv(folder / "asvspoof5" / f"sasv_{data.split}.tsv", None if keys_written else keys,
                         {"sasv": data.rows(sasv), "asv": data.rows(data.asv_scores), "cm": data.rows(data.cm_scores)},
                         {**texts, "sasv": sasv_texts})
    if keys is not None and keys_written is not None:
        copy_file(keys_written, keys)
    return keys


def write_inputs(out: Path, data: ScoredTrials, texts: Mapping[str, Sequence[str]] | None = None) -> None:
    """The aligned ASV and CM scores of a labelled split as SASV 2022 files (as the stages write them), so that
    `evaluate.py --sasv <rule>/sasv_eval.txt --asv scores/asv_eval.txt --cm scores/cm_trials_eval.txt` gives back
    the table. `texts`: `split_texts(data)` where the caller has them."""
    texts = split_texts(data) if texts is None else texts
    write_sasv_scores(out / "scores" / f"asv_{data.split}.txt", data.rows(data.asv_scores), texts["asv"])
    write_sasv_scores(out / "scores" / f"cm_trials_{data.split}.txt", data.rows(data.cm_scores), texts["cm"])


def input_digests(sources: Sequence[SplitSources]) -> dict[str, dict[str, str]]:
    """{flag: {path, sha256}} of every input file (recorded in results.json)."""
    from common.io import file_sha256
    return {flag: {"path": os.path.abspath(path), "sha256": file_sha256(path)}
            for s in sources for flag, path in s.named().items()}
