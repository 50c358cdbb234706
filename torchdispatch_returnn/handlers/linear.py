"""Linear algebra: F.linear (a RETURNN ``linear`` layer holding the module's weight and bias, or a ``dot``),
matmul/@, bmm, mm, mv, einsum (RETURNN ``dot``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tensor import MergedDim
from .common import T, dot, held_layer, held_out_dim, linear_ref, lit, matmul_ref, reduce_ref
from .registry import handles


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
    """x @ weight.T + bias: a ``linear`` layer where the weight (and bias) are a module's parameters."""
    r = ctx.ref(x)
    layer = linear_layer(ctx, r, weight, bias)
    if layer is not None:
        return layer
    w = ctx.ref(weight, prefer=[None, r.dims[-1]])
    if w.ndim == 1:
        return matmul_ref(ctx, r, w)
    return linear_ref(ctx, r, w, bias)


def linear_layer(ctx, r, weight, bias):
    """RETURNN's ``linear`` over the last axis of ``r`` with ``weight`` as its ``W``, stored in RETURNN's (in, out)
    layout (torch's (out, in) transposed: a matmul with ``transpose_b`` is ~15% slower with oneDNN, and RETURNN
    builds a transpose for ``use_transposed_weights``) and ``bias`` as ``b``, initialised as torch's module would;
    a module called again reuses its layer's params. None where the layer cannot hold them (not a module's float32
    parameter, or one some other op uses too)."""
    d_in = r.dims[-1] if r.ndim else None
    if weight.dim() != 2 or d_in is None or isinstance(d_in, MergedDim) or d_in.is_dynamic() or \
            d_in.is_batch_dim() or r.dtype != torch.float32:
        return None
    owner = ctx.param_owner({"W": weight, "b": bias})
    if owner is None:
        return None
    out = held_out_dim(ctx, owner, int(weight.shape[0]), r.dims[:-1])
    d = {"class": "linear", "from": r, "in_dim": d_in, "with_bias": bias is not None, "out_dim": out}
    return held_layer(ctx, owner, d, list(r.dims[:-1]) + [out], {"W": weight, "b": bias},
                      inits={"forward_weights_init": weight, "bias_init": bias}, perms={"W": [1, 0]})


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
    refs = [ctx.cast(ctx.ref(o), ctx.out.dtype) for o in operands]
    if len(refs) == 1:
        (t,), r = terms, refs[0]
        red = reduce_ref(ctx, r, "sum", [i for i, c in enumerate(t) if c not in rhs], False)
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
            r = reduce_ref(ctx, r, "sum", gone, False)
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
    dtype = ctx.out.dtype
    prod = matmul_ref(ctx, ctx.cast(ctx.ref(mat1), dtype), ctx.cast(ctx.ref(mat2), dtype))
    inp = ctx.align(ctx.cast(ctx.ref(input), dtype), prod.dims)
    return ctx.eval(f"{lit(beta)} * source(0) + {lit(alpha)} * source(1)", [inp, prod], prod.dims)


@handles(torch.outer, T.outer, torch.ger, T.ger)
def outer(ctx, a, b):
    """a[:, None] * b[None, :]."""
    ra, rb = ctx.ref(a), ctx.ref(b)
    if rb.dims[0] is ra.dims[0]:
        rb = ctx.rename(rb, {rb.dims[0]: ctx.twin(rb.dims[0])})
    return ctx.eval("source(0) * source(1)", [ra, rb], [ra.dims[0], rb.dims[0]])
