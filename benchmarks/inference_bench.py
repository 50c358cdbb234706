"""Inference speed of a converted transformer encoder against torch eager, interleaved in one run.

The benchmark encoder of capture_bench.py (pre-LN blocks, D=256, 4 heads) with 8 blocks, B=8, T=200:
torch eager at its best thread count (1 and 2 threads are both timed; the faster is used) against the
network built from the written config + checkpoint (``ConfigNetwork``, as a RETURNN user runs it), full
batch. Runs alternate torch / RETURNN so that a busy second core hits both alike; the median of each is
reported. Results go to benchmarks/results/inference_bench.json; a previous run there is compared
against.

    python benchmarks/inference_bench.py [--blocks 8] [--batch 8] [--time 200] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from capture_bench import D, Encoder
from results_io import default_path, previous, write

from torchdispatch_returnn import ConfigNetwork, returnn_capture


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--time", type=int, default=200)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--out", default=default_path("inference_bench"))
    args = p.parse_args()
    prev = previous(args.out)
    torch.manual_seed(0)
    model = Encoder(args.blocks).eval()
    with torch.no_grad(), returnn_capture(dynamic_shapes=({1: "time"},), self_check=False, progress=False) as net:
        model(torch.randn(3, 50, D))
    tmp = tempfile.mkdtemp()
    cfg, ckpt = net.save_config(os.path.join(tmp, "net.config")), net.save_checkpoint(os.path.join(tmp, "model"))
    net.session.close()
    fresh = ConfigNetwork(cfg, ckpt)
    x = torch.randn(args.batch, args.time, D)
    with torch.no_grad():
        want = model(x).numpy()
    got = fresh.run(x)
    assert abs(got - want).max() <= 1e-4 * (1 + abs(want).max()), "the converted network differs from torch"
    threads = {}
    for n in (1, 2):  # torch's best thread count on this machine
        torch.set_num_threads(n)
        with torch.no_grad():
            model(x)
            threads[n] = min(_timed(lambda: model(x)) for _ in range(3))
    best = min(threads, key=threads.get)
    torch.set_num_threads(best)
    t_torch, t_tf = [], []
    fresh.run(x)  # (warm-up: TF's first run optimises the graph)
    for _ in range(args.repeat):
        with torch.no_grad():
            t_torch.append(_timed(lambda: model(x)))
        t_tf.append(_timed(lambda: fresh.run(x)))
    fresh.close()
    row = {"torch_s": statistics.median(t_torch), "returnn_s": statistics.median(t_tf), "torch_threads": best,
           "blocks": args.blocks, "batch": args.batch, "time": args.time}
    row["ratio"] = row["returnn_s"] / row["torch_s"]
    old = prev.get("ratio")
    print(f"transformer encoder, {args.blocks} blocks, D={D}, B={args.batch}, T={args.time}; median of "
          f"{args.repeat} interleaved runs; torch with {best} thread(s) (1: {threads[1]:.3f} s, 2: {threads[2]:.3f} s)")
    print(f"torch eager {row['torch_s']:.3f} s, converted network {row['returnn_s']:.3f} s: {row['ratio']:.2f}x torch"
          + (f" (previous run {old:.2f}x)" if old else ""))
    write(args.out, row)


if __name__ == "__main__":
    main()
