"""``vmap``: one traced example, replayed over a batch; ``export``: the traced program as array code.

``vmap(f)`` traces ``f`` once for one example, compiles that trace with
:mod:`fungrad.codegen`, and replays the compiled body for every example, on
floats or on nodes. The body is one op of the graph per example output (not
a copy of the body's graph per example), so a batch of a thousand examples
through a model of a thousand nodes is a thousand nodes, not a million. Its
derivative is the body's derivative, traced once too (the VJP of the body,
written as another compiled body), so ``grad``, ``jit``, forward mode and
nested ``vmap`` compose with it.

>>> import fungrad as fg
>>> f = lambda w, x: fg.tanh(w * x)
>>> fg.vmap(f, in_axes=(None, 0))(0.5, [1.0, 2.0, 3.0]) == [f(0.5, x) for x in (1.0, 2.0, 3.0)]
True
>>> fg.grad(lambda w: sum(fg.vmap(f, in_axes=(None, 0))(w, [1.0, 2.0])))(0.5) == fg.grad(lambda w: f(w, 1.0) + f(w, 2.0))(0.5)
True
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any, Callable, Sequence

from . import codegen, expr, tree
from .expr import Node

__all__ = ["vmap", "export"]

_ids = itertools.count(1)


class _Body:
    """``fn`` (a function of ``n`` scalar leaves to a list of scalars) traced once and compiled.

    Each output ``k`` is a primitive whose nodes all share one call of the
    compiled body in generated code. Their rule gives every argument's
    cotangent at once: the body's VJP, itself a :class:`_Body`, made when
    first needed.
    """

    def __init__(self, fn: Callable[[list[Any]], list[Any]], n: int, name: str):
        self.fn, self.n, self.name = fn, n, name
        t = expr.new_level(debug=False, jit=True)
        tape: list[Node] = t.tape  # type: ignore[assignment]
        inputs, outs = expr.run_level(t, self._trace)
        prog = codegen.compile_graph(tape, inputs, outs)
        del tape
        self.run: Callable[[list[float]], list[Any]] = prog.run  # type: ignore[assignment]
        self.k = len(outs)
        # an output that does not depend on the inputs is a plain constant
        self.const = [not (o.__class__ is Node and o.level >= t.level) for o in outs]
        self._vjps: dict[int, _Body] = {}
        self.params = tuple(f"x{i}" for i in range(n))
        # Past two arguments, the backward and forward passes call the joint
        # rule once per node, so one shared tuple stands for the rules
        self.rules = (_joint_only,) * n if n > 2 else None
        run = self.run
        self.call = lambda *xs: run(list(xs))  # what generated code calls, once for all outputs
        self.ops = [self._register(k) for k in range(self.k)]

    def _trace(self) -> tuple[list[Node], list[Any]]:
        inputs = [expr.var(0.5) for _ in range(self.n)]
        outs = self.fn(inputs)
        for i, o in enumerate(outs):
            if not (o.__class__ is Node or expr.real_number(o)):
                raise TypeError(f"vmap: output leaf {i} of {self.name} is {type(o).__name__}; expected a number")
        return inputs, outs

    def _register(self, k: int) -> str:
        run, n = self.run, self.n

        def fwd(*xs: float) -> float:
            return run(list(xs))[k]  # type: ignore[no-any-return]

        def joint(g: Any, ans: Any, *args: Any) -> tuple[Any, ...]:
            return tuple(self.vjp(k).apply([*args, g]))

        def rule(i: int) -> Callable[..., Any]:
            return lambda g, ans, *args: joint(g, ans, *args)[i]

        name = f"vmap:{self.name}#{next(_ids)}[{k}]"  # next() on a count is atomic
        rules = self.rules or tuple(rule(i) for i in range(n))
        p = expr.Primitive(
            name, fwd, rules, f"{self.name}[{k}]" if self.k > 1 else self.name,
            self.params, f"Output {k} of the body of vmap({self.name}).", "the body's VJP",
            False, False, joint,
        )
        expr._register(p, function=False)
        codegen.MULTI[name] = (self.call, k)
        return name

    def vjp(self, k: int) -> _Body:
        """The body of ``(x..., g) -> g * d out_k / d x``, made once."""
        b = self._vjps.get(k)
        if b is None:
            fn, n = self.fn, self.n

            def back(xs: list[Any]) -> list[Any]:
                from .forward import vjp

                _, pull = vjp(lambda *ys: fn(list(ys))[k], *xs[:n])
                return list(pull(xs[n]))

            b = self._vjps[k] = _Body(back, n + 1, f"vjp({self.name})[{k}]")
        return b

    def apply(self, args: Sequence[Any]) -> list[Any]:
        """The outputs for one example: floats for floats, nodes when any argument is a node."""
        if not any(a.__class__ is Node for a in args):
            return self.run([a if a.__class__ is float else expr._check_number(a, "vmap") for a in args])
        parents = tuple(a if a.__class__ is Node else expr._lift(expr._check_number(a, "vmap")) for a in args)
        vals = self.run([p.value for p in parents])
        live = [k for k in range(self.k) if not self.const[k]]
        const = all(p.level == expr.CONST for p in parents)
        nodes = expr.make_outputs([vals[k] for k in live], [self.ops[k] for k in live], parents, const)
        for k, nd in zip(live, nodes):
            vals[k] = nd
        return vals


def _joint_only(g: Any, ans: Any, *args: Any) -> Any:
    raise AssertionError("a vmap body's rules are given by its joint rule")


# --------------------------------------------------------------------------
# The transform


def _axes(in_axes: Any, nargs: int) -> tuple[int | None, ...]:
    if in_axes is None or isinstance(in_axes, int) and not isinstance(in_axes, bool):
        axes: tuple[Any, ...] = (in_axes,) * nargs
    elif isinstance(in_axes, (tuple, list)):
        if len(in_axes) != nargs:
            raise ValueError(
                f"vmap: in_axes has {len(in_axes)} entries but the function was called with {nargs} "
                "positional arguments; give one entry (0 or None) per argument"
            )
        axes = tuple(in_axes)
    else:
        raise TypeError(f"vmap: in_axes must be 0, None or a tuple of them (one per argument), got {in_axes!r:.60}")
    for i, a in enumerate(axes):
        if a is not None and (isinstance(a, bool) or a != 0):
            raise ValueError(f"vmap: in_axes[{i}] is {a!r}; only 0 (batched along the first axis) and None are supported")
    if all(a is None for a in axes):
        raise ValueError("vmap: in_axes maps no argument (all None); at least one argument must be batched")
    return axes  # type: ignore[return-value]


def _examples(arg: Any, i: int) -> list[Any]:
    if hasattr(arg, "shape") and hasattr(arg, "tolist") and not isinstance(arg, (list, tuple)):
        if len(arg.shape) == 0:
            raise ValueError(f"vmap: argument {i} is a 0-d array; a batched argument needs a leading batch axis")
        return list(arg.tolist())  # a NumPy (or similar) array with a leading batch axis
    if not isinstance(arg, (list, tuple)):
        raise TypeError(
            f"vmap: argument {i} is batched (in_axes 0) but is {type(arg).__name__}; expected a list or "
            "tuple of examples (or an array with a leading batch axis)"
        )
    return list(arg)


class _Cache:
    def __init__(self) -> None:
        self.bodies: dict[Any, tuple[_Body, tree.TreeDef]] = {}


_caches: weakref.WeakKeyDictionary[Any, _Cache] = weakref.WeakKeyDictionary()


def _cache_for(f: Callable[..., Any]) -> _Cache:
    # no lock: setdefault is atomic, and a lock that a KeyboardInterrupt
    # caught between its acquire and its release would hang every later vmap
    try:
        c = _caches.get(f)
        return c if c is not None else _caches.setdefault(f, _Cache())
    except TypeError:  # not weakly referable: a cache of its own
        return _Cache()


def vmap(f: Callable[..., Any], in_axes: int | None | Sequence[int | None] = 0) -> Callable[..., list[Any]]:
    """Map ``f`` over a batch: trace it once for one example, replay that for every example.

    Each argument with axis ``0`` is a sequence of examples (a list or tuple,
    or an array with a leading batch axis), every example a pytree of the
    same structure; an argument with axis ``None`` is the same for every
    example (broadcast). The result is a list with ``f``'s output for each
    example. Python control flow on a traced value raises, as under
    :func:`fungrad.jit`, because one trace serves every example: use
    ``fg.where``, ``fg.relu``, ``fg.maximum``.

    >>> import fungrad as fg
    >>> loss = lambda w, x, y: (w[0] * x + w[1] - y) ** 2
    >>> w, xs, ys = [2.0, 1.0], [0.0, 1.0, 2.0], [1.0, 3.0, 4.0]
    >>> fg.vmap(loss, in_axes=(None, 0, 0))(w, xs, ys)
    [0.0, 0.0, 1.0]
    >>> fg.vmap(fg.grad(loss), in_axes=(None, 0, 0))(w, xs, ys)   # per-example gradients
    [[0.0, 0.0], [0.0, 0.0], [4.0, 2.0]]
    """
    if not callable(f):
        raise TypeError(f"vmap: expected a function, got {type(f).__name__} {f!r:.60}")
    cache = _cache_for(f)
    name = getattr(f, "__name__", "f")

    def batched(*args: Any) -> list[Any]:
        axes = _axes(in_axes, len(args))
        sizes = {}
        examples: dict[int, list[Any]] = {}
        for i, (a, ax) in enumerate(zip(args, axes)):
            if ax == 0:
                examples[i] = _examples(a, i)
                sizes[i] = len(examples[i])
        first = next(iter(sizes.values()))
        for i, b in sizes.items():
            if b != first:
                raise ValueError(
                    f"vmap: batched arguments have different lengths: argument {next(iter(sizes))} has "
                    f"{first} examples, argument {i} has {b}"
                )
        if first == 0:
            return []
        if expr.current().debug:
            # under debug_nans every op is checked: run f eagerly, example by example
            return [f(*[examples[i][b] if ax == 0 else a for i, (a, ax) in enumerate(zip(args, axes))])
                    for b in range(first)]
        # the leaves: broadcast ones once, batched ones per example
        bc_leaves: list[Any] = []
        bc_defs = {}
        for i, (a, ax) in enumerate(zip(args, axes)):
            if ax is None:
                ls, td = tree.flatten(a)
                bc_defs[i] = (td, len(bc_leaves), len(ls))
                bc_leaves.extend(ls)
        ex_defs = {}
        for i, exs in examples.items():
            ex_defs[i] = tree.structure(exs[0])
        key_parts: list[Any] = [len(args)]
        for i, ax in enumerate(axes):
            key_parts.append((ax, bc_defs[i][0] if ax is None else ex_defs[i]))
        statics = [v for v in bc_leaves if not (v.__class__ is Node or expr.real_number(v))]
        per_ex = [tree.leaves(examples[i][0]) for i in examples]
        ex_statics = [v for ls in per_ex for v in ls if not (v.__class__ is Node or expr.real_number(v))]
        key = (tuple(key_parts), tuple((type(v), v) for v in statics), tuple((type(v), v) for v in ex_statics))
        try:
            entry = cache.bodies.get(key)
        except TypeError:
            raise TypeError("vmap: non-number leaves of the arguments must be hashable (they are static)") from None
        num_bc = [k for k, v in enumerate(bc_leaves) if v.__class__ is Node or expr.real_number(v)]
        ex_num_idx = {
            i: {k for k, v in enumerate(tree.leaves(examples[i][0])) if v.__class__ is Node or expr.real_number(v)}
            for i in examples
        }
        ex_static = {i: tree.leaves(examples[i][0]) for i in examples}
        if entry is None:
            entry = _make_body(f, name, args, axes, bc_leaves, bc_defs, num_bc, examples, ex_defs, ex_num_idx)
            entry = cache.bodies.setdefault(key, entry)
        body, out_td = entry
        bc_nums = [bc_leaves[k] for k in num_bc]
        out = []
        for b in range(first):
            xs = list(bc_nums)
            for i in examples:
                ex = examples[i][b]
                ls, td = tree.flatten(ex)
                if td != ex_defs[i]:
                    raise ValueError(
                        f"vmap: argument {i}, example {b} has structure {td!r}, but example 0 has "
                        f"{ex_defs[i]!r}; every example must have the same structure"
                    )
                num = ex_num_idx[i]
                for k, v in enumerate(ls):
                    if k in num:
                        if not (v.__class__ is Node or expr.real_number(v)):
                            raise TypeError(
                                f"vmap: argument {i}, example {b}, leaf {k} is {type(v).__name__}; "
                                "expected a number, as in example 0"
                            )
                        xs.append(v)
                    elif b and not _same_static(v, ex_static[i][k]):
                        # the body was traced with example 0's value of this leaf
                        raise ValueError(
                            f"vmap: argument {i}, example {b}, leaf {k} is {v!r:.40}, but example 0 has "
                            f"{ex_static[i][k]!r:.40}; leaves that are not numbers are static and must be "
                            "the same in every example (map over the ones that differ with separate calls)"
                        )
            out.append(tree.unflatten(out_td, body.apply(xs)))
        return out

    batched.__name__ = f"vmap({name})"
    batched.__qualname__ = batched.__name__
    batched.__doc__ = getattr(f, "__doc__", None)
    return batched


def _same_static(a: Any, b: Any) -> bool:
    return type(a) is type(b) and (a is b or a == b)


def _make_body(
    f: Callable[..., Any],
    name: str,
    args: tuple[Any, ...],
    axes: tuple[int | None, ...],
    bc_leaves: list[Any],
    bc_defs: dict[int, Any],
    num_bc: list[int],
    examples: dict[int, list[Any]],
    ex_defs: dict[int, Any],
    ex_num_idx: dict[int, set[int]],
) -> tuple[_Body, tree.TreeDef]:
    ex0 = {i: tree.leaves(examples[i][0]) for i in examples}
    n = len(num_bc) + sum(len(v) for v in ex_num_idx.values())  # numeric leaves, in leaf order
    holder: list[Any] = []

    def one(xs: list[Any]) -> list[Any]:
        it = iter(xs)
        leaves = list(bc_leaves)
        for k in num_bc:
            leaves[k] = next(it)
        call = []
        for i, ax in enumerate(axes):
            if ax is None:
                td, off, cnt = bc_defs[i]
                call.append(tree.unflatten(td, leaves[off : off + cnt]))
            else:
                ls = list(ex0[i])
                for k in sorted(ex_num_idx[i]):
                    ls[k] = next(it)
                call.append(tree.unflatten(ex_defs[i], ls))
        res = f(*call)
        outs, td = tree.flatten(res)
        if not holder:
            holder.append(td)
        return outs

    body = _Body(one, n, name)
    return body, holder[0]


# --------------------------------------------------------------------------
# Export: the traced program as array code

# How each primitive is written for an array namespace ``xp``: elementwise,
# on arrays or numbers, with the same IEEE meaning as fungrad's forwards.
_ARRAY = {
    "add": "({0} + {1})",
    "sub": "({0} - {1})",
    "mul": "({0} * {1})",
    "div": "({0} / {1})",
    "pow": "({0} ** {1})",
    "neg": "(-{0})",
    "exp": "xp.exp({0})",
    "log": "xp.log({0})",
    "tanh": "xp.tanh({0})",
    "relu": "xp.where({0} < 0.0, 0.0 * {0}, {0})",
    "sigmoid": "(1.0 / (1.0 + xp.exp(-{0})))",
    "sqrt": "xp.sqrt({0})",
    "sin": "xp.sin({0})",
    "cos": "xp.cos({0})",
    "tan": "xp.tan({0})",
    "asin": "xp.arcsin({0})",
    "acos": "xp.arccos({0})",
    "atan": "xp.arctan({0})",
    "atan2": "xp.arctan2({0}, {1})",
    "sinh": "xp.sinh({0})",
    "cosh": "xp.cosh({0})",
    "log1p": "xp.log1p({0})",
    "expm1": "xp.expm1({0})",
    "abs": "xp.abs({0})",
    "maximum": "xp.maximum({0}, {1})",
    "minimum": "xp.minimum({0}, {1})",
    "sign": "xp.sign({0})",
    "step": "xp.where({0} > 0.0, 1.0 + 0.0 * {0}, 0.0 * {0})",
    "where": "xp.where({0} > 0.0, {1} + 0.0 * {0}, {2} + 0.0 * {0})",
    "softplus": "xp.where({0} > 20.0, {0}, xp.log1p(xp.exp(xp.where({0} > 20.0, 0.0 * {0}, {0}))))",
    "stop_gradient": "{0}",
    "link": "{0}",
    "erf": "_erf({0})",
    "share": "xp.where({0} < {1}, 0.0 * {0}, xp.where({0} == {1}, 0.5 + 0.0 * {0}, 1.0 + 0.0 * {0}))",
}


def _erf_for(xp: Any) -> Callable[[Any], Any]:
    # erf is not in every array namespace (NumPy has none): fall back to
    # math.erf elementwise where the namespace can vectorize
    f = getattr(xp, "erf", None) or getattr(getattr(xp, "special", None), "erf", None)
    if f is not None:
        return f  # type: ignore[no-any-return]
    vec = getattr(xp, "vectorize", None)
    if vec is not None:
        import math

        v = vec(math.erf, otypes=[float])
        return lambda a: v(a)
    raise TypeError(f"export: {getattr(xp, '__name__', xp)!r} has no erf")


def export(f: Callable[..., Any], *example_args: Any, xp: Any = None) -> Callable[..., Any]:
    """``f`` as a plain function of arrays for the namespace ``xp`` (NumPy, ``torch``, ``jax.numpy``).

    ``f`` is traced once on ``example_args`` (as :func:`fungrad.jit` would),
    and the nodes its outputs need become straight-line code in which every
    op is the elementwise function of ``xp`` (``xp.exp``, ``xp.where``, ...).
    The exported function takes arguments of the same pytree structure with
    arrays (or numbers) at the leaves, so leaves of shape ``(B,)`` evaluate B
    examples at once, and it returns ``f``'s output structure with arrays at
    the leaves. What the framework does next (its autograd, ``jit``,
    ``vmap``, devices) is its own. ``.source`` holds the generated code.

    >>> import numpy as np, fungrad as fg
    >>> f = lambda w, x: fg.tanh(w[0] * x + w[1])
    >>> g = fg.export(f, [0.5, -1.0], 2.0, xp=np)
    >>> out = g([0.5, -1.0], np.array([0.0, 1.0, 2.0]))
    >>> [round(v, 12) for v in out.tolist()] == [round(f([0.5, -1.0], x), 12) for x in (0.0, 1.0, 2.0)]
    True
    """
    if not callable(f):
        raise TypeError(f"export: expected a function, got {type(f).__name__}")
    if xp is None:
        raise TypeError("export: give the array namespace, e.g. xp=numpy, xp=torch or xp=jax.numpy")
    leaves, td = tree.flatten(example_args)
    for i, v in enumerate(leaves):
        if not expr.real_number(v):
            raise TypeError(f"export: leaf {i} of the example arguments is {type(v).__name__}; expected a number")
    t = expr.new_level(debug=False, jit=True)
    tape: list[Node] = t.tape  # type: ignore[assignment]

    def run() -> tuple[list[Node], Any]:
        inputs = [expr.var(expr._check_number(v, "export")) for v in leaves]
        return inputs, f(*tree.unflatten(td, inputs))

    inputs, result = expr.run_level(t, run)
    outs, out_td = tree.flatten(result)
    order, alias = codegen.prepare(tape, inputs, outs)
    slot = {x: k for k, x in enumerate(inputs)}
    names: dict[Node, str] = {}
    consts: dict[str, float] = {}
    lines = []

    def ref(p: Node) -> str:
        p = alias.get(p, p)
        if p in slot:
            return f"xs[{slot[p]}]"
        nm = names.get(p)
        if nm is None:  # a constant
            nm = f"c{len(consts)}"
            consts[nm] = p.value
            names[p] = nm
        return nm

    for n in order:
        if n in slot:
            continue
        tpl = _ARRAY.get(n.op)
        if tpl is None:
            raise TypeError(
                f"export: the op {n.op!r} has no array form; exported functions may use only fungrad's "
                f"built-in primitives ({', '.join(sorted(_ARRAY))})"
            )
        names[n] = f"v{len(names)}"
        lines.append(f"{names[n]} = {tpl.format(*[ref(p) for p in n.parents])}")
    rets = []
    for o in outs:
        if o.__class__ is Node:
            rets.append(ref(o))
        else:
            rets.append(repr(o))
    src = "def _exported(xs):\n    " + "\n    ".join(lines + [f"return [{', '.join(rets)}]"]) + "\n"
    glob: dict[str, Any] = {"xp": xp, **consts, "inf": float("inf"), "nan": float("nan")}
    if "_erf(" in src:
        glob["_erf"] = _erf_for(xp)
    exec(compile(src, "<fungrad.export>", "exec"), glob)  # noqa: S102 - our own generated code
    body = glob["_exported"]

    def exported(*args: Any) -> Any:
        ls, atd = tree.flatten(args)
        if atd != td:
            raise ValueError(f"export: the arguments have structure {atd!r}, but f was exported for {td!r}")
        return tree.unflatten(out_td, body(ls))

    exported.source = src  # type: ignore[attr-defined]
    exported.__name__ = f"export({getattr(f, '__name__', 'f')})"
    return exported
