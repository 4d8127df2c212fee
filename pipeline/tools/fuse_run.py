"""One fusion run over score files: every rule fitted on dev and scoring both splits, evaluated (`fuse`, which writes
nothing), then its files written (`write_outputs`, inside the locked output folder)."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common.io import atomic_write, write_json
from common.provenance import provenance
from fusion import ScoreBackend
from metrics.report import format_table, json_ready, missing_classes
from pipeline.tools.fuse import (
    Rule,
    ScoredTrials,
    SplitSources,
    evaluate,
    fit_rules,
    input_digests,
    load_split,
    output_files,
    split_texts,
    write_inputs,
    write_split,
)

log = logging.getLogger(__name__)


@dataclass
class FusionResult:
    """What a run computed, and the files it will write."""
    out: Path
    sources: list[SplitSources]
    data: dict[str, ScoredTrials]                   # split -> trials and sub-scores
    rules: list[Rule]
    backends: dict[str, ScoreBackend]               # rule label -> fitted back-end
    scores: dict[str, dict[str, np.ndarray]]        # rule label -> split -> SASV scores
    metrics: dict[str, dict[str, dict]]             # rule label -> labelled split -> metrics
    files: dict[str, Path]
    det: bool

    def table(self) -> str:
        rows = {f"{label} ({split})": {k: v for k, v in m.items() if k != "breakdown"}
                for label, by_split in self.metrics.items() for split, m in by_split.items()}
        return format_table(rows) if rows else "no labelled split: no metrics"


def fuse(sources: Sequence[SplitSources], rules: Sequence[Rule], out: Path, det: bool = True,
         breakdown: bool = False) -> FusionResult:
    """Reads and checks every input, fits every rule on dev, scores and evaluates both splits; writes nothing (every
    bad input is one line before the output folder is touched)."""
    data = {s.split: load_split(s) for s in sources}
    backends = fit_rules(rules, data["dev"])
    scores = {label: {split: b.score(d.asv_scores, d.cm_scores) for split, d in data.items()}
              for label, b in backends.items()}
    metrics = {label: {split: evaluate(b, d, scores[label][split], breakdown) for split, d in data.items()
                       if d.labelled}
               for label, b in backends.items()}
    files = output_files(Path(out), [r.label for r in rules], {s: d.labelled for s, d in data.items()}, det)
    return FusionResult(Path(out), list(sources), data, list(rules), backends, scores, metrics, files, det)


def _notes(result: FusionResult) -> list[str]:
    """What the table leaves out, and why: an unlabelled split, metrics a split's classes cannot give."""
    notes = []
    for split, d in result.data.items():
        if not d.labelled:
            notes.append(f"note: the {split} split ({d.source}) has no labels: its {len(d.keys)} trials are scored "
                         f"and written without metrics")
            continue
        lacking: dict[str, list[str]] = {}
        for metric, cls in missing_classes(d.keys).items():
            lacking.setdefault(cls, []).append(metric)
        notes += [f"note: the {split} split has no {cls} trials: not computed: {', '.join(m)}"
                  for cls, m in lacking.items()]
    return notes


def write_outputs(result: FusionResult) -> None:
    """Score files of every rule and split, the aligned inputs, DET plots, table.txt and results.json (last: a
    folder with a results.json holds a finished run)."""
    from metrics.det import plot_det

    out = result.out
    for split, d in result.data.items():     # split by split: only one split's score texts are held at a time
        log.info(f"{split}: {len(d.keys)} trials from {d.source}"
                 + (f" ({', '.join(f'{n} {c}' for c, n in d.counts().items())})" if d.labelled else ", no labels"))
        texts = split_texts(d)
        if d.labelled:
            write_inputs(out, d, texts)
        keys_written = None
        for label, by_split in result.scores.items():
            keys_written = write_split(out, label, d, by_split[split], texts, keys_written)
    for label, backend in result.backends.items():
        write_json(out / label / "backend_state.json", backend.state_dict())
    if result.det:
        for split, d in result.data.items():
            if d.labelled:
                plot_det({label: (by_split[split], d.key_array) for label, by_split in result.scores.items()},
                         out / f"det_{split}.png", title=f"Fused score files: {split} ({len(d.keys)} trials)")
    table = result.table()
    with atomic_write(out / "table.txt") as f:
        f.write(table + "\n")
    config = {"splits": {s.split: s.named() for s in result.sources},
              "backends": [{"label": r.label, "name": r.name, "options": dict(r.options)} for r in result.rules],
              "det": result.det}
    payload = {
        "splits": {split: {"trials": len(d.keys), "labelled": d.labelled, "source": d.source,
                           **({"counts": d.counts()} if d.labelled else {})} for split, d in result.data.items()},
        "rules": {r.label: {"backend": r.name, "options": dict(r.options),
                            "state": result.backends[r.label].state_dict(), **result.metrics[r.label]}
                  for r in result.rules},
        "inputs": input_digests(result.sources),
        "provenance": provenance(config),
    }
    write_json(out / "results.json", json_ready(payload))
    print(table)
    for note in _notes(result):
        print(note, file=sys.stderr)
    log.info(f"fused scores of {len(result.rules)} rules -> {out}")
