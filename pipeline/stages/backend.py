"""A ready SASV back-end from a config (`ready_backend`), and the files a back-end lives in.

Every entry point that needs a back-end gets it here: the SASV stage (save_sasv_score.py), main.py's task sasv
(pipeline/recipes/sasv_task.py), verify.py, the ablation and fuse.py (pipeline/tools/). So what kind of back-end a
name is (`fusion.backend_class(name).score_level`) is asked in one place for fitting and loading, and a new back-end
needs its own file and its line in `fusion.BACKENDS`, nothing here.

Why in pipeline/stages/: the stage is the lowest layer that knows a config and an experiment's folder (where the
fitted state and the trained checkpoint are), and recipes and tools may import it (tools -> recipes -> stages);
fusion/ stays a library of back-ends that knows no config. Training an embedding back-end is not done here: that is
a training run (engine.fit, pipeline/recipes/frozen.py and joint.py); this module gives the back-end a training
starts from and, afterwards, the trained one from its checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Collection, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from common.errors import InputError
from common.io import atomic_write, load_weights, write_json
from engine.checkpoint import load_model_state
from fusion import TRIAL_KEYS, EmbeddingBackend, ScoreBackend, backend_class, build_backend, score_backend_from_state
from pipeline.stages.experiment import experiment

STATE_FILE = "backend_state.json"     # a fitted score-level back-end's state, beside the scores it made
TRAINED_FILE = "backend.pt"           # what main.py's task sasv writes: the trained embedding back-end


class FitTrials(Protocol):
    """One labelled split's trials with their sub-scores: the stages' TrialInputs or fuse.py's ScoredTrials."""
    asv_scores: np.ndarray
    cm_scores: np.ndarray

    @property
    def keys(self) -> Sequence[str]: ...


class FitSplitError(InputError):
    """The fit split lacks a class of trials the back-end needs to fit (`need`: 'spoof', or 'nontarget|spoof': one of
    them). Callers that name the split otherwise (fuse.py: its score file and rule label) catch it and say it their
    way; the message is a complete one line for everyone else."""

    def __init__(self, name: str, split: str, need: str, counts: Mapping[str, int]):
        self.need, self.split, self.counts = need, split, dict(counts)
        shown = ", ".join(f"{n} {c}" for c, n in counts.items())
        super().__init__(f"backend.fit_on {split!r}: {name} needs {need.replace('|', ' or ')} trials to fit, and the "
                         f"{split} split has none ({shown})")


def ready_backend(cfg: Mapping, splits: Mapping[str, FitTrials] | None = None, *,
                  dims: tuple[int, int] | None = None, save: bool = False,
                  for_training: bool = False) -> ScoreBackend | EmbeddingBackend:
    """The back-end `cfg['backend']` names (`name`, `options`, `fit_on`, `checkpoint`), ready to score.

    Score-level (`score_level` of its class): fitted on `splits[backend.fit_on]` (one line when that split is not
    among `splits`, or lacks a class of trials the back-end needs: FitSplitError), its state written atomically to
    `backend_state_path(cfg)` when `save`; with no `splits`, rebuilt from that saved state (verify.py), refused in
    one line when it is missing, not JSON, or of another back-end.
    Embedding-level: `dims` = (ASV, CM embedding size) are required; loaded from `backend.checkpoint` with the options
    stored in it (`backend_checkpoint`'s checks), in eval mode. `for_training`: the back-end a training starts from,
    in train mode: the checkpoint's when one is set (two-stage recipes), else a new one from `backend.options`.
    """
    name = cfg["backend"]["name"]
    if backend_class(name).score_level:
        if for_training:
            raise TypeError(f"ready_backend: score-level back-end {name!r} is fitted, not trained")
        if splits is None:
            return _saved_score_backend(cfg)
        backend = _fitted(cfg, splits)
        if save:
            write_json(backend_state_path(cfg), backend.state_dict())
        return backend
    if dims is None:
        raise TypeError(f"ready_backend: the embedding back-end {name!r} needs dims=(asv_dim, cm_dim)")
    if for_training and not cfg["backend"]["checkpoint"]:
        return _new_embedding_backend(name, cfg["backend"]["options"], *dims)
    backend = _trained_embedding_backend(cfg, *dims)
    return backend.train() if for_training else backend


def backend_state_path(cfg: Mapping) -> Path:
    """Where a fitted score-level back-end's state is: <output_dir>/backend_state.json."""
    return experiment(cfg).root / STATE_FILE


def embedding_backend_path(cfg: Mapping) -> Path:
    """backend.checkpoint, or the `backend.pt` main.py writes into output_dir when none is configured."""
    return Path(cfg["backend"]["checkpoint"] or experiment(cfg).root / TRAINED_FILE)


def check_fit_on(cfg: Mapping, splits: Collection[str]) -> None:
    """`backend.fit_on` must be one of the scored splits (checked again when fitting, and before anything is written
    by save_sasv_score.py's checks)."""
    if cfg["backend"]["fit_on"] not in splits:
        raise InputError(f"backend.fit_on is {cfg['backend']['fit_on']!r}; choose one of the scored splits "
                         f"{sorted(splits)}")


def _fitted(cfg: Mapping, splits: Mapping[str, FitTrials]) -> ScoreBackend:
    name, fit_on = cfg["backend"]["name"], cfg["backend"]["fit_on"]
    check_fit_on(cfg, splits)
    backend = build_backend(name, **cfg["backend"]["options"])
    data = splits[fit_on]
    keys = np.asarray(data.keys).astype(str)
    counts = {c: int(np.count_nonzero(keys == c)) for c in TRIAL_KEYS}
    lacking = next((need for need in backend.needs_classes()
                    if not any(counts.get(c, 0) for c in need.split("|"))), None)
    if lacking is not None:
        raise FitSplitError(name, fit_on, lacking, counts)
    return backend.fit(data.asv_scores, data.cm_scores, data.keys)


def _saved_score_backend(cfg: Mapping) -> ScoreBackend:
    path, name = backend_state_path(cfg), cfg["backend"]["name"]
    if not path.exists():
        raise InputError(f"{path}: no fitted '{name}' back-end; run save_sasv_score.py with this config first")
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(state, dict) or state.get("backend") != name:
        got = state.get("backend") if isinstance(state, dict) else None
        raise InputError(f"{path}: holds back-end {got!r}, but the config's backend.name is "
                         f"{name!r}; rerun save_sasv_score.py with this config")
    try:
        return score_backend_from_state(state)
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None


def _new_embedding_backend(name: str, options: Mapping, asv_dim: int, cm_dim: int) -> EmbeddingBackend:
    """A new embedding back-end; the embedding sizes come from the front-ends unless the options set them."""
    return build_backend(name, **{"asv_dim": asv_dim, "cm_dim": cm_dim, **options})


def _trained_embedding_backend(cfg: Mapping, asv_dim: int, cm_dim: int) -> EmbeddingBackend:
    """The embedding back-end of `backend.checkpoint`, built with the options stored in it, in eval mode."""
    ckpt = backend_checkpoint(cfg)
    backend = _new_embedding_backend(cfg["backend"]["name"], ckpt["options"], asv_dim, cm_dim)
    try:
        load_model_state(backend, ckpt["state"], str(cfg["backend"]["checkpoint"]))
    except ValueError as e:
        raise InputError(str(e)) from None
    return backend.eval()


def backend_checkpoint(cfg: Mapping) -> dict:
    """The checkpoint `backend.checkpoint` names, checked without building anything: a weights-only file of the
    configured back-end, whose stored options agree with `backend.options` (empty: use the stored ones). One line
    naming the file otherwise: entry points call it before they write anything."""
    path, name = cfg["backend"]["checkpoint"], cfg["backend"]["name"]
    if not path:
        raise InputError(f"backend '{name}' is trained, not fitted: set backend.checkpoint to a trained back-end "
                         f"(python main.py --config ... writes backend.pt), or choose a score-level back-end")
    ckpt = load_weights(path, label=f"backend.checkpoint {path}")
    if ckpt.get("backend") != name:
        raise InputError(f"{path}: not a '{name}' back-end checkpoint (holds {ckpt.get('backend')!r})")
    try:
        stored = json.loads(ckpt["options"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: not a back-end checkpoint of this toolkit (no readable 'options'; main.py "
                         f"writes them as backend.pt)") from None
    given = dict(cfg["backend"]["options"])
    if given and given != stored:
        raise InputError(f"backend.options {json.dumps(given)} differ from those backend.checkpoint {path} was "
                         f"trained with ({json.dumps(stored)}); leave backend.options empty to use them")
    if not isinstance(ckpt.get("state"), Mapping):
        raise InputError(f"{path}: not a back-end checkpoint of this toolkit (no 'state' dict)")
    return {"options": stored, "state": ckpt["state"]}


def backend_options(cfg: Mapping) -> dict:
    """The options the back-end is built with: those stored in `backend.checkpoint` when it is set (a back-end
    training starts from, or scores with), else `backend.options`."""
    return backend_checkpoint(cfg)["options"] if cfg["backend"]["checkpoint"] else dict(cfg["backend"]["options"])


def save_backend(path: Path, backend: nn.Module, name: str, options: Mapping) -> None:
    """A trained embedding back-end as `ready_backend` loads it: weights-only, with its name and options (JSON)."""
    with atomic_write(path, "wb") as f:
        torch.save({"backend": name, "options": json.dumps(dict(options)), "state": backend.state_dict()}, f)
