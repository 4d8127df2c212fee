"""cm.fast_conv: the same values and gradients as F.conv2d autograd, in the layout AASIST's encoder expects."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cm import build_model, fast_conv

CL = torch.channels_last

# (batch, C_in, C_out, H, W, kernel, padding): AASIST's encoder shapes in miniature, odd widths included
SHAPES = [
    (2, 32, 32, 5, 37, (2, 3), (0, 1)),
    (2, 32, 32, 5, 37, (2, 3), (1, 1)),
    (3, 32, 64, 3, 11, (1, 3), (0, 1)),
    (2, 64, 64, 6, 9, (2, 3), (1, 1)),
    (2, 1, 32, 4, 30, (2, 3), (1, 1)),
    (2, 1, 32, 4, 30, (1, 3), (0, 1)),
    (1, 8, 4, 2, 2, (2, 3), (1, 1)),  # narrower than a chunk, taps crossing both row ends
]


@pytest.mark.parametrize("b,c_in,c_out,h,w,kernel,padding", SHAPES)
def test_values_and_gradients_match_conv2d(b, c_in, c_out, h, w, kernel, padding):
    torch.manual_seed(0)
    x = torch.randn(b, c_in, h, w, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    weight = torch.randn(c_out, c_in, *kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(c_out, dtype=torch.float64, requires_grad=True)
    y = fast_conv.conv2d(x, weight, bias, padding)
    y_ref = F.conv2d(x, weight, bias, padding=padding)
    assert y.is_contiguous(memory_format=CL)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    g = torch.randn_like(y_ref)
    got = torch.autograd.grad(y, (x, weight, bias), g)
    want = torch.autograd.grad(y_ref, (x, weight, bias), g)
    for a, e, name in zip(got, want, ("input", "weight", "bias"), strict=True):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-11, msg=lambda m, name=name: f"{name} gradient: {m}")


def test_small_chunks_give_the_same_weight_gradient():
    torch.manual_seed(1)
    x = torch.randn(2, 16, 4, 25, dtype=torch.float64).contiguous(memory_format=CL)
    gy = torch.randn(2, 16, 3, 25, dtype=torch.float64).contiguous(memory_format=CL)
    whole = fast_conv.weight_grad(gy, x, (2, 3), (0, 1))
    chunked = fast_conv.weight_grad(gy, x, (2, 3), (0, 1), chunk_rows=7)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)


def test_other_kernels_fall_back_to_conv2d():
    x = torch.randn(1, 4, 6, 10).requires_grad_()
    weight = torch.randn(4, 4, 3, 3, requires_grad=True)  # width padding 0: not "same width"
    y = fast_conv.conv2d(x, weight, torch.zeros(4), (1, 0))
    torch.testing.assert_close(y, F.conv2d(x, weight, torch.zeros(4), padding=(1, 0)))


def test_aasist_training_gradients_do_not_depend_on_the_fast_backward():
    torch.manual_seed(0)
    small = dict(first_conv=70, filts=[70, [1, 8], [8, 8], [8, 16], [16, 16]])
    fast = build_model("AASIST", **small).double().train()
    plain = build_model("AASIST", **small, fast_backward=False).double().train()  # a model config option
    plain.load_state_dict(fast.state_dict())
    wave = torch.randn(2, 8000, dtype=torch.float64)
    grads = []
    for model in (fast, plain):
        torch.manual_seed(1)  # the same dropout masks
        embedding, logits = model(wave)
        (logits.sum() + embedding.square().mean()).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-9, atol=1e-10,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("kernel,padding", [((2, 3), (1, 1)), ((1, 3), (0, 1))])
def test_single_channel_inference_matches_conv2d(kernel, padding):
    """The bias as a column of ones: the same values as F.conv2d, returned channels-last."""
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 1, 7, 41), torch.randn(32, 1, *kernel), torch.randn(32)
    out = fast_conv.single_channel_conv_inference(x, w, b, padding)
    torch.testing.assert_close(out, F.conv2d(x, w, b, padding=padding), rtol=1e-6, atol=1e-6)
    assert out.is_contiguous(memory_format=CL)
