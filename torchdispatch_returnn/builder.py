"""The single place that names, constructs, checks and casts the layers of a capture.

Handlers ask for layers through ``ctx`` (:mod:`.context`); each becomes a pending :class:`Layer`.
When the op is done, the builder names the op's new layers: the op's result gets the op name
(``layers.0.relu``), the others their role (``layers.0.relu_cast``). Layers are built in the live ``TFNetwork``
in creation order by :meth:`Builder.flush` (at the end of the capture, or at once for a layer making a new batch
dim), where RETURNN's dims are checked and a layer of another dtype gets a ``cast``. Parameters are held by the
layers computing with them or are ``variable`` layers (see :mod:`.params`); plain tensors become constants.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from ._backend import Config, Dim, Tensor, TFNetwork, batch_dim, building, quiet, tf_dtype
from .dims import DimRegistry
from .errors import CaptureError, LayerBuildError, OpSite, UnsupportedOpError, error_summary
from .naming import ModuleScopes, Namer, role_of
from .naming.refs import has_merged, needed, pure_key, to_names
from .params import HeldParams, live_desc, load_values, scope_of
from .progress import Progress
from .tensor import NEW_BATCH, Layer, MergedDim, Ref, ReturnnTensor, expand_dims, plain

logger = logging.getLogger(__name__)

#: numel up to which a plain tensor becomes a ``constant`` layer; larger ones are variables
CONST_MAX_NUMEL = 64
#: numel up to which a buffer of no known module is written with its value as ``init``
BUFFER_INIT_MAX_NUMEL = 65536


class Builder:
    """Layers, parameters and constants of one capture's ``TFNetwork``."""

    def __init__(self, graph: Any, dims: DimRegistry, scopes: ModuleScopes, train: bool,
                 progress: Progress | None = None):
        self.graph = graph
        self.progress = progress or Progress(False)  # counts the layers built, keeps their construction time
        self.dims = dims
        self.namer = Namer()
        self.scopes = scopes  # (the running module call of each new layer)
        self.param_names = scopes.param_names  # id(parameter/buffer) -> state_dict key
        self.param_owners = scopes.param_owners  # id(parameter/buffer) -> the module holding it
        self.train = train
        self.network: TFNetwork | None = None
        self.held = HeldParams(self.param_names, self.param_owners)  # which layer holds each parameter
        self.var_values: list[tuple[Layer, str | None, np.ndarray]] = []  # (layer, param name, value to load)
        self.layers: list[Layer] = []  # every layer, in creation order
        self._built = 0  # layers[:_built] are constructed (or need no construction)
        self._op_start = 0  # layers[_op_start:] belong to the running op
        self._op_base = "op"
        self._tensor_refs: dict[int, tuple[torch.Tensor, Ref]] = {}
        self.input_layers: list[Layer] = []  # extern data layers, in order
        self.same: dict[tuple, Layer] = {}  # refs.pure_key -> the layer computing it
        self.shared: dict[int, int] = {}  # id(layer) -> how many later ops reused it (see ``same``)
        self.output_layers: list[Layer] = []  # the ``output``, ``output_1``, ... layers
        self.descs: dict[str, dict] = {}  # name -> the layer dict as written (the live network's may differ: live_desc)
        self.written: set[int] | None = None  # ids of the layers the written config has (see :meth:`keep_needed`)

    # -- inputs -----------------------------------------------------------------------------------
    def define_input(self, key: str, opts: dict) -> Layer:
        """Extern data ``key`` (the network is created with the first one); returns its layer."""
        with building(self.graph):
            if self.network is None:
                self.network = TFNetwork(config=Config({"extern_data": {key: opts}}), train_flag=self.train,
                                         name="root")
            else:
                self.network.extern_data.register_data(Tensor(name=key, auto_create_placeholders=True, **opts))
        name = self.namer.reserve("data" if key == "data" else f"data:{key}")
        layer = Layer(None, tuple(opts["dim_tags"]), torch.float32, name=name, built=True)
        self.dims.note_layer(layer, layer.dims)
        self.dims.mark_plain(*(d for d in layer.dims if d.is_static()))
        for d in layer.dims:
            if d.is_static() and not d.is_batch_dim():
                self.dims.shared.feature(d.dimension, d.description, dim=d)  # (the inputs' sizes: the model's dims)
        self.input_layers.append(layer)
        return layer

    @property
    def first_input(self) -> Layer | None:
        """The first extern data layer (``data``), e.g. to read the batch size from."""
        return self.input_layers[0] if self.input_layers else None

    # -- layers -----------------------------------------------------------------------------------
    def add(self, desc: dict, dims, dtype: torch.dtype, *, site: OpSite | None, scope: str,
            shape: tuple | None = None, name: str | None = None, role: str | None = None) -> Ref:
        """A new layer with ``dims`` (torch order) and torch ``dtype``; named now if ``name`` is given
        (exactly that name), else when its op ends. ``dims`` may hold ``NEW_BATCH`` for a batch dim
        the layer creates (``shape`` gives the sizes); such a layer is constructed at once."""
        if self.network is None:
            raise CaptureError("no network input yet: call a module with its input tensors, or net.input()")
        dims = tuple(dims)
        key = pure_key(desc, dims, dtype) if name is None and not any(x is NEW_BATCH for x in dims) else None
        if (hit := self.same.get(key)) is not None:  # the same computation again (a mask each block remakes)
            self.shared[id(hit)] = self.shared.get(id(hit), 0) + 1
            return Ref(hit, dims, tuple(self.dims.size(x) for x in dims), dtype)
        layer = Layer(desc, tuple(expand_dims(dims)), dtype, site=site, role=role or role_of(desc), scope=scope,
                      shape=shape)
        if key is not None:
            self.same[key] = layer
        layer.call = self.scopes.call
        if name is not None:
            layer.name = self.namer.claim(name)
        self.layers.append(layer)
        self.dims.note_layer(layer, dims)
        if any(x is NEW_BATCH for x in dims):
            self.flush()
            dims = layer.dims  # (a layer that makes a batch dim has no merged axes)
        sizes = tuple(self.dims.size(x) for x in dims)
        return Ref(layer, dims, sizes, dtype)

    def missing(self, out: torch.Tensor, like: list, site: OpSite, scope: str, why: str,
                cause: Layer | None = None) -> Ref:
        """A placeholder for a torch result the network does not compute (an unsupported op with
        ``strict=False``, or a value a handler does not produce): never constructed; using it in
        another op is an error (or, with ``strict=False``, more placeholders)."""
        dims: list = []
        for ax, size in enumerate(out.shape):
            found = next((r.dims[ax] for r in like if r.ndim == out.dim() and r.shape[ax] == size
                          and not any(r.dims[ax] is d for d in dims)), None)
            dims.append(found if found is not None else self.dims.static(int(size), f"missing{ax}"))
        layer = Layer(None, tuple(dims), out.dtype, site=cause.site if cause else site, role="missing", scope=scope)
        layer.unsupported, layer.missing, layer.call = True, why, self.scopes.call
        self.layers.append(layer)
        return Ref(layer, tuple(dims), tuple(out.shape), out.dtype)

    def begin_op(self, base: str) -> None:
        """Layers added from now on belong to an op whose layers are named ``<scope>.<base>...``."""
        self._name_pending()
        self._op_start = len(self.layers)
        self._op_base = base

    def end_op(self, results: list[Layer]) -> None:
        """Name the op's new layers: ``results`` get the op name, the others their role."""
        for layer in self.layers[self._op_start:]:
            if any(layer is r for r in results):
                layer.role = None
        self._name_pending()
        self._op_start = len(self.layers)

    def _name_pending(self) -> None:
        for layer in self.layers[self._op_start:]:
            if layer.name is None:
                base = self._op_base if layer.role is None else f"{self._op_base}_{layer.role}"
                layer.name = self.namer.unique(Namer.join(layer.scope, base))

    def flush(self) -> None:
        """Construct every pending layer in the live network, in creation order."""
        self._name_pending()
        while self._built < len(self.layers):
            layer = self.layers[self._built]
            self._built += 1
            if not layer.built and not layer.unsupported:
                t0 = time.perf_counter()
                self._construct(layer)
                self.progress.built(layer, time.perf_counter() - t0)

    def _construct(self, layer: Layer) -> None:
        name, d = layer.name, to_names(layer.desc)
        if has_merged(d):
            raise LayerBuildError(f"layer {name!r} ({d.get('class')}) works along an axis that merges the batch "
                                  "with another axis (x.view(B * K, ...)); only elementwise ops, convs and reshapes "
                                  "back are supported on such a tensor").at(layer.site)
        net = self.network
        self.descs[name] = d
        net.layers_desc[name] = live_desc(d)
        try:
            with building(self.graph, reference_variables=True):
                for x in layer.dims:
                    if isinstance(x, Dim) and x.is_dynamic() and not x.is_batch_dim() and (
                            x.dyn_size_ext is None or x.dyn_size_ext.raw_tensor is None):
                        x.complete_dyn_size()
                with quiet():
                    rl = net.construct_layer(net.layers_desc, name)
        except Exception as e:
            del net.layers_desc[name], self.descs[name]
            raise LayerBuildError(f"RETURNN could not build layer {name!r} {d!r}: {error_summary(e)}"
                                  ).at(layer.site) from e
        layer.built = True
        out_dims = rl.output.dims
        if any(x is NEW_BATCH for x in layer.dims):  # a layer that makes its own batch dim (flatten_batch)
            new_b = next(x for x in out_dims if x.is_batch_dim())
            layer.dims = tuple(new_b if x is NEW_BATCH else x for x in layer.dims)
            self.dims.set_size(new_b, int(np.prod([s for x, s in zip(layer.dims, layer.shape or ())
                                                   if x is new_b] or [0])))
        if len(out_dims) != len(layer.dims) or any(_count(out_dims, x) != _count(layer.dims, x) for x in layer.dims):
            raise LayerBuildError(f"layer {name!r} ({d.get('class')}) has dims {out_dims}, expected "
                                  f"{list(layer.dims)}").at(layer.site)
        if rl.output.dtype != tf_dtype(layer.dtype):
            cast = Layer({"class": "cast", "from": layer, "dtype": tf_dtype(layer.dtype)}, layer.dims, layer.dtype,
                         site=layer.site, role="cast", scope=layer.scope)
            cast.name, cast.call = self.namer.unique(f"{name}_cast"), layer.call
            self._construct(cast)
            layer.alias = cast

    def add_outputs(self, outputs: list) -> list:
        """The layers ``output``, ``output_1``, ... of ``(name, ref)``, axes in torch order; returns
        (layer name, ref) (a name a module's layer took gets a suffix)."""
        out = []
        for name, ref in outputs:
            if ref.layer.missing is not None:
                s = ref.layer.site
                raise UnsupportedOpError(f"the output {name!r} needs a value the network does not have: "
                                         f"{ref.layer.missing}").at(s)
            src = self._merged_batch_output(name, ref)
            d = {"class": "transpose", "from": src, "perm": list(src.dims)}
            if name != "output":
                d["is_output_layer"] = True
            layer = self.add(d, src.dims, ref.dtype, site=None, scope="", name=name).layer
            self.output_layers.append(layer)
            out.append((layer.name, ref))
        return out

    def _merged_batch_output(self, name: str, ref: Ref) -> Ref:
        """``ref`` with each axis that merges the batch with a static axis (``x.flatten()`` of (B, K))
        merged in the layer too (a new batch dim), so the output has torch's shape."""
        for k, m in enumerate(ref.dims):
            if not isinstance(m, MergedDim):
                continue
            if len(m.parts) != 2 or not any(p.is_batch_dim() for p in m.parts):
                raise UnsupportedOpError(f"the output {name!r} has an axis merging {m.description}; only the batch "
                                         "with one static axis can be merged in an output").at(ref.layer.site)
            dims = list(ref.dims[:k]) + [NEW_BATCH] + list(ref.dims[k + 1:])
            d = {"class": "merge_dims", "from": ref, "axes": list(m.parts), "keep_order": True}
            ref = self.add(d, dims, ref.dtype, site=ref.layer.site, scope="", shape=ref.shape,
                           name=self.namer.unique(f"{name}_merge_batch"))
        return ref

    def keep_needed(self, extra: list[Layer]) -> None:
        """The written config keeps the layers the outputs need, the layers holding parameters (with what they
        read) and ``extra`` (layers fed by name: random values); the others (e.g. an LSTM's final states nobody
        reads, attention weights a module returns unused) stay in the live network only. The dims of the
        written layers get their config names."""
        self.written = needed(self.output_layers + self.held.layers() + list(extra))
        self.dims.apply_names(self.net_dict, self.scopes.kinds)

    @property
    def net_dict(self) -> dict:
        """The network dict of the written config (the live network's, without the layers nothing needs)."""
        desc = self.descs
        if self.written is None:
            return desc
        names = {x.name for x in self.layers if id(x) in self.written}
        names |= {x.alias.name for x in self.layers if x.alias is not None and id(x.alias) in self.written}
        return {k: d for k, d in desc.items() if k in names}

    # -- parameters and constants --------------------------------------------------------------------
    def is_param(self, t: torch.Tensor) -> bool:
        """A parameter or buffer of a captured module, or a tensor that already has a layer."""
        return id(t) in self.param_names or id(t) in self._tensor_refs

    def tensor_ref(self, t: torch.Tensor, dims=None, prefer=None, scope: str = "") -> Ref:
        """A parameter/buffer (variable named by its state_dict key) or plain tensor (constant).
        ``prefer``: dims (or None) a new parameter variable takes where the sizes fit, so that the
        first op using it needs no renames."""
        cached = self._tensor_refs.get(id(t))
        if cached is not None and cached[0] is t and (dims is None or tuple(dims) == cached[1].dims):
            return cached[1]
        key = self.param_names.get(id(t))
        if key is None:
            ref = self.constant(plain(t).detach().clone(), tuple(dims) if dims is not None else None, scope)
        else:
            init = self.held.init(t)
            if init is None and not isinstance(t, torch.nn.Parameter) and t.numel() <= BUFFER_INIT_MAX_NUMEL:
                init = plain(t).detach().cpu().numpy()  # a buffer (e.g. a sinusoid table): its value
            elif init is None and t.dim() >= 2:
                init = "glorot_uniform"  # RETURNN's default for weights
            owned = self.held.holder(t)
            if owned is not None:  # held by a layer (linear's W): a variable sharing it
                ref = self._variable(key, plain(t).detach(), True, prefer, None, reuse=owned)
            else:
                ref = self._variable(key, plain(t).detach(), isinstance(t, torch.nn.Parameter), prefer, init)
                self.held.variable(key, ref.layer)
        self._tensor_refs[id(t)] = (t, ref)
        return ref

    @property
    def param_map(self) -> dict[str, dict]:
        """state_dict key -> {"tf_vars": [TF variable name], "layer": the layer holding it, "transform"}."""
        return self.held.param_map()

    def owner(self, params: dict[str, torch.Tensor | None], buffers: bool = False) -> Layer | bool | None:
        """Whether one layer may hold ``params`` (see :meth:`HeldParams.owner`)."""
        return self.held.owner(params, self._tensor_refs, buffers)

    def own(self, ref: Ref, params: dict[str, torch.Tensor | None], perms: dict[str, list] | None = None) -> None:
        """The layer of ``ref`` holds ``params`` (see :meth:`HeldParams.own`); their values are loaded into it."""
        self.var_values += self.held.own(ref.layer, params, perms)

    def _variable(self, key: str, value: torch.Tensor, trainable: bool, prefer=None, init=None,
                  reuse: tuple | None = None) -> Ref:
        dims = []
        for i, s in enumerate(value.shape):
            p = prefer[i] if prefer is not None and i < len(prefer) else None
            ok = p is not None and p.is_static() and p.dimension == s and not any(p is d for d in dims) \
                and self.dims.is_plain(p)  # RETURNN takes no derived dim as a parameter shape
            dims.append(p if ok else self.dims.shared.param(s, f"param{s}", avoid=dims))
        d = {"class": "variable", "shape": list(dims), "trainable": trainable, "name_scope": scope_of(key),
             "param_name": key.rsplit(".", 1)[-1], "dtype": tf_dtype(value.dtype)}
        if reuse is not None:  # the variable of the layer holding it (``reuse_params``), in its layout
            layer, name, perm = reuse
            del d["name_scope"]
            d.update(param_name=name, reuse_params={"map": {name: {"reuse_layer": layer}}},
                     shape=[dims[i] for i in perm] if perm else list(dims))
            self.dims.mark_plain(*dims)
            return self.add(d, dims, value.dtype, site=None, scope="", name=self.namer.unique(key))
        if isinstance(init, np.ndarray) or not value.dtype.is_floating_point:
            d["init"] = init if isinstance(init, np.ndarray) else 0
        elif init is not None:
            d["init"] = init
        ref = self.add(d, dims, value.dtype, site=None, scope="", name=key)
        value = value.cpu().numpy()  # (a parameter's values are read as they are; a buffer's copied now)
        self.var_values.append((ref.layer, None, value if trainable else value.copy()))
        self.dims.mark_plain(*dims)
        return ref

    def constant(self, value: torch.Tensor, dims=None, scope: str = "", site: OpSite | None = None) -> Ref:
        """A plain tensor as a ``constant`` layer (small) or non-trainable ``variable`` (large); an axis
        at the batch dim fixes the network to the capture's batch size (see :meth:`on_batch`)."""
        if dims is None:
            dims = tuple(self.dims.static(s, f"const{i}") for i, s in enumerate(value.shape))
        ax = next((i for i, d in enumerate(dims) if d.is_batch_dim()), None)
        if ax is not None and value.shape[ax] == self.dims.size(dims[ax]) and \
                not any(d.is_dynamic() and not d.is_batch_dim() for d in dims):
            static = self.dims.static(value.shape[ax], "const_batch")
            r = self.constant(value, tuple(static if i == ax else d for i, d in enumerate(dims)), scope)
            return self.on_batch(r, static, scope, site)
        name = Namer.join(scope, "const")
        if value.numel() <= CONST_MAX_NUMEL and all(not x.is_dynamic() for x in dims):
            arr = value.cpu().numpy()
            d = {"class": "constant", "value": arr.item() if arr.ndim == 0 else arr, "shape": list(dims),
                 "dtype": tf_dtype(value.dtype)}
            return self.add(d, dims, value.dtype, site=None, scope=scope, name=self.namer.unique(name))
        if any(x.is_dynamic() for x in dims):
            raise NotImplementedError(f"a plain (non-parameter) tensor of shape {tuple(value.shape)} is combined "
                                      "along a dynamic axis; compute it from the input sizes instead (e.g. slice it "
                                      "with x.shape[1])")
        d = {"class": "variable", "shape": list(dims), "init": 0, "trainable": False, "param_name": "value",
             "dtype": tf_dtype(value.dtype)}
        ref = self.add(d, dims, value.dtype, site=None, scope=scope, name=self.namer.unique(name))
        self.var_values.append((ref.layer, None, value.cpu().numpy()))
        return ref

    def on_batch(self, r: Ref, static: Dim, scope: str, site: OpSite | None, to: Dim = batch_dim) -> Ref:
        """``r`` with its static axis ``static`` as the batch axis (or, ``static`` being the batch dim,
        with its batch axis as the static dim ``to``): a plain tensor lined up with the batch axis, as
        torch broadcasts it at the capture's batch size. The network is then fixed to that batch size:
        a run with another one stops with a message naming the user's line."""
        ax = next(i for i, d in enumerate(r.dims) if d is static)
        where = f"{site.location} ({site.op})" if site is not None else "?"
        self.dims.batch_fixed.append(f"{where}: batch size {r.shape[ax]}")
        msg = (f"this network is fixed to batch size {r.shape[ax]}: a plain tensor at {where} lines up with the "
               "batch axis (torch broadcast it at the capture's batch size)")
        expr = (f"tf.tuple([x0], control_inputs=[tf.debugging.assert_equal(tf.cast(self.network.get_data_batch_dim()"
                f", tf.int32), {r.shape[ax]}, message={msg!r})])[0]")  # (before the ensure_shape below)
        dims = [to if d is static else d for d in r.dims]
        if not to.is_batch_dim():  # the static size for RETURNN
            expr = f"tf.ensure_shape({expr}, {[None if d.is_dynamic() else s for d, s in zip(dims, r.shape)]})"
        return self.add(tf_op_desc(expr, [r], dims, r.dtype), dims, r.dtype, site=site, scope=scope, role="on_batch")

    def load_weights(self, session: Any) -> None:
        """Set the network's variables to the torch values (see :func:`params.load_values`)."""
        with building(self.graph):
            load_values(self.network, session, self.var_values)
        self.var_values = []  # (the values live in the session now)


def tf_op_desc(expr: str, inputs: list, dims, dtype: torch.dtype) -> dict:
    """An ``eval`` layer running TF code in torch's axis order: ``x0``, ``x1``, ... are the inputs'
    values with axes in each Ref's torch order; the result has ``dims`` in torch order."""
    args = [f"(lambda d: d.copy_transpose([d.get_axis_from_description(a) for a in o{i}]).placeholder)"
            f"(source({i}, as_data=True, auto_convert=False))" for i in range(len(inputs))]
    names = ", ".join(f"x{i}" for i in range(len(inputs)))
    return {"class": "eval", "from": list(inputs), "eval": f"(lambda {names}: {expr})({', '.join(args)})",
            "eval_locals": {f"o{i}": list(r.dims) for i, r in enumerate(inputs)},
            "out_type": {"dim_tags": list(dims), "dtype": tf_dtype(dtype)}}


def captured_by(x: Any, dispatcher: Any) -> bool:
    """``x`` is a tensor computed in the capture of ``dispatcher``."""
    return isinstance(x, ReturnnTensor) and getattr(x, "_rt_capture", None) is dispatcher


def _count(dims, x) -> int:
    return sum(1 for d in dims if d is x or d == x)
