"""Short CPU training runs learn: the whole demo (python demo.py), scaled down to a small synthetic corpus,
gives front-ends clearly better than chance (50 %) and fused SASV systems that beat both single systems on
the eval set. One demo run (~4 minutes on 2 cores) serves every test here."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from synthetic import Preset, generate_corpus
from tests.conftest import ROOT

pytestmark = pytest.mark.slow   # the one demo run behind every test here: ~4 minutes on 2 idle cores

# The train set is sized for the CM to converge within the demo's 10 epochs on any machine: with 100 bona fide
# + 108 spoofed utterances (130 steps) a 1-thread run (another floating-point trajectory than 2 threads) ended
# at 26 % dev CM EER and two fused systems lost to ASV only; with 160 + 180 it reaches 14-19 %.
SMALL = Preset(name="test-learning", train_speakers=10, dev_speakers=8, eval_speakers=8, train_bonafide=16,
               enrol_utts=3, trial_utts=8, nontarget_claims=1, train_spoofs=30, dev_spoofs=12, eval_spoofs=8,
               min_dur=1.2, max_dur=2.0, vox_train_speakers=40, vox_test_speakers=8, vox_utts=6, vox_test_utts=4,
               vox_videos=2)
FUSED = ("Score sum (Baseline1)", "Product rule", "LR fusion", "Baseline2 DNN", "OC back-end, frozen",
         "OC back-end, joint")


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("learning"), SMALL, seed=0, progress=False)


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
    assert set(results) == {label for label, _ in demo.SYSTEMS} | {demo.SINGLE_EMBEDDING}
    assert (out / "det_eval.png").stat().st_size > 0
    return out, results


def test_demo_speaker_model_beats_chance(demo_results):
    """ECAPA-TDNN (C=128), the quickstart recipe on 40 VoxCeleb-layout speakers, then adapted on LA train."""
    out, _ = demo_results
    for step in ("asv", "asv_la"):
        eer = json.loads((out / step / "results.json").read_text())["eer"]
        assert eer < 30.0, f"{step}: speaker verification EER {eer:.1f} % after a short run"


def test_demo_countermeasure_beats_chance(demo_results):
    """The quickstart LCNN-LFCC-LPS recipe on 160 bona fide + 180 spoofed training utterances."""
    out, _ = demo_results
    metrics = json.loads((out / "cm" / "results.json").read_text())
    assert metrics["dev_cm_eer"] < 30.0, f"CM EER on dev (seen attacks) {metrics['dev_cm_eer']:.1f} %"
    assert metrics["eval_cm_eer"] < 40.0, f"CM EER on eval (mostly unseen attacks) {metrics['eval_cm_eer']:.1f} %"


@pytest.mark.parametrize("system", FUSED)
def test_demo_fused_system_beats_both_single_systems(demo_results, system):
    """On eval, the fused system has a lower SASV-EER than the ASV-only and the CM-only system."""
    results = demo_results[1]
    asv, cm = (results[label]["eval"]["sasv_eer"] for label in ("ASV only", "CM only"))
    fused = results[system]["eval"]["sasv_eer"]
    assert fused < min(asv, cm), f"{system}: eval SASV-EER {fused:.1f} % vs ASV only {asv:.1f} %, CM only {cm:.1f} %"


def test_demo_single_embedding_beats_its_stage_1_network(demo_results, small_corpus):
    """The single SASV embedding after stages 1+2+3 against the same network after stage 1 alone (the demo's
    speaker model pre-trained on the VoxCeleb part), both scored the same way (one cosine, mean of L2-normalised
    enrolment embeddings) on eval: lower SASV-EER and SPF-EER, i.e. stages 2 and 3 taught one cosine to reject
    spoofs of the claimed speaker."""
    import torch

    import demo
    from common.config import load_config
    from data.asvspoof import LADatabase
    from metrics.report import evaluate_trials
    from pipeline.recipes import sasv_e2e_task
    from pipeline.stages.frontends import build_asv

    out, results = demo_results
    cfg = load_config(ROOT / "configs" / "quickstart_sasv2_stage3.conf",
                      [f"data.database={small_corpus.la}", "asv.model={C: 128, embedding_dim: 64}",
                       f"asv.checkpoint={out / 'asv' / 'asv_model.pt'}", f"output_dir={out / 'stage1_scoring'}"],
                      sasv_e2e_task.SCHEMA)
    scorer = sasv_e2e_task.SASVTrialScorer(cfg, LADatabase(small_corpus.la), "eval")
    with torch.no_grad():
        stage1 = evaluate_trials(scorer.keys, scorer.score(build_asv(cfg["asv"]), torch.device("cpu")))
    single = results[demo.SINGLE_EMBEDDING]["eval"]
    for metric in ("sasv_eer", "spf_eer"):
        assert single[metric] < stage1[metric], (f"eval {metric}: stages 1+2+3 {single[metric]:.1f} % vs "
                                                 f"stage 1 alone {stage1[metric]:.1f} %")


def test_the_readmes_verify_command_scores_own_audio_after_the_demo(demo_results, small_corpus, tmp_path):
    """The README's demo section ends with the command that scores a user's own files with the demo's product-rule
    system; it runs here as written, on the demo's folder, with files in another format and sample rate."""
    import shlex
    import subprocess
    import sys

    import soundfile as sf
    from scipy.signal import resample_poly

    out, _ = demo_results
    line = next(x for x in (ROOT / "README.md").read_text().splitlines() if x.startswith(".venv/bin/python verify.py"))
    argv = shlex.split(line)
    assert argv[:2] == [".venv/bin/python", "verify.py"] and "exp/quickstart/systems/product_rule/config.yaml" in argv
    assert (out / "systems" / "product_rule" / "config.yaml").is_file()   # every system folder describes itself
    flac = sorted((Path(small_corpus.la) / "ASVspoof2019_LA_dev" / "flac").glob("*.flac"))
    own = {}
    for name, src in zip(("a.wav", "b.wav", "c.wav"), flac, strict=False):   # the user's files: 22.05 kHz stereo
        wave, rate = sf.read(src)
        wave = resample_poly(wave, 441, 320)
        own[name] = tmp_path / name
        sf.write(own[name], [[x, x] for x in wave], 22050)
    argv = [sys.executable if a == ".venv/bin/python" else
            str(out / a.removeprefix("exp/quickstart/")) if a.startswith("exp/quickstart/") else
            str(own.get(a, a)) for a in argv]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ACCEPT" in result.stdout or "REJECT" in result.stdout
