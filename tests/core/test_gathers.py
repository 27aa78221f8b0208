"""topt_core.gathers: products over index pairs in blocks, bit for bit the gathers they replace."""
import pytest
import torch

import topt_core.gathers as O


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


def _edges(n=40, heads=3, d=5, e=900, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(n, 3, heads, d, generator=g, dtype=dtype, requires_grad=True)   # the attention's strided views
    dst = torch.sort(torch.randint(0, n, (e,), generator=g)).values
    src = torch.randint(0, n, (e,), generator=g)
    w = torch.rand(e, heads, generator=g, dtype=dtype, requires_grad=True)
    return qkv, dst, src, w


def _attention_like(dots, sums, qkv, dst, src, w, n):
    """The sparse mode's two edge products: logits q[dst].k[src], then sum_e w_e v[src_e] into dst."""
    q, k, v = qkv.unbind(1)
    qkv.grad = w.grad = None
    logits = dots(q, k, dst, src)
    out = sums(w * torch.sigmoid(logits), v, dst, src, n)
    (out ** 2).sum().backward()
    return logits.detach().clone(), out.detach().clone(), qkv.grad.clone(), w.grad.clone()


def _gather_dots(a, b, r, c):
    return (torch.index_select(a, 0, r) * torch.index_select(b, 0, c)).sum(-1)


def _gather_sums(w, v, dst, src, n):
    return O.scatter(w[..., None] * torch.index_select(v, 0, src), dst, n, "sum")


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("block", [1, 77, 900, 4000])
def test_attention_edge_products_in_blocks_are_bit_identical_to_the_gathers(monkeypatch, block, deterministic):
    monkeypatch.setattr(O, "PAIR_BLOCK", block)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        torch.use_deterministic_algorithms(deterministic)
        args = _edges()
        gather = _attention_like(_gather_dots, _gather_sums, *args, n=40)
        blocked = _attention_like(O._PairDots.apply, O._EdgeSum.apply, *args, n=40)
        public = _attention_like(O.pair_dots, O.edge_sum, *args, n=40)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    assert gather[1].shape == (40, 3, 5) and gather[0].shape == (900, 3)
    for got in (blocked, public):
        assert all(torch.equal(x, y) for x, y in zip(gather, got))


def test_edge_sum_gradients_pass_gradcheck(monkeypatch):
    monkeypatch.setattr(O, "PAIR_BLOCK", 7)
    qkv, dst, src, w = _edges(n=9, heads=2, d=3, e=30, dtype=torch.float64)
    v = qkv[:, 2].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda ww, vv: O._EdgeSum.apply(ww, vv, dst, src, 9), (w, v))


def test_no_edges_times_width_tensor_is_kept_by_the_edge_sum(monkeypatch):
    monkeypatch.setattr(O, "PAIR_BLOCK", 100)
    _, dst, src, w = _edges(n=50, heads=2, d=32, e=4000)
    v = torch.randn(50, 2, 32, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        O.edge_sum(w, v, dst, src, 50).sum()
    assert (4000, 2) in saved and (50, 2, 32) in saved                   # the weights and values themselves
    assert not [s for s in saved if len(s) == 3 and s[0] == 4000]      # no (edges x heads x width) product
