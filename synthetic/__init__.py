"""Synthetic SASV corpus: ASVspoof 2019 LA and VoxCeleb layouts filled with source-filter speech.

A stand-in to run and test the whole pipeline in minutes on a CPU; not a benchmark (see docs/synthetic_corpus.md).
"""
from __future__ import annotations

import logging
import os
import time

from .layout import CorpusPaths, corpus_paths
from .presets import PRESETS, Preset, get_preset

log = logging.getLogger(__name__)

__all__ = ["CorpusPaths", "Preset", "PRESETS", "corpus_paths", "generate_corpus", "get_preset"]


def generate_corpus(out_dir: str | os.PathLike, preset: str | Preset = "tiny", seed: int = 0, force: bool = False,
                    workers: int | None = None, progress: bool | None = None) -> CorpusPaths:
    """Writes the corpus under out_dir (LA/ and VoxCeleb/) unless it is already complete for this preset + seed.

    workers: processes rendering audio (default: up to 2 for large presets, 1 otherwise; the output is the same).
    progress: tqdm bar (default: on for presets with more than 300 files).
    """
    from . import layout

    p = get_preset(preset)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    paths = corpus_paths(out_dir)
    why = None if force else layout.why_incomplete(paths, p, seed)
    if not force and why is None:
        return paths
    if why is not None and (paths.root / layout.MANIFEST).exists():
        log.info(f"synthetic corpus in {paths.root}: regenerating it: {why}")
    voices, jobs, texts, enrol_sets = layout.plan_corpus(p, seed)
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(jobs) > 300 else 1
    if progress is None:
        progress = len(jobs) > 300
    layout.prepare_output(paths)
    start = time.perf_counter()
    layout.render_all(jobs, voices, paths.root, p, workers, progress)
    layout.write_enrolment_audio(enrol_sets, paths)
    layout.write_texts(paths.root, texts)
    record = layout.manifest_record(p, seed, layout.count_files(paths.root), texts, layout.files_identity(paths.root))
    record["seconds"] = round(time.perf_counter() - start, 1)
    layout.finalize(paths, record)
    return paths
