"""Forward mode and the rest of the transform set: ``jvp``, ``linearize``, ``vjp``, ``jacfwd``, ``hvp``.

Forward mode pushes a tangent (a direction in input space) along with the
values, from the inputs to the outputs: dual numbers. fungrad runs ``f`` once
at a new trace level, recording its nodes on the level's tape, then sweeps the
tape in order and gives each node the tangent

    t(node) = sum over arguments i of  d node / d arg_i  *  t(arg_i),

where the partial derivative ``d node / d arg_i`` is the primitive's VJP rule
for argument i at a cotangent of 1: a scalar primitive needs no second table
of rules. Nodes of enclosing levels and constants have no tangent (a symbolic
zero, skipped), which is what keeps nested derivatives apart, in any mix of
modes. An input whose tangent is ``0.0`` is such a zero too, so a basis
direction gives exactly the partial derivatives that reverse mode gives.
Inside another transform the sweep computes with nodes, so the enclosing
transform differentiates through it.

>>> import fungrad as fg
>>> fg.jvp(lambda x, y: x * fg.sin(y), (2.0, 0.0), (1.0, 0.0))   # d/dx in direction (1, 0)
(0.0, 0.0)
>>> fg.jvp(lambda x, y: x * fg.sin(y), (2.0, 0.0), (0.0, 1.0))   # d/dy = x cos y
(0.0, 2.0)
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any, Callable, Sequence

from . import autodiff, expr, tree
from .autodiff import _outermost, _Traced, _trace, check_transform_args
from .expr import Node

__all__ = ["jvp", "linearize", "vjp", "jacfwd", "hessian", "hvp"]

_RULES = expr.RULES


def _joint_partials(joint: Callable[..., Any], op: str, ans: Any, args: Sequence[Any]) -> tuple[Any, ...]:
    """The partial derivatives a joint rule (a custom_vjp's backward) gives at a cotangent of 1.

    Forward mode reads a VJP at g = 1 as the row of partial derivatives,
    which is only right when the VJP is linear in g. A backward that clips
    or shifts g defines no JVP, so it is asked at a few more cotangents (see
    _LINEAR_AT): a rule that does not scale with g is an error, not a number
    that is neither derivative. (A sample cannot prove linearity; it catches
    the usual clips, signs and shifts.)
    """
    d1 = joint(1.0, ans, *args)
    for k in _LINEAR_AT:
        dk = joint(k, ans, *args)
        for a, b in zip(d1, dk):
            va = a.value if a.__class__ is Node else a
            vb = b.value if b.__class__ is Node else b
            if not (vb == k * va or (va != va and vb != vb)):
                if _rounding(va, vb, k):
                    continue
                name = op.split(":", 1)[-1].split("#", 1)[0]
                raise TypeError(
                    f"forward mode (jvp, jacfwd, linearize, hessian) of custom_vjp {name!r}: its backward is "
                    f"not linear in the cotangent g (at g = 1 it gives {va!r}, at g = {k:g} {vb!r}), so it "
                    "defines no derivative to push forward; use reverse mode (grad, vjp, jacrev) for this function"
                )
    return d1  # type: ignore[no-any-return]


# the cotangents at which a backward must be k times its value at 1 (powers
# of two and -1 scale floats exactly): a sign test catches abs and relu of
# g, the far ones a clip of it
_LINEAR_AT = (2.0, -1.0, 2.0**20, 2.0**-20)
_TINY = sys.float_info.min  # the least normal float


def _rounding(va: float, vb: float, k: float) -> bool:
    # Whether a backward linear in g may give vb at k * g and va at g: scaling
    # by a power of two is exact for normal floats, but a subnormal value
    # carries an error of half its last place (2^-1075) that k scales, and a
    # far cotangent may overflow inside the backward. A clip or a sign of g
    # is off by far more. (Negation is exact for every float.)
    if va != va or vb != vb or k == -1.0:
        return False
    if vb in (math.inf, -math.inf) and abs(va) < math.inf:
        return True
    if abs(va) < _TINY or abs(vb) < _TINY:
        return abs(vb - k * va) <= 2.0**-1070 * max(1.0, abs(k))
    return False


def _derivatives(nodes: Sequence[Node], floor: int, nested: bool) -> list[tuple[Node, list[tuple[Node, Any]]]]:
    """For each node, its partial derivatives with respect to its parents of level >= ``floor``."""
    out: list[tuple[Node, list[tuple[Node, Any]]]] = []
    for n in nodes:
        ps = n.parents
        if not ps:
            continue
        if n.op == "vmap" or n.op == "vmap_pick":
            # a map's tangent is a map: made when the tangents are pushed
            out.append((n, functools.partial(_map_tangent, n, floor=floor, nested=nested)))  # type: ignore[arg-type]
            continue
        if nested:
            ans: Any = n
            args: Sequence[Any] = ps
        else:
            ans, args = n.value, [p.value for p in ps]
        parts = []
        joint = expr.JOINT.get(n.op)
        if joint is not None:
            for p, d in zip(ps, _joint_partials(joint, n.op, ans, args)):
                if p.level >= floor:
                    parts.append((p, d))
        for p, r in zip(ps, _RULES[n.op]) if joint is None else ():
            if r is not None and p.level >= floor:
                parts.append((p, r(1.0, ans, *args)))
        if parts:
            out.append((n, parts))
    return out


def _push(
    lin: list[tuple[Node, list[tuple[Node, Any]]]], tangents: dict[Node, Any], debug: bool, nested: bool
) -> dict[Node, Any]:
    """Tangents along the linearized graph; a node whose arguments have none gets none."""
    get = tangents.get
    for n, parts in lin:
        if parts.__class__ is functools.partial:
            tot = parts(get, nested=nested)  # type: ignore[operator]
            if tot is not None:
                tangents[n] = tot
            continue
        tot = None
        for p, d in parts:
            t = get(p)
            if t is not None:
                c = d * t
                tot = c if tot is None else tot + c
        if tot is not None:
            if debug:
                _check_tangent(n, tot)
            tangents[n] = tot
    return tangents


def _map_tangent(n: Node, get: Callable[[Node], Any], floor: int, nested: bool) -> Any:
    # a vmap node's tangent is the map of its body's JVP (a Batch, or a node
    # of one inside another transform); a pick's is the same pick of that
    ps = n.parents
    if n.op == "vmap":
        return n.value.map.tangent(n, get, floor, nested)  # type: ignore[attr-defined]
    t = get(ps[0])
    if t is None:
        return None
    i = int(ps[1].value)
    return expr.pick(t, i) if t.__class__ is Node else t[i]


def _check_tangent(n: Node, t: Any) -> None:
    v = t.value if t.__class__ is Node else t
    if isinstance(v, list):
        return  # a vmap node's tangents: its picks are checked one by one
    if not math.isfinite(v):
        raise FloatingPointError(f"debug_nans: the tangent of op {n.op!r} (inputs {expr.describe_inputs(n)}) is {v!r}")


def _sweep(r: _Traced, seeds: dict[Node, Any]) -> dict[Node, Any]:
    # one pass: derivatives and tangents together, without keeping the table
    get = seeds.get
    floor, nested, debug = r.trace.level, r.nested, r.trace.debug
    fast = not nested
    for n in r.tape[r.skip :]:
        ps = n.parents
        if not ps:
            continue
        op = n.op
        if fast and len(ps) == 2 and (op == "mul" or op == "add"):
            # the partial derivatives of the hottest ops, written out: each
            # is its table rule at a cotangent of 1 (1.0 * y is y exactly)
            x, y = ps
            tx = get(x) if x.level >= floor else None
            ty = get(y) if y.level >= floor else None
            if op == "mul":
                cx = None if tx is None else y.value * tx
                cy = None if ty is None else x.value * ty
            else:
                cx, cy = tx, ty
            tot = cx if cy is None else (cy if cx is None else cx + cy)
        elif fast and len(ps) == 1 and (op == "relu" or op == "tanh"):
            x = ps[0]
            tx = get(x) if x.level >= floor else None
            if tx is None:
                continue
            ans = n.value
            d = (1.0 if ans > 0.0 else 0.0) if op == "relu" else 1.0 * (1.0 - ans * ans)
            tot = d * tx
        elif op == "vmap" or op == "vmap_pick":
            tot = _map_tangent(n, get, floor, nested)
        else:
            tot = None
            rules = _RULES[op]
            joint = expr.JOINT.get(op)
            ds = None
            for i, p in enumerate(ps):
                t = get(p)
                # a joint rule gives every argument's derivative, and may take
                # more arguments than its table row lists (affine: a guard, as
                # no level that forward mode walks makes affine nodes)
                if t is None or p.level < floor or (joint is None and rules[i] is None):
                    continue
                if joint is not None:
                    # a rule that gives every argument's derivative at once
                    if ds is None:
                        ds = _joint_partials(joint, op, n, ps) if nested else _joint_partials(joint, op, n.value, [q.value for q in ps])
                    d = ds[i]
                elif nested:
                    d = rules[i](1.0, n, *ps)  # type: ignore[misc]  # not None: checked above
                else:
                    d = rules[i](1.0, n.value, *[q.value for q in ps])  # type: ignore[misc]
                c = d * t
                tot = c if tot is None else tot + c
        if tot is not None:
            if debug:
                _check_tangent(n, tot)
            seeds[n] = tot
    return seeds


def _tangent_leaf(v: Any, where: str, fname: str) -> Any:
    if v.__class__ is Node:
        return v
    if expr.real_number(v):
        return expr._check_number(v, f"{fname}: {where}")
    raise TypeError(
        f"{fname}: {where} is {type(v).__name__} {v!r:.60}; tangent leaves must be real numbers "
        "(float or int) or fungrad Nodes"
    )


def _check_pair(primals: Any, tangents: Any, fname: str, what: str = "tangents") -> list[list[Any]]:
    """The tangent leaves of each argument, after checking they match the primals."""
    for name, v in (("primals", primals), (what, tangents)):
        if not isinstance(v, (tuple, list)):
            raise TypeError(
                f"{fname}: {name} must be a tuple with one pytree per argument of f, got {type(v).__name__}"
                + (" (for one argument write (x,))" if not isinstance(v, (tuple, list)) else "")
            )
    if len(primals) != len(tangents):
        raise ValueError(
            f"{fname}: {len(primals)} primal{'s' if len(primals) != 1 else ''} but {len(tangents)} "
            f"{what}; give one tangent pytree per argument"
        )
    out = []
    for i, (p, t) in enumerate(zip(primals, tangents)):
        pl, ptd = tree.flatten(p)
        tpairs, ttd = tree.flatten_with_path(t)
        if ptd != ttd:
            raise ValueError(
                f"{fname}: {what}[{i}] has structure {ttd!r}, but primals[{i}] has structure {ptd!r}; "
                "each tangent must be shaped like its primal"
            )
        out.append(
            [
                _tangent_leaf(v, f"{what}[{i}]" + (f" at {tree.keystr(path)}" if path else ""), fname)
                for path, v in tpairs
            ]
        )
    return out


def _outputs(r: _Traced, result: Any, tangents: dict[Node, Any], fname: str, nested: bool | None = None) -> tuple[Any, Any]:
    leaves, td = tree.flatten(result)
    if nested is None:
        nested = r.nested
    level = r.trace.level
    ps, ts = [], []
    for i, o in enumerate(leaves):
        if o.__class__ is Node:
            t = tangents.get(o) if o.level >= level else None
            ps.append(o if r.nested else o.value)
        elif expr.real_number(o):
            t = None
            ps.append(o if r.nested else expr._check_number(o, fname))
        else:
            raise TypeError(f"{fname}: output leaf {i} of f is {type(o).__name__} {o!r:.60}; expected a number or Node")
        if t is None:
            t = 0.0
        elif t.__class__ is Node and not nested:
            t = t.value
        ts.append(t)
    return tree.unflatten(td, ps), tree.unflatten(td, ts)


def _run_f(f: Callable[..., Any], primals: Sequence[Any], fname: str) -> _Traced:
    return _trace(f, tuple(primals), {}, tuple(range(len(primals))), fname)


def _check_f(f: Any, fname: str) -> None:
    if not callable(f):
        raise TypeError(f"{fname}: expected a function, got {type(f).__name__} {f!r:.60}")


def jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """``(f(*primals), J @ tangents)``: the value and the directional derivative, in one forward pass.

    ``primals`` and ``tangents`` are tuples with one pytree per argument of
    ``f``, each tangent shaped like its primal. The result has ``f``'s output
    structure twice: the values, and the tangents of the outputs (``0.0``
    where an output does not depend on the inputs).

    >>> import fungrad as fg
    >>> fg.jvp(lambda x: x ** 3, (2.0,), (1.0,))             # 8 and 3 x^2
    (8.0, 12.0)
    >>> fg.jvp(lambda p: [p["a"] * p["b"], p["a"]], ({"a": 2.0, "b": 5.0},), ({"a": 1.0, "b": 0.0},))
    ([10.0, 2.0], [5.0, 1.0])
    """
    _check_f(f, "jvp")
    return _outermost(_jvp, f, primals, tangents)  # type: ignore[no-any-return]


def _jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any], fname: str = "jvp") -> tuple[Any, Any]:
    tls = _check_pair(primals, tangents, fname)
    r = _run_f(f, primals, fname)
    return _outputs(r, r.result, _sweep(r, _seeds(r, tls)), fname)


def _seeds(r: _Traced, tls: list[list[Any]]) -> dict[Node, Any]:
    # A float zero tangent is a symbolic zero: the input does not move, so
    # its partial derivatives are not asked for (0 * nan from log(-1) in
    # pow's exponent rule would otherwise spoil a basis direction)
    return {x: t for xs, ts in zip(r.inputs, tls) for x, t in zip(xs, ts) if t.__class__ is Node or t != 0.0}


def linearize(f: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[..., Any]]:
    """``(f(*primals), f_jvp)``: ``f_jvp(*tangents)`` is the tangent of the outputs, without running ``f`` again.

    ``f`` runs once, and the partial derivatives of every op are computed
    once; each call of ``f_jvp`` only multiplies and adds them along the
    graph. ``f_jvp(*tangents)`` equals ``jvp(f, primals, tangents)[1]``.

    >>> import fungrad as fg
    >>> y, f_jvp = fg.linearize(lambda x: fg.sin(x) * x, 0.5)
    >>> f_jvp(1.0) == fg.jvp(lambda x: fg.sin(x) * x, (0.5,), (1.0,))[1], f_jvp(2.0) == 2 * f_jvp(1.0)
    (True, True)
    """
    _check_f(f, "linearize")
    return _outermost(_linearize, f, primals)  # type: ignore[no-any-return]


def _linearize(f: Callable[..., Any], primals: tuple[Any, ...]) -> tuple[Any, Callable[..., Any]]:
    r = _run_f(f, primals, "linearize")
    lin = _derivatives(r.tape[r.skip :], r.trace.level, r.nested)
    result = r.result
    primals_out, _ = _outputs(r, result, {}, "linearize")
    debug = r.trace.debug

    def f_jvp(*tangents: Any) -> Any:
        tls = _check_pair(primals, tangents, "linearize's f_jvp")
        # inside a transform begun after f ran (grad of f_jvp), the tangents
        # are that transform's nodes: they are pushed and returned as nodes
        nested = r.nested or expr.current().active
        return _outputs(r, result, _push(lin, _seeds(r, tls), debug, nested), "linearize", nested)[1]

    return primals_out, f_jvp


def vjp(f: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[[Any], tuple[Any, ...]]]:
    """``(f(*primals), vjp_fn)``: ``vjp_fn(cotangent)`` is ``cotangent @ J``, one pytree per primal.

    ``cotangent`` is shaped like ``f``'s output; the result is a tuple shaped
    like ``primals``. ``vjp_fn`` can be called many times on one forward pass.

    >>> import fungrad as fg
    >>> out, vjp_fn = fg.vjp(lambda x, y: [x * y, x + y], 2.0, 3.0)
    >>> out, vjp_fn([1.0, 0.0]), vjp_fn([0.0, 1.0])
    ([6.0, 5.0], (3.0, 2.0), (1.0, 1.0))
    """
    _check_f(f, "vjp")
    return _outermost(_vjp, f, primals)  # type: ignore[no-any-return]


def _vjp(f: Callable[..., Any], primals: tuple[Any, ...]) -> tuple[Any, Callable[[Any], tuple[Any, ...]]]:
    r = _run_f(f, primals, "vjp")
    result = r.result
    primals_out, out_td = (lambda t: (t, tree.structure(result)))(_outputs(r, result, {}, "vjp")[0])
    out_leaves = tree.leaves(result)
    level = r.trace.level

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        pairs, td = tree.flatten_with_path(cotangent)
        if td != out_td:
            raise ValueError(
                f"vjp_fn: the cotangent has structure {td!r}, but f's output has structure {out_td!r}; "
                "give one cotangent shaped like the output"
            )
        seeds: dict[Node, Any] = {}
        for (path, c), o in zip(pairs, out_leaves):
            c = _tangent_leaf(c, "the cotangent" + (f" at {tree.keystr(path)}" if path else ""), "vjp_fn")
            if o.__class__ is Node and o.level >= level:
                old = seeds.get(o)
                seeds[o] = c if old is None else old + c
        return _outermost(_pull, r, seeds)  # type: ignore[no-any-return]

    return primals_out, vjp_fn


def _pull(r: _Traced, seeds: dict[Node, Any]) -> tuple[Any, ...]:
    cur = expr.current()
    nested = cur.active or r.nested
    if seeds:
        ct = autodiff._backward(seeds, reversed(r.tape[r.skip :]), r.trace.level, nested=nested, debug=r.trace.debug)
    else:
        ct = {}
    out = []
    for td, xs in zip(r.treedefs, r.inputs):
        vals = [ct.get(x, 0.0) for x in xs]
        if not nested:
            vals = [v.value if v.__class__ is Node else v for v in vals]
        out.append(tree.unflatten(td, vals))
    return tuple(out)


def jacfwd(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """The Jacobian of ``f`` by forward mode: one tangent sweep per input leaf.

    Same shapes as :func:`fungrad.jacobian` (reverse mode, one backward pass
    per output leaf): the output's structure, each leaf replaced by a
    gradient shaped like the argument. Forward mode wins when ``f`` has fewer
    inputs than outputs. With ``has_aux=True``, ``f`` returns
    ``(output, aux)`` and the result is ``(jacobian, aux)``.

    >>> import fungrad as fg
    >>> fg.jacfwd(lambda v: [v[0] * v[1], v[0] + 2 * v[1]])([3.0, 4.0])
    [[4.0, 3.0], [1.0, 2.0]]
    """
    return _jacfwd(f, argnums, has_aux, "jacfwd")


def _jacfwd(f: Callable[..., Any], argnums: int | Sequence[int], has_aux: bool, fname: str) -> Callable[..., Any]:
    check_transform_args(f, argnums, fname)

    @autodiff._wraps(f)
    def jac(*args: Any, **kwargs: Any) -> Any:
        return _outermost(run, args, kwargs)

    def run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        nums = autodiff._argnums(argnums, len(args), fname)
        r = _trace(f, args, kwargs, nums, fname)
        res, aux = autodiff._split_aux(r.result, has_aux, fname)
        outs, td = tree.flatten(res)
        for i, o in enumerate(outs):
            if not (o.__class__ is Node or expr.real_number(o)):
                raise TypeError(f"{fname}: output leaf {i} of f is {type(o).__name__} {o!r:.60}; expected a number or Node")
        lin = _derivatives(r.tape[r.skip :], r.trace.level, r.nested)
        inputs = [x for xs in r.inputs for x in xs]
        cols = []  # cols[j][i]: d out_i / d input_j
        for x in inputs:
            tan = _push(lin, {x: 1.0}, r.trace.debug, r.nested)
            col = []
            for o in outs:
                t = tan.get(o, 0.0) if o.__class__ is Node and o.level >= r.trace.level else 0.0
                if t.__class__ is Node and not r.nested:
                    t = t.value
                col.append(t)
            cols.append(col)
        rows = []
        for i in range(len(outs)):
            k = 0
            per_arg = []
            for tdef, xs in zip(r.treedefs, r.inputs):
                per_arg.append(tree.unflatten(tdef, [cols[k + j][i] for j in range(len(xs))]))
                k += len(xs)
            rows.append(per_arg[0] if isinstance(argnums, int) else tuple(per_arg))
        jac_ = tree.unflatten(td, rows)
        if has_aux:
            return jac_, (aux if r.nested else autodiff._concrete(aux))
        return jac_

    return jac


def hessian(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """The matrix of second derivatives of scalar ``f``, by forward-over-reverse: ``jacfwd(grad(f))``.

    With ``has_aux=True``, ``f`` returns ``(output, aux)`` and the result is
    ``(hessian, aux)``.

    >>> import fungrad as fg
    >>> fg.hessian(lambda v: v[0] ** 2 * v[1])([3.0, 2.0])
    [[4.0, 6.0], [6.0, 0.0]]
    """
    check_transform_args(f, argnums, "hessian")
    inner = autodiff._value_and_grad(f, argnums, has_aux, "hessian")

    def g(*args: Any, **kwargs: Any) -> Any:
        v, gr = inner(*args, **kwargs)
        return (gr, v[1]) if has_aux else gr

    return autodiff._wraps(f)(_jacfwd(g, argnums, has_aux, "hessian"))


def hvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> Any:
    """The Hessian of scalar ``f`` (in its first argument) times ``tangents``, without forming the Hessian.

    Forward-over-reverse: ``jvp(grad(f), primals, tangents)[1]``, shaped like
    ``primals[0]``. It costs a small multiple of one gradient, whatever the
    number of inputs.

    >>> import fungrad as fg
    >>> f = lambda v: v[0] ** 2 * v[1]                  # Hessian [[2 v1, 2 v0], [2 v0, 0]]
    >>> fg.hvp(f, ([3.0, 2.0],), ([1.0, 0.0],))
    [4.0, 6.0]
    """
    _check_f(f, "hvp")
    return _outermost(_jvp, autodiff.grad(f), primals, tangents, "hvp")[1]
