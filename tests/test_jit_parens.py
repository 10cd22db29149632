"""fg.jit's generated code: parentheses only where Python's grammar needs them, and never fewer.

The code generator (``fungrad.codegen.emit``) folds values used once into the
expression of their user and writes ``+ - *``, unary ``-``, ``where`` and
``relu`` inline, parenthesizing an operand only when its precedence is below
what its position needs. A missing pair of parentheses is a silent wrong
answer, so every test here checks two things:

- the replay equals eager evaluation bit for bit (signed zeros distinguished,
  every nan equal to every nan);
- the generated source, parsed back with :mod:`ast` and read as an expression
  graph, is exactly the traced graph (the same op at every node, the same
  operand order, the same association). This catches a misparenthesization
  even where IEEE arithmetic happens to hide it on the sampled inputs (such as
  ``-(a * b)`` against ``-a * b``).
"""

from __future__ import annotations

import ast
import math
import operator
import random
import re
import struct

import pytest

import fungrad as fg
from fungrad import codegen

inf, nan = math.inf, math.nan

EDGE = [0.0, -0.0, 1.0, -1.0, 2.5, -3.25, 1e-310, 1e308, inf, -inf, nan]
# constants the generator puts into expressions; 1.0 is frequent, since x * 1.0 is aliased away
CONSTS = [1.0, 1.0, 2.0, 0.5, -1.5, -1.5, -0.0, 0.0, -1.0, 3.0, 1e-310, 1e308, inf, -inf, nan]


# --------------------------------------------------------------------------
# bitwise comparison


def bits(v) -> bytes:
    """The bits of a float; every nan gives the same bytes, +0.0 and -0.0 differ."""
    v = float(v)
    return b"nan" if v != v else struct.pack("<d", v)


def assert_bits(got, want, what=""):
    gl, gtd = fg.tree.flatten(got)
    wl, wtd = fg.tree.flatten(want)
    assert gtd == wtd, f"{what}: structures differ: {gtd} vs {wtd}"
    bad = [
        (i, g, w)
        for i, (g, w) in enumerate(zip(gl, wl))
        if not (isinstance(g, float) and isinstance(w, float)) or bits(g) != bits(w)
    ]
    assert not bad, f"{what}: {len(bad)} of {len(gl)} leaves differ (index, jit, eager): {bad[:4]}"


def values(result):
    """Eager results on nodes as floats."""
    return fg.tree.map(lambda v: v.value if fg.is_node(v) else v, result)


def eager(f, xs):
    """f evaluated eagerly on fresh variables (no transform), as floats."""
    return values(f(*[fg.var(x) for x in xs]))


# --------------------------------------------------------------------------
# the generated source, read back as an expression graph


class Syms:
    """Hash-consed expression graphs: equal expressions get equal ids (DAGs stay linear)."""

    def __init__(self):
        self.ids: dict[tuple, int] = {}
        self.keys: list[tuple] = []

    def mk(self, *key) -> int:
        i = self.ids.get(key)
        if i is None:
            i = self.ids[key] = len(self.keys)
            self.keys.append(key)
        return i

    def const(self, v) -> int:
        return self.mk("c", bits(v))

    def show(self, i: int, depth: int = 8) -> str:
        key = self.keys[i]
        if key[0] == "x":
            return f"x{key[1]}"
        if key[0] == "c":
            b = key[1]
            return "nan" if b == b"nan" else repr(struct.unpack("<d", b)[0])
        if depth == 0:
            return "..."
        return f"{key[0]}(" + ", ".join(self.show(a, depth - 1) for a in key[1:]) + ")"


_GLOBAL_CONSTS = {"_inf": inf, "_ninf": -inf, "_nz": -0.0}
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul"}


def read_source(src: str, S: Syms) -> dict[int, int]:
    """The expression graph each output slot ``o[k]`` gets in the generated code, by slot."""
    mod = ast.parse(src)
    out: dict[int, int] = {}
    spill: dict[int, int] = {}
    for fn in mod.body:
        assert isinstance(fn, ast.FunctionDef), ast.dump(fn)
        env: dict[str, int] = {}

        def ev(e):
            if isinstance(e, ast.Name):
                if e.id in env:
                    return env[e.id]
                if re.fullmatch(r"_nan[0-9a-f]{16}", e.id):  # a nan constant, kept as the very float (named by its bits)
                    return S.const(nan)
                assert e.id in _GLOBAL_CONSTS, f"unknown name {e.id} in\n{src}"
                return S.const(_GLOBAL_CONSTS[e.id])
            if isinstance(e, ast.Constant):
                assert isinstance(e.value, (int, float)) and not isinstance(e.value, bool)
                return S.const(e.value)
            if isinstance(e, ast.UnaryOp):
                assert isinstance(e.op, ast.USub), ast.dump(e)
                if isinstance(e.operand, ast.Constant):  # a negative literal, written (-1.5)
                    return S.const(-e.operand.value)
                return S.mk("neg", ev(e.operand))
            if isinstance(e, ast.BinOp):
                op = _BINOPS[type(e.op)]
                a = ev(e.left)  # Python's order: left, then right
                return S.mk(op, a, ev(e.right))
            if isinstance(e, ast.Call):
                assert isinstance(e.func, ast.Name) and e.func.id.startswith("_f_"), ast.dump(e)
                assert not e.keywords
                return S.mk(e.func.id[3:], *[ev(a) for a in e.args])
            if isinstance(e, ast.NamedExpr):
                v = ev(e.value)
                env[e.target.id] = v
                return v
            if isinstance(e, ast.Subscript):
                assert isinstance(e.value, ast.Name) and isinstance(e.slice, ast.Constant)
                if e.value.id == "xs":
                    return S.mk("x", e.slice.value)
                assert e.value.id == "R"
                return spill[e.slice.value]
            if isinstance(e, ast.IfExp):
                t = e.test
                assert isinstance(t, ast.Compare) and len(t.ops) == 1, ast.dump(t)
                (cmp,) = t.comparators
                assert isinstance(cmp, ast.Constant) and bits(cmp.value) == bits(0.0), ast.dump(t)
                c = ev(t.left)
                if isinstance(t.ops[0], ast.Gt):  # where: a if c > 0.0 else b
                    a = ev(e.body)
                    return S.mk("where", c, a, ev(e.orelse))
                # relu: 0.0 if a < 0.0 else a
                assert isinstance(t.ops[0], ast.Lt), ast.dump(t)
                assert isinstance(e.body, ast.Constant) and bits(e.body.value) == bits(0.0), ast.dump(e)
                assert ev(e.orelse) == c, f"relu reads another value than it tests: {ast.unparse(e)}"
                return S.mk("relu", c)
            raise AssertionError(f"unexpected expression {ast.dump(e)}")

        for st in fn.body:
            if isinstance(st, ast.Pass):
                continue
            assert isinstance(st, ast.Assign) and len(st.targets) == 1, ast.dump(st)
            (tg,) = st.targets
            if isinstance(tg, ast.Tuple):  # x0, _, x2 = xs[:3]
                src_ = st.value
                assert (isinstance(src_, ast.Name) and src_.id == "xs") or (
                    isinstance(src_, ast.Subscript) and src_.value.id == "xs"
                ), ast.dump(st)
                for k, elt in enumerate(tg.elts):
                    if elt.id != "_":
                        env[elt.id] = S.mk("x", k)
            elif isinstance(tg, ast.Name):
                env[tg.id] = ev(st.value)
            else:
                assert isinstance(tg, ast.Subscript) and isinstance(tg.slice, ast.Constant), ast.dump(st)
                if tg.value.id == "o":
                    out[tg.slice.value] = ev(st.value)
                else:
                    assert tg.value.id == "R"
                    spill[tg.slice.value] = ev(st.value)
    return out


def wholly_parenthesized(rhs: str) -> bool:
    """Whether ``rhs`` is ``( ... )`` with the first parenthesis closing at the very end."""
    if not rhs.startswith("("):
        return False
    depth = 0
    for i, ch in enumerate(rhs):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return i == len(rhs) - 1
    return False


def check_source(src: str) -> None:
    """The generated code compiles, and no statement's whole right-hand side is parenthesized."""
    compile(src, "<test>", "exec")
    for line in src.splitlines():
        if " = " in line:
            rhs = line.split(" = ", 1)[1]
            assert not wholly_parenthesized(rhs), f"redundant parentheses around a whole right-hand side: {line!r}"


def paren_depth(src: str) -> int:
    d = m = 0
    for ch in src:
        if ch == "(":
            d += 1
            m = max(m, d)
        elif ch == ")":
            d -= 1
    return m


# --------------------------------------------------------------------------
# random expression DAGs in a tiny IR
#
# A program is a list of instructions ("x", k) or (op, *operands); an operand
# is the index of an earlier instruction or ("k", constant). Every op reads at
# least one instruction (never constants only), so that every value is a node.

OPS = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": operator.pow,
    "neg": operator.neg,
    "where": fg.where,
    "relu": fg.relu,
    "tanh": fg.tanh,
    "exp": fg.exp,
}


def evaluate(prog, outs, xs):
    vals = []
    for ins in prog:
        if ins[0] == "x":
            vals.append(xs[ins[1]])
        else:
            vals.append(OPS[ins[0]](*[vals[a] if isinstance(a, int) else a[1] for a in ins[1:]]))
    return [vals[i] for i in outs]


def expected_syms(prog, S: Syms) -> list[int]:
    """The graph the replay must compute for each instruction, after jit's aliases.

    ``x * 1.0`` and ``1.0 * x`` are ``x``; ``where`` with a constant condition
    is the branch it picks. Nothing else is rewritten.
    """
    ids: list[int] = []

    def arg(a):
        return ids[a] if isinstance(a, int) else S.const(a[1])

    for ins in prog:
        op = ins[0]
        if op == "x":
            ids.append(S.mk("x", ins[1]))
            continue
        rest = ins[1:]
        if op == "mul" and codegen._MUL_ONE_IS_IDENTITY:
            a, b = rest
            if not isinstance(a, int) and bits(a[1]) == bits(1.0):
                ids.append(arg(b))
                continue
            if not isinstance(b, int) and bits(b[1]) == bits(1.0):
                ids.append(arg(a))
                continue
        if op == "where" and not isinstance(rest[0], int):
            ids.append(arg(rest[1] if rest[0][1] > 0.0 else rest[2]))
            continue
        ids.append(S.mk(op, *[arg(a) for a in rest]))
    return ids


def random_program(rng: random.Random, n_in: int):
    prog: list[tuple] = [("x", k) for k in range(n_in)]

    def emit(*ins):
        prog.append(ins)
        return len(prog) - 1

    def recent():
        k, r = len(prog), rng.random()
        if r < 0.45:
            return k - 1  # the value just made: chains, folded into their user
        if r < 0.7:
            return rng.randrange(max(0, k - 4), k)
        return rng.randrange(k)  # an older value: used several times, a register

    def const():
        return ("k", rng.choice(CONSTS))

    def opnd(pc=0.2):
        return const() if rng.random() < pc else recent()

    def binop(op, a=None, b=None):
        a = opnd() if a is None else a
        b = opnd() if b is None else b
        if not isinstance(a, int) and not isinstance(b, int):
            a = recent()
        return emit(op, a, b)

    def where(c=None, a=None, b=None):
        c = opnd(0.1) if c is None else c
        a = opnd(0.3) if a is None else a
        b = opnd(0.3) if b is None else b
        if not isinstance(c, int) and not (isinstance(a, int) and isinstance(b, int)):
            c = recent()
        return emit("where", c, a, b)

    def sub_expr():
        """A fresh expression of any inline kind (or a call), to be used once."""
        k = rng.randrange(8)
        if k < 3:
            return binop(("add", "sub", "mul")[k])
        if k == 3:
            return emit("neg", recent())
        if k == 4:
            return where()
        if k == 5:
            return emit("relu", binop(rng.choice(("add", "sub", "mul"))))
        if k == 6:
            return emit(rng.choice(("tanh", "exp")), recent())
        return recent()

    def step():
        r = rng.randrange(14)
        if r < 3:
            return binop(rng.choice(("add", "sub", "mul", "sub")))
        if r == 3:
            return emit("neg", recent())
        if r == 4:
            return emit(rng.choice(("relu", "tanh", "exp", "relu")), recent())
        if r == 5:
            return binop("div")
        if r == 6:
            return emit("pow", recent(), ("k", rng.choice((2, 3, -1, 0, 1, -2))))
        if r == 7:
            return where()
        if r == 8:  # right chain: a - (b - (c - d))
            vs = [opnd(0.15) for _ in range(rng.randint(3, 6))]
            e = vs[-1] if isinstance(vs[-1], int) else recent()
            for v in reversed(vs[:-1]):
                e = binop(rng.choice(("sub", "sub", "add", "mul")), v, e)
            return e
        if r == 9:  # left chain: ((a - b) - c) - d
            vs = [opnd(0.15) for _ in range(rng.randint(3, 6))]
            e = vs[0] if isinstance(vs[0], int) else recent()
            for v in vs[1:]:
                e = binop(rng.choice(("sub", "sub", "add", "mul")), e, v)
            return e
        if r == 10:  # negations of sums and products, on both sides of * and -
            n = emit("neg", binop(rng.choice(("add", "sub", "mul"))))
            other = opnd(0.2) if rng.random() < 0.6 else sub_expr()
            op = rng.choice(("mul", "sub", "add"))
            return binop(op, n, other) if rng.random() < 0.5 else binop(op, other, n)
        if r == 11:  # where / relu as operands of * and -
            w = where() if rng.random() < 0.5 else emit("relu", sub_expr())
            other = opnd(0.2) if rng.random() < 0.5 else sub_expr()
            op = rng.choice(("mul", "sub", "add"))
            return binop(op, w, other) if rng.random() < 0.5 else binop(op, other, w)
        if r == 12:  # where / relu / sums in another where's condition and branches
            return where(sub_expr(), sub_expr(), sub_expr())
        # a square: a value used twice (a register), then used in an expression
        a = recent()
        return binop(rng.choice(("mul", "sub", "add")), a, a)

    for _ in range(rng.randint(3, 10)):
        step()
    last = len(prog) - 1
    outs = [last] + [rng.randrange(len(prog)) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.2:
        outs.append(outs[rng.randrange(len(outs))])  # one value in two output slots
    return prog, outs


def random_inputs(rng: random.Random, n_in: int, k: int):
    sets = [[rng.uniform(-2.0, 2.0) for _ in range(n_in)]]
    for _ in range(k):
        r = rng.random()
        if r < 0.3:
            sets.append([rng.choice(EDGE) for _ in range(n_in)])
        elif r < 0.6:
            sets.append([rng.choice(EDGE) if rng.random() < 0.3 else rng.uniform(-4.0, 4.0) for _ in range(n_in)])
        else:
            sets.append([rng.uniform(-4.0, 4.0) * 10.0 ** rng.randint(-3, 3) for _ in range(n_in)])
    return sets


def reduce_outputs(outs):
    s = outs[0]
    for w, o in zip((0.5, -1.5, 2.0, -0.25), outs[1:]):
        s = s + o * w
    return s


# five seeds in the fast run, all sixty in the full one
@pytest.mark.parametrize("seed", [s if s < 5 else pytest.param(s, marks=pytest.mark.slow) for s in range(60)])
def test_random_dags_replay_equals_eager_bitwise(seed):
    rng = random.Random(seed)
    n_in = rng.randint(2, 4)
    prog, outs = random_program(rng, n_in)
    inputs = random_inputs(rng, n_in, 10)

    def f(*xs):
        return evaluate(prog, outs, xs)

    # the generated code, read back, is the traced graph
    src = fg.jit(f).source(*inputs[0])
    check_source(src)
    S = Syms()
    want_syms = expected_syms(prog, S)
    got = read_source(src, S)
    for k, i in enumerate(outs):
        assert got.get(k) == want_syms[i], (
            f"output {k}: generated code computes\n  {S.show(got[k]) if k in got else None}\n"
            f"but the graph is\n  {S.show(want_syms[i])}\nsource:\n{src}"
        )

    # values: traced at the first inputs, replayed on the rest; a second jit traced at the last
    jf = fg.jit(f)
    jf2 = fg.jit(lambda *xs: f(*xs))
    for xs in inputs + inputs[-1:]:
        want = eager(f, xs)
        assert_bits(jf(*xs), want, f"jit(f){xs}\n{src}")
        try:
            on_floats = f(*xs)  # plain Python floats: the same IEEE operations
        except (ZeroDivisionError, OverflowError, ValueError):
            pass
        else:
            assert_bits(on_floats, want, f"f on floats {xs}")
    for xs in reversed(inputs):
        assert_bits(jf2(*xs), eager(f, xs), f"second jit(f){xs}")
    assert jf.cache_size() == 1 and jf2.cache_size() == 1

    # derivatives of a scalar reduction of the outputs
    argnums = tuple(range(n_in))

    def fs(*xs):
        return reduce_outputs(evaluate(prog, outs, xs))

    g = fg.grad(fs, argnums=argnums)
    vg = fg.value_and_grad(fs, argnums=argnums)
    jg, jvg = fg.jit(g), fg.jit(vg)
    for xs in inputs[:4] + inputs[:1]:  # the last call replays the traced inputs
        assert_bits(jg(*xs), g(*xs), f"jit(grad(fs)){xs}")
        assert_bits(jvg(*xs), vg(*xs), f"jit(value_and_grad(fs)){xs}")
    assert jg.cache_size() == 1 and jvg.cache_size() == 1


# --------------------------------------------------------------------------
# every inline op as parent, every inline op as child, in every position

PARENTS = {
    "add": (2, lambda a, b: a + b),
    "sub": (2, lambda a, b: a - b),
    "mul": (2, lambda a, b: a * b),
    "neg": (1, lambda a: -a),
    "where": (3, fg.where),
    "relu": (1, fg.relu),
}
# children over the inputs x1, x2, x3 (used once: folded into the parent)
CHILDREN = {
    "add": lambda a, b, c: a + b,
    "sub": lambda a, b, c: a - b,
    "mul": lambda a, b, c: a * b,
    "neg": lambda a, b, c: -a,
    "where": lambda a, b, c: fg.where(a, b, c),
    "relu": lambda a, b, c: fg.relu(a),
    "relu_sum": lambda a, b, c: fg.relu(a - b),  # relu of a compound: evaluated once, via _t
    "neg_sum": lambda a, b, c: -(a - b),
    "neg_mul": lambda a, b, c: -(a * b),
    "add_neg": lambda a, b, c: a + -b,
    "tanh": lambda a, b, c: fg.tanh(a - b),  # a call: an atom
    "leaf": lambda a, b, c: a,
}


def pair_inputs():
    rng = random.Random(12345)
    sets = []
    for _ in range(24):
        sets.append([rng.uniform(-3.0, 3.0) for _ in range(6)])
    for _ in range(16):
        sets.append([rng.choice(EDGE) if rng.random() < 0.5 else rng.uniform(-3.0, 3.0) for _ in range(6)])
    sets.append([0.0, -0.0, 0.0, -0.0, 0.0, -0.0])
    sets.append([-0.0, 0.0, -0.0, 0.0, -0.0, 0.0])
    sets.append([1.0, 1e-310, -1e-310, 1e308, -1e308, 2.5])
    return sets


PAIR_INPUTS = pair_inputs()
PAIRS = [(p, k, c) for p, (arity, _) in PARENTS.items() for k in range(arity) for c in CHILDREN]


@pytest.mark.parametrize("parent,pos,child", PAIRS, ids=[f"{p}[{k}]<-{c}" for p, k, c in PAIRS])
def test_each_precedence_pair(parent, pos, child):
    arity, pf = PARENTS[parent]

    def f(x0, x1, x2, x3, x4, x5):
        ch = CHILDREN[child](x1, x2, x3)
        others = iter((x0, x4, x5))
        args = [ch if i == pos else next(others) for i in range(arity)]
        return [pf(*args)]

    jf = fg.jit(f)
    src = jf.source(*PAIR_INPUTS[0])
    check_source(src)

    # the code is the graph
    S = Syms()
    xs = [S.mk("x", k) for k in range(6)]
    cx = {
        "add": lambda a, b, c: S.mk("add", a, b),
        "sub": lambda a, b, c: S.mk("sub", a, b),
        "mul": lambda a, b, c: S.mk("mul", a, b),
        "neg": lambda a, b, c: S.mk("neg", a),
        "where": lambda a, b, c: S.mk("where", a, b, c),
        "relu": lambda a, b, c: S.mk("relu", a),
        "relu_sum": lambda a, b, c: S.mk("relu", S.mk("sub", a, b)),
        "neg_sum": lambda a, b, c: S.mk("neg", S.mk("sub", a, b)),
        "neg_mul": lambda a, b, c: S.mk("neg", S.mk("mul", a, b)),
        "add_neg": lambda a, b, c: S.mk("add", a, S.mk("neg", b)),
        "tanh": lambda a, b, c: S.mk("tanh", S.mk("sub", a, b)),
        "leaf": lambda a, b, c: a,
    }[child](xs[1], xs[2], xs[3])
    others = iter((xs[0], xs[4], xs[5]))
    want = S.mk(parent, *[cx if i == pos else next(others) for i in range(arity)])
    got = read_source(src, S)
    assert got == {0: want}, f"generated {S.show(got[0])}, graph {S.show(want)}\n{src}"

    for xs_ in PAIR_INPUTS + PAIR_INPUTS[:1]:
        assert_bits(jf(*xs_), eager(f, xs_), f"{xs_}\n{src}")
    assert jf.cache_size() == 1


# the same with a child two levels deep, in every position of both levels
GRAND = ["sub", "mul", "neg", "where", "relu"]


@pytest.mark.slow
@pytest.mark.parametrize("outer", list(PARENTS))
@pytest.mark.parametrize("inner", GRAND)
def test_two_level_nesting(outer, inner):
    oa, of = PARENTS[outer]
    ia, inf_ = PARENTS[inner]
    fns = []
    for op in range(oa):
        for ip in range(ia):
            for leaf in ("sub", "add", "where", "relu", "neg"):

                def f(x0, x1, x2, x3, x4, x5, op=op, ip=ip, leaf=leaf):
                    lf = CHILDREN[leaf](x3, x4, x5)
                    others = iter((x1, x2, x0))
                    inner_v = inf_(*[lf if i == ip else next(others) for i in range(ia)])
                    others = iter((x0, x5, x4))
                    return [of(*[inner_v if i == op else next(others) for i in range(oa)])]

                fns.append(f)
    for f in fns:
        jf = fg.jit(f)
        src = jf.source(*PAIR_INPUTS[0])
        check_source(src)
        for xs_ in PAIR_INPUTS[:20]:
            assert_bits(jf(*xs_), eager(f, xs_), f"{xs_}\n{src}")


# the exact text of a few simple cases: nothing around a whole right-hand side, nothing redundant
@pytest.mark.parametrize(
    "f,n,line",
    [
        (lambda x, y: x + y, 2, "o[0] = x0 + x1"),
        (lambda x, y, z: x - (y - z), 3, "o[0] = x0 - (x1 - x2)"),
        (lambda x, y, z: (x - y) - z, 3, "o[0] = x0 - x1 - x2"),
        (lambda x, y, z: x + (y + z), 3, "o[0] = x0 + (x1 + x2)"),
        (lambda x, y: x - (y - x * y), 2, "o[0] = x0 - (x1 - x0 * x1)"),
        (lambda x, y: -(x + y) * y, 2, "o[0] = -(x0 + x1) * x1"),
        (lambda x, y: y * -(x + y), 2, "o[0] = x1 * -(x0 + x1)"),
        (lambda x, y: -x * y, 2, "o[0] = -x0 * x1"),
        (lambda x, y: x * -y, 2, "o[0] = x0 * -x1"),
        (lambda x, y: x - -y, 2, "o[0] = x0 - -x1"),
        (lambda x, y, z: x * (y * z), 3, "o[0] = x0 * (x1 * x2)"),
        (lambda x, y, z: x * (y + z), 3, "o[0] = x0 * (x1 + x2)"),
        (lambda x, y, z: x * y + z, 3, "o[0] = x0 * x1 + x2"),
        (lambda x, y: fg.relu(x - y), 2, "o[0] = 0.0 if (_t := x0 - x1) < 0.0 else _t"),
        (lambda x: fg.relu(x), 1, "o[0] = 0.0 if x0 < 0.0 else x0"),
        (lambda x, y, z: fg.where(x - y, z, y), 3, "o[0] = x2 if x0 - x1 > 0.0 else x1"),
        (lambda x, y, z: fg.where(x, y, z) * x, 3, "o[0] = (x1 if x0 > 0.0 else x2) * x0"),
        (lambda x, y: x - 1.5, 2, "o[0] = x0 - 1.5"),
        (lambda x, y: -1.5 - x, 2, "o[0] = (-1.5) - x0"),
    ],
)
def test_exact_text_of_simple_cases(f, n, line):
    args = [0.5, -2.0, 3.0][:n]
    src = fg.jit(f).source(*args)
    check_source(src)
    assert line in src.splitlines()[-1], src
    assert_bits(fg.jit(f)(*args), eager(f, args))


# --------------------------------------------------------------------------
# deep folded chains: the code must still compile


def _alternating(xs, n=200, W=fg.where, R=fg.relu):
    e = xs[0]
    for i in range(n):
        x = xs[(i + 1) % len(xs)]
        e = e - x if i % 2 else x - e
    return e


def _right(xs, n=200, W=fg.where, R=fg.relu):
    e = xs[-1]
    for i in range(n):
        e = xs[i % len(xs)] - e
    return e


def _left(xs, n=200, W=fg.where, R=fg.relu):
    e = xs[0]
    for i in range(n):
        e = e - xs[(i + 1) % len(xs)]
    return e


def _mixed(xs, n=200, W=fg.where, R=fg.relu):
    e = xs[0]
    for i in range(n):
        x, y = xs[(i + 1) % len(xs)], xs[(i + 2) % len(xs)]
        k = i % 7
        if k == 0:
            e = -(e - x)
        elif k == 1:
            e = x * -e
        elif k == 2:
            e = W(e, x, y)
        elif k == 3:
            e = R(e - y)
        elif k == 4:
            e = y - (x - e)
        elif k == 5:
            e = W(x, e * y, -e)
        else:
            e = (e + x) * y
    return e


def _relus(xs, n=200, W=fg.where, R=fg.relu):
    e = xs[0] - xs[1]
    for _ in range(n):
        e = R(e)
    return e


def _where_cond(xs, n=200, W=fg.where, R=fg.relu):
    e = xs[0]
    for i in range(n):
        e = W(e, xs[1], xs[2]) if i % 2 else W(e - xs[1], xs[2], xs[0])
    return e


def _where_branch(xs, n=200, W=fg.where, R=fg.relu):
    e = xs[0]
    for i in range(n):
        e = W(xs[i % 3], xs[(i + 1) % 3], e) if i % 2 else W(xs[i % 3], -e, xs[2])
    return e


def _negs(xs, n=200, W=fg.where, R=fg.relu):
    e = xs[0] - xs[1]
    for _ in range(n):
        e = -e
    return e


def _relu_walrus(xs, n=200, W=fg.where, R=fg.relu):
    e = xs[0]
    for i in range(n):
        e = R(e - xs[1 + i % 2]) * xs[i % 3]
    return e


CHAINS = [_alternating, _right, _left, _mixed, _relus, _where_cond, _where_branch, _negs, _relu_walrus]


@pytest.mark.parametrize("chain", CHAINS, ids=[c.__name__.strip("_") for c in CHAINS])
def test_deep_folded_chain_compiles_and_equals_eager(chain):
    def f(x, y, z):
        return [chain([x, y, z])]

    jf = fg.jit(f)
    args = (0.75, -0.5, 1.25)
    src = jf.source(*args)
    check_source(src)  # compiles
    assert len(src.splitlines()) >= 200 // codegen.MAX_DEPTH  # the chain is cut into statements
    assert paren_depth(src) < 100, paren_depth(src)
    # the code is the graph: the chain evaluated on symbols
    S = Syms()
    got = read_source(src, S)

    class Sym:
        def __init__(self, i):
            self.i = i

        def __add__(self, o):
            return Sym(S.mk("add", self.i, o.i))

        def __sub__(self, o):
            return Sym(S.mk("sub", self.i, o.i))

        def __mul__(self, o):
            return Sym(S.mk("mul", self.i, o.i))

        def __neg__(self):
            return Sym(S.mk("neg", self.i))

    want = chain(
        [Sym(S.mk("x", k)) for k in range(3)],
        W=lambda c, a, b: Sym(S.mk("where", c.i, a.i, b.i)),
        R=lambda a: Sym(S.mk("relu", a.i)),
    ).i
    assert got == {0: want}, f"generated {S.show(got[0])}\ngraph {S.show(want)}"

    rng = random.Random(7)
    for xs in [list(args)] + random_inputs(rng, 3, 8) + [list(args)]:
        assert_bits(jf(*xs), eager(f, xs), f"{chain.__name__}{xs}")
    assert jf.cache_size() == 1

    # and its derivatives, whose backward pass is as deep
    g = fg.grad(lambda x, y, z: chain([x, y, z]), argnums=(0, 1, 2))
    jg = fg.jit(g)
    for xs in [list(args), [0.3, 0.2, -0.1], [-1.0, 2.0, 0.5]]:
        assert_bits(jg(*xs), g(*xs), f"grad {chain.__name__}{xs}")


@pytest.mark.slow
def test_very_long_alternating_chain():
    # 5,000 alternating subtractions: many statements of MAX_DEPTH folded levels each
    def f(x, y, z):
        return [_alternating([x, y, z], 5000), _right([x, y, z], 5000)]

    jf = fg.jit(f)
    src = jf.source(1.0, 2.0, 3.0)
    compile(src, "<test>", "exec")
    assert paren_depth(src) <= codegen.MAX_DEPTH + 2
    for xs in ([1.0, 2.0, 3.0], [0.1, -0.2, 0.3], [1e308, -1e308, 1e-310]):
        assert_bits(jf(*xs), eager(f, xs), str(xs))
