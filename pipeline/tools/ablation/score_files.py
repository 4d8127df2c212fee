"""The score-file source of a grid (`scores` in the config): both splits read, aligned and checked by fuse.py's reader,
and the systems to run fitted on dev, before anything is written."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from common.errors import InputError
from data.trial_kinds import SASV_KEYS
from fusion import ScoreBackend
from pipeline.tools.ablation.grid import SCORE_SPLITS, System
from pipeline.tools.fuse import Rule, ScoredTrials, SplitSources, fit_rules, input_digests, load_split


@dataclass(frozen=True)
class ScoreFileSource:
    """The grid's trials: each split's ScoredTrials (read once, shared by every system) and the files they came from."""
    sources: tuple[SplitSources, ...]
    data: dict[str, ScoredTrials]

    def named(self) -> dict[str, str]:
        """{'scores.<split>.<kind>': path} of every input file (for check_inputs_kept)."""
        return {flag: path for s in self.sources for flag, path in s.named().items()}

    def digests(self) -> dict[str, dict[str, str]]:
        """{'scores.<split>.<kind>': {path, sha256}} of every input file (provenance and the skip fingerprint)."""
        return input_digests(self.sources)


def split_sources(cfg: Mapping) -> tuple[SplitSources, ...]:
    """The `scores` section as fuse.py's SplitSources, each file named by its config key in messages."""
    return tuple(SplitSources(split, files["asv"], files["cm"], files["trials"],
                              tuple(f"scores.{split}.{kind}" for kind in ("asv", "cm", "trials")))
                 for split, files in ((s, cfg["scores"][s]) for s in SCORE_SPLITS))


def read_score_files(cfg: Mapping) -> ScoreFileSource:
    """Reads and checks both splits (fuse.py's load_split: formats, trials matched by id, labels merged and checked).
    The ablation's table (SASV-EER, a-DCF, dev-chosen thresholds applied to eval) needs labelled dev and eval splits
    with target, nontarget and spoof trials: one line naming the split's file otherwise."""
    sources = split_sources(cfg)
    data = {s.split: load_split(s) for s in sources}
    for split, d in data.items():
        if not d.labelled:
            raise InputError(f"{d.source}: the {split} split has no labels (target / nontarget / spoof); an ablation "
                             f"compares systems by their metrics on labelled dev and eval trials (fuse.py scores an "
                             f"unlabelled eval split)")
        counts = d.counts()
        lacking = next((c for c in SASV_KEYS if not counts[c]), None)
        if lacking is not None:
            shown = ", ".join(f"{n} {c}" for c, n in counts.items())
            raise InputError(f"{d.source}: the {split} split has no {lacking} trials ({shown}); the ablation's table "
                             f"(SASV-EER, a-DCF, thresholds chosen on dev) needs target, nontarget and spoof trials "
                             f"in dev and eval")
    return ScoreFileSource(sources, data)


def fit_systems(systems: Sequence[System], source: ScoreFileSource) -> dict[str, ScoreBackend]:
    """{system name: its back-end fitted on dev} (fuse.py's fit_rules: one line naming the system otherwise)."""
    return fit_rules([Rule(s.name, s.backend, s.options) for s in systems], source.data["dev"])
