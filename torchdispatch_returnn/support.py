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


def support_markdown() -> str:
    """SUPPORTED.md: the table plus coverage of torch's overridable functions."""
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
        "| torch callable | family | handler |",
        "|---|---|---|",
    ]
    lines += [f"| `{t}` | {fam} | `{loc}` |" for t, fam, loc in rows]
    return "\n".join(lines) + "\n"
