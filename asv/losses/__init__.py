"""Speaker-embedding training losses, chosen by name (voxceleb_trainer's set).

Every loss: `forward(x: (B, M, D), label: (B,)) -> (loss, accuracy_percent)`. Classification losses
(softmax, amsoftmax, aamsoftmax) flatten the M utterances per speaker; metric losses (angleproto, softmaxproto,
ge2e, triplet) need M >= 2 and raise InputError otherwise.
"""
from __future__ import annotations

from torch import nn

from asv.losses.aamsoftmax import AAMSoftmax
from asv.losses.amsoftmax import AMSoftmax
from asv.losses.angleproto import AngleProto
from asv.losses.ge2e import GE2E
from asv.losses.softmax import Softmax
from asv.losses.softmaxproto import SoftmaxProto
from asv.losses.triplet import Triplet
from common.dispatch import build

LOSSES = {
    "softmax": Softmax,
    "amsoftmax": AMSoftmax,
    "aamsoftmax": AAMSoftmax,
    "angleproto": AngleProto,
    "softmaxproto": SoftmaxProto,
    "ge2e": GE2E,
    "triplet": Triplet,
}


def build_loss(name: str, embedding_dim: int, num_classes: int, **kwargs) -> nn.Module:
    """The loss `name`; `embedding_dim`/`num_classes` size the classifier of losses that have one (the
    metric-only losses take neither), and are not options a config can set."""
    return build(LOSSES, name, kwargs, "ASV loss", fixed={"embedding_dim": embedding_dim, "num_classes": num_classes})
