"""Capture speed of this checkout against another git revision, interleaved in one run.

The encoder of capture_bench.py, N blocks; each capture runs in its own process (alternating between the
two checkouts, so a busier or quieter moment of a shared machine hits both alike), ``--repeat`` captures per
process, the first a warm-up. Prints, per N, ms per op (best and median over ``--rounds``) of the revision and
of this checkout, their ratio, 32-vs-4 flatness, and the 8-block capture against the predecessor's figure
(pytorch-to-returnn cannot run with this RETURNN/TF; the issue measured it on this machine).
Results go to benchmarks/results/capture_ab.json.

    python benchmarks/capture_ab.py [--rev HEAD~1] [--blocks 4 8 32] [--rounds 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from results_io import default_path, write

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: pytorch-to-returnn converting the 8-block encoder with its parity check, seconds (issue 11, this machine)
PREDECESSOR_8_BLOCKS_S = 23.8

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import torch
from capture_bench import Encoder, B, T, D
import torchdispatch_returnn
from torchdispatch_returnn import returnn_capture
assert torchdispatch_returnn.__file__.startswith(sys.argv[1]), torchdispatch_returnn.__file__
n, repeat = int(sys.argv[3]), int(sys.argv[4])
model, x, times = Encoder(n).eval(), torch.randn(B, T, D), []
for _ in range(repeat):
    t0 = time.perf_counter()
    with torch.no_grad(), returnn_capture(dynamic_shapes=({1: "time"},), progress=False) as net:
        model(x)
    times.append(time.perf_counter() - t0)
    net.session.close()
print(json.dumps({"capture_s": min(times[1:] or times), "ops": len(net.parity), "parity_ok": net.parity.ok}))
"""


def capture(package_dir: str, n: int, repeat: int) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", CHILD, package_dir, HERE, str(n), str(repeat)], capture_output=True,
                         text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"capture of {n} blocks with {package_dir} failed:\n{out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["ms_per_op"] = 1000 * r["capture_s"] / max(r["ops"], 1)
    return r


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rev", default="HEAD~1", help="git revision to compare against")
    p.add_argument("--blocks", type=int, nargs="+", default=[4, 8, 32])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3, help="captures per process (the first is a warm-up)")
    p.add_argument("--out", default=default_path("capture_ab"))
    args = p.parse_args()
    sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", args.rev], capture_output=True, text=True,
                         check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="tdr_ab_") as tmp:
        other = os.path.join(tmp, "checkout")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-q", other, sha], check=True)
        try:
            sides = {sha: other, "this": ROOT}
            got = {(s, n): [] for s in sides for n in args.blocks}
            for k in range(args.rounds):
                for n in args.blocks:
                    for side, where in sides.items():
                        got[(side, n)].append(capture(where, n, args.repeat))
                print(f"round {k + 1}/{args.rounds} done", flush=True)
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", other], check=False)
    rows = {}
    print(f"encoder of capture_bench.py; ms per op, best / median of {args.rounds} (each capture in its own process)")
    print(f"{'N':>3} {sha + ' best':>12} {'median':>7} {'this best':>10} {'median':>7} {'this/' + sha:>14} parity")
    for n in args.blocks:
        row = {}
        for side in sides:
            ms = [r["ms_per_op"] for r in got[(side, n)]]
            row[side] = {"best": min(ms), "median": statistics.median(ms), "capture_s": min(
                r["capture_s"] for r in got[(side, n)]), "parity_ok": all(r["parity_ok"] for r in got[(side, n)])}
        rows[str(n)] = row
        a, b = row[sha], row["this"]
        print(f"{n:>3} {a['best']:>12.2f} {a['median']:>7.2f} {b['best']:>10.2f} {b['median']:>7.2f} "
              f"{b['best'] / a['best']:>13.2f}x {'ok' if a['parity_ok'] and b['parity_ok'] else 'FAILED'}")
    lo, hi = str(min(args.blocks)), str(max(args.blocks))
    for side in sides:
        print(f"{side}: {hi} blocks vs {lo}, per op: {rows[hi][side]['best'] / rows[lo][side]['best']:.2f}x (best), "
              f"{rows[hi][side]['median'] / rows[lo][side]['median']:.2f}x (median)")
    if "8" in rows:
        s = rows["8"]["this"]["capture_s"]
        print(f"8 blocks: {s:.2f} s, {PREDECESSOR_8_BLOCKS_S / s:.1f}x faster than pytorch-to-returnn's "
              f"{PREDECESSOR_8_BLOCKS_S} s (issue 11's figure on this machine)")
    write(args.out, {"rev": sha, "rows": rows, "rounds": args.rounds, "repeat": args.repeat})


if __name__ == "__main__":
    main()
