"""The calibrated (ASV, CM) log-likelihood ratios that the ASVspoof 5 organisers' fusions combine.

Wang, Kinnunen, Lee, Noe and Yamagishi, "Revisiting and improving scoring fusion for spoofing-aware speaker
verification using compositional data analysis", Interspeech 2024; their tool asvspoof-challenge/asvspoof5,
Tool-score-fusion/score-fusion.py (Apache-2.0; this is our own code, checked against that tool's outputs in
tests/test_fusion_rules.py). Two steps, both fitted on the labelled fit (dev) set:

1. LLRs ('gaussian', the tool): one full-covariance Gaussian per class (target, nontarget, spoof) on the fit set's
   (ASV, CM) score pairs, as scikit-learn's one-component GaussianMixture estimates it (the maximum-likelihood
   covariance plus reg_covar = 1e-6 on its diagonal); LLR_asv = log N_tar - log N_non, LLR_cm = log N_tar - log N_spf.
   'affine' skips this step: LLR_asv and LLR_cm are the raw ASV and CM scores, so the calibration alone maps each
   sub-score to an LLR (the score sum and the non-linear rule on calibrated sub-scores, without the Gaussians).
2. Calibration (fusion.calibration.affine_calibration): the CM LLR on bona fide (target + nontarget) vs spoof over
   all fit trials, the ASV LLR on target vs nontarget over the bona fide trials, each by an affine map fitted by
   weighted logistic regression (weighting 'tool' or 'balanced'; solver 'lbfgs' as the tool stops, or 'newton').

`CalibratedLLRs` is the shared base of the two back-ends that fuse them (fusion/llr_linear.py,
fusion/llr_nonlinear.py); it is not a back-end by itself.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from common.errors import InputError
from fusion.base import TRIAL_KEYS, ScoreBackend, check_keys, check_scores, require_keys
from fusion.calibration import SOLVERS, WEIGHTINGS, affine_calibration

LLR_KINDS = ("gaussian", "affine")
REG_COVAR = 1e-6            # scikit-learn GaussianMixture's default, which the organisers' tool keeps
_MOMENTS = ("mean_asv", "mean_cm", "var_asv", "cov", "var_cm")
_CLIP = 1e100               # sub-scores beyond this cannot overflow the Gaussians' quadratic forms
_LOG_2PI = float(np.log(2.0 * np.pi))

# Each class's Gaussian as five named floats, so the state stays str / float / bool.
GAUSSIAN_FIELDS = {f"{cls}_{m}": float for cls in TRIAL_KEYS for m in _MOMENTS}
CALIBRATION_FIELDS = {"a_asv": float, "b_asv": float, "a_cm": float, "b_cm": float}


def gaussian_log_density(x: np.ndarray, y: np.ndarray, moments: Sequence[float]) -> np.ndarray:
    """log N([x, y]; mean, cov) per point for moments (mean_x, mean_y, var_x, cov_xy, var_y)."""
    mx, my, vx, cxy, vy = moments
    det = vx * vy - cxy * cxy
    dx, dy = x - mx, y - my
    quad = (vy * dx * dx - 2.0 * cxy * dx * dy + vx * dy * dy) / det
    return -0.5 * (2.0 * _LOG_2PI + np.log(det) + quad)


def fit_gaussian(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float]:
    """Maximum-likelihood mean and covariance of the pairs (x, y), REG_COVAR added to the variances."""
    mx, my = float(np.mean(x)), float(np.mean(y))
    dx, dy = x - mx, y - my
    return (mx, my, float(np.mean(dx * dx)) + REG_COVAR, float(np.mean(dx * dy)), float(np.mean(dy * dy)) + REG_COVAR)


class CalibratedLLRs(ScoreBackend):
    """Fits and applies steps 1 and 2 above; subclasses combine `calibrated_llrs(asv, cm)` into one score.

    llrs: 'gaussian' (default, the tool) | 'affine' (no Gaussians: calibrate the raw sub-scores).
    weighting: 'tool' (default; the calibrated LLRs carry the fit set's class log-odds, LLR + logit(share))
        | 'balanced' (true LLRs whatever the fit set's class proportions); fusion/calibration.py says why.
    solver: 'lbfgs' (default; where scikit-learn's default solver stops, as the tool ran) | 'newton' (the exact
        optimum of the same objective).
    """

    base_fields = {"llrs": str, "weighting": str, "solver": str, "fitted": bool,
                   **GAUSSIAN_FIELDS, **CALIBRATION_FIELDS}

    def __init__(self, llrs: str = "gaussian", weighting: str = "tool", solver: str = "lbfgs"):
        for option, value, valid in (("llrs", llrs, LLR_KINDS), ("weighting", weighting, WEIGHTINGS),
                                     ("solver", solver, SOLVERS)):
            if value not in valid:
                raise InputError(f"{self.name}: option {option!r} must be one of {list(valid)}, got {value!r}")
        self.llrs, self.weighting, self.solver = llrs, weighting, solver
        self.fitted = False
        for key in GAUSSIAN_FIELDS:
            setattr(self, key, 0.0)
        self.a_asv, self.b_asv, self.a_cm, self.b_cm = 1.0, 0.0, 1.0, 0.0

    def needs_classes(self) -> tuple[str, ...]:
        """Both steps estimate per class: target, nontarget and spoof trials (enforced again by `fit_llrs`)."""
        return TRIAL_KEYS

    def _moments(self, cls: str) -> tuple[float, ...]:
        return tuple(getattr(self, f"{cls}_{m}") for m in _MOMENTS)

    def raw_llrs(self, asv: np.ndarray, cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(LLR_asv, LLR_cm) before calibration: Gaussian LLRs, or the sub-scores themselves ('affine')."""
        if self.llrs == "affine":
            return asv, cm
        asv, cm = np.clip(asv, -_CLIP, _CLIP), np.clip(cm, -_CLIP, _CLIP)
        log_tar = gaussian_log_density(asv, cm, self._moments("target"))
        return (log_tar - gaussian_log_density(asv, cm, self._moments("nontarget")),
                log_tar - gaussian_log_density(asv, cm, self._moments("spoof")))

    def fit_llrs(self, asv: np.ndarray, cm: np.ndarray, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Fits steps 1 and 2 on checked inputs; returns the fit set's calibrated (LLR_asv, LLR_cm)."""
        keys = check_keys(keys, len(asv), self.name)
        step = "the class-conditional Gaussian LLR step" if self.llrs == "gaussian" else "the sub-score calibration"
        require_keys(keys, TRIAL_KEYS, self.name, step)
        if self.llrs == "gaussian":
            for cls in TRIAL_KEYS:
                mask = keys == cls
                for m, value in zip(_MOMENTS, fit_gaussian(asv[mask], cm[mask]), strict=True):
                    setattr(self, f"{cls}_{m}", value)
        llr_asv, llr_cm = self.raw_llrs(asv, cm)
        bona = keys != "spoof"
        self.a_cm, self.b_cm = affine_calibration(llr_cm, bona, self.weighting, self.solver)
        self.a_asv, self.b_asv = affine_calibration(llr_asv[bona], keys[bona] == "target", self.weighting,
                                                    self.solver)
        self.fitted = True
        return self.a_asv * llr_asv + self.b_asv, self.a_cm * llr_cm + self.b_cm

    def calibrated_llrs(self, asv: np.ndarray, cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated LLR_asv, calibrated LLR_cm) per trial."""
        if not self.fitted:
            raise RuntimeError(f"{self.name} must be fitted before scoring")
        asv, cm = check_scores(asv, cm, self.name)
        llr_asv, llr_cm = self.raw_llrs(asv, cm)
        return self.a_asv * llr_asv + self.b_asv, self.a_cm * llr_cm + self.b_cm
