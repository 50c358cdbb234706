"""``OpContext``: what a handler sees of the capture while it builds the layers of one op."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from ._backend import Dim
from .dims import find_axis
from .tensor import ReturnnTensor, Ref

if TYPE_CHECKING:
    from .capture import Capture

_TF_DTYPES = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.int64: "int64", torch.int32: "int32", torch.int16: "int16", torch.int8: "int8", torch.uint8: "uint8",
    torch.bool: "bool",
}


def tf_dtype(dtype: torch.dtype) -> str:
    """The RETURNN/TF dtype name of a torch dtype."""
    try:
        return _TF_DTYPES[dtype]
    except KeyError:
        raise TypeError(f"dtype {dtype} has no RETURNN equivalent") from None


def is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


class OpContext:
    """Helpers for one captured op: input refs, layer construction, dims, broadcasting."""

    def __init__(self, capture: "Capture", func, out: Any, op_name: str):
        self.capture = capture
        self.func = func
        self.out = out  # the real torch result of the op
        self.op_name = op_name
        self.dims = capture.dims
        self.notes: list[str] = []  # shown in the op's parity record (e.g. limits for padded batches)

    # -- inputs ---------------------------------------------------------------------------------
    def ref(self, x, dims: Sequence[Dim] | None = None, prefer: Sequence[Dim | None] | None = None) -> Ref:
        """The layer for a tensor argument: captured tensor, parameter/buffer (variable) or
        plain tensor/number (constant; ``dims`` gives its dims, else new static dims).
        ``prefer``: dims a parameter's variable takes when this op is its first use (saves renames)."""
        if isinstance(x, ReturnnTensor) and getattr(x, "_rt_capture", None) is self.capture:
            return x._rt_ref
        if not isinstance(x, torch.Tensor):
            x = torch.tensor(x)
        return self.capture.tensor_ref(x, dims, prefer)

    # -- layers ---------------------------------------------------------------------------------
    def layer(self, d: dict, dims: Sequence[Dim], *, dtype: torch.dtype | None = None,
              helper: str | None = None, shape: tuple | None = None) -> Ref:
        """Build one layer. ``dims``: its dims in torch order. ``dtype``: the torch dtype it must
        have (default: the op result's); a RETURNN layer of another dtype gets a cast.
        ``helper``: name suffix of an intermediate layer."""
        if dtype is None:
            dtype = self.out.dtype if isinstance(self.out, torch.Tensor) else torch.float32
        name = self.op_name if helper is None else f"{self.op_name}_{helper}"
        return self.capture.build(name, d, tuple(dims), dtype, shape=shape)

    def eval(self, expr: str, inputs: Sequence, dims: Sequence[Dim], *, dtype: torch.dtype | None = None,
             helper: str | None = None, axis: Dim | None = None, dims_locals: dict | None = None) -> Ref:
        """An ``eval`` layer: ``expr`` in ``source(i)`` over ``inputs`` (broadcast by dims).
        ``{axis}`` in ``expr`` stands for the RETURNN axis index of the dim ``axis``."""
        if dtype is None:
            dtype = self.out.dtype if isinstance(self.out, torch.Tensor) else inputs[0].dtype
        d = {"class": "eval", "from": list(inputs), "eval": expr, "allow_broadcast_all_sources": True,
             "out_type": {"dtype": tf_dtype(dtype)}}
        if axis is not None:
            dims_locals = {**(dims_locals or {}), "axis": axis}
        for key, dim in (dims_locals or {}).items():  # "{key}" -> RETURNN axis index of that dim
            d["eval"] = d["eval"].replace("{%s}" % key, f"self.output.get_axis_from_description({key})")
            d.setdefault("eval_locals", {})[key] = dim
        return self.layer(d, dims, dtype=dtype, helper=helper)

    def cast(self, r: Ref, dtype: torch.dtype) -> Ref:
        if r.dtype == dtype:
            return r
        return self.layer({"class": "cast", "from": r, "dtype": tf_dtype(dtype)}, r.dims, dtype=dtype, helper="cast")

    def fill(self, dims: Sequence[Dim], value, dtype: torch.dtype, helper: str | None = None) -> Ref:
        """A ``constant`` layer of ``dims`` (dynamic ones included) filled with ``value``."""
        v = bool(value) if dtype == torch.bool else (float(value) if dtype.is_floating_point else int(value))
        d = {"class": "constant", "value": v, "shape": list(dims), "dtype": tf_dtype(dtype)}
        deps = sorted({self.capture._dim_layers[id(x)] for x in dims if x.is_dynamic()})
        if deps:
            d["shape_deps"] = deps
        return self.layer(d, dims, dtype=dtype, helper=helper)

    def const(self, value, dims: Sequence[Dim], dtype: torch.dtype | None = None) -> Ref:
        """A constant (small) or non-trainable variable (large) with the given dims."""
        t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
        if dtype is not None:
            t = t.to(dtype)
        return self.capture.constant_ref(t, tuple(dims))

    # -- dims -----------------------------------------------------------------------------------
    def new_dim(self, size, name: str | None = None) -> Dim:
        """The dim of a new axis: a DimInt's dim (dynamic) or a new static dim."""
        from .tensor import DimInt

        if isinstance(size, DimInt):
            return size.dim
        if isinstance(size, Dim):
            return size
        return self.dims.static(int(size), name or f"{self.op_name}_dim")

    def size_ref(self, dim: Dim, within: Sequence[Dim] = ()) -> Ref:
        """The size of ``dim`` as a layer: the batch size (scalar) or the per-sequence lengths of a
        dynamic dim (dims of its lengths, e.g. [batch]); these dims must be among ``within``."""
        src = self.capture._dim_layers.get(id(dim)) if not dim.is_batch_dim() else None
        if src is None:
            src = self.capture.first_input_layer() if dim.is_batch_dim() else None
        if src is None:
            raise NotImplementedError(f"no layer with dim {dim} to read its size from")
        if not dim.is_batch_dim() and dim.dyn_size_ext is None:
            dim.complete_dyn_size()
        dims = [] if dim.is_batch_dim() else [d for d in dim.dyn_size_ext.dims]
        for d in dims:
            if not any(d is w or d == w for w in within):
                raise NotImplementedError("a sequence length used as a number where the result has no batch axis")
        dims = [next(w for w in within if d is w or d == w) for d in dims]
        return self.layer({"class": "length", "from": src, "axis": dim}, dims, dtype=torch.int32, helper="len")

    def squeeze(self, r: Ref, axis: int) -> Ref:
        dims = list(r.dims)
        d = dims.pop(axis)
        return self.layer({"class": "squeeze", "from": r, "axis": d}, dims, dtype=r.dtype, helper="squeeze")

    def unsqueeze(self, r: Ref, axis: int, dim: Dim | None = None) -> Ref:
        dim = dim if dim is not None else self.dims.static(1, f"{self.op_name}_one")
        dims = list(r.dims)
        dims.insert(axis, dim)
        return self.layer({"class": "expand_dims", "from": r, "axis": "T", "dim": dim}, dims, dtype=r.dtype,
                          helper="unsqueeze")

    def rename(self, r: Ref, mapping: dict) -> Ref:
        """Give axes new dims (same sizes): ``{old_dim: new_dim}``."""
        mapping = {o: n for o, n in mapping.items() if o is not n}
        if not mapping:
            return r
        targets = set(map(id, mapping.values()))
        first = {o: n for o, n in mapping.items() if id(o) in targets}
        if first and len(first) < len(mapping):  # move dims away before others take their place
            r = self.rename(r, first)
            return self.rename(r, {o: n for o, n in mapping.items() if id(o) not in targets})
        dims = [mapping.get(d, d) for d in r.dims]
        return self.layer({"class": "reinterpret_data", "from": r, "set_dim_tags": mapping}, dims, dtype=r.dtype,
                          helper="rename")

    def transpose_to(self, r: Ref, dims: Sequence[Dim]) -> Ref:
        """Same layer, axes in a new torch order (meta only, no layer)."""
        assert len(dims) == r.ndim
        shape = tuple(r.shape[find_axis(r.dims, d)] for d in dims)
        return Ref(r.name, tuple(dims), shape, r.dtype)

    def broadcast(self, *xs, dtype: torch.dtype | None = None) -> tuple[list, tuple[Dim, ...]]:
        """Torch broadcasting by position, in RETURNN terms: returns the inputs as refs whose
        dims are the output dims (size-1 broadcast axes squeezed, differing dims renamed),
        Python numbers passed through, and the output dims in torch order.
        ``dtype``: cast tensor inputs to it (or a list: one dtype per input)."""
        refs = {i: self.ref(x) for i, x in enumerate(xs) if _captured(x, self.capture)}
        shapes = {i: tuple(x.shape) for i, x in enumerate(xs) if is_tensor(x)}
        nd = max((len(s) for s in shapes.values()), default=0)
        out_dims: list[Dim] = []
        for pos in range(-nd, 0):
            best = None
            for i, r in refs.items():
                if r.ndim >= -pos:
                    d, s = r.dims[pos], r.shape[pos]
                    if best is None or (best[1] == 1 and s != 1) or (
                            s == best[1] and d.is_dynamic() and not best[0].is_dynamic()):
                        best = (d, s)
            big = max((s[pos] for s in shapes.values() if len(s) >= -pos), default=1)
            if best is None or (best[1] == 1 and big != 1):
                best = (self.dims.static(big, f"{self.op_name}_b{nd + pos}"), big)
            out_dims.append(best[0])
        for k, d in enumerate(out_dims):  # one dim at two positions (arange(T)[:, None] - arange(T)): a twin
            if any(e is d for e in out_dims[:k]):
                out_dims[k] = self.dims.same_length_as(d, f"{d.description}_{self.op_name}")
        result = []
        for i, x in enumerate(xs):
            if not is_tensor(x):
                result.append(x)
                continue
            shape = shapes[i]
            target = out_dims[nd - len(shape):]
            want = dtype[i] if isinstance(dtype, (list, tuple)) else dtype
            if i in refs:
                r = refs[i]
                for ax in reversed(range(r.ndim)):
                    if r.shape[ax] == 1 and self.capture.dims.size(target[ax]) != 1:
                        r = self.squeeze(r, ax)
                        target = target[:ax] + target[ax + 1:]
                r = self.rename(r, {d: t for d, t in zip(r.dims, target) if d is not t})
            else:
                keep = [ax for ax in range(len(shape)) if not (shape[ax] == 1 and self.capture.dims.size(target[ax]) != 1)]
                value = x.detach().reshape([shape[ax] for ax in keep])
                r = self.const(value, [target[ax] for ax in keep], dtype=want)
            if want is not None:
                r = self.cast(r, want)
            result.append(r)
        return result, tuple(out_dims)


def _captured(x, capture) -> bool:
    return isinstance(x, torch.Tensor) and (
        (isinstance(x, ReturnnTensor) and getattr(x, "_rt_capture", None) is capture) or capture.is_param(x))

