"""Layer names for a capture: module attribute paths plus op names.

A layer's name is ``<module path>.<op>``: the dotted attribute path of the module whose
forward ran the op (``layers.0.self_attn``), then the op's short name (``matmul``,
``add``, ``softmax``); ops run directly by the outermost module have no prefix. A module
call's result also gets a ``copy`` layer named by the module path itself, so the net dict
mirrors the module tree. Parameters and buffers are ``variable`` layers named by their
``state_dict`` key. Repeated names get ``_1``, ``_2``, ... suffixes (a module called twice:
``ff``, ``ff_1``). Names never contain ``/`` (RETURNN reads it as a path).
"""

from .scopes import Namer, op_short_name

__all__ = ["Namer", "op_short_name"]
