"""Seeding and RNG states as plain tensors, so a run is reproducible and a checkpoint stays pickle-free."""
from __future__ import annotations

import random

import numpy as np
import torch

from common.config import Rule

# Every seed goes through 32 bits (numpy's limit; `seed_everything`, `derive_seed`): a larger one would silently
# repeat the run of a smaller one, so configs and flags refuse it.
SEED = Rule(0, low=0, high=2**32 - 1)


def derive_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from several integers (base seed, epoch, rank, ...), never colliding trivially."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seeds python, numpy (legacy global), torch CPU and CUDA generators. Call before building a model."""
    seed = int(seed) & 0xFFFFFFFF
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker seeding: torch seeds each worker (base_seed + id); python and numpy follow it."""
    seed = torch.initial_seed() & 0xFFFFFFFF
    random.seed(seed)
    np.random.seed(seed)


def get_rng_state(device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """The global generators' states as tensors (loadable with `torch.load(weights_only=True)`).

    Only the CUDA generator of `device` is read: reading all devices would create a context on each GPU.
    """
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": torch.tensor([version, *internal], dtype=torch.int64),
        "python_gauss": torch.tensor([float("nan") if gauss is None else gauss], dtype=torch.float64),
        "numpy": torch.tensor([*keys.astype(np.int64).tolist(), pos, has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([cached], dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device | None = None) -> None:
    """Restores what `get_rng_state` returned."""
    py = state["python"].tolist()
    gauss = float(state["python_gauss"][0])
    random.setstate((int(py[0]), tuple(int(v) for v in py[1:]), None if gauss != gauss else gauss))
    npv = state["numpy"].tolist()
    keys = np.asarray(npv[:-2], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, int(npv[-2]), int(npv[-1]), float(state["numpy_gauss"][0])))
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].to(torch.uint8).cpu(), device)
