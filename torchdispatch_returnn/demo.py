"""The bundled example: a small speech-style encoder (conv frontend + pre-LN transformer blocks)
written in plain PyTorch, and ``python -m torchdispatch_returnn demo`` that converts it."""

from __future__ import annotations

import argparse
import logging
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .capture import returnn_capture
from .runtime import ConfigNetwork

logger = logging.getLogger(__name__)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        h = self.heads

        def split(y):
            return y.view(b, t, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // h)
        ctx = torch.softmax(scores, dim=-1) @ v
        return self.out(ctx.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + ff(ln(x)) with GELU."""

    def __init__(self, dim: int, heads: int, ff_dim: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(0.1), nn.Linear(ff_dim, dim))

    def forward(self, x):
        x = x + self.self_attn(self.ln1(x))
        return x + self.ff(self.ln2(x))


class Encoder(nn.Module):
    """(B, T, F) features -> conv subsampling (T/2) -> transformer blocks -> (B, T', dim)."""

    def __init__(self, in_dim: int = 40, dim: int = 64, heads: int = 4, ff_dim: int = 128, num_blocks: int = 2,
                 frontend: bool = True):
        super().__init__()
        self.frontend = nn.Conv1d(in_dim, dim, 3, stride=2, padding=1) if frontend else nn.Linear(in_dim, dim)
        self.layers = nn.ModuleList([Block(dim, heads, ff_dim) for _ in range(num_blocks)])
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, x):
        if isinstance(self.frontend, nn.Conv1d):
            x = F.relu(self.frontend(x.transpose(1, 2))).transpose(1, 2)
        else:
            x = self.frontend(x)
        for layer in self.layers:
            x = layer(x)
        return self.final_norm(x)


def run_demo(out_dir: str = "out/demo", batch: int = 3, time_steps: int = 50, other_time: int = 77) -> int:
    """Convert the demo encoder, print a summary, write config + checkpoint, check them."""
    torch.manual_seed(0)
    model = Encoder().eval()
    x = torch.randn(batch, time_steps, 40)
    t0 = time.perf_counter()
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        y = model(x)
    t_capture = time.perf_counter() - t0
    cfg = net.save_config(os.path.join(out_dir, "encoder.config"))
    ckpt = net.save_checkpoint(os.path.join(out_dir, "encoder"))
    classes = {}
    for d in net.net_dict.values():
        classes[d["class"]] = classes.get(d["class"], 0) + 1
    print(f"model: demo Encoder, {sum(p.numel() for p in model.parameters())} parameters, input {tuple(x.shape)} "
          f"(time dynamic), output {tuple(y.shape)}")
    print(f"captured {len(net.parity)} ops into {len(net.net_dict)} RETURNN layers in {t_capture:.2f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(classes.items(), key=lambda kv: -kv[1])))
    print(f"parameters: {len(net.param_map)} torch tensors -> TF variables (e.g. "
          f"{next(iter(net.param_map))} -> {next(iter(net.param_map.values()))['tf_vars'][0]})")
    print(f"parity: {'OK' if net.parity.ok else 'FAILED'} - {len(net.parity)} ops checked, max abs diff "
          f"{max(r.max_abs_diff for r in net.parity if r.max_abs_diff is not None):.2e}")
    fresh = ConfigNetwork(cfg, ckpt)
    x2 = torch.randn(batch, other_time, 40)
    with torch.no_grad():
        ref = model(x2).numpy()
    got = fresh.run(x2)
    diff = float(abs(got - ref).max())
    fresh.close()
    print(f"fresh network from the written config + checkpoint at time={other_time}: output {got.shape}, "
          f"max abs diff vs torch {diff:.2e}")
    print(f"config:     {cfg}\ncheckpoint: {ckpt}.index (+ .data, .meta)")
    ok = net.parity.ok and diff < 1e-4
    print("demo: OK" if ok else "demo: FAILED")
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m torchdispatch_returnn demo")
    p.add_argument("--out", default="out/demo", help="where to write the config and checkpoint")
    p.add_argument("--time", type=int, default=50)
    args = p.parse_args(argv)
    return run_demo(args.out, time_steps=args.time)
