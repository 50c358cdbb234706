"""The parity report as HTML: ``net.parity.to_html(path)`` (one self-contained page: inline CSS and
JS, no external links) and the compact view notebooks show for ``net.parity`` and ``net``.

The page holds the summary (ops agreeing / failed / unchecked / fed with torch's random values,
tolerances, the layers fed, self-checks, gradient checks, size decisions), the ops in a tree by
module path (``<details>``), each with its status, torch op, max abs and rel diff, RETURNN layer and
the user's ``file:line``, and the slowest ops.
All text is escaped. The report is read through its attributes only (no import of :mod:`.parity`).
"""

from __future__ import annotations

import html
from typing import Any

#: how many ops the "slowest ops" section lists
SLOWEST = 15

_CSS = """
.tdr { font-family: system-ui, sans-serif; font-size: 13px; color: #222; }
.tdr h1 { font-size: 18px; margin: 4px 0; } .tdr h2 { font-size: 15px; margin: 14px 0 4px; }
.tdr .tdr-summary { font-size: 14px; padding: 6px 8px; border-radius: 4px; margin: 4px 0; }
.tdr .tdr-summary.tdr-ok { background: #e3f6e3; } .tdr .tdr-summary.tdr-failed { background: #fbe0e0; }
.tdr ul.tdr-checks { margin: 4px 0; padding-left: 18px; }
.tdr .tdr-v-ok { color: #17752a; font-weight: bold; } .tdr .tdr-v-failed { color: #b3001b; font-weight: bold; }
.tdr .tdr-v-skipped { color: #8a6d00; font-weight: bold; }
.tdr table { border-collapse: collapse; margin: 2px 0 6px; }
.tdr th, .tdr td { border: 1px solid #ddd; padding: 1px 6px; text-align: left; vertical-align: top; }
.tdr th { background: #f3f3f3; } .tdr td.tdr-num { text-align: right; font-family: monospace; }
.tdr td.tdr-code { font-family: monospace; }
.tdr tr.tdr-ok td.tdr-st { background: #c8ecc8; } .tdr tr.tdr-failed td { background: #fbd3d3; }
.tdr tr.tdr-failed td.tdr-st { background: #e45c5c; color: #fff; font-weight: bold; }
.tdr tr.tdr-unchecked td.tdr-st { background: #f3e2a9; } .tdr tr.tdr-fed td.tdr-st { background: #d6e4f5; }
.tdr details { margin-left: 14px; } .tdr summary { cursor: pointer; }
.tdr .tdr-mod { font-family: monospace; font-weight: bold; } .tdr .tdr-count { color: #666; }
.tdr .tdr-bad { color: #b3001b; font-weight: bold; } .tdr .tdr-unc { color: #8a6d00; }
.tdr.tdr-only-problems tr.tdr-ok { display: none; }
.tdr .tdr-note { color: #666; }
"""

_JS = """
function tdrAll(open) { document.querySelectorAll('.tdr details').forEach(function (d) { d.open = open; }); }
function tdrProblems(on) { document.querySelector('.tdr').classList.toggle('tdr-only-problems', on); }
"""

_HEAD = ("<tr><th>status</th><th>torch op</th><th>max abs diff</th><th>max rel diff</th><th>RETURNN layer</th>"
         "<th>source</th><th>note</th></tr>")


def esc(value: Any) -> str:
    """``value`` as escaped HTML text."""
    return html.escape(str(value), quote=True)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.2f}"


def _verdict(ok: bool | None, words: tuple = ("OK", "FAILED", "skipped")) -> str:
    cls, word = {True: ("ok", words[0]), False: ("failed", words[1]), None: ("skipped", words[2])}[ok]
    return f'<span class="tdr-v-{cls}">{esc(word)}</span>'


def summary_html(report: Any) -> str:
    """The verdict line and the list of self-checks, gradient checks and size decisions."""
    recs = list(report.records)
    n_fail = sum(r.ok is False for r in recs)
    n_fed = sum(r.ok is None and getattr(r, "fed", False) for r in recs)
    n_unc = sum(r.ok is None for r in recs) - n_fed
    feeds = list(getattr(report, "feeds", ()))
    cls = "ok" if report.ok else "failed"
    out = [f'<p class="tdr-summary tdr-{cls}"><b>parity {"OK" if report.ok else "FAILED"}</b> &mdash; '
           f"{len(recs)} ops: {len(recs) - n_fail - n_unc - n_fed} ok, "
           f'<span class="{"tdr-bad" if n_fail else ""}">{n_fail} failed</span>, {n_unc} unchecked'
           f"{f', {n_fed} fed' if feeds else ''}; "
           f"atol={esc(f'{report.atol:g}')}, rtol={esc(f'{report.rtol:g}')}; "
           f"{len(report.self_checks)} self-check(s), {len(report.grads)} gradient check(s), "
           f"{len(report.guards)} size decision(s)</p>"]
    items = [f"<li>{esc('random values: torch' + chr(39) + f's fed into {len(feeds)} layer(s)')} (<span "
             f"class=\"tdr-code\">{esc(', '.join(f.layer for f in feeds))}</span>): the ops after them are "
             "compared exactly; the network and the written config sample their own</li>"] if feeds else []
    for c in report.self_checks:
        detail = f": {c.detail}" if c.detail else ""
        items.append(f"<li>self-check at {esc(c.what)}: {_verdict(c.ok)} ({c.compared} ops){esc(detail)}</li>")
    if report.grads:
        bad = [g for g in report.grads if g.ok is False]
        done = [g for g in report.grads if g.ok is not None]
        sub = "".join(f"<li>{esc(g.name)}: {_verdict(g.ok)}"
                      f"{esc(f' max abs diff {g.max_abs_diff:.3g}') if g.ok is not None else ''}"
                      f"{esc(' ' + g.detail) if g.detail else ''}</li>" for g in report.grads)
        items.append(f"<li>gradients: {_verdict(not bad)} ({len(done) - len(bad)}/{len(done)} checked)"
                     f"<details><summary>each gradient</summary><ul>{sub}</ul></details></li>")
    for site, text in report.guards.items():
        items.append(f'<li>size decision (guard) at <span class="tdr-code">{esc(site)}</span>: {esc(text)}</li>')
    if items:
        out.append(f'<ul class="tdr-checks">{"".join(items)}</ul>')
    return "".join(out)


def row_html(r: Any) -> str:
    """One op as a table row, coloured by its status."""
    return (f'<tr class="tdr-{r.status}"><td class="tdr-st">{r.status}</td><td class="tdr-code">{esc(r.torch_op)}</td>'
            f'<td class="tdr-num">{_num(r.max_abs_diff)}</td><td class="tdr-num">{_num(r.max_rel_diff)}</td>'
            f'<td class="tdr-code">{esc(r.layer)}</td><td class="tdr-code">{esc(r.location)}</td>'
            f'<td class="tdr-note">{esc(r.note)}</td></tr>')


def _table(rows: list) -> str:
    return f"<table>{_HEAD}{''.join(row_html(r) for r in rows)}</table>" if rows else ""


class _Node:
    """A module of the tree: its own records and its submodules (in order of first appearance)."""

    def __init__(self, name: str, path: str):
        self.name, self.path = name, path
        self.records: list = []
        self.children: dict[str, _Node] = {}

    def all_records(self) -> list:
        return self.records + [r for c in self.children.values() for r in c.all_records()]


def module_tree(records: list) -> _Node:
    """The records by module path (``a.b.c``: module ``c`` in ``b`` in ``a``)."""
    root = _Node("<root>", "")
    for r in records:
        node = root
        parts = r.module_path.split(".") if r.module_path else []
        for i, part in enumerate(parts):
            node = node.children.setdefault(part, _Node(part, ".".join(parts[:i + 1])))
        node.records.append(r)
    return root


def tree_html(node: _Node, is_root: bool = True) -> str:
    """A module as ``<details>`` (open for the root and where an op failed): its ops, then its submodules."""
    recs = node.all_records()
    n_fail = sum(r.ok is False for r in recs)
    n_fed = sum(r.ok is None and getattr(r, "fed", False) for r in recs)
    n_unc = sum(r.ok is None for r in recs) - n_fed
    counts = f'<span class="tdr-count">{len(recs)} op{"s" if len(recs) != 1 else ""}</span>'
    if n_fail:
        counts += f' <span class="tdr-bad">{n_fail} failed</span>'
    if n_unc:
        counts += f' <span class="tdr-unc">{n_unc} unchecked</span>'
    if n_fed:
        counts += f' <span class="tdr-count">{n_fed} fed</span>'
    is_open = " open" if n_fail or is_root else ""
    inner = _table(node.records) + "".join(tree_html(c, False) for c in node.children.values())
    return (f'<details{is_open}><summary><span class="tdr-mod" title="{esc(node.path or "<root>")}">{esc(node.name)}'
            f"</span> {counts}</summary>{inner}</details>")


def slowest_html(records: list, n: int = SLOWEST) -> str:
    """The ``n`` ops that took longest to convert (handler time + construction of their layer)."""
    timed = [r for r in records if r.seconds is not None or r.build_seconds is not None]
    total = lambda r: (r.seconds or 0.0) + (r.build_seconds or 0.0)
    timed.sort(key=total, reverse=True)
    explain = ("<p>Capture-side time per op, in ms. <b>handler</b>: the op's handler converting it while the block "
               "ran (torch's own run of the op excluded; the records of one op call share it). <b>layer "
               "construction</b>: RETURNN constructing the op's result layer in the TFNetwork when the block ended "
               "(TF graph building; other layers the op made are not counted). Running the network is not included: "
               "the parity fetch is one TF run for all ops.</p>")
    if not timed:
        return explain + "<p>No timings recorded.</p>"
    sums = (f"<p>Sum over all ops: handlers {sum(r.seconds or 0.0 for r in records):.3f} s, layer construction "
            f"{sum(r.build_seconds or 0.0 for r in records):.3f} s.</p>")
    rows = "".join(f'<tr class="tdr-{r.status}"><td class="tdr-num">{_ms(total(r))}</td>'
                   f'<td class="tdr-num">{_ms(r.seconds)}</td><td class="tdr-num">{_ms(r.build_seconds)}</td>'
                   f'<td class="tdr-code">{esc(r.torch_op)}</td><td class="tdr-code">{esc(r.layer)}</td>'
                   f'<td class="tdr-code">{esc(r.module_path or "<root>")}</td>'
                   f'<td class="tdr-code">{esc(r.location)}</td></tr>' for r in timed[:n])
    return (explain + sums + "<table><tr><th>total ms</th><th>handler ms</th><th>layer construction ms</th>"
            f"<th>torch op</th><th>RETURNN layer</th><th>module</th><th>source</th></tr>{rows}</table>")


def report_html(report: Any, title: str = "torchdispatch_returnn parity report", compact: bool = False) -> str:
    """The report as HTML: a whole page, or (``compact``) a ``<div>`` for notebooks with the summary,
    the failing and unchecked ops and the collapsed module tree."""
    recs = list(report.records)
    tree = tree_html(module_tree(recs))
    if compact:
        problems = [r for r in recs if r.ok is not True]
        body = (f"<div class=\"tdr\"><style>{_CSS}</style><b>{esc(title)}</b>{summary_html(report)}"
                + (f"<h2>Failing and unchecked ops</h2>{_table(problems)}" if problems else "")
                + f"<details><summary>ops by module</summary>{tree}</details></div>")
        return body
    controls = ('<p><button onclick="tdrAll(true)">expand all</button> <button onclick="tdrAll(false)">collapse all'
                '</button> <label><input type="checkbox" onchange="tdrProblems(this.checked)"> only failing and '
                "unchecked ops</label></p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{_CSS}</style></head><body><div class=\"tdr\"><h1>{esc(title)}</h1>{summary_html(report)}"
            f"<h2>Ops by module</h2>{controls}{tree}<h2>Slowest ops</h2>{slowest_html(recs)}</div>"
            f"<script>{_JS}</script></body></html>\n")


def capture_html(capture: Any) -> str:
    """The notebook view of a capture (``net``): its layer count and the compact parity report."""
    report = getattr(capture, "parity", None)
    if report is None:
        return '<div class="tdr"><b>returnn_capture</b>: not finished (no parity report yet)</div>'
    return report_html(report, title=f"returnn_capture: {len(capture.net_dict)} RETURNN layers", compact=True)
