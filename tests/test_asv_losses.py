"""Speaker losses: dispatch, input checks, finiteness, hand-computed values, seed equivalence, optimisation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from asv.losses import LOSSES, build_loss

pytestmark = pytest.mark.usefixtures("one_thread")


ALL = list(LOSSES)
METRIC = ["angleproto", "softmaxproto", "ge2e", "triplet"]


def test_dispatch_errors():
    valid = "valid: softmax, amsoftmax, aamsoftmax, angleproto, softmaxproto, ge2e, triplet"
    with pytest.raises(ValueError, match=valid):
        build_loss("arcface", 8, 3)
    with pytest.raises(ValueError, match="'easy_margin' for ASV loss amsoftmax"):
        build_loss("amsoftmax", 8, 3, easy_margin=True)
    assert build_loss("aamsoftmax", 8, 3, margin=0.3, scale=15, easy_margin=True).easy_margin


@pytest.mark.parametrize("name", ALL)
def test_finite_loss_and_gradients(name):
    torch.manual_seed(0)
    loss_fn = build_loss(name, 16, 6)
    x = torch.randn(6, 3, 16, requires_grad=True)
    loss, acc = loss_fn(x, torch.arange(6))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert acc.dim() == 0 and 0.0 <= acc.item() <= 100.0 and not acc.requires_grad
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for p in loss_fn.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", METRIC)
def test_metric_losses_need_two_utterances_per_speaker(name):
    loss_fn = build_loss(name, 16, 6)
    with pytest.raises(ValueError, match="at least 2 utterances per speaker"):
        loss_fn(torch.randn(6, 1, 16), torch.arange(6))
    with pytest.raises(ValueError, match="at least 2 utterances per speaker"):
        loss_fn(torch.randn(6, 16), torch.arange(6))


def test_classification_input_checks_and_flattening():
    torch.manual_seed(1)
    loss_fn = build_loss("aamsoftmax", 16, 4)
    with pytest.raises(ValueError, match=r"shape \(B, M, 16\)"):
        loss_fn(torch.randn(4, 2, 8), torch.arange(4))
    with pytest.raises(ValueError, match=r"labels of shape \(4,\)"):
        loss_fn(torch.randn(4, 2, 16), torch.arange(8))
    x, label = torch.randn(4, 2, 16), torch.tensor([0, 1, 2, 3])
    flat, _ = loss_fn(x.reshape(8, 1, 16), label.repeat_interleave(2))
    assert loss_fn(x, label)[0].item() == pytest.approx(flat.item())
    assert loss_fn(x[:, 0], label)[0].item() == pytest.approx(loss_fn(x[:, :1], label)[0].item())   # (B, D) = M of 1


def test_aamsoftmax_by_hand():
    s, m = 30.0, 0.2
    loss_fn = build_loss("aamsoftmax", 2, 2, margin=m, scale=s)
    with torch.no_grad():
        loss_fn.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))    # class directions at 0 and 90 degrees
    theta = 1.0                                                       # embedding 1 rad from class 0, label 0
    x = torch.tensor([[[math.cos(theta), math.sin(theta)]]]) * 7.0
    target, other = s * math.cos(theta + m), s * math.cos(math.pi / 2 - theta)
    expected = -target + math.log(math.exp(target) + math.exp(other))
    loss, acc = loss_fn(x, torch.tensor([0]))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert acc.item() == 0.0                                          # 30 cos(1.2) < 30 cos(pi/2 - 1)
    # beyond theta = pi - m the target logit is s (cos(theta) - m sin(m)), keeping it monotonic
    theta = math.pi - 0.1
    x = torch.tensor([[[math.cos(theta), math.sin(theta)]]])
    target = s * (math.cos(theta) - math.sin(math.pi - m) * m)
    other = s * math.cos(math.pi / 2 - theta)
    expected = -target + math.log(math.exp(target) + math.exp(other))
    assert loss_fn(x, torch.tensor([0]))[0].item() == pytest.approx(expected, rel=1e-5)


def test_amsoftmax_and_softmax_by_hand():
    am = build_loss("amsoftmax", 2, 2, margin=0.3, scale=30.0)
    with torch.no_grad():
        am.W.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))            # (D, classes)
    x = torch.tensor([[[0.6, 0.8]]])
    target, other = 30.0 * (0.8 - 0.3), 30.0 * 0.6                    # label 1
    assert am(x, torch.tensor([1]))[0].item() == pytest.approx(-target + math.log(math.exp(target) + math.exp(other)),
                                                                 rel=1e-5)
    sm = build_loss("softmax", 2, 3)
    with torch.no_grad():
        sm.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        sm.fc.bias.copy_(torch.tensor([0.0, 0.5, -1.0]))
    x = torch.tensor([[[2.0, -1.0]], [[0.0, 1.0]]])
    logits = [[2.0, -0.5, 0.0], [0.0, 1.5, 0.0]]
    labels = [0, 2]
    expected = sum(-row[y] + math.log(sum(math.exp(v) for v in row)) for row, y in zip(logits, labels, strict=True)) / 2
    loss, acc = sm(x, torch.tensor(labels))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert acc.item() == 50.0


def _seed_ge2e(x, w, b):
    """voxceleb_trainer's loop formulation of GE2E, to check the vectorised one against."""
    gsize, stepsize = x.shape[1], x.shape[0]
    centroids = x.mean(1)
    rows = []
    for ii in range(gsize):
        idx = [j for j in range(gsize) if j != ii]
        exc = x[:, idx].mean(1)
        cos = F.cosine_similarity(x[:, ii].unsqueeze(-1), centroids.unsqueeze(-1).transpose(0, 2))
        cos[range(stepsize), range(stepsize)] = F.cosine_similarity(x[:, ii], exc)
        rows.append(cos.clamp(min=1e-6))
    logits = torch.stack(rows, dim=1) * w + b
    label = torch.arange(stepsize).repeat_interleave(gsize)
    return F.cross_entropy(logits.reshape(-1, stepsize), label)


def test_ge2e_and_angleproto_match_seed_formulas():
    torch.manual_seed(2)
    x = torch.randn(5, 3, 8)
    ge2e = build_loss("ge2e", 8, 5)
    assert ge2e(x, torch.arange(5))[0].item() == pytest.approx(_seed_ge2e(x, 10.0, -5.0).item(), rel=1e-5)
    proto = build_loss("angleproto", 8, 5)
    anchor, positive = x[:, 1:].mean(1), x[:, 0]
    cos = F.cosine_similarity(positive.unsqueeze(-1), anchor.unsqueeze(-1).transpose(0, 2)) * 10.0 - 5.0
    assert proto(x, torch.arange(5))[0].item() == pytest.approx(F.cross_entropy(cos, torch.arange(5)).item(), rel=1e-5)
    sp = build_loss("softmaxproto", 8, 5)
    total = sp(x, torch.arange(5))[0]
    parts = sp.softmax(x, torch.arange(5))[0].item() + sp.angleproto(x)[0].item()
    assert total.item() == pytest.approx(parts, rel=1e-6)


def test_triplet_mining():
    torch.manual_seed(3)
    anchor = F.normalize(torch.randn(8, 4), dim=1)
    positive = F.normalize(anchor + 0.1 * torch.randn(8, 4), dim=1)
    random_pick = build_loss("triplet", 4, 8, hard_prob=0.0).mine_negatives(anchor, positive)
    assert (random_pick != torch.arange(8)).all()
    hardest = build_loss("triplet", 4, 8, hard_prob=1.0, hard_rank=0).mine_negatives(anchor, positive)
    distance = torch.cdist(anchor, positive).fill_diagonal_(float("inf"))
    assert torch.equal(hardest, distance.argmin(dim=1))
    semi = build_loss("triplet", 4, 8, hard_rank=-1, margin=0.5).mine_negatives(anchor, positive)
    assert (semi != torch.arange(8)).all()


@pytest.mark.parametrize("name", ALL)
def test_optimisation_on_separable_clusters_reduces_loss(name):
    """Embeddings of 6 well separated speakers through a learnt linear map: a few Adam steps reduce every loss."""
    torch.manual_seed(4)
    speakers, per, dim = 6, 3, 16
    centres = 3.0 * torch.randn(speakers, 1, dim)
    inputs = centres + 0.3 * torch.randn(speakers, per, dim)
    label = torch.arange(speakers)
    proj = torch.nn.Linear(dim, dim)
    loss_fn = build_loss(name, dim, speakers)
    opt = torch.optim.Adam(list(proj.parameters()) + list(loss_fn.parameters()), lr=0.02)

    def evaluate():
        torch.manual_seed(5)                # same negatives for the triplet loss before and after
        return loss_fn(proj(inputs), label)

    with torch.no_grad():
        before, _ = evaluate()
    for _ in range(25):
        opt.zero_grad()
        loss, _ = loss_fn(proj(inputs), label)
        loss.backward()
        opt.step()
    with torch.no_grad():
        after, acc = evaluate()
    assert after.item() < 0.8 * before.item() or after.item() < 1e-3, (before.item(), after.item())
    assert acc.item() > 50.0
