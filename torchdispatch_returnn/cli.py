"""The command line: ``torchdispatch-returnn`` / ``python -m torchdispatch_returnn``.

Commands: ``convert`` (a model factory -> config, checkpoint, param_map.json, parity report),
``convert-checkpoint`` (new torch weights for a converted network), ``demo``, ``support``.
Exit codes: 0 success, 1 parity failure, 2 unsupported ops, 3 bad arguments, 4 other conversion errors.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch

from . import __version__
from .capture import returnn_capture
from .checkpoint import CheckpointMismatchError, StateDictFileError, convert_checkpoint, load_state_dict, unwrap_keys
from .demo import run_demo
from .errors import CaptureError, InputSpecError, ParityError, UnsupportedOpError
from .support import support_markdown

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_PARITY, EXIT_UNSUPPORTED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3, 4
EXIT_CODES = """exit codes:
  0  success
  1  parity failure: the network and PyTorch disagree (see parity.html / the printed report)
  2  ops without conversion (with --no-strict all of them are listed)
  3  bad arguments (also: the factory or the model's forward failed on the given inputs)
  4  other conversion errors"""


class UsageError(Exception):
    """Bad command line arguments (exit code 3)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors raise (exit code 3 with a one-line message) instead of exiting with 2."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="torchdispatch-returnn", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Convert PyTorch models to RETURNN networks (config + TF checkpoint) with per-op parity.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser("convert", help="convert a model given by a factory", epilog=EXIT_CODES,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Build the model with FACTORY (called without arguments; it returns an nn.Module),\n"
                                   "run it once on random float32 inputs inside returnn_capture and write\n"
                                   "DIR/returnn.config, DIR/model (TF checkpoint), DIR/param_map.json and\n"
                                   "DIR/parity.html.")
    c.add_argument("factory", metavar="FILE.py:FACTORY|pkg.module:FACTORY",
                   help="where the model comes from, e.g. models/enc.py:build or mypkg.models:Encoder")
    c.add_argument("--shape", action="append", default=[], metavar="3,50,80",
                   help="the shape of one forward argument (repeat once per argument, in order)")
    c.add_argument("--dynamic", action="append", default=[], metavar="1=time",
                   help="the dynamic axes of one argument, in order: AXIS=NAME pairs separated by commas "
                        "(1=time,2=freq); '' or - for an argument without dynamic axes; 0=batch by default")
    c.add_argument("--state-dict", metavar="FILE", help="weights loaded into the module before the capture "
                   "(torch.load weights_only; a training checkpoint's 'state_dict'/'model' entry works too)")
    c.add_argument("--subnetwork", metavar="NAME", help="write the network as subnetwork NAME of the config")
    c.add_argument("--nested", action="store_true", help="each module call as a RETURNN subnetwork (variables "
                   "named like blocks.0/att/q/W)")
    c.add_argument("--out", metavar="DIR", default="returnn_out", help="output directory (default: %(default)s)")
    c.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True,
                   help="stop at the first op without conversion (default); --no-strict lists all of them")
    c.add_argument("--seed", type=int, default=0, help="torch seed for the factory and the inputs (%(default)s)")
    c.add_argument("--atol", type=float, default=1e-5, help="parity tolerance (%(default)g)")
    c.add_argument("--rtol", type=float, default=1e-5, help="parity tolerance (%(default)g)")

    k = sub.add_parser("convert-checkpoint", help="new torch weights for a converted network",
                       description="Write a TF checkpoint from a state_dict and the param_map.json of a conversion "
                                   "(the config beside it gives the expected shapes).")
    k.add_argument("state_dict", metavar="STATE_DICT", help="a torch file (torch.load weights_only)")
    k.add_argument("--param-map", required=True, metavar="FILE", help="param_map.json of the conversion")
    k.add_argument("--out", required=True, metavar="PREFIX", help="checkpoint prefix (writes PREFIX.index, ...)")
    k.add_argument("--config", metavar="FILE", help="the converted config (default: the one beside --param-map)")
    k.add_argument("--allow-extra", action="store_true", help="ignore state_dict keys the network does not use")

    d = sub.add_parser("demo", help="convert the bundled small encoder",
                       description="Convert the bundled encoder (conv frontend + transformer blocks), print a "
                                   "summary and the parity verdict, write the config and checkpoint.")
    d.add_argument("--out", default="out/demo", help="where to write the config and checkpoint (%(default)s)")
    d.add_argument("--time", type=int, default=50, help="the capture's sequence length (%(default)s)")

    s = sub.add_parser("support", help="the table of supported torch callables (SUPPORTED.md)",
                       description="Print the generated table of supported torch callables, or write it to FILE.")
    s.add_argument("--out", metavar="FILE", help="write the table to FILE instead of printing it")
    s.add_argument("--sweep", metavar="JSON", help="add the totals of an op_db sweep (written by "
                                                  "benchmarks/opdb_sweep.py --json JSON)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else EXIT_USAGE
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE


# ---------------------------------------------------------------------------------------------- convert
def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UsageError(f"bad --shape {text!r}: expected comma-separated sizes like 3,50,80") from None
    if not shape or any(s <= 0 for s in shape):
        raise UsageError(f"bad --shape {text!r}: expected positive sizes like 3,50,80")
    return shape


def parse_dynamic(text: str, shape: tuple[int, ...], index: int) -> dict[int, str] | None:
    text = text.strip()
    if text in ("", "-"):
        return None
    out: dict[int, str] = {}
    for pair in text.split(","):
        axis, sep, name = pair.partition("=")
        name = name.strip()
        try:
            ax = int(axis)
        except ValueError:
            ax = None
        if not sep or ax is None or not name:
            raise UsageError(f"bad --dynamic {text!r}: expected AXIS=NAME pairs like 1=time,2=freq")
        if not -len(shape) <= ax < len(shape):
            raise UsageError(f"bad --dynamic {text!r}: axis {ax} is out of range for input {index} "
                             f"of shape {','.join(map(str, shape))}")
        ax %= len(shape)
        if ax in out:
            raise UsageError(f"bad --dynamic {text!r}: axis {ax} given twice")
        out[ax] = name
    return out


def _load_target(spec: str) -> tuple[Any, str]:
    """The object FACTORY names in ``FILE.py:FACTORY`` or ``pkg.module:FACTORY``."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise UsageError(f"bad model {spec!r}: expected FILE.py:FACTORY or pkg.module:FACTORY")
    if where.endswith(".py") or os.sep in where or os.path.isfile(where):
        if not os.path.isfile(where):
            raise UsageError(f"bad model {spec!r}: no such file {where}")
        path = os.path.abspath(where)
        name = "_tdr_model_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        if os.path.dirname(path) not in sys.path:  # the file's sibling modules can be imported
            sys.path.insert(0, os.path.dirname(path))
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            raise UsageError(f"loading {where} failed: {type(e).__name__}: {_first_line(e)}") from e
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:
            raise UsageError(f"cannot import {where}: {type(e).__name__}: {_first_line(e)}") from e
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"bad model {spec!r}: {where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj, attr


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def build_model(spec: str, state_dict: str | None) -> torch.nn.Module:
    obj, attr = _load_target(spec)
    if isinstance(obj, torch.nn.Module):
        model = obj
    elif callable(obj):
        try:
            model = obj()
        except Exception as e:
            raise UsageError(f"{attr}() failed: {type(e).__name__}: {_first_line(e)}") from e
    else:
        raise UsageError(f"{attr} is a {type(obj).__name__}, not a factory (callable returning an nn.Module)")
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{attr}() returned a {type(model).__name__}, not a torch.nn.Module")
    if state_dict:
        try:
            sd = load_state_dict(state_dict)
        except StateDictFileError as e:
            raise UsageError(f"--state-dict: {e}") from e
        result = model.load_state_dict(unwrap_keys(sd, model.state_dict()), strict=False)
        problems = [f"missing {', '.join(result.missing_keys)}"] if result.missing_keys else []
        problems += [f"unexpected {', '.join(result.unexpected_keys)}"] if result.unexpected_keys else []
        if problems:
            raise UsageError(f"--state-dict {state_dict} does not fit {attr}(): {'; '.join(problems)}")
    return model.eval()


def make_inputs(model: torch.nn.Module, shapes: list[str], dynamic: list[str]) -> tuple[list, tuple]:
    if not shapes:
        raise UsageError("convert needs one --shape per forward argument, e.g. --shape 3,50,80")
    parsed = [parse_shape(s) for s in shapes]
    if len(dynamic) > len(parsed):
        raise UsageError(f"{len(dynamic)} --dynamic for {len(parsed)} --shape: give at most one per input")
    specs = tuple(parse_dynamic(d, s, i) for i, (d, s) in enumerate(zip(dynamic, parsed)))
    specs += (None,) * (len(parsed) - len(specs))
    inputs = [torch.randn(*s) for s in parsed]
    try:
        inspect.signature(model.forward).bind(*inputs)
    except TypeError as e:
        raise UsageError(f"{len(parsed)} --shape given, but {type(model).__name__}.forward"
                         f"{inspect.signature(model.forward)} does not take them: {e}") from None
    except ValueError:  # no signature (builtin forward): torch will tell
        pass
    return inputs, specs


def _save_config(net: Any, path: str, subnetwork: str | None) -> str:
    if subnetwork is None:
        return net.save_config(path)
    if "subnetwork" not in inspect.signature(net.save_config).parameters:
        raise UsageError("--subnetwork: this version of torchdispatch_returnn cannot export a subnetwork yet "
                         "(net.save_config has no subnetwork parameter)")
    return net.save_config(path, subnetwork=subnetwork)


def cmd_convert(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    model = build_model(args.factory, args.state_dict)
    inputs, specs = make_inputs(model, args.shape, args.dynamic)
    dynamic_shapes = specs if any(s is not None for s in specs) else None
    out = os.path.abspath(args.out)
    try:
        with torch.no_grad(), returnn_capture(dynamic_shapes=dynamic_shapes, strict=args.strict, check=False,
                                              atol=args.atol, rtol=args.rtol, nested=args.nested) as net:
            model(*inputs)
    except UnsupportedOpError as e:
        print(f"unsupported: {e}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except ParityError as e:
        print(f"parity: FAILED\n{e}", file=sys.stderr)
        return EXIT_PARITY
    except InputSpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CaptureError as e:
        print(f"conversion failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # the model's own code failed on these inputs
        shapes = " ".join(",".join(map(str, x.shape)) for x in inputs)
        print(f"error: {type(model).__name__}.forward failed on inputs of shape {shapes} (check --shape): "
              f"{type(e).__name__}: {_first_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        files = [_save_config(net, os.path.join(out, "returnn.config"), args.subnetwork)]
        files.append(net.save_checkpoint(os.path.join(out, "model")))
        files.append(os.path.join(out, "param_map.json"))
        if hasattr(net.parity, "to_html"):
            net.parity.to_html(os.path.join(out, "parity.html"))
            files.append(os.path.join(out, "parity.html"))
    except OSError as e:
        print(f"error: cannot write to {out}: {e}", file=sys.stderr)
        return EXIT_ERROR
    print_summary(model, inputs, specs, net, files)
    if args.subnetwork:
        print(f"the network is the subnetwork layer {args.subnetwork!r}: load the checkpoint with "
              f"preload_from_files = {{'torch': {{'filename': {files[1]!r}, 'prefix': '{args.subnetwork}/'}}}}")
    if not net.parity.ok:
        print(net.parity.failure_message(), file=sys.stderr)
        return EXIT_PARITY
    return EXIT_OK


def print_summary(model: torch.nn.Module, inputs: list, specs: tuple, net: Any, files: list) -> None:
    classes: dict[str, int] = {}
    for d in net.net_dict.values():
        classes[d["class"]] = classes.get(d["class"], 0) + 1
    shown = ", ".join(f"{','.join(map(str, x.shape))}" + (f" ({', '.join(f'{a}={n}' for a, n in s.items())})"
                                                           if s else "") for x, s in zip(inputs, specs))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {type(model).__name__}, {n_params} parameters, inputs {shown}")
    print(f"captured {len(net.parity)} ops into {len(net.net_dict)} RETURNN layers: "
          + ", ".join(f"{k} {v}" for k, v in sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))))
    diffs = [r.max_abs_diff for r in net.parity if r.max_abs_diff is not None]
    worst = f", max abs diff {max(diffs):.2e}" if diffs else ""
    print(f"parity: {'OK' if net.parity.ok else 'FAILED'} ({len(net.parity) - len(net.parity.failures)}/"
          f"{len(net.parity)} ops agree{worst})")
    print("files:\n" + "\n".join(f"  {f}" + (" (.index, .data-*: the TF checkpoint)" if i == 1 else "")
                                  for i, f in enumerate(files)))


# ---------------------------------------------------------------------------------------------- others
def cmd_convert_checkpoint(args: argparse.Namespace) -> int:
    try:
        path = convert_checkpoint(args.state_dict, args.param_map, args.out, config=args.config,
                                  allow_extra=args.allow_extra)
    except (StateDictFileError, CheckpointMismatchError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"error: cannot write the checkpoint {args.out}: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"checkpoint: {path}.index (+ .data)")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(args.out, time_steps=args.time)


def cmd_support(args: argparse.Namespace) -> int:
    sweep = None
    if args.sweep:
        try:
            with open(args.sweep) as f:
                sweep = json.load(f)
            if not isinstance(sweep.get("totals"), dict) or not isinstance(sweep.get("families"), dict):
                raise ValueError("no 'totals' and 'families'")
        except (OSError, ValueError, AttributeError) as e:
            raise UsageError(f"--sweep {args.sweep}: not an op_db sweep summary ({type(e).__name__}: {e})") from e
    text = support_markdown(sweep)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"written {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


COMMANDS = {"convert": cmd_convert, "convert-checkpoint": cmd_convert_checkpoint, "demo": cmd_demo,
            "support": cmd_support}
