"""Handlers, one module per op family; importing this package fills the registry.

``common`` holds the builders the families share; ``meta`` the metadata queries that build no
layer; ``registry`` the table from torch callables to handlers.
"""

from . import (  # noqa: F401
    activation,
    attention,
    conv,
    elementwise,
    factory,
    fft,
    index,
    linalg,
    linear,
    losses,
    mathfn,
    meta,
    norm,
    order,
    pad,
    pool,
    pool_extra,
    random,
    reduce,
    reshape,
    rnn,
    scatter,
    shape,
    shape_extra,
    sorting,
    special_poly,
    subscript,
)
from .registry import all_handlers, handles, lookup, register, unregister

__all__ = ["register", "unregister", "handles", "lookup", "all_handlers"]
