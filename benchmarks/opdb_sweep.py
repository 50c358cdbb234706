"""Run PyTorch's operator database (``op_db``) through the public capture API, as a user would.

Each float32 CPU sample becomes an ``nn.Module`` taking the sample's main tensor(s) as inputs (other
tensors closed over), captured with ``returnn_capture()`` and checked: parity at capture, ``net.run``
and a fresh ``ConfigNetwork`` (saved config + checkpoint) against torch. Failures are classified as
unsupported / parity_error / silent_mismatch / crash / input_spec / n/a. A supervisor runs the
samples in a worker process and restarts it after a segfault, abort or hang.

    python benchmarks/opdb_sweep.py [--limit N] [--only RX] [--samples K] [--dynamic] [--args-as-inputs] [--json P]
"""

import argparse
import collections
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib

for _k, _v in (("TF_CPP_MIN_LOG_LEVEL", "3"), ("DISABLE_CUDA", "1")):
    os.environ.setdefault(_k, _v)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils._pytree import tree_flatten, tree_unflatten  # noqa: E402

TAG = "@@OPDB "  # protocol lines on the worker's stdout (RETURNN may print other lines)
HARD_TIMEOUT = 180  # s without output from the worker: it hangs in native code, kill it
STATUSES = ("pass", "partial", "fail", "n/a")
FAMILIES = {  # family -> regex on the op name; first match wins, then the OpInfo class decides
    "random": r"rand|randn|randint|normal|bernoulli|multinomial|cauchy|exponential|geometric|log_normal|uniform|"
              r"native_dropout|.*_lowrank|nn\.functional\.(.*dropout|rrelu|fractional_max_pool)",
    "loss": r"nn\.functional\..*(loss|cross_entropy|kl_div)",
    "pooling": r"nn\.functional\..*pool|max_pool|.*unpool",
    "conv": r"nn\.functional\.conv",
    "norm": r"nn\.functional\..*(norm|normalize)$|native_.*norm|_native_batch_norm|_batch_norm|renorm$",
    "linalg": r"linalg\.|b?mm|mv$|b?add(mm|mv|bmm|r$)|(__r)?matmul|v?dot$|outer|inner|einsum|tensordot|kron|lu|qr$|"
              r"cholesky|svd|pinverse|triangular_solve|matrix_exp|logdet|geqrf|ormqr|cdist|cross$|cov$|corrcoef|trace|"
              r"nn\.functional\.(linear|bilinear|scaled_dot|multi_head|cosine_sim|pairwise|pdist)",
    "special": r"special\.|polygamma|mvlgamma|digamma|lgamma|erf|i0|igamma|sinc|xlogy|logit",
    "fft": r"fft\.|stft",
    "sort": r"sort|argsort|msort|topk|kthvalue|unique|searchsorted|bucketize|(nan)?median|mode$|(nan)?quantile",
    "indexing": r"gather|scatter|index_|_unsafe_masked|take|put$|masked_(fill|scatter|select)|__getitem__|select|"
                r"slice|diagonal_scatter|nonzero|argwhere|where$|isin$|_segment_reduce|histc|histogram|grid_sampler|"
                r"nn\.functional\.(embedding|grid_sample)",
    "reduction": r"masked\.|(nan)?(sum|mean)|prod|a(max|min)|arg(max|min)|(max|min)/reduction|std|var|logsumexp|"
                 r"norm|cum|logcumsumexp|all$|any$|count_nonzero|dist$|(_|log_)?softmax|trapz|trapezoid|"
                 r"torch\.ops\.aten\._safe_softmax|nn\.functional\.softmin",
    "shape/view": r"view|reshape|expand|broadcast|permute|transpose|(un)?squeeze|(un)?flatten|ravel|cat$|clone|"
                  r"(_|unsafe_)?chunk|(column_|[hvd])?stack|([hvd]|tensor_|unsafe_)?split|unbind|flip|rot90|roll|"
                  r"repeat|tile|narrow|movedim|[tTH]$|t_copy|m[TH]$|atleast|diag|tril|triu|as_strided|unfold|resize|"
                  r"contiguous|constant_pad_nd|meshgrid|alias_copy|block_diag|combinations|cartesian_prod|sum_to_size|"
                  r"_upsample|nn\.functional\.(pad|interpolate|upsample|unfold|pixel_|channel_shuffle)",
    "elementwise": r"addcmul|addcdiv|clamp$|lerp|logaddexp2|resolve_|to$|zero_|allclose|equal$|diff$|gradient",
    "activation": r"nn\.functional\.",
}
INFO_FAMILY = {"UnaryUfuncInfo": "elementwise", "BinaryUfuncInfo": "elementwise", "ReductionOpInfo": "reduction",
               "ShapeFuncInfo": "shape/view", "SpectralFuncInfo": "fft"}


def family(op) -> str:
    return next((f for f, rx in FAMILIES.items() if re.match(f"({rx})", op_id(op))),
                INFO_FAMILY.get(type(op).__name__, "other"))


def op_id(op) -> str:
    return op.name + (f"/{op.variant_test_name}" if op.variant_test_name else "")


def select_ops(args):
    from torch.testing._internal.common_methods_invocations import op_db
    ops = [op for op in op_db if not op.name.startswith("_refs") and torch.float32 in op.supported_dtypes("cpu")
           and re.search(args.only, op_id(op))]
    return ops[:args.limit] if args.limit else ops


def emit(**rec):
    print(TAG + json.dumps(rec, default=str), flush=True)


def worker(args) -> None:
    def alarm(signum, frame):
        raise TimeoutError("sample took longer than --timeout")

    signal.signal(signal.SIGALRM, alarm)
    for i, op in enumerate(select_ops(args)[args.start_op:], args.start_op):
        torch.manual_seed(zlib.crc32(op_id(op).encode()))  # same samples after a restart and with --only
        try:
            samples, err = list(op.sample_inputs("cpu", torch.float32, requires_grad=False))[:args.samples], None
        except Exception as e:
            samples, err = [], f"{type(e).__name__}: {first_line(e)}"
        emit(kind="op", op=i, name=op_id(op), family=family(op), n=len(samples), error=err)
        for j in range(args.start_sample if i == args.start_op else 0, len(samples)):
            emit(kind="start", op=i, sample=j)
            signal.alarm(args.timeout)
            try:
                res = run_sample(op, samples[j], args)
            except BaseException as e:
                res = crash_record(e, "sweep")
            finally:
                signal.alarm(0)
            emit(kind="result", op=i, sample=j, **res)


def run_sample(op, sample, args) -> dict:
    from torchdispatch_returnn import InputSpecError, ParityError, UnsupportedOpError, returnn_capture
    from torchdispatch_returnn.export import ConfigNetwork

    x, as_list = sample.input, isinstance(sample.input, (list, tuple))
    main = list(x) if as_list else [x]
    if not main or not all(isinstance(t, torch.Tensor) and t.layout == torch.strided for t in main):
        return {"cls": "n/a", "reason": f"main input is {type(x).__name__}"}
    leaves, spec = tree_flatten((sample.args, sample.kwargs))
    extra = [k for k, v in enumerate(leaves) if args.args_as_inputs and isinstance(v, torch.Tensor)
             and v.is_floating_point() and v.layout == torch.strided]

    class Sample(torch.nn.Module):
        def forward(self, *ts):
            lv = [ts[len(main) + extra.index(k)] if k in extra else v for k, v in enumerate(leaves)]
            a, kw = tree_unflatten(lv, spec)
            return op.op(list(ts[:len(main)]) if as_list else ts[0], *a, **kw)

    inputs = main + [leaves[k] for k in extra]
    module = Sample()
    try:  # twice, with different seeds: a nondeterministic op is only checked for its output shapes
        with torch.no_grad():
            ref, ref2 = (torch.manual_seed(seed) and module(*[t.clone() for t in inputs]) for seed in (0, 1))
    except Exception as e:
        return {"cls": "n/a", "reason": f"torch itself raised {type(e).__name__}: {first_line(e)[:100]}"}
    outs, outs2 = (list(r) if isinstance(r, (list, tuple)) else [r] for r in (ref, ref2))
    if not outs or not all(isinstance(t, torch.Tensor) and t.layout == torch.strided for t in outs):
        return {"cls": "n/a", "reason": f"output is {type(ref).__name__} (not strided tensors)"}
    random = any(a.shape != b.shape or mismatch(to_np(a), to_np(b)) for a, b in zip(outs, outs2))
    sizes = {}  # --dynamic: axis 1 of every input with >= 2 axes; inputs of equal size share the dim
    dyn = tuple({1: sizes.setdefault(t.shape[1], f"time{len(sizes)}")} if t.ndim >= 2 else None
                for t in inputs) if args.dynamic else None
    info = {"shapes": [list(t.shape) for t in inputs]}
    stage, cap, tmp = "capture", None, None
    try:
        cap = returnn_capture(dynamic_shapes=dyn)
        with torch.no_grad(), cap:
            module(*[t.clone() for t in inputs])
        stage = "run"
        got = {"run": cap.run(*inputs)}
        stage, tmp = "save/fresh", tempfile.mkdtemp(prefix="opdb_")
        cap.save_config(os.path.join(tmp, "net.config"))
        cap.save_checkpoint(os.path.join(tmp, "model"))
        fresh = ConfigNetwork(os.path.join(tmp, "net.config"), os.path.join(tmp, "model"))
        try:
            stage = "fresh run"
            got["fresh"] = fresh.run(*inputs)
        finally:
            fresh.close()
    except NotImplementedError as e:  # UnsupportedOpError (no handler), or a handler's documented limit
        no_handler = isinstance(e, UnsupportedOpError) and "no handler for" in str(e)
        return dict(info, cls="unsupported", missing=(e.op or "?") if no_handler else f"[limit] {first_line(e)[:90]}",
                    reason=first_line(e))
    except (ParityError, InputSpecError) as e:
        cls = "parity_error" if isinstance(e, ParityError) else "input_spec"
        return dict(info, cls=cls, reason=first_line(e).split("; first: ")[-1][:300])
    except TimeoutError:
        raise
    except Exception as e:
        return dict(info, **crash_record(e, stage))
    finally:
        if getattr(cap, "session", None) is not None:
            cap.session.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    # torch's random values were fed into the network at the parity check (op_db seeds torch alike for
    # both runs above): the network samples its own, so only shapes can agree; likewise torch.empty's
    random = random or bool(cap.parity.feeds) or any("values are unspecified" in r.note for r in cap.parity)
    for where, val in got.items():
        vals = list(val) if isinstance(val, tuple) else [val]
        if len(vals) != len(outs):
            return dict(info, cls="silent_mismatch", reason=f"{where}: {len(vals)} outputs, torch {len(outs)}")
        for k, (t, v) in enumerate(zip(outs, vals)):
            bad = mismatch(to_np(t), np.asarray(v), shape_only=random)
            if bad:
                return dict(info, cls="silent_mismatch", reason=f"{where} output {k}: {bad}")
    return dict(info, cls="n/a", reason="random or unspecified values (torch's fed or unchecked at the parity "
                                        "check): captured, output shapes match") if random else \
        dict(info, cls="pass")


def to_np(t):
    t = t.detach().resolve_conj().resolve_neg()
    wider = {torch.bfloat16: torch.float32, torch.float16: torch.float32, torch.complex32: torch.complex64}
    return t.to(wider.get(t.dtype, t.dtype)).numpy()


def mismatch(e, g, shape_only: bool = False) -> str | None:
    """Why numpy ``g`` differs from torch's ``e``, or None."""
    if g.shape != e.shape or shape_only:
        return f"shape {g.shape} vs torch {e.shape}" if g.shape != e.shape else None
    if e.dtype.kind in "biu" or g.dtype.kind in "biu":
        if e.dtype.kind != g.dtype.kind and not {e.dtype.kind, g.dtype.kind} <= set("iu"):
            return f"dtype {g.dtype} vs torch {e.dtype}"  # a bool/int result must not come back as float
        return None if np.array_equal(e, g) else f"{int((e != g).sum())}/{e.size} values differ (exact)"
    if (np.isnan(e) != np.isnan(g)).any():
        return f"NaN positions differ ({int(np.isnan(e).sum())} in torch, {int(np.isnan(g).sum())} here)"
    fin = np.abs(e[np.isfinite(e)])
    scale = max(1.0, float(fin.max())) if fin.size else 1.0
    try:
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * scale, equal_nan=True)
    except AssertionError:
        d = np.abs(g.astype(np.complex128) - e.astype(np.complex128))
        return f"max |diff| {np.nanmax(d):.3g} (scale {scale:.3g})"
    return None


def first_line(e) -> str:
    """The first line of an error, with this checkout's path cut from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    return (str(e).strip().splitlines() or [""])[0].replace(root, "")


def crash_record(e: BaseException, stage: str) -> dict:
    """type + first line + where it came from (innermost frame in the package, else innermost frame)."""
    frames = traceback.extract_tb((e.__cause__ or e).__traceback__) or traceback.extract_tb(e.__traceback__)
    f = ([f for f in frames if "torchdispatch_returnn" in f.filename] or frames or [None])[-1]
    where = f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" if f else "?"
    return {"cls": "crash", "stage": stage, "error": type(e).__name__, "reason": first_line(e)[:300], "where": where}


def supervise(args) -> dict:
    """Run the worker, restarting it after the sample it died or hung in."""

    def pump(stream, q: queue.Queue) -> None:
        for ln in stream:
            q.put(ln)
        q.put(None)

    ops, results, op_start, pos = {}, {}, time.time(), (0, 0)
    log = open(os.path.join(tempfile.gettempdir(), "opdb_sweep_worker.log"), "w")  # the worker's stderr
    while pos is not None:
        cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--worker", f"--start-op={pos[0]}",
               f"--start-sample={pos[1]}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=pump, args=(proc.stdout, lines), daemon=True).start()
        current, pos = None, None
        while True:
            try:
                ln, died = lines.get(timeout=HARD_TIMEOUT), None
            except queue.Empty:  # hung in native code, where SIGALRM cannot interrupt it
                os.killpg(proc.pid, signal.SIGKILL)
                ln, died = None, f"killed after no output for {HARD_TIMEOUT} s"
            if ln is None:
                proc.wait()
                if current is not None:  # died inside a sample: record it, go on after it
                    why = died or f"worker died with exit code {proc.returncode}"
                    results[current] = {"cls": "crash", "stage": "worker", "error": "WorkerDied", "reason": why,
                                        "where": "native code (TF/torch) or hang"}
                    print(f"  {ops[current[0]]['name']} sample {current[1]}: {why}", flush=True)
                    pos = (current[0], current[1] + 1)
                break
            if not ln.startswith(TAG):
                continue
            rec = json.loads(ln[len(TAG):])
            kind, key = rec.pop("kind"), (rec.pop("op", None), rec.pop("sample", None))
            if kind == "op":
                ops[key[0]] = rec
                if key[0] % 25 == 0:
                    print(f"[{time.time() - op_start:7.0f} s] op {key[0]}: {rec['name']}", flush=True)
            elif kind == "result":
                results[key] = rec
            current = key if kind == "start" else None
    log.close()
    return {"ops": ops, "results": results, "seconds": time.time() - op_start}


def summarize(data: dict, args) -> dict:
    ops, results = data["ops"], data["results"]
    per_op, by_family = [], collections.defaultdict(collections.Counter)
    classes, missing, limits = collections.Counter(), collections.Counter(), collections.Counter()
    for i in sorted(ops):
        o = ops[i]
        samples = [dict(_relative(results.get((i, j), {"cls": "crash", "reason": "no result"})), index=j)
                   for j in range(o["n"])]
        real = [s for s in samples if s["cls"] != "n/a"]
        n_pass = sum(s["cls"] == "pass" for s in real)
        status = ("n/a" if not real else "pass" if n_pass == len(real) else "partial" if n_pass else "fail")
        per_op.append({"name": o["name"], "family": o["family"], "status": status, "samples": samples,
                       **({"sample_error": o["error"]} if o.get("error") else {})})
        by_family[o["family"]][status] += 1
        for s in samples:
            classes[s["cls"]] += 1
            if s["cls"] == "unsupported":
                (limits if s["missing"].startswith("[limit]") else missing)[s["missing"]] += 1
    totals = {"opinfos": len(per_op), **collections.Counter(p["status"] for p in per_op)}
    return {"config": vars(args), "seconds": data["seconds"], "totals": totals,
            "families": {f: dict(c) for f, c in by_family.items()}, "classes": dict(classes),
            "missing": missing.most_common(), "limits": limits.most_common(), "ops": per_op}


def _relative(rec: dict) -> dict:
    """``rec`` with this checkout's path cut from its texts (file:line of the sweep's own call)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    return {k: v.replace(root, "") if isinstance(v, str) else v for k, v in rec.items()}


def report(s: dict, top: int = 40) -> None:
    t = s["totals"]
    print(f"\nOpInfos considered: {t['opinfos']}  " + "  ".join(f"{k} {t.get(k, 0)}" for k in STATUSES)
          + f"   ({s['seconds'] / 60:.1f} min)")
    print(f"\n{'family':12s}   ops  pass  part  fail   n/a")
    for f, c in sorted(s["families"].items(), key=lambda kv: -sum(kv[1].values())):
        print(f"{f:12s} {sum(c.values()):5d}" + "".join(f"{c.get(k, 0):6d}" for k in STATUSES))
    print("\nsamples by class: " + ", ".join(f"{k} {v}" for k, v in collections.Counter(s["classes"]).most_common()))
    for title, rows in ((f"top {top} missing torch callables", s["missing"][:top]),
                        ("handler limits hit (NotImplementedError)", s["limits"])):
        print(f"\n{title}:\n" + "\n".join(f"  {n:4d}  {name}" for name, n in rows))
    for cls in ("silent_mismatch", "parity_error", "input_spec", "crash"):
        rows = [(p["name"], x) for p in s["ops"] for x in p["samples"] if x["cls"] == cls]
        print(f"\n{cls} ({len(rows)}):")
        for name, x in rows:
            extra = f" [{x.get('stage')}] {x.get('error')} @ {x.get('where')}:" if cls == "crash" else ""
            print(f"  {name} #{x['index']}{extra} {x.get('reason', '')[:200]}  shapes={x.get('shapes')}")
    groups = collections.defaultdict(list)
    for name, x in rows:  # the crashes, grouped by cause with numbers and quoted names blanked out
        reason = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", x.get("reason", ""))[:160]
        groups[f"[{x.get('stage')}] {x.get('error')} @ {x.get('where')}: {reason}"].append(f"{name}#{x['index']}")
    print("\ncrash signatures:")
    for sig, where in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(where):3d}  {sig}\n         {' '.join(where[:12])}{' ...' if len(where) > 12 else ''}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=0, help="only the first N OpInfos")
    p.add_argument("--only", default="", help="only OpInfos whose name/variant matches this regex")
    p.add_argument("--samples", type=int, default=4, help="samples per OpInfo")
    p.add_argument("--dynamic", action="store_true", help="mark axis 1 of inputs with >= 2 axes dynamic")
    p.add_argument("--args-as-inputs", action="store_true", help="float tensors in args/kwargs become inputs too")
    p.add_argument("--timeout", type=int, default=30, help="seconds per sample (SIGALRM)")
    p.add_argument("--json", default="", help="write all results here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start-op", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--start-sample", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    summary = summarize(supervise(args), args)
    report(summary)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1, default=str)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
