"""Fusion ablation: a grid of SASV back-end variants scored from the cached embeddings of one experiment.

The config is a SASV config (pipeline/recipes/sasv_task.SCHEMA) plus an `ablation` section listing the systems.
Each system is a back-end by name with its options, config overrides (score normalisation, enrolment form,
sampling, training) and the CM score type it fuses. Front-end embeddings are computed once by the stage
code into the experiment's embedding folder and shared by every system (skipped when cached); score-level
back-ends are fitted in milliseconds and embedding-level ones trained on cached embeddings for each seed.

The scores may instead come from score files (`scores`: each split's ASV and CM files, read as fuse.py reads them):
the grid then holds score-level back-ends with their options, fitted on dev, and refuses what needs embeddings.

Modules, one job each:

    grid.py         the config's source and `ablation` section: systems checked and resolved before anything runs
    cm_scores.py    the CM score type a system fuses (logit, log odds, posterior)
    score_files.py  the score-file source: both splits read and checked (pipeline.tools.fuse), systems fitted on dev
    runner.py       running one system (or reusing its current result) and the whole grid
    analysis.py     metrics, dev-chosen thresholds, Cllr and pictures of one run; what a split must offer
    report.py       ablation.csv and ablation.md

Layout under `ablation.dir` (default `<output_dir>/ablation`):

    ablation.csv, ablation.md, ablation_det.png      the comparison (see docs/ablation.md)
    <system>/result.json                             metrics of every run, mean/std, fingerprint (skip key)
    <system>/scores/{asv,cm,cm_trials,sasv}_{dev,eval}.txt, backend_state.json, thresholds.json
    <system>/seed_<k>/{scores/sasv_*.txt, thresholds.json, backend.pt, run.json, train/}   (trained back-ends)
    <system>/hist.png, det.png, reliability.png      pictures of the system (first seed)

A system whose result.json carries the current fingerprint (its resolved config, CM score type, seeds,
threshold settings, the front-ends with their checkpoints' SHA-256, the SHA-256 of the cached embeddings it
reads and of the protocol files) is skipped; a trained run whose run.json matches is reused, so adding a
seed trains only that seed. The stages run first for every system (a no-op when their caches are current).
"""
