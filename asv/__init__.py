"""Speaker (ASV) embedding models, their training losses (`asv.losses`), community checkpoint adapters
(`asv.checkpoint`) and cosine scoring (`asv.scoring`).

Every model maps a (B, T) float32 16 kHz waveform to a (B, D) embedding and states `embedding_dim` and
`min_samples`: the contract `common.model_contract.SpeakerModel`, checked here at import and at every build.
"""
from __future__ import annotations

from torch import nn

from asv import ecapa_tdnn, losses, mfa_conformer, mhfa, resnet_se34l, resnet_se34v2, ska_tdnn, ssl_ecapa
from common.dispatch import build
from common.model_contract import check_built, check_registry

__all__ = ["MODELS", "build_model", "losses"]

# arch name -> (class, config dict with every accepted keyword and its default)
MODELS = {
    "ResNetSE34V2": (resnet_se34v2.ResNetSE34V2, resnet_se34v2.CONFIG),
    "ResNetSE34L": (resnet_se34l.ResNetSE34L, resnet_se34l.CONFIG),
    "ECAPA-TDNN": (ecapa_tdnn.ECAPATDNN, ecapa_tdnn.CONFIG),
    "SKA-TDNN": (ska_tdnn.SKATDNN, ska_tdnn.CONFIG),
    "MFA-Conformer": (mfa_conformer.MFAConformer, mfa_conformer.CONFIG),
    "SSL-ECAPA": (ssl_ecapa.SSLECAPA, ssl_ecapa.CONFIG),       # a self-supervised encoder (ssl_models) + ECAPA-TDNN
    "SSL-MHFA": (mhfa.SSLMHFA, mhfa.CONFIG),                   # a self-supervised encoder + MHFA pooling head
}
check_registry(MODELS, "ASV")   # a class that breaks the contract never gets a name


def build_model(arch: str, **kwargs) -> nn.Module:
    """The speaker model named `arch`, with its CONFIG defaults overridden by `kwargs`; checked against the contract
    (`common.model_contract.check_built`: its embedding size and shortest input are positive ints)."""
    return check_built(build(MODELS, arch, kwargs, "ASV model"), arch, "ASV")
