"""The package's shape: no import cycles (module- or function-level), small files, handlers that
see only ``ctx``, no imports inside functions."""

import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "torchdispatch_returnn")


def _modules() -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: str, modules: dict) -> list[tuple[str, bool]]:
    """(imported package module, inside a function) for each import of ``name``."""
    tree = ast.parse(open(path).read())
    is_pkg = path.endswith("__init__.py")
    found = []

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in child.names]
            for t in targets:
                if t in modules and t != name:
                    found.append((t, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def test_no_import_cycles_and_no_imports_in_functions():
    modules = _modules()
    graph = {m: set() for m in modules}
    in_functions = []
    for m, path in modules.items():
        for target, inner in _imports(m, path, modules):
            if not m.startswith(target + "."):  # a submodule's package __init__ is not a dependency cycle
                graph[m].add(target)
            if inner:
                in_functions.append(f"{m} -> {target}")
    assert not in_functions, f"imports inside functions: {in_functions}"
    state, stack, cycles = {}, [], []

    def dfs(m):
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)
    assert not cycles, f"import cycles: {cycles}"


def test_file_sizes():
    sizes = {m: len(open(p).read().splitlines()) for m, p in _modules().items()}
    assert sizes["torchdispatch_returnn.capture"] <= 250
    assert not {m: n for m, n in sizes.items() if n > 400}


@pytest.mark.parametrize("needle", ["ctx.capture", "_record(", "ctx._", "._rt_", "helper="])
def test_handlers_see_only_ctx(needle):
    hdir = os.path.join(PKG, "handlers")
    bad = [f for f in os.listdir(hdir) if f.endswith(".py") and needle in open(os.path.join(hdir, f)).read()]
    assert not bad, f"{needle!r} in {bad}"
