"""Short CPU training runs learn: the demo recipes, scaled down to a small synthetic corpus, give clearly
better-than-chance EERs (chance is 50 %), and in the whole demo on that corpus the fused systems beat both
single systems. The front-end runs take under a minute each on 2 cores, the demo about 2.5 minutes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from common.config import load_config
from pipeline import asv_task, cm_task
from synthetic import Preset, generate_corpus

ROOT = Path(__file__).resolve().parents[1]
SMALL = Preset(name="test-learning", train_speakers=10, dev_speakers=6, eval_speakers=6, train_bonafide=10, enrol_utts=3,
               trial_utts=6, train_spoofs=18, dev_spoofs=8, eval_spoofs=4, min_dur=1.2, max_dur=2.0,
               vox_train_speakers=40, vox_test_speakers=8, vox_utts=6, vox_test_utts=4, vox_videos=2)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("learning"), SMALL, seed=0, progress=False)


def _config(name: str, module, overrides: list[str]) -> dict:
    return load_config(ROOT / "configs" / name, [*overrides, "train.progress=false"], module.SCHEMA)


def test_small_speaker_model_run_beats_chance(small_corpus, tmp_path):
    """ECAPA-TDNN (C=128) with the quickstart recipe, 6 epochs on 40 VoxCeleb-layout speakers."""
    cfg = _config("quickstart_asv.conf", asv_task, [
        f"data.voxceleb={small_corpus.voxceleb}", f"output_dir={tmp_path}", "asv.model={C: 128, embedding_dim: 64}",
        "train.batch_size=20"])
    metrics = asv_task.run(cfg)
    assert metrics["eer"] < 30.0, f"speaker verification EER {metrics['eer']:.1f} % after a short run"
    assert json.loads((tmp_path / "results.json").read_text())["eer"] == metrics["eer"]


def test_small_countermeasure_run_beats_chance(small_corpus, tmp_path):
    """The quickstart LFCC-LCNN recipe, 14 epochs on 100 bona fide + 108 spoofed training utterances."""
    cfg = _config("quickstart_cm.conf", cm_task, [f"database={small_corpus.la}", f"output_dir={tmp_path}",
                                                  "train.epochs=14"])
    metrics = cm_task.run(cfg)
    assert metrics["dev_cm_eer"] < 30.0, f"CM EER on dev (seen attacks) {metrics['dev_cm_eer']:.1f} %"
    assert metrics["eval_cm_eer"] < 45.0, f"CM EER on eval (mostly unseen attacks) {metrics['eval_cm_eer']:.1f} %"


# Fused systems that do not yet beat both single systems on this run, with why (issue 4 tracks them). They
# are strict xfails: the day one starts passing, the suite says so and the entry must go.
KNOWN_SHORTFALLS: dict[str, str] = {
    "Baseline2 DNN": "an MLP on concatenated embeddings has to learn speaker similarity from the 10 training "
                     "speakers; with the weak CM on eval it ends level with CM only (44 %)",
}
FUSED = ("Score sum (Baseline1)", "Product rule", "LR fusion", "Baseline2 DNN", "OC back-end, frozen",
         "OC back-end, joint")


@pytest.fixture(scope="module")
def demo_results(small_corpus, tmp_path_factory):
    """The whole demo (python demo.py) on the small corpus."""
    import demo
    out = tmp_path_factory.mktemp("demo")
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        results = demo.run_demo(out, Path(small_corpus.root), SMALL,
                                extra=["train.progress=false", "asv.model={C: 128, embedding_dim: 64}"])
    finally:
        os.chdir(cwd)
    assert set(results) == {label for label, _ in demo.SYSTEMS}
    assert (out / "det_eval.png").stat().st_size > 0
    return results


@pytest.mark.parametrize("system", [pytest.param(label, marks=pytest.mark.xfail(strict=True, reason=KNOWN_SHORTFALLS[label]))
                                    if label in KNOWN_SHORTFALLS else label for label in FUSED])
def test_demo_fused_system_beats_both_single_systems(demo_results, system):
    """On eval, the fused system has a lower SASV-EER than the ASV-only and the CM-only system."""
    asv, cm = (demo_results[label]["eval"]["sasv_eer"] for label in ("ASV only", "CM only"))
    fused = demo_results[system]["eval"]["sasv_eer"]
    assert fused < min(asv, cm), f"{system}: eval SASV-EER {fused:.1f} % vs ASV only {asv:.1f} %, CM only {cm:.1f} %"
