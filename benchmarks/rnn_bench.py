"""BLSTM (or BGRU: ``--cell gru``) encoder benchmark: conv frontend + 2-layer bidirectional LSTM/GRU (512 units),
B=8, T=500.

Prints capture seconds, then inference seconds of torch eager (at its best thread count) vs. the converted
RETURNN network (live session, full-length batch and a padded batch with sequence lengths), interleaved.
Results go to benchmarks/results/rnn_bench.json; a previous run there is compared against.

    python benchmarks/rnn_bench.py [--batch 8] [--time 500] [--units 512] [--repeat 3] [--cell lstm|gru]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import torch
import torch.nn as nn
from results_io import default_path, previous, write

from torchdispatch_returnn import returnn_capture


class BLSTMEncoder(nn.Module):
    def __init__(self, feat=80, units=512, cell="lstm"):
        super().__init__()
        self.frontend = nn.Sequential(nn.Conv1d(feat, units, 3, padding=1), nn.ReLU(),
                                      nn.Conv1d(units, units, 3, stride=2, padding=1), nn.ReLU())
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.lstm = rnn(units, units, num_layers=2, bidirectional=True, batch_first=True)
        self.out = nn.Linear(2 * units, 100)

    def forward(self, x):  # (B, T, F)
        y = self.frontend(x.transpose(1, 2)).transpose(1, 2)
        y, _ = self.lstm(y)
        return self.out(y)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _torch_threads(model, x) -> int:
    """torch's best thread count here (1 or 2): a busy second core slows 2 threads badly."""
    times = {}
    for n in (1, 2):
        torch.set_num_threads(n)
        model(x)
        times[n] = min(_timed(lambda: model(x)) for _ in range(2))
    return min(times, key=times.get)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--time", type=int, default=500)
    p.add_argument("--units", type=int, default=512)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    p.add_argument("--out", default=None, help="results file (default: results/rnn_bench.json, rnn_bench_gru.json)")
    args = p.parse_args()
    args.out = args.out or default_path("rnn_bench" if args.cell == "lstm" else "rnn_bench_gru")
    torch.manual_seed(0)
    model = BLSTMEncoder(units=args.units, cell=args.cell).eval()
    x = torch.randn(args.batch, args.time, 80)
    with torch.no_grad():
        t0 = time.perf_counter()
        with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
            model(x)
        t_capture = time.perf_counter() - t0
        threads = _torch_threads(model, x)
        torch.set_num_threads(threads)
    lens = np.linspace(args.time, args.time // 2, args.batch).astype("int32")
    net.run(x)  # warm-up
    net.run(x, seq_lens={"time": lens})
    times = {"torch_s": [], "returnn_s": [], "returnn_padded_s": []}
    for _ in range(args.repeat):  # interleaved, so that a busy second core hits all alike
        with torch.no_grad():
            times["torch_s"].append(_timed(lambda: model(x)))
        times["returnn_s"].append(_timed(lambda: net.run(x)))
        times["returnn_padded_s"].append(_timed(lambda: net.run(x, seq_lens={"time": lens})))
    t_torch, t_returnn, t_returnn_pad = (statistics.median(times[k]) for k in times)
    res = {"capture_s": t_capture, "torch_s": t_torch, "returnn_s": t_returnn, "returnn_padded_s": t_returnn_pad,
           "ops": len(net.parity), "layers": len(net.net_dict), "parity_ok": net.parity.ok,
           "B": args.batch, "T": args.time, "units": args.units, "cell": args.cell, "torch_threads": threads}
    prev = previous(args.out) or None
    print(f"conv frontend + 2-layer bidirectional {args.cell.upper()} ({args.units} units), B={args.batch}, "
          f"T={args.time}; median of {args.repeat} interleaved runs, torch with {threads} thread(s)")
    print(f"capture: {t_capture:.2f} s ({res['ops']} ops, {res['layers']} layers, parity "
          f"{'ok' if net.parity.ok else 'FAILED'})")
    print(f"{'inference':<28} {'seconds':>8} {'vs torch':>9} {'vs prev':>8}")
    for key, label in (("torch_s", "torch eager"), ("returnn_s", "RETURNN (full lengths)"),
                       ("returnn_padded_s", "RETURNN (padded batch)")):
        vs_prev = f"{res[key] / prev[key]:.2f}x" if prev and key in prev else "-"
        print(f"{label:<28} {res[key]:>8.3f} {res[key] / t_torch:>8.2f}x {vs_prev:>8}")
    write(args.out, res)


if __name__ == "__main__":
    main()
