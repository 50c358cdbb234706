"""Errors and hygiene: messages with locations, no torch state left behind."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from torchdispatch_returnn import (
    CaptureError,
    InputSpecError,
    ParityError,
    UnsupportedOpError,
    register,
    returnn_capture,
    unregister,
)
from torchdispatch_returnn.tensor import ReturnnTensor


def _torch_state_clean():
    mm = torch.nn.modules.module
    assert not mm._global_forward_hooks and not mm._global_forward_pre_hooks
    assert torch._C._len_torch_function_stack() == 0
    y = torch.ones(2) + 1
    assert type(y) is torch.Tensor


class Airy(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(3, 3))

    def forward(self, x):
        return torch.special.airy_ai(self.inner(x))  # AIRY_LINE


def test_unsupported_op_names_function_module_and_line():
    x = torch.randn(2, 4, 3)
    with pytest.raises(UnsupportedOpError) as ei:
        with returnn_capture(dynamic_shapes=({1: "time"},)):
            Airy()(x)
    msg = str(ei.value)
    line = next(i for i, text in enumerate(open(__file__).read().splitlines(), 1) if "# AIRY_LINE" in text)
    assert "torch.special.airy_ai" in msg
    assert f"{__file__}:{line}" in msg
    assert isinstance(ei.value, NotImplementedError) and isinstance(ei.value, CaptureError)
    _torch_state_clean()


def test_unsupported_op_inside_submodule_names_module_path():
    class Inner(nn.Module):
        def forward(self, x):
            return torch.special.airy_ai(x)

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleList([Inner()])

        def forward(self, x):
            return self.enc[0](x)

    with pytest.raises(UnsupportedOpError, match=r"module path 'enc\.0'"):
        with returnn_capture():
            Outer()(torch.randn(2, 3))
    _torch_state_clean()


@pytest.mark.parametrize("spec, match", [
    (({5: "time"},), "out of range"),
    (({"1": "time"},), "axis must be an int"),
    ("time", "tuple"),
    ({"nonexistent": {1: "time"}}, "nonexistent"),
    (({1: "time"}, {1: "time"}), "2 entries"),
    (({0: "batch", 1: "batch"},), "more than one axis named 'batch'"),
    (({0: "time"},), "name the batch axis explicitly"),
])
def test_bad_dynamic_shapes(spec, match):
    with pytest.raises(InputSpecError, match=match):
        with returnn_capture(dynamic_shapes=spec):
            nn.Linear(3, 3)(torch.randn(2, 4, 3))
    _torch_state_clean()


def test_input_spec_error_is_value_error():
    assert issubclass(InputSpecError, ValueError)


def test_run_with_wrong_static_size():
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        nn.Linear(3, 3)(torch.randn(2, 4, 3))
    with pytest.raises(InputSpecError, match="static"):
        net.run(torch.randn(2, 4, 5))


def test_parity_error_names_op_layer_and_line():
    def bad(ctx, x):  # a deliberately wrong handler: cos instead of sinc (replaces the built-in one)
        r = ctx.ref(x)
        return ctx.eval("tf.cos(source(0))", [r], r.dims)

    register(torch.sinc, bad, override=True)
    try:
        class M(nn.Module):
            def forward(self, x):
                return torch.sinc(x) * 2

        with pytest.raises(ParityError) as ei:
            with returnn_capture(dynamic_shapes=({1: "time"},)):
                M()(torch.randn(2, 5, 3))
        assert "torch.sinc" in str(ei.value) and "'sinc'" in str(ei.value) and __file__ in str(ei.value)
        assert isinstance(ei.value, AssertionError)
        _torch_state_clean()
        with returnn_capture(dynamic_shapes=({1: "time"},), check=False) as net:
            M()(torch.randn(2, 5, 3))
        assert not net.parity.ok
        assert [r.layer for r in net.parity.failures] == ["sinc", "mul"]
    finally:
        unregister(torch.sinc)


def test_exception_in_user_code_restores_state():
    class Boom(nn.Module):
        def forward(self, x):
            x = x * 2
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with returnn_capture():
            Boom()(torch.randn(2, 3))
    _torch_state_clean()


def test_no_interception_outside_block():
    model = nn.Linear(3, 3)
    with returnn_capture() as net:
        y = model(torch.randn(2, 3))
    assert isinstance(y, ReturnnTensor)
    z = model(y)  # after the block: plain torch, nothing recorded
    assert type(z) is torch.Tensor
    n_layers = len(net.net_dict)
    torch.relu(y)
    assert len(net.net_dict) == n_layers
    _torch_state_clean()


def test_nothing_captured_is_an_error():
    with pytest.raises(CaptureError, match="nothing was captured"):
        with returnn_capture():
            torch.ones(3) + 1
    _torch_state_clean()


def test_capture_object_is_single_use():
    cap = returnn_capture()
    with cap:
        nn.Linear(2, 2)(torch.randn(1, 2))
    with pytest.raises(CaptureError, match="only once"):
        with cap:
            pass


def test_behavior_version_conflict_message():
    code = (
        "from returnn.util.basic import BehaviorVersion\n"
        "BehaviorVersion.set(21)\n"
        "import torch, torchdispatch_returnn as t\n"
        "try:\n"
        "    with t.returnn_capture():\n"
        "        torch.nn.Linear(2, 2)(torch.randn(1, 2))\n"
        "except t.CaptureError as e:\n"
        "    print('ERR', e)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "ERR RETURNN's behavior_version is already set to 21" in out.stdout, out.stdout + out.stderr


# -- the error contract: every failure is a CaptureError naming the callable and the user's line ----------
def _line_of(tag: str) -> str:
    line = next(i for i, text in enumerate(open(__file__).read().splitlines(), 1) if tag in text)
    return f"{__file__}:{line}"


def test_handler_not_implemented_becomes_unsupported_with_reason():
    class M(nn.Module):
        def forward(self, x):
            return torch.split(x, 2, dim=1)[0]  # SPLIT_LINE

    with pytest.raises(UnsupportedOpError) as ei:
        with returnn_capture(dynamic_shapes=({1: "time"},)):
            M()(torch.randn(2, 6, 3))
    msg = str(ei.value)
    assert "torch.functional.split" in msg and "split/chunk along a dynamic axis" in msg and _line_of("# SPLIT_LINE") in msg
    assert isinstance(ei.value.__cause__, NotImplementedError)
    _torch_state_clean()


def test_returnn_build_failure_names_layer_dict_and_op():
    def bad(ctx, x):  # a layer RETURNN cannot build
        r = ctx.ref(x)
        return ctx.layer({"class": "activation", "from": r, "activation": "no_such_activation"}, r.dims)

    register(torch.special.entr, bad, override=True)
    try:
        class M(nn.Module):
            def forward(self, x):
                return torch.special.entr(x.abs()) + 1  # ENTR_LINE

        with pytest.raises(CaptureError) as ei:
            with returnn_capture(dynamic_shapes=({1: "time"},)):
                M()(torch.randn(2, 5, 3))
        msg = str(ei.value)
        assert "torch.special.entr" in msg and _line_of("# ENTR_LINE") in msg
        assert "RETURNN could not build layer 'special_entr'" in msg and "no_such_activation" in msg
        assert ei.value.__cause__ is not None
    finally:
        unregister(torch.special.entr)
    _torch_state_clean()


def test_wrong_dims_claim_is_a_build_error():
    def bad(ctx, x):  # claims to keep all dims, but reduces the last one
        r = ctx.ref(x)
        return ctx.layer({"class": "reduce", "from": r, "mode": "sum", "axes": [r.dims[-1]]}, r.dims)

    class M(nn.Module):
        def forward(self, x):
            return torch.special.entr(x)

    register(torch.special.entr, bad, override=True)
    try:
        with pytest.raises(CaptureError, match=r"has dims .* expected"):
            with returnn_capture(dynamic_shapes=({1: "time"},)):
                M()(torch.randn(2, 5, 3))
    finally:
        unregister(torch.special.entr)


def test_tf_failure_at_parity_run_names_op_and_layer():
    def bad(ctx, x):  # builds fine, fails when run (reshape to a wrong size)
        r = ctx.ref(x)
        return ctx.eval("tf.reshape(source(0), [7, -1, 3])", [r], r.dims)

    register(torch.special.entr, bad, override=True)
    try:
        class M(nn.Module):
            def forward(self, x):
                return torch.special.entr(x) * 2  # RUN_LINE

        with pytest.raises(CaptureError) as ei:
            with returnn_capture(dynamic_shapes=({1: "time"},)):
                M()(torch.randn(2, 5, 3))
        msg = str(ei.value)
        assert "torch.special.entr" in msg and "'special_entr'" in msg and _line_of("# RUN_LINE") in msg
        assert "failed in TensorFlow" in msg and "Input to reshape" in msg and len(msg.splitlines()) < 5
    finally:
        unregister(torch.special.entr)


def test_handler_crash_is_a_capture_error_with_location():
    def bad(ctx, x):
        return {}["boom"]

    register(torch.special.entr, bad, override=True)
    try:
        class M(nn.Module):
            def forward(self, x):
                return torch.special.entr(x)  # CRASH_LINE

        with pytest.raises(CaptureError) as ei:
            with returnn_capture():
                M()(torch.randn(2, 3))
        assert "torch.special.entr" in str(ei.value) and _line_of("# CRASH_LINE") in str(ei.value)
        assert isinstance(ei.value.__cause__, KeyError)
    finally:
        unregister(torch.special.entr)
    _torch_state_clean()


def test_register_over_builtin_says_how_to_replace_it():
    def mine(ctx, x):
        r = ctx.ref(x)
        return ctx.eval("tf.sigmoid(source(0))", [r], r.dims)

    with pytest.raises(ValueError, match=r"unregister.*override=True"):
        register(torch.sigmoid, mine)
    register(torch.sigmoid, mine, override=True)
    unregister(torch.sigmoid)  # the built-in handler comes back
    with returnn_capture() as net:
        nn.Sigmoid()(torch.randn(2, 3))
    assert net.parity.ok and net.ops_seen


def test_readme_handler_example_runs_as_printed():
    readme = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")).read()
    section = readme.split("### Writing a handler", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    _torch_state_clean()
