"""fungrad: a scalar automatic differentiation engine, the functional way.

Expressions are immutable graphs of frozen nodes, ``grad(f)`` is a pure
function transform, models are pytrees of floats and optimizer steps are pure
functions.

>>> import fungrad as fg
>>> fg.grad(lambda x: 3 * x**2 - 4 * x + 5)(3.0)
14.0
"""

from __future__ import annotations

import importlib
from typing import Any

from . import tree
from .autodiff import gradients, grad, hessian, jacobian, toposort, value_and_grad
from .expr import (
    PRIMITIVES,
    Node,
    Primitive,
    abs,
    add,
    const,
    cos,
    debug_nans,
    div,
    exp,
    is_node,
    log,
    mul,
    named,
    neg,
    pow,
    relu,
    sigmoid,
    sign,
    sin,
    sqrt,
    step,
    sub,
    tanh,
    var,
    where,
)
from .jit import jit

__version__ = "0.1.0"

# Modules beyond the core load on first use, so `import fungrad` stays light
# and optional dependencies are only needed by the features that use them.
_LAZY_MODULES = {"graph", "viz", "nn", "optim", "data", "checkpoint", "train", "testing", "cli"}
_LAZY_NAMES = {
    "to_networkx": "graph",
    "graph_stats": "graph",
    "check_grads": "testing",
}

__all__ = [
    "Node",
    "Primitive",
    "PRIMITIVES",
    "var",
    "const",
    "named",
    "is_node",
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "pow",
    "exp",
    "log",
    "tanh",
    "relu",
    "sigmoid",
    "sqrt",
    "sin",
    "cos",
    "abs",
    "sign",
    "step",
    "where",
    "debug_nans",
    "gradients",
    "grad",
    "value_and_grad",
    "jacobian",
    "hessian",
    "toposort",
    "jit",
    "to_networkx",
    "graph_stats",
    "check_grads",
    "tree",
    "graph",
    "viz",
    "nn",
    "optim",
    "data",
    "checkpoint",
    "train",
    "testing",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'fungrad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
