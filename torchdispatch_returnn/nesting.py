"""``returnn_capture(..., nested=True)``: the captured network with the module hierarchy as subnetworks.

The capture builds and checks the flat network as always; this module then writes the same layers
nested: each module call that made two or more layers is a ``subnetwork`` layer named by its attribute
path relative to the enclosing one (``blocks.0`` → ``att`` → ``q``), a module call that made one layer is
that layer, named by its path (``q``: variables ``blocks.0/att/q/W``). A subnetwork's ``output`` is the
call's result (the layer itself where the call made it directly, else a ``copy`` of the child holding it).
References become relative: ``base:`` up to an enclosing network, ``att/k`` down into a subnetwork, and a
module's result referenced from outside is the subnetwork layer itself. A module called twice gives two
subnetworks (``ff``, ``ff_1``), the second reusing the first's parameters. Parameter ``variable`` layers go
into the subnetwork of their module (``name_scope`` keeps their TF names ``<module>/<name>``). A layer that
holds parameters but feeds no other layer is marked ``is_output_layer`` so RETURNN builds it.

:func:`nest` returns the nested net dict and, for each layer, its path in the nested network; the capture
builds that network from the written config, copies the variables over (:func:`copy_params`) and checks its
outputs against the flat network's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backend import quiet
from .errors import CaptureError, ParityError
from .naming import Namer
from .naming.refs import to_names
from .naming.scopes import Call
from .numeric import close, differences
from .params import live_net
from .runtime import ConfigNetwork, layer_feed, np_value
from .tensor import Layer, result_items

Loc = tuple  # the subnetwork names from the top network down to a layer's network


def _rel(path: str, base: str) -> str:
    """``path`` relative to the module path ``base``."""
    return path[len(base) + 1:] if base and path.startswith(base + ".") else path


class _Nester:
    """Places the layers of one capture in subnetworks (:meth:`locate`), then writes their descriptions with
    relative references (:meth:`write`) and completes each subnetwork (:meth:`finish`)."""

    def __init__(self, layers: list[Layer], param_keys: dict[int, str], holds_params: set[int]):
        self.param_keys = param_keys  # id(variable layer) -> the state_dict key of its parameter
        self.holds_params = holds_params  # id(layer) of layers with variables in the flat network
        self.count: dict[int, int] = {}  # id(call) -> layers made in it (and in the calls it made)
        for layer in layers:  # (parameters go to their module's subnetwork: not counted)
            for c in _chain(layer) if id(layer) not in param_keys else ():
                self.count[id(c)] = self.count.get(id(c), 0) + 1
        self.root: dict = {}
        self.dicts: dict[Loc, dict] = {(): self.root}  # loc -> the net dict of that (sub)network
        self.namers: dict[Loc, Namer] = {(): Namer()}
        self.sub_locs: dict[int, Loc] = {}  # id(call) -> loc of its subnetwork
        self.loc_paths: dict[Loc, str] = {(): ""}  # loc -> the module path of its call
        self.results: dict[Loc, Layer] = {}  # loc -> the layer the subnetwork's call returned
        self.place: dict[int, tuple[Loc, str]] = {}  # id(layer) -> (loc, name)
        self.referenced: set[int] = set()

    def is_sub(self, call: Call) -> bool:
        return bool(call.path) and self.count.get(id(call), 0) >= 2

    def sub_loc(self, call: Call | None) -> tuple[Loc, Call | None]:
        """The loc of the subnetwork of the deepest subnetwork call in ``call``'s chain (and that call)."""
        subs = [c for c in (call.chain() if call is not None else []) if self.is_sub(c)]
        if not subs:
            return (), None
        for c in subs:
            if id(c) not in self.sub_locs:
                parent_loc, parent = self.sub_loc(c.parent)
                name = self.take(parent_loc, _rel(c.path, parent.path if parent else ""))
                loc = parent_loc + (name,)
                self.sub_locs[id(c)], self.loc_paths[loc] = loc, c.path
                self.dicts[loc], self.namers[loc] = {}, Namer()
                if c.result is not None:
                    self.results[loc] = c.result.final()
        return self.sub_locs[id(subs[-1])], subs[-1]

    def locate(self, layer: Layer) -> None:
        """Where ``layer`` goes in the nested network, and its name there."""
        key = self.param_keys.get(id(layer))
        chain = _chain(layer)
        if key is not None:  # a parameter: in the subnetwork of its module (or an enclosing one)
            owner = next((c for c in reversed(chain) if self.is_sub(c) and key.startswith(c.path + ".")), None)
            loc, _ = self.sub_loc(owner)
            name = self.take(loc, _rel(key, owner.path) if owner else key)
        else:
            loc, sub = self.sub_loc(layer.call)
            below = chain[chain.index(sub) + 1:] if sub is not None else [c for c in chain if c.path]
            if sub is not None and sub.result is not None and sub.result.final() is layer and not below:
                name = self.namers[loc].claim("output")
            else:  # the one layer of a module call is named by the module
                rel = _rel(below[0].path if below else layer.name, sub.path if sub else "")
                name = self.take(loc, rel)
        self.place[id(layer)] = (loc, name)
        if layer.alias is not None:  # the cast standing for it (dtype fix)
            self.place[id(layer.alias)] = (loc, self.take(loc, f"{name}_cast"))

    def take(self, loc: Loc, name: str) -> str:
        """A free layer name in the network at ``loc`` (``output`` only at the top: the capture's output)."""
        return self.namers[loc].unique(name) if loc else self.namers[loc].claim(name)

    def ref(self, target: Layer, here: Loc) -> str:
        """The name of ``target`` as seen from the network at ``here``."""
        t = target.final()
        if t.parent is not None:  # a sub-layer of a rec layer
            return f"{self.ref(t.parent, here)}/{t.name}"
        self.referenced.add(id(t))
        if id(t) not in self.place:  # extern data
            return "base:" * len(here) + t.name
        loc, name = self.place[id(t)]
        while loc and self.results.get(loc) is t and here[:len(loc)] != loc:  # the subnetwork's result
            loc, name = loc[:-1], loc[-1]
        c = 0
        while c < min(len(loc), len(here)) and loc[c] == here[c]:
            c += 1
        return "base:" * (len(here) - c) + "/".join(loc[c:] + (name,))

    def open(self, loc: Loc) -> None:
        """The ``subnetwork`` layer of ``loc`` in its parent network (added where its first layer is written)."""
        if loc and loc[-1] not in self.dicts[loc[:-1]]:
            self.open(loc[:-1])
            self.dicts[loc[:-1]][loc[-1]] = {"class": "subnetwork", "from": [], "subnetwork": self.dicts[loc]}

    def write(self, layer: Layer) -> None:
        loc, name = self.place[id(layer)]
        self.open(loc)
        d = to_names(layer.desc, lambda x: self.ref(x, loc))
        key = self.param_keys.get(id(layer))
        if key is not None and loc:  # TF name <subnetwork>/<module>/<param>, as in the flat network
            rest = _rel(key, self.loc_paths[loc])
            d["name_scope"] = rest.rsplit(".", 1)[0] if "." in rest else ""
        self.dicts[loc][name] = d
        cast = layer.alias
        if cast is not None:  # (its "from" is the layer itself, which other layers read through the cast)
            self.dicts[loc][self.place[id(cast)][1]] = to_names(cast.desc, lambda x: name if x is layer else
                                                                self.ref(x, loc))

    def finish(self, layers: list[Layer]) -> None:
        for loc, sub in self.dicts.items():
            if loc and "output" not in sub:
                result = self.results.get(loc)
                src = self.ref(result, loc) if result is not None else next(iter(sub))
                sub["output"] = {"class": "copy", "from": src}
        for layer in layers:  # parameters RETURNN would not build: nothing reads the layer
            loc, name = self.place[id(layer)]
            if id(layer) in self.holds_params and id(layer) not in self.referenced and name != "output" \
                    and not self.dicts[loc][name].get("is_output_layer"):
                self.dicts[loc][name]["is_output_layer"] = True


def _chain(layer: Layer) -> list[Call]:
    return layer.call.chain() if layer.call is not None else []


def nest(layers: list[Layer], param_keys: dict[int, str], holds_params: set[int]) -> tuple[dict, dict[int, str]]:
    """The nested net dict of the constructed ``layers`` (in creation order) and {id(layer): its path in
    the nested network}. ``param_keys``: {id(variable layer): state_dict key}; ``holds_params``: ids of
    the layers that have variables."""
    n = _Nester(layers, param_keys, holds_params)
    for layer in layers:
        n.locate(layer)
    for layer in layers:
        n.write(layer)
    n.finish(layers)
    return n.root, {k: "/".join(loc + (name,)) for k, (loc, name) in n.place.items()}


def copy_params(flat_net: Any, flat_session: Any, nested_net: Any, nested_session: Any, layers: list[Layer],
                paths: dict[int, str]) -> dict[str, str]:
    """Load the flat network's variables into the nested network (layer by layer); returns {flat TF
    variable name: nested TF variable name}."""
    pairs = []
    for layer in layers:
        for lay in (layer, layer.alias) if layer.alias is not None else (layer,):
            src = flat_net.get_layer(lay.path).params
            if not src:
                continue
            dst = nested_net.get_layer(paths[id(lay)]).params
            pairs += [(src[k], dst[k]) for k in src]
    values = flat_session.run([s for s, _ in pairs]) if pairs else []
    with nested_session.graph.as_default(), quiet():
        feed = {d.initializer.inputs[1]: np.asarray(v) for (_, d), v in zip(pairs, values)}
        if feed:
            nested_session.run([d.initializer for _, d in pairs], feed_dict=feed)
    return {s.op.name: d.op.name for s, d in pairs}


class Nested:
    """The nested network of a finished capture, built from its written config in its own graph: ``net_dict``,
    ``network``, ``session``, ``param_map`` (TF names of the nested network) and ``run``."""

    def __init__(self, builder: Any, write_config: Any, flat_session: Any, feeder: Any, inputs: Any, dims: Any,
                 feeds: list, options: Any, output_names: list[str]):
        layers = [x for x in builder.layers if x.built and not x.unsupported and x.desc is not None
                  and x.parent is None and (builder.written is None or id(x) in builder.written)]
        flat = builder.network
        holds = {id(x) for x in layers if flat.get_layer(x.path).params}
        self.net_dict, self.paths = nest(layers, builder.held.variable_layers(), holds)
        self.built = ConfigNetwork(write_config(live_net(self.net_dict)))  # (variables set from the flat network's)
        self.network, self.session = self.built.network, self.built.session
        var_map = copy_params(flat, flat_session, self.network, self.session, layers, self.paths)
        by_flat = {x.path: self.paths[id(x.final())] for x in layers}
        self.param_map = {}
        for key, e in builder.param_map.items():
            missing = [v for v in e["tf_vars"] if v not in var_map]
            if missing:
                raise CaptureError(f"nested=True: the variables {missing} of {key!r} have no place in the nested "
                                   "network")
            self.param_map[key] = dict(e, tf_vars=[var_map[v] for v in e["tf_vars"]], layer=by_flat[e["layer"]])
        self.output_names = output_names
        self.check(feeder, flat_session, [inputs.values[k] for k in inputs.order], dims.given_lengths(), feeds,
                   options.atol, options.rtol)

    def check(self, feeder: Any, flat_session: Any, args: list, given: dict, feeds: list, atol: float,
              rtol: float) -> None:
        """The nested network's outputs on the capture's inputs equal the (checked) flat network's."""
        flat_net = feeder.network
        feed = feeder.feed(args, known_lengths=given)
        want = flat_session.run([flat_net.get_layer(n).output.placeholder for n in self.output_names], feed)
        by_name = {d.description: given[id(d)] for k in feeder.input_keys for d in flat_net.extern_data.data[k].dims
                   if id(d) in given}  # (the nested network has its own dims)
        feed = self.built.feeder.feed(args, seq_lens=by_name, known_lengths={})
        for f in feeds:  # torch's random values (see parity.Feed), in the nested network's layers
            layer = f.ref.layer.final()
            feed[self.network.get_layer(self.paths[id(layer)]).output.placeholder] = layer_feed(f, np_value(f.value))
        got = self.session.run([self.network.get_layer(n).output.placeholder for n in self.output_names], feed)
        for name, g, w in zip(self.output_names, got, want):
            if not close(g, w, atol, rtol):
                diff = differences(g, w) if g.shape == w.shape else None
                why = f"shapes {g.shape}, {w.shape}" if diff is None else diff[3] or f"max abs diff {diff[0]:.3g}"
                raise ParityError(f"nested=True: output {name!r} of the nested network differs from the flat "
                                  f"network's: {why}")

    def run(self, *inputs: Any, seq_lens: dict | None = None) -> Any:
        return self.built.run(*inputs, seq_lens=seq_lens)


def note_result(call: Call | None, output: Any) -> None:
    """``output`` (a tensor, or the first captured tensor of a tuple/list/dict) is the result of ``call``
    where ``call`` made its layer."""
    ref = next((t._rt_ref for t in result_items(output) if getattr(t, "_rt_ref", None) is not None), None)
    if call is not None and ref is not None and ref.layer.call is not None and call in ref.layer.call.chain():
        call.result = ref.layer
