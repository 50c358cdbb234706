"""Recurrent layers.

``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` are leaf modules. Each LSTM layer and direction is one
``eval`` layer running TF's fused ``BlockLSTMV2`` op (CPU kernel, torch's gate order, the torch
weights as they are); GRU, RNN and LSTM with ``proj_size`` are a RETURNN ``rec`` layer whose unit
is a small subnetwork with torch's own cell equations (input projection outside the loop). The
weights stay variables in torch layout (no transform); nothing needs compiling. The backward
direction reverses each sequence within its own length around the recurrence; final states are
taken at each sequence's own last frame. ``PackedSequence`` in and out (``pack_padded_sequence``,
``pad_packed_sequence``, also with ``enforce_sorted=False``) map to the padded tensor plus the
dim's lengths. ``LSTMCell``/``GRUCell``/``RNNCell`` called in a Python loop are unrolled.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence

from .._backend import tf_dtype
from ..tensor import MergedDim, PackedRef, Ref, ReturnnTensor, UnsortedRef
from .common import cat_refs, dot, reverse_sequences, stack_refs
from .registry import handles, handles_module

logger = logging.getLogger(__name__)

_N_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _unit(ctx, kind, act, w_hh, b_hh, w_hr, g_dim, hh_dim, hc_dim, n_dim, b_dim, init_h, init_c):
    """The rec unit dict (one time step) for one layer and direction."""
    u = {}

    def gate(src, k, name):
        u[name] = {"class": "gather", "from": src, "axis": n_dim, "position": k}

    u["hp"] = {"class": "dot", "from": ["prev:h", ctx.base(w_hh)], "reduce": [hh_dim]}
    if kind == "GRU":
        if b_hh is not None:
            u["hp_b"] = {"class": "eval", "from": ["hp", ctx.base(b_hh)], "eval": "source(0) + source(1)"}
        hp = "hp_b" if b_hh is not None else "hp"
        u["xs"] = {"class": "split_dims", "from": "data:source", "axis": g_dim, "dims": [n_dim, hc_dim]}
        u["hs"] = {"class": "split_dims", "from": hp, "axis": g_dim, "dims": [n_dim, hc_dim]}
        for k, nm in enumerate("rzn"):
            gate("xs", k, f"x{nm}")
            gate("hs", k, f"h{nm}")
        u["r"] = {"class": "eval", "from": ["xr", "hr"], "eval": "tf.sigmoid(source(0) + source(1))"}
        u["z"] = {"class": "eval", "from": ["xz", "hz"], "eval": "tf.sigmoid(source(0) + source(1))"}
        u["n"] = {"class": "eval", "from": ["xn", "r", "hn"], "eval": "tf.tanh(source(0) + source(1) * source(2))"}
        u["hprev"] = {"class": "reinterpret_data", "from": "prev:h", "set_dim_tags": {hh_dim: hc_dim}}
        u["hc"] = {"class": "eval", "from": ["z", "n", "hprev"],
                   "eval": "(1.0 - source(0)) * source(1) + source(0) * source(2)"}
    elif kind == "LSTM":
        # one eval per state: fewer ops per step than split/gather layers (gates i, f, g, o as torch)
        gates = ("tf.split(source(0, auto_convert=False) + source(1, auto_convert=False), 4, "
                 "axis=source(0, as_data=True, auto_convert=False).get_axis_from_description(g_dim))")
        out_type = {"dim_tags": [b_dim, hc_dim], "dtype": "float32"}
        u["c"] = {"class": "eval", "from": ["data:source", "hp", "prev:c"], "is_output_layer": True,
                  "eval": f"(lambda i, f, g, o: tf.sigmoid(f) * source(2) + tf.sigmoid(i) * tf.tanh(g))(*{gates})",
                  "eval_locals": {"g_dim": g_dim}, "out_type": out_type}
        if init_c is not None:
            u["c"]["initial_output"] = ctx.base(init_c)
        u["hc"] = {"class": "eval", "from": ["data:source", "hp", "c"], "eval_locals": {"g_dim": g_dim},
                   "eval": f"tf.sigmoid({gates}[3]) * tf.tanh(source(2))", "out_type": out_type}
    else:
        u["g"] = {"class": "eval", "from": ["data:source", "hp"] + ([ctx.base(b_hh)] if b_hh is not None else []),
                  "eval": f"tf.nn.{act}({' + '.join(f'source({i})' for i in range(3 if b_hh is not None else 2))})"}
        u["hc"] = {"class": "reinterpret_data", "from": "g", "set_dim_tags": {g_dim: hc_dim}}
    if w_hr is not None:
        u["h"] = {"class": "dot", "from": ["hc", ctx.base(w_hr)], "reduce": [hc_dim]}
    else:
        u["h"] = {"class": "reinterpret_data", "from": "hc", "set_dim_tags": {hc_dim: hh_dim}}
    if init_h is not None:
        u["h"]["initial_output"] = ctx.base(init_h)
    u["output"] = {"class": "copy", "from": "h"}
    return u


def _block_lstm(ctx, inp, f_dim, t_dim, b_dim, m, sfx, direction, init_h, init_c, tag):
    """A whole LSTM direction as TF's fused ``BlockLSTMV2`` op (CPU kernel, gates i, f, g, o as
    torch), fed with the torch weights as they are; far fewer loop steps than a rec subnetwork."""
    refs = [ctx.ref(getattr(m, "weight_ih" + sfx)), ctx.ref(getattr(m, "weight_hh" + sfx))]
    if m.bias:
        refs += [ctx.ref(getattr(m, "bias_ih" + sfx)), ctx.ref(getattr(m, "bias_hh" + sfx))]
    hh_dim = refs[1].dims[1]
    if direction == -1:
        inp = reverse_sequences(ctx, inp, t_dim, b_dim)
    states = [s for s in (init_h, init_c) if s is not None]
    srcs = [inp] + refs + states
    h = m.hidden_size
    raw = [f"source({i}, auto_convert=False)" for i in range(len(srcs))]
    bias = f"{raw[3]} + {raw[4]}" if m.bias else f"tf.zeros([{4 * h}], {raw[1]}.dtype)"
    zeros = f"tf.zeros([tf.shape(x)[1], {h}], x.dtype)"
    bh = ("(lambda d: d.copy_transpose([d.get_axis_from_description(b), d.get_axis_from_description({})])"
          ".placeholder)(source({}, as_data=True, auto_convert=False))")  # a (B, H) state, batch-major
    h0 = bh.format("hs", 1 + len(refs)) if init_h is not None else zeros
    c0 = bh.format("cs", 1 + len(refs) + (init_h is not None)) if init_c is not None else zeros
    x = ("(lambda d: d.copy_transpose([d.get_axis_from_description(t), d.get_axis_from_description(b), "
         "d.get_axis_from_description(f)]).placeholder)(source(0, as_data=True, auto_convert=False))")
    expr = (f"(lambda x: (lambda r: tf.stack([r.h, r.cs], 0))(tf.raw_ops.BlockLSTMV2("
            f"seq_len_max=tf.cast(tf.shape(x)[0], tf.int64), x=x, cs_prev={c0}, h_prev={h0}, "
            f"w=tf.transpose(tf.concat([{raw[1]}, {raw[2]}], 1)), wci=tf.zeros([{h}], x.dtype), "
            f"wcf=tf.zeros([{h}], x.dtype), wco=tf.zeros([{h}], x.dtype), b={bias}, cell_clip=-1.0, "
            f"use_peephole=False)))({x})")
    two = ctx.dims.static(2, f"{ctx.op_name}{tag}_hc")
    locs = {"t": t_dim, "b": b_dim, "f": f_dim}
    if init_h is not None:
        locs["hs"] = init_h.dims[1]
    if init_c is not None:
        locs["cs"] = init_c.dims[1]
    both = ctx.layer({"class": "eval", "from": srcs, "eval": expr, "eval_locals": locs,
                      "out_type": {"dim_tags": [two, t_dim, b_dim, hh_dim], "dtype": tf_dtype(inp.dtype)}},
                     [two, t_dim, b_dim, hh_dim])
    seq, c_seq = (ctx.layer({"class": "gather", "from": both, "axis": two, "position": k}, [t_dim, b_dim, hh_dim])
                  for k in range(2))
    h_n, c_n = _last_frames(ctx, [seq, c_seq], t_dim, b_dim)
    if direction == -1:
        seq = reverse_sequences(ctx, seq, t_dim, b_dim)
    return seq, h_n, c_n


def _direction(ctx, kind, act, inp, f_dim, t_dim, b_dim, m, sfx, direction, init_h, init_c, tag):
    if kind == "LSTM" and not getattr(m, "proj_size", 0) and inp.dtype == torch.float32:
        return _block_lstm(ctx, inp, f_dim, t_dim, b_dim, m, sfx, direction, init_h, init_c, tag)
    w_ih = ctx.ref(getattr(m, "weight_ih" + sfx))
    w_hh = ctx.ref(getattr(m, "weight_hh" + sfx))
    b_ih = ctx.ref(getattr(m, "bias_ih" + sfx)) if m.bias else None
    b_hh = ctx.ref(getattr(m, "bias_hh" + sfx)) if m.bias else None
    w_hr = ctx.ref(getattr(m, "weight_hr" + sfx)) if getattr(m, "proj_size", 0) else None
    g_dim, hh_dim = w_hh.dims
    n = _N_GATES[kind]
    hc_dim = ctx.dims.static(m.hidden_size, f"{ctx.op_name}{tag}_cell")
    n_dim = ctx.dims.static(n, f"{ctx.op_name}{tag}_gates")
    w_ih = ctx.rename(w_ih, {w_ih.dims[0]: g_dim})
    xp = dot(ctx, inp, w_ih, [], [(inp.dims.index(f_dim), 1)],
             [("a", inp.dims.index(b_dim)), ("a", inp.dims.index(t_dim)), ("b", 0)])
    # both biases go into the input projection, except GRU's b_hh (scaled by the reset gate in the loop)
    biases = [b for b in ((b_ih, b_hh) if kind != "GRU" else (b_ih,)) if b is not None]
    if biases:
        bs = [ctx.rename(b, {b.dims[0]: g_dim}) for b in biases]
        xp = ctx.eval(" + ".join(f"source({i})" for i in range(len(bs) + 1)), [xp] + bs, xp.dims)
    b_hh = ctx.rename(b_hh, {b_hh.dims[0]: g_dim}) if kind == "GRU" and b_hh is not None else None
    if direction == -1:  # a subnetwork unit runs forward only: reverse each sequence around it
        xp = reverse_sequences(ctx, xp, t_dim, b_dim)
    if w_hr is not None:
        w_hr = ctx.rename(w_hr, {w_hr.dims[0]: hh_dim, w_hr.dims[1]: hc_dim})
    if init_h is not None:
        init_h = ctx.rename(init_h, {init_h.dims[1]: hh_dim})
    if init_c is not None:
        init_c = ctx.rename(init_c, {init_c.dims[1]: hc_dim})
    unit = _unit(ctx, kind, act, w_hh, b_hh, w_hr, g_dim, hh_dim, hc_dim, n_dim, b_dim, init_h, init_c)
    seq = ctx.layer({"class": "rec", "from": xp, "axis": t_dim, "unit": unit}, [t_dim, b_dim, hh_dim])
    seqs = [seq]
    if kind == "LSTM":
        c_dims = (t_dim, b_dim, hc_dim)
        seqs.append(Ref(seq.layer.sub("c", c_dims, seq.dtype), c_dims, (seq.shape[0], seq.shape[1], m.hidden_size),
                        seq.dtype))
    finals = _last_frames(ctx, seqs, t_dim, b_dim)
    h_n, c_n = finals[0], (finals[1] if kind == "LSTM" else None)
    if direction == -1:
        seq = reverse_sequences(ctx, seq, t_dim, b_dim)
    return seq, h_n, c_n


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
    seq = inp
    for layer in range(m.num_layers):
        outs = []
        for d in range(n_dir):
            k = layer * n_dir + d
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            tag = f"_l{layer}" + ("_bw" if d else "")
            s, h_n, c_n = _direction(ctx, kind, act, seq, f_dim, t_dim, b_dim, m, sfx, -1 if d else 1,
                                     init_h[k], init_c[k], tag)
            outs.append(s)
            finals_h.append(h_n)
            finals_c.append(c_n)
        seq = outs[0] if n_dir == 1 else cat_refs(ctx, outs, 2)
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
