"""Run every zoo model in plain torch at two lengths and print a table.

For entries with a lengths arg it also runs the last (shortest) sequence alone
and reports the max abs difference of its valid outputs (pad_err); entries
marked ``padded`` must match within 1e-4.

Usage: python tests/zoo/check_plain_torch.py [name ...]
"""

import inspect
import os
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import ZOO


def as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def lengths_for(m):
    if m.fixed_len is not None:
        return [m.fixed_len]
    T = max(m.default_len, m.min_len)
    return [T, T + 7 if m.max_len is None else min(T + 7, m.max_len)]


def batch_axis(dims):
    return next((a for a, n in (dims or {}).items() if n == "batch"), 0)


def last_sequence_alone(model, m, args):
    """Inputs of the last sequence alone (batch 1), cropped to its own lengths."""
    pos = {n: i for i, n in enumerate(inspect.signature(model.forward).parameters)}
    lens = {}  # dim name -> length of the last sequence
    for arg, dim in m.lengths.items():
        v = args[pos[arg]][-1]
        lens[dim] = round(float(v) * args[0].shape[1]) if m.lengths_relative else int(v)
    len_args = {pos[n] for n in m.lengths}
    out = []
    for i, (a, dims) in enumerate(zip(args, m.dynamic_shapes)):
        b = batch_axis(dims)
        a = a.narrow(b, a.shape[b] - 1, 1)
        for ax, dim in (dims or {}).items():
            if dim in lens:
                a = a.narrow(ax, 0, lens[dim])
        out.append(torch.ones_like(a) if i in len_args and m.lengths_relative else a)
    return out


def padding_err(model, m, args, out):
    single = as_list(model(*last_sequence_alone(model, m, args)))
    err = 0.0
    for o, s in zip(as_list(out), single):
        b = 1 if m.dynamic_shapes[0] and "batch" in m.dynamic_shapes[0].values() and o.dim() > 1 else 0
        o = o.narrow(b, o.shape[b] - 1, 1)
        for ax in range(o.dim()):
            o = o.narrow(ax, 0, s.shape[ax])
        err = max(err, (o.double() - s.double()).abs().max().item())
    return err


def run(m):
    model = m.factory()
    rows = []
    for T in lengths_for(m):
        args = m.inputs(T)
        assert len(args) == len(m.dynamic_shapes), "dynamic_shapes arity"
        with torch.no_grad():
            model(*args)  # warm-up
            t0 = time.perf_counter()
            out = model(*args)
            dt = time.perf_counter() - t0
            for o in as_list(out):
                assert isinstance(o, torch.Tensor), f"non-tensor output {type(o)}"
                assert not (o.is_floating_point() and o.isnan().any()), "NaN in output"
            perr = padding_err(model, m, args, out) if m.lengths else None
        rows.append((T, [tuple(o.shape) for o in as_list(out)], dt, perr))
    return rows


def main(names):
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    entries = [m for m in ZOO if not names or m.name in names]
    failed = 0
    print(f"{'name':26} {'library':12} {'ok':4} {'T':>5} {'ms':>6} {'padding':14} output shapes")
    for m in entries:
        try:
            rows = run(m)
        except Exception as e:
            failed += 1
            print(f"{m.name:26} {m.library:12} FAIL {type(e).__name__}: {str(e)[:200]}")
            continue
        bad = any(m.padded and perr > 1e-4 for *_, perr in rows)
        failed += bad
        for T, shp, dt, perr in rows:
            ok = "PAD" if bad else ("ok" if dt < 0.2 else "slow")
            pe = "" if perr is None else f"pad_err={perr:.0e}"
            print(f"{m.name:26} {m.library:12} {ok:4} {T:5d} {dt * 1e3:6.1f} {pe:14} {shp}")
    print(f"{len(entries) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
