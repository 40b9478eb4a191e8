"""BatchTopK's sparse training path (exact batch selection from a sampled lower bound, embedding_bag decode, sparse
encoder backward) gives the same selection, loss and gradients as plain dense autograd."""

import copy

import pytest
import torch

from saekit.config import DictionaryConfig
from saekit.dictionaries import batch_select, create
from saekit.dictionaries.batch_select import batch_topk_select
from saekit.kernels import use_backend


def reference_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The kept positions by one global top-k over the flattened batch (the definition)."""
    flat = scores.flatten()
    idx = flat.topk(min(k * scores.shape[0], flat.numel())).indices
    return torch.zeros_like(flat, dtype=torch.bool).index_fill_(0, idx, True).view_as(scores)


@pytest.mark.parametrize("case", ["plain", "one_heavy_row", "ties"])
def test_batch_topk_select_equals_global_topk(case):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 200, generator=g)
    if case == "one_heavy_row":  # row 0 holds far more than 2k of the kept entries: m must grow
        scores[0] += 50.0
    if case == "ties":
        scores = torch.randint(0, 6, (64, 200), generator=g).float()
    sel = batch_topk_select(scores, 5)
    assert sel.cols.numel() == 5 * 64 and int(sel.counts.sum()) == 5 * 64
    assert torch.equal(sel.rows, torch.sort(sel.rows).values)  # row-ordered runs
    assert torch.equal(sel.scores, scores[sel.rows, sel.cols])
    mask = sel.dense(torch.ones_like(sel.scores)).bool()
    assert int(mask.sum()) == 5 * 64  # no pair twice
    if case == "ties":  # any tied choice is a top-k: kept values dominate the rest
        assert float(scores[mask].min()) >= float(scores[~mask].max())
        assert torch.equal(scores[mask].sort().values, scores[reference_mask(scores, 5)].sort().values)
    else:
        assert torch.equal(mask, reference_mask(scores, 5))
    if case == "one_heavy_row":
        assert int(sel.counts[0]) == 200


@pytest.mark.parametrize("case", ["plain", "ties", "unlucky_sample"])
def test_sampled_bound_keeps_the_selection_exact(monkeypatch, case):
    """Batches large enough for the sampled lower bound (stride > 1) select exactly the global
    top-k, also when the sampled entries are the batch's largest (the bound starts too high and
    must be lowered, pass after pass, down to keeping everything)."""
    g = torch.Generator().manual_seed(1)
    B, n, k = 96, 300, 6
    scores = torch.randn(B, n, generator=g)
    monkeypatch.setattr(batch_select, "_SAMPLE", 256)  # stride 113 on these 28,800 scores
    stride = batch_select._coprime_stride(B * n // 256, n)
    assert stride > 1
    if case == "ties":
        scores = torch.randint(0, 8, (B, n), generator=g).float()
    if case == "unlucky_sample":
        scores.view(-1)[::stride] += 100.0  # 255 sampled entries, all far above the other 28,545
    sel = batch_topk_select(scores, k)
    assert torch.equal(sel.rows, torch.sort(sel.rows).values)
    assert torch.equal(sel.scores, scores[sel.rows, sel.cols])
    assert torch.equal(sel.counts, torch.bincount(sel.rows, minlength=B))
    mask = sel.dense(torch.ones_like(sel.scores)).bool()
    assert int(mask.sum()) == k * B
    if case == "ties":
        assert torch.equal(scores[mask].sort().values, scores[reference_mask(scores, k)].sort().values)
    else:
        assert torch.equal(mask, reference_mask(scores, k))


def test_default_sample_size_selection_equals_global_topk():
    """At the default sample size (a batch of 600 × 1,000 scores, sampled with a stride > 1)."""
    scores = torch.randn(600, 1000, generator=torch.Generator().manual_seed(2))
    assert batch_select._coprime_stride(scores.numel() // batch_select._SAMPLE, 1000) > 1
    sel = batch_topk_select(scores, 8)
    assert torch.equal(sel.dense(torch.ones_like(sel.scores)).bool(), reference_mask(scores, 8))


def dense_reference_loss(sae, x):
    """The old algorithm by hand: flatten top-k, ReLU, scatter, z @ W_dec (plain autograd)."""
    pre = sae.pre_acts(sae.scale_in(x))
    z = torch.relu(pre) * reference_mask(pre.detach(), sae.cfg.k)
    y_hat = z @ sae.W_dec + sae.b_dec
    return (y_hat - sae.scale_in(x)).pow(2).sum(-1).mean(), y_hat


def grads(sae, loss):
    sae.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in sae.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["batchtopk", "matryoshka"])
def test_sparse_path_equals_dense_autograd(kind):
    torch.manual_seed(0)
    widths = {"matryoshka_widths": (12, 30, 48)} if kind == "matryoshka" else {}
    sae = create(DictionaryConfig(kind=kind, d_in=16, n_latents=48, k=4, **widths), seed=0)
    with torch.no_grad():
        sae.b_dec.normal_()  # exercise b_dec's path into the encoder input
    dense = copy.deepcopy(sae)
    x = torch.randn(40, 16)
    with use_backend("torch"):
        _, _, pre = sae.select_batch(sae.scale_in(x), need_pre=False)
        assert pre is None  # the sparse encoder backward was taken
        out = sae.training_loss(x)
    g_sparse = grads(sae, out.loss)
    with use_backend("dense"):
        ref = dense.training_loss(x)
    g_dense = grads(dense, ref.loss)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.y_hat, ref.y_hat, atol=1e-5, rtol=1e-5)
    assert g_sparse.keys() == g_dense.keys() and {"W_enc", "b_enc", "W_dec", "b_dec"} <= g_sparse.keys()
    for name in g_sparse:
        torch.testing.assert_close(g_sparse[name], g_dense[name], atol=1e-5, rtol=1e-4)
    assert float(out.l0) == pytest.approx(4.0)
    if kind == "matryoshka":  # the prefix losses, each weighted, written out by hand
        z = dense.batch_topk(dense.pre_acts(dense.scale_in(x)))
        mses = [(z[:, :w] @ dense.W_dec[:w] + dense.b_dec - dense.scale_in(x)).pow(2).sum(-1).mean() for w in (12, 30, 48)]
        hand_loss = dense.cfg.matryoshka_inner_weight * (mses[0] + mses[1]) + mses[2]
        torch.testing.assert_close(ref.loss, hand_loss, atol=1e-5, rtol=1e-5)
        g_hand = grads(dense, hand_loss)
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            torch.testing.assert_close(g_sparse[name], g_hand[name], atol=1e-5, rtol=1e-4)
    if kind == "batchtopk":  # and both equal the definition written out by hand
        hand_loss, hand_y = dense_reference_loss(dense, x)
        torch.testing.assert_close(ref.loss, hand_loss, atol=1e-5, rtol=1e-5)
        g_hand = grads(dense, hand_loss)
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            torch.testing.assert_close(g_sparse[name], g_hand[name], atol=1e-5, rtol=1e-4)
