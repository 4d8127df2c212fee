"""Small options for every registered front-end model, shared by the tests that iterate the registries
(tests/test_model_contract.py, tests/test_onnx.py): each builds in milliseconds and runs in seconds on 2 cores."""
from __future__ import annotations

import torch

import asv
import cm
from tests.ssl_fixtures import TINY_SSL_MODELS

SMALL = {"embedding_dim": 16, "n_mels": 24}
TINY = {   # a registered model without an entry is built at its defaults
    "ResNetSE34V2": {**SMALL, "channels": [8, 8, 16, 16], "layers": [1, 1, 1, 1]},
    "ResNetSE34L": {**SMALL, "channels": [8, 8, 16, 16], "layers": [1, 1, 1, 1]},
    "ECAPA-TDNN": {**SMALL, "C": 16},
    "SKA-TDNN": {**SMALL, "C": 16},
    "MFA-Conformer": {**SMALL, "num_blocks": 2, "d_model": 16, "heads": 2, "ffn_dim": 32},
    "AASIST": {"filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]], "gat_dims": [8, 8]},
    "AASIST-L": {"filts": [20, [1, 8], [8, 8], [8, 8], [8, 8]], "gat_dims": [8, 8]},
    "LCNN": {"channels": [[16, 16, 16, 16]]},
    "LCNN-LFCC-LPS": {"channels": [[16, 16, 16, 16], [8, 8, 8, 8]]},
    **TINY_SSL_MODELS,
}
# Every registered front-end as (kind, name): iterating this covers a new model without a new test.
REGISTERED = [("asv", name) for name in asv.MODELS] + [("cm", name) for name in cm.MODELS]


def build_tiny(kind: str, name: str, seed: int = 0) -> torch.nn.Module:
    """The registered `kind` (asv | cm) model `name` with its TINY options, seeded, in eval mode."""
    torch.manual_seed(seed)
    return (asv if kind == "asv" else cm).build_model(name, **TINY.get(name, {})).eval()
