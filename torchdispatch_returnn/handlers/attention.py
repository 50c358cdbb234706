"""Attention: F.scaled_dot_product_attention and F.multi_head_attention_forward (nn.MultiheadAttention).

Scores are a RETURNN ``dot``; the key axis of a self-attention gets a twin dim (same lengths), the
softmax over a dynamic key axis is masked by the key lengths, so padded keys never get weight.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..tensor import MergedDim
from .common import apply_mask, causal_mask, linear_ref, lit, mask_expr, matmul_ref, slice_ref, softmax_ref
from .linear import linear_layer
from .registry import handles


@handles(F.scaled_dot_product_attention)
def scaled_dot_product_attention(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    """softmax(q k^T * scale + mask) v over the last two axes."""
    if dropout_p and not ctx.train:
        raise NotImplementedError("scaled_dot_product_attention with dropout_p > 0 in an eval capture")
    if enable_gqa:
        raise NotImplementedError("scaled_dot_product_attention with enable_gqa")
    q, k, v = ctx.ref(query), ctx.ref(key), ctx.ref(value)
    e = q.shape[-1]
    s = scale if scale is not None else 1.0 / math.sqrt(e)
    kt = ctx.transpose_to(k, list(k.dims[:-2]) + [k.dims[-1], k.dims[-2]])
    scores = matmul_ref(ctx, q, kt)
    scores = ctx.eval(f"source(0) * {lit(float(s))}", [scores], scores.dims, dtype=scores.dtype)
    if attn_mask is not None:  # bool: True = take part
        scores = apply_mask(ctx, scores, ctx.ref(attn_mask), true_means_keep=True)
    if is_causal:
        scores = causal_mask(ctx, scores, scores.ndim - 2, scores.ndim - 1)
    return matmul_ref(ctx, softmax_ref(ctx, scores, scores.ndim - 1), v)


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
    packed = _packed_self_attention(ctx, query, key, value, q_in, in_proj_weight, in_proj_bias, e, h) \
        if not use_separate_proj_weight else None
    if packed is not None:
        q, k, v = packed
        head, hd = q.dims[2], q.dims[3]
        q, k, v = (ctx.transpose_to(r, [r.dims[1], head, r.dims[0], hd]) for r in (q, k, v))
    else:
        q, k, v, head, hd = _projections(ctx, q_in, k_in, v_in, in_proj_weight, in_proj_bias, use_separate_proj_weight,
                                         q_proj_weight, k_proj_weight, v_proj_weight, e, h)
    kt = ctx.transpose_to(k, [k.dims[0], head, hd, k.dims[2]])
    scores = matmul_ref(ctx, q, kt)  # (B, H, T, S), scaled with the key padding mask applied in one layer:
    scale = lit(1.0 / math.sqrt(e // h))
    if key_padding_mask is not None:  # (B, S): True (bool) = ignore, or added (float)
        m = ctx.ref(key_padding_mask)
        expr = mask_expr(f"x0 * {scale}", "x1[:, None, None, :]", m.dtype == torch.bool, False, "x0.dtype")
        scores = ctx.tf_op(expr, [scores, m], scores.dims, dtype=scores.dtype)
    else:
        scores = ctx.eval(f"source(0) * {scale}", [scores], scores.dims, dtype=scores.dtype)
    if attn_mask is not None:  # (T, S), True = not allowed
        am = ctx.ref(attn_mask)
        if am.ndim == 3:  # (B * H, T, S): per sequence and head
            m = am.dims[0]
            if not isinstance(m, MergedDim) or len(m.parts) != 2 or not m.parts[0].is_batch_dim():
                raise NotImplementedError("multi-head attention with a 3-D attn_mask not made as (B * heads, T, S)")
            am = ctx.transpose_to(am, [*m.parts, am.dims[1], am.dims[2]])
            am = ctx.rename(am, {m.parts[1]: head})
        elif am.ndim != 2:
            raise NotImplementedError(f"multi-head attention with a {am.ndim}-D attn_mask")
        scores = apply_mask(ctx, scores, am, true_means_keep=False)
    elif is_causal:
        scores = causal_mask(ctx, scores, 2, 3)
    att = softmax_ref(ctx, scores, 3)
    ctxv = matmul_ref(ctx, att, v)  # (B, H, T, Dh)
    ctxv = ctx.transpose_to(ctxv, [ctxv.dims[2], ctxv.dims[0], head, hd])
    merged_dim = ctx.dims.shared.merge([head, hd], lambda: ctx.dims.static(e, f"{ctx.op_name}_embed"))
    _roles(ctx, [merged_dim], ["embed"])
    merged = ctx.layer({"class": "merge_dims", "from": ctxv, "axes": [head, hd], "out_dim": merged_dim},
                       [ctxv.dims[0], ctxv.dims[1], merged_dim], dtype=ctxv.dtype)
    out = linear_layer(ctx, merged, out_proj_weight, out_proj_bias)
    if out is None:
        out = linear_ref(ctx, merged, ctx.ref(out_proj_weight), out_proj_bias)
    if not need_weights:
        return out, None
    if average_attn_weights:
        weights = ctx.layer({"class": "reduce", "from": att, "mode": "mean", "axes": [head]},
                            [att.dims[0], att.dims[2], att.dims[3]], dtype=att.dtype)
    else:
        weights = att
    return out, weights


def _roles(ctx, dims: list, roles: list) -> None:
    """The config names of dims this op made: the module path plus ``roles`` (see :mod:`..naming.dimnames`)."""
    for d, role in zip(dims, roles):
        ctx.dims.names.role(d, role)


def _packed_self_attention(ctx, query, key, value, x, in_proj_weight, in_proj_bias, e, h):
    """Self-attention (query, key and value one tensor) with the module's packed in-projection: one ``linear``
    layer (3E outputs) holding ``in_proj_weight``/``in_proj_bias``, split into (3, heads, head dim), and q, k, v
    picked from it as (T, B, H, Dh); None where the weights are not the module's own."""
    if not (query is key is value):
        return None
    proj = linear_layer(ctx, x, in_proj_weight, in_proj_bias)
    if proj is None:
        return None
    three, head, hd = ctx.dims.shared.split(proj.dims[2], [3, h, e // h], f"{ctx.op_name}_qkv", avoid=proj.dims[:2])
    s = ctx.layer({"class": "split_dims", "from": proj, "axis": proj.dims[2], "dims": [three, head, hd]},
                  [proj.dims[0], proj.dims[1], three, head, hd], dtype=proj.dtype)
    _roles(ctx, [proj.dims[2], three, head, hd], ["in_proj", "qkv", "heads", "head_dim"])
    t = s.dims[0]  # keys and values take the key axis (a twin of time) before they are picked: one rename
    kv = s
    if t.is_dynamic():
        t_kv = ctx.twin(t, avoid=s.dims)
        _roles(ctx, [t_kv], [f"{t.description}_kv"])
        kv = ctx.rename(s, {t: t_kv})
    return [ctx.layer({"class": "gather", "from": src, "axis": three, "position": i},
                      [src.dims[0], src.dims[1], head, hd], dtype=s.dtype) for i, src in enumerate((s, kv, kv))]


def _projections(ctx, q_in, k_in, v_in, in_proj_weight, in_proj_bias, separate, q_proj_weight, k_proj_weight,
                 v_proj_weight, e, h):
    """q, k, v as (B, H, T, Dh) and the heads and head-size dims, from weights as ``variable`` layers."""
    if separate:
        ws = [ctx.ref(q_proj_weight), ctx.ref(k_proj_weight), ctx.ref(v_proj_weight)]
    else:
        w = ctx.ref(in_proj_weight)
        ws = [slice_ref(ctx, w, 0, i * e, (i + 1) * e) for i in range(3)]
    bs = [None] * 3
    if in_proj_bias is not None:
        b = ctx.ref(in_proj_bias)
        bs = [slice_ref(ctx, b, 0, i * e, (i + 1) * e) for i in range(3)]
    q, k, v = (linear_ref(ctx, x, w, b) for x, w, b in zip((q_in, k_in, v_in), ws, bs))
    head = ctx.dims.static(h, f"{ctx.op_name}_heads")
    hd = ctx.dims.static(e // h, f"{ctx.op_name}_head_dim")
    _roles(ctx, [head, hd], ["heads", "head_dim"])

    def heads(r):  # (T, B, E) -> (B, H, T, Dh)
        s = ctx.layer({"class": "split_dims", "from": r, "axis": r.dims[2], "dims": [head, hd]},
                      [r.dims[0], r.dims[1], head, hd], dtype=r.dtype)
        return ctx.transpose_to(s, [s.dims[1], head, s.dims[0], hd])

    q, k, v = heads(q), heads(k), heads(v)
    return q, k, v, head, hd
