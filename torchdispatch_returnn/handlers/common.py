"""Builders shared by the handler families: elementwise eval, reductions, ``dot``/matmul/linear,
additive/boolean masks, softmax, batch permutations; and (from ``positions``) ranges, slices,
gathers, cat/stack and per-sequence reverse. Handler files import all of them from here.

Each takes ``ctx`` and :class:`Ref`s and returns a ``Ref``; like handlers, they never name layers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch

from .._backend import Dim, tf, tf_dtype, tf_util
from ..sizes import DimInt
from ..tensor import MergedDim, Ref, UnsortedRef, expand_dims
from .positions import (  # noqa: F401  (re-exported: handlers import their builders from common)
    bound_lin,
    cat_refs,
    clip_positions,
    dyn_slice,
    gather_ref,
    lin_ref,
    range_ref,
    reverse_sequences,
    size_value_ref,
    slice_ref,
    stack_refs,
)

T = torch.Tensor

#: sqrt of a norm or variance, as an eval function: torch's backward of a norm or std is 0 where the
#: value is 0; ``tf.sqrt``'s would be 0 * inf = NaN there (values as ``tf.sqrt``, NaN included)
SAFE_SQRT = "(lambda v: tf.where(v > 0, tf.sqrt(tf.where(v > 0, v, tf.ones_like(v))), tf.sqrt(tf.stop_gradient(v))))"


# -- arguments ------------------------------------------------------------------------------------
def sizes_arg(args: Sequence[Any]) -> list:
    """Sizes given as varargs or as one sequence (``view(2, 3)`` / ``view((2, 3))``)."""
    if len(args) == 1 and isinstance(args[0], (list, tuple, torch.Size)):
        return list(args[0])
    return list(args)


def ntuple(v: Any, n: int) -> tuple:
    """``v`` repeated ``n`` times, unless it is already a sequence (conv/pool arguments)."""
    return tuple(v) if isinstance(v, (list, tuple)) else (v,) * n


def lit(v: Any) -> str:
    """A Python number as source text for an eval expression."""
    if isinstance(v, DimInt) and v.dim.dimension is None:
        raise NotImplementedError("a dynamic size used as a constant here would freeze the traced length")
    if isinstance(v, bool):
        return repr(v)
    if isinstance(v, int):
        return repr(int(v))
    v = float(v)
    if math.isinf(v):
        return "float('inf')" if v > 0 else "float('-inf')"
    if math.isnan(v):
        return "float('nan')"
    return repr(v)


# -- elementwise ----------------------------------------------------------------------------------
#: binary formats RETURNN's ``combine`` layer computes the same way (its ``kind``)
_COMBINE = {"{0} + {1}": "add", "{0} - {1}": "sub", "{0} * {1}": "mul", "{0} / {1}": "truediv",
            "tf.maximum({0}, {1})": "maximum", "tf.minimum({0}, {1})": "minimum",
            "tf.logical_and({0}, {1})": "logical_and", "tf.logical_or({0}, {1})": "logical_or"}
#: formats whose operands meet in a Python operator: a number there takes the tensor's dtype, no cast needed
_INFIX = ("{0} + {1}", "{0} - {1}", "{0} * {1}", "{0} / {1}")
#: one TF function of the input (``tf.nn.relu({0})``, ``tf.math.log({0})``, gelu with its ``approximate``)
_ONE_FN = re.compile(r"(tf\.(?:nn\.|math\.)?(\w+))\(\{0\}(?:, approximate=(True|False))?\)")


def _activation(fmt: str) -> dict | None:
    """RETURNN's ``activation`` layer options computing ``fmt`` (the same TF function), or None."""
    m = _ONE_FN.fullmatch(fmt)
    if m is None or "softmax" in m.group(2):
        return None
    fn = tf
    for part in m.group(1).split(".")[1:]:
        fn = getattr(fn, part, None)
    try:
        same = fn is not None and tf_util.get_activation_function(m.group(2)) is fn
    except Exception:  # (RETURNN has no activation of that name)
        return None
    if not same:
        return None
    return {"activation": m.group(2), **({"opts": {"approximate": m.group(3) == "True"}} if m.group(3) else {})}


def _combine_kind(fmt: str, items: list, dims: tuple, out_dtype: torch.dtype) -> str | None:
    """RETURNN's ``combine`` kind computing ``fmt`` on ``items`` (two Refs of the result's dtype, one of them
    with all of ``dims``), or None. Bool only for logical and/or (TF's ``*`` on bool is its logical and,
    ``tf.multiply`` refuses bool)."""
    kind = _COMBINE.get(fmt)
    if kind is None or not all(isinstance(it, Ref) and it.dtype == out_dtype for it in items):
        return None
    if out_dtype == torch.bool and not kind.startswith("logical"):
        return None
    if not any(_same_dims(it.dims, dims) for it in items):
        return None
    return kind


def apply(ctx, fmt: str, *xs, dtype=None, out_dtype=None, conditions=()) -> Ref:
    """Broadcast ``xs`` (tensors cast to ``dtype``, default the result dtype; the inputs at
    positions ``conditions`` to bool) and build one layer computing ``fmt`` with ``{0}``, ``{1}``, ...
    standing for the inputs: ``combine`` for two tensors one of which has all the result's dims,
    ``activation`` for one TF function RETURNN has by that name, else ``eval`` (of one float tensor keeping
    its dims and dtype: without ``out_type``). A dynamic size (DimInt) is each sequence's length."""
    dtype = dtype or ctx.out.dtype
    sizes = {i: x for i, x in enumerate(xs) if isinstance(x, DimInt) and x.dim.dimension is None}
    xs = [1 if i in sizes else x for i, x in enumerate(xs)]
    items, dims = ctx.broadcast(*xs, dtype=[torch.bool if i in conditions else dtype for i in range(len(xs))])
    for i, size in sizes.items():  # a dynamic size used as a number: the per-sequence length
        items[i] = ctx.cast(ctx.size_ref(size.dim, dims), dtype)
    out_dtype = out_dtype or ctx.out.dtype
    kind = _combine_kind(fmt, items, dims, out_dtype)
    if kind is not None:
        return ctx.layer({"class": "combine", "from": items, "kind": kind}, dims, dtype=out_dtype)
    act = _activation(fmt) if len(items) == 1 and isinstance(items[0], Ref) else None
    if act and items[0].dtype.is_floating_point and out_dtype == items[0].dtype:
        return ctx.layer({"class": "activation", "from": items[0], **act}, dims, dtype=out_dtype)
    bare = fmt in _INFIX and dtype != torch.bool
    refs, args = [], []
    for it in items:
        if isinstance(it, Ref):
            args.append(f"source({len(refs)})")
            refs.append(it)
        else:
            args.append(lit(it) if bare else f"tf.cast({lit(it)}, {tf_dtype(dtype)!r})")
    if not refs:
        raise NotImplementedError("elementwise op without a captured tensor")
    x = refs[0]
    if len(refs) == 1 and x.dtype == out_dtype and out_dtype.is_floating_point and _same_dims(x.dims, dims) and \
            not any(isinstance(d, MergedDim) for d in dims):  # (RETURNN's default output is the source's)
        return ctx.layer({"class": "eval", "from": refs, "eval": fmt.format(*args)}, dims, dtype=out_dtype)
    return ctx.eval(fmt.format(*args), refs, dims, dtype=out_dtype)


def _same_dims(a, b) -> bool:
    """Whether ``a`` and ``b`` are the same dims, in any order."""
    return len(a) == len(b) and all(any(d is e for e in a) for d in b)


# -- reductions and products --------------------------------------------------------------------------
def reduce_ref(ctx, r: Ref, mode: str, axes: Sequence[int], keepdim: bool, *, dtype=None) -> Ref:
    """One ``reduce`` layer over the torch axes ``axes`` (then size-1 axes back if ``keepdim``)."""
    if not axes:
        return r
    dims = [d for i, d in enumerate(r.dims) if i not in axes]
    if any(isinstance(r.dims[i], MergedDim) for i in axes):  # B * K: over both dims
        if mode.startswith("arg"):
            raise NotImplementedError(f"{mode} along an axis that merges the batch with another axis")
        red = ctx.layer({"class": "reduce", "from": r, "mode": mode, "axes": expand_dims([r.dims[i] for i in axes])},
                        dims, dtype=dtype)
    elif any(r.dims[i].is_dynamic() and not r.dims[i].is_batch_dim() for i in axes) and \
            not any(d.is_batch_dim() for d in r.dims):  # no sequences to mask: over the padded axis, as torch
        fn = {"sum": "reduce_sum", "mean": "reduce_mean", "max": "reduce_max", "min": "reduce_min",
              "logsumexp": "reduce_logsumexp", "prod": "reduce_prod", "argmax": "argmax", "argmin": "argmin"}[mode]
        red = ctx.tf_op(f"tf.math.{fn}(x0, axis={axes[0] if mode.startswith('arg') else list(axes)})", [r], dims,
                        dtype=dtype or (torch.int64 if mode.startswith("arg") else r.dtype))
    else:
        red = ctx.layer({"class": "reduce", "from": r, "mode": mode, "axes": [r.dims[i] for i in axes]}, dims,
                        dtype=dtype)
    if keepdim:
        for i in sorted(axes):
            red = ctx.unsqueeze(red, i)
    return red


def dot(ctx, a: Ref, b: Ref, batch: list[tuple[int, int]], reduce: list[tuple[int, int]], out_order: list) -> Ref:
    """``dot`` of refs ``a`` and ``b``: axis pairs in ``batch`` are shared, pairs in ``reduce``
    summed over; all other axes are kept. ``out_order``: output axes as ("a"|"b", axis)."""
    mapping = {}
    for ia, ib in batch + reduce:
        mapping[b.dims[ib]] = a.dims[ia]
    shared = {id(b.dims[ib]) for _, ib in batch + reduce}
    a_own = {id(a.dims[i]) for i in range(a.ndim)}
    for d in b.dims:
        if id(d) not in shared and (id(d) in a_own or d in list(a.dims)):
            mapping[d] = ctx.twin(d, avoid=list(a.dims) + list(b.dims))
    b = ctx.rename(b, mapping)
    dims = [a.dims[i] if side == "a" else b.dims[i] for side, i in out_order]
    if not reduce:
        return ctx.eval("source(0) * source(1)", [a, b], dims)
    red = [a.dims[ia] for ia, _ in reduce]
    _name_heads(ctx, [a.dims[ia] for ia, _ in batch], red, dims)
    for rd in red:  # summing over a dynamic axis: zero both sides' padding (NaN-safe, per sequence)
        if rd.is_dynamic() and not rd.is_batch_dim():
            a = mask_padding(ctx, a, rd)
            b = mask_padding(ctx, b, rd)
    if any(rd.is_batch_dim() for rd in red):  # RETURNN's dot cannot sum over the batch: product, then sum
        both = list(a.dims) + [d for d in b.dims if not any(d is x for x in a.dims)]
        prod = ctx.eval("source(0) * source(1)", [a, b], both)
        y = reduce_ref(ctx, prod, "sum", [i for i, d in enumerate(both) if any(d is x for x in red)], False)
        return ctx.transpose_to(y, dims)
    return ctx.layer({"class": "dot", "from": [a, b], "reduce": red}, dims)


def _name_heads(ctx, kept: list, red: list, out: list) -> None:
    """A product that keeps one part of a split and sums over another (attention scores, or their weighted
    sum): those parts are the heads and the head size, and a twin of time in it holds the keys."""
    for r in red:
        parts = ctx.dims.shared.split_parts(r) if r.is_static() else []
        heads = [d for d in kept if any(d is p for p in parts) and d is not r]
        if heads:
            ctx.dims.names.role(heads[0], "heads", weak=True)
            ctx.dims.names.role(r, "head_dim", weak=True)
            for d in out:
                if d.is_dynamic() and ctx.dims.names.is_twin_role(d):
                    ctx.dims.names.role(d, f"{ctx.dims.twin_origin(d).description}_kv", weak=True)


def mask_padding(ctx, r: Ref, dim: Dim, value: float = 0.0) -> Ref:
    """``r`` with the padding frames of the dynamic ``dim`` set to ``value``."""
    if not r.dtype.is_floating_point or not any(d.is_batch_dim() for d in r.dims):
        return r
    desc = r.layer.desc or {}
    if desc.get("class") in ("softmax_over_spatial", "seq_len_mask") and desc.get("axis") is dim and \
            desc.get("mask_value", 0.0) == value and r.layer.alias is None:
        return r  # (its padding is ``value`` already: a softmax over ``dim`` gives 0 there)
    return ctx.layer({"class": "seq_len_mask", "from": r, "axis": dim, "mask_value": float(value)}, r.dims,
                     dtype=r.dtype)


def matmul_ref(ctx, a: Ref, b: Ref) -> Ref:
    """torch.matmul semantics on refs (1-D operands and broadcast batch axes included)."""
    if a.ndim == 1 and b.ndim == 1:
        return dot(ctx, a, b, [], [(0, 0)], [])
    if b.ndim == 1:
        return dot(ctx, a, b, [], [(a.ndim - 1, 0)], [("a", i) for i in range(a.ndim - 1)])
    if a.ndim == 1:
        return dot(ctx, a, b, [], [(0, b.ndim - 2)], [("b", i) for i in range(b.ndim) if i != b.ndim - 2])
    nb_a, nb_b = a.ndim - 2, b.ndim - 2
    nb = max(nb_a, nb_b)
    batch, out, sq_a, sq_b = [], [], [], []
    for k in range(nb):
        ia, ib = k - (nb - nb_a), k - (nb - nb_b)
        if ia >= 0 and ib >= 0:
            if ctx.broadcasts(a.dims[ia], a.shape[ia], b.dims[ib]):  # a's size-1 axis goes, b's axis is kept
                sq_a.append(ia)
                out.append(("b", ib))
            elif ctx.broadcasts(b.dims[ib], b.shape[ib], a.dims[ia]):
                sq_b.append(ib)
                out.append(("a", ia))
            else:
                batch.append((ia, ib))
                out.append(("a", ia))
        else:
            out.append(("a", ia) if ia >= 0 else ("b", ib))
    out += [("a", a.ndim - 2), ("b", b.ndim - 1)]
    reduce = [(a.ndim - 1, b.ndim - 2)]
    a, map_a = _squeeze_axes(ctx, a, sq_a)
    b, map_b = _squeeze_axes(ctx, b, sq_b)
    batch = [(map_a[i], map_b[j]) for i, j in batch]
    reduce = [(map_a[i], map_b[j]) for i, j in reduce]
    out = [(side, (map_a if side == "a" else map_b)[i]) for side, i in out]
    return dot(ctx, a, b, batch, reduce, out)


def _squeeze_axes(ctx, r: Ref, axes: Sequence[int]) -> tuple[Ref, dict]:
    """Squeeze ``axes``; returns the ref and old axis -> new axis for the remaining ones."""
    for ax in sorted(axes, reverse=True):
        r = ctx.squeeze(r, ax)
    mapping, j = {}, 0
    for i in range(r.ndim + len(axes)):
        if i not in axes:
            mapping[i] = j
            j += 1
    return r, mapping


def linear_ref(ctx, x: Ref, w: Ref, bias: Any) -> Ref:
    """``x @ w.T + bias`` over the last axis of ``x`` (``w``: (out, in); ``bias``: a (out,) Ref or
    tensor, or None)."""
    y = dot(ctx, x, w, [], [(x.ndim - 1, 1)], [("a", i) for i in range(x.ndim - 1)] + [("b", 0)])
    if bias is None:
        return y
    b = bias if isinstance(bias, Ref) else ctx.ref(bias, prefer=[y.dims[-1]])
    b = ctx.rename(b, {b.dims[0]: y.dims[-1]})
    return ctx.eval("source(0) + source(1)", [y, b], y.dims)


# -- layers holding a module's parameters --------------------------------------------------------------
def held_out_dim(ctx, owner, size: int, avoid: Sequence[Dim]) -> Dim:
    """The output dim of a layer holding parameters (see ``ctx.param_owner``): the model's dim of ``size`` for a
    new layer; the reused layer's own (or its twin, where one of ``avoid`` is it) for a module called again."""
    if owner is True:
        return ctx.dims.shared.feature(size, f"{ctx.op_name}_out", avoid=avoid)
    out = owner.desc["out_dim"]
    return ctx.twin(out) if any(out is x for x in avoid) else out


def held_layer(ctx, owner, d: dict, dims: Sequence[Dim], params: dict, inits: dict | None = None,
               perms: dict | None = None) -> Ref:
    """The layer ``d`` holding ``params`` ({RETURNN param name: torch tensor or None}): new (``owner`` True),
    with the initializers torch's module would use (``inits``: {layer option: tensor}), or reusing the params of
    the layer ``owner`` (a module called again). ``perms``: see ``ctx.own``."""
    if owner is True:
        for key, t in (inits or {}).items():
            init = ctx.param_init(t) if t is not None else None
            if init is not None:
                d[key] = init
    else:
        d["reuse_params"] = owner
    y = ctx.layer(d, dims)
    if owner is True:
        ctx.own(y, params, perms)
    return y


# -- masks ------------------------------------------------------------------------------------------
def apply_mask(ctx, scores: Ref, mask: Ref, *, true_means_keep: bool, align: bool = True) -> Ref:
    """``scores`` with a mask applied: a bool mask sets the masked-out entries to -inf (True keeps
    or True masks, per ``true_means_keep``), a float mask is added. The mask is broadcast onto the
    scores by torch's positional rule, unless ``align=False`` (it has some of the scores' dims)."""
    m = ctx.align(mask, scores.dims) if align else mask
    expr = mask_expr("source(0)", "source(1)", m.dtype == torch.bool, true_means_keep, "source(0).dtype")
    return ctx.eval(expr, [scores, m], scores.dims, dtype=scores.dtype)


def mask_expr(x: str, m: str, is_bool: bool, true_means_keep: bool, dtype: str) -> str:
    """TF code of scores ``x`` with mask ``m`` (the one rule of :func:`apply_mask`): a bool mask puts -inf
    where it masks out, a float mask is added; ``dtype``: code of the scores' dtype."""
    if not is_bool:
        return f"{x} + tf.cast({m}, {dtype})"
    inf = f"tf.cast(float('-inf'), {dtype})"
    return f"tf.where({m}, {x}, {inf})" if true_means_keep else f"tf.where({m}, {inf}, {x})"


def causal_mask(ctx, scores: Ref, q_ax: int, k_ax: int) -> Ref:
    """``scores`` with -inf where the key position is after the query position."""
    rq = range_ref(ctx, scores.dims[q_ax])
    rk = range_ref(ctx, scores.dims[k_ax])
    return ctx.eval("tf.where(source(2) <= source(1), source(0), float('-inf'))", [scores, rq, rk], scores.dims,
                    dtype=scores.dtype)


def softmax_ref(ctx, r: Ref, ax: int) -> Ref:
    """Softmax along axis ``ax`` (masked over a dynamic axis: padding gets 0)."""
    d = r.dims[ax]
    if d.is_dynamic():
        return ctx.layer({"class": "softmax_over_spatial", "from": r, "axis": d}, r.dims, dtype=r.dtype)
    return ctx.eval("tf.nn.softmax(source(0), axis={axis})", [r], r.dims, axis=d, dtype=r.dtype)


# -- batch order ------------------------------------------------------------------------------------
def batch_permutation(ctx, x: Any, ax: int, index: Any) -> Ref | None:
    """index_select over the batch axis with a plain permutation (the length sort/unsort of
    packing): the network keeps the original order. None if it is not that."""
    r = ctx.ref(x)
    if not (r.dims[ax].is_batch_dim() and isinstance(index, torch.Tensor) and index.dim() == 1):
        return None
    if sorted(index.tolist()) != list(range(r.shape[ax])):
        return None
    if isinstance(r, UnsortedRef):  # un-sorting: back to the order the network has anyway
        return Ref(r.layer, r.dims, r.shape, r.dtype)
    return UnsortedRef(r.layer, r.dims, r.shape, r.dtype)


def along_time(d) -> bool:
    """A dynamic dim other than the batch dim."""
    return d.is_dynamic() and not d.is_batch_dim()


