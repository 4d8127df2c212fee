"""CM losses: hand-computed values, gradients, and OC-softmax learning to separate two clusters."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cm.losses import OCSoftmax, WeightedCE, build_loss


def test_weighted_ce_weights_bona_fide_09_and_spoof_01_as_official():
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])  # a spoof, then a bona fide
    spoof_term, bonafide_term = math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1))
    expected = (0.1 * spoof_term + 0.9 * bonafide_term) / (0.1 + 0.9)
    loss = build_loss("WeightedCE")(torch.zeros(2, 160), logits, labels)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # swapping the classes swaps the weights of the two terms
    swapped = build_loss("WeightedCE")(torch.zeros(2, 160), logits.flip(1), 1 - labels)
    assert swapped.item() == pytest.approx(0.9 * spoof_term + 0.1 * bonafide_term, abs=1e-6)
    assert build_loss("WeightedCE", spoof_weight=0.5, bonafide_weight=0.5)(None, logits, labels).item() == (
        pytest.approx((spoof_term + bonafide_term) / 2, abs=1e-6))
    assert torch.equal(WeightedCE().score(None, torch.tensor([[1.0, -2.0]])), torch.tensor([-2.0]))


def test_oc_softmax_hand_computed_value_and_score():
    loss_fn = OCSoftmax(embedding_dim=2, r_real=0.9, r_fake=0.2, alpha=20.0)
    with torch.no_grad():
        loss_fn.center.copy_(torch.tensor([[3.0, 0.0]]))
    emb = torch.tensor([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    labels = torch.tensor([1, 0, 0])
    cos = [1.0, 0.0, 1 / math.sqrt(2)]
    torch.testing.assert_close(loss_fn.score(emb), torch.tensor(cos))
    violations = [0.9 - cos[0], cos[1] - 0.2, cos[2] - 0.2]
    expected = sum(math.log1p(math.exp(20 * v)) for v in violations) / 3
    assert loss_fn(emb, None, labels).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["WeightedCE", "OCSoftmax"])
def test_gradients_reach_inputs_and_loss_parameters(name):
    torch.manual_seed(0)
    loss_fn = build_loss(name)
    emb, logits = torch.randn(6, 160, requires_grad=True), torch.randn(6, 2, requires_grad=True)
    loss = loss_fn(emb, logits, torch.tensor([0, 1, 0, 1, 1, 0]))
    loss.backward()
    grad = emb.grad if name == "OCSoftmax" else logits.grad
    assert torch.isfinite(loss) and grad.abs().sum() > 0
    for p in loss_fn.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_oc_softmax_learns_to_separate_two_clusters():
    torch.manual_seed(0)
    dim = 16
    bona = F.normalize(torch.randn(dim), dim=0) * 3 + 0.3 * torch.randn(32, dim)
    spoof = F.normalize(torch.randn(dim), dim=0) * 3 + 0.3 * torch.randn(32, dim)
    emb, labels = torch.cat([bona, spoof]), torch.cat([torch.ones(32), torch.zeros(32)]).long()
    loss_fn = OCSoftmax(embedding_dim=dim)
    optimiser = torch.optim.Adam(loss_fn.parameters(), lr=0.05)
    first = loss_fn(emb, None, labels).item()
    for _ in range(60):
        optimiser.zero_grad()
        loss = loss_fn(emb, None, labels)
        loss.backward()
        optimiser.step()
    scores = loss_fn.score(emb).detach()
    assert loss.item() < first / 4
    assert scores[:32].min() > scores[32:].max()


def test_build_loss_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"unknown CM loss 'focal' \(valid: WeightedCE, OCSoftmax\)"):
        build_loss("focal")
    with pytest.raises(ValueError, match=r"unknown keyword 'margin' for CM loss OCSoftmax"):
        build_loss("OCSoftmax", margin=0.5)
