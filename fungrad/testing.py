"""Checking derivatives: against finite differences, and against PyTorch when it is installed.

:func:`check_grads` is what to run after writing a new function or a new
primitive: it compares fungrad's first (and second) derivatives with central
finite differences and raises an ``AssertionError`` naming the argument, the
leaf and the order that disagree. :func:`compare_with_torch` checks values
and gradients against PyTorch's autograd in float64 (``pip install torch==2.13.0``).

>>> import fungrad as fg
>>> fg.check_grads(lambda p: fg.tanh(p["w"] * p["x"] + p["b"]), {"w": 0.5, "x": 2.0, "b": -1.0}, order=2)
"""

from __future__ import annotations

import importlib.util
import math
import sys
from typing import Any, Callable, Sequence

from . import tree
from .autodiff import grad, value_and_grad
from .forward import hessian, jacfwd
from .expr import Node, var

__all__ = ["check_grads", "torch_available", "require_torch", "compare_with_torch"]

_TORCH_HINT = "pip install torch==2.13.0"


def _value(x: Any) -> float:
    if x.__class__ is Node:
        return x.value  # type: ignore[no-any-return]
    try:
        return float(x)
    except OverflowError:
        raise ValueError(f"check_grads: an int of about {len(str(abs(int(x))))} digits is too large for a float") from None


def _close(a: float, n: float, rtol: float, atol: float) -> bool:
    if a == n or (a != a and n != n):
        return True
    if math.isinf(a) or math.isinf(n):
        return False  # inf - x <= inf would call anything close to an infinity
    return abs(a - n) <= atol + rtol * abs(n)


_NO_CHECK = (
    "the finite difference is {num!r}, so nothing is checked here (the point is at the edge of f's domain, "
    "or f overflows within eps of it): choose another point, or a smaller eps"
)


class _Flat:
    """The differentiated leaves of ``args``, as one vector, with their names."""

    def __init__(self, args: tuple[Any, ...], nums: tuple[int, ...], fname: str):
        self.args, self.nums = args, nums
        self.x: list[float] = []
        self.names: list[str] = []
        self.defs: list[tuple[int, tree.TreeDef, int]] = []  # (argnum, treedef, leaf count)
        for a in nums:
            pairs, td = tree.flatten_with_path(args[a])
            for path, v in pairs:
                where = f"argument {a}" + (f" at {tree.keystr(path)}" if path else "")
                if v.__class__ is not Node and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise TypeError(f"{fname}: {where} is {type(v).__name__} {v!r:.60}; expected a real number")
                self.x.append(_value(v))
                self.names.append(where)
            self.defs.append((a, td, len(pairs)))

    def call(self, f: Callable[..., Any], vec: Sequence[Any]) -> Any:
        new, k = list(self.args), 0
        for a, td, m in self.defs:
            new[a] = tree.unflatten(td, list(vec[k : k + m]))
            k += m
        return f(*new)


def _arguments(args: Any, argnums: Any, fname: str) -> tuple[tuple[Any, ...], tuple[int, ...]]:
    """``args`` as a tuple (a lone pytree is one argument) and the checked argument indices."""
    if not isinstance(args, tuple):
        args = (args,)
    if argnums is None:
        return args, tuple(range(len(args)))
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for a in nums:
        if isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < len(args):
            raise ValueError(f"{fname}: argnums={argnums!r} is out of range for {len(args)} arguments")
    return args, nums


def _step(x: float, eps: float | None) -> float:
    # about cbrt(machine epsilon) relative to x: balances truncation (h**2) and rounding (1/h)
    h = eps if eps is not None else 1e-5 * max(1.0, abs(x))
    return (x + h) - x  # exactly representable, so x + h and x - h are h away


def _fd(fn: Callable[[list[float]], Any], x: list[float], j: int, eps: float | None) -> Any:
    """Central difference of ``fn`` (float or list of floats) along coordinate ``j``."""
    h = _step(x[j], eps)
    xp, xm = list(x), list(x)
    xp[j] += h
    xm[j] -= h
    fp, fm = fn(xp), fn(xm)
    if isinstance(fp, list):
        return [(p - m) / (2 * h) for p, m in zip(fp, fm)]
    return (fp - fm) / (2 * h)


def _fail(order: int, what: list[str], total: int, rtol: float, atol: float, mode: str = "rev") -> AssertionError:
    kind = "" if mode == "rev" else " forward-mode"
    head = (
        f"check_grads: {len(what)} of {total} order {order}{kind} derivatives disagree with finite "
        f"differences (rtol={rtol:g}, atol={atol:g}):\n  "
    )
    more = f"\n  ... and {len(what) - 10} more" if len(what) > 10 else ""
    return AssertionError(head + "\n  ".join(what[:10]) + more)


def check_grads(
    f: Callable[..., Any],
    args: Any,
    order: int = 1,
    *,
    eps: float | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    argnums: int | Sequence[int] | None = None,
    modes: Sequence[str] = ("rev", "fwd"),
    linear: bool = True,
) -> None:
    """Check ``f``'s derivatives (and, for ``order=2``, second derivatives) against finite differences.

    ``args`` is the tuple of positional arguments of ``f``, each a pytree of
    numbers; anything that is not a tuple is taken as the one argument
    ``(args,)``. ``argnums`` picks the arguments to differentiate (all by
    default). ``f`` must return a scalar.

    Order 1 compares every gradient leaf with a central difference of ``f``.
    Order 2 does that and then compares every second derivative
    ``d/dx_j (df/dx_i)``, computed by nested ``grad``, with a central
    difference of the gradient (as JAX's ``check_grads`` does). The default
    step is ``1e-5 * max(1, |x|)``; ``eps`` fixes it. ``modes`` picks the
    modes checked: ``"rev"`` (``grad``, and ``jacobian(grad)`` for order 2)
    and ``"fwd"`` (``jacfwd``, and ``jacfwd(jacfwd)`` for order 2); the
    message names the mode. A derivative ``a`` passes
    when ``|a - n| <= atol + rtol * |n|`` for the numerical estimate ``n``.
    A finite difference that is inf or nan checks nothing, and fails with
    that reason. With ``linear`` (the default), reverse mode also checks that
    the derivatives of ``2 * f`` are twice those of ``f``: a rule that
    ignores its cotangent ``g`` looks right for ``f`` alone and is wrong
    inside any larger function. Pass ``linear=False`` for a rule that is not
    linear in ``g`` by design (a clip of the gradient).

    Returns ``None``; raises ``AssertionError`` listing each derivative that
    is off, by argument index and leaf path (``argument 0 at ['w'][1]``),
    with the order and both values.

    >>> import fungrad as fg
    >>> fg.check_grads(lambda x, y: x**3 * fg.sin(y), (1.5, 0.3), order=2)
    >>> fg.check_grads(lambda p: p["w"][0] * p["w"][1], {"w": [2.0, 3.0]})
    >>> fg.check_grads(fg.relu, 0.0)  # at the kink, relu'(0) is 0 by convention
    Traceback (most recent call last):
    ...
    AssertionError: check_grads: 1 of 1 order 1 derivatives disagree with finite differences (rtol=1e-05, atol=1e-07):
      argument 0: analytic 0.0, numeric 0.5
    """
    if type(order) is not int or order not in (1, 2):
        raise ValueError(f"check_grads: order must be 1 or 2, got {order!r}")
    if isinstance(modes, str) or not modes or any(m not in ("fwd", "rev") for m in modes):
        raise ValueError(f"check_grads: modes must be a tuple of 'fwd' and/or 'rev', got {modes!r}")
    if eps is not None:
        _tolerance("eps", eps, "> 0")
    _tolerance("rtol", rtol, ">= 0")
    _tolerance("atol", atol, ">= 0")
    for mode in dict.fromkeys(modes):
        _check_mode(f, args, order, eps, rtol, atol, argnums, mode, linear)


def _tolerance(name: str, v: Any, least: str) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or not (v > 0 if least == "> 0" else v >= 0):
        raise ValueError(f"check_grads: {name} must be a finite number {least}, got {v!r}")


def _check_mode(
    f: Callable[..., Any],
    args: Any,
    order: int,
    eps: float | None,
    rtol: float,
    atol: float,
    argnums: int | Sequence[int] | None,
    mode: str,
    linear: bool = True,
) -> None:
    args, nums = _arguments(args, argnums, "check_grads")
    if not nums:
        raise ValueError("check_grads: there are no arguments to differentiate")
    flat = _Flat(args, nums, "check_grads")
    x, names = flat.x, flat.names
    n = len(x)

    def fv(v: list[float]) -> float:
        # on nodes, not floats: methods such as x.tanh() exist only on nodes
        return _value(flat.call(f, [var(a) for a in v]))

    def g(v: list[Any]) -> Any:
        return flat.call(f, v)

    dg = grad(g) if mode == "rev" else jacfwd(g)
    analytic = [_value(a) for a in dg(x)]
    bad = []
    for i in range(n):
        num = _fd(fv, x, i, eps)
        if not math.isfinite(num):
            bad.append(f"{names[i]}: analytic {analytic[i]!r}, but " + _NO_CHECK.format(num=num))
        elif not _close(analytic[i], num, rtol, atol):
            bad.append(f"{names[i]}: analytic {analytic[i]!r}, numeric {num!r}")
    if bad:
        raise _fail(1, bad, n, rtol, atol, mode)
    if mode == "rev" and linear:
        # A rule must scale with the cotangent it is given: f alone gives it
        # 1, where one that ignores g (or squares it) looks right; 2 * f does
        # not (2 scales every float exactly, unless it overflows)
        scaled = [_value(a) for a in grad(lambda v: 2.0 * g(v))(x)]
        for i in range(n):
            want = 2.0 * analytic[i]
            if math.isfinite(want) and math.isfinite(scaled[i]) and not _close(scaled[i], want, rtol, atol):
                bad.append(f"{names[i]}: of 2 * f {scaled[i]!r}, but twice that of f is {want!r}")
        if bad:
            raise AssertionError(
                "check_grads: a derivative rule does not scale with the cotangent g it is given (it ignores g, "
                "or is not linear in it), so gradients of f inside a larger function are wrong (pass "
                "linear=False for a rule that is not linear by design, such as a clip of the gradient):\n  "
                + "\n  ".join(bad)
            )
    if order == 1:
        return

    def gv(v: list[float]) -> list[float]:
        return [_value(a) for a in dg(v)]

    H = [[_value(h) for h in row] for row in (hessian(g) if mode == "rev" else jacfwd(dg))(x)]
    for j in range(n):
        col = _fd(gv, x, j, eps)
        for i in range(n):
            if not math.isfinite(col[i]):
                bad.append(f"d/d({names[j]}) of d/d({names[i]}): analytic {H[i][j]!r}, but " + _NO_CHECK.format(num=col[i]))
            elif not _close(H[i][j], col[i], rtol, atol):
                bad.append(
                    f"d/d({names[j]}) of d/d({names[i]}): analytic {H[i][j]!r}, numeric {col[i]!r}"
                )
    if bad:
        raise _fail(2, bad, n * n, rtol, atol, mode)


# --------------------------------------------------------------------------
# PyTorch as a reference


def torch_available() -> bool:
    """Whether PyTorch can be imported (without importing it).

    >>> import fungrad as fg
    >>> isinstance(fg.testing.torch_available(), bool)
    True
    """
    if "torch" in sys.modules:
        return sys.modules["torch"] is not None
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def require_torch() -> Any:
    """The ``torch`` module, or an ``ImportError`` that says how to install it.

    >>> import fungrad as fg
    >>> not fg.testing.torch_available() or fg.testing.require_torch().__name__ == "torch"
    True
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"this needs PyTorch as a reference: {_TORCH_HINT} (the CPU build)") from e
    return torch


def compare_with_torch(
    f_fungrad: Callable[..., Any],
    f_torch: Callable[..., Any] | None,
    args: Any,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-10,
    argnums: int | Sequence[int] | None = None,
    check: bool = True,
) -> float:
    """The largest difference between fungrad and PyTorch in the value and gradient of a function.

    ``f_fungrad`` runs on fungrad's nodes, ``f_torch`` on float64 torch
    tensors holding the same leaves; ``args`` is the tuple of positional
    arguments (pytrees of numbers; a non-tuple is one argument) and
    ``argnums`` picks the differentiated ones (all by default). A function
    written with operators and methods (``x * y``, ``x.tanh()``, ``x.exp()``,
    ``abs(x)``...) runs on both: pass ``None`` as ``f_torch`` to use
    ``f_fungrad`` for both. With ``check`` an ``AssertionError`` names the
    first leaf that is off (tolerance ``atol + rtol * |torch|``; two nans
    agree). Returns the largest absolute difference (``nan`` when only one
    side is ``nan``). Needs PyTorch: ``pip install torch==2.13.0``.

    >>> import fungrad as fg
    >>> f = lambda p: (p["w"] * p["x"] + p["b"]).tanh()
    >>> p = {"w": 0.5, "x": 2.0, "b": -0.5}
    >>> not fg.testing.torch_available() or fg.testing.compare_with_torch(f, None, p) < 1e-12
    True
    """
    torch = require_torch()
    args, nums = _arguments(args, argnums, "compare_with_torch")
    flat = _Flat(args, nums, "compare_with_torch")
    f_torch = f_fungrad if f_torch is None else f_torch

    # through value_and_grad, so the function sees nodes, as written for (x.tanh() needs a node)
    value, gs = value_and_grad(lambda v: flat.call(f_fungrad, v))(flat.x)
    value, grads = _value(value), [_value(a) for a in gs]

    ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in flat.x]
    out = flat.call(f_torch, ts)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise TypeError(f"compare_with_torch: f_torch must return a one-element tensor, got {type(out).__name__}")
    tgrads = torch.autograd.grad(out, ts, allow_unused=True) if out.requires_grad and ts else [None] * len(ts)
    ref_value = float(out.detach())
    refs = [0.0 if t is None else float(t) for t in tgrads]

    worst = 0.0
    pairs = [("value", value, ref_value)] + [
        (f"gradient at {name}", a, r) for name, a, r in zip(flat.names, grads, refs)
    ]
    for what, a, r in pairs:
        if a != a and r != r:
            continue
        d = abs(a - r) if a != r else 0.0
        if math.isnan(d):
            worst = math.nan
        elif not math.isnan(worst):
            worst = max(worst, d)
        if check and not _close(a, r, rtol, atol):
            raise AssertionError(f"compare_with_torch: {what}: fungrad {a!r}, torch {r!r} (difference {d!r})")
    return worst
