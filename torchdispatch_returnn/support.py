"""The support table, generated from the handler registry (``python -m torchdispatch_returnn support``)."""

from __future__ import annotations

import os

import torch

from .handlers.registry import all_handlers, target_name


def support_rows() -> list[tuple[str, str, str]]:
    """(torch target, handler family, handler file:line) for every registered target, sorted."""
    root = os.path.dirname(os.path.abspath(__file__))
    rows = []
    for target, h in all_handlers().items():
        rel = os.path.relpath(h.file, os.path.dirname(root))
        family = os.path.splitext(os.path.basename(h.file))[0]
        rows.append((target_name(target), family, f"{rel}:{h.line}"))
    return sorted(set(rows))


def support_markdown(sweep: dict | None = None) -> str:
    """SUPPORTED.md: the table plus coverage of torch's overridable functions; ``sweep``: the summary
    written by ``benchmarks/opdb_sweep.py --json`` (its totals go next to the registry counts)."""
    rows = support_rows()
    overridable = set()
    for funcs in torch.overrides.get_overridable_functions().values():
        overridable.update(funcs)
    handled = set(all_handlers())
    n_cov = len(overridable & handled)
    lines = [
        "# Supported torch callables",
        "",
        "Generated from the handler registry by `python -m torchdispatch_returnn support`; do not edit.",
        "",
        f"{len(rows)} registered targets ({len({r[2] for r in rows})} handlers); {n_cov} of torch "
        f"{torch.__version__.split('+')[0]}'s {len(overridable)} overridable functions.",
        "Metadata queries (shape, size, dim, dtype, device, ...) run in torch and build no layer.",
        "",
        *(sweep_markdown(sweep) if sweep else []),
        "| torch callable | family | handler |",
        "|---|---|---|",
    ]
    lines += [f"| `{t}` | {fam} | `{loc}` |" for t, fam, loc in rows]
    return "\n".join(lines) + "\n"


def sweep_markdown(sweep: dict) -> list[str]:
    """The op_db sweep's totals and families as Markdown lines."""
    t, cfg = sweep["totals"], sweep.get("config", {})
    opts = " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in cfg.items()
                    if k in ("samples", "dynamic", "args_as_inputs") and v)
    lines = ["## PyTorch's operator database (`op_db`)", "",
             f"`python benchmarks/opdb_sweep.py {opts}`: {t['opinfos']} float32 OpInfos; **{t.get('pass', 0)} pass** "
             f"(every sample: parity at capture, `net.run` and the network rebuilt from the written config agree "
             f"with torch), {t.get('partial', 0)} partially, {t.get('fail', 0)} fail, {t.get('n/a', 0)} n/a "
             "(no tensor input, or random or unspecified values: only shapes compared). Samples: "
             + ", ".join(f"{k} {v}" for k, v in sweep.get("classes", {}).items()) + ".",
             "", "| family | OpInfos | pass | partial | fail | n/a |", "|---|---|---|---|---|---|"]
    for fam, c in sorted(sweep["families"].items(), key=lambda kv: -sum(kv[1].values())):
        lines.append(f"| {fam} | {sum(c.values())} | " + " | ".join(str(c.get(k, 0)) for k in
                                                                     ("pass", "partial", "fail", "n/a")) + " |")
    return lines + [""]
