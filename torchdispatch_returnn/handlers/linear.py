"""Linear algebra: matmul/@, bmm, mm, mv, F.linear, einsum (all as RETURNN ``dot``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import handles

T = torch.Tensor


def dot(ctx, a, b, batch: list[tuple[int, int]], reduce: list[tuple[int, int]], out_order: list, *,
        helper=None):
    """``dot`` of refs ``a`` and ``b``: axis pairs in ``batch`` are shared, pairs in ``reduce``
    summed over; all other axes are kept. ``out_order``: output axes as ("a"|"b", axis)."""
    mapping = {}
    for ia, ib in batch + reduce:
        mapping[b.dims[ib]] = a.dims[ia]
    shared = {id(b.dims[ib]) for _, ib in batch + reduce}
    a_own = {id(a.dims[i]) for i in range(a.ndim)}
    for i, d in enumerate(b.dims):
        if id(d) not in shared and (id(d) in a_own or d in [a.dims[j] for j in range(a.ndim)]):
            mapping[d] = ctx.dims.same_length_as(d, f"{d.description}_{ctx.op_name}")
    b = ctx.rename(b, mapping)
    dims = [a.dims[i] if side == "a" else b.dims[i] for side, i in out_order]
    if not reduce:
        return ctx.eval("source(0) * source(1)", [a, b], dims, helper=helper)
    red = [a.dims[ia] for ia, _ in reduce]
    for rd in red:  # summing over a dynamic axis: zero both sides' padding (NaN-safe, per sequence)
        if rd.is_dynamic() and not rd.is_batch_dim():
            a = _mask_padding(ctx, a, rd)
            b = _mask_padding(ctx, b, rd)
    d = {"class": "dot", "from": [a, b], "reduce": red}
    return ctx.layer(d, dims, helper=helper)


def _mask_padding(ctx, r, dim):
    if not r.dtype.is_floating_point or not any(d.is_batch_dim() for d in r.dims):
        return r
    return ctx.layer({"class": "seq_len_mask", "from": r, "axis": dim, "mask_value": 0.0}, r.dims, dtype=r.dtype,
                     helper="masked")


def matmul_ref(ctx, a, b, helper=None):
    """torch.matmul semantics on refs (1-D operands and broadcast batch axes included)."""
    if a.ndim == 1 and b.ndim == 1:
        return dot(ctx, a, b, [], [(0, 0)], [], helper=helper)
    if b.ndim == 1:
        return dot(ctx, a, b, [], [(a.ndim - 1, 0)], [("a", i) for i in range(a.ndim - 1)], helper=helper)
    if a.ndim == 1:
        return dot(ctx, a, b, [], [(0, b.ndim - 2)],
                   [("b", i) for i in range(b.ndim) if i != b.ndim - 2], helper=helper)
    nb_a, nb_b = a.ndim - 2, b.ndim - 2
    nb = max(nb_a, nb_b)
    batch, out, sq_a, sq_b = [], [], [], []
    for k in range(nb):
        ia, ib = k - (nb - nb_a), k - (nb - nb_b)
        if ia >= 0 and ib >= 0:
            if a.shape[ia] == b.shape[ib]:
                batch.append((ia, ib))
                out.append(("a", ia))
            elif a.shape[ia] == 1:  # broadcast: a's size-1 axis goes, b's axis is kept
                sq_a.append(ia)
                out.append(("b", ib))
            else:
                sq_b.append(ib)
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
    return dot(ctx, a, b, batch, reduce, out, helper=helper)


def _squeeze_axes(ctx, r, axes):
    """Squeeze ``axes``; returns the ref and old axis -> new axis for the remaining ones."""
    for ax in sorted(axes, reverse=True):
        r = ctx.squeeze(r, ax)
    mapping, j = {}, 0
    for i in range(r.ndim + len(axes)):
        if i not in axes:
            mapping[i] = j
            j += 1
    return r, mapping


@handles(torch.matmul, T.matmul, T.__matmul__, torch.mm, T.mm, torch.bmm, T.bmm, torch.mv, T.mv)
def matmul(ctx, a, b, *, out=None):
    """Matrix product with torch.matmul broadcasting."""
    dtype = ctx.out.dtype
    return matmul_ref(ctx, ctx.cast(ctx.ref(a), dtype), ctx.cast(ctx.ref(b), dtype))


@handles(T.__rmatmul__)
def rmatmul(ctx, a, b):
    """b @ a."""
    return matmul_ref(ctx, ctx.ref(b), ctx.ref(a))


@handles(F.linear)
def linear(ctx, x, weight, bias=None):
    """x @ weight.T + bias."""
    r = ctx.ref(x)
    w = ctx.ref(weight, prefer=[None, r.dims[-1]])
    if w.ndim == 1:
        return matmul_ref(ctx, r, w)
    y = dot(ctx, r, w, [], [(r.ndim - 1, 1)], [("a", i) for i in range(r.ndim - 1)] + [("b", 0)],
            helper="dot" if bias is not None else None)
    if bias is None:
        return y
    b = ctx.ref(bias, prefer=[y.dims[-1]])
    b = ctx.rename(b, {b.dims[0]: y.dims[-1]})
    return ctx.eval("source(0) + source(1)", [y, b], y.dims)


def _expand_ellipsis(terms, rhs, ndims):
    """Replace ``...`` by letters not used elsewhere (right-aligned broadcast axes, as torch)."""
    used = set("".join(terms) + (rhs or ""))
    pool = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used]
    n_ell = max((nd - (len(t) - 3) for t, nd in zip(terms, ndims) if "..." in t), default=0)
    ell = "".join(pool[:n_ell])
    new_terms = [t.replace("...", ell[n_ell - (nd - (len(t) - 3)):]) if "..." in t else t
                 for t, nd in zip(terms, ndims)]
    if rhs is None:
        rest = sorted(c for c in set("".join(terms).replace(".", "")) if "".join(terms).count(c) == 1)
        rhs = ell + "".join(rest)
    else:
        rhs = rhs.replace("...", ell)
    return new_terms, rhs


@handles(torch.einsum)
def einsum(ctx, equation, *operands):
    """Two-operand (or one-operand) einsum without repeated indices in one operand."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if "..." in eq:
        terms, rhs = _expand_ellipsis(terms, rhs if arrow else None, [o.dim() for o in operands])
        arrow = "->"
    if not arrow:
        letters = sorted(set("".join(terms)))
        rhs = "".join(c for c in letters if "".join(terms).count(c) == 1)
    if any(len(set(t)) != len(t) for t in terms):
        raise NotImplementedError("einsum with a repeated index in one operand")
    from .reduce import reduce_ref

    refs = [ctx.cast(ctx.ref(o), ctx.out.dtype) for o in operands]
    if len(refs) == 1:
        (t,), r = terms, refs[0]
        red = reduce_ref(ctx, r, "sum", [i for i, c in enumerate(t) if c not in rhs], False,
                         helper="sum" if len(rhs) else None)
        kept = [c for c in t if c in rhs]
        return ctx.transpose_to(red, [red.dims[kept.index(c)] for c in rhs])
    if len(refs) != 2:
        raise NotImplementedError("einsum with more than two operands")
    (ta, tb), (a, b) = terms, refs
    # sum out letters that appear in only one operand and not in the output
    for side in (0, 1):
        t, r, other = (ta, a, tb) if side == 0 else (tb, b, ta)
        gone = [i for i, c in enumerate(t) if c not in rhs and c not in other]
        if gone:
            r = reduce_ref(ctx, r, "sum", gone, False, helper=f"sum{side}")
            t = "".join(c for i, c in enumerate(t) if i not in gone)
            if side == 0:
                ta, a = t, r
            else:
                tb, b = t, r
    batch = [(ta.index(c), tb.index(c)) for c in ta if c in tb and c in rhs]
    reduce = [(ta.index(c), tb.index(c)) for c in ta if c in tb and c not in rhs]
    out = [("a", ta.index(c)) if c in ta else ("b", tb.index(c)) for c in rhs]
    return dot(ctx, a, b, batch, reduce, out)


@handles(torch.addmm, T.addmm, torch.baddbmm, T.baddbmm)
def addmm(ctx, input, mat1, mat2, *, beta=1, alpha=1, out=None):
    """beta * input + alpha * (mat1 @ mat2) (GPT-2's Conv1D uses addmm)."""
    from .elementwise import lit

    dtype = ctx.out.dtype
    prod = matmul_ref(ctx, ctx.cast(ctx.ref(mat1), dtype), ctx.cast(ctx.ref(mat2), dtype), helper="mm")
    inp = _align(ctx, ctx.cast(ctx.ref(input), dtype), prod)
    return ctx.eval(f"{lit(beta)} * source(0) + {lit(alpha)} * source(1)", [inp, prod], prod.dims)


def _align(ctx, r, target):
    """``r`` broadcast positionally onto ``target``'s dims (size-1 axes squeezed, others renamed)."""
    from .attention import align_to

    return align_to(ctx, r, list(target.dims))


@handles(torch.outer, T.outer, torch.ger, T.ger)
def outer(ctx, a, b):
    """a[:, None] * b[None, :]."""
    ra, rb = ctx.ref(a), ctx.ref(b)
    if rb.dims[0] is ra.dims[0]:
        rb = ctx.rename(rb, {rb.dims[0]: ctx.dims.same_length_as(rb.dims[0], f"{rb.dims[0].description}_outer")})
    return ctx.eval("source(0) * source(1)", [ra, rb], [ra.dims[0], rb.dims[0]])
