"""``returnn_capture``: run PyTorch code once and mirror every op as a RETURNN layer.

On entry the capture creates its own ``tf.Graph``/``Session``, installs global module forward
hooks (module-path stack, inputs and outputs of the outermost call) and a ``TorchFunctionMode``
(factories, parameter ops). On exit, always, it removes them; then, if the block succeeded, it
constructs the layers, loads the weights, adds the ``output`` layers and checks parity.
The work is done by the parts named in docs/ARCHITECTURE.md; this module only ties them together.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from . import handlers, verify  # noqa: F401  (importing the handler modules fills the registry)
from ._backend import TFNetwork, ensure_returnn, new_session, tf
from .builder import Builder, captured_by
from .dims import DimRegistry
from .dispatch import Dispatcher, FunctionMode
from .errors import CaptureError, ParityError
from .export import config_code, save_checkpoint, write_param_map, write_text
from .handlers.registry import lookup
from .inputs import Inputs
from .naming import ModuleScopes
from .nesting import Nested, note_result
from .parity import NotebookView, ParityReport, Recorder
from .runtime import ArgSpec, Feeder, Fetcher, ReusedRuns, run_outputs
from .sinks import Sinks
from .tensor import ReturnnTensor, plain, wrap


class Capture(NotebookView):
    """``with returnn_capture(...) as net``: capture the PyTorch code run in the block as a RETURNN network.

    ``lengths``: forward arguments holding the sequence lengths of a dim, e.g. ``{"lengths": "time"}``;
    ``nested=True``: the modules as subnetworks (:mod:`.nesting`); checks: :class:`verify.Options`; docs/API.md."""

    def __init__(self, dynamic_shapes: Any = None, *, lengths: dict | None = None, **options: Any):
        self._progress, self._nest = options.pop("progress", True), options.pop("nested", False)
        self.options = verify.Options(**options)
        self.nested: Nested | None = None  # nested=True: the network with the modules as subnetworks
        self.train = self.options.train
        self._spec = (dynamic_shapes, lengths)
        self.graph, self.session = None, None  # (of the flat network; with nested=True, session is the nested one's)
        self.parity: ParityReport | None = None
        self._hooks, self._mode = [], None  # (module hooks, FunctionMode)
        self._leaf_stack: list = []  # (module, args, stack depth) of leaf modules being run
        self._outputs, self._explicit_outputs = [], False  # (name, Ref) of the outputs; marked by net.output()
        self._root_output, self._root_kwargs = None, {}
        self._fetch, self._feeder = None, None  # (Fetcher, Feeder of the flat network)

    # ------------------------------------------------------------------ context management
    def __enter__(self) -> Capture:
        if self.graph is not None:
            raise CaptureError("a returnn_capture object can be entered only once")
        ensure_returnn()
        self.graph = tf.Graph()
        self.session = new_session(self.graph, optimize=False)
        self.dims = DimRegistry(self.graph)
        self.scopes = ModuleScopes()
        self.recorder = Recorder(self.train, self._progress)
        self.builder = Builder(self.graph, self.dims, self.scopes, self.train, self.recorder.progress)
        self.dispatcher = Dispatcher(self.builder, self.recorder, self.scopes, strict=self.options.strict)
        self.inputs = Inputs(self.builder, self.dispatcher, *self._spec)
        mm = torch.nn.modules.module
        self._hooks = [mm.register_module_forward_pre_hook(self._pre_hook),
                       mm.register_module_forward_hook(self._post_hook, always_call=True, with_kwargs=True)]
        self._mode = FunctionMode(self.dispatcher)
        try:
            self._mode.__enter__()
        except BaseException:
            self._remove_hooks()
            raise
        self.dispatcher.active = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.dispatcher.active = False
        try:
            if self._mode is not None:
                self._mode.__exit__(None, None, None)
        finally:
            self._mode = None
            self._remove_hooks()
        if exc_type is not None:
            self.scopes.clear()
            return self.recorder.progress.close()
        with self.recorder.progress:  # the progress display: building layers, then the checks; closed at the end
            self._finish()

    def _remove_hooks(self) -> None:
        mm = torch.nn.modules.module
        for h in self._hooks:
            h.remove()
            mm._global_forward_hooks_with_kwargs.pop(h.id, None)  # torch's remove() leaves this entry
        self._hooks = []

    # ------------------------------------------------------------------ module hooks
    def _pre_hook(self, module: torch.nn.Module, args: tuple) -> Any:
        if not self.dispatcher.active:
            return None
        result = None
        if not self.scopes.depth:
            self.scopes.add_root(module)
            if not self.inputs.extern_data:
                result = self.inputs.define_from_call(module, args)
        self.scopes.push(module)
        h = lookup(type(module)) if not self.dispatcher.suspended else None
        if h is not None and h.module:
            self._leaf_stack.append((module, result if result is not None else args, self.scopes.depth))
            self.dispatcher.suspended += 1  # the module's own ops run in plain torch
        return result

    def _post_hook(self, module: torch.nn.Module, args: tuple, *rest) -> Any:
        output = rest[-1] if rest else None
        kwargs = rest[0] if len(rest) == 2 else {}
        leaf = None
        if self._leaf_stack and self._leaf_stack[-1][0] is module and self._leaf_stack[-1][2] == self.scopes.depth:
            leaf = self._leaf_stack.pop()
            self.dispatcher.suspended -= 1
        path = self.scopes.pop()
        if path is None or not self.dispatcher.active or output is None:
            return None
        note_result(self.scopes.finished, output)
        if leaf is not None:
            output = self.dispatcher.run_module(module, path, leaf[1], kwargs, output)
            if not self.scopes.depth:
                self._root_output = output
            return output
        if not self.scopes.depth:
            self._root_output, self._root_kwargs = output, kwargs
            return None
        if path and captured_by(output, self.dispatcher):  # the module's result, named by its path
            ref = self.dispatcher.module_result(output._rt_ref, path)
            return None if ref is output._rt_ref else wrap(plain(output), ref, self.dispatcher)
        return None

    # ------------------------------------------------------------------ inputs / outputs
    def input(self, tensor: torch.Tensor, name: str = "data", dynamic: dict | None = None) -> ReturnnTensor:
        """Mark ``tensor`` as a network input (for free functions); returns the tensor to use."""
        if self.graph is None or not self.dispatcher.active:
            raise CaptureError("net.input() can only be used inside the capture block")
        return self.inputs.mark(tensor, name, dynamic)

    def output(self, tensor: torch.Tensor, name: str | None = None) -> None:
        """Mark ``tensor`` as a network output (``output``, ``output_1``, ...)."""
        if not captured_by(tensor, getattr(self, "dispatcher", None)):
            raise CaptureError("net.output() needs a tensor computed inside this capture from its inputs")
        if not self._explicit_outputs:
            self._explicit_outputs = True
            self._outputs = []
        name = name or ("output" if not self._outputs else f"output_{len(self._outputs)}")
        self._outputs.append((name, tensor._rt_ref))

    # ------------------------------------------------------------------ finishing
    def _finish(self) -> None:
        """Construct the layers and outputs, load the weights, run the parity check."""
        self.inputs.require()
        if self.dispatcher.unsupported:
            raise self.dispatcher.missing_error()
        outs = self._outputs if self._explicit_outputs else self.inputs.root_outputs(self._root_output)
        if not outs:
            raise CaptureError("the captured code returned no tensor computed from its inputs; use net.output()")
        self._outputs = self.builder.add_outputs(outs)
        self.builder.flush()
        self.builder.keep_needed([f.ref.layer for f in self.recorder.feeds])
        self._fetch = Fetcher(self.network, self.graph, [ref for _, ref in self._outputs])
        sinks = Sinks(self._fetch, [r for r in self.recorder.records if r.check], bool(self.dims.given_lengths()))
        self.builder.load_weights(self.session)
        self._feeder = Feeder(self.network, self.inputs.order, [ArgSpec(*a) for a in self.inputs.forward_args])
        runs = ReusedRuns(self.session)  # (the checks' runs: TF's executors reused)
        self.parity = verify.parity_run(self.recorder, runs, sinks, self._feeder, self.inputs, self.dims, self.options)
        self.parity.guards = self.dims.guards.described()
        if self.parity.ok and self._nest:  # (checked against this flat network: nesting.py)
            self.recorder.progress.stage("building the nested network")
            self.nested = Nested(self.builder, self._config_of, self.session, self._feeder, self.inputs, self.dims,
                                 self.recorder.feeds, self.options, [name for name, _ in self._outputs])
            self.session = self.nested.session
        if self.parity.ok and self.inputs.call is not None:
            verify.more_checks(self.parity, self.options, self.inputs, self._root_kwargs, sinks, self._feeder,
                               runs, self.dims, self.config_code, self.save_checkpoint, self.param_map,
                               [ref for _, ref in self._outputs])
        if self.options.check and not self.parity.ok:
            raise ParityError(self.parity.failure_message(), report=self.parity)

    def _require_finished(self, what: str) -> None:
        if self.parity is None:
            raise CaptureError(f"{what} is available after the capture block has finished")

    # ------------------------------------------------------------------ public facade
    @property
    def network(self) -> TFNetwork | None:
        return None if self.graph is None else self.nested.network if self.nested else self.builder.network

    @property
    def net_dict(self) -> dict:
        return self.nested.net_dict if self.nested else self.builder.net_dict if self.network is not None else {}

    @property
    def extern_data(self) -> dict:
        return self.inputs.extern_data if self.graph is not None else {}

    @property
    def param_map(self) -> dict:
        return {} if self.graph is None else self.nested.param_map if self.nested else self.builder.param_map

    @property
    def ops_seen(self) -> set:
        return self.dispatcher.ops_seen if self.graph is not None else set()

    @property
    def unsupported(self) -> list[dict]:
        """The ops without conversion (``strict=False``), grouped by torch callable."""
        return self.dispatcher.missing_ops() if self.graph is not None else []

    def config_code(self, subnetwork: str | None = None) -> str:
        """Python source of a complete RETURNN config for the network (as one subnetwork layer of
        that name: its checkpoint loads with ``preload_from_files`` prefix ``"<name>/"``)."""
        self._require_finished("config_code()")
        return self._config_of(self.net_dict, subnetwork)

    def _config_of(self, net_dict: dict, subnetwork: str | None = None) -> str:
        return config_code(self.dims, self.inputs.extern_data, self.inputs.order, net_dict,
                           self._feeder.forward_args, [name for name, _ in self._outputs], subnetwork)

    def save_config(self, path: str, subnetwork: str | None = None) -> str:
        """Write the config to ``path`` and ``param_map.json`` beside it; returns the config's path."""
        out = write_text(path, self.config_code(subnetwork))
        write_param_map(os.path.join(os.path.dirname(out), "param_map.json"), self.param_map)
        return out

    def save_checkpoint(self, path: str) -> str:
        """A TF checkpoint of the network's parameters (loads into the config's network)."""
        self._require_finished("save_checkpoint()")
        return save_checkpoint(self.network, self.session, path)

    def run(self, *inputs: Any, seq_lens: dict | None = None) -> Any:
        """Run the live network on the forward's arguments; numpy outputs in torch axis order."""
        self._require_finished("run()")
        if self.nested:
            return self.nested.run(*inputs, seq_lens=seq_lens)
        feed = self._feeder.feed(inputs, seq_lens)
        return run_outputs(self.session, feed, [self._fetch(r) for _, r in self._outputs])


#: ``returnn_capture(dynamic_shapes=None, *, lengths=None, train=False, check=True, atol=1e-5, rtol=1e-5,
#: strict=True, self_check=True, check_grads=False, progress=True)``: see :class:`Capture` and docs/API.md
returnn_capture = Capture
