"""Attention: F.scaled_dot_product_attention and F.multi_head_attention_forward (nn.MultiheadAttention).

Scores are a RETURNN ``dot``; the key axis of a self-attention gets a twin dim (same lengths), the
softmax over a dynamic key axis is masked by the key lengths, so padded keys never get weight.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .elementwise import lit
from .linear import dot, matmul_ref
from .registry import handles
from .shape import slice_ref


def align_to(ctx, r, target):
    """``r`` broadcast by torch's positional rule onto ``target`` dims: size-1 axes squeezed,
    the others renamed to the target's dims."""
    n_new = len(target) - r.ndim
    if n_new < 0:
        raise NotImplementedError("mask with more axes than the scores")
    for ax in reversed(range(r.ndim)):
        if r.shape[ax] == 1 and ctx.dims.size(target[n_new + ax]) != 1:
            r = ctx.squeeze(r, ax)
            target = target[:n_new + ax] + target[n_new + ax + 1:]
    return ctx.rename(r, {d: t for d, t in zip(r.dims, target[len(target) - r.ndim:]) if d is not t})


def _masked(ctx, scores, attn_mask, is_causal, q_ax, k_ax, helper):
    """Apply a bool (True = keep) or additive mask, and/or the causal mask, to ``scores``."""
    if attn_mask is not None:
        m = align_to(ctx, ctx.ref(attn_mask), list(scores.dims))
        if m.dtype == torch.bool:
            scores = ctx.eval("tf.where(source(1), source(0), float('-inf'))", [scores, m], scores.dims,
                              dtype=scores.dtype, helper=f"{helper}_mask")
        else:
            scores = ctx.eval("source(0) + tf.cast(source(1), source(0).dtype)", [scores, m], scores.dims,
                              dtype=scores.dtype, helper=f"{helper}_mask")
    if is_causal:
        from .index import range_ref

        rq = range_ref(ctx, scores.dims[q_ax], helper=f"{helper}_qpos")
        rk = range_ref(ctx, scores.dims[k_ax], helper=f"{helper}_kpos")
        scores = ctx.eval("tf.where(source(2) <= source(1), source(0), float('-inf'))", [scores, rq, rk],
                          scores.dims, dtype=scores.dtype, helper=f"{helper}_causal")
    return scores


def _softmax(ctx, scores, ax, helper=None):
    d = scores.dims[ax]
    if d.is_dynamic():
        return ctx.layer({"class": "softmax_over_spatial", "from": scores, "axis": d}, scores.dims,
                         dtype=scores.dtype, helper=helper)
    return ctx.eval("tf.nn.softmax(source(0), axis={axis})", [scores], scores.dims, axis=d, dtype=scores.dtype,
                    helper=helper)


@handles(F.scaled_dot_product_attention)
def scaled_dot_product_attention(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    """softmax(q k^T * scale + mask) v over the last two axes."""
    if dropout_p and not ctx.capture.train:
        raise NotImplementedError("scaled_dot_product_attention with dropout_p > 0 in an eval capture")
    if enable_gqa:
        raise NotImplementedError("scaled_dot_product_attention with enable_gqa")
    q, k, v = ctx.ref(query), ctx.ref(key), ctx.ref(value)
    e = q.shape[-1]
    s = scale if scale is not None else 1.0 / math.sqrt(e)
    kt = ctx.transpose_to(k, list(k.dims[:-2]) + [k.dims[-1], k.dims[-2]])
    scores = matmul_ref(ctx, q, kt, helper="scores")
    scores = ctx.eval(f"source(0) * {lit(float(s))}", [scores], scores.dims, dtype=scores.dtype, helper="scaled")
    scores = _masked(ctx, scores, attn_mask, is_causal, scores.ndim - 2, scores.ndim - 1, "scores")
    att = _softmax(ctx, scores, scores.ndim - 1, helper="weights")
    return matmul_ref(ctx, att, v)


def _proj(ctx, x, w, b, helper):
    y = dot(ctx, x, w, [], [(x.ndim - 1, 1)], [("a", i) for i in range(x.ndim - 1)] + [("b", 0)], helper=helper)
    if b is None:
        return y
    b = ctx.rename(b, {b.dims[0]: y.dims[-1]})
    return ctx.eval("source(0) + source(1)", [y, b], y.dims, helper=f"{helper}_b")


@handles(F.multi_head_attention_forward)
def multi_head_attention_forward(ctx, query, key, value, embed_dim_to_check, num_heads, in_proj_weight,
                                 in_proj_bias, bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight,
                                 out_proj_bias, training=True, key_padding_mask=None, need_weights=True,
                                 attn_mask=None, use_separate_proj_weight=False, q_proj_weight=None,
                                 k_proj_weight=None, v_proj_weight=None, static_k=None, static_v=None,
                                 average_attn_weights=True, is_causal=False):
    """nn.MultiheadAttention: (T, B, E) query, (S, B, E) key/value; key_padding_mask, attn_mask,
    causal; returns the output and (head-averaged or per-head) weights."""
    if bias_k is not None or bias_v is not None or add_zero_attn or static_k is not None or static_v is not None:
        raise NotImplementedError("multi_head_attention_forward with bias_k/bias_v/add_zero_attn/static_k/v")
    if training and dropout_p:
        raise NotImplementedError("multi_head_attention_forward with dropout in training mode")
    q_in, k_in, v_in = ctx.ref(query), ctx.ref(key), ctx.ref(value)
    if q_in.ndim != 3:
        raise NotImplementedError("unbatched multi-head attention")
    e = q_in.shape[2]
    h = num_heads
    if use_separate_proj_weight:
        ws = [ctx.ref(q_proj_weight), ctx.ref(k_proj_weight), ctx.ref(v_proj_weight)]
    else:
        w = ctx.ref(in_proj_weight)
        ws = [slice_ref(ctx, w, 0, i * e, (i + 1) * e, helper=f"w{nm}") for i, nm in enumerate("qkv")]
    bs = [None] * 3
    if in_proj_bias is not None:
        b = ctx.ref(in_proj_bias)
        bs = [slice_ref(ctx, b, 0, i * e, (i + 1) * e, helper=f"b{nm}") for i, nm in enumerate("qkv")]
    q = _proj(ctx, q_in, ws[0], bs[0], "q")
    k = _proj(ctx, k_in, ws[1], bs[1], "k")
    v = _proj(ctx, v_in, ws[2], bs[2], "v")
    head = ctx.dims.static(h, f"{ctx.op_name}_heads")
    hd = ctx.dims.static(e // h, f"{ctx.op_name}_head_dim")

    def heads(r, nm):  # (T, B, E) -> (B, H, T, Dh)
        s = ctx.layer({"class": "split_dims", "from": r, "axis": r.dims[2], "dims": [head, hd]},
                      [r.dims[0], r.dims[1], head, hd], dtype=r.dtype, helper=f"{nm}_heads")
        return ctx.transpose_to(s, [s.dims[1], head, s.dims[0], hd])

    q, k, v = heads(q, "q"), heads(k, "k"), heads(v, "v")
    q = ctx.eval(f"source(0) * {lit(1.0 / math.sqrt(e // h))}", [q], q.dims, dtype=q.dtype, helper="q_scaled")
    kt = ctx.transpose_to(k, [k.dims[0], head, hd, k.dims[2]])
    scores = matmul_ref(ctx, q, kt, helper="scores")  # (B, H, T, S)
    if key_padding_mask is not None:
        m = ctx.ref(key_padding_mask)  # (B, S), True (or nonzero) = ignore
        m = ctx.rename(m, {m.dims[0]: scores.dims[0], m.dims[1]: scores.dims[3]})
        if m.dtype == torch.bool:
            scores = ctx.eval("tf.where(source(1), float('-inf'), source(0))", [scores, m], scores.dims,
                              dtype=scores.dtype, helper="key_padding")
        else:
            scores = ctx.eval("source(0) + tf.cast(source(1), source(0).dtype)", [scores, m], scores.dims,
                              dtype=scores.dtype, helper="key_padding")
    if attn_mask is not None:
        am = ctx.ref(attn_mask)
        if am.ndim != 2:
            raise NotImplementedError("multi-head attention with a 3-D attn_mask")
        am = ctx.rename(am, {am.dims[0]: scores.dims[2], am.dims[1]: scores.dims[3]})
        if am.dtype == torch.bool:  # True = not allowed
            scores = ctx.eval("tf.where(source(1), float('-inf'), source(0))", [scores, am], scores.dims,
                              dtype=scores.dtype, helper="attn_mask")
        else:
            scores = ctx.eval("source(0) + tf.cast(source(1), source(0).dtype)", [scores, am], scores.dims,
                              dtype=scores.dtype, helper="attn_mask")
    elif is_causal:
        scores = _masked(ctx, scores, None, True, 2, 3, "scores")
    att = _softmax(ctx, scores, 3, helper="weights_heads")
    ctxv = matmul_ref(ctx, att, v, helper="context")  # (B, H, T, Dh)
    ctxv = ctx.transpose_to(ctxv, [ctxv.dims[2], ctxv.dims[0], head, hd])
    merged_dim = ctx.dims.static(e, f"{ctx.op_name}_embed")
    merged = ctx.layer({"class": "merge_dims", "from": ctxv, "axes": [head, hd], "out_dim": merged_dim},
                       [ctxv.dims[0], ctxv.dims[1], merged_dim], dtype=ctxv.dtype, helper="merged")
    out = _proj(ctx, merged, ctx.ref(out_proj_weight), ctx.ref(out_proj_bias) if out_proj_bias is not None else None,
                "out")
    out = ctx.layer({"class": "copy", "from": out}, out.dims, dtype=out.dtype)
    if not need_weights:
        return out, None
    if average_attn_weights:
        weights = ctx.layer({"class": "reduce", "from": att, "mode": "mean", "axes": [head]},
                            [att.dims[0], att.dims[2], att.dims[3]], dtype=att.dtype, helper="weights")
    else:
        weights = ctx.layer({"class": "copy", "from": att}, att.dims, dtype=att.dtype, helper="weights")
    return out, weights
