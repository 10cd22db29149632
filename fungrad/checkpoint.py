"""Save and load parameter pytrees as JSON: exact floats, atomic writes, never pickle.

A checkpoint is one JSON object::

    {"format": "fungrad-checkpoint", "version": 1, "tree": ..., "metadata": {...}}

The tree is encoded so that a person can read it and every value comes back
exactly:

- a finite float is a JSON number written with ``repr``, the shortest text
  that reads back to the same 64 bits (``0.1``, ``5e-324``); the floats that
  JSON cannot write are tagged objects: ``{"float": "-0.0"}``,
  ``{"float": "inf"}``, ``{"float": "-inf"}``, ``{"float": "nan"}``, and a NaN
  with other bits than Python's ``float("nan")`` (a sign, a payload) keeps
  them as ``{"float": "nan", "bits": "0xfff8000000000000"}``;
- ints, bools and strings are JSON ints, booleans and strings (a float is
  always written with a ``.`` or an exponent, so ``1.0`` and ``1`` stay
  apart); a fungrad node is saved as its ``.value`` and loads as a float;
- a list is a JSON array, ``None`` is ``null``, a tuple is ``{"tuple": [...]}``,
  a dict (keys must be ``str``) is ``{"dict": {...}}``;
- any other container is a class registered with :func:`fungrad.tree.register`
  (fungrad's models and optimizer states are): ``{"type": "fungrad.nn.MLP",
  "children": [...], "static": ...}``, with its children and static fields as
  the pytree registry flattens them. Loading finds the class with
  :func:`fungrad.tree.lookup`, so the registry is the allowlist: a file can
  name only classes that the program has registered, and loading imports
  nothing, evaluates nothing and unpickles nothing.

>>> import fungrad as fg, os, tempfile
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "params.json")
>>> fg.checkpoint.save(path, {"w": [0.1, -0.0], "b": (float("inf"), 3)})
>>> fg.checkpoint.load(path)
{'w': [0.1, -0.0], 'b': (inf, 3)}
>>> tmp.cleanup()
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import tempfile
from typing import Any, Union

from fungrad import tree

__all__ = ["save", "load", "load_with_metadata", "FORMAT", "VERSION"]

FORMAT = "fungrad-checkpoint"
VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]

_NAN_BITS = 0x7FF8000000000000  # float("nan") in CPython
_SPECIAL = {"-0.0": -0.0, "inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_LEAF = tree.structure(0.0)


def _bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def _encode_float(x: float) -> Any:
    if x != x:
        b = _bits(x)
        return {"float": "nan"} if b == _NAN_BITS else {"float": "nan", "bits": f"0x{b:016x}"}
    if math.isinf(x):
        return {"float": "inf" if x > 0 else "-inf"}
    if x == 0.0 and math.copysign(1.0, x) < 0:
        return {"float": "-0.0"}
    return x


def _encode_leaf(x: Any, where: str) -> Any:
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return _encode_float(float(x))  # float() also turns subclasses such as numpy's into plain floats
    if isinstance(x, str):
        return str(x)
    if getattr(type(x), "__fungrad_leaf__", False):
        return _encode_float(float(x.value))
    raise TypeError(
        f"checkpoint.save: cannot save the leaf at {where}, a {type(x).__qualname__}; "
        "expected a float, int, bool, str or fungrad node"
    )


def _encode(obj: Any, where: str) -> Any:
    """Encode the pytree ``obj``; ``where`` names it in error messages."""
    pairs, td = tree.flatten_with_path(obj)
    paths = [p for p, _ in pairs]
    vals = [v for _, v in pairs]
    pos = 0

    def enc(td: tree.TreeDef, path: tuple[Any, ...]) -> Any:
        nonlocal pos
        kind = td.kind
        if kind == "*":
            pos += 1
            return _encode_leaf(vals[pos - 1], where + tree.keystr(paths[pos - 1]))
        if kind == "None":
            return None
        out = []
        for i, c in enumerate(td.children):
            # the leaf paths know each child's key (attribute names too); an
            # empty child has no leaf, and its index is enough for messages
            key = paths[pos][len(path)] if c.num_leaves else (td.aux[i] if kind == "dict" else i)
            out.append(enc(c, path + (key,)))
        if kind == "list":
            return out
        if kind == "tuple":
            return {"tuple": out}
        if kind == "dict":
            for k in td.aux:
                if not isinstance(k, str):
                    raise TypeError(
                        f"checkpoint.save: dict keys must be str, but the dict at {where + tree.keystr(path)} "
                        f"has the key {k!r} ({type(k).__name__})"
                    )
            return {"dict": dict(zip(td.aux, out))}
        name = tree.type_name(kind)
        if not tree.registered(kind):
            raise TypeError(
                f"checkpoint.save: {where + tree.keystr(path)} is a {name}, which is not registered "
                "with fungrad.tree.register; register it so that load can rebuild it"
            )
        if tree.lookup(name) is not kind:
            raise TypeError(
                f"checkpoint.save: {where + tree.keystr(path)} is a {name}, but another registered class "
                "has that name, so load could not tell them apart"
            )
        enc_node = {"type": name, "children": out}
        if td.aux is not None:
            enc_node["static"] = _encode(td.aux, f"{where + tree.keystr(path)} (static fields)")
        return enc_node

    return enc(td, ())


def save(path: PathLike, params: Any, *, metadata: dict[str, Any] | None = None) -> None:
    """Write ``params`` (any pytree) to ``path`` as a JSON checkpoint, atomically.

    ``metadata`` is an optional dict with str keys (step, loss, notes, ...),
    encoded like the tree. A fungrad node among the leaves is saved as its
    ``.value``, so it loads as a plain float. The whole file is encoded first, then written to
    a temporary file in the same directory, synced to disk and renamed over
    ``path``: a reader sees the old file or the new one, never half of one,
    and a failed save leaves the old file as it was and no temporary file.

    Raises ``TypeError`` naming the place of a leaf that is not a number,
    str or node, a dict key that is not a str, or a container class that is
    not registered with :func:`fungrad.tree.register`.

    >>> import fungrad as fg, os, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "ckpt.json")
    >>> fg.checkpoint.save(path, [1.5, None], metadata={"step": 10})
    >>> fg.checkpoint.load_with_metadata(path)
    ([1.5, None], {'step': 10})
    >>> tmp.cleanup()
    """
    meta = {} if metadata is None else metadata
    if not isinstance(meta, dict):
        raise TypeError(f"checkpoint.save: metadata must be a dict with str keys, got {type(meta).__name__}")
    for k in meta:
        if not isinstance(k, str):
            raise TypeError(f"checkpoint.save: metadata keys must be str, got {k!r} ({type(k).__name__})")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "tree": _encode(params, "params"),
        "metadata": {k: _encode(v, f"metadata[{k!r}]") for k, v in meta.items()},
    }
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    f = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=directory, prefix=".fungrad-", suffix=".tmp", delete=False
    )
    try:
        with f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # NamedTemporaryFile makes 0600 files; keep the old file's mode, or a usual one
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        os.chmod(f.name, mode)
        os.replace(f.name, path)
    except BaseException:
        try:
            os.unlink(f.name)
        except FileNotFoundError:
            pass
        raise
    _sync_dir(directory)


def _sync_dir(directory: str) -> None:
    # makes the rename itself durable on POSIX; Windows cannot open directories
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Bad(Exception):
    """A malformed tree; carries the JSON pointer of the bad part."""

    def __init__(self, at: str, msg: str) -> None:
        super().__init__(f"at {at or '/'}: {msg}")


_HEX64 = re.compile(r"0x[0-9a-fA-F]{16}")


def _decode_float(d: dict[str, Any], at: str) -> float:
    text, bits = d.get("float"), d.get("bits")
    if "bits" not in d:
        if isinstance(text, str) and text in _SPECIAL:
            return _SPECIAL[text]
        raise _Bad(at, f'bad float encoding {d!r}; expected {{"float": "-0.0" | "inf" | "-inf" | "nan"}}')
    if text == "nan" and isinstance(bits, str) and _HEX64.fullmatch(bits):
        x = struct.unpack("<d", struct.pack("<Q", int(bits, 16)))[0]
        if x != x:
            return x
    raise _Bad(at, f'bad float encoding {d!r}; expected {{"float": "nan", "bits": "0x" + 16 hex digits of a NaN}}')


def _decode(x: Any, at: str) -> Any:
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, list):
        return [_decode(v, f"{at}/{i}") for i, v in enumerate(x)]
    if not isinstance(x, dict):  # pragma: no cover - json.loads makes nothing else
        raise _Bad(at, f"unexpected {type(x).__name__}")
    keys = set(x)
    if keys == {"dict"} and isinstance(x["dict"], dict):
        return {k: _decode(v, f"{at}/dict/{k}") for k, v in x["dict"].items()}
    if keys == {"tuple"} and isinstance(x["tuple"], list):
        return tuple(_decode(v, f"{at}/tuple/{i}") for i, v in enumerate(x["tuple"]))
    if keys in ({"float"}, {"float", "bits"}):
        return _decode_float(x, at)
    if keys in ({"type", "children"}, {"type", "children", "static"}) and isinstance(x["children"], list):
        return _decode_node(x, at)
    raise _Bad(
        at,
        f"expected a number, string, null, array, or an object tagged "
        f'"dict", "tuple", "float" or "type"+"children"; got an object with keys {sorted(keys)}',
    )


def _decode_node(x: dict[str, Any], at: str) -> Any:
    name = x["type"]
    if not isinstance(name, str):
        raise _Bad(at, f'"type" must be a class name, got {name!r}')
    cls = tree.lookup(name)
    if cls is None:
        raise _Bad(
            at,
            f"checkpoint names type {name}, which is not registered with fungrad.tree.register; "
            "import the module that defines it and register it",
        )
    children = [_decode(v, f"{at}/children/{i}") for i, v in enumerate(x["children"])]
    aux = _decode(x.get("static"), f"{at}/static")
    n = len(children)
    try:
        obj = tree.unflatten(tree.TreeDef(cls, aux, (_LEAF,) * n, n), children)
        ok = len(tree.structure(obj).children) == n
    except Exception as e:
        raise _Bad(at, f"could not rebuild a {name} from {n} children and static fields {aux!r}: {e}") from None
    if not ok:
        raise _Bad(at, f"a {name} does not have {n} children")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_with_metadata(path: PathLike) -> tuple[Any, dict[str, Any]]:
    """Read a checkpoint written by :func:`save`: ``(params, metadata)``.

    Raises ``ValueError`` naming ``path`` and what was expected when the file
    is not JSON, is not a fungrad checkpoint of a known version, or holds a
    malformed tree or a type not registered with :func:`fungrad.tree.register`.

    >>> import fungrad as fg, os, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "ckpt.json")
    >>> fg.checkpoint.save(path, {"w": 2.0}, metadata={"loss": 0.25})
    >>> fg.checkpoint.load_with_metadata(path)
    ({'w': 2.0}, {'loss': 0.25})
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    what = f"{path} is not a fungrad checkpoint"
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError as e:  # also UnicodeDecodeError and json.JSONDecodeError
        raise ValueError(f"{what}: it is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f'{what}: expected a JSON object with "format": "{FORMAT}", got a {type(doc).__name__}')
    if doc.get("format") != FORMAT:
        got = repr(doc["format"]) if "format" in doc else "no format"
        raise ValueError(f'{what}: expected "format": "{FORMAT}", found {got}')
    version = doc.get("version")
    if type(version) is not int or version != VERSION:
        raise ValueError(f"{path}: unknown checkpoint version {version!r}; this fungrad reads version {VERSION}")
    if "tree" not in doc:
        raise ValueError(f'{path}: malformed checkpoint: expected a "tree" key')
    meta = doc.get("metadata", {})
    if not isinstance(meta, dict):
        raise ValueError(f'{path}: malformed checkpoint: "metadata" must be an object, got {meta!r}')
    try:
        params = _decode(doc["tree"], "/tree")
        metadata = {k: _decode(v, f"/metadata/{k}") for k, v in meta.items()}
    except _Bad as e:
        raise ValueError(f"{path}: malformed checkpoint tree {e}") from None
    return params, metadata


def load(path: PathLike) -> Any:
    """The params saved at ``path`` by :func:`save` (see :func:`load_with_metadata` for errors).

    >>> import fungrad as fg, os, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "ckpt.json")
    >>> fg.checkpoint.save(path, {"w": [1e-300, float("-inf")]})
    >>> fg.checkpoint.load(path)
    {'w': [1e-300, -inf]}
    >>> tmp.cleanup()
    """
    return load_with_metadata(path)[0]
