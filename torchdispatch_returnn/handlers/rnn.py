"""Recurrent layers.

``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` are leaf modules. Each layer and direction is one ``eval``
layer running a ``tf.while_loop`` with torch's own cell equations, the input projection of all frames
one matmul before the loop. (TF's fused ``BlockLSTM`` does its matmuls with Eigen; with TF's default
oneDNN matmul the loop is about twice as fast on CPU, and a GRU has no fused TF op with torch's
reset-gate placement.) The weights stay variables in torch layout (no transform); nothing needs
compiling, and gradients reach every weight. The backward direction
reverses each sequence within its own length around the recurrence; final states are taken at
each sequence's own last frame. ``PackedSequence`` in and out (``pack_padded_sequence``,
``pad_packed_sequence``, also with ``enforce_sorted=False``) map to the padded tensor plus the
dim's lengths. ``LSTMCell``/``GRUCell``/``RNNCell`` called in a Python loop are unrolled.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence

from ..tensor import MergedDim, PackedRef, Ref, ReturnnTensor, UnsortedRef
from .common import dot, reverse_sequences, stack_refs
from .registry import handles, handles_module

logger = logging.getLogger(__name__)

def _module_dims(ctx, kind, m) -> dict:
    """The dims of a recurrent module, one set for all its layers and directions: ``gates`` (the weights' and
    biases' first axis), ``out`` (each direction's output: the model's dim of that size), LSTM's ``cell`` (``out``
    without projection) and ``hc`` (h and c side by side), and ``both`` (the two directions' outputs)."""
    h, p = m.hidden_size, getattr(m, "proj_size", 0) or m.hidden_size
    out = ctx.dims.shared.feature(p, f"{ctx.op_name}_hidden")
    md = {"out": out, "gates": ctx.dims.static({"LSTM": 4, "GRU": 3}.get(kind, 1) * h, f"{ctx.op_name}_gates"),
          "cell": out if p == h else ctx.dims.static(h, f"{ctx.op_name}_cell")}
    if kind == "LSTM":
        md["hc"] = ctx.dims.static(p + h, f"{ctx.op_name}_hc")
    if m.bidirectional:
        md["both"] = ctx.dims.static(2 * p, f"{ctx.op_name}_bidirectional")
    ctx.dims.mark_plain(*md.values())  # (parameters may take them as their shape)
    return md


def _direction(ctx, kind, act, inp, f_dim, t_dim, b_dim, m, sfx, direction, init_h, init_c, md):
    """One layer and direction as one ``eval`` layer: (T, B, P) outputs, and for LSTM also the
    (T, B, H) cell states, concatenated along the last axis (``md``: the module's dims). Its layers are named
    by layer and direction: ``lstm_l0`` (the recurrence), ``lstm_l0_bw_in`` (the input, each sequence reversed),
    ``lstm_l0_h``/``_c`` (an LSTM's outputs and cell states), ``lstm_l0_bw_out``."""
    tag = sfx.replace("_reverse", "_bw")[1:]
    prefer = {"weight_ih": [md["gates"], f_dim], "weight_hh": [md["gates"], md["out"]], "bias_ih": [md["gates"]],
              "bias_hh": [md["gates"]], "weight_hr": [md["out"], md["cell"]]}

    def param(name):
        return ctx.ref(getattr(m, name + sfx), prefer=prefer[name])

    h_size, p_size = m.hidden_size, getattr(m, "proj_size", 0) or m.hidden_size
    if direction == -1:  # reverse each sequence within its length around the forward recurrence
        inp = reverse_sequences(ctx, inp, t_dim, b_dim, role=f"{tag}_in")
    srcs = [inp, param("weight_ih"), param("weight_hh")]
    names = {"w_ih": "x1", "w_hh": "x2"}
    extra = [("b_ih", "bias_ih", m.bias), ("b_hh", "bias_hh", m.bias),
             ("w_hr", "weight_hr", getattr(m, "proj_size", 0))]
    for key, attr, present in extra:
        if present:
            names[key] = f"x{len(srcs)}"
            srcs.append(param(attr))
    for key, state in (("h0", init_h), ("c0", init_c)):
        if state is not None:
            names[key] = f"x{len(srcs)}"
            srcs.append(state)
    order = [inp.dims.index(d) for d in (t_dim, b_dim, f_dim)]
    x = "x0" if order == [0, 1, 2] else f"tf.transpose(x0, {order})"
    zeros = "tf.zeros([tf.shape(x)[1], {}], x.dtype)"
    h0, c0 = names.get("h0", zeros.format(p_size)), names.get("c0", zeros.format(h_size))
    hh_dim = md["out"]
    expr = _loop(kind, act, names, p_size, h0, c0)
    out_dim = md["hc"] if kind == "LSTM" else hh_dim  # (LSTM: h and c side by side)
    seq = ctx.tf_op(f"(lambda x: {expr})({x})", srcs, [t_dim, b_dim, out_dim], dtype=inp.dtype, role=tag)
    if kind != "LSTM":
        h_n, = _last_frames(ctx, [seq], t_dim, b_dim)
        c_n = None
    else:
        both, both_dim, c_dim = seq, md["hc"], md["cell"]
        seq, c_seq = (ctx.layer({"class": "slice", "from": both, "axis": both_dim, "slice_start": start,
                                 "slice_end": start + size, "out_dim": dim}, [t_dim, b_dim, dim], dtype=inp.dtype,
                                role=f"{tag}_{part}")
                      for start, size, dim, part in ((0, p_size, hh_dim, "h"), (p_size, h_size, c_dim, "c")))
        h_n, c_n = _last_frames(ctx, [seq, c_seq], t_dim, b_dim)
    if direction == -1:
        seq = reverse_sequences(ctx, seq, t_dim, b_dim, role=f"{tag}_out")
    return seq, h_n, c_n


def _loop(kind, act, names, p, h0, c0) -> str:
    """A ``tf.while_loop`` over time with torch's own cell equations; the input projection (with both
    biases, except GRU's ``b_hh``, which the reset gate scales) is one matmul before the loop. Each step
    reads its frame by slicing (no scatter of all frames into a ``TensorArray``, as ``tf.scan`` does), keeps
    LSTM's ``h`` and ``c`` as two loop variables (no concat and slices) and writes them to ``TensorArray``s.
    The recurrent weights are transposed once before the loop (a matmul with ``transpose_b`` in each step
    makes oneDNN reorder the weight every step: a fifth of a bidirectional LSTM layer's time)."""
    biases = [names[k] for k in (("b_ih",) if kind == "GRU" else ("b_ih", "b_hh")) if k in names]
    xp = f"tf.tensordot(x, {names['w_ih']}, [[2], [1]])"
    if biases:  # (the biases summed first: one pass over all frames' projections)
        xp += f" + ({' + '.join(biases)})"
    hp = "tf.matmul(h, w_hh_t)"
    if kind == "RNN":
        step = f"tf.nn.{act}(xp[t] + {hp})"
    elif kind == "GRU":
        hp_b = f"{hp} + {names['b_hh']}" if "b_hh" in names else hp
        step = (f"(lambda xr, xz, xn, hr, hz, hn: (lambda r, z: (1.0 - z) * tf.tanh(xn + r * hn) + z * h)"
                f"(tf.sigmoid(xr + hr), tf.sigmoid(xz + hz)))(*tf.split(xp[t], 3, -1), *tf.split({hp_b}, 3, -1))")
    else:
        out = "tf.sigmoid(o) * tf.tanh(c2)"
        if "w_hr" in names:
            out = f"tf.matmul({out}, w_hr_t)"
        step = (f"(lambda i, f, g, o: (lambda c2: ({out}, c2))(tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)))"
                f"(*tf.split(xp[t] + {hp}, 4, -1))")
    ta = "tf.TensorArray(xp.dtype, n)"
    if kind == "LSTM":
        body = f"lambda t, h, c, ah, ac: (lambda h2, c2: (t + 1, h2, c2, ah.write(t, h2), ac.write(t, c2)))(*{step})"
        loop = f"tf.while_loop(lambda t, *_: t < n, {body}, (0, {h0}, {c0}, {ta}, {ta}))"
        result = "tf.concat([r[3].stack(), r[4].stack()], -1)"
    else:
        body = f"lambda t, h, ah: (lambda h2: (t + 1, h2, ah.write(t, h2)))({step})"
        loop = f"tf.while_loop(lambda t, *_: t < n, {body}, (0, {h0}, {ta}))"
        result = "r[2].stack()"
    loop = f"(lambda n: (lambda r: {result})({loop}))(tf.shape(xp)[0])"
    hoisted = {"xp": xp, **{k + "_t": f"tf.transpose({names[k]})" for k in ("w_hh", "w_hr") if k in names}}
    return f"(lambda {', '.join(hoisted)}: {loop})({', '.join(hoisted.values())})"


def _last_frames(ctx, seqs, t_dim, b_dim) -> list:
    """Each sequence's own last frame of each (T, B, H) ref: the final states (of the reversed run
    for the backward direction)."""
    length = ctx.size_ref(t_dim, [b_dim])
    pos = ctx.eval("source(0) - 1", [length], [b_dim], dtype=torch.int32)
    return [ctx.layer({"class": "gather", "from": s, "axis": t_dim, "position": pos}, [b_dim, s.dims[2]])
            for s in seqs]


def _state_slices(ctx, state, count, b_dim):
    """(L*D, B, H) initial state -> one [B, H] ref per layer and direction."""
    if state is None:
        return [None] * count
    r = ctx.ref(state)
    if r.ndim != 3:
        raise NotImplementedError("initial states of an unbatched RNN")
    r = ctx.rename(r, {r.dims[1]: b_dim})
    return [ctx.layer({"class": "gather", "from": r, "axis": r.dims[0], "position": k}, [b_dim, r.dims[2]])
            for k in range(count)]


@handles_module(nn.LSTM, nn.GRU, nn.RNN)
def rnn_module(ctx, m, args, kwargs, output):
    """LSTM/GRU/RNN: num_layers, bidirectional, batch_first, bias, proj_size, initial states,
    final states, PackedSequence input and output."""
    kind = type(m).__name__
    act = "tanh" if kind != "RNN" or m.nonlinearity == "tanh" else "relu"
    x = args[0]
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    if m.training and m.dropout and m.num_layers > 1:
        raise NotImplementedError(f"{kind} with dropout between layers in training mode")
    packed = isinstance(x, PackedSequence)
    if packed:
        pr = ctx.ref(x.data) if isinstance(x.data, ReturnnTensor) and ctx.is_captured(x.data) else None
        if not isinstance(pr, PackedRef):
            raise NotImplementedError("PackedSequence not made by pack_padded_sequence of a captured tensor")
        inp, batch_first = pr.padded, pr.batch_first
    else:
        inp, batch_first = ctx.ref(x), m.batch_first
    if inp.ndim != 3:
        raise NotImplementedError(f"unbatched {kind} input")
    if any(isinstance(d, MergedDim) for d in inp.dims):
        raise NotImplementedError(f"{kind} over a tensor whose batch axis merges the batch with another axis "
                                  "(x.view(B * K, T, F))")
    b_dim, t_dim = (inp.dims[0], inp.dims[1]) if batch_first else (inp.dims[1], inp.dims[0])
    f_dim = inp.dims[2]
    if not t_dim.is_dynamic():
        logger.info("%s over a static time axis of size %d", kind, inp.shape[1 if batch_first else 0])
    n_dir = 2 if m.bidirectional else 1
    count = m.num_layers * n_dir
    h0, c0 = (hx if kind == "LSTM" else (hx, None)) if hx is not None else (None, None)
    init_h = _state_slices(ctx, h0, count, b_dim)
    init_c = _state_slices(ctx, c0, count, b_dim)
    finals_h, finals_c = [], []
    seq, md = inp, _module_dims(ctx, kind, m)
    for layer in range(m.num_layers):
        outs = []
        for d in range(n_dir):
            k = layer * n_dir + d
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            s, h_n, c_n = _direction(ctx, kind, act, seq, f_dim, t_dim, b_dim, m, sfx, -1 if d else 1,
                                     init_h[k], init_c[k], md)
            outs.append(s)
            finals_h.append(h_n)
            finals_c.append(c_n)
        seq = outs[0] if n_dir == 1 else ctx.layer(
            {"class": "concat", "from": [(o, o.dims[2]) for o in outs], "out_dim": md["both"]},
            [t_dim, b_dim, md["both"]], dtype=inp.dtype, role=f"l{layer}_both")
        f_dim = seq.dims[2]
    order = [b_dim, t_dim, f_dim] if batch_first else [t_dim, b_dim, f_dim]
    seq = ctx.transpose_to(seq, order)
    if packed:
        out_seq = PackedRef(seq.layer, seq.dims, tuple(output[0].data.shape), seq.dtype, padded=seq,
                            batch_first=batch_first)
        out_seq = (out_seq, None, None, None)
    else:
        out_seq = seq
    h_n = stack_refs(ctx, finals_h, 0)
    if kind == "LSTM":
        c_n = stack_refs(ctx, finals_c, 0)
        return out_seq, (h_n, c_n)
    return out_seq, h_n


@handles(torch._VF._pack_padded_sequence)
def pack_padded(ctx, input, lengths, batch_first):
    """PackedSequence data: the padded tensor itself (its dim's lengths must be ``lengths``)."""
    r = ctx.ref(input)
    t_dim = r.dims[1] if batch_first else r.dims[0]
    _check_lengths(ctx, lengths, t_dim, r)
    data = PackedRef(r.layer, r.dims, tuple(ctx.out[0].shape), r.dtype, padded=Ref(r.layer, r.dims, r.shape, r.dtype),
                     batch_first=batch_first)
    return data, None


def _check_lengths(ctx, lengths, t_dim, r):
    if isinstance(lengths, ReturnnTensor) and ctx.is_captured(lengths):
        # the network uses the dim's own lengths: the parity check proves they equal the given ones
        b_dim = next(d for d in r.dims if d.is_batch_dim())
        own = ctx.cast(ctx.size_ref(t_dim, [b_dim]), torch.int64)
        if isinstance(r, UnsortedRef):  # torch holds the batch length-sorted (enforce_sorted=False)
            own = ctx.eval("tf.sort(source(0), direction='DESCENDING')", [own], own.dims, dtype=torch.int64)
        if lengths.dim() == 1:
            ctx.record(own, lengths.detach())
        return
    vals = [int(v) for v in torch.as_tensor(lengths).tolist()]
    given = ctx.dims.given_lengths().get(id(t_dim))
    if given is not None and vals == [int(v) for v in given]:  # lengths.cpu().numpy(): the dim's lengths by value
        ctx.note("pack_padded_sequence lengths taken as the dim's lengths (equal values at capture time)")
        return
    if not t_dim.is_dynamic() or any(v != r.shape[r.dims.index(t_dim)] for v in vals):
        raise NotImplementedError(
            "pack_padded_sequence with lengths that are not the sequence lengths of a dynamic dim: pass the "
            "lengths as a forward argument tied with returnn_capture(lengths={...})")


@handles(torch._VF._pad_packed_sequence)
def pad_packed(ctx, data, batch_sizes, batch_first, padding_value, total_length):
    """The padded tensor (and lengths) of a PackedSequence made in the capture."""
    pr = ctx.ref(data) if isinstance(data, ReturnnTensor) and ctx.is_captured(data) else None
    if not isinstance(pr, PackedRef):
        raise NotImplementedError("pad_packed_sequence of a PackedSequence not made in the capture")
    seq = pr.padded
    b_dim, t_dim = (seq.dims[0], seq.dims[1]) if pr.batch_first else (seq.dims[1], seq.dims[0])
    order = [b_dim, t_dim, seq.dims[2]] if batch_first else [t_dim, b_dim, seq.dims[2]]
    seq = ctx.transpose_to(seq, order)
    seq = ctx.layer({"class": "seq_len_mask", "from": seq, "axis": t_dim, "mask_value": float(padding_value or 0.0)},
                    seq.dims)
    lengths = ctx.cast(ctx.size_ref(t_dim, [b_dim]), torch.int64)
    return UnsortedRef(seq.layer, seq.dims, seq.shape, seq.dtype), \
        UnsortedRef(lengths.layer, lengths.dims, lengths.shape, lengths.dtype)


def _cell(ctx, kind, x, hx, w_ih, w_hh, b_ih, b_hh):
    xr = ctx.ref(x)
    if xr.ndim != 2:
        raise NotImplementedError(f"unbatched {kind} cell")
    b_dim = xr.dims[0]
    wi, wh = ctx.ref(w_ih), ctx.ref(w_hh)
    h, c = (hx if kind == "lstm" else (hx, None))
    hr = ctx.ref(h)
    hr = ctx.rename(hr, {hr.dims[0]: b_dim, hr.dims[1]: wh.dims[1]})
    wi = ctx.rename(wi, {wi.dims[0]: wh.dims[0]})
    xp = dot(ctx, xr, wi, [], [(1, 1)], [("a", 0), ("b", 0)])
    hp = dot(ctx, hr, wh, [], [(1, 1)], [("a", 0), ("b", 0)])
    srcs = [xp, hp] + [ctx.rename(ctx.ref(b), {ctx.ref(b).dims[0]: wh.dims[0]}) for b in (b_ih, b_hh) if b is not None]
    return xp, hp, srcs, b_dim, wh, hr, c


@handles(torch.lstm_cell, torch._VF.lstm_cell)
def lstm_cell(ctx, x, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step (LSTMCell in a Python loop: unrolled, time static)."""
    logger.warning("LSTMCell in a Python loop is unrolled: the network's time axis is static")
    xp, hp, srcs, b_dim, wh, hr, c = _cell(ctx, "lstm", x, hx, w_ih, w_hh, b_ih, b_hh)
    g_dim, h_dim = wh.dims
    four = ctx.dims.static(4, f"{ctx.op_name}_gates")
    gates = ctx.eval(" + ".join(f"source({i})" for i in range(len(srcs))), srcs, [b_dim, g_dim])
    gs = ctx.layer({"class": "split_dims", "from": gates, "axis": g_dim, "dims": [four, h_dim]}, [b_dim, four, h_dim])
    i, f, g, o = (ctx.layer({"class": "gather", "from": gs, "axis": four, "position": k}, [b_dim, h_dim])
                  for k in range(4))
    cr = ctx.ref(c)
    cr = ctx.rename(cr, {cr.dims[0]: b_dim, cr.dims[1]: h_dim})
    c_new = ctx.eval("tf.sigmoid(source(0)) * source(1) + tf.sigmoid(source(2)) * tf.tanh(source(3))",
                     [f, cr, i, g], [b_dim, h_dim])
    h_new = ctx.eval("tf.sigmoid(source(0)) * tf.tanh(source(1))", [o, c_new], [b_dim, h_dim])
    return h_new, c_new


@handles(torch.gru_cell, torch._VF.gru_cell)
def gru_cell(ctx, x, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step (GRUCell in a Python loop: unrolled)."""
    logger.warning("GRUCell in a Python loop is unrolled: the network's time axis is static")
    xp, hp, srcs, b_dim, wh, hr, _ = _cell(ctx, "gru", x, hx, w_ih, w_hh, None, None)
    g_dim, h_dim = wh.dims
    if b_ih is not None:
        bi = ctx.ref(b_ih)
        xp = ctx.eval("source(0) + source(1)", [xp, ctx.rename(bi, {bi.dims[0]: g_dim})], xp.dims)
    if b_hh is not None:
        bh = ctx.ref(b_hh)
        hp = ctx.eval("source(0) + source(1)", [hp, ctx.rename(bh, {bh.dims[0]: g_dim})], hp.dims)
    three = ctx.dims.static(3, f"{ctx.op_name}_gates")
    parts = []
    for src in (xp, hp):
        s = ctx.layer({"class": "split_dims", "from": src, "axis": g_dim, "dims": [three, h_dim]},
                      [b_dim, three, h_dim])
        parts.append([ctx.layer({"class": "gather", "from": s, "axis": three, "position": k}, [b_dim, h_dim])
                      for k in range(3)])
    (xr_, xz, xn), (hr_, hz, hn) = parts
    return ctx.eval("(lambda r, z, n: (1.0 - z) * n + z * source(6))(tf.sigmoid(source(0) + source(1)), "
                    "tf.sigmoid(source(2) + source(3)), tf.tanh(source(4) + tf.sigmoid(source(0) + source(1)) "
                    "* source(5)))", [xr_, hr_, xz, hz, xn, hn, hr], [b_dim, h_dim])


def _rnn_cell(act):
    def h(ctx, x, hx, w_ih, w_hh, b_ih=None, b_hh=None):
        """One Elman RNN step (RNNCell in a Python loop: unrolled)."""
        _, _, srcs, b_dim, wh, _, _ = _cell(ctx, "rnn", x, hx, w_ih, w_hh, b_ih, b_hh)
        return _rnn_out(ctx, act, srcs, b_dim, wh)
    return h


def _rnn_out(ctx, act, srcs, b_dim, wh):
    y = ctx.eval(f"tf.nn.{act}(" + " + ".join(f"source({i})" for i in range(len(srcs))) + ")", srcs,
                 [b_dim, wh.dims[0]])
    return ctx.rename(y, {wh.dims[0]: wh.dims[1]}) if wh.dims[0] is not wh.dims[1] else y


handles(torch.rnn_tanh_cell, torch._VF.rnn_tanh_cell)(_rnn_cell("tanh"))
handles(torch.rnn_relu_cell, torch._VF.rnn_relu_cell)(_rnn_cell("relu"))
