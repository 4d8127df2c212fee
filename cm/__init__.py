"""Spoofing countermeasures: AASIST / AASIST-L (`cm.aasist`), SSL-AASIST (`cm.ssl_aasist`: a self-supervised
encoder from `ssl_models` + AASIST's graph back-end), LFCC-LCNN (`cm.lcnn`: the toolkit's LCNN and the ASVspoof 2021
baseline, on the LFCC front ends of `cm.features`), their losses (`cm.losses`) and checkpoint loading
(`cm.checkpoint`).

Every CM model maps a (B, T) float32 16 kHz waveform to (embedding (B, model.embedding_dim), logits (B, 2));
logits[:, 1] is bona fide, the CM score. AASIST embeddings are 160-d (5 x gat_dims[1]). Every model also states
`min_samples` and gives both logits from an embedding (`logits_from_embedding`): the contract
`common.model_contract.Countermeasure`, checked here at import and at every build.
"""
from __future__ import annotations

from torch import nn

from cm import losses
from cm.aasist import AASIST
from cm.aasist import CONFIGS as AASIST_CONFIGS
from cm.lcnn import CONFIGS as LCNN_CONFIGS
from cm.lcnn import LCNN
from cm.ssl_aasist import CONFIGS as SSL_AASIST_CONFIGS
from cm.ssl_aasist import SSLAASIST
from common.dispatch import build
from common.model_contract import check_built, check_registry

__all__ = ["MODELS", "build_model", "losses"]

# arch name -> (class, config dict: every constructor argument with its default)
MODELS = {**{name: (AASIST, config) for name, config in AASIST_CONFIGS.items()},
          **{name: (LCNN, config) for name, config in LCNN_CONFIGS.items()},
          **{name: (SSLAASIST, config) for name, config in SSL_AASIST_CONFIGS.items()}}
check_registry(MODELS, "CM")   # a class that breaks the contract never gets a name


def build_model(arch: str, **kwargs) -> nn.Module:
    """The countermeasure named `arch` (a key of MODELS), its config defaults overridden by `kwargs`; checked against
    the contract (`common.model_contract.check_built`)."""
    model = check_built(build(MODELS, arch, kwargs, "CM model"), arch, "CM")
    model.arch = arch
    return model
