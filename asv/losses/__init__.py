"""Speaker-embedding training losses, chosen by name (voxceleb_trainer's set).

Every loss: `forward(x: (B, M, D), label: (B,)) -> (loss, accuracy_percent)`. Classification losses
(softmax, amsoftmax, aamsoftmax) flatten the M utterances per speaker; metric losses (angleproto, softmaxproto,
ge2e, triplet) need M >= 2 and raise InputError otherwise.
"""
from __future__ import annotations

import inspect

from torch import nn

from asv.losses.aamsoftmax import AAMSoftmax
from asv.losses.amsoftmax import AMSoftmax
from asv.losses.angleproto import AngleProto
from asv.losses.ge2e import GE2E
from asv.losses.softmax import Softmax
from asv.losses.softmaxproto import SoftmaxProto
from asv.losses.triplet import Triplet
from common.errors import InputError

LOSSES = {
    "softmax": Softmax,
    "amsoftmax": AMSoftmax,
    "aamsoftmax": AAMSoftmax,
    "angleproto": AngleProto,
    "softmaxproto": SoftmaxProto,
    "ge2e": GE2E,
    "triplet": Triplet,
}

# Losses with a classification head; the metric-only ones take neither embedding_dim nor num_classes.
CLASSIFICATION = ("softmax", "amsoftmax", "aamsoftmax", "softmaxproto")


def build_loss(name: str, embedding_dim: int, num_classes: int, **kwargs) -> nn.Module:
    """The loss `name`; `embedding_dim`/`num_classes` size the classifier of losses that have one."""
    if name not in LOSSES:
        raise InputError(f"unknown ASV loss '{name}' (valid: {', '.join(LOSSES)})")
    cls = LOSSES[name]
    sized = ("self", "embedding_dim", "num_classes")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in sized]
    for key in kwargs:
        if key not in accepted:
            raise InputError(f"unknown keyword '{key}' for ASV loss {name} (valid: {', '.join(accepted) or 'none'})")
    if name in CLASSIFICATION:
        return cls(embedding_dim, num_classes, **kwargs)
    return cls(**kwargs)
