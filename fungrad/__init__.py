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

from . import codegen, expr, tree
from .autodiff import gradients, grad, jacobian, jacrev, toposort, value_and_grad
from .expr import (
    CONST,
    PRIMITIVES,
    ForeignNodeError,
    Node,
    Primitive,
    affine,
    const,
    custom_vjp,
    debug_nans,
    is_node,
    named,
    primitive,
    var,
)
from .batch import export, vmap
from .forward import hessian, hvp, jacfwd, jvp, linearize, vjp
from .jit import jit

# the op functions (fg.exp, fg.atan2, ...), one per public row of the table
globals().update({name: expr.OPS[name] for name, p in PRIMITIVES.items() if p.public})

__version__ = "0.2.0"

# Modules beyond the core load on first use, so `import fungrad` stays light
# and optional dependencies are only needed by the features that use them.
_LAZY_MODULES = {"graph", "viz", "nn", "optim", "data", "checkpoint", "train", "testing", "cli"}
_LAZY_NAMES = {
    "to_networkx": "graph",
    "graph_stats": "graph",
    "check_grads": "testing",
}

__all__ = [
    *expr.__all__,
    "gradients",
    "grad",
    "value_and_grad",
    "jacobian",
    "jacrev",
    "jacfwd",
    "hessian",
    "jvp",
    "linearize",
    "vjp",
    "hvp",
    "vmap",
    "export",
    "toposort",
    "jit",
    "to_networkx",
    "graph_stats",
    "check_grads",
    "tree",
    "codegen",
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
