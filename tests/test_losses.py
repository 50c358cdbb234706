import numpy as np
import pytest
import torch
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_padded, assert_parity, garbage_batch

from torchdispatch_returnn import returnn_capture

TT = ({1: "time"}, {1: "time"})  # input and target both along time
TTT = ({1: "time"}, {1: "time"}, {1: "time"})
I64 = torch.int64
W5 = torch.tensor([0.5, 1.0, 2.0, 0.25, 1.5])


def ls(name, fn, shapes=((3, 11, 5), (3, 11, 5)), dyn=TT, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: fn(*xs)), list(shapes), dyn, **kw)


def cls(name, fn, shapes=((3, 11, 5), (3, 11)), **kw):  # scores (B, T, C) and int targets (B, T) < C
    return ls(name, fn, shapes, dtypes=[None, I64], high=5, **kw)


def prob(x):
    return torch.sigmoid(x)


CASES = [
    ls("mse_mean", lambda x, t: F.mse_loss(x, t)),
    ls("mse_sum", lambda x, t: F.mse_loss(x, t, reduction="sum")),
    ls("mse_none", lambda x, t: F.mse_loss(x, t, reduction="none")),
    ls("mse_weight_mean", lambda x, t: F.mse_loss(x, t, weight=t.abs() + 0.5)),
    ls("mse_module", lambda x, t: torch.nn.MSELoss()(x, t)),
    ls("mse_static", lambda x, t: F.mse_loss(x, t), dyn=None),
    ls("l1_mean", lambda x, t: F.l1_loss(x, t)),
    ls("l1_module_sum", lambda x, t: torch.nn.L1Loss(reduction="sum")(x, t)),
    ls("smooth_l1_beta", lambda x, t: F.smooth_l1_loss(x, t, beta=0.5)),
    ls("smooth_l1_beta0_none", lambda x, t: F.smooth_l1_loss(x, t, reduction="none", beta=0.0)),
    ls("huber_delta", lambda x, t: F.huber_loss(x, t, delta=0.7)),
    ls("huber_weight_sum", lambda x, t: F.huber_loss(x, t, reduction="sum", weight=t.abs())),
    ls("huber_module_none", lambda x, t: torch.nn.HuberLoss(reduction="none", delta=0.3)(x, t)),
    ls("poisson_log", lambda x, t: F.poisson_nll_loss(x, t.abs() * 2)),
    ls("poisson_full_sum", lambda x, t: F.poisson_nll_loss(x.abs(), t.abs() * 3, log_input=False, full=True,
                                                           reduction="sum")),
    ls("gaussian_nll", lambda x, t, v: F.gaussian_nll_loss(x, t, v.abs()), ((3, 11, 5),) * 3, TTT),
    ls("gaussian_nll_full_none", lambda x, t, v: F.gaussian_nll_loss(x, t, v.abs()[..., :1], full=True, eps=0.1,
                                                                     reduction="none"), ((3, 11, 5),) * 3, TTT),
    ls("gaussian_nll_float_var", lambda x, t: F.gaussian_nll_loss(x, t, 0.5, reduction="sum")),
    ls("bce_mean", lambda x, t: F.binary_cross_entropy(prob(x), prob(t))),
    ls("bce_weight_none", lambda x, t: F.binary_cross_entropy(prob(x), prob(t), weight=W5, reduction="none")),
    ls("bce_module_sum", lambda x, t: torch.nn.BCELoss(reduction="sum")(prob(x), prob(t))),
    ls("bce_logits", lambda x, t: F.binary_cross_entropy_with_logits(x, prob(t))),
    ls("bce_logits_weights", lambda x, t: F.binary_cross_entropy_with_logits(x, prob(t), weight=W5, pos_weight=W5 * 2,
                                                                            reduction="sum")),
    ls("bce_logits_module_none", lambda x, t: torch.nn.BCEWithLogitsLoss(reduction="none", pos_weight=W5)(x, prob(t))),
    ls("soft_margin", lambda x, t: F.soft_margin_loss(x, torch.sign(t))),
    ls("multilabel_soft_margin", lambda x, t: F.multilabel_soft_margin_loss(x, prob(t))),
    ls("multilabel_soft_margin_w_none", lambda x, t: F.multilabel_soft_margin_loss(x, prob(t), weight=W5,
                                                                                  reduction="none")),
    ls("margin_ranking", lambda a, b, y: F.margin_ranking_loss(a, b, torch.sign(y), margin=0.2), ((3, 11, 5),) * 3,
       TTT),
    ls("hinge_embedding_sum", lambda x, t: F.hinge_embedding_loss(x, torch.sign(t), margin=0.5, reduction="sum")),
    ls("kl_div_mean", lambda x, t: F.kl_div(F.log_softmax(x, -1), F.softmax(t, -1), reduction="mean")),
    ls("kl_div_batchmean", lambda x, t: F.kl_div(F.log_softmax(x, -1), F.softmax(t, -1), reduction="batchmean")),
    ls("kl_div_log_target_none", lambda x, t: F.kl_div(x, F.log_softmax(t, -1), reduction="none", log_target=True)),
    ls("kl_div_module_sum", lambda x, t: torch.nn.KLDivLoss(reduction="sum")(x, prob(t))),
    cls("ce_bct", lambda x, t: F.cross_entropy(x.transpose(1, 2), t)),
    cls("ce_flat", lambda x, t: F.cross_entropy(x.reshape(-1, 5), t.reshape(-1))),
    cls("ce_sum_ignore", lambda x, t: F.cross_entropy(x.transpose(1, 2), t, ignore_index=2, reduction="sum")),
    cls("ce_weight_mean", lambda x, t: F.cross_entropy(x.transpose(1, 2), t, weight=W5, ignore_index=0)),
    cls("ce_smoothing", lambda x, t: F.cross_entropy(x.transpose(1, 2), t, weight=W5, label_smoothing=0.1,
                                                     ignore_index=4)),
    cls("ce_smoothing_none", lambda x, t: F.cross_entropy(x.transpose(1, 2), t, label_smoothing=0.2,
                                                          reduction="none")),
    cls("ce_module", lambda x, t: torch.nn.CrossEntropyLoss(label_smoothing=0.05)(x.transpose(1, 2), t)),
    ls("ce_probs", lambda x, t: F.cross_entropy(x.transpose(1, 2), F.softmax(t, -1).transpose(1, 2))),
    ls("ce_probs_weight_smooth_sum", lambda x, t: F.cross_entropy(x.transpose(1, 2), F.softmax(t, -1).transpose(1, 2),
                                                                  weight=W5, label_smoothing=0.1, reduction="sum")),
    cls("ce_static", lambda x, t: F.cross_entropy(x[:, 0], t[:, 0], weight=W5), dyn=None),
    cls("nll_mean_weight", lambda x, t: F.nll_loss(F.log_softmax(x, -1).transpose(1, 2), t, weight=W5, ignore_index=1)),
    cls("nll_none", lambda x, t: F.nll_loss(x.transpose(1, 2), t, reduction="none")),
    cls("nll_module_flat_sum", lambda x, t: torch.nn.NLLLoss(reduction="sum")(x.reshape(-1, 5), t.reshape(-1))),
    cls("multi_margin", lambda x, t: F.multi_margin_loss(x.reshape(-1, 5), t.reshape(-1))),
    cls("multi_margin_p2_weight_none", lambda x, t: F.multi_margin_loss(x.reshape(-1, 5), t.reshape(-1), p=2,
                                                                        margin=0.5, weight=W5, reduction="none")),
    ls("cosine_embedding", lambda a, b, y: F.cosine_embedding_loss(a.reshape(-1, 5), b.reshape(-1, 5),
                                                                   torch.sign(y[..., 0]).reshape(-1), margin=0.1),
       ((3, 11, 5),) * 3, TTT),
    ls("cosine_embedding_module_none", lambda a, b, y: torch.nn.CosineEmbeddingLoss(reduction="none")(
        a[:, 0], b[:, 0], torch.sign(y[:, 0, 0])), ((3, 11, 5),) * 3, TTT),
    ls("triplet", lambda a, p, n: F.triplet_margin_loss(a, p, n), ((3, 11, 5),) * 3, TTT),
    ls("triplet_p1_swap_sum", lambda a, p, n: F.triplet_margin_loss(a, p, n, p=1, swap=True, reduction="sum"),
       ((3, 11, 5),) * 3, TTT),
    ls("triplet_p3_none", lambda a, p, n: F.triplet_margin_loss(a, p, n, p=3, margin=2.0, reduction="none"),
       ((3, 11, 5),) * 3, TTT),
    ls("triplet_distance", lambda a, p, n: F.triplet_margin_with_distance_loss(a, p, n, swap=True),
       ((3, 11, 5),) * 3, TTT),
    ls("triplet_distance_module_none", lambda a, p, n: torch.nn.TripletMarginWithDistanceLoss(
        distance_function=torch.nn.PairwiseDistance(p=1.5), reduction="none")(a, p, n), ((3, 11, 5),) * 3, TTT),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_losses(case):
    assert_parity(case)


@pytest.mark.parametrize("case", [c for c in CASES if "none" in c.name and c.dyn and "margin" not in c.name and "cosine" not in c.name], ids=str)
def test_losses_padded_none(case):
    assert_padded(case)


LINEAR_CE = [
    Case("linear_ce", lambda: Fn(lambda m, x, t: F.linear_cross_entropy(x.reshape(-1, 5), m.p0, t.reshape(-1),
                                                                        linear_bias=m.p1), torch.randn(4, 5),
                                 torch.randn(4)), [(3, 11, 5), (3, 11)], TT, dtypes=[None, I64], high=4),
]


@pytest.mark.parametrize("case", LINEAR_CE, ids=str)
def test_linear_cross_entropy(case):
    assert_parity(case)


@pytest.mark.parametrize("name,fn,mean", [
    ("mse", lambda x, t: F.mse_loss(x, t), True),
    ("mse_sum", lambda x, t: F.mse_loss(x, t, reduction="sum"), False),
    ("ce_weight", lambda x, t: F.cross_entropy(x.transpose(1, 2), (t[..., 0].abs() * 2).long().clamp(max=4), weight=W5), None),
])
def test_padded_reduction_is_over_valid_frames(name, fn, mean):
    """'mean'/'sum' on a padded batch: torch on all valid frames of all sequences together."""
    case = ls(name, fn)
    model = case.module()
    with torch.no_grad(), returnn_capture(dynamic_shapes=TT) as net:
        model(*[torch.randn(3, 11, 5), torch.randn(3, 11, 5)])
    lens = [9, 4, 6]
    x, t = garbage_batch(case, lens)
    got = net.run(x, t, seq_lens={"time": lens})
    xs = torch.cat([x[b, :n] for b, n in enumerate(lens)])[None]
    ts = torch.cat([t[b, :n] for b, n in enumerate(lens)])[None]
    np.testing.assert_allclose(got, fn(xs, ts).numpy(), rtol=1e-5, atol=1e-5)


def test_plain_target_along_batch_is_refused():
    t = torch.randn(3, 11, 5)
    with pytest.raises(NotImplementedError, match="plain tensor"):
        with torch.no_grad(), returnn_capture(dynamic_shapes=({1: "time"},)):
            Fn(lambda m, x: F.mse_loss(x, t))(torch.randn(3, 11, 5))


def _ctc(x, t, tl, shift=1, **kw):
    n, s = t.shape
    lengths = (x[..., 0] * 0 + 1).sum(0).long()  # a masked sum over time: each sequence's own length
    return F.ctc_loss(x.log_softmax(-1), t % 4 + shift, lengths, tl % s + 1, **kw)


CTC = ({0: "time", 1: "batch"}, None, None)
CTC_CASES = [
    Case("ctc_mean", lambda: Fn(lambda m, x, t, tl: _ctc(x, t, tl)), [(20, 3, 5), (3, 6), (3,)], CTC,
         dtypes=[None, I64, I64], atol=1e-4, other_sizes=(14, 17)),
    Case("ctc_none_blank4", lambda: Fn(lambda m, x, t, tl: _ctc(x, t, tl, shift=0, blank=4, reduction="none")),
         [(20, 3, 5), (3, 6), (3,)], CTC, dtypes=[None, I64, I64], atol=1e-4, other_sizes=(14, 17)),
    Case("ctc_sum_zero_inf", lambda: Fn(lambda m, x, t, tl: _ctc(x, t, tl + 6, reduction="sum", zero_infinity=True)),
         [(20, 3, 5), (3, 6), (3,)], CTC, dtypes=[None, I64, I64], atol=1e-4, other_sizes=(14, 17)),
    Case("ctc_impossible_zero_inf_mean", lambda: Fn(lambda m, x, t, tl: _ctc(x, t, tl, zero_infinity=True)),
         [(5, 4, 5), (4, 6), (4,)], ({1: "batch"}, None, None), dtypes=[None, I64, I64], atol=1e-4),
    Case("ctc_static_plain_lengths", lambda: Fn(lambda m, x, t: F.ctc_loss(x.log_softmax(-1), t % 4 + 1, [8, 8],
                                                                           [3, 3])),
         [(8, 2, 5), (2, 3)], ({1: "batch"}, None), dtypes=[None, I64]),
    Case("ctc_dyn_plain_full_lengths", lambda: Fn(lambda m, x, t: F.ctc_loss(x.log_softmax(-1), t % 4 + 1,
                                                                             [x.shape[0]] * 2, [3, 3])),
         [(20, 2, 5), (2, 3)], ({0: "time", 1: "batch"}, None), dtypes=[None, I64], atol=1e-4, other_sizes=(14, 17)),
]


@pytest.mark.parametrize("case", CTC_CASES, ids=str)
def test_ctc_loss(case):
    assert_parity(case)


def test_custom_distance_function_is_refused():
    with pytest.raises(NotImplementedError, match="custom distance_function"):
        with torch.no_grad(), returnn_capture(dynamic_shapes=TTT):
            Fn(lambda m, a, p, n: F.triplet_margin_with_distance_loss(a, p, n, distance_function=lambda x, y: (
                x - y).abs().sum(-1)))(*[torch.randn(3, 11, 5) for _ in range(3)])
