"""Checkpoints under attack: damaged files, hostile names, deep trees, killed saves.

Every bad file must give a ValueError (or TypeError) that names the file;
never another exception, never a wrong result, never an import.
"""

import json
import math
import os
import pathlib
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
from typing import Literal, NamedTuple, Optional

import attrs
import pytest

import fungrad as fg
from fungrad import checkpoint, tree

nn, optim = fg.nn, fg.optim
PY = [sys.executable, "-c"]


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def write(path, doc):
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def good(tree_json, **extra):
    return {"format": "fungrad-checkpoint", "version": 1, "tree": tree_json, **extra}


def refused(path, match=""):
    """Load ``path``, which must fail with a ValueError naming it (and matching ``match``)."""
    with pytest.raises(ValueError, match=match) as e:
        checkpoint.load(path)
    assert str(path) in str(e.value)
    return str(e.value)


def sample():
    model = nn.MLP.init(2, [3, 1], seed=0)
    opt = optim.Adam(0.1)
    state = opt.init(model)
    model, state = opt.update(model, fg.tree.map(lambda p: 0.5 * p, model), state)
    return {
        "model": model,
        "opt": state,
        "count": optim.CountState(2),
        "sgd": optim.SGDState(4, None),
        "misc": {"t": (1.5, -0.0, math.inf, math.nan), "s": "x", "n": None, "i": 7, "b": True},
    }


# --- random damage ---------------------------------------------------------------

TOKENS = [b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b'"dict"', b'"tuple"', b'{"float": "nan"}',
          b"[]", b"{}", b"null", b"true", b'"fungrad.nn.MLP"', b'"os.system"', b'"fungrad.cli.main"', b"0",
          b"-1", b"1.5", b'"abc"', b"1e-400", b"-0.0", b"12345678901234567890", b'"type"', b'"children"',
          b'"static"', b",", b":", b'"fungrad.optim.AdamState"', b'{"tuple": []}', b"[[[[[[", b'"\\u0000"']


def mutate(data, rng):
    data = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        i = rng.randrange(len(data))
        op = rng.random()
        if op < 0.3:
            data[i] = rng.randrange(256)
        elif op < 0.45:
            data[i] = rng.choice(b"0123456789-+.eE")
        elif op < 0.6:
            del data[i : i + rng.randint(1, 8)]
        elif op < 0.7:
            j = rng.randrange(len(data))
            data[i:i] = data[j : j + rng.randint(1, 40)]
        else:
            # replace the JSON token that starts near i with another one
            m = re.compile(rb'"[^"]*"|-?[0-9][0-9.eE+-]*|true|false|null|[\[\]{},:]').search(bytes(data), i)
            if m:
                data[m.start() : m.end()] = rng.choice(TOKENS)
    return bytes(data)


def canonical(doc):
    """A parsed file as save would write what it means: tagged -0.0 and NaN, lower-case bits."""
    out = [None]
    todo = [(doc, out, 0)]
    while todo:
        x, box, key = todo.pop()
        if isinstance(x, float) and x == 0.0 and math.copysign(1.0, x) < 0:
            box[key] = {"float": "-0.0"}
        elif isinstance(x, list):
            box[key] = [None] * len(x)
            todo.extend((v, box[key], i) for i, v in enumerate(x))
        elif isinstance(x, dict):
            if set(x) == {"float", "bits"} and isinstance(x["bits"], str):
                b = int(x["bits"], 16)
                box[key] = {"float": "nan"} if b == 0x7FF8000000000000 else {"float": "nan", "bits": f"0x{b:016x}"}
                continue
            box[key] = dict.fromkeys(x)
            todo.extend((v, box[key], k) for k, v in x.items())
        else:
            box[key] = x
    return out[0]


def same_json(a, b, static=True):
    """Equal JSON values, type for type and float bit for bit (class static fields too, if ``static``).

    A class may normalize its static fields when built (a Layer takes its
    neurons' activation), so the fuzz test compares the children only.
    """
    todo = [(a, b)]
    while todo:
        x, y = todo.pop()
        if not static and isinstance(x, dict) and "type" in x and isinstance(y, dict) and "type" in y:
            x, y = dict(x), dict(y)
            x.pop("static", None)
            y.pop("static", None)
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if bits(x) != bits(y):
                return False
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            todo.extend(zip(x, y))
        elif isinstance(x, dict):
            if x.keys() != y.keys():
                return False
            todo.extend((x[k], y[k]) for k in x)
        elif x != y:
            return False
    return True


def strict_json(text):
    def pairs(ps):
        d = dict(ps)
        assert len(d) == len(ps)
        return d

    def num(s):
        x = float(s)
        assert not math.isinf(x)
        return x

    def const(s):
        raise AssertionError(s)

    return json.loads(text, object_pairs_hook=pairs, parse_float=num, parse_constant=const)


@pytest.mark.slow
def test_random_byte_damage_loads_exactly_or_is_refused(tmp_path):
    src = tmp_path / "model.json"
    checkpoint.save(src, sample(), metadata={"step": 3, "lr": 0.1, "note": "moons"})
    data = src.read_bytes()
    # thousands of small files: in memory when the system has a tmpfs, so the disk does not set the pace
    shm = pathlib.Path("/dev/shm")
    work = pathlib.Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    p = work / "damaged.json"
    try:
        rng = random.Random(20261130)
        before = set(sys.modules)
        outcomes = {"loaded": 0, "refused": 0}
        for _ in range(3000):
            bad = mutate(data, rng)
            # a new file each time: rewriting one in place makes ext4 flush it to disk at every close
            p.unlink(missing_ok=True)
            p.write_bytes(bad)
            try:
                params, meta = checkpoint.load_with_metadata(p)
            except (ValueError, TypeError) as e:
                assert str(p) in str(e), (bad, e)
                outcomes["refused"] += 1
                continue
            # it loaded: then the file must be valid strict JSON, and what loaded
            # must be exactly what the file says (written back, the same JSON)
            doc = canonical(strict_json(bad.decode("utf-8")))
            again = checkpoint._encode(params, "params", "test")  # save's encoder, without the disk
            assert same_json(again, doc["tree"], static=False), bad
            meta_again = {k: checkpoint._encode(v, "m", "test") for k, v in meta.items()}
            assert same_json(meta_again, doc.get("metadata", {}), static=False), bad
            outcomes["loaded"] += 1
    finally:
        p.unlink(missing_ok=True)
        if work != tmp_path:
            work.rmdir()
    assert set(sys.modules) == before
    # both outcomes are common, so both paths are exercised
    # (files of format 2 carry field names, whose damage is refused: fewer load than with format 1)
    assert outcomes["loaded"] > 150 and outcomes["refused"] > 1500, outcomes


# --- hostile class names ------------------------------------------------------------

HOSTILE = ["os.system", "subprocess.Popen", "builtins.eval", "builtins.exec", "posix.system", "pickle.loads",
           "importlib.import_module", "ctypes.CDLL", "shutil.rmtree", "fungrad.cli.main", "fungrad.train.fit",
           "fungrad.viz.to_dot", "fungrad.graph.to_networkx", "fungrad.bench.main", "fungrad.nnx.MLP",
           "fungrad.optimizer.Adam", "fungrad.nn", "fungrad.optim", "fungrad", "fungrad.", "fungrad..nn.MLP",
           " fungrad.nn.MLP", "fungrad/nn.MLP", "__main__.Evil", "fungrad_probe_module.Evil", "", "a" * 5000,
           "unittest.mock.patch", "antigravity.fly", "this.s"]
# names under fungrad's own modules: those may import that module (from the fixed table), and nothing else
UNDER_FUNGRAD = ["fungrad.nn.Evil", "fungrad.nn.os.system", "fungrad.optim.__builtins__", "fungrad.nn.MLP\x00",
                 "fungrad.optim.Adam.__init__", "fungrad.nn.ACTIVATIONS"]

CHILD = """
import json, sys
sys.path.insert(0, {probe_dir!r})
import fungrad.checkpoint as c
names, path = json.loads(sys.argv[1]), sys.argv[2]
before = set(sys.modules)
bad = []
for name in names:
    with open(path, "w") as f:
        json.dump({{"format": "fungrad-checkpoint", "version": 1, "tree": {{"type": name, "children": []}}}}, f)
    try:
        c.load(path)
        bad.append(("loaded", name))
    except ValueError as e:
        if path not in str(e) or "not registered" not in str(e):
            bad.append(("message", name, str(e)))
    except BaseException as e:
        bad.append(("raised", name, repr(e)))
print(json.dumps({{"bad": bad, "new": sorted(set(sys.modules) - before)}}))
"""


def run_child(tmp_path, names):
    (tmp_path / "fungrad_probe_module.py").write_text("raise SystemExit('imported!')\n")
    code = CHILD.format(probe_dir=str(tmp_path))
    out = subprocess.run(PY + [code, json.dumps(names), str(tmp_path / "evil.json")],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_hostile_names_import_nothing_in_a_fresh_process(tmp_path):
    got = run_child(tmp_path, HOSTILE)
    assert got == {"bad": [], "new": []}


@pytest.mark.slow
def test_names_under_fungrad_import_at_most_fungrads_own_modules(tmp_path):
    got = run_child(tmp_path, UNDER_FUNGRAD)
    assert got["bad"] == []
    ref = subprocess.run(PY + ["import sys, fungrad.checkpoint; s = set(sys.modules); import fungrad.nn, fungrad.optim;"
                               "print(' '.join(sorted(set(sys.modules) - s)))"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert "fungrad.nn" in got["new"] and set(got["new"]) <= set(ref.stdout.split())


def test_hostile_names_in_this_process(tmp_path):
    before = set(sys.modules)
    for name in HOSTILE + UNDER_FUNGRAD + [None, 3, ["os.system"], {"a": 1}]:
        p = write(tmp_path / "evil.json", good({"type": name, "children": [], "static": None}))
        refused(p, "not registered" if isinstance(name, str) else '"type" must be a class name')
    assert set(sys.modules) == before


# --- depth -------------------------------------------------------------------------


def nested(depth, leaf=1.0):
    x = leaf
    for i in range(depth):
        x = [x] if i % 3 == 0 else {"k": x} if i % 3 == 1 else (x,)
    return x


def test_the_deepest_allowed_tree_round_trips_and_one_more_level_is_refused(tmp_path):
    p = tmp_path / "deep.json"
    d = checkpoint.MAX_DEPTH
    checkpoint.save(p, nested(d), metadata={"m": nested(d - 1)})
    params, meta = checkpoint.load_with_metadata(p)
    assert tree.structure(params) == tree.structure(nested(d)) and tree.leaves(params) == [1.0]
    assert tree.structure(meta["m"]) == tree.structure(nested(d - 1))
    with pytest.raises(ValueError, match=rf"params.* is nested {d + 1} containers deep; .*at most {d}") as e:
        checkpoint.save(p, nested(d + 1))
    assert str(p) in str(e.value)
    with pytest.raises(ValueError, match=f"at most {d}"):
        checkpoint.save(p, [1.0], metadata={"deep": nested(d + 1)})
    # the old file is still there, whole
    assert tree.leaves(checkpoint.load(p)) == [1.0]


@pytest.mark.slow
def test_very_deep_trees_and_files_are_value_errors(tmp_path):
    p = tmp_path / "deep.json"
    with pytest.raises(ValueError, match="at most"):
        checkpoint.save(p, nested(100_000))
    assert not p.exists() and list(tmp_path.iterdir()) == []
    # hand-made files: far too deep for json, and deep enough for json but deeper than the format
    write(p, '{"format": "fungrad-checkpoint", "version": 1, "tree": ' + "[" * 100_000 + "]" * 100_000 + "}")
    refused(p, "nested deeper than 200 containers")
    write(p, good(json.loads("[" * 300 + "]" * 300)))
    refused(p, "nested deeper than 200 containers")
    deep_static = json.loads('{"tuple": [' * 250 + "1" + "]}" * 250)
    write(p, good({"type": "fungrad.nn.Neuron", "children": [], "static": deep_static}))
    refused(p, "nested deeper than 200 containers")
    # brackets inside strings do not count
    write(p, good(["[" * 1000, "{" * 1000]))
    assert checkpoint.load(p) == ["[" * 1000, "{" * 1000]


def test_load_and_save_deep_in_the_call_stack_never_raise_recursion_error(tmp_path):
    p = tmp_path / "deep.json"
    checkpoint.save(p, nested(checkpoint.MAX_DEPTH))
    limit = sys.getrecursionlimit()
    results = []

    def at_depth(n):
        if n:
            return at_depth(n - 1)
        for action in (lambda: checkpoint.load(p), lambda: checkpoint.save(p, nested(checkpoint.MAX_DEPTH))):
            try:
                action()
                results.append("ok")
            except ValueError as e:
                assert str(p) in str(e) and "call stack" in str(e)
                results.append("refused")

    at_depth(limit - 150)
    assert len(results) == 2 and "refused" in results
    assert tree.leaves(checkpoint.load(p)) == [1.0]


# --- strict JSON ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"format": "fungrad-checkpoint", "version": 1, "tree": [1e400]}',
         r"at /tree/0: a number beyond the range of a float \(it reads as inf\)"),
        ('{"format": "fungrad-checkpoint", "version": 1, "tree": [-1E999]}',
         r"at /tree/0: a number beyond the range of a float \(it reads as -inf\)"),
        ('{"format": "fungrad-checkpoint", "version": 1, "tree": [1.0], "metadata": {"lr": 2e308}}',
         "at /metadata/lr: a number beyond"),
        ('{"format": "fungrad-checkpoint", "version": 1, "tree": [NaN]}', "NaN is not a number this format writes"),
        ('{"format": "fungrad-checkpoint", "version": 1, "tree": Infinity}', "Infinity is not a number"),
        ('{"format": "fungrad-checkpoint", "version": 1, "tree": [-Infinity]}', "-Infinity is not a number"),
        ('{"format": "fungrad-checkpoint", "version": 1, "tree": 1.0, "tree": 2.0}', "the key 'tree' appears twice"),
        ('{"format": "fungrad-checkpoint", "version": 1, "tree": {"dict": {"a": 1.0, "a": 2.0}}}', "'a' appears twice"),
        ('{"format": "fungrad-checkpoint", "version": 1, "tree": {"tuple": [], "tuple": [1.0]}}', "appears twice"),
        ('{"format": "fungrad-checkpoint", "version": 1, "version": 1, "tree": 1.0}', "'version' appears twice"),
        ('{"format": "fungrad-checkpoint", "version": 1, "tree": {"type": "fungrad.optim.CountState", '
         '"type": "os.system", "children": [1]}}', "'type' appears twice"),
    ],
)
def test_number_literals_and_keys_the_format_does_not_allow(tmp_path, text, match):
    refused(write(tmp_path / "c.json", text), match)


def test_allowed_number_literals(tmp_path):
    p = write(tmp_path / "c.json", '{"format": "fungrad-checkpoint", "version": 1, '
                                   '"tree": [1.7976931348623157e308, 5e-324, 1E2, -0, 10000000000000000000000]}')
    got = checkpoint.load(p)
    assert got == [1.7976931348623157e308, 5e-324, 100.0, 0, 10**22] and type(got[3]) is int


# --- field types ------------------------------------------------------------------------


def saved(tmp_path, obj):
    p = tmp_path / "c.json"
    checkpoint.save(p, obj)
    return p, json.loads(p.read_text())


def neuron_json(tmp_path):
    p, doc = saved(tmp_path, nn.Neuron((1.0, 2.0), 0.5, "relu"))
    return p, doc


@pytest.mark.parametrize(
    "field, value, match",
    [
        (0, "abc", r"Neuron.w must be tuple\[float or int, ...\], got str 'abc'"),
        (0, [1.0, 2.0], r"Neuron.w must be tuple.*got list"),
        (0, {"tuple": [1.0, "x"]}, r"Neuron.w must be tuple"),
        (0, {"tuple": [1.0, True]}, r"Neuron.w must be tuple"),
        (0, {"tuple": [1.0, None]}, r"Neuron.w must be tuple"),
        (1, "x", r"Neuron.b must be float or int, got str 'x'"),
        (1, True, r"Neuron.b must be float or int, got bool True"),
        (1, None, r"Neuron.b must be float or int, got NoneType"),
        (1, [1.0], r"Neuron.b must be float or int, got list"),
        ("static", {"tuple": [5]}, r"Neuron.activation must be str or None, got int 5"),
        ("static", {"tuple": ["swish"]}, r"could not rebuild a fungrad.nn.Neuron.*unknown activation 'swish'"),
        # (an empty tuple is a file from before the field existed: it loads with the default)
        ("static", {"tuple": ["tanh", "relu"]}, r"expected its static fields \(activation\) as a tuple of 1"),
        ("static", None, r"expected its static fields \(activation\) as a tuple of 1, got None"),
    ],
)
def test_a_neuron_with_a_wrong_field_is_refused(tmp_path, field, value, match):
    p, doc = neuron_json(tmp_path)
    node = doc["tree"]
    if field == "static":
        node["static"] = value
    else:
        node["children"][field] = value
    refused(write(p, doc), match)


def test_wrong_fields_of_layers_models_and_optimizer_states(tmp_path):
    model = nn.MLP.init(2, [2, 1], seed=0)
    _, doc = saved(tmp_path, model)
    cases = []

    def case(edit, match):
        d = json.loads(json.dumps(doc))
        edit(d)
        cases.append((d, match))

    layer = lambda d: d["tree"]["children"][0]["tuple"][0]  # noqa: E731
    case(lambda d: d["tree"]["static"]["tuple"].__setitem__(0, "2"), r"MLP.nin must be int, got str '2'")
    case(lambda d: d["tree"]["static"]["tuple"].__setitem__(0, 2.0), r"MLP.nin must be int, got float 2.0")
    case(lambda d: d["tree"]["static"]["tuple"].__setitem__(0, True), r"MLP.nin must be int, got bool")
    case(lambda d: d["tree"]["children"].__setitem__(0, d["tree"]["children"][0]["tuple"]), r"MLP.layers must be tuple")
    case(lambda d: d["tree"]["children"][0]["tuple"].__setitem__(0, 1.0), r"MLP.layers must be tuple\[fungrad.nn.Layer")
    case(lambda d: layer(d)["children"][0]["tuple"].__setitem__(0, {"tuple": []}), r"Layer.neurons must be")
    case(lambda d: layer(d)["static"]["tuple"].__setitem__(0, "2"), r"Layer.nin must be int")
    for d, match in cases:
        refused(write(tmp_path / "c.json", d), match)

    adam, sgd = optim.AdamState(1, [0.0], [0.0]), optim.SGDState(1, None)
    for obj, i, value, match in [
        (adam, 0, 1.5, r"AdamState.step must be an int >= 0, got float 1.5"),
        (adam, 0, -1, r"AdamState.step must be an int >= 0, got int -1"),
        (adam, 0, True, r"AdamState.step must be an int >= 0, got bool"),
        (adam, 1, None, r"AdamState.mu and .*AdamState.nu must have one structure, got None and \[\*\]"),
        (adam, 2, ["x"], r"AdamState.nu must be a pytree of numbers"),
        (sgd, 1, "abc", r"SGDState.velocity must be None or a pytree of numbers"),
        (sgd, 0, "1", r"SGDState.step must be an int >= 0"),
        (optim.CountState(1), 0, 1.5, r"CountState.step must be an int >= 0"),
    ]:
        edit = lambda c: c.__setitem__(i, value)  # noqa: E731
        p, d = saved(tmp_path, obj)
        edit(d["tree"]["children"])
        refused(write(p, d), match)


def test_right_fields_still_load(tmp_path):
    for obj in [optim.AdamState(0, None, None), optim.AdamState(3, {"w": [1, 2.5]}, {"w": [0.0, 1e-8]}),
                optim.SGDState(2, None), optim.SGDState(0, (1.0, {"a": -2})), optim.CountState(0),
                nn.MLP.init(3, [4, 4, 1], seed=1), nn.Neuron((1, 2), 3)]:
        p, _ = saved(tmp_path, obj)
        assert checkpoint.load(p) == obj


@tree.register
@attrs.frozen
class Typed:
    n: int
    xs: list[float]
    tag: Optional[str]
    mode: Literal["a", "b"] = tree.static(default="a")
    sizes: list[int] = tree.static(factory=list)


@tree.register
class TypedPair(NamedTuple):
    x: float
    y: tuple[int, str]


def test_user_classes_are_checked_against_their_annotations(tmp_path):
    ok = [Typed(1, [1.0, 2], None, "b", [3, 4]), TypedPair(1.5, (2, "s"))]
    p, doc = saved(tmp_path, ok)
    got = checkpoint.load(p)
    assert got[0] == Typed(1, [1.0, 2], None, "b", (3, 4)) and got[1] == ok[1]  # static lists come back as tuples
    name = f"{__name__}.Typed"
    for edit, match in [
        (lambda t: t[0]["children"].__setitem__(0, 1.0), rf"{name}.n must be int, got float"),
        (lambda t: t[0]["children"].__setitem__(1, {"tuple": [1.0]}), rf"{name}.xs must be list\[float\]"),
        (lambda t: t[0]["children"].__setitem__(1, [1.0, "2"]), rf"{name}.xs must be list\[float\]"),
        (lambda t: t[0]["children"].__setitem__(2, 3), rf"{name}.tag must be str or None"),
        (lambda t: t[0]["static"]["tuple"].__setitem__(0, "c"), rf"{name}.mode must be 'a' or 'b', got str 'c'"),
        (lambda t: t[0]["static"]["tuple"].__setitem__(1, {"tuple": ["3"]}), rf"{name}.sizes must be list\[int\]"),
        (lambda t: t[1]["children"].__setitem__(1, {"tuple": [2]}), r"TypedPair.y must be tuple\[int, str\]"),
        (lambda t: t[1]["children"].__setitem__(0, "1.5"), r"TypedPair.x must be float"),
        (lambda t: t[1].__setitem__("static", {"tuple": []}), r"a namedtuple has no static fields"),
    ]:
        d = json.loads(json.dumps(doc))
        edit(d["tree"])
        refused(write(p, d), match)


# --- files: modes, links, errors -------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_new_file_gets_the_mode_open_would_give(tmp_path, umask):
    p = tmp_path / "c.json"
    old = os.umask(umask)
    try:
        checkpoint.save(p, [1.0])
        with open(tmp_path / "by_open.json", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask == (tmp_path / "by_open.json").stat().st_mode & 0o777
    os.chmod(p, 0o640)
    checkpoint.save(p, [2.0])
    assert p.stat().st_mode & 0o777 == 0o640 and checkpoint.load(p) == [2.0]


def test_saving_through_a_symlink_updates_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "real" / "model.json"
    checkpoint.save(target, [1.0])
    os.chmod(target, 0o600)
    link = tmp_path / "links" / "latest.json"
    link.symlink_to(os.path.join("..", "real", "model.json"))
    checkpoint.save(link, [2.0])
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "real", "model.json")
    assert checkpoint.load(target) == [2.0] and checkpoint.load(link) == [2.0]
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(q.name for q in (tmp_path / "real").iterdir()) == ["model.json"]
    assert sorted(q.name for q in (tmp_path / "links").iterdir()) == ["latest.json"]
    # a link to a file that does not exist yet creates that file, as open() would
    dangling = tmp_path / "links" / "next.json"
    dangling.symlink_to(tmp_path / "real" / "next.json")
    checkpoint.save(dangling, {"a": 1.0})
    assert dangling.is_symlink() and checkpoint.load(tmp_path / "real" / "next.json") == {"a": 1.0}


def test_errors_name_the_checkpoint_not_the_temporary_file(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError) as e:
        checkpoint.save(tmp_path / "d", [1.0])
    assert str(tmp_path / "d") in str(e.value) and ".fungrad-" not in str(e.value)
    with pytest.raises(FileNotFoundError) as e:
        checkpoint.save(tmp_path / "missing" / "c.json", [1.0])
    assert e.value.filename == str(tmp_path / "missing" / "c.json") and ".fungrad-" not in str(e.value)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["d"]


# --- temporary files left by killed saves ---------------------------------------------------

STALL = """
import os, sys, time
import fungrad.checkpoint as c
def stall(fd):
    print("writing", flush=True)
    time.sleep(60)
c.os.fsync = stall
c.save(sys.argv[1], {"w": [3.0, 4.0]})
"""


def temps(d):
    return sorted(q.name for q in d.iterdir() if q.name.endswith(".tmp"))


@pytest.mark.slow
def test_a_save_killed_mid_write_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path):
    p = tmp_path / "model.json"
    checkpoint.save(p, {"w": [1.0, 2.0]})
    child = subprocess.Popen(PY + [STALL, str(p)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    left = temps(tmp_path)
    assert len(left) == 1 and re.fullmatch(rf"\.fungrad-.+-{child.pid}-[0-9a-f]{{16}}\.tmp", left[0])
    assert checkpoint.load(p) == {"w": [1.0, 2.0]}  # the old file, whole
    checkpoint.save(p, {"w": [5.0]})
    assert temps(tmp_path) == [] and checkpoint.load(p) == {"w": [5.0]}


@pytest.mark.slow
def test_an_interrupt_at_every_event_of_a_save_leaves_the_old_or_the_new_file_and_nothing_else(tmp_path):
    from test_faults import events, inject

    p = tmp_path / "model.json"
    old, new = {"w": [1.0, 2.0]}, {"w": [3.0, 4.0, 5.0]}

    def fds():
        # this process's open descriptors and what they are open on (Linux)
        out = {}
        for fd in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []:
            try:
                out[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # the descriptor listdir itself held
                pass
        return out

    checkpoint.save(p, old)
    seen = events(lambda: checkpoint.save(p, new))
    checkpoint.save(p, old)
    assert ("checkpoint.py", "_create_temp", "return") in seen  # the moment the file exists and nothing holds it
    total = len(seen)
    for k in range(1, total + 1):
        checkpoint.save(p, old)
        before = fds()
        _, where = inject(lambda: checkpoint.save(p, new), k)
        assert checkpoint.load(p) in (old, new), where
        # the temporary file is removed and its descriptor closed, wherever the interrupt landed
        assert temps(tmp_path) == [], where
        now = fds()
        leaked = {fd: name for fd, name in now.items() if before.get(fd) != name}
        if leaked and where[1] == "_sync_dir":
            # the directory's own descriptor, for its fsync after the rename, can
            # still be lost to an interrupt inside the finally that closes it
            assert list(leaked.values()) == [str(tmp_path)], where
            for fd in leaked:
                os.close(int(fd))
        else:
            assert leaked == {}, where


SAVE_LOOP = """
import sys
import fungrad.checkpoint as c
print("go", flush=True)
i = 0
while True:
    c.save(sys.argv[1], {"i": i, "w": [float(i)] * 3000})
    i += 1
"""


@pytest.mark.slow
def test_saves_killed_at_random_moments_never_tear_the_file(tmp_path):
    p = tmp_path / "model.json"
    checkpoint.save(p, {"i": -1, "w": [-1.0] * 3000})
    rng = random.Random(9)
    for _ in range(3):
        child = subprocess.Popen(PY + [SAVE_LOOP, str(p)], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline() == "go\n"
            time.sleep(rng.uniform(0.05, 0.3))
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(timeout=30)
            child.stdout.close()
        got = checkpoint.load(p)
        assert got["w"] == [float(got["i"])] * 3000
    checkpoint.save(p, {"i": 0, "w": []})
    assert temps(tmp_path) == []


def test_only_leftovers_are_removed(tmp_path):
    host, me = checkpoint._HOST, os.getpid()
    dead = subprocess.run(PY + ["import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    hexes = "0123456789abcdef"
    names = {
        f".fungrad-{host}-{dead_pid}-{hexes}.tmp": "gone",  # its writer is dead
        f".fungrad-{host}-{me}-{hexes}.tmp": "kept",  # a save in progress in this process
        f".fungrad-{host}-{os.getppid()}-{hexes}.tmp": "kept",  # a live process
        f".fungrad-otherhost-{dead_pid}-{hexes}.tmp": "kept",  # another machine's save: its pids are not ours
        f".fungrad-otherhost-{dead_pid}-{hexes[::-1]}.tmp": "old",  # ... unless it is old
        f".fungrad-{host}-{me}-{hexes[::-1]}.tmp": "old",  # even a live pid, after an hour
        ".fungrad-abcd1234.tmp": "kept",  # an earlier fungrad's name, recent
        ".fungrad-x1y2z3w4.tmp": "old",  # ... and old
        "notes.tmp": "kept old",
        ".fungrad-model.json.tmp": "kept old",
        f"fungrad-{host}-{dead_pid}-{hexes}.tmp": "kept",
        f".fungrad-{host}-{dead_pid}-{hexes}.tmp.bak": "kept",
        "model.json": "kept old",
    }
    for name, what in names.items():
        q = tmp_path / name
        q.write_text("x")
        if "old" in what:
            t = time.time() - checkpoint.STALE_AFTER - 60
            os.utime(q, (t, t))
    (tmp_path / f".fungrad-{host}-{dead_pid}-{'f' * 16}.tmp").mkdir()  # not a file: left alone
    checkpoint.save(tmp_path / "new.json", [1.0])
    left = {q.name for q in tmp_path.iterdir()}
    expected = {n for n, w in names.items() if w.startswith("kept")}
    expected |= {"new.json", f".fungrad-{host}-{dead_pid}-{'f' * 16}.tmp"}
    assert left == expected
