"""Capture cost of a pre-LN transformer encoder (plain torch) for 1..16 blocks.

Prints, per block count N: capture seconds, captured ops, ms per op, one plain torch forward,
building the same net dict into a fresh TFNetwork, and capture / (forward + build).
Results go to benchmarks/results/capture_bench.json; a previous run there is compared against.

    python benchmarks/capture_bench.py [--blocks 1 2 4 8 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import torch
import torch.nn as nn
from results_io import default_path, previous, write

from torchdispatch_returnn import returnn_capture
from torchdispatch_returnn.export import ConfigNetwork

D, HEADS, B, T = 256, 4, 3, 50


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.ln2 = nn.LayerNorm(D)
        self.ff1 = nn.Linear(D, 4 * D)
        self.ff2 = nn.Linear(4 * D, D)

    def forward(self, x):
        b, t, _ = x.shape
        h = self.ln1(x)

        def heads(y):
            return y.view(b, t, HEADS, D // HEADS).transpose(1, 2)

        q, k, v = heads(self.q(h)), heads(self.k(h)), heads(self.v(h))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // HEADS), dim=-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, t, D))
        return x + self.ff2(torch.nn.functional.gelu(self.ff1(self.ln2(x))))


class Encoder(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.blocks = nn.ModuleList([Block() for _ in range(n)])

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return x


def measure(n: int, repeat: int) -> dict:
    torch.manual_seed(0)
    model = Encoder(n).eval()
    x = torch.randn(B, T, D)
    best = {}
    for _ in range(repeat):
        with torch.no_grad():
            t0 = time.perf_counter()
            model(x)
            t_fwd = time.perf_counter() - t0
            t0 = time.perf_counter()
            with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
                model(x)
            t_cap = time.perf_counter() - t0
        code = net.config_code()
        t0 = time.perf_counter()
        fresh = ConfigNetwork(code)
        t_build = time.perf_counter() - t0
        fresh.close()
        net.session.close()
        cur = {"capture_s": t_cap, "forward_s": t_fwd, "build_s": t_build, "ops": len(net.parity),
               "layers": len(net.net_dict), "parity_ok": net.parity.ok}
        if not best or cur["capture_s"] < best["capture_s"]:
            best = cur
    best["ms_per_op"] = 1000 * best["capture_s"] / max(best["ops"], 1)
    best["ratio"] = best["capture_s"] / (best["forward_s"] + best["build_s"])
    return best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--out", default=default_path("capture_bench"))
    args = p.parse_args()
    prev = previous(args.out)
    rows = {}
    print(f"pre-LN transformer encoder, D={D}, {HEADS} heads, B={B}, T={T} (time dynamic); best of {args.repeat}")
    print(f"{'N':>3} {'capture s':>10} {'ops':>5} {'layers':>6} {'ms/op':>7} {'torch fwd s':>11} {'TF build s':>10} "
          f"{'cap/(fwd+build)':>15} {'vs prev':>8} parity")
    for n in args.blocks:
        r = measure(n, args.repeat)
        rows[str(n)] = r
        old = prev.get("rows", {}).get(str(n))
        vs = f"{r['capture_s'] / old['capture_s']:.2f}x" if old else "-"
        print(f"{n:>3} {r['capture_s']:>10.3f} {r['ops']:>5} {r['layers']:>6} {r['ms_per_op']:>7.2f} "
              f"{r['forward_s']:>11.4f} {r['build_s']:>10.3f} {r['ratio']:>15.2f} {vs:>8} "
              f"{'ok' if r['parity_ok'] else 'FAILED'}")
    write(args.out, {"rows": rows, "torch": torch.__version__})


if __name__ == "__main__":
    main()
