"""A back-end is its file and its line in fusion.BACKENDS: registered there (here by monkeypatch, defined in this test),
it is a config choice, is fitted and saved by save_sasv_score.py, reports the actual a-DCF exactly when its class says
its output is an LLR, and verify.py loads its saved state, with nothing else changed."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pytest

import fusion
import save_sasv_score
from data.asvspoof import LADatabase
from data.score_files import read_sasv_scores
from fusion.base import ScoreBackend, check_keys, check_scores
from metrics.report import NEEDS_LLR
from tests.pipeline_fixtures import (
    assert_one_line_error,
    call,
    frontends,
    sasv_args,
    staged,
    tiny_corpus,
)

__all__ = ["frontends", "staged", "tiny_corpus"]   # fixtures used by name


class GaussianSumLLR(ScoreBackend):
    """A tiny calibrated back-end: the LLR of s = asv + cm under one Gaussian per class (target vs the rest)."""

    name = "gaussian_sum_llr"
    outputs_llr = True
    state_fields = {"mu_target": float, "sd_target": float, "mu_negative": float, "sd_negative": float}

    def __init__(self) -> None:
        self.mu_target = self.mu_negative = 0.0
        self.sd_target = self.sd_negative = 1.0

    def needs_classes(self) -> tuple[str, ...]:
        return ("target", "nontarget|spoof")

    def fit(self, asv: np.ndarray, cm: np.ndarray, keys: Sequence[str]) -> "GaussianSumLLR":
        asv, cm = check_scores(asv, cm, self.name)
        target = check_keys(keys, len(asv), self.name) == "target"
        s = asv + cm
        self.mu_target, self.sd_target = float(s[target].mean()), float(s[target].std() + 1e-6)
        self.mu_negative, self.sd_negative = float(s[~target].mean()), float(s[~target].std() + 1e-6)
        return self

    def score(self, asv: np.ndarray, cm: np.ndarray) -> np.ndarray:
        asv, cm = check_scores(asv, cm, self.name)
        s = asv + cm

        def log_density(mu: float, sd: float) -> np.ndarray:
            return -0.5 * ((s - mu) / sd) ** 2 - np.log(sd)

        return log_density(self.mu_target, self.sd_target) - log_density(self.mu_negative, self.sd_negative)


class GaussianSumScore(GaussianSumLLR):
    """The same numbers, not declared an LLR: its results must not carry the actual a-DCF."""
    name = "gaussian_sum_score"
    outputs_llr = False


def _scores(folder, kind: str, split: str) -> dict[tuple[str, str], float]:
    s = read_sasv_scores(folder / "scores" / f"{kind}_{split}.txt")
    return {(a, b): v for a, b, v in zip(s.spk, s.utt, s.score, strict=True)}


@pytest.mark.parametrize("cls", [GaussianSumLLR, GaussianSumScore])
def test_a_backend_registered_in_fusion_runs_through_the_sasv_stage(cls, staged, tiny_corpus, frontends, tmp_path,
                                                                    capsys, monkeypatch):
    out = tmp_path / cls.name
    args = sasv_args(tiny_corpus, frontends, out, f"embeddings_dir={staged.embeddings}", f"backend.name={cls.name}")
    rc, err = call(save_sasv_score.main, args, capsys)            # not registered: not a choice, nothing written
    assert rc == 2
    assert_one_line_error(err, "backend.name", cls.name)
    assert not (out / "results.json").exists()

    monkeypatch.setitem(fusion.BACKENDS, cls.name, cls)
    assert fusion.backend_class(cls.name).score_level                   # inherited from ScoreBackend
    rc, err = call(save_sasv_score.main, args, capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["backend"] == cls.name
    for split in ("dev", "eval"):
        assert "min_a_dcf" in results[split]
        assert all((m in results[split]) == cls.outputs_llr for m in NEEDS_LLR), (split, sorted(results[split]))
        if cls.outputs_llr:
            assert 0.0 <= results[split]["act_a_dcf"] and results[split]["act_a_dcf"] >= results[split]["min_a_dcf"]

    # fitted on dev (backend.fit_on) from the very sub-scores the stage wrote, and saved as its state
    state = json.loads((out / "backend_state.json").read_text())
    assert state["backend"] == cls.name and set(state) == {"backend", *cls.state_fields}
    asv, cm = _scores(out, "asv", "dev"), _scores(out, "cm_trials", "dev")
    trials = list(asv)
    keys = read_sasv_scores(out / "scores" / "sasv_dev.txt").key
    refit = cls().fit(np.array([asv[t] for t in trials]), np.array([cm[t] for t in trials]), keys)
    for field in cls.state_fields:
        assert state[field] == pytest.approx(getattr(refit, field), rel=1e-6), field
    rebuilt = fusion.score_backend_from_state(state)
    assert isinstance(rebuilt, cls)
    for split in ("dev", "eval"):
        asv, cm, sasv = (_scores(out, kind, split) for kind in ("asv", "cm_trials", "sasv"))
        trials = list(sasv)
        np.testing.assert_allclose([sasv[t] for t in trials],
                                   rebuilt.score(np.array([asv[t] for t in trials]), np.array([cm[t] for t in trials])),
                                   rtol=1e-5, atol=1e-6)

    if cls.outputs_llr:      # verify.py loads the same back-end from backend_state.json and applies it to a trial
        db = LADatabase(tiny_corpus.la)
        trial = next(t for t in db.sasv_trials("dev") if t.key == "target")
        enrol = [str(db.audio("dev", u)) for u in db.enrolment("dev")[trial.speaker]]
        from verify import main as verify_main
        capsys.readouterr()
        assert verify_main([*args, "--enroll", *enrol, "--test", str(db.audio("dev", trial.utt))]) == 0
        printed = {line.split(":", 1)[0]: float(line.split(":", 1)[1].split()[0])
                   for line in capsys.readouterr().out.splitlines() if line.split(":", 1)[0].endswith("score")}
        expected = rebuilt.score(np.array([printed["ASV score"]]), np.array([printed["CM score"]]))[0]
        assert printed["SASV score"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert printed["SASV score"] == pytest.approx(_scores(out, "sasv", "dev")[trial.speaker, trial.utt], abs=1e-3)


def test_fuse_and_the_ablation_read_the_class(monkeypatch, tmp_path):
    """fuse.py's rules and an ablation system's kind and `calibrated` default follow the registered class."""
    from pipeline.tools.ablation.grid import parse_systems
    from pipeline.tools.fuse import check_rule, score_backends

    monkeypatch.setitem(fusion.BACKENDS, GaussianSumLLR.name, GaussianSumLLR)
    monkeypatch.setitem(fusion.BACKENDS, GaussianSumScore.name, GaussianSumScore)
    assert {GaussianSumLLR.name, GaussianSumScore.name} <= set(score_backends())
    assert check_rule(GaussianSumLLR.name, {}, "--backends").name == GaussianSumLLR.name
    files = {"asv": "asv.txt", "cm": "cm.txt", "trials": None}       # parsing the grid reads no file
    cfg = {"output_dir": str(tmp_path), "scores": {"dev": files, "eval": files},
           "ablation": {"dir": None, "seeds": [0], "systems": [{"name": "llr", "backend": GaussianSumLLR.name},
                                                               {"name": "score", "backend": GaussianSumScore.name}]}}
    systems = {s.name: s for s in parse_systems(cfg)}
    assert systems["llr"].calibrated and not systems["score"].calibrated
    assert not systems["llr"].trained and not systems["score"].trained
    assert not fusion.backend_class("joint_oc").score_level and not fusion.backend_class("joint_oc").outputs_llr
    assert [n for n, c in fusion.BACKENDS.items() if c.outputs_llr] == ["lr_fusion", "llr_nonlinear",
                                                                        GaussianSumLLR.name]
    with pytest.raises(ValueError, match=r"^unknown fusion back-end 'nope' \(valid: asv_only, "):
        fusion.backend_class("nope")


@dataclass
class _Split:
    asv_scores: np.ndarray
    cm_scores: np.ndarray
    keys: list[str]


def _backend_cfg(out, name: str, **backend) -> dict:
    return {"output_dir": str(out), "embeddings_dir": None,
            "backend": {"name": name, "options": {}, "fit_on": "dev", "checkpoint": None, **backend}}


def test_ready_backend_fits_saves_and_loads_each_kind(tmp_path):
    """The one function every entry point gets its back-end from: a score-level back-end fitted on backend.fit_on
    (a fit split without a class it needs is one line naming the split and its counts) and saved, then rebuilt from
    that state; an embedding back-end new for training, then loaded from the checkpoint training saved."""
    import torch

    from pipeline.stages.backend import FitSplitError, backend_state_path, ready_backend, save_backend

    rng = np.random.default_rng(0)
    keys = ["target"] * 20 + ["nontarget"] * 20 + ["spoof"] * 20
    target = np.array(keys) == "target"
    dev = _Split(rng.normal(size=60) + 2 * target, rng.normal(size=60) + 2 * (np.array(keys) != "spoof"), keys)
    cfg = _backend_cfg(tmp_path, "lr_fusion")
    with pytest.raises(ValueError, match=r"^backend.fit_on is 'dev'; choose one of the scored splits \['eval'\]$"):
        ready_backend(cfg, {"eval": dev})
    no_spoof = _Split(dev.asv_scores[:40], dev.cm_scores[:40], keys[:40])
    ready_backend(cfg, {"dev": no_spoof})                 # lr_fusion: target vs any negative
    with pytest.raises(FitSplitError, match=r"^backend.fit_on 'dev': product_rule needs spoof trials to fit, and the "
                                            r"dev split has none \(20 target, 20 nontarget, 0 spoof\)$"):
        ready_backend(_backend_cfg(tmp_path, "product_rule"), {"dev": no_spoof})
    assert not backend_state_path(cfg).exists()           # nothing saved unless asked
    with pytest.raises(ValueError, match="no fitted 'lr_fusion' back-end; run save_sasv_score.py"):
        ready_backend(cfg)
    fitted = ready_backend(cfg, {"dev": dev}, save=True)
    assert json.loads(backend_state_path(cfg).read_text()) == fitted.state_dict()
    loaded = ready_backend(cfg)
    assert loaded is not fitted
    np.testing.assert_array_equal(loaded.score(dev.asv_scores, dev.cm_scores), fitted.score(dev.asv_scores,
                                                                                            dev.cm_scores))
    with pytest.raises(ValueError, match="holds back-end 'lr_fusion', but the config's backend.name is 'score_sum'"):
        ready_backend(_backend_cfg(tmp_path, "score_sum"))
    with pytest.raises(TypeError, match="fitted, not trained"):
        ready_backend(cfg, {"dev": dev}, for_training=True)

    embedding = _backend_cfg(tmp_path, "baseline2", options={"hidden": [8]})
    with pytest.raises(TypeError, match=r"needs dims=\(asv_dim, cm_dim\)"):
        ready_backend(embedding)
    with pytest.raises(ValueError, match="backend 'baseline2' is trained, not fitted: set backend.checkpoint"):
        ready_backend(embedding, dims=(6, 4))
    new = ready_backend(embedding, dims=(6, 4), for_training=True)
    assert new.training and (new.asv_dim, new.cm_dim) == (6, 4)
    save_backend(tmp_path / "backend.pt", new, "baseline2", {"hidden": [8]})
    trained = {**embedding, "backend": {**embedding["backend"], "checkpoint": str(tmp_path / "backend.pt"),
                                        "options": {}}}
    loaded = ready_backend(trained, dims=(6, 4))
    assert not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), loaded.state_dict().values(), strict=True))
    assert ready_backend(trained, dims=(6, 4), for_training=True).training      # a two-stage recipe's start
