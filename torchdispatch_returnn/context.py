"""``OpContext`` (``ctx``): everything a handler sees of the capture while it converts one op.

A handler gets ``ctx`` and the op's torch arguments, asks ``ctx`` for the layers of its inputs
(:meth:`OpContext.ref`) and for new layers (:meth:`OpContext.layer`, :meth:`OpContext.eval` and the
helpers below), and returns the :class:`Ref` (or tuple of them) standing for the op's result.
It never names layers and never touches the network: the builder does both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

from ._backend import Dim, tf_dtype
from .builder import Builder, captured_by, tf_op_desc
from .dims import DimRegistry, find_axis
from .errors import OpSite
from .naming.refs import Base
from .parity import Recorder
from .sizes import DimInt
from .tensor import MergedDim, Ref, expand_dims


class MissingValue(Exception):
    """A handler asked for a value the network does not have (its op gave none): the op's results are
    missing too; a missing value that reaches an output is an error at the end of the capture."""

    def __init__(self, layer):
        super().__init__(layer.missing)
        self.layer = layer


class OpContext:
    """Helpers for one captured op: input refs, layer construction, dims, broadcasting.

    Attributes a handler may read: ``func`` (the torch callable), ``out`` (torch's own result of
    the op), ``op_name`` (a label for new dims), ``dims`` (the :class:`DimRegistry`), ``train``."""

    def __init__(self, builder: Builder, recorder: Recorder, dispatcher: Any, func: Any, out: Any,
                 op_name: str, site: OpSite, scope: str):
        self._builder = builder
        self._recorder = recorder
        self._dispatcher = dispatcher
        self._site = site
        self._scope = scope
        self.func = func
        self.out = out
        self.op_name = op_name
        self.dims: DimRegistry = builder.dims
        self.dims.names.at_op(site.module_path, op_name)
        self.train: bool = builder.train
        self.notes: list[str] = []  # shown in the op's parity record (e.g. limits for padded batches)

    # -- inputs ---------------------------------------------------------------------------------
    def ref(self, x: Any, dims: Sequence[Dim] | None = None, prefer: Sequence[Dim | None] | None = None) -> Ref:
        """The layer for a tensor argument: captured tensor, parameter/buffer (variable) or
        plain tensor/number (constant; ``dims`` gives its dims, else new static dims).
        ``prefer``: dims a parameter's variable takes when this op is its first use (saves renames)."""
        if captured_by(x, self._dispatcher):
            ref = x._rt_ref
            if ref.layer.missing is not None and self._dispatcher.strict:
                raise MissingValue(ref.layer)
            return ref
        if not isinstance(x, torch.Tensor):
            x = torch.tensor(x)
        return self._builder.tensor_ref(x, dims, prefer, scope=self._scope)

    def is_captured(self, x: Any) -> bool:
        """``x`` has a layer: a tensor computed in this capture, or a parameter/buffer."""
        return isinstance(x, torch.Tensor) and (captured_by(x, self._dispatcher) or self._builder.is_param(x))

    # -- layers ---------------------------------------------------------------------------------
    def layer(self, d: dict, dims: Sequence[Any], *, dtype: torch.dtype | None = None,
              shape: tuple | None = None, role: str | None = None) -> Ref:
        """A new layer ``d`` (a RETURNN layer dict whose ``from`` and other layer options may hold
        Refs) with ``dims`` in torch order. ``dtype``: the torch dtype it must have (default: the
        op result's); a RETURNN layer of another dtype gets a cast. ``role``: its name suffix if it is
        not the op's result (default: from its class, ``eval``, ``split``)."""
        if dtype is None:
            dtype = self.out.dtype if isinstance(self.out, torch.Tensor) else torch.float32
        return self._builder.add(d, dims, dtype, site=self._site, scope=self._scope, shape=shape, role=role)

    def eval(self, expr: str, inputs: Sequence[Ref], dims: Sequence[Dim], *, dtype: torch.dtype | None = None,
             axis: Dim | None = None, dims_locals: dict | None = None, role: str | None = None) -> Ref:
        """An ``eval`` layer: ``expr`` in ``source(i)`` over ``inputs`` (broadcast by dims).
        ``{axis}`` in ``expr`` stands for the RETURNN axis index of the dim ``axis`` (likewise
        ``{key}`` for each entry of ``dims_locals``)."""
        if dtype is None:
            dtype = self.out.dtype if isinstance(self.out, torch.Tensor) else inputs[0].dtype
        d = {"class": "eval", "from": list(inputs), "eval": expr, "allow_broadcast_all_sources": True,
             "out_type": {"dim_tags": list(dims), "dtype": tf_dtype(dtype)}}
        if axis is not None:
            dims_locals = {**(dims_locals or {}), "axis": axis}
        for key, dim in (dims_locals or {}).items():  # "{key}" -> RETURNN axis index of that dim
            d["eval"] = d["eval"].replace("{%s}" % key, f"self.output.get_axis_from_description({key})")
            d.setdefault("eval_locals", {})[key] = dim
        return self.layer(d, dims, dtype=dtype, role=role)

    def tf_op(self, expr: str, inputs: Sequence[Ref], dims: Sequence[Dim], *, dtype: torch.dtype | None = None,
              role: str | None = None) -> Ref:
        """An ``eval`` layer running TF code in torch's axis order: in ``expr``, ``x0``, ``x1``, ...
        are the inputs' values as ``tf.Tensor``s with axes in each Ref's torch order (``x0.shape``
        as in torch), and the result has the dims ``dims`` in torch order (any shape change is fine)."""
        if dtype is None:
            dtype = self.out.dtype if isinstance(self.out, torch.Tensor) else inputs[0].dtype
        return self.layer(tf_op_desc(expr, inputs, dims, dtype), dims, dtype=dtype, role=role)

    def param_owner(self, params: dict, buffers: bool = False) -> Any:
        """Whether a layer may hold ``params`` ({RETURNN param name: torch parameter or None}) as its own
        variables: True (new), the layer already holding them (reuse its params), or None (see Builder.owner)."""
        return self._builder.owner(params, buffers)

    def own(self, ref: Ref, params: dict, perms: dict | None = None) -> None:
        """The layer of ``ref`` holds ``params`` (after :meth:`param_owner` said True); ``perms``: {name: perm}
        for a variable the layer keeps transposed (RETURNN axis i is torch axis perm[i])."""
        self._builder.own(ref, params, perms)

    def param_init(self, t: torch.Tensor) -> Any:
        """The RETURNN initializer of torch's module for parameter ``t`` (None: RETURNN's default)."""
        return self._builder.held.init(t)

    def base(self, ref: Ref) -> Base:
        """``ref`` as seen from inside a rec unit or subnetwork (``base:<layer>``)."""
        return Base(ref)

    def cast(self, r: Ref, dtype: torch.dtype) -> Ref:
        if r.dtype == dtype:
            return r
        return self.layer({"class": "cast", "from": r, "dtype": tf_dtype(dtype)}, r.dims, dtype=dtype)

    def fill(self, dims: Sequence[Dim], value: Any, dtype: torch.dtype) -> Ref:
        """A ``constant`` layer of ``dims`` (dynamic ones included) filled with ``value``."""
        v = bool(value) if dtype == torch.bool else (float(value) if dtype.is_floating_point else int(value))
        d = {"class": "constant", "value": v, "shape": list(dims), "dtype": tf_dtype(dtype)}
        deps = [self.dims.layer_of(x) or self._builder.first_input for x in dims if x.is_dynamic()]
        if deps:
            d["shape_deps"] = list(dict.fromkeys(deps))
        return self.layer(d, dims, dtype=dtype)

    def const(self, value: Any, dims: Sequence[Dim], dtype: torch.dtype | None = None) -> Ref:
        """A constant (small) or non-trainable variable (large) with the given dims."""
        t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
        if dtype is not None:
            t = t.to(dtype)
        return self._builder.constant(t, tuple(dims), scope=self._scope, site=self._site)

    def record(self, ref: Ref, value: torch.Tensor) -> None:
        """Also check ``ref`` against the torch ``value`` in the parity run."""
        self._recorder.record(self._site, self.func, ref, value)

    def feed(self, ref: Ref, value: torch.Tensor, sample: Any = None) -> None:
        """``ref`` holds random values the network samples itself: the parity run (and gradient parity)
        feeds torch's ``value`` (torch axis order) there, so the ops after it are compared exactly.
        ``sample(args, kwargs, out)``: the value to feed from another plain-torch run of this op
        (default: its result)."""
        self._recorder.feed(self._site, ref, value, sample)

    def note(self, text: str) -> None:
        """A note for this op's parity records (e.g. a limit for padded batches)."""
        self.notes.append(text)

    # -- dims -----------------------------------------------------------------------------------
    def sym_size(self, x: Any, avoid: Sequence[int] = ()) -> Any:
        """A size argument as the network sees it: a ``DimInt`` for a size of a dynamic axis (also
        a 0-d size tensor such as ``lengths.max() + 1``, and a plain int that the user's code made
        from such a size, recovered by value unless it equals one of the static sizes ``avoid``),
        else a plain int."""
        if isinstance(x, DimInt):
            return x
        if isinstance(x, torch.Tensor):
            if x.dim() != 0:
                raise NotImplementedError(f"a tensor of shape {tuple(x.shape)} used as a size")
            if self.is_captured(x):
                lin = self.dims.size_tensor(self.ref(x).layer)
                if lin is None:
                    raise NotImplementedError("a size computed from tensor values (data-dependent); sizes must come "
                                              "from x.shape / x.size() or lengths.max()")
                return DimInt(self.dims.value(lin), None, self.dims, lin) if lin.terms else lin.const
            return int(x)
        if isinstance(x, int) and not isinstance(x, bool):
            rec = self.dims.recover(x, avoid)
            if rec is not None:
                self.note(f"size {int(x)} taken as {rec.lin!r} (a dynamic size the code made a plain int)")
                return rec
        return x

    def new_dim(self, size: Any, name: str | None = None, avoid: Sequence[int] = ()) -> Dim:
        """The dim of a new axis of ``size``: the dim of a dynamic size (see :meth:`sym_size`) or a
        new static dim."""
        if isinstance(size, Dim):
            return size
        size = self.sym_size(size, avoid)
        if isinstance(size, DimInt):
            if size.dim is None:
                raise NotImplementedError(f"the size {size.lin!r} is no dim RETURNN can represent")
            return size.dim
        return self.dims.static(int(size), name or f"{self.op_name}_dim")

    def twin(self, dim: Dim, avoid: Sequence[Dim] | None = None) -> Dim:
        """A new dim of the same size or lengths as ``dim``, for a second axis of that size; with ``avoid``
        (the axes of the tensors involved), the twin made before where it is none of them (the key axis
        of every attention block is one dim). Its name is a valid TF scope (a derived dim's description
        such as ``time//2`` is not: TF would take the ``/`` of its lengths' op names as scope separators)."""
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dim.description}_{self.op_name}").strip("_.-") or "twin"
        if avoid is not None:
            twin = self.dims.shared.twin(dim, lambda: self.dims.same_length_as(dim, name), avoid)
        else:
            twin = self.dims.same_length_as(dim, name)
        if twin.is_dynamic():
            self.dims.names.twin(twin, self.dims.twin_origin(twin).description or "twin", self.op_name)
        return twin

    def distinct(self, dims: Sequence[Dim]) -> list[Dim]:
        """``dims`` with a dim that stands at a second axis replaced by a twin (same sizes), as RETURNN
        needs distinct dims per axis (``torch.ones(T, T)``)."""
        out = list(dims)
        for k, d in enumerate(out):
            if any(e is d for e in out[:k]):
                out[k] = self.twin(d)
                if d.is_dynamic():  # the twin gets its lengths from a layer that has it
                    src = self.dims.layer_of(d) or self._builder.first_input
                    pos = self.layer({"class": "range_in_axis", "from": src, "axis": d, "dtype": "int64"}, [d],
                                     dtype=torch.int64)
                    self.rename(pos, {d: out[k]})
        return out

    def size_ref(self, dim: Dim, within: Sequence[Dim] = ()) -> Ref:
        """The size of ``dim`` as a layer: the batch size (scalar) or the per-sequence lengths of a
        dynamic dim (dims of its lengths, e.g. [batch]); these dims must be among ``within``; a
        static dim's size is a constant."""
        if not dim.is_dynamic():
            return self.const(torch.tensor(dim.dimension, dtype=torch.int32), [])
        dim = self.dims.twin_origin(dim)  # a twin has the lengths of its origin
        src = self.dims.layer_of(dim) if not dim.is_batch_dim() else None
        if not dim.is_batch_dim() and (dim.dyn_size_ext is None or dim.dyn_size_ext.raw_tensor is None):
            dim.complete_dyn_size()  # a derived dim: its lengths from those of the dims it derives from
            if dim.dyn_size_ext is None:
                raise NotImplementedError(f"no lengths known for dim {dim}")
        src = src or self._builder.first_input
        dims = [] if dim.is_batch_dim() else list(dim.dyn_size_ext.dims)
        outside = [d for d in dims if not any(d is w or d == w for w in within)]
        if any(not d.is_batch_dim() for d in outside):
            raise NotImplementedError(f"the lengths of {dim} vary over an axis the result does not have")
        kept = [next(w for w in within if d is w or d == w) for d in dims if d not in outside]
        lens = self.layer({"class": "length", "from": src, "axis": dim}, dims if outside else kept, dtype=torch.int32)
        if outside:  # no batch axis in the result: the padded size, as torch sees it
            lens = self.layer({"class": "reduce", "from": lens, "mode": "max", "axes": outside}, kept,
                              dtype=torch.int32)
        return lens

    def squeeze(self, r: Ref, axis: int) -> Ref:
        """Remove the (size-1) axis ``axis`` (of an unsqueeze: its input, no layer)."""
        dims = list(r.dims)
        d = dims.pop(axis)
        desc = r.layer.desc or {}
        src = desc.get("from") if desc.get("class") == "expand_dims" and desc.get("dim") is d else None
        if isinstance(src, Ref) and len(src.dims) == len(dims) and all(a is b for a, b in zip(src.dims, dims)):
            return src
        return self.layer({"class": "squeeze", "from": r, "axis": d}, dims, dtype=r.dtype)

    def unsqueeze(self, r: Ref, axis: int, dim: Dim | None = None) -> Ref:
        """A new size-1 axis (or an axis of ``dim``) at ``axis``."""
        dim = dim if dim is not None else self.dims.static(1, f"{self.op_name}_one")
        dims = list(r.dims)
        dims.insert(axis, dim)
        return self.layer({"class": "expand_dims", "from": r, "axis": "T", "dim": dim}, dims, dtype=r.dtype)

    def rename(self, r: Ref, mapping: dict) -> Ref:
        """Give axes new dims (same sizes): ``{old_dim: new_dim}``."""
        mapping = {o: n for o, n in mapping.items() if o is not n}
        if not mapping:
            return r
        fixed = [(o, n) for o, n in mapping.items() if o.is_batch_dim() != n.is_batch_dim() and
                 not (o.is_dynamic() and n.is_dynamic()) and r.shape[find_axis(r.dims, o)] == self.dims.size(n)]
        if fixed:  # a static axis (a plain tensor's) where the batch axis stands, or the other way round
            o, n = fixed[0]
            r = self._builder.on_batch(r, o, self._scope, self._site, to=n)
            return self.rename(r, {(n if k is o else k): v for k, v in mapping.items()})
        if any(o.is_batch_dim() != n.is_batch_dim() for o, n in mapping.items()):
            raise NotImplementedError("an axis of a fixed size stands against the batch axis (a plain tensor or a "
                                      "static axis there would fix the network to the capture's batch size)")
        targets = set(map(id, mapping.values()))
        first = {o: n for o, n in mapping.items() if id(o) in targets}
        if first and len(first) < len(mapping):  # move dims away before others take their place
            r = self.rename(r, first)
            return self.rename(r, {o: n for o, n in mapping.items() if id(o) not in targets})
        static = {o: n for o, n in mapping.items() if not o.is_dynamic() or not n.is_dynamic()}
        if static and len(static) < len(mapping):
            return self.rename(self.rename(r, {o: n for o, n in mapping.items() if o not in static}), static)
        by_id = {id(o): n for o, n in mapping.items()}
        dims = [by_id.get(id(d), d) for d in r.dims]
        if static:  # a static dim a layer may later declare the same as a derived one must not be a dict key in
            # the config (its hash changes): the values as they are, with the new dims declared
            d = tf_op_desc("x0", [r], dims, r.dtype)
            return self._builder.add(d, dims, r.dtype, site=self._site, scope=self._scope, role="rename")
        return self.layer({"class": "reinterpret_data", "from": r, "set_dim_tags": mapping}, dims, dtype=r.dtype)

    def transpose_to(self, r: Ref, dims: Sequence[Dim]) -> Ref:
        """Same layer, axes in a new torch order (meta only, no layer); an axis may be a ``MergedDim``
        of adjacent-in-meaning axes of ``r`` (or of one of its merged axes)."""
        sizes = {id(d): s for d, s in zip(r.dims, r.shape)}
        for d in r.dims:
            if isinstance(d, MergedDim):
                for p in d.parts:
                    sizes[id(p)] = self.dims.size(p)
        assert len(expand_dims(dims)) == len(expand_dims(r.dims))
        shape = []
        for d in dims:
            if isinstance(d, MergedDim):
                n = 1
                for p in d.parts:
                    n *= sizes[id(p)]
                shape.append(n)
            else:
                shape.append(sizes[id(d)] if id(d) in sizes else r.shape[find_axis(r.dims, d)])
        return Ref(r.layer, tuple(dims), tuple(shape), r.dtype)

    def align(self, r: Ref, target: Sequence[Dim], *, expand: bool = False) -> Ref:
        """``r`` broadcast by torch's positional rule (right-aligned) onto the dims ``target``:
        size-1 axes that broadcast are squeezed, the others renamed to the target's dims. With
        ``expand``, the result has exactly ``target``'s dims (missing ones filled by broadcasting)."""
        target = list(target)
        n_new = len(target) - r.ndim
        if n_new < 0:
            raise NotImplementedError(f"cannot broadcast a tensor of {r.ndim} axes onto {len(target)} axes")
        kept = list(target[n_new:])
        for ax in reversed(range(r.ndim)):
            if self.broadcasts(r.dims[ax], r.shape[ax], kept[ax]):
                r = self.squeeze(r, ax)
                del kept[ax]
        r = self.rename(r, {d: t for d, t in zip(r.dims, kept) if d is not t})
        return self.expand(r, target) if expand else r

    def expand(self, r: Ref, target: Sequence[Dim]) -> Ref:
        """``r`` (its dims all among ``target``) broadcast to exactly ``target``, in that order: RETURNN has
        no layer for that, so a ``combine`` with zeros of the missing dims (``logical_or`` with False)."""
        missing = [t for t in target if not any(t is d for d in r.dims)]
        if not missing:
            return self.transpose_to(r, list(target))
        zeros = self.fill(missing, 0, r.dtype)
        return self.layer({"class": "combine", "from": [r, zeros], "kind": "logical_or" if r.dtype == torch.bool
                           else "add", "allow_broadcast_all_sources": True}, list(target), dtype=r.dtype)

    def broadcasts(self, dim: Dim, size: int, target: Dim) -> bool:
        """An axis (``dim``, capture-time ``size``) broadcasts onto ``target``: it is a static size-1
        axis and the target is not (a dynamic dim is one whatever its size at capture time)."""
        return size == 1 and not dim.is_dynamic() and (target.is_dynamic() or self.dims.size(target) != 1)

    def broadcast(self, *xs: Any, dtype: Any = None) -> tuple[list, tuple[Dim, ...]]:
        """Torch broadcasting by position, in RETURNN terms: returns the inputs as refs aligned onto
        the output dims (see :meth:`align`), Python numbers passed through, and the output dims in
        torch order. ``dtype``: cast tensor inputs to it (or a list: one dtype per input)."""
        refs = {i: self.ref(x) for i, x in enumerate(xs) if self.is_captured(x)}
        shapes = {i: tuple(x.shape) for i, x in enumerate(xs) if isinstance(x, torch.Tensor)}
        nd = max((len(s) for s in shapes.values()), default=0)
        out_dims: list[Dim] = []
        for pos in range(-nd, 0):
            best = None
            for r in refs.values():
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
                out_dims[k] = self.twin(d)
        result = []
        for i, x in enumerate(xs):
            if not isinstance(x, torch.Tensor):
                result.append(x)
                continue
            want = dtype[i] if isinstance(dtype, (list, tuple)) else dtype
            if i in refs:
                r = self.align(refs[i], out_dims[nd - len(shapes[i]):])
            else:
                shape = shapes[i]
                target = out_dims[nd - len(shape):]
                keep = [ax for ax in range(len(shape)) if not (shape[ax] == 1 and (target[ax].is_dynamic() or
                                                                                 self.dims.size(target[ax]) != 1))]
                r = self.const(x.detach().reshape([shape[ax] for ax in keep]), [target[ax] for ax in keep], dtype=want)
            if want is not None:
                r = self.cast(r, want)
            result.append(r)
        return result, tuple(out_dims)
