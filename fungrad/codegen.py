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

>>> import fungrad as fg
>>> from fungrad import codegen
>>> print(fg.jit(lambda x, y: fg.tanh(x * y) + 1.0).source(2.0, 3.0))
def _s0(xs, o, R):
    o[0] = (_f_tanh((xs[0] * xs[1])) + 1.0)
<BLANKLINE>
"""

from __future__ import annotations

import itertools
import math
import re
import struct
import time
from typing import Any, Callable

from . import expr
from .expr import Node

__all__ = ["prepare", "plan", "emit", "link", "compile_graph", "Step", "Program", "MAX_DEPTH", "SEGMENT", "MULTI"]

# Ops written inline in the generated code: Python float + - * and unary -
# never raise (overflow gives inf, inf - inf gives nan), so they are the same
# IEEE operations as the primitives' forwards; ``where`` and ``relu`` are the
# conditional expressions of their forwards. Every other op calls its
# primitive's ``fwd``. Each template is checked against its forward on edge
# values when this module loads (below), and dropped if they ever disagree.
_INLINE = {
    "add": "({0} + {1})",
    "sub": "({0} - {1})",
    "mul": "({0} * {1})",
    "neg": "(-{0})",
    "where": "({1} if {0} > 0.0 else {2})",
    "relu": "(0.0 if {0} < 0.0 else {0})",
}
_FWD = expr.FWD  # by op name; user primitives join it when declared
_SIMPLE = re.compile(r"(r\d+|xs\[\d+\]|R\[\d+\]|_?[a-z]+|\(?-?[0-9.e+-]+\)?)\Z")  # names and literals
_EDGE = (0.0, -0.0, 1.0, -1.0, 2.5, 1e-310, math.inf, -math.inf, math.nan)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _agrees(f: Callable[..., float], g: Callable[..., float], arity: int) -> bool:
    return all(_bits(f(*a)) == _bits(g(*a)) for a in itertools.product(_EDGE, repeat=arity))


def _checked_templates() -> dict[str, str]:
    out = {}
    for op, tpl in _INLINE.items():
        p = expr.PRIMITIVES[op]
        names = [f"a{i}" for i in range(p.arity)]
        f = eval(f"lambda {', '.join(names)}: {tpl.format(*names)}")  # noqa: S307 - our own template
        if _agrees(f, p.fwd, p.arity):
            out[op] = tpl
    return out


_INLINE = _checked_templates()
# a template that reads its argument twice evaluates a folded argument once, into _t
_VIA_TEMP = {
    op: t.replace("{0}", "\x00", 1).replace("{0}", "_t").replace("\x00", "(_t := {0})")
    for op, t in _INLINE.items()
    if t.count("{0}") > 1
}
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


def prepare(tape: list[Node], inputs: list[Node], outs: list[Any]) -> tuple[list[Node], dict[Node, Node]]:
    """The nodes the replay computes, in tape (topological) order, and the aliases.

    Leaves made inside the trace that are not inputs (``fg.var(3.0)`` inside
    ``f``) and every node from outside the trace are constants. A node that
    only passes a value on is an alias of that value: a ``link`` (the input of
    a nested grad), a ``stop_gradient``, a product with the constant ``1.0`` (``x * 1.0`` is ``x``
    exactly, in IEEE arithmetic, for every ``x``), and a ``where`` whose
    condition is a constant. Backward passes make many of these.
    """
    on_tape = set(tape)
    ins = set(inputs)
    alias: dict[Node, Node] = {}
    get = alias.get

    def const(p: Node) -> bool:
        return p not in on_tape or (not p.parents and p not in ins)

    for n in tape:
        op = n.op
        if op == "link" or op == "stop_gradient":
            p = n.parents[0]
            alias[n] = get(p, p)
        elif op == "mul" and _MUL_ONE_IS_IDENTITY:
            a, b = n.parents
            a, b = get(a, a), get(b, b)
            if const(a) and a.value == 1.0:
                alias[n] = b
            elif const(b) and b.value == 1.0:
                alias[n] = a
        elif op == "where":
            c = n.parents[0]
            c = get(c, c)
            if const(c):
                # the forward picks one of its arguments: let it pick the node
                p = _FWD["where"](c.value, n.parents[1], n.parents[2])
                if p is n.parents[1] or p is n.parents[2]:
                    alias[n] = get(p, p)
    need = set()
    for o in outs:
        if o.__class__ is Node:
            o = get(o, o)
            if not const(o):
                need.add(o)
    seen_parents: set[int] = set()  # outputs of one vmap body share a (long) parents tuple
    for n in reversed(tape):  # users come after producers, so one pass suffices
        if n in need:
            ps = n.parents
            if len(ps) > 2:
                if id(ps) in seen_parents:
                    continue
                seen_parents.add(id(ps))
            for p in ps:
                p = get(p, p)
                if not const(p):
                    need.add(p)
    return [n for n in tape if n in need], alias




# --------------------------------------------------------------------------
# 2. One record per node: folding, statements, segments, liveness


# Ops whose nodes are outputs of one call: op name -> (the function of all
# outputs, this node's index). Nodes of such an op with the same arguments
# share one call in the generated code (a vmap body with several outputs).
MULTI: dict[str, tuple[Callable[..., Any], int]] = {}


class Step:
    """What the generator knows about one node of the replay."""

    __slots__ = (
        "node", "args", "uses", "users", "outs", "input", "folded", "depth", "at", "seg", "last", "spill", "call", "take"
    )

    def __init__(self, node: Node, args: list[Any], input_slot: int | None):
        self.call: Callable[..., Any] | None = None  # a call of a multi-output function
        self.take = -1  # the output of that call this step picks
        self.node = node
        self.args = args  # per argument: the position of its step, or the constant node
        self.uses = 0  # how many arguments of later steps read this value
        self.users: list[int] = []  # those steps
        self.outs: list[int] = []  # the output slots it fills
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
    calls: dict[Any, int] = {}
    for n in order:
        multi = MULTI.get(n.op)
        if multi is not None:
            # the outputs of one call share their parents tuple: one call for all
            key = (id(multi[0]), id(n.parents))
            c = calls.get(key)
            if c is None:
                c = calls[key] = len(steps)
                _add(steps, Step(n, _args(n, get, pos), None))
                steps[c].call = multi[0]
            args: list[Any] = [c]
        else:
            args = _args(n, get, pos)
        pos[n] = len(steps)
        s = Step(n, args, in_slot.get(n))
        if multi is not None:
            s.take = multi[1]
        _add(steps, s)
    tmpl: list[Any] = []
    for k, o in enumerate(outs):
        if o.__class__ is Node:
            o = get(o, o)
        j = pos.get(o) if o.__class__ is Node else None
        if j is not None:
            steps[j].outs.append(k)
            tmpl.append(None)
        else:  # not computed by the replay: a constant, or a static object returned as is
            tmpl.append(o.value if o.__class__ is Node else o)
    _fold(steps)
    _segment(steps)
    return steps, tmpl


def _args(n: Node, get: Callable[[Node, Node], Node], pos: dict[Node, int]) -> list[Any]:
    # per argument: the position of its step, or the constant node itself
    args = []
    for p in n.parents:
        p = get(p, p)
        j = pos.get(p)
        args.append(p if j is None else j)
    return args


def _add(steps: list[Step], s: Step) -> None:
    i = len(steps)
    steps.append(s)
    for j in s.args:
        if j.__class__ is int:
            steps[j].uses += 1
            steps[j].users.append(i)


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
        s.depth = d + 1
        s.folded = s.uses == 1 and not s.outs and d + 1 < MAX_DEPTH


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
            u = steps[s.users[0]]
            s.at, s.seg = u.at, u.seg
    for j, s in enumerate(steps):
        s.last = j
        if s.folded:
            continue
        for i in s.users:
            u = steps[i]
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
        self.glob: dict[str, Any] = {"_inf": math.inf, "_ninf": -math.inf, "_nan": math.nan, "_nz": -0.0}

    def literal(self, v: float) -> str:
        if v != v:
            return "_nan"
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
        # user primitives may have names that are not identifiers
        name = f"_f_{op}" if op.isidentifier() else f"_f{len(self.glob)}_{re.sub(r'[^0-9a-zA-Z_]', '_', op)}"
        if self.glob.get(name, _FWD[op]) is not _FWD[op]:
            name = f"_f{len(self.glob)}"
        self.glob.setdefault(name, _FWD[op])
        return name


def emit(steps: list[Step], tmpl: list[Any]) -> tuple[list[str], dict[str, Any], int]:
    """The source of each segment, the globals it reads, and the number of spill slots.

    The code reads the inputs as ``xs[k]`` and stores the outputs into the
    list ``o`` as soon as they are computed.
    """
    names = _Names()
    text: list[str] = [""] * len(steps)
    slot: dict[int, int] = {}
    segments: list[list[str]] = []
    lines: list[str] = []
    release: dict[int, list[str]] = {}
    free: list[str] = []
    nregs = 0
    cur = -1
    for i, s in enumerate(steps):
        if s.input is not None:
            text[i] = f"xs[{s.input}]"
            for k in s.outs:
                lines.append(f"o[{k}] = {text[i]}")
            continue
        args = []
        for j in s.args:
            if j.__class__ is not int:
                args.append(names.literal(j.value))
                continue
            p = steps[j]
            if p.folded and p.input is None:
                args.append(text[j])
                text[j] = ""  # used once: its text now lives in its user's
            elif p.folded or p.seg == s.seg:
                args.append(text[j])
            else:
                args.append(f"R[{slot[j]}]")
        op = s.node.op
        tpl = _INLINE.get(op)
        if s.call is not None:
            e = f"{names.function(s.call)}({', '.join(args)})"
        elif s.take >= 0:
            e = f"{args[0]}[{s.take}]"
        elif tpl is None:
            e = f"{names.fwd(op)}({', '.join(args)})"
        elif op in _VIA_TEMP and not _SIMPLE.match(args[0]):
            e = _VIA_TEMP[op].format(*args)
        else:
            e = tpl.format(*args)
        if s.folded:
            text[i] = e
            continue
        if s.seg != cur:  # a new segment: every register is free again
            if cur >= 0:
                segments.append(lines)
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
    segments.append(lines)
    src = [
        f"def _s{c}(xs, o, R):\n    " + "\n    ".join(body or ["pass"]) + "\n" for c, body in enumerate(segments)
    ]
    names.glob["_tmpl"] = tmpl
    return src, names.glob, len(slot)


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
    segs, glob, nspill = emit(steps, tmpl)
    info: dict[str, Any] = {"traced": len(tape), "nodes": len(order)}
    del order, alias, steps
    t1 = time.perf_counter()
    run = link(segs, glob, nspill) if compile else None
    info.update(lines=sum(s.count("\n") for s in segs), codegen_s=t1 - t0, compile_s=time.perf_counter() - t1)
    return Program(run, segs, info)
