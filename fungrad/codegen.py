"""The code generator: a traced graph as straight-line Python.

:func:`compile_graph` is the whole pipeline that :func:`fungrad.jit` runs on
the nodes a trace recorded, one step at a time:

1. :func:`prepare` folds aliases and constants: the nodes the outputs need,
   in tape (topological) order, and the nodes that only pass a value on;
2. :func:`plan` makes one :class:`Step` record per node: its arguments, its
   uses, whether it folds into its user's expression, which statement and
   which generated function (segment) evaluates it, and when its register
   is dead;
3. :func:`emit` writes the statements, reusing the registers of dead values;
4. :func:`link` compiles the segments into one function of a list of floats.

The inputs become locals, a value used once folds into its user, and a
value used twice gets a register:

>>> import fungrad as fg
>>> def f(x, y):
...     t = fg.tanh(x * y)
...     return [t + 1.0, t * t]
>>> print(fg.jit(f).source(2.0, 3.0))
def _s0(xs, o, R):
    x0, x1 = xs
    r0 = _f_tanh(x0 * x1)
    o[0] = r0 + 1.0
    o[1] = r0 * r0
<BLANKLINE>
"""

from __future__ import annotations

import collections
import itertools
import math
import re
import struct
import time
from typing import Any, Callable

from . import expr
from .expr import Node

__all__ = [
    "prepare", "plan", "emit", "link", "compile_graph", "Step", "Program", "MAX_DEPTH", "SEGMENT",
    "ARRAY", "NUMPY", "array_function",
]

# Ops written inline in the generated code: Python float + - * and unary -
# never raise (overflow gives inf, inf - inf gives nan), so they are the same
# IEEE operations as the primitives' forwards; ``where`` and ``relu`` are the
# conditional expressions of their forwards. Every other op calls its
# primitive's ``fwd``. Each template is checked against its forward on edge
# values when this module loads (below), and dropped if they ever disagree.
#
# Parentheses go only where Python's grammar needs them: they are half of
# what compile() reads, and compiling is most of jit's first call. A template
# gives the precedence of its expression and the least precedence each
# operand may have bare; an operand that binds more loosely than that is
# parenthesized. The right operand of + - * must bind tighter than the op
# itself, so ``a + (b + c)`` keeps its parentheses: floats do not associate.
_COND, _SUM, _TERM, _UNARY, _ATOM = range(5)  # Python's ranks, loosest first

_INLINE: dict[str, tuple[int, str, tuple[int, ...]]] = {
    "add": (_SUM, "{0} + {1}", (_SUM, _TERM)),
    "sub": (_SUM, "{0} - {1}", (_SUM, _TERM)),
    "mul": (_TERM, "{0} * {1}", (_TERM, _UNARY)),
    "neg": (_UNARY, "-{0}", (_UNARY,)),
    "where": (_COND, "{1} if {0} > 0.0 else {2}", (_SUM, _SUM, _SUM)),
    "relu": (_COND, "0.0 if {0} < 0.0 else {0}", (_SUM,)),
}
_FWD = expr.FWD  # by op name; user primitives join it when declared
_SIMPLE = re.compile(r"(r\d+|x\d+|R\[\d+\]|_?[a-z]+|\(?-?[0-9.e+-]+\)?)\Z")  # names and literals
_EDGE = (0.0, -0.0, 1.0, -1.0, 2.5, 1e-310, math.inf, -math.inf, math.nan)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _agrees(f: Callable[..., float], g: Callable[..., float], arity: int) -> bool:
    return all(_bits(f(*a)) == _bits(g(*a)) for a in itertools.product(_EDGE, repeat=arity))


def _checked_templates() -> dict[str, tuple[int, str, tuple[int, ...]]]:
    out = {}
    for op, row in _INLINE.items():
        p = expr.PRIMITIVES[op]
        names = [f"a{i}" for i in range(p.arity)]
        f = eval(f"lambda {', '.join(names)}: {row[1].format(*names)}")  # noqa: S307 - our own template
        if _agrees(f, p.fwd, p.arity):
            out[op] = row
    return out


_INLINE = _checked_templates()
# a template that reads its argument twice evaluates a folded argument once,
# into _t; inside ``(_t := ...)`` an operand of any precedence stands bare
_VIA_TEMP = {
    op: (prec, t.replace("{0}", "\x00", 1).replace("{0}", "_t").replace("\x00", "(_t := {0})"), (_COND,) + least[1:])
    for op, (prec, t, least) in _INLINE.items()
    if t.count("{0}") > 1
}


def _operands(args: list[str], precs: list[int], least: tuple[int, ...]) -> list[str]:
    return [a if p >= k else f"({a})" for a, p, k in zip(args, precs, least)]


# x * 1.0 is x, bit for bit, for every float x: such products are aliases
_MUL_ONE_IS_IDENTITY = _agrees(lambda a: _FWD["mul"](a, 1.0), lambda a: a, 1) and _agrees(
    lambda a: _FWD["mul"](1.0, a), lambda a: a, 1
)

# Folding a chain of single-use values into one expression nests it; past a
# few dozen levels CPython's parser refuses ("too many nested parentheses").
MAX_DEPTH = 24
# Statements per generated function. A value that crosses from one function
# to the next goes through the list R, which is slow: measured here, a
# 10^6-node chain replays at about 75 ns per node in functions of 20,000
# statements and 21 ns in one function. So only graphs past this size are
# split (compiling costs about 10 us per statement, a little more in very
# large functions).
SEGMENT = 500_000


# --------------------------------------------------------------------------
# 1. Aliases and constants


def prepare(
    tape: list[Node], inputs: list[Node], outs: list[Any], *, keep_stops: bool = False
) -> tuple[list[Node], dict[Node, Node]]:
    """The nodes the replay computes, in tape (topological) order, and the aliases.

    Leaves made inside the trace that are not inputs (``fg.var(3.0)`` inside
    ``f``) and every node from outside the trace are constants. A node that
    only passes a value on is an alias of that value: a ``link`` (the input of
    a nested grad), a ``stop_gradient``, a product with the constant ``1.0`` (``x * 1.0`` is ``x``
    exactly, in IEEE arithmetic, for every ``x``), and a ``where`` whose
    condition is a constant. Backward passes make many of these.
    """
    ins = set(inputs)
    # the nodes the replay computes: every node on the tape but the leaves
    # made inside the trace that are not inputs (constants, like the nodes
    # from outside the trace)
    live = {n for n in tape if n.op or n in ins}
    alias: dict[Node, Node] = {}
    get = alias.get
    for n in tape:
        op = n.op
        if op == "mul":
            if _MUL_ONE_IS_IDENTITY:
                a, b = n._x, n._y  # its two parents (the parents property would build a tuple)
                a, b = get(a, a), get(b, b)
                if a not in live and a.value == 1.0:
                    alias[n] = b
                elif b not in live and b.value == 1.0:
                    alias[n] = a
        elif op == "link" or (op == "stop_gradient" and not keep_stops):
            p = n.parents[0]
            alias[n] = get(p, p)
        elif op == "where":
            c, x, y = n.parents
            c = get(c, c)
            if c not in live:
                # the forward picks one of its arguments: let it pick the node
                # (on nodes it returns the node it picks)
                p = _FWD["where"](c.value, x, y)  # type: ignore[assignment]
                if p is x or p is y:
                    alias[n] = get(p, p)
    need = set()
    for o in outs:
        if o.__class__ is Node:
            o = get(o, o)
            if o in live:
                need.add(o)
    add = need.add
    many = expr._MANY
    for n in reversed(tape):  # users come after producers, so one pass suffices
        if n in need:
            x, y = n._x, n._y  # the parents, read from the slots (see expr._Slots)
            for p in x if y is many else () if x is None else (x,) if y is None else (x, y):
                p = get(p, p)
                if p in live:
                    add(p)
    return [n for n in tape if n in need], alias




# --------------------------------------------------------------------------
# 2. One record per node: folding, statements, segments, liveness


class Step:
    """What the generator knows about one node of the replay."""

    __slots__ = (
        "node", "args", "uses", "user", "outs", "input", "folded", "depth", "at", "seg", "last", "spill", "call", "take"
    )

    def __init__(self, node: Node, args: list[Any], input_slot: int | None):
        self.call: Callable[..., Any] | None = None  # a vmap node: the function of its arguments' list
        self.take = -1  # a pick of a vmap node: the output it reads
        self.node = node
        self.args = args  # per argument: the position of its step, or the constant node
        self.uses = 0  # how many arguments of later steps read this value
        self.user = -1  # the last of those steps (the only one, for a value used once)
        self.outs: tuple[int, ...] = ()  # the output slots it fills
        self.input = input_slot  # its slot in xs, for an input
        self.folded = input_slot is not None  # read where it is used, no register
        self.depth = 0  # nesting of the expression it folds into
        self.at = -1  # the statement that evaluates it
        self.seg = 0  # the generated function that holds that statement
        self.last = -1  # the last statement of its segment that reads its register
        self.spill = False  # whether a later segment reads it (through the list R)


def plan(order: list[Node], alias: dict[Node, Node], inputs: list[Node], outs: list[Any]) -> tuple[list[Step], list[Any]]:
    """One :class:`Step` per node of ``order``, and the output template (constants filled in).

    A value used exactly once is folded into the expression of its user; any
    other value gets a register (a local name), reused once the value is
    dead. Both keep the code short and the locals few, which is what makes it
    compile fast. Graphs of more than :data:`SEGMENT` statements are split
    into several functions; a value used in a later one is handed on through
    the list ``R``.
    """
    pos: dict[Node, int] = {}  # a node's step (the take step, for an output of a call)
    in_slot = {x: k for k, x in enumerate(inputs)}
    get = alias.get
    steps: list[Step] = []
    many = expr._MANY
    for n in order:
        i = len(steps)
        # the parents read from the node's slots (see expr._Slots): the
        # ``parents`` property builds a tuple per call, and plan visits every node
        x, y = n._x, n._y
        ps = () if x is None else (x,) if y is None else x if y is many else (x, y)
        args: list[Any] = []  # per argument: the position of its step, or the constant node itself
        for p in ps:
            p = get(p, p)
            j = pos.get(p)
            if j is None:
                args.append(p)
            else:
                args.append(j)
                u = steps[j]
                u.uses += 1
                u.user = i
        s = Step(n, args, in_slot.get(n))
        op = n.op
        if op == "vmap":
            s.call = n.value.map.replay(n.value)  # type: ignore[attr-defined]
        elif op == "vmap_pick":
            s.take = int(y.value)
        pos[n] = i
        steps.append(s)
    tmpl: list[Any] = []
    for k, o in enumerate(outs):
        if o.__class__ is Node:
            o = get(o, o)
        j = pos.get(o) if o.__class__ is Node else None
        if j is not None:
            steps[j].outs += (k,)
            tmpl.append(None)
        else:  # not computed by the replay: a constant, or a static object returned as is
            tmpl.append(o.value if o.__class__ is Node else o)
    _fold(steps)
    _segment(steps)
    return steps, tmpl


def _fold(steps: list[Step]) -> None:
    # which values fold into their user, and how deep the expressions nest
    for s in steps:
        if s.input is not None:
            continue
        d = 0
        for j in s.args:
            if j.__class__ is int:
                p = steps[j]
                if p.folded and p.input is None and p.depth > d:
                    d = p.depth
        # an affine node is a chain of + and *, one level per term
        s.depth = d + (len(s.args) // 2 + 1 if s.node.op == "affine" else 1)
        s.folded = s.uses == 1 and not s.outs and s.depth < MAX_DEPTH


def _segment(steps: list[Step]) -> None:
    # the statement and segment that evaluate each value, and its liveness
    count = 0
    for i, s in enumerate(steps):
        s.at = i
        if not s.folded:
            s.seg = count // SEGMENT
            count += 1
    for s in reversed(steps):
        if s.folded and s.input is None:
            u = steps[s.user]
            s.at, s.seg = u.at, u.seg
    for j, s in enumerate(steps):
        s.last = j
    for u in steps:  # each register lives until the last statement of its segment that reads it
        for j in u.args:
            if j.__class__ is int:
                s = steps[j]
                if s.folded:
                    continue
                if u.seg == s.seg:
                    if u.at > s.last:
                        s.last = u.at
                else:
                    s.spill = True


# --------------------------------------------------------------------------
# 3. The statements


class _Names:
    """Constants and functions that the generated code reads as globals."""

    def __init__(self) -> None:
        self.glob: dict[str, Any] = {"_inf": math.inf, "_ninf": -math.inf, "_nz": -0.0}
        self.fwds: dict[str, str] = {}  # op -> the global name of its forward

    def literal(self, v: float) -> str:
        if v != v:
            # the very float: a nan's sign and payload are kept, as eager keeps them
            # (one global per bit pattern)
            name = f"_nan{_bits(v).hex()}"
            self.glob.setdefault(name, v)
            return name
        if v == math.inf:
            return "_inf"
        if v == -math.inf:
            return "_ninf"
        if v == 0.0 and math.copysign(1.0, v) < 0.0:
            return "_nz"
        return repr(v) if v >= 0.0 else f"({v!r})"

    def function(self, f: Callable[..., Any]) -> str:
        for k, v in self.glob.items():
            if v is f:
                return k
        name = f"_m{len(self.glob)}"
        self.glob[name] = f
        return name

    def fwd(self, op: str) -> str:
        name = self.fwds.get(op)
        if name is not None:
            return name
        f = expr.replay_forward(op)  # a custom_vjp's holds it for as long as the replay lives
        # user primitives may have names that are not identifiers
        name = f"_f_{op}" if op.isidentifier() else f"_f{len(self.glob)}_{re.sub(r'[^0-9a-zA-Z_]', '_', op)}"
        if self.glob.get(name, f) is not f:
            name = f"_f{len(self.glob)}"
        self.glob.setdefault(name, f)
        self.fwds[op] = name
        return name


def emit(steps: list[Step], tmpl: list[Any], ninputs: int | None = None) -> tuple[list[str], dict[str, Any], int]:
    """The source of each segment, the globals it reads, and the number of spill slots.

    The code reads the inputs from the list ``xs`` (of ``ninputs`` items,
    when known) into locals ``x<k>`` and stores the outputs into the list
    ``o`` as soon as they are computed.
    """
    names = _Names()
    text: list[str] = [""] * len(steps)
    prec: list[int] = [_ATOM] * len(steps)  # how tightly each text binds (a name binds tightest)
    slot: dict[int, int] = {}
    segments: list[list[str]] = []
    lines: list[str] = []
    release: dict[int, list[str]] = {}
    free: list[str] = []
    nregs = 0
    cur = -1
    used: collections.defaultdict[int, set[int]] = collections.defaultdict(set)  # per segment, the inputs it reads by name
    for i, s in enumerate(steps):
        if s.input is not None:
            text[i] = f"x{s.input}"
            if s.outs:  # stored into o by the segment being written
                used[max(cur, 0)].add(s.input)
            for k in s.outs:
                lines.append(f"o[{k}] = {text[i]}")
            continue
        args = []
        precs = []  # the precedence of each argument's text
        for j in s.args:
            if j.__class__ is not int:
                args.append(names.literal(j.value))
                precs.append(_ATOM)
                continue
            p = steps[j]
            if p.input is not None and s.call is None:
                used[s.seg].add(p.input)
            if p.folded and p.input is None:
                args.append(text[j])
                precs.append(prec[j])
                text[j] = ""  # used once: its text now lives in its user's
            elif p.folded or p.seg == s.seg:
                args.append(text[j])
                precs.append(prec[j])
            else:
                args.append(f"R[{slot[j]}]")
                precs.append(_ATOM)
        op = s.node.op
        row = _INLINE.get(op)
        pe = _ATOM
        if s.call is not None:
            e = f"{names.function(s.call)}({_arguments_list(s, args, steps, names)})"
        elif s.take >= 0:
            e = f"{_operands(args, precs, (_ATOM,))[0]}[{s.take}]"
        elif op == "affine":
            e = _affine_text(args, precs)
            pe = _SUM
        elif row is None:
            e = f"{names.fwd(op)}({', '.join(args)})"
        else:
            if op in _VIA_TEMP and not _SIMPLE.match(args[0]):
                row = _VIA_TEMP[op]
            pe, tpl, least = row
            if len(args) == 2:  # written out for the binary ops, the most common by far
                a, b = args
                e = tpl.format(a if precs[0] >= least[0] else f"({a})", b if precs[1] >= least[1] else f"({b})")
            else:
                e = tpl.format(*_operands(args, precs, least))
        if s.folded:
            text[i] = e
            prec[i] = pe
            continue
        if s.seg != cur:  # a new segment: every register is free again
            if cur >= 0:
                segments.append(_unpack(used.get(cur, set()), ninputs) + lines)
                lines = []
            cur = s.seg
            release.clear()
            free = [f"r{k}" for k in range(nregs - 1, -1, -1)]
        for r in release.pop(i, ()):
            free.append(r)
        if s.uses == 0 and len(s.outs) == 1:
            lines.append(f"o[{s.outs[0]}] = {e}")
            continue
        if free:
            reg = free.pop()
        else:
            reg = f"r{nregs}"
            nregs += 1
        lines.append(f"{reg} = {e}")
        text[i] = reg
        for k in s.outs:
            lines.append(f"o[{k}] = {reg}")
        if s.spill:
            slot[i] = len(slot)
            lines.append(f"R[{slot[i]}] = {reg}")
        if s.last == i:
            free.append(reg)
        else:
            release.setdefault(s.last, []).append(reg)
    segments.append(_unpack(used.get(max(cur, 0), set()), ninputs) + lines)
    src = [
        f"def _s{c}(xs, o, R):\n    " + "\n    ".join(body or ["pass"]) + "\n" for c, body in enumerate(segments)
    ]
    names.glob["_tmpl"] = tmpl
    return src, names.glob, len(slot)


def _affine_text(args: list[str], precs: list[int]) -> str:
    # b + w0 * x0 + w1 * x1 + ...: the add and mul templates' operands, in
    # the order Python's + and * evaluate them (left to right), as the
    # forward does
    add, mul = _INLINE["add"][2], _INLINE["mul"][2]
    parts = [args[0] if precs[0] >= add[0] else f"({args[0]})"]
    for i in range(1, len(args) - 1, 2):
        w = args[i] if precs[i] >= mul[0] else f"({args[i]})"
        x = args[i + 1] if precs[i + 1] >= mul[1] else f"({args[i + 1]})"
        parts.append(f"{w} * {x}")
    return " + ".join(parts)


def _unpack(used: set[int], ninputs: int | None) -> list[str]:
    # The inputs a segment reads by name become local variables first: a
    # local is faster to read than an item of xs. One unpacking of the whole
    # list costs least when most inputs are read; else one line per input.
    if not used:
        return []
    top = max(used) + 1  # inputs past the last one read are not named
    if 2 * len(used) >= top:
        names = ", ".join(f"x{k}" if k in used else "_" for k in range(top))
        return [f"{names}{',' if top == 1 else ''} = xs" + ("" if top == ninputs else f"[:{top}]")]
    return [f"x{k} = xs[{k}]" for k in sorted(used)]


def _arguments_list(s: Step, args: list[str], steps: list[Step], names: _Names) -> str:
    # A vmap node takes thousands of arguments (a whole batch): runs of
    # consecutive inputs become slices of xs and runs of constants one global
    # list, which keeps the statement short to compile.
    parts: list[str] = []
    i, n = 0, len(args)
    while i < n:
        j = s.args[i]
        if j.__class__ is int and steps[j].input is not None:
            a: int = steps[j].input  # type: ignore[assignment]  # not None: checked above
            k = i + 1
            while k < n and s.args[k].__class__ is int and steps[s.args[k]].input == a + (k - i):
                k += 1
            if k - i > 2:
                parts.append(f"*xs[{a}:{a + k - i}]")
                i = k
                continue
        elif j.__class__ is not int:
            k = i + 1
            while k < n and s.args[k].__class__ is not int:
                k += 1
            if k - i > 2:
                name = f"_k{len(names.glob)}"
                names.glob[name] = [c.value for c in s.args[i:k]]
                parts.append(f"*{name}")
                i = k
                continue
        # an input read alone is read from xs: the segment does not unpack it
        parts.append(f"xs[{steps[j].input}]" if j.__class__ is int and steps[j].input is not None else args[i])
        i += 1
    if len(parts) == 1 and parts[0].startswith("*xs["):
        return parts[0][1:]  # one run of inputs: the slice is already a new list
    return "[" + ", ".join(parts) + "]"


# --------------------------------------------------------------------------
# 4. One function of the inputs


def link(segs: list[str], glob: dict[str, Any], nspill: int) -> Callable[[list[float]], list[Any]]:
    """Compile the segments into ``run(xs) -> output leaves``."""
    fns = []
    for c, s in enumerate(segs):
        g = dict(glob)
        exec(compile(s, f"<fungrad.jit segment {c}>", "exec"), g)  # noqa: S102 - our own generated code
        fns.append(g[f"_s{c}"])
    tmpl = glob["_tmpl"]
    if len(fns) == 1:
        f0 = fns[0]

        def run1(xs: list[float]) -> list[Any]:
            o = tmpl[:]
            f0(xs, o, None)
            return o

        return run1

    def run(xs: list[float]) -> list[Any]:
        o = tmpl[:]
        R = [None] * nspill
        for f in fns:
            f(xs, o, R)
        return o

    return run


class Program:
    """A compiled replay: ``run(xs)`` gives the output leaves; ``source`` and ``info`` describe it."""

    __slots__ = ("run", "source", "info")

    def __init__(self, run: Callable[[list[float]], list[Any]] | None, source: list[str], info: dict[str, Any]):
        self.run = run
        self.source = source
        self.info = info


def compile_graph(tape: list[Node], inputs: list[Node], outs: list[Any], *, compile: bool = True) -> Program:
    """The pipeline: prepare, plan, emit and (with ``compile``) link the nodes a trace recorded.

    ``info`` has ``traced`` (nodes recorded), ``nodes`` (nodes the outputs
    need), ``lines`` (generated statements), ``codegen_s`` and ``compile_s``.
    """
    t0 = time.perf_counter()
    order, alias = prepare(tape, inputs, outs)
    steps, tmpl = plan(order, alias, inputs, outs)
    segs, glob, nspill = emit(steps, tmpl, len(inputs))
    info: dict[str, Any] = {"traced": len(tape), "nodes": len(order)}
    del order, alias, steps
    t1 = time.perf_counter()
    run = link(segs, glob, nspill) if compile else None
    info.update(lines=sum(s.count("\n") for s in segs), codegen_s=t1 - t0, compile_s=time.perf_counter() - t1)
    return Program(run, segs, info)


# --------------------------------------------------------------------------
# 5. Array code: the same graph, each op an elementwise function of ``xp``

# How each primitive is written for an array namespace ``xp`` (NumPy, torch,
# jax.numpy): elementwise, on arrays or numbers, with the IEEE meaning of the
# primitives' forwards. ``_like(c, x)`` gives a number the shape and dtype
# of x (``xp.full_like``; ``c + 0.0 * x`` would turn an infinite x into nan).
ARRAY = {
    "add": "({0} + {1})",
    "sub": "({0} - {1})",
    "mul": "({0} * {1})",
    "div": "_div({0}, {1})",
    "pow": "_pow({0}, {1})",
    "neg": "(-{0})",
    "exp": "xp.exp({0})",
    "log": "xp.log({0})",
    "tanh": "xp.tanh({0})",
    "relu": "xp.where({0} < 0.0, _like(0.0, {0}), {0})",
    "sigmoid": "(1.0 / (1.0 + xp.exp(-{0})))",
    "sqrt": "xp.sqrt({0})",
    "sin": "xp.sin({0})",
    "cos": "xp.cos({0})",
    "tan": "xp.tan({0})",
    "asin": "xp.arcsin({0})",
    "acos": "xp.arccos({0})",
    "atan": "xp.arctan({0})",
    "atan2": "_atan2({0}, {1})",
    "sinh": "xp.sinh({0})",
    "cosh": "xp.cosh({0})",
    "log1p": "xp.log1p({0})",
    "expm1": "xp.expm1({0})",
    "abs": "xp.abs({0})",
    "maximum": "xp.where(({0} != {0}) | ({1} != {1}), _nan, xp.where({0} < {1}, {1}, {0}))",
    "minimum": "xp.where(({0} != {0}) | ({1} != {1}), _nan, xp.where({1} < {0}, {1}, {0}))",
    "sign": "xp.where({0} > 0.0, _like(1.0, {0}), xp.where({0} < 0.0, _like(-1.0, {0}), _like(0.0, {0})))",
    "step": "xp.where({0} > 0.0, _like(1.0, {0}), _like(0.0, {0}))",
    "where": "xp.where({0} > 0.0, _like({1}, {0}), _like({2}, {0}))",
    "softplus": "xp.where({0} > 20.0, {0}, xp.log1p(xp.exp(xp.where({0} > 20.0, _like(0.0, {0}), {0}))))",
    "stop_gradient": "_stop({0})",  # the namespace's own, for code that its autograd differentiates
    "link": "{0}",
    "erf": "_erf({0})",
    "share": "xp.where({0} < {1}, _like(0.0, {0}), xp.where({0} == {1}, _like(0.5, {0}), _like(1.0, {0})))",
}

# NumPy, for vmap's array backend: the forwards' exact results wherever
# NumPy can give them (+ - * / and the selections bit for bit, signed zeros
# and nan included; np.divide and np.power so that Python numbers never
# raise), and NumPy's own transcendental functions, which may differ from the
# C library's by a few ulp.
NUMPY = {
    **ARRAY,
    "stop_gradient": "{0}",
    "div": "xp.divide({0}, {1})",
    "relu": "xp.where({0} < 0.0, 0.0, {0})",
    "sigmoid": "xp.divide(1.0, 1.0 + xp.exp(xp.negative({0})))",
    "sign": "xp.where({0} > 0.0, 1.0, xp.where({0} < 0.0, -1.0, 0.0))",
    "step": "xp.where({0} > 0.0, 1.0, 0.0)",
    "where": "xp.where({0} > 0.0, {1}, {2})",
    "softplus": "xp.where({0} > 20.0, {0}, xp.log1p(xp.exp({0})))",
    "share": "xp.where({0} < {1}, 0.0, xp.where({0} == {1}, 0.5, 1.0))",
}


def _array_analysis(
    order: list[Node], alias: dict[Node, Node], arrays: list[Node], outs: list[Any], keep: int
) -> tuple[set[Node], dict[Node, int], set[Node]]:
    """Which values are arrays, where each is read last, and which summed outputs are dot products."""
    batched = set(arrays)
    uses: dict[Node, int] = {}
    last: dict[Node, int] = {}
    for i, n in enumerate(order):
        if any(alias.get(p, p) in batched for p in n.parents):
            batched.add(n)
        for p in n.parents:
            p = alias.get(p, p)
            uses[p] = uses.get(p, 0) + 1
            last[p] = i
    for o in outs[:keep]:
        if o.__class__ is Node:
            o = alias.get(o, o)
            uses[o] = uses.get(o, 0) + 1
    # a product of two arrays, summed over the batch and used nowhere else, is one dot product
    dots = set()
    for o in outs[keep:]:
        if o.__class__ is Node:
            o = alias.get(o, o)
            if o.op == "mul" and not uses.get(o) and o.parents and all(alias.get(p, p) in batched for p in o.parents):
                dots.add(o)
            else:
                uses[o] = uses.get(o, 0) + 1
    return batched, last, dots


def _array_sum(o: Any, alias: dict[Node, Node], batched: set[Node], dots: set[Node], ref: Callable[[Node], str]) -> str:
    # the expression of an output summed over the batch, as a float
    if o.__class__ is not Node:
        return f"{o!r} * size"
    o = alias.get(o, o)
    if o in dots:
        a, b = (ref(p) for p in o.parents)
        return f"_dot_sum({a}, {b})"
    if o in batched:
        return f"_sum({ref(o)})"
    return f"_sum(xp.full(size, {ref(o)}))"  # the same number for every example


def _sums_for(xp: Any) -> tuple[Callable[[Any], float], Callable[[Any, Any], float]]:
    # NumPy's sums start from +0.0, so terms that are all -0.0 sum to +0.0;
    # added one by one, in any order, they sum to -0.0, as the replay in
    # Python adds them
    def signed_zero(terms: Any) -> float:
        return -0.0 if terms.size and bool(xp.all(xp.signbit(terms))) else 0.0

    def _sum(v: Any) -> float:
        s = float(xp.add.reduce(v))
        return s if s != 0.0 else signed_zero(v)

    def _dot_sum(a: Any, b: Any) -> float:
        s = float(xp.dot(a, b))
        return s if s != 0.0 else signed_zero(a * b)

    return _sum, _dot_sum


def _pow_for(xp: Any) -> Callable[[Any, Any], Any]:
    # NumPy and PyTorch compute an array to the scalar power 0.5 as a square
    # root, which gives nan for -inf and -0.0 for -0.0 where pow gives inf and
    # 0.0: an exponent as long as the base takes their pow instead
    power = getattr(xp, "power", None) or xp.pow

    def pw(a: Any, b: Any) -> Any:
        if getattr(b, "ndim", 0) == 0 and getattr(a, "ndim", 0) > 0:
            b = xp.full_like(a + 0.0, b)  # not a broadcast view, which NumPy takes for a scalar
        elif getattr(a, "ndim", 0) == 0 and getattr(b, "ndim", 0) > 0:
            a = xp.full_like(b + 0.0, a)
        return power(a, b)

    return pw


def _like_for(xp: Any) -> Callable[[Any, Any], Any]:
    full_like = xp.full_like

    def _like(c: Any, x: Any) -> Any:
        if not isinstance(c, (int, float)):
            return c  # an array stays as it is
        if x.__class__ is float or x.__class__ is int:
            return c  # a constant's: PyTorch's full_like takes no number
        # x + 0.0: the float type an int array would have in c + 0.0 * x, and no nan from inf
        return full_like(x + 0.0, c)

    return _like


def _atan2_for(xp: Any) -> Callable[[Any, Any], Any]:
    like, atan2 = _like_for(xp), xp.arctan2

    def _atan2(a: Any, b: Any) -> Any:
        # PyTorch's arctan2 takes no number: a constant becomes an array like the other argument
        return atan2(like(a, b), like(b, a))

    return _atan2


def _div_for(xp: Any) -> Callable[[Any, Any], Any]:
    like = _like_for(xp)
    ieee = _FWD["div"]

    def _div(a: Any, b: Any) -> Any:
        if a.__class__ is float or a.__class__ is int:  # a Python number, not a NumPy scalar of its own type
            if b.__class__ is float or b.__class__ is int:
                return ieee(a, b)  # Python's / raises on a zero divisor
            # PyTorch computes a number over an array as the number times the
            # array's reciprocal: off by an ulp, and inf or nan where 1 / b overflows
            a = like(a, b)
        return a / b

    return _div


def _stop_for(xp: Any) -> Callable[[Any], Any]:
    # stop_gradient for an autograd that differentiates the exported code
    mod = getattr(xp, "__name__", "")
    if mod == "torch":
        tensor = xp.Tensor
        return lambda a: a.detach() if isinstance(a, tensor) else a
    if mod.startswith("jax"):
        import importlib

        return importlib.import_module("jax.lax").stop_gradient  # type: ignore[no-any-return]
    return lambda a: a  # NumPy computes no derivatives


def _erf_for(xp: Any) -> Callable[[Any], Any]:
    # erf is not in every array namespace (NumPy has none): fall back to
    # math.erf elementwise where the namespace can vectorize
    f = getattr(xp, "erf", None) or getattr(getattr(xp, "special", None), "erf", None)
    if f is not None:
        return f  # type: ignore[no-any-return]
    vec = getattr(xp, "vectorize", None)
    if vec is not None:
        v = vec(math.erf, otypes=[float])
        return lambda a: v(a)
    raise TypeError(f"{getattr(xp, '__name__', xp)!r} has no erf")


# the helpers of array code, each made for the namespace xp
_HELPERS: dict[str, Callable[[Any], Callable[..., Any]]] = {
    "_erf": _erf_for,
    "_like": _like_for,
    "_pow": _pow_for,
    "_div": _div_for,
    "_atan2": _atan2_for,
    "_stop": _stop_for,
}


def array_function(
    tape: list[Node],
    inputs: list[Node],
    outs: list[Any],
    xp: Any,
    templates: dict[str, str] = ARRAY,
    *,
    summed: int = 0,
    arrays_from: int = 0,
    name: str = "_array",
    reuse: bool = False,
) -> Callable[..., list[Any]]:
    """The graph as a function of a list of arrays (or numbers), one per input, to the output leaves.

    Every op the outputs need is written with ``templates``; an op without
    one is a ``TypeError`` naming it. With ``summed``, the last ``summed``
    outputs are summed over the batch axis and returned as floats, the
    inputs from ``arrays_from`` on being arrays of ``size`` elements and the
    others numbers. With ``reuse``, a dead value's name is reused, which
    frees its array early. With either, the function takes ``(xs, size)``.
    The function's ``source`` holds the code.
    """
    order, alias = prepare(tape, inputs, outs, keep_stops=templates.get("stop_gradient") != "{0}")
    slot = {x: k for k, x in enumerate(inputs)}
    names: dict[Node, str] = {}
    glob: dict[str, Any] = {"xp": xp, "_inf": math.inf, "_nan": math.nan, "inf": math.inf, "nan": math.nan}
    keep = len(outs) - summed
    batched, last, dots = _array_analysis(order, alias, inputs[arrays_from:], outs, keep)

    def ref(p: Node) -> str:
        p = alias.get(p, p)
        if p in slot:
            return f"xs[{slot[p]}]"
        nm = names.get(p)
        if nm is None:  # a constant
            nm = names[p] = f"c{len(glob)}"
            glob[nm] = p.value
        return nm

    # Registers are reused once their value is dead: every value an array,
    # thousands of them alive at once would cost more than the arithmetic
    outputs = {alias.get(o, o) for o in outs if o.__class__ is Node}
    outputs.update(alias.get(p, p) for o in dots for p in o.parents)  # read by the return statement
    regs: dict[Node, str] = {}
    free: list[str] = []
    nregs = 0
    lines = []
    for i, n in enumerate(order):
        if n in slot or n in dots:
            continue
        tpl = templates.get(n.op)
        if tpl is None:
            raise TypeError(
                f"the op {n.op!r} has no array form; array code may use only fungrad's built-in "
                f"primitives ({', '.join(sorted(templates))})"
            )
        e = tpl.format(*[ref(p) for p in n.parents])
        for p in {alias.get(p, p) for p in n.parents}:  # aliases first: two parents may be one value
            if last.get(p) == i and p in regs and p not in outputs:
                free.append(regs[p])
        if n in outputs or not reuse:
            reg = f"v{len(regs)}"
        elif free:
            reg = free.pop()
        else:
            reg = f"r{nregs}"
            nregs += 1
        names[n] = regs[n] = reg
        lines.append(f"{reg} = {e}")
    rets = [ref(o) if o.__class__ is Node else repr(o) for o in outs[:keep]]
    rets += [_array_sum(o, alias, batched, dots, ref) for o in outs[keep:]]
    params = "xs, size" if summed or reuse else "xs"
    src = f"def {name}({params}):\n    " + "\n    ".join(lines + [f"return [{', '.join(rets)}]"]) + "\n"
    for helper, make in _HELPERS.items():  # the namespace's helpers the code calls
        if f"{helper}(" in src:
            glob[helper] = make(xp)
    if summed:
        glob["_sum"], glob["_dot_sum"] = _sums_for(xp)
    exec(compile(src, "<fungrad array code>", "exec"), glob)  # noqa: S102 - our own generated code
    fn = glob[name]
    fn.source = src
    return fn  # type: ignore[no-any-return]
