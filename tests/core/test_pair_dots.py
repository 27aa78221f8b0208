"""objectives.pair_dots: the OD loss's observed-pair dot products in blocks, as exact as the gather it replaces."""
import pytest
import torch

import topt_core.objectives as O


def _pairs(n=60, d=7, p=1000, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(n, d, generator=g, dtype=dtype, requires_grad=True)
    rows = torch.sort(torch.randint(0, n, (p,), generator=g)).values        # origins in order, as the OD CSR has them
    cols = torch.randint(0, n, (p,), generator=g)
    w = torch.rand(p, generator=g, dtype=dtype)
    return a, b, rows, cols, w


def _value_and_grads(f, a, b, rows, cols, w):
    a.grad = b.grad = None
    loss = (w * f(a, b, rows, cols)).sum()
    loss.backward()
    return loss.detach().clone(), a.grad.clone(), b.grad.clone()


@pytest.mark.parametrize("block", [1, 64, 333, 1000, 5000])
def test_blocks_give_bit_identical_values_and_gradients(monkeypatch, block):
    monkeypatch.setattr(O, "PAIR_BLOCK", block)
    args = _pairs()
    gather = _value_and_grads(lambda a, b, r, c: (a[r] * b[c]).sum(-1), *args)
    blocked = _value_and_grads(O._PairDots.apply, *args)
    assert all(torch.equal(x, y) for x, y in zip(gather, blocked))
    assert torch.equal(O.pair_dots(*args[:4]), (args[0][args[2]] * args[1][args[3]]).sum(-1))


def test_gradients_pass_gradcheck(monkeypatch):
    monkeypatch.setattr(O, "PAIR_BLOCK", 9)
    a, b, rows, cols, _ = _pairs(n=12, d=3, p=40, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x, y: O._PairDots.apply(x, y, rows, cols), (a, b))


def test_the_callers_deterministic_setting_is_restored_after_backward(monkeypatch):
    monkeypatch.setattr(O, "PAIR_BLOCK", 50)
    a, b, rows, cols, w = _pairs()
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        for setting in ((True, True), (True, False), (False, False)):
            torch.use_deterministic_algorithms(setting[0], warn_only=setting[1])
            _value_and_grads(O._PairDots.apply, a, b, rows, cols, w)
            assert (torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled()) == setting
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_no_pairs_times_width_tensor_is_kept_for_the_backward_pass(monkeypatch):
    monkeypatch.setattr(O, "PAIR_BLOCK", 100)
    a, b, rows, cols, w = _pairs(n=50, d=32, p=4000)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        (w * O.pair_dots(a, b, rows, cols)).sum()
    assert saved and max(s[0] for s in saved if len(s) == 2) == 50      # a and b themselves, nothing (4000, 32)
