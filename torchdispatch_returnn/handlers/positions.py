"""Positions, slices, gathers, cat/stack and per-sequence reverse: the builders of ``common`` that
address frames. Bounds and sizes may be symbolic (``DimInt``/``Lin``): along a dynamic axis they
hold per sequence, along a static axis at the padded sizes, as torch computes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .._backend import Dim, batch_dim
from ..sizes import DimInt, Lin
from ..tensor import Ref


# -- positions, slices, gather --------------------------------------------------------------------
def range_ref(ctx, dim: Dim) -> Ref:
    """int64 positions 0..len-1 along ``dim`` (follows the sequence lengths for a dynamic dim)."""
    if not dim.is_dynamic():
        return ctx.layer({"class": "range", "limit": dim.dimension, "out_spatial_dim": dim, "dtype": "int64"}, [dim],
                         dtype=torch.int64)
    src = ctx.dims.layer_of(dim)
    if src is None:  # a derived dim no layer has yet: a range over its lengths
        lengths = ctx.size_ref(dim, [batch_dim])
        return ctx.layer({"class": "range_from_length", "from": lengths, "out_spatial_dim": dim, "dtype": "int64"},
                         [dim], dtype=torch.int64)
    return ctx.layer({"class": "range_in_axis", "from": src, "axis": dim, "dtype": "int64"}, [dim], dtype=torch.int64)


def size_value_ref(ctx, lin: Lin) -> Ref:
    """A size expression at the padded sizes (each dynamic dim at its longest sequence), as a
    0-d int64 layer: what torch computes on a padded batch (``x.size(1)`` is the padded length)."""
    if lin.is_const:
        return ctx.const(torch.tensor(lin.const, dtype=torch.int64), [])
    srcs, terms = [], []
    for d, k in lin.terms:
        if d.is_batch_dim():
            r = ctx.size_ref(d)
        else:
            lengths = ctx.size_ref(d, [batch_dim])
            r = ctx.layer({"class": "reduce", "from": lengths, "mode": "max", "axes": list(lengths.dims)}, [],
                          dtype=torch.int32)
        terms.append(f"{k} * tf.cast(source({len(srcs)}), tf.int64)")
        srcs.append(r)
    return ctx.eval(" + ".join(terms) + f" + {lin.const}", srcs, [], dtype=torch.int64)


def gather_ref(ctx, r: Ref, ax: int, position: Any, pos_dims: Sequence[Dim], **opts) -> Ref:
    """Entries of ``r`` along axis ``ax`` at ``position`` (int or int Ref with dims ``pos_dims``)."""
    dims = list(r.dims[:ax]) + list(pos_dims) + list(r.dims[ax + 1:])
    return ctx.layer({"class": "gather", "from": r, "axis": r.dims[ax], "position": position, **opts}, dims,
                     dtype=r.dtype)


def clip_positions(ctx, pos: Ref, r: Ref, ax: int) -> Ref:
    """Positions for a gather along axis ``ax`` of ``r``, clipped to the valid range: each sequence's
    length along a dynamic axis where the positions have the batch axis, else the padded size."""
    d = r.dims[ax]
    if d.is_dynamic() and any(x.is_batch_dim() for x in pos.dims):
        return ctx.eval("tf.maximum(tf.minimum(source(0), tf.cast(source(1), source(0).dtype) - 1), 0)",
                        [pos, ctx.size_ref(d, pos.dims)], pos.dims, dtype=pos.dtype)
    top = size_value_ref(ctx, ctx.dims.lin_of(d)) if d.is_dynamic() else ctx.const(
        torch.tensor(r.shape[ax], dtype=torch.int64), [])
    return ctx.eval("tf.maximum(tf.minimum(source(0), tf.cast(source(1), source(0).dtype) - 1), 0)", [pos, top],
                    pos.dims, dtype=pos.dtype)


def slice_ref(ctx, r: Ref, ax: int, start: Any, end: Any, step: int = 1, out_dim: Dim | None = None) -> Ref:
    """``r[..., start:end:step, ...]`` along axis ``ax`` (see :func:`dyn_slice` for dynamic axes); ``out_dim``:
    the static axis's dim (by default the one of the last slice of that axis so, see ``dims.shared.pieces``)."""
    if r.dims[ax].is_dynamic() or isinstance(start, DimInt) or isinstance(end, DimInt):
        return dyn_slice(ctx, r, ax, start, end, step)
    s, e, st = slice(start, end, step).indices(r.shape[ax])
    if s == 0 and e == r.shape[ax] and st == 1:
        return r
    if out_dim is None:
        others = [d for i, d in enumerate(r.dims) if i != ax]
        out_dim, = ctx.dims.shared.pieces(r.dims[ax], ("slice", s, e, st), [len(range(s, e, st))],
                                          lambda n: ctx.dims.static(n, f"{ctx.op_name}_dim"), avoid=others)
    return _slice_layer(ctx, r, ax, s, e if e < r.shape[ax] or st != 1 else None, st, out_dim)


def lin_ref(ctx, lin: Lin, within: Sequence[Dim]) -> Ref:
    """A size expression per sequence (each dynamic dim at each sequence's own length), as an
    int64 layer with dims among ``within`` (e.g. [batch])."""
    if lin.is_const:
        return ctx.const(torch.tensor(lin.const, dtype=torch.int64), [])
    srcs, terms = [], []
    for d, k in lin.terms:
        terms.append(f"{k} * tf.cast(source({len(srcs)}), tf.int64)")
        srcs.append(ctx.size_ref(d, within))
    out_dims = [w for w in within if any(w is x for s in srcs for x in s.dims)]
    return ctx.eval(" + ".join(terms) + f" + {lin.const}", srcs, out_dims, dtype=torch.int64)


def bound_lin(b: Any, length: Lin) -> Lin:
    """An index or slice bound as an absolute position along an axis of ``length`` (negative
    bounds count from the end; a DimInt is negative when its capture-time value is)."""
    lin = Lin.of(b)
    return length + lin if int(b) < 0 else lin


def dyn_slice(ctx, r: Ref, ax: int, start: Any, stop: Any, step: int = 1) -> Ref:
    """``r`` sliced along axis ``ax`` with bounds that may be sizes (``DimInt``) or count from the end.
    Along a dynamic axis the bounds hold per sequence (``x[:, -2:]`` is each sequence's last two
    frames); along a static axis dynamic bounds are taken at the padded sizes, as torch does."""
    d = r.dims[ax]
    length = ctx.dims.lin_of(d) if d.is_dynamic() else Lin((), r.shape[ax])
    lo = bound_lin(0 if start is None else start, length)
    hi = length if stop is None else bound_lin(stop, length)
    n = hi - lo
    rest = hi - length
    if step == 1 and lo.is_const and lo.const == 0 and rest.is_const and rest.const == 0:
        return r  # the whole axis
    if n.is_const:
        size = max(0, -(-n.const // step))
        out_dim = ctx.dims.static(size, f"{ctx.op_name}_dim")
    else:
        out_dim = ctx.dims.dim_of(n)  # the slice's length
        if out_dim is not None and step != 1:
            out_dim = ctx.dims.derive("ceildiv", out_dim, step)
        if out_dim is None:
            raise NotImplementedError(f"a slice of length {n!r}, which is no dim")
        if any(x is out_dim for i, x in enumerate(r.dims) if i != ax):  # x[..., :T] of a (T, 2T-1) tensor
            out_dim = ctx.distinct([out_dim, out_dim])[1]
    if d.is_dynamic() and lo.is_const and lo.const >= 0 and rest.is_const and rest.const <= 0:
        # x[:, c:T-k]: RETURNN's slice follows each sequence
        return _slice_layer(ctx, r, ax, lo.const, rest.const or None, step, out_dim)
    steps = range_ref(ctx, out_dim)
    if d.is_dynamic():  # per sequence: the start from each sequence's own sizes
        batch = [x for x in r.dims if x.is_batch_dim()]
        if not batch:
            raise NotImplementedError("a slice of a dynamic axis with bounds from the end, on a tensor without batch "
                                      "axis")
        first = lin_ref(ctx, lo, batch)
        pos = ctx.eval(f"tf.cast(source(0), tf.int64) + {step} * source(1)", [first, steps],
                       list(first.dims) + [out_dim], dtype=torch.int64)
        return gather_ref(ctx, r, ax, clip_positions(ctx, pos, r, ax), [out_dim])
    first = size_value_ref(ctx, lo) if lo.terms else None
    if first is None:
        pos = ctx.eval(f"{lo.const} + {step} * source(0)", [steps], [out_dim], dtype=torch.int64)
    else:
        pos = ctx.eval(f"source(0) + {step} * source(1)", [first, steps], [out_dim], dtype=torch.int64)
    return gather_ref(ctx, r, ax, pos, [out_dim])


def _slice_layer(ctx, r: Ref, ax: int, start: int, end: int | None, step: int, out_dim: Dim) -> Ref:
    dims = list(r.dims)
    dims[ax] = out_dim
    opts = {"class": "slice", "from": r, "axis": r.dims[ax], "slice_start": start or None, "slice_end": end,
            "out_dim": out_dim}
    if step != 1:
        opts["slice_step"] = step
    return ctx.layer(opts, dims, dtype=r.dtype)


# -- cat / stack / reverse --------------------------------------------------------------------------
def cat_refs(ctx, refs: Sequence[Ref], ax: int) -> Ref:
    """Concatenate along axis ``ax`` (other axes renamed to the first's; ragged-safe along a
    dynamic axis: each sequence's parts follow each other without padding in between; a tensor
    without batch axis is concatenated at its padded sizes, as torch)."""
    first = refs[0]
    refs = [first] + [ctx.rename(r, {d: t for i, (d, t) in enumerate(zip(r.dims, first.dims)) if i != ax})
                      for r in refs[1:]]
    per_seq = any(d.is_batch_dim() for d in first.dims)
    pending = [refs[0]]
    for r in refs[1:]:
        if per_seq and any(p.dims[ax].is_dynamic() for p in pending):
            pending = [_ragged_pair(ctx, _concat(ctx, pending, ax), r, ax)]
        else:
            pending.append(r)
    return _concat(ctx, pending, ax)


def _concat(ctx, parts: Sequence[Ref], ax: int) -> Ref:
    if len(parts) == 1:
        return parts[0]
    out_dim = parts[0].dims[ax]
    for r in parts[1:]:
        out_dim = ctx.dims.derive("add", out_dim, r.dims[ax])
    if isinstance(out_dim, int):  # (static: the axis the parts were cut from, where they add up to it)
        out_dim = ctx.dims.shared.concat([r.dims[ax] for r in parts], out_dim,
                                         lambda n=out_dim: ctx.dims.static(n, f"{ctx.op_name}_dim"),
                                         avoid=[d for i, d in enumerate(parts[0].dims) if i != ax])
    dims = list(parts[0].dims)
    dims[ax] = out_dim
    return ctx.layer({"class": "concat", "from": [(r, r.dims[ax]) for r in parts], "out_dim": out_dim}, dims,
                     dtype=parts[0].dtype)


def stack_refs(ctx, refs: Sequence[Ref], ax: int) -> Ref:
    """Stack refs along a new axis ``ax``."""
    if len(refs) == 1:
        return ctx.unsqueeze(refs[0], ax)
    return cat_refs(ctx, [ctx.unsqueeze(r, ax) for r in refs], ax)


def _ragged_pair(ctx, a: Ref, b: Ref, ax: int) -> Ref:
    """cat along a dynamic axis, per sequence: [a(len_a), b(len_b)] with no padding in between.
    A plain concat leaves a's padding in the middle; a per-sequence gather closes the gap."""
    da, db = a.dims[ax], b.dims[ax]
    naive = _concat(ctx, [a, b], ax)
    tt = naive.dims[ax]
    dims = list(naive.dims)
    pos = range_ref(ctx, tt)
    la, lb = ctx.size_ref(da, dims), ctx.size_ref(db, dims)
    batch = [d for d in dims if d.is_batch_dim()]
    ma = ctx.layer({"class": "reduce", "from": la, "mode": "max", "axes": batch}, [], dtype=torch.int32) \
        if la.dims else la
    idx = ctx.eval("(lambda t, l1, m1, l2: tf.where(t < l1, t, tf.where(t < l1 + l2, t - l1 + m1, 0)))("
                   "tf.cast(source(0), tf.int64), tf.cast(source(1), tf.int64), tf.cast(source(2), tf.int64), "
                   "tf.cast(source(3), tf.int64))", [pos, la, ma, lb],
                   list(dict.fromkeys(list(la.dims) + list(lb.dims) + [tt])), dtype=torch.int64)
    return ctx.layer({"class": "gather", "from": naive, "axis": tt, "position": idx}, dims, dtype=a.dtype)


def reverse_sequences(ctx, r: Ref, t_dim: Dim, b_dim: Dim, role: str | None = None) -> Ref:
    """Each sequence of ``r`` reversed along ``t_dim`` within its own length (padding stays at the end);
    ``role``: the layer's name suffix (see ``ctx.layer``)."""
    if not t_dim.is_dynamic():
        return ctx.eval("tf.reverse(source(0), axis=[{axis}])", [r], r.dims, axis=t_dim, dtype=r.dtype, role=role)
    length = ctx.size_ref(t_dim, [b_dim])
    return ctx.eval("tf.reverse_sequence(source(0), tf.cast(source(1, auto_convert=False), tf.int64), "
                    "seq_axis={axis}, batch_axis={batch})", [r, length], r.dims, dtype=r.dtype,
                    dims_locals={"axis": t_dim, "batch": b_dim}, role=role)


