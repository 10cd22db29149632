import fractions
import json
import math
import os
import re
import struct
import sys
from collections import namedtuple
from typing import NamedTuple

import attrs
import pytest
from conftest import require

from fungrad import checkpoint, optim, tree


def bits(x):
    return struct.pack("<d", x)


def from_bits(b):
    return struct.unpack("<d", struct.pack("<Q", b))[0]


def same(a, b):
    """Equal, type for type, and bit for bit on floats (so -0.0 != 0.0 and nan == nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return bits(a) == bits(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if attrs.has(type(a)):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a)))
    return a == b


# Registered container classes, at module level so their names are unique.


@tree.register
@attrs.frozen
class Neuron:
    w: list
    b: float
    act: str = tree.static(default="tanh")


@tree.register
@attrs.frozen
class Layer:
    neurons: tuple
    sizes: tuple = tree.static(default=(3, 4))
    scale: float = tree.static(default=-0.0)


@tree.register
class Point(NamedTuple):
    x: float
    y: float


Pair = tree.register(namedtuple("Pair", "a b"))


class Box:
    """A plain class registered with explicit functions."""

    def __init__(self, items, label):
        self.items, self.label = items, label

    def __eq__(self, other):
        return type(other) is Box and same(self.items, other.items) and self.label == other.label


tree.register(Box, lambda b: ((b.items,), b.label), lambda aux, ch: Box(ch[0], aux))


@attrs.frozen
class NotRegistered:
    w: float


class NotRegisteredTuple(NamedTuple):
    a: float


SPECIALS = [
    -0.0,
    0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,  # smallest normal
    2.225073858507201e-308,  # largest subnormal
    1.7976931348623157e308,
    -1.7976931348623157e308,
    math.inf,
    -math.inf,
    math.nan,
    0.1,
    1 / 3,
    1e16,
    123456789.125,
    -2.5e-300,
]


def roundtrip(tmp_path, obj, **kw):
    p = tmp_path / "ckpt.json"
    checkpoint.save(p, obj, **kw)
    return checkpoint.load(p)


@pytest.mark.parametrize("x", SPECIALS, ids=[repr(x) for x in SPECIALS])
def test_floats_round_trip_bit_for_bit(tmp_path, x):
    y = roundtrip(tmp_path, [x])[0]
    assert type(y) is float and bits(y) == bits(x)


@pytest.mark.parametrize(
    "b", [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF8000000000001, 0x7FFFFFFFFFFFFFFF, 0xFFF0000000000123]
)
def test_nan_payloads_and_signs_round_trip(tmp_path, b):
    x = from_bits(b)
    assert x != x
    y = roundtrip(tmp_path, {"v": x})["v"]
    assert struct.unpack("<Q", bits(y))[0] == b


def test_every_float_of_a_sample_round_trips(tmp_path):
    import random

    rng = random.Random(0)
    xs = [from_bits(rng.getrandbits(64)) for _ in range(2000)]
    ys = roundtrip(tmp_path, xs)
    assert [bits(y) for y in ys] == [bits(x) for x in xs]


def test_the_file_is_readable_json(tmp_path):
    p = tmp_path / "c.json"
    checkpoint.save(p, {"w": [0.5, -0.0, math.inf, math.nan, 3, True, "s"], "t": (1.0,)}, metadata={"step": 7})
    doc = json.loads(p.read_text())
    assert doc == {
        "format": "fungrad-checkpoint",
        "version": 1,  # no class with field names in it: older fungrad reads it
        "tree": {
            "dict": {
                "w": [0.5, {"float": "-0.0"}, {"float": "inf"}, {"float": "nan"}, 3, True, "s"],
                "t": {"tuple": [1.0]},
            }
        },
        "metadata": {"step": 7},
    }
    # finite floats are written as repr writes them, ints without a point
    text = p.read_text()
    assert "0.5" in text and "1.0" in text and '"NaN"' not in text and "Infinity" not in text


def test_scalars_keep_their_types(tmp_path):
    obj = [1, -(2**70), True, False, "héllo", "", 2.0, None, 0]
    got = roundtrip(tmp_path, obj)
    assert same(got, obj)
    assert [type(v) for v in got] == [int, int, bool, bool, str, str, float, type(None), int]


def test_nested_containers_round_trip(tmp_path):
    obj = {
        "layers": [
            Layer((Neuron([0.1, -0.0, 5e-324], 0.5), Neuron([1.0, 2.0, 3.0], -1.0, act="relu"))),
            Layer((), sizes=(1,), scale=math.inf),
        ],
        "pt": Point(1.5, -2.5),
        "pair": Pair([1.0], {"k": (2.0, None)}),
        "box": Box([math.nan, 1.0], label=("a", 2)),
        "empty": {"list": [], "tuple": (), "dict": {}, "none": None},
        "tuple1": (4.0,),
        "nested": [[[1.0]], ((2.0,),)],
    }
    got = roundtrip(tmp_path, obj)
    assert same(got, obj)
    assert tree.structure(got) == tree.structure(obj)
    assert type(got["pt"]) is Point and type(got["pair"]) is Pair and type(got["box"]) is Box
    assert got["layers"][0].neurons[1].act == "relu"
    assert got["layers"][1].sizes == (1,) and got["layers"][1].scale == math.inf
    assert bits(got["layers"][0].scale) == bits(-0.0)  # a static float keeps its sign


def test_static_fields_are_stored_beside_the_children(tmp_path):
    p = tmp_path / "c.json"
    checkpoint.save(p, Neuron([1.0, 2.0], 0.0, act="sigmoid"))
    assert json.loads(p.read_text())["version"] == 2
    doc = json.loads(p.read_text())["tree"]
    assert doc == {
        "type": f"{__name__}.Neuron",
        "fields": ["w", "b"],
        "children": [[1.0, 2.0], 0.0],
        "static_fields": ["act"],
        "static": {"tuple": ["sigmoid"]},
    }
    assert checkpoint.load(p) == Neuron([1.0, 2.0], 0.0, act="sigmoid")
    # a file of version 1 has no field names: its children load in order
    old = json.loads(p.read_text())
    old["version"] = 1
    del old["tree"]["fields"], old["tree"]["static_fields"]
    p.write_text(json.dumps(old))
    assert checkpoint.load(p) == Neuron([1.0, 2.0], 0.0, act="sigmoid")


CLASS_V1 = """
import attrs, fungrad as fg
@attrs.frozen
class Lin:
    w: float
    b: float
    act: str = fg.tree.static(default="relu")
fg.tree.register(Lin)
"""


@pytest.mark.slow
@pytest.mark.parametrize("change, match", [
    ("    b: float\n    w: float", r"saved with the fields \(w, b\), but the class now has \(b, w\)"),
    ("    w: float\n    bias: float", r"saved with the fields \(w, b\), but the class now has \(w, bias\)"),
    ("    w: float\n    b: float\n    k: float = 1.0", r"saved with the fields \(w, b\), but the class now has \(w, b, k\)"),
])
def test_a_class_whose_fields_changed_since_the_save_is_refused_in_a_fresh_process(tmp_path, change, match):
    import subprocess
    import sys

    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1" / "mymod.py").write_text(CLASS_V1)
    (tmp_path / "v2" / "mymod.py").write_text(CLASS_V1.replace("    w: float\n    b: float", change))
    path = tmp_path / "lin.json"
    save = f"import mymod, fungrad as fg; fg.checkpoint.save({str(path)!r}, mymod.Lin(1.0, 2.0))"
    subprocess.run([sys.executable, "-c", save], cwd=tmp_path / "v1", check=True)
    load = (
        "import mymod, fungrad as fg\n"
        f"try:\n    print(fg.checkpoint.load({str(path)!r}))\nexcept ValueError as e:\n    print('refused:', e)"
    )
    same = subprocess.run([sys.executable, "-c", load], cwd=tmp_path / "v1", capture_output=True, text=True, check=True)
    assert same.stdout.strip() == "Lin(w=1.0, b=2.0, act='relu')"
    other = subprocess.run([sys.executable, "-c", load], cwd=tmp_path / "v2", capture_output=True, text=True, check=True)
    assert other.stdout.startswith("refused:") and re.search(match, other.stdout), other.stdout
    assert "its values would go to other fields" in other.stdout


def test_optimizer_state_round_trips(tmp_path):
    params = {"lin": Neuron([1.0, -2.0], 0.5), "pt": Point(0.25, 3.0)}
    opt = optim.Adam(0.1)
    state = opt.init(params)
    params, state = opt.update(params, tree.map(lambda x: 2 * x, params), state)
    got = roundtrip(tmp_path, {"params": params, "opt": state, "sgd": optim.SGDState(3, None)})
    assert same(got["opt"], state) and same(got["params"], params)
    assert type(got["opt"]) is optim.AdamState and got["sgd"] == optim.SGDState(3, None)
    # training resumes exactly where it stopped
    g = tree.map(lambda x: -x, params)
    assert same(opt.update(got["params"], g, got["opt"]), opt.update(params, g, state))


def test_metadata(tmp_path):
    p = tmp_path / "c.json"
    meta = {"step": 100, "loss": -0.0, "lr": math.nan, "note": "moons", "hidden": (16, 16), "ok": True}
    checkpoint.save(p, [1.0], metadata=meta)
    params, got = checkpoint.load_with_metadata(p)
    assert params == [1.0] and same(got, meta)
    checkpoint.save(p, [1.0])
    assert checkpoint.load_with_metadata(p) == ([1.0], {})


def test_engine_nodes_are_saved_as_their_values(tmp_path):
    import fungrad as fg

    x = fg.var(2.5, name="x")
    got = roundtrip(tmp_path, {"x": x, "y": x * 2 - 6})
    assert got == {"x": 2.5, "y": -1.0} and type(got["x"]) is float


def test_float_subclasses_are_saved_as_floats(tmp_path):
    class F(float):
        def __repr__(self):
            return "F(...)"

    got = roundtrip(tmp_path, [F(1.25), F(-0.0)])
    assert type(got[0]) is float and same(got, [1.25, -0.0])


def test_paths_and_str_paths_both_work(tmp_path):
    checkpoint.save(str(tmp_path / "a.json"), [1.0])
    assert checkpoint.load(str(tmp_path / "a.json")) == [1.0]
    assert checkpoint.load(tmp_path / "a.json") == [1.0]


# --- save errors -------------------------------------------------------------


@pytest.mark.parametrize(
    "obj, where",
    [
        ({1: 2.0}, "the dict at params has the key 1 (int)"),
        ({"a": [{"b": {(1, 2): 3.0}}]}, "the dict at params['a'][0]['b'] has the key (1, 2) (tuple)"),
        (Neuron([{2.5: 1.0}], 0.0), "the dict at params.w[0] has the key 2.5 (float)"),
    ],
)
def test_non_str_dict_keys_raise_type_error_naming_the_path(tmp_path, obj, where):
    with pytest.raises(TypeError, match="dict keys must be str") as e:
        checkpoint.save(tmp_path / "c.json", obj)
    assert where in str(e.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "obj, match",
    [
        ({"a": [1.0, object()]}, r"leaf at params\['a'\]\[1\], a object"),
        ({"c": 1j}, r"leaf at params\['c'\], a complex"),
        ([b"bytes"], r"leaf at params\[0\], a bytes"),
        ([{1.0, 2.0}], r"leaf at params\[0\], a set"),
        ({"n": NotRegistered(1.0)}, r"params\['n'\] is a .*NotRegistered, which is not registered"),
        ([NotRegisteredTuple(1.0)], r"params\[0\] is a .*NotRegisteredTuple, which is not registered"),
        ([Neuron([1.0], 0.0, act=len)], r"leaf at params\[0\] \(static fields\)\[0\], a builtin_function"),
    ],
)
def test_unsupported_values_raise_type_error(tmp_path, obj, match):
    with pytest.raises(TypeError, match=match):
        checkpoint.save(tmp_path / "c.json", obj)


def test_numpy_scalars_save_as_the_python_numbers_of_their_value(tmp_path):
    np = require("numpy", 'pip install "fungrad[fast]"')
    saved = [np.bool_(True), np.float32(0.1), np.float16(-0.0), np.int64(-3), np.uint8(7), np.float64(math.nan)]
    checkpoint.save(tmp_path / "c.json", saved)
    got = checkpoint.load(tmp_path / "c.json")
    assert [type(v) for v in got] == [bool, float, float, int, int, float]
    assert got[:2] == [True, float(np.float32(0.1))] and bits(got[2]) == bits(-0.0) and got[3:5] == [-3, 7]
    assert math.isnan(got[5])
    # a long double or a Fraction would be rounded by a float: refused, named by module
    torch = require("torch", "pip install torch")
    for bad, name in ((np.longdouble(0.1), "numpy.longdouble"), (fractions.Fraction(1, 3), "fractions.Fraction"),
                      (torch.tensor(2.7), "torch.Tensor")):
        with pytest.raises(TypeError, match=rf"leaf at params\[0\], a {name}; expected .* a NumPy scalar of a number"):
            checkpoint.save(tmp_path / "c.json", [bad])


def test_bad_metadata(tmp_path):
    with pytest.raises(TypeError, match="metadata must be a dict"):
        checkpoint.save(tmp_path / "c.json", [1.0], metadata=[("a", 1)])
    with pytest.raises(TypeError, match="metadata keys must be str"):
        checkpoint.save(tmp_path / "c.json", [1.0], metadata={1: "a"})
    with pytest.raises(TypeError, match=r"leaf at metadata\['f'\], a function"):
        checkpoint.save(tmp_path / "c.json", [1.0], metadata={"f": lambda: 0})


def test_a_class_defined_again_replaces_the_one_before_it(tmp_path):
    # as when a notebook cell that defines and registers a class runs again
    def make():
        @attrs.frozen
        class Twin:
            w: float

        return tree.register(Twin)

    old = make()
    checkpoint.save(tmp_path / "old.json", old(1.0))
    new = make()
    assert tree.type_name(old) == tree.type_name(new) and tree.lookup(tree.type_name(new)) is new
    checkpoint.save(tmp_path / "new.json", new(2.0))
    assert type(checkpoint.load(tmp_path / "new.json")) is new
    # a file saved from the old class loads as the class as it is now
    loaded = checkpoint.load(tmp_path / "old.json")
    assert type(loaded) is new and loaded == new(1.0)
    # an object of the old class would load as the new one: refused, with the reason
    with pytest.raises(TypeError, match="defined again since .a notebook cell run again.*Make the object anew"):
        checkpoint.save(tmp_path / "c.json", old(1.0))


# --- atomic save -------------------------------------------------------------


def snapshot(d):
    return {p.name: p.read_bytes() for p in d.iterdir()}


def test_failed_encoding_leaves_the_old_file_and_no_temp(tmp_path):
    p = tmp_path / "model.json"
    checkpoint.save(p, {"w": [1.0, 2.0]})
    before = snapshot(tmp_path)
    # the bad leaf comes after many good ones, so encoding fails mid-way
    with pytest.raises(TypeError):
        checkpoint.save(p, {"w": [float(i) for i in range(1000)] + [object()]})
    assert snapshot(tmp_path) == before
    assert checkpoint.load(p) == {"w": [1.0, 2.0]}


@pytest.mark.parametrize("fail_at", ["write", "fsync", "chmod", "replace"])
def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, fail_at):
    import errno

    p = tmp_path / "model.json"
    checkpoint.save(p, {"w": [1.0, 2.0]})
    before = snapshot(tmp_path)
    calls = []

    def boom(*a, **kw):
        calls.append(a)
        # by now the temporary file exists beside the checkpoint
        assert len(list(tmp_path.iterdir())) == 2
        tmp = next(q for q in tmp_path.iterdir() if q.name != "model.json")
        raise OSError(errno.EIO, f"disk trouble at {fail_at}", str(tmp))

    monkeypatch.setattr(checkpoint.os, fail_at, boom)
    with pytest.raises(OSError, match="disk trouble") as e:
        checkpoint.save(p, {"w": [3.0, 4.0]})
    assert calls
    monkeypatch.undo()
    # the error names the checkpoint, not the temporary file
    assert e.value.filename == str(p) and ".fungrad-" not in str(e.value) and str(p) in str(e.value)
    assert snapshot(tmp_path) == before
    assert checkpoint.load(p) == {"w": [1.0, 2.0]}


def test_interrupt_during_save_cleans_up(tmp_path, monkeypatch):
    p = tmp_path / "model.json"

    def interrupt(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(p, [1.0])
    assert list(tmp_path.iterdir()) == []


def test_save_to_a_missing_directory_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.save(tmp_path / "nope" / "c.json", [1.0])
    assert list(tmp_path.iterdir()) == []


def test_save_over_a_directory_fails_cleanly(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        checkpoint.save(tmp_path / "d", [1.0])
    assert [q.name for q in tmp_path.iterdir()] == ["d"]


def test_save_replaces_the_old_content(tmp_path):
    p = tmp_path / "c.json"
    checkpoint.save(p, [1.0])
    checkpoint.save(p, {"new": 2.0})
    assert checkpoint.load(p) == {"new": 2.0} and [q.name for q in tmp_path.iterdir()] == ["c.json"]


# --- bad files ---------------------------------------------------------------


def write(tmp_path, content, name="bad.json"):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif isinstance(content, str):
        p.write_text(content)
    else:
        p.write_text(json.dumps(content))
    return p


def good(tree_json, **extra):
    return {"format": "fungrad-checkpoint", "version": 1, "tree": tree_json, **extra}


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "not JSON"),
        ("{not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        ('{"format": "fungrad-checkpoint", "version": 1, "tree": NaN}', "NaN is not a number this format writes"),
        ("[1.0, 2.0]", "expected a JSON object"),
        ('"fungrad-checkpoint"', "expected a JSON object"),
        ({"version": 1, "tree": 1.0}, 'expected "format": "fungrad-checkpoint", found no format'),
        ({"format": "pickle", "version": 1, "tree": 1.0}, "found 'pickle'"),
        ({"format": "fungrad-checkpoint", "tree": 1.0}, "unknown checkpoint version None"),
        (good(1.0, version=3), "unknown checkpoint version 3; this fungrad reads versions 1 and 2"),
        (good(1.0, version="1"), "unknown checkpoint version '1'"),
        (good(1.0, version=True), "unknown checkpoint version True"),
        ({"format": "fungrad-checkpoint", "version": 1}, 'expected a "tree" key'),
        (good(1.0, metadata=[1]), '"metadata" must be an object'),
        (good({"w": 1.0}), r"at /tree: expected a number, string, null, array, or an object tagged"),
        (good({"dict": [1.0]}), "at /tree: expected"),
        (good({"tuple": {"a": 1}}), "at /tree: expected"),
        (good({"dict": {"a": {"tuple": [1.0, {"x": 1}]}}}), "at /tree/dict/a/tuple/1: expected"),
        (good([{"float": "Infinity"}]), r"at /tree/0: bad float encoding"),
        (good([{"float": "1.5"}]), "bad float encoding"),
        (good([{"float": 1.5}]), "bad float encoding"),
        (good([{"float": "inf", "bits": "0x7ff0000000000000"}]), "bad float encoding"),
        (good([{"float": "nan", "bits": "0x7ff0000000000000"}]), "bad float encoding"),  # that is inf
        (good([{"float": "nan", "bits": "0x3ff0000000000000"}]), "bad float encoding"),  # that is 1.0
        (good([{"float": "nan", "bits": "7ff8000000000001"}]), "bad float encoding"),
        (good([{"float": "nan", "bits": "0x7ff80000000000001"}]), "bad float encoding"),
        (good([{"float": "nan", "bits": 9221120237041090561}]), "bad float encoding"),
        (good({"float": "nan", "extra": 1}), "at /tree: expected"),
        (
            good({"type": "os.system", "children": ["echo hi"]}),
            "checkpoint names type os.system, which is not registered with fungrad.tree.register; "
            "import the module that defines it and register it",
        ),
        (good({"type": "fungrad.nowhere.Model", "children": []}), "names type fungrad.nowhere.Model"),
        (good({"type": 3, "children": []}), '"type" must be a class name'),
        (good({"type": f"{__name__}.Neuron", "children": {"w": 1}}), "at /tree: expected"),
        (good({"type": f"{__name__}.Neuron", "children": [[1.0]]}), "could not rebuild"),
        (
            good({"type": f"{__name__}.Neuron", "children": [[1.0], 0.0, 5.0], "static": {"tuple": ["tanh"]}}),
            r"could not rebuild a test_checkpoint.Neuron: expected 2 children \(w, b\), got 3",
        ),
        (good({"type": f"{__name__}.Neuron", "children": [[1.0], 0.0]}), "could not rebuild"),  # static missing
        (good({"type": f"{__name__}.Point", "children": [1.0]}), "could not rebuild"),
        (good({"type": "fungrad.optim.AdamState", "children": [0, 1.0]}), "could not rebuild"),
    ],
)
def test_bad_files_raise_value_error_naming_the_path(tmp_path, content, match):
    p = write(tmp_path, content)
    with pytest.raises(ValueError, match=match) as e:
        checkpoint.load(p)
    assert str(p) in str(e.value)
    with pytest.raises(ValueError):
        checkpoint.load_with_metadata(p)


def test_bad_metadata_values_are_reported_with_their_place(tmp_path):
    p = write(tmp_path, good(1.0, metadata={"lr": {"float": "huge"}}))
    with pytest.raises(ValueError, match="at /metadata/lr: bad float encoding"):
        checkpoint.load(p)


def test_loading_imports_nothing(tmp_path):
    name = "fungrad_checkpoint_probe_module"
    (tmp_path / f"{name}.py").write_text("raise SystemExit('imported!')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        p = write(tmp_path, good({"type": f"{name}.Evil", "children": []}))
        with pytest.raises(ValueError, match="not registered"):
            checkpoint.load(p)
        assert name not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "absent.json")


def test_a_handwritten_checkpoint_loads(tmp_path):
    # the format is simple enough to write by hand
    p = write(
        tmp_path,
        good(
            {"dict": {"p": {"type": f"{__name__}.Point", "children": [1, {"float": "-inf"}]}, "t": {"tuple": []}}},
            metadata={"by": "hand"},
        ),
    )
    params, meta = checkpoint.load_with_metadata(p)
    assert params == {"p": Point(1, -math.inf), "t": ()} and meta == {"by": "hand"}


# --- a fresh process ---------------------------------------------------------------

SAVE = """
import sys
import fungrad as fg
model = fg.nn.MLP.init(2, [3, 1], seed=0)
opt = fg.optim.Adam(0.1)
state = opt.init(model)
model, state = opt.update(model, fg.tree.map(lambda p: 0.5 * p, model), state)
fg.checkpoint.save(sys.argv[1], {"model": model, "opt": state, "sgd": fg.optim.SGDState(3, None),
                                 "count": fg.optim.CountState(2)}, metadata={"step": 1})
"""

LOAD = """
import sys
import fungrad.checkpoint
before = set(sys.modules)
params, meta = fungrad.checkpoint.load_with_metadata(sys.argv[1])
new = sorted(m for m in set(sys.modules) - before if m.startswith("fungrad"))
import fungrad as fg
model = fg.nn.MLP.init(2, [3, 1], seed=0)
opt = fg.optim.Adam(0.1)
state = opt.init(model)
model, state = opt.update(model, fg.tree.map(lambda p: 0.5 * p, model), state)
print(new, params["model"] == model, params["opt"] == state, type(params["model"]).__name__,
      params["sgd"] == fg.optim.SGDState(3, None), params["count"] == fg.optim.CountState(2), meta)
"""


@pytest.mark.slow
def test_a_model_saved_in_one_process_loads_in_a_fresh_one(tmp_path):
    import subprocess

    p = str(tmp_path / "m.json")
    subprocess.run([sys.executable, "-c", SAVE, p], check=True, timeout=60)
    out = subprocess.run([sys.executable, "-c", LOAD, p], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # loading imported fungrad's own modules that define the types (from the fixed table), nothing else
    assert out.stdout.split("]")[0].startswith("['fungrad.")
    assert "'fungrad.nn'" in out.stdout and "'fungrad.optim'" in out.stdout
    assert out.stdout.split("]", 1)[1].split() == ["True", "True", "MLP", "True", "True", "{'step':", "1}"]


def test_every_fungrad_module_that_registers_types_is_in_the_table():
    import pathlib

    pkg = pathlib.Path(checkpoint.__file__).parent
    registering = {
        f"fungrad.{f.stem}"
        for f in pkg.glob("*.py")
        if f.stem not in ("tree", "checkpoint") and re.search(r"\btree\.register\b|@register\b", f.read_text())
    }
    assert registering and registering <= set(checkpoint._PROVIDERS)
    # and every class they register is found by name
    import fungrad.nn, fungrad.optim  # noqa: E401, F401

    names = [tree.type_name(c) for c in tree._registry if c.__module__.startswith("fungrad.")]
    assert "fungrad.nn.MLP" in names and "fungrad.optim.AdamState" in names
    assert all(n.rsplit(".", 1)[0] in checkpoint._PROVIDERS for n in names)


def test_a_save_that_cannot_write_names_the_checkpoint_once(tmp_path):
    d = tmp_path / "a_directory"
    d.mkdir()
    with pytest.raises(IsADirectoryError) as e:
        checkpoint.save(d, {"w": 1.0})
    assert str(e.value) == f"[Errno 21] Is a directory: {str(d)!r}" and e.value.filename == str(d)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".fungrad-")]  # no temporary file left
