"""``vmap``: one traced example, replayed over a batch; ``export``: the traced program as array code.

``vmap(f)`` traces ``f`` once for one example and replays that trace for
every example. In the graph the whole batch is one ``vmap`` node: its
parents are the broadcast numbers and every example's numbers, its value a
:class:`Batch` of every example's outputs, and each output the user sees is
a ``vmap_pick`` node reading one of them. So a batch of a thousand examples
through a model of a thousand nodes is a thousand and one nodes, not a
million, and ``jit``'s generated code calls the body once for the batch.

The map's derivatives are maps too, each traced once per body: its VJP maps
the body's VJP over the batch and sums the broadcast arguments' cotangents
inside it (each example's sum, from the last example to the first; a
backward pass over a loop adds each use of the argument on its own, so the
last bits of such a gradient may differ from the loop's); its JVP maps the
body's JVP. ``grad``, ``jit``, forward mode,
higher orders and nested ``vmap`` compose with it.

The replay runs the body's generated code in Python, example by example, or
with NumPy on arrays holding every example's value (``backend="numpy"``,
chosen by itself from :data:`fungrad.batch.NUMPY_FROM` examples on when
NumPy is installed and the body uses only built-in primitives). NumPy gives
``+ - * /`` and the selections bit for bit (but for the sign of a ``nan``
that an operation makes, as ``0/0`` or ``sqrt(-1)`` do: the processor's is
negative), its transcendental functions within 4 ulp of Python's ``math``,
and it sums over the batch in its own order.

>>> import fungrad as fg
>>> f = lambda w, x: fg.tanh(w * x)
>>> fg.vmap(f, in_axes=(None, 0))(0.5, [1.0, 2.0, 3.0]) == [f(0.5, x) for x in (1.0, 2.0, 3.0)]
True
>>> fg.grad(lambda w: sum(fg.vmap(f, in_axes=(None, 0))(w, [1.0, 2.0])))(0.5) == fg.grad(lambda w: f(w, 1.0) + f(w, 2.0))(0.5)
True
"""

from __future__ import annotations

import contextvars
import weakref
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

from . import codegen, expr, tree
from .autodiff import toposort
from .expr import Node

__all__ = ["vmap", "export", "Batch", "BACKENDS", "NUMPY_FROM"]

#: The replays of a map's body: ``"python"`` (example by example) and ``"numpy"`` (all at once, on arrays).
BACKENDS = ("python", "numpy")


class Batch(list):  # type: ignore[type-arg]
    """The value of a ``vmap`` node: each example's outputs of the body in turn, then the sums over the batch.

    ``map`` is the mapped body, ``size`` the number of examples,
    ``backend`` the replay that computed it (``"python"`` or ``"numpy"``) and
    ``owner`` the function mapped, kept alive while the graph is.
    """

    __slots__ = ("map", "size", "backend", "owner")

    if TYPE_CHECKING:
        map: _Map
        size: int
        backend: str
        owner: Any

    def __repr__(self) -> str:
        return f"Batch({self.map.name}, {self.size} examples, {self.backend})"


def _sum_rows(rows: list[Any]) -> list[Any]:
    # from the last example to the first, the order in which a backward pass
    # over a Python loop of the examples meets them
    if not rows:
        return []
    sums = list(rows[-1])
    for r in reversed(rows[:-1]):
        sums = [s + c for s, c in zip(sums, r)]
    return sums


def _in_root(fn: Callable[[], Any]) -> Any:
    # a body is traced at a level of its own, outside every transform in
    # progress: its nodes are the body's, not the caller's
    def run() -> Any:
        expr._state.set(expr._ROOT)
        return fn()

    return contextvars.copy_context().run(run)


class _Map:
    """A body mapped over a batch: its layout, its replays, and its derivatives (maps too).

    ``fn(bc, ex) -> (per_example, summed)`` takes the ``nb`` broadcast
    numbers and one example's ``ne`` numbers (the concatenated rows of the
    batched blocks of ``widths`` columns) and returns the outputs kept per
    example and the ones summed over the batch. A node of the map has the
    broadcast numbers, then each block's rows, example after example, as its
    parents, and a :class:`Batch` as its value.
    """

    def __init__(self, fn: Callable[[list[Any], list[Any]], tuple[list[Any], list[Any]]], nb: int,
                 widths: Sequence[int], name: str, owner: Callable[[], Any]):
        self.fn, self.nb, self.widths, self.name = fn, nb, tuple(widths), name
        self.owner = owner  # the function the body calls, held weakly: its maps' nodes keep it alive
        self.ne = sum(self.widths)
        self._tape, self._inputs, per, summed = _in_root(self._trace_at_a_level)
        self.k_ex, self.k_sum = len(per), len(summed)
        self._outs = per + summed
        self._run: Callable[[list[float]], list[Any]] | None = None
        self._array: Any = None  # the NumPy replay: None until asked, False where it cannot be written
        self._array_why = ""  # and why it cannot
        self._order: list[Node] | None = None  # the nodes replay_ops runs, found when first needed
        self._maps: dict[Any, _Map] = {}  # its VJP and JVP maps, by kind and the inputs they differentiate

    def _trace_at_a_level(self) -> tuple[list[Node], list[Node], list[Any], list[Any]]:
        # the level opens here, at the root: a node of a transform around the
        # vmap that the body reads (a closure) is then foreign to the trace,
        # an error (ForeignNodeError), not a constant whose derivative is lost
        t = expr.new_level(debug=False, jit=True)
        return (t.tape, *expr.run_level(t, self._trace))  # type: ignore[return-value]

    def _trace(self) -> tuple[list[Node], list[Any], list[Any]]:
        inputs = [expr.var(0.5) for _ in range(self.nb + self.ne)]
        per, summed = self.fn(inputs[: self.nb], inputs[self.nb :])
        outs = []
        t = expr.current()
        for i, o in enumerate([*per, *summed]):
            if not (o.__class__ is Node or expr.real_number(o)):
                raise TypeError(f"vmap: output leaf {i} of {self.name} is {type(o).__name__}; expected a number")
            if o.__class__ is Node:
                # a node of a running transform returned as it is (no op read
                # it, so no op raised): like a read, it is foreign to this trace
                expr._foreign((o,), t)
            outs.append(o if o.__class__ is Node else expr._check_number(o, "vmap"))
        return inputs, outs[: len(per)], outs[len(per) :]

    def body(self) -> tuple[list[Node], list[Node], list[Any]]:
        """The traced body, as drawings show it once: (its nodes in order, its inputs, its outputs).

        The nodes are the outputs and everything they depend on, each after
        its parents; an output that is a number (it depends on no input)
        stays a number.
        """
        nodes: list[Node] = []
        seen: set[Node] = set()
        for o in self._outs:
            if o.__class__ is Node:
                for n in toposort(o):
                    if n not in seen:
                        seen.add(n)
                        nodes.append(n)
        return nodes, [x for x in self._inputs if x in seen], list(self._outs)

    # -- the replays --------------------------------------------------------

    def _scalar(self) -> Callable[[list[float]], list[Any]]:
        if self._run is None:
            self._run = codegen.compile_graph(self._tape, self._inputs, self._outs).run
        # compile_graph compiles by default, so its run is set
        return cast("Callable[[list[float]], list[Any]]", self._run)

    def array_ok(self) -> bool:
        """Whether the NumPy replay can run this body (NumPy installed, every op written for it)."""
        if self._array is None:
            try:
                import numpy

                self._array = codegen.array_function(
                    self._tape, self._inputs, self._outs, numpy, codegen.NUMPY, summed=self.k_sum, arrays_from=self.nb,
                    reuse=True,
                )
            except ImportError:
                self._array = False
                self._array_why = "NumPy is not installed (pip install 'fungrad[fast]')"
            except TypeError as e:
                self._array = False
                self._array_why = str(e)
        return self._array is not False

    def forward(self, vals: Sequence[float], size: int, backend: str, via: str | None = None) -> Batch:
        """The map's outputs on numbers laid out as its node's parents (computed ``via`` another backend)."""
        # a derived map (a VJP, a JVP) that NumPy cannot run replays in Python
        numpy = (via or backend) == "numpy" and self.array_ok()
        out = Batch(self._forward_numpy(vals, size) if numpy else self._forward_python(vals, size))
        out.map, out.size, out.backend, out.owner = self, size, backend, self.owner()
        return out

    def _forward_python(self, vals: Sequence[float], size: int) -> list[Any]:
        nb, k_ex = self.nb, self.k_ex
        run = self._scalar()
        buf = list(vals[:nb]) + [0.0] * self.ne
        blocks = []
        off = nb
        for w in self.widths:
            blocks.append((off, w))
            off += size * w
        out: list[Any] = []
        rows = []
        for b in range(size):
            pos = nb
            for o, w in blocks:
                buf[pos : pos + w] = vals[o + b * w : o + b * w + w]
                pos += w
            r = run(buf)
            out += r[:k_ex]
            if self.k_sum:
                rows.append(r[k_ex:])
        return out + _sum_rows(rows)

    def _forward_numpy(self, vals: Sequence[float], size: int) -> list[Any]:
        import numpy as np

        nb, k_ex = self.nb, self.k_ex
        cols: list[Any] = list(vals[:nb])
        off = nb
        for w in self.widths:
            block = np.array(vals[off : off + size * w], dtype=np.float64).reshape(size, w)
            cols.extend(np.ascontiguousarray(block.T))
            off += size * w
        with np.errstate(all="ignore"):
            r = self._array(cols, size)
            per = np.empty((size, k_ex))
            for k in range(k_ex):
                per[:, k] = r[k]
        return per.ravel().tolist() + r[k_ex:]  # type: ignore[no-any-return]

    def replay(self, batch: Batch) -> Callable[[list[float]], Batch]:
        """What jit's generated code calls for a node of this map: the same size and backend."""
        size, backend = batch.size, batch.backend
        return lambda vals: self.forward(vals, size, backend)

    def unrolled(self, args: Sequence[Any], size: int) -> list[Any]:
        """The outputs by replaying the body op by op, example by example: ordinary ops (debug_nans checks each)."""
        nb = self.nb
        bc = list(args[:nb])
        rows = []
        off = nb
        for w in self.widths:
            rows.append([args[off + b * w : off + b * w + w] for b in range(size)])
            off += size * w
        out: list[Any] = []
        sums = []
        k = self.k_ex
        for b in range(size):
            r = self.replay_ops([*bc, *(x for row in rows for x in row[b])])
            out += r[:k]
            sums.append(r[k:])
        return out + _sum_rows(sums)

    def apply(self, args: Sequence[Any], size: int, backend: str) -> Any:
        """The map on floats (a :class:`Batch`) or, when any argument is a node, its node."""
        if not any(a.__class__ is Node for a in args):
            return self.forward(args, size, backend)
        t = expr.current()
        if t.debug:
            return self.unrolled(args, size)  # every op is checked as it runs
        parents = tuple(a if a.__class__ is Node else expr._lift(a) for a in args)
        const = all(p.level == expr.CONST for p in parents)
        # Under a jit trace the values are never read (jit returns its
        # replay's results, and branching on them raises), so NumPy computes
        # them whatever the replay's backend: the first call does not grow
        # with the batch at the speed of Python. A map of constants is the
        # exception: its values are the replay's constants, so the backend
        # asked for computes them.
        via = "numpy" if t.jit_level is not None and not const else None
        batch = self.forward([p.value for p in parents], size, backend, via)
        return expr.map_node(batch, parents, const)

    # -- derivatives --------------------------------------------------------

    def _columns(self, flags: Sequence[bool], size: int) -> tuple[bool, ...]:
        # per column of an example: whether any example's entry there is flagged
        cols = []
        off = self.nb
        for w in self.widths:
            for j in range(w):
                cols.append(any(flags[off + b * w + j] for b in range(size)))
            off += size * w
        return tuple(cols)

    def replay_ops(self, xs: Sequence[Any]) -> list[Any]:
        """The recorded body on new inputs (floats or nodes), op by op with fungrad's op functions.

        The derived maps (VJP, JVP) differentiate this, never ``fn`` again:
        whatever ``fn`` reads from a closure now, the derivative is the one
        of the trace that the values come from.
        """
        env: dict[Node, Any] = dict(zip(self._inputs, xs))
        get = env.get
        for n in self._ops():
            args = [get(p, p.value) for p in n.parents]  # a parent not replayed is a constant of the trace
            op = n.op
            if op == "vmap":
                b: Batch = n.value  # type: ignore[assignment]  # a vmap node's value
                env[n] = b.map.apply(args, b.size, b.backend)
            elif op == "vmap_pick":
                a, i = args[0], int(n.parents[1].value)
                env[n] = expr.pick(a, i) if a.__class__ is Node else a[i]
            else:
                env[n] = expr.OPS[op](*args)
        return [get(o, o.value) if o.__class__ is Node else o for o in self._outs]

    def _ops(self) -> list[Node]:
        # the recorded nodes with an op that the outputs depend on, in the order they were made
        if self._order is None:
            need: set[Node] = set()
            todo = [o for o in self._outs if o.__class__ is Node]
            while todo:
                n = todo.pop()
                if n not in need:
                    need.add(n)
                    todo.extend(n.parents)
            self._order = [n for n in self._tape if n.op and n in need]
        return self._order

    def _derived_map(self, key: Any, make: Callable[[], _Map]) -> _Map:
        m = self._maps.get(key)
        if m is None:
            m = self._maps.setdefault(key, make())  # two threads: both trace, one map is kept
        return m

    def vjp_map(self, mask_bc: tuple[bool, ...], mask_ex: tuple[bool, ...]) -> _Map:
        """The map of the body's VJP for the masked inputs: ``(bc, h), (ex, g) -> (ex cotangents), (bc sums)``."""
        nb, ne = self.nb, self.ne

        def back(bch: list[Any], exg: list[Any]) -> tuple[list[Any], list[Any]]:
            from .forward import vjp

            _, pull = vjp(lambda *xs: self.replay_ops(xs), *bch[:nb], *exg[:ne])
            cts = pull([*exg[ne:], *bch[nb:]])
            return [cts[nb + j] for j in range(ne) if mask_ex[j]], [cts[i] for i in range(nb) if mask_bc[i]]

        return self._derived_map(
            ("vjp", mask_bc, mask_ex),
            lambda: _Map(back, nb + self.k_sum, (*self.widths, self.k_ex), f"vjp({self.name})", self.owner),
        )

    def jvp_map(self, mask_bc: tuple[bool, ...], mask_ex: tuple[bool, ...]) -> _Map:
        """The map of the body's JVP: ``(bc, bc tangents), (ex, ex tangents) -> (tangents, summed tangents)``."""
        nb, ne, k_ex = self.nb, self.ne, self.k_ex

        def push(bct: list[Any], ext: list[Any]) -> tuple[list[Any], list[Any]]:
            from .forward import jvp

            tb, te = iter(bct[nb:]), iter(ext[ne:])
            ts = [next(tb) if on else 0.0 for on in mask_bc] + [next(te) if on else 0.0 for on in mask_ex]
            _, t_out = jvp(lambda *xs: self.replay_ops(xs), (*bct[:nb], *ext[:ne]), tuple(ts))
            return list(t_out[:k_ex]), list(t_out[k_ex:])

        return self._derived_map(
            ("jvp", mask_bc, mask_ex),
            lambda: _Map(push, nb + sum(mask_bc), (*self.widths, sum(mask_ex)), f"jvp({self.name})", self.owner),
        )

    def _derived(self, n: Node, extra_bc: list[Any], extra_ex: list[Any], m: _Map, nested: bool) -> Any:
        # the derived map m on (bc, extra_bc), (blocks..., extra block): its Batch or its node
        batch: Batch = n.value  # type: ignore[assignment]
        ps = n.parents
        nb = self.nb
        if nested:
            args: list[Any] = [*ps[:nb], *extra_bc, *ps[nb:], *extra_ex]
            return m.apply(args, batch.size, batch.backend)
        vals = [p.value for p in ps[:nb]] + extra_bc + [p.value for p in ps[nb:]] + extra_ex
        if expr.current().debug:
            return m.unrolled(vals, batch.size)  # op by op, each checked by debug_nans
        return m.forward(vals, batch.size, batch.backend)

    def backward(self, n: Node, g: dict[int, Any], floor: int, nested: bool, debug: bool) -> list[tuple[int, Any]]:
        """``(parent index, cotangent)`` for the parents of ``n`` that need one, given its outputs' cotangents."""
        ps = n.parents
        size = n.value.size  # type: ignore[attr-defined]
        nb, k_ex = self.nb, self.k_ex
        need = [p.level >= floor for p in ps]
        mask_bc, mask_ex = tuple(need[:nb]), self._columns(need, size)
        if not (any(mask_bc) or any(mask_ex)):
            return []
        m = self.vjp_map(mask_bc, mask_ex)
        zero = 0.0
        h = [g.get(size * k_ex + j, zero) for j in range(self.k_sum)]
        gs = [g.get(i, zero) for i in range(size * k_ex)]
        out = self._derived(n, h, gs, m, nested)
        if out.__class__ is Node:
            picks = out
            read: Callable[[int], Any] = lambda i: expr.pick(picks, i)  # noqa: E731
        else:
            read = out.__getitem__
        res = []
        k2 = m.k_ex
        base = size * k2
        r = 0
        for i in range(nb):
            if mask_bc[i]:  # that is need[i]
                res.append((i, read(base + r)))
                r += 1
        rank = []
        r = 0
        for j in range(self.ne):
            rank.append(r)
            r += mask_ex[j]
        off = nb
        col = 0
        for w in self.widths:
            for b in range(size):
                for j in range(w):
                    i = off + b * w + j
                    if need[i]:
                        res.append((i, read(b * k2 + rank[col + j])))
            off += size * w
            col += w
        return res

    def tangent(self, n: Node, get: Callable[[Node], Any], floor: int, nested: bool) -> Any:
        """The tangent of ``n`` (a :class:`Batch`, or its node inside another transform), or None."""
        ps = n.parents
        size = n.value.size  # type: ignore[attr-defined]
        nb = self.nb
        ts = [get(p) if p.level >= floor else None for p in ps]
        has = [t is not None for t in ts]
        mask_bc, mask_ex = tuple(has[:nb]), self._columns(has, size)
        if not (any(mask_bc) or any(mask_ex)):
            return None
        m = self.jvp_map(mask_bc, mask_ex)
        tb = [ts[i] for i in range(nb) if mask_bc[i]]
        te = []
        for b in range(size):  # the tangent block, example after example
            off = nb
            col = 0
            for w in self.widths:
                for j in range(w):
                    if mask_ex[col + j]:
                        t = ts[off + b * w + j]
                        te.append(0.0 if t is None else t)
                off += size * w
                col += w
        return self._derived(n, tb, te, m, nested)


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
        self.bodies: dict[Any, tuple[_Map, tree.TreeDef]] = {}


_caches = tree._PerFunction()

#: The most traced bodies kept per function, as jit keeps replays: a function
#: vmapped with ever new static values (a string per epoch) holds at most these.
CACHE_LIMIT = 256


def _evict(bodies: dict[Any, Any]) -> None:
    # the oldest first out; no lock (see _cache_for): another thread may evict too
    while len(bodies) > CACHE_LIMIT:
        try:
            bodies.pop(next(iter(bodies)), None)
        except (RuntimeError, StopIteration):
            break


def _cache_for(f: Callable[..., Any]) -> _Cache:
    # no lock: setdefault is atomic, and a lock that a KeyboardInterrupt
    # caught between its acquire and its release would hang every later vmap
    c = _caches.get(f, _Cache)
    return c if c is not None else _Cache()  # not weakly referable: a cache of its own


def vmap(
    f: Callable[..., Any], in_axes: int | None | Sequence[int | None] = 0, *, backend: str | None = None
) -> Callable[..., list[Any]]:
    """Map ``f`` over a batch: trace it once for one example, replay that for every example.

    Each argument with axis ``0`` is a sequence of examples (a list or tuple,
    or an array with a leading batch axis), every example a pytree of the
    same structure; an argument with axis ``None`` is the same for every
    example (broadcast). The result is a list with ``f``'s output for each
    example. Python control flow on a traced value raises, as under
    :func:`fungrad.jit`, because one trace serves every example: use
    ``fg.where``, ``fg.relu``, ``fg.maximum``.

    Like :func:`fungrad.jit`, ``vmap`` traces ``f`` once per structure of
    the arguments (and value of their static leaves) and keeps the trace
    with ``f``: a number ``f`` reads from a closure or a global is read
    when it is traced (``.clear_cache()`` forgets the traces). A closure over
    a node of a transform still running (a ``grad`` around the ``vmap``)
    is seen, and then ``f`` runs example by example, so that its derivative
    is kept.

    ``backend`` picks the replay: ``"python"`` (the body's generated code,
    example by example), ``"numpy"`` (the same code on arrays of every
    example's values at once), or ``None``: NumPy from
    :data:`fungrad.batch.NUMPY_FROM` examples on when it is installed and
    can run the body.

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
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"vmap: backend must be None (automatic), 'python' or 'numpy', got {backend!r:.60}")
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
        def unrolled() -> list[Any]:
            return [f(*[examples[i][b] if ax == 0 else a for i, (a, ax) in enumerate(zip(args, axes))])
                    for b in range(first)]

        if expr.current().debug or _captures_open_nodes(f):
            # under debug_nans every op is checked, and a closure over a node
            # of a running transform must stay in its graph: run f eagerly
            return unrolled()
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
        # a number leaf traces as an input, any other leaf is static: the key
        # says which leaf is which, and the static ones' types and values
        ex_static = {i: tree.leaves(examples[i][0]) for i in examples}  # example 0's leaves
        per_ex = list(ex_static.values())
        key = (tuple(key_parts), *(tuple(map(_token, ls)) for ls in (bc_leaves, *per_ex)))
        try:
            entry = cache.bodies.get(key)
        except TypeError:
            raise TypeError("vmap: non-number leaves of the arguments must be hashable (they are static)") from None
        num_bc = [k for k, v in enumerate(bc_leaves) if v.__class__ is Node or expr.real_number(v)]
        ex_num_idx = {
            i: {k for k, v in enumerate(ex_static[i]) if v.__class__ is Node or expr.real_number(v)}
            for i in examples
        }
        if entry is None:
            try:
                entry = _make_body(f, name, args, axes, bc_leaves, bc_defs, num_bc, examples, ex_defs, ex_num_idx)
            except expr.ForeignNodeError:
                entry = _UNROLLED  # f reads a node of a running transform: traced, it would be a constant
            entry = cache.bodies.setdefault(key, entry)
            _evict(cache.bodies)
        elif entry is not _UNROLLED and expr.current().active and _reads_open_nodes(entry[0]):
            # Traced before, f may read a node of the transform now running
            # (a helper, a method, a global that holds one): the cached trace
            # has a number there, and the derivative would be lost. Tracing f
            # once more, at its own level, is the only sure way to tell.
            return unrolled()
        if entry is _UNROLLED:
            return unrolled()
        body, out_td = entry
        args_flat = [
            v if v.__class__ is float or v.__class__ is Node else expr._check_number(v, f"vmap: broadcast leaf {k}")
            for k, v in ((k, bc_leaves[k]) for k in num_bc)
        ]
        for i in examples:
            _example_numbers(examples[i], i, ex_defs[i], ex_num_idx[i], ex_static[i], args_flat)
        use = _backend(backend, body, first)
        res = body.apply(args_flat, first, use)
        k = body.k_ex
        if res.__class__ is Node:
            vals: Sequence[Any] = [expr.pick(res, i) for i in range(first * k)]
        else:
            vals = res
        return [tree.unflatten(out_td, list(vals[b * k : b * k + k])) for b in range(first)]

    batched.__name__ = f"vmap({name})"
    batched.__qualname__ = batched.__name__
    batched.__doc__ = getattr(f, "__doc__", None)
    batched.clear_cache = cache.bodies.clear  # type: ignore[attr-defined]
    return batched


#: From this many examples on, ``vmap`` replays with NumPy unless told
#: otherwise: below it, NumPy's cost per call (about a microsecond an op)
#: exceeds the Python loop's cost per example.
NUMPY_FROM = 64


def _reads_open_nodes(body: _Map) -> bool:
    """Whether tracing ``body``'s function again, at a level of its own, reads a node of a running transform."""
    try:
        _in_root(body._trace_at_a_level)
    except expr.ForeignNodeError:
        return True
    return False


def _backend(asked: str | None, body: _Map, size: int) -> str:
    if asked == "python":
        return "python"
    if asked == "numpy":
        if not body.array_ok():
            raise TypeError(
                f"vmap: backend='numpy' cannot replay {body.name}: {body._array_why} (it needs NumPy, "
                "pip install 'fungrad[fast]', and a body made of fungrad's built-in primitives)"
            )
        return "numpy"
    return "numpy" if size >= NUMPY_FROM and body.array_ok() else "python"


_UNROLLED: Any = ("unrolled",)  # the cache's mark for a function that runs example by example
_NUMBER = object()  # the key's token for a leaf that is a number (traced, not static)


def _token(v: Any) -> Any:
    return _NUMBER if v.__class__ is float or v.__class__ is Node or expr.real_number(v) else tree._static_key(v, "vmap")


def _captures_open_nodes(f: Any, budget: int = 10_000) -> bool:
    """Whether ``f`` can read a node of a transform still running: in its closure or the globals it names.

    The search goes through lists, tuples, dicts, pytrees and the attributes
    of plain objects, up to ``budget`` values (a closure over a data set stops
    there: its numbers are not nodes).
    """
    roots: list[Any] = []
    for cell in getattr(f, "__closure__", None) or ():
        try:
            roots.append(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
    code, glob = getattr(f, "__code__", None), getattr(f, "__globals__", None)
    if code is not None and glob is not None:
        roots += [glob[n] for n in code.co_names if n in glob]
    return tree._reaches(roots, lambda x: x.__class__ is Node and x.level > 0 and expr.is_open(x.level), budget)


def _example_numbers(
    exs: list[Any], i: int, td: tree.TreeDef, num: set[int], static: list[Any], out: list[Any]
) -> None:
    """Append the numbers of argument ``i``'s examples to ``out``, checking each example against example 0."""
    width = len(static)
    # examples that are flat lists of numbers, as a data set's rows are
    rows = len(num) == width and td == tree.structure([0.0] * width)
    for b, ex in enumerate(exs):
        if rows and ex.__class__ is list and len(ex) == width and all([v.__class__ is float for v in ex]):
            out.extend(ex)  # a row of floats (a data set's features): nothing to check or convert
            continue
        ls, etd = tree.flatten(ex)
        if etd != td:
            raise ValueError(
                f"vmap: argument {i}, example {b} has structure {etd!r}, but example 0 has "
                f"{td!r}; every example must have the same structure"
            )
        for k, v in enumerate(ls):
            if k in num:
                if v.__class__ is float or v.__class__ is Node:
                    out.append(v)
                elif expr.real_number(v):
                    out.append(expr._check_number(v, f"vmap: argument {i}, example {b}, leaf {k}"))
                else:
                    raise TypeError(
                        f"vmap: argument {i}, example {b}, leaf {k} is {type(v).__name__}; "
                        "expected a number, as in example 0"
                    )
            elif b and not _same_static(v, static[k]):
                # the body was traced with example 0's value of this leaf
                raise ValueError(
                    f"vmap: argument {i}, example {b}, leaf {k} is {v!r:.40}, but example 0 has "
                    f"{static[k]!r:.40}; leaves that are not numbers are static and must be "
                    "the same in every example (map over the ones that differ with separate calls)"
                )


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
) -> tuple[_Map, tree.TreeDef]:
    # Only the static leaves are kept: a number of the first call (a node of
    # some graph) must not stay alive with the body
    nums = set(num_bc)
    bc_static = [None if k in nums else v for k, v in enumerate(bc_leaves)]
    ex0 = {
        i: [None if k in ex_num_idx[i] else v for k, v in enumerate(tree.leaves(examples[i][0]))] for i in examples
    }
    holder: list[Any] = []
    # The cache of f's bodies lives as long as f does, so a body refers to f
    # weakly (else f could never die); the nodes of a map hold f instead
    try:
        owner: Callable[[], Any] = weakref.ref(f)
    except TypeError:  # not weakly referable: this body is not cached either
        owner = lambda: f  # noqa: E731

    def one(xs: list[Any]) -> list[Any]:
        it = iter(xs)
        leaves = list(bc_static)
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
        res = owner()(*call)
        outs, td = tree.flatten(res)
        lv = expr.current().level
        if lv > 0 and tree._reaches(
            [rec[1] for rec in td._span() if rec[1] is not None], lambda x: x.__class__ is Node and x.level >= lv
        ):
            # rebuilt as traced for every example: each would get the trace's node
            raise TypeError(
                f"vmap: the output of {name} has a traced node in its structure: a dict key or a static "
                "field (fungrad.tree.static). Make it a leaf (a field that is not static, a dict value)"
            )
        if not holder:
            holder.append(td)
        return outs

    widths = [len(ex_num_idx[i]) for i in examples]
    body = _Map(lambda bc, ex: (one([*bc, *ex]), []), len(num_bc), widths, name, owner)
    return body, holder[0]


# --------------------------------------------------------------------------
# Export: the traced program as array code


def _takes_numbers(xp: Any) -> bool:
    # whether the namespace's functions take Python numbers (NumPy's and JAX's do)
    try:
        xp.exp(0.0)
    except TypeError:
        return False
    return True


def export(f: Callable[..., Any], *example_args: Any, xp: Any = None) -> Callable[..., Any]:
    """``f`` as a plain function of arrays for the namespace ``xp`` (NumPy, ``torch``, ``jax.numpy``).

    ``f`` is traced once on ``example_args`` (as :func:`fungrad.jit` would),
    and the nodes its outputs need become straight-line code in which every
    op is the elementwise function of ``xp`` (``xp.exp``, ``xp.where``, ...).
    The exported function takes arguments of the same pytree structure with
    arrays (or numbers) at the leaves, so leaves of shape ``(B,)`` evaluate B
    examples at once, and it returns ``f``'s output structure with arrays at
    the leaves. Int and bool arrays are converted to float64 first; float
    arrays compute in their own precision. What the framework does next (its
    autograd, ``jit``, ``vmap``, devices) is its own. ``.source`` holds the
    generated code.

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
    f64 = getattr(xp, "float64", None)
    # PyTorch's functions take tensors only (torch.exp(1.0) is a TypeError):
    # there, a number given for a leaf becomes a 0-d float64 array
    as_array = None if _takes_numbers(xp) or f64 is None else (lambda v: xp.asarray(float(v), dtype=f64))
    try:
        body = codegen.array_function(tape, inputs, outs, xp, name="_exported")
    except TypeError as e:
        raise TypeError(f"export: {e}") from None
    src = body.source  # type: ignore[attr-defined]

    def floats(v: Any) -> Any:
        # fungrad computes in floats: an int or bool array (or number) would
        # compute in its own type, wrap around and truncate; floats stay as given
        dt = getattr(v, "dtype", None)
        if dt is None:
            if as_array is not None:
                return as_array(v)
            return float(v) if isinstance(v, int) else v
        is_float = getattr(dt, "is_floating_point", None)  # torch's dtypes
        if is_float is None:
            is_float = getattr(dt, "kind", "f") in "fc"
        return v if is_float or f64 is None else xp.asarray(v, dtype=f64)

    def exported(*args: Any) -> Any:
        ls, atd = tree.flatten(args)
        if atd != td:
            raise ValueError(f"export: the arguments have structure {atd!r}, but f was exported for {td!r}")
        return tree.unflatten(out_td, body([floats(v) for v in ls]))

    exported.source = src  # type: ignore[attr-defined]
    exported.__name__ = f"export({getattr(f, '__name__', 'f')})"
    return exported
