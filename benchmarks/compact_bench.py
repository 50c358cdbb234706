"""How compact the written networks are: RETURNN layers per captured op, dims declared, variable layers.

Models: the benchmark encoder of capture_bench.py (8 pre-LN blocks, D=256) and torchaudio's Conformer
(12 blocks, D=256, 4 heads, FF 1024, depthwise kernel 31), random init, B=3, T=50, time dynamic.
Prints, per model: captured ops, layers, layers/op, dims declared in the config, variable and copy
layers, the layer classes, the names of the declared dims, and the change against the previous run
(benchmarks/results/compact_bench.json).
The figures of the issue (before this work) were 3.6 layers/op (encoder) and 3.0 (Conformer).

    python benchmarks/compact_bench.py [--out FILE]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from capture_bench import B, D, Encoder, T
from results_io import default_path, previous, write

from torchdispatch_returnn import returnn_capture

BEFORE = {"encoder8": 3.6, "conformer12": 3.0}  # layers per op quoted in the issue


def _conformer():
    try:
        from torchaudio.models import Conformer
    except ImportError:  # (torchaudio is a test extra: tests/zoo/install.sh)
        return None

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conformer = Conformer(input_dim=D, num_heads=4, ffn_dim=4 * D, num_layers=12,
                                       depthwise_conv_kernel_size=31)

        def forward(self, x, lengths):
            return self.conformer(x, lengths)[0]

    return Wrapped()


def measure(name: str, model: torch.nn.Module, args: tuple, dyn: tuple, lengths: dict | None) -> dict:
    with torch.no_grad(), returnn_capture(dynamic_shapes=dyn, lengths=lengths, self_check=False, progress=False) as net:
        model(*args)
    classes = collections.Counter(d["class"] for d in net.net_dict.values())
    # ops: each tensor result the parity check compares, and each op that computed one of them again (the layer
    # of the first is reused: a mask each block makes anew)
    reused = sum(net.builder.shared.values())
    declared = net.dims.declarations(net.net_dict, net.extern_data)  # (the dims of the written config)
    row = {"ops": len(net.parity) + reused, "reused": reused, "layers": len(net.net_dict),
           "dims": len(declared),
           "variables": classes.get("variable", 0), "copies": classes.get("copy", 0), "parity_ok": net.parity.ok,
           "classes": dict(classes.most_common()),
           "dim_names": [line.split("name=")[1].split("'")[1] for line in declared]}
    row["layers_per_op"] = row["layers"] / max(row["ops"], 1)
    net.session.close()
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=default_path("compact_bench"))
    args = p.parse_args()
    prev = previous(args.out).get("rows", {})
    torch.manual_seed(0)
    x = torch.randn(B, T, D)
    models = {"encoder8": (Encoder(8).eval(), (x,), ({1: "time"},), None)}
    conformer = _conformer()
    if conformer is not None:
        lengths = torch.tensor([T, T - 10, T - 20])
        # (the lengths argument tied to time, as a user would: the padding mask then follows each length)
        models["conformer12"] = (conformer.eval(), (x, lengths), ({1: "time"}, None), {"lengths": "time"})
    rows = {}
    print(f"{'model':<12} {'ops':>5} {'layers':>6} {'layers/op':>9} {'before':>6} {'prev':>6} {'dims':>5} "
          f"{'variables':>9} {'copies':>6} parity")
    for name, (model, xs, dyn, lengths) in models.items():
        r = rows[name] = measure(name, model, xs, dyn, lengths)
        old = prev.get(name, {}).get("layers_per_op")
        print(f"{name:<12} {r['ops']:>5} {r['layers']:>6} {r['layers_per_op']:>9.2f} {BEFORE[name]:>6.1f} "
              f"{old if old is None else round(old, 2)!s:>6} {r['dims']:>5} {r['variables']:>9} {r['copies']:>6} "
              f"{'ok' if r['parity_ok'] else 'FAILED'}")
        print(f"{'':<12} ops whose layer is an earlier op's (the same computation again): {r['reused']}")
        print(f"{'':<12} layer classes: {', '.join(f'{k} {v}' for k, v in r['classes'].items())}")
        print(f"{'':<12} dims: {', '.join(r['dim_names'])}")
    write(args.out, {"rows": rows, "torch": torch.__version__})


if __name__ == "__main__":
    main()
