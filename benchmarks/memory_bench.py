"""Memory of a capture: a full-size wav2vec2-base (Hugging Face transformers, default config, random init:
95M parameters) on 2 s of 16 kHz audio, B=1.

Prints the parameter bytes, the resident memory after the imports and the model (the baseline), the peak
resident memory of the capture (with parity), and what the capture adds over the baseline, as a multiple
of the parameter bytes (issue 11's target: at most 2x: the TF variables plus one transient copy).
Results go to benchmarks/results/memory_bench.json; a previous run there is compared against.

    python benchmarks/memory_bench.py [--seconds 2.0]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from results_io import default_path, previous, write

from torchdispatch_returnn import returnn_capture


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # (kB on Linux)


class Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, wave):
        return self.model(wave).last_hidden_state


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--out", default=default_path("memory_bench"))
    args = p.parse_args()
    from transformers import Wav2Vec2Config, Wav2Vec2Model  # (a test extra: tests/zoo/install.sh)

    prev = previous(args.out)
    torch.manual_seed(0)
    model = Encoder(Wav2Vec2Model(Wav2Vec2Config())).eval()
    param_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20
    wave = torch.randn(1, int(16000 * args.seconds))
    with torch.no_grad():
        model(wave)
    base = _rss_mb()
    t0 = time.perf_counter()
    with torch.no_grad(), returnn_capture(dynamic_shapes=({1: "time"},), self_check=False, progress=False) as net:
        model(wave)
    seconds = time.perf_counter() - t0
    peak = _peak_mb()
    row = {"param_mb": param_mb, "baseline_mb": base, "peak_mb": peak, "added_mb": peak - base,
           "added_x_params": (peak - base) / param_mb, "capture_s": seconds, "ops": len(net.parity),
           "layers": len(net.net_dict), "parity_ok": net.parity.ok}
    old = prev.get("added_x_params")
    print(f"wav2vec2-base (random init), {args.seconds:g} s of audio: {row['ops']} ops, {row['layers']} layers, "
          f"capture {seconds:.1f} s, parity {'ok' if row['parity_ok'] else 'FAILED'}")
    print(f"parameters {param_mb:.0f} MB; resident after imports + model {base:.0f} MB; peak {peak:.0f} MB; "
          f"the capture adds {peak - base:.0f} MB = {row['added_x_params']:.2f}x the parameter bytes"
          + (f" (previous run {old:.2f}x)" if old else ""))
    write(args.out, row)


if __name__ == "__main__":
    main()
