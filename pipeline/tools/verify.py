"""Verifying single trials from audio files with a finished experiment: enrolment files + a test file ->
ASV score, CM score, SASV score and an accept/reject decision.

The scores are computed exactly as the stages compute them for the corpus (same front-ends, crops, enrolment
form, score normalisation cohort and back-end), so the threshold chosen on the experiment's dev SASV scores
(`<output_dir>/scores/sasv_dev.txt`) applies unchanged. Every check that needs no model (back-end state,
threshold, files) runs before any audio is embedded.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from common.errors import InputError
from common.io import atomic_write, read_json
from data.asvspoof import SASVTrial
from data.audio import CropSpec, load_audio
from data.embeddings import EmbeddingTable
from data.score_files import read_sasv_scores
from fusion import backend_class
from metrics.thresholds import METHODS, choose_threshold
from pipeline.stages.backend import embedding_backend_path, ready_backend
from pipeline.stages.enrolment import enrol_mean, enrolment_form, mean_embedding
from pipeline.stages.experiment import experiment, resolve_device
from pipeline.stages.extract import average_crops, convolution_path, model_input
from pipeline.stages.frontends import frontend, scoring_identity
from pipeline.stages.trials import asv_trial_scores

RESULT_COLUMNS = ("enroll", "test", "asv_score", "cm_score", "sasv_score", "threshold", "decision")


@dataclass(frozen=True)
class Trial:
    enroll: tuple[str, ...]     # enrolment audio files (one speaker)
    test: str                   # test audio file
    where: str = ""             # for error messages, e.g. "pairs.csv line 3"


@dataclass(frozen=True)
class Verdict:
    trial: Trial
    asv: float
    cm: float
    sasv: float
    threshold: float

    @property
    def accept(self) -> bool:
        return self.sasv >= self.threshold

    @property
    def decision(self) -> str:
        return "accept" if self.accept else "reject"


@dataclass(frozen=True)
class Threshold:
    value: float
    source: str                 # how it was chosen, for the printout


# ---------------------------------------------------------------------------------------------
# Back-end and threshold (cheap checks first)
# ---------------------------------------------------------------------------------------------
def check_backend(cfg: Mapping) -> None:
    """A clear error now, rather than after embedding audio, when the back-end cannot be loaded."""
    name = cfg["backend"]["name"]
    if backend_class(name).score_level:
        ready_backend(cfg)        # backend_state.json: there, JSON, of this back-end, loadable
    elif not embedding_backend_path(cfg).exists():
        raise InputError(f"{embedding_backend_path(cfg)}: no fitted '{name}' back-end; run main.py (task sasv) with "
                         f"this config first")
    made = read_json(experiment(cfg).root / "result.json")   # an ablation system folder (pipeline/tools/ablation)
    if made is not None and made.get("cm_score", "logit") != "logit":
        raise InputError(f"{experiment(cfg).root}: this ablation system fuses the CM {made['cm_score']}, "
                         "verify.py scores with the CM bona fide logit; choose a system with cm_score logit")
    check_frontends(cfg)


def check_frontends(cfg: Mapping) -> None:
    """The back-end and the dev threshold were fitted on scores of particular front-ends (results.json says
    which): verifying with other ones would apply them to scores they were never fitted on."""
    exp = experiment(cfg)
    made = read_json(exp.results) or read_json(exp.root / "result.json")   # result.json: an ablation system folder
    recorded = (made or {}).get("frontends") or {}
    if not recorded:
        raise InputError(f"{exp.results}: does not record which front-ends made the scores (missing, or written by "
                         f"an older version); rerun save_sasv_score.py with this config")
    for kind in ("asv", "cm"):
        then = dict(recorded.get(kind) or {})
        path = then.pop("checkpoint", None)
        now = scoring_identity(cfg, kind)
        if then != now:
            changed = ", ".join(k for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k))
            raise InputError(f"{exp.results}: its scores (and the back-end and threshold fitted on them) were made by "
                             f"another {kind} front-end ({changed} differ; it used {kind}.checkpoint {path}); set "
                             f"{kind} as it was, or rerun the stages and save_sasv_score.py with this config")


def dev_threshold(cfg: Mapping, method: str = "eer", far: float = 0.01) -> Threshold:
    """The threshold chosen on the experiment's dev SASV scores: the SASV-EER point (target vs nontarget +
    spoof), the min-DCF or min-a-DCF point, or a false-accept rate on nontarget + spoof (`far`)."""
    if method not in METHODS:
        raise InputError(f"unknown threshold method {method!r}; choose from {', '.join(METHODS)}")
    exp = experiment(cfg)
    path = exp.scores("sasv", "dev")
    if not path.exists():
        raise InputError(f"{path}: no dev SASV scores to choose a threshold on; run save_sasv_score.py "
                         f"with this config first, or pass --threshold")
    made_by = (read_json(exp.results) or {}).get("backend")
    if made_by is not None and made_by != cfg["backend"]["name"]:
        raise InputError(f"{path}: scored by back-end {made_by!r} (results.json), but the config's backend.name "
                         f"is {cfg['backend']['name']!r}; rerun save_sasv_score.py or pass --threshold")
    scores = read_sasv_scores(path)
    keys = np.asarray(scores.key)
    classes = {k: scores.score[keys == k] for k in ("target", "nontarget", "spoof")}
    value = choose_threshold(classes, method, negatives="both", far=far if method == "far" else None)
    label = {"eer": "SASV-EER point", "min_dcf": "min-DCF point", "min_a_dcf": "min-a-DCF point",
             "far": f"FAR {100 * far:g} % point"}[method]
    return Threshold(value, f"dev {label}, {path}")



# ---------------------------------------------------------------------------------------------
# Audio -> embeddings, as the stages do it
# ---------------------------------------------------------------------------------------------
@torch.inference_mode()
def _embed(fn, x: np.ndarray, crop: CropSpec) -> dict[str, np.ndarray]:
    """Every output of `fn` on one utterance's (crops, samples) input under `crop`, averaged over the crops by the
    stages' own `average_crops`, its convolutions where the stages run them (`convolution_path`)."""
    with convolution_path(fn, crop):
        out = average_crops(fn(torch.from_numpy(np.ascontiguousarray(x))), x.shape[0])
    return {k: v[0].cpu().numpy() for k, v in out.items()}


def check_files(trials: Sequence[Trial]) -> None:
    for t in trials:
        for path in (*t.enroll, t.test):
            if not os.path.isfile(path):
                where = f" ({t.where})" if t.where else ""
                raise InputError(f"{path}: audio file does not exist{where}")


def verify(cfg: Mapping, trials: Sequence[Trial], threshold: Threshold) -> list[Verdict]:
    """Scores every trial; each distinct file and enrolment set is embedded once."""
    if not trials:
        raise InputError("no trials to verify")
    check_backend(cfg)
    check_files(trials)
    device, exports = resolve_device(cfg["device"]), experiment(cfg).embeddings
    asv_runner, cm_runner = frontend(cfg, "asv", exports, device), frontend(cfg, "cm", exports, device)  # or ONNX
    asv_fn, cm_fn = asv_runner.embed, cm_runner.embed
    asv_crop, cm_crop = CropSpec.from_config(cfg["asv"]["crop"]), CropSpec.from_config(cfg["cm"]["crop"])
    asv_floor, cm_floor = asv_runner.floor, cm_runner.floor

    # Each distinct file is decoded when it is embedded and not kept: a batch file of many trials never holds
    # all of its audio at once. Lists enrolment reuses per-file embeddings; concat needs the set's audio.
    file_asv: dict[str, np.ndarray] = {}

    def asv_of(path: str) -> np.ndarray:
        if path not in file_asv:
            x = model_input(load_audio(path), asv_crop, asv_floor, path)
            file_asv[path] = _embed(asv_fn, x, asv_crop)["embeddings"]
        return file_asv[path]

    enrol_sets, mode = list(dict.fromkeys(t.enroll for t in trials)), enrol_mean(cfg["asv"])
    tests = list(dict.fromkeys(t.test for t in trials))
    models = []
    for files in enrol_sets:
        if enrolment_form(cfg) == "concat":   # one embedding of the concatenated audio (the enr_audio form)
            joined = np.concatenate([load_audio(p) for p in files])
            x = model_input(joined, asv_crop, asv_floor, " + ".join(files))
            models.append(_embed(asv_fn, x, asv_crop)["embeddings"])
        else:                              # the per-file embeddings averaged by the mode asv.enrol_mean
            models.append(mean_embedding([asv_of(p) for p in files], mode))
    test_asv, test_cm = [], []
    for path in tests:
        wave = load_audio(path)
        test_asv.append(file_asv[path] if path in file_asv
                        else _embed(asv_fn, model_input(wave, asv_crop, asv_floor, path), asv_crop)["embeddings"])
        test_cm.append(_embed(cm_fn, model_input(wave, cm_crop, cm_floor, path), cm_crop))

    model_ids, test_ids = [f"enrol{i}" for i in range(len(enrol_sets))], [f"test{i}" for i in range(len(tests))]
    model_row = {files: i for i, files in enumerate(enrol_sets)}
    test_row = {path: i for i, path in enumerate(tests)}
    sasv_trials = [SASVTrial(model_ids[model_row[t.enroll]], test_ids[test_row[t.test]], "bonafide", "target")
                   for t in trials]
    asv = asv_trial_scores(cfg, "verify", sasv_trials, EmbeddingTable(model_ids, np.stack(models), "enrolment audio"),
                           EmbeddingTable(test_ids, np.stack(test_asv), "test audio"))
    row = np.array([test_row[t.test] for t in trials])
    cm = np.array([test_cm[i]["scores"] for i in row], dtype=np.float64)
    sasv = _sasv_scores(cfg, asv, cm, np.stack(models)[[model_row[t.enroll] for t in trials]],
                        np.stack(test_asv)[row], np.stack([c["embeddings"] for c in test_cm])[row])
    return [Verdict(t, float(a), float(c), float(s), threshold.value)
            for t, a, c, s in zip(trials, asv, cm, sasv, strict=True)]


def _sasv_scores(cfg: Mapping, asv: np.ndarray, cm: np.ndarray, enr: np.ndarray, tst: np.ndarray,
                 cmv: np.ndarray) -> np.ndarray:
    if backend_class(cfg["backend"]["name"]).score_level:
        return ready_backend(cfg).score(asv, cm)            # from backend_state.json
    trained = {**cfg, "backend": {**cfg["backend"], "checkpoint": str(embedding_backend_path(cfg))}}
    backend = ready_backend(trained, dims=(enr.shape[1], cmv.shape[1]))
    with torch.no_grad():
        out = backend(torch.from_numpy(enr).float(), torch.from_numpy(tst).float(), torch.from_numpy(cmv).float())[0]
    return out.double().numpy()


# ---------------------------------------------------------------------------------------------
# Batch files and printing
# ---------------------------------------------------------------------------------------------
def read_pairs(path: str | os.PathLike) -> list[Trial]:
    """Trials of a CSV with columns `enroll` (files separated by ';') and `test`; relative paths are taken
    relative to the CSV's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: batch file does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the batch file ({e})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("enroll", "test") if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; the header must name 'enroll' "
                         f"(files separated by ';') and 'test', got {reader.fieldnames}")
    trials = []
    for number, row in enumerate(reader, start=2):
        where = f"{path} line {number}"
        enroll = tuple(str(path.parent / p.strip()) for p in (row["enroll"] or "").split(";") if p.strip())
        test = (row["test"] or "").strip()
        if not enroll or not test:
            raise InputError(f"{where}: needs at least one enrolment file and a test file")
        trials.append(Trial(enroll, str(path.parent / test), where))
    if not trials:
        raise InputError(f"{path}: no trials (only a header)")
    return trials


def write_results(path: str | os.PathLike, verdicts: Sequence[Verdict]) -> None:
    """The batch results as a CSV (written atomically): one row per trial in input order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for v in verdicts:
        writer.writerow([";".join(v.trial.enroll), v.trial.test, repr(v.asv), repr(v.cm), repr(v.sasv),
                         repr(v.threshold), v.decision])
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def describe(cfg: Mapping, verdict: Verdict, threshold: Threshold) -> str:
    """The printout of one trial."""
    norm = cfg["score_norm"]["method"]
    asv_kind = "cosine" if norm == "none" else f"cosine, {norm}-normalised"
    return "\n".join([
        f"enrolment:  {', '.join(verdict.trial.enroll)} ({cfg['enrolment']})",
        f"test:       {verdict.trial.test}",
        f"ASV score:  {verdict.asv:.6g} ({asv_kind}, {cfg['asv']['arch']})",
        f"CM score:   {verdict.cm:.6g} (bona fide logit, {cfg['cm']['arch']})",
        f"SASV score: {verdict.sasv:.6g} ({cfg['backend']['name']})",
        f"threshold:  {threshold.value:.6g} ({threshold.source})",
        f"decision:   {verdict.decision.upper()} (accept iff SASV score >= threshold)",
    ])
