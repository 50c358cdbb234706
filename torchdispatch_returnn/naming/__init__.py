"""Layer names for a capture: module attribute paths plus op names.

A layer's name is ``<module path>.<op>``: the dotted attribute path of the module whose forward
ran the op (``layers.0.self_attn``), then the op's short name (``matmul``, ``add``, ``softmax``);
ops run directly by the outermost module have no prefix. An op's other layers are named by
their role (``linear_dot``, ``add_rename``). A module call's result is its last op's layer renamed to
the module path itself, so the net dict mirrors the module tree (``nested=True`` regroups the layers
by module call into subnetworks: :mod:`..nesting`). Parameters and buffers
are ``variable`` layers named by their ``state_dict`` key. Repeated names get ``_1``, ``_2``, ...
suffixes (a module called twice: ``ff``, ``ff_1``). Names never contain ``/`` (RETURNN reads it
as a path). Handlers never name layers: the capture names what they build. The dims a config declares
are named by module path and role (:mod:`.dimnames`).
"""

from .scopes import ModuleScopes, Namer, op_short_name, role_of

__all__ = ["Namer", "ModuleScopes", "op_short_name", "role_of"]
