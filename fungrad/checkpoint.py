"""Save and load parameter pytrees as JSON: exact floats, atomic writes, never pickle.

A checkpoint is one JSON object::

    {"format": "fungrad-checkpoint", "version": 2, "tree": ..., "metadata": {...}}

(version 1 when the tree holds no class saved with its field names, see below,
so that an older fungrad reads it)

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
  apart); a fungrad node is saved as its ``.value`` and loads as a float,
  and a NumPy scalar (a bool, int or float of up to 64 bits) as the Python
  number of the same value;
- a list is a JSON array, ``None`` is ``null``, a tuple is ``{"tuple": [...]}``,
  a dict (keys must be ``str``) is ``{"dict": {...}}``;
- any other container is a class registered with :func:`fungrad.tree.register`
  (fungrad's models and optimizer states are): ``{"type": "fungrad.nn.MLP",
  "fields": [...], "children": [...], "static_fields": [...], "static": ...}``,
  with its children and static fields as the pytree registry flattens them,
  and for a class flattened by its fields (attrs classes, namedtuples) their
  names: a class whose fields changed since the save (reordered, renamed,
  added) is refused with a ``ValueError`` instead of getting the values of
  other fields. Files of version 1, which have no names, load in order.
  Loading finds the class with
  :func:`fungrad.tree.lookup`, so the registry is the allowlist: a file can
  name only classes that the program has registered, and fungrad's own
  models and optimizer states (:mod:`fungrad.nn` and :mod:`fungrad.optim`
  are imported from a fixed table when a file names one of their classes,
  so a fresh process loads them). Loading never imports a module that a
  file names, evaluates nothing the file holds and unpickles nothing.

Loading is strict, so that a damaged or hand-edited file fails with a
``ValueError`` naming the file instead of loading as something else: each
field of a class must hold the type the class declares (its attrs or
NamedTuple annotations; fungrad's optimizer states declare their ``Any``
fields here), a key may not appear twice in one object, a number literal
must be a finite float or an int (``1e400``, ``NaN`` and ``Infinity`` are
refused: the format tags those floats), and containers nest at most
:data:`MAX_DEPTH` deep. Every walk over the tree is a loop, not a recursion.

>>> import fungrad as fg, os, tempfile
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "params.json")
>>> fg.checkpoint.save(path, {"w": [0.1, -0.0], "b": (float("inf"), 3)})
>>> fg.checkpoint.load(path)
{'w': [0.1, -0.0], 'b': (inf, 3)}
>>> tmp.cleanup()
"""

from __future__ import annotations

import collections.abc
import importlib
import json
import math
import os
import re
import secrets
import socket
import struct
import sys
import time
import types
import typing
from itertools import accumulate
from typing import Any, Sequence, Callable, Union

import attrs

from fungrad import tree

__all__ = ["save", "load", "load_with_metadata", "FORMAT", "VERSION", "MAX_DEPTH", "STALE_AFTER"]

FORMAT = "fungrad-checkpoint"
VERSION = 2
#: The most containers a checkpoint nests inside one another (its JSON is at
#: most ``2 * MAX_DEPTH + 3`` levels deep, which Python's ``json`` reads
#: within the default recursion limit).
MAX_DEPTH = 200

PathLike = Union[str, "os.PathLike[str]"]

# fungrad's own modules that register checkpointable classes. A file naming
# ``fungrad.nn.MLP`` in a fresh process gets ``fungrad.nn`` imported from this
# table, never from the file, so the allowlist stays: these modules, and
# whatever the program registered itself.
_PROVIDERS = ("fungrad.nn", "fungrad.optim")

_NAN_BITS = 0x7FF8000000000000  # float("nan") in CPython
_SPECIAL = {"-0.0": -0.0, "inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_LEAF = tree.structure(0.0)
_MAX_JSON_DEPTH = 2 * MAX_DEPTH + 3


def _bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


# --------------------------------------------------------------------------
# Writing


def _encode_float(x: float) -> Any:
    if x != x:
        b = _bits(x)
        return {"float": "nan"} if b == _NAN_BITS else {"float": "nan", "bits": f"0x{b:016x}"}
    if math.isinf(x):
        return {"float": "inf" if x > 0 else "-inf"}
    if x == 0.0 and math.copysign(1.0, x) < 0:
        return {"float": "-0.0"}
    return x


_UNSUPPORTED = object()


def _encode_leaf(x: Any) -> Any:
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, int):
        if x.bit_length() > 10_000:
            try:
                str(x)  # Python refuses to print ints of more than 4300 digits by default
            except ValueError:
                return _UNSUPPORTED
        return int(x)
    if isinstance(x, float):
        return _encode_float(float(x))  # float() also turns subclasses such as numpy's into plain floats
    if isinstance(x, str):
        return str(x)
    if getattr(type(x), "__fungrad_leaf__", False):
        return _encode_float(float(x.value))
    if type(x).__module__ == "numpy" and getattr(x, "shape", None) == ():
        # a NumPy scalar: saved as the Python number of the same value (it
        # loads as that number); not a long double, which a float would round
        kind, size = x.dtype.kind, x.dtype.itemsize
        if kind == "b":
            return bool(x)
        if kind in ("i", "u"):
            return _encode_leaf(int(x))
        if kind == "f" and size <= 8:
            return _encode_float(float(x))
    return _UNSUPPORTED


def _type_text(t: type) -> str:
    # numpy.bool is not the bool the message would seem to refuse
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _encode(obj: Any, where: str, who: str, named: list[bool] | None = None) -> Any:
    """The JSON value of the pytree ``obj``; ``where`` names it and ``who`` the call in errors.

    ``named`` gets an item when a class is written with its field names (format 2).
    """
    root: list[Any] = [None]
    names: dict[type, str] = {}
    # (value, path, depth, box, key, where): the value's encoding goes to box[key]
    todo: list[tuple[Any, tuple[Any, ...], int, Any, Any, str]] = [(obj, (), 1, root, 0, where)]
    while todo:
        x, path, depth, box, key, at = todo.pop()
        c = tree.children(x)
        if c is None:
            v = _encode_leaf(x)
            if v is _UNSUPPORTED:
                what = "an int too long to write" if isinstance(x, int) else f"a {_type_text(type(x))}"
                raise TypeError(
                    f"{who}: cannot save the leaf at {at + tree.keystr(path)}, {what}; "
                    "expected a float, int, bool, str, fungrad node, or a NumPy scalar of a number"
                )
            box[key] = v
            continue
        kind, aux, ch, keys = c
        if kind is tree.NONE:
            box[key] = None
            continue
        if depth > MAX_DEPTH:
            raise ValueError(
                f"{who}: {at + tree.keystr(path)} is nested {depth} containers deep; "
                f"a checkpoint holds at most {MAX_DEPTH} (fungrad.checkpoint.MAX_DEPTH)"
            )
        out: Any = [None] * len(ch)
        slots: Any = range(len(ch))
        if kind is tree.LIST:
            box[key] = out
        elif kind is tree.TUPLE:
            box[key] = {"tuple": out}
        elif kind is tree.DICT:
            for k in aux:
                if not isinstance(k, str):
                    raise TypeError(
                        f"{who}: dict keys must be str, but the dict at {at + tree.keystr(path)} "
                        f"has the key {k!r} ({type(k).__name__})"
                    )
            out = dict.fromkeys(aux)
            slots = aux
            box[key] = {"dict": out}
        else:
            # a registered (or attrs, namedtuple) class: the kinds of the built-in containers are above
            node = {"type": _class_name(kind, names, at + tree.keystr(path), who), "children": out}  # type: ignore[arg-type]
            fields = tree._field_names(kind)  # type: ignore[arg-type]
            if fields is not None:
                # by name as well as by position: load can tell that a class
                # has changed its fields since, instead of filling them in order
                node["fields"] = list(fields[0])
                if fields[1]:
                    node["static_fields"] = list(fields[1])
                if named is not None and not named:
                    named.append(True)
            box[key] = node
            if aux is not None:
                node["static"] = None
                todo.append((aux, (), depth + 1, node, "static", f"{at + tree.keystr(path)} (static fields)"))
        todo.extend([(ch[i], path + (keys[i],), depth + 1, out, slots[i], at) for i in range(len(ch) - 1, -1, -1)])
    return root[0]


def _class_name(cls: type, names: dict[type, str], at: str, who: str) -> str:
    name = names.get(cls)
    if name is None:
        name = tree.type_name(cls)
        if not tree.registered(cls):
            raise TypeError(
                f"{who}: {at} is a {name}, which is not registered "
                "with fungrad.tree.register; register it so that load can rebuild it"
            )
        if tree.lookup(name) is not cls:
            raise TypeError(
                f"{who}: {at} is a {name} of a class that was defined again since (a notebook "
                "cell run again?): a class of that name was registered after it, and load would "
                "build that one. Make the object anew from the class as it is now"
            )
        names[cls] = name
    return name


def save(path: PathLike, params: Any, *, metadata: dict[str, Any] | None = None) -> None:
    """Write ``params`` (any pytree) to ``path`` as a JSON checkpoint, atomically.

    ``metadata`` is an optional dict with str keys (step, loss, notes, ...),
    encoded like the tree. A fungrad node among the leaves is saved as its
    ``.value``, so it loads as a plain float. The whole file is encoded
    first, then written to a temporary file in the same directory, synced to
    disk and renamed over ``path``: a reader sees the old file or the new
    one, never half of one, and a failed save leaves the old file as it was
    and no temporary file. A new file gets the permissions ``open()`` would
    give it (``0o666`` less the umask), an existing one keeps its own; when
    ``path`` is a symbolic link, the file it points to is replaced and the
    link stays. Temporary files that a killed save left in the directory
    (their writer process is gone, or they are over an hour old) are removed.

    Raises ``TypeError`` naming the place of a leaf that is not a number,
    str or node, a dict key that is not a str, or a container class that is
    not registered with :func:`fungrad.tree.register`; ``ValueError`` for a
    tree nested deeper than :data:`MAX_DEPTH`; ``OSError`` naming ``path``
    when the file cannot be written.

    >>> import fungrad as fg, os, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "ckpt.json")
    >>> fg.checkpoint.save(path, [1.5, None], metadata={"step": 10})
    >>> fg.checkpoint.load_with_metadata(path)
    ([1.5, None], {'step': 10})
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    who = f"checkpoint.save to {path}"
    meta = {} if metadata is None else metadata
    if not isinstance(meta, dict):
        raise TypeError(f"{who}: metadata must be a dict with str keys, got {type(meta).__name__}")
    for k in meta:
        if not isinstance(k, str):
            raise TypeError(f"{who}: metadata keys must be str, got {k!r} ({type(k).__name__})")
    named: list[bool] = []
    tree_json = _encode(params, "params", who, named)
    metadata_json = {k: _encode(v, f"metadata[{k!r}]", who, named) for k, v in meta.items()}
    doc = {
        "format": FORMAT,
        # version 1 when no class is saved with field names: older fungrad reads it
        "version": VERSION if named else 1,
        "tree": tree_json,
        "metadata": metadata_json,
    }
    try:
        data = (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode("utf-8")
    except RecursionError:
        # MAX_DEPTH keeps the JSON shallow; only a caller already deep in its own stack gets here
        raise ValueError(f"{who}: the tree is too deep to write from this deep in the call stack") from None
    _write_atomic(path, data)


def _write_atomic(path: str, data: bytes) -> None:
    # through a symlink to the file it names, so the link stays a link
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    _remove_leftovers(directory)
    made: list[str] = []  # the temporary file's name, known before it exists
    try:
        fd = _create_temp(directory, made)
        tmp = made[0]
        _write_and_close(fd, data)
        mode = _mode_of(target)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as e:
        if made:
            # an interrupt may land between os.open's return and the store of
            # its result: the name is known all the same, and the descriptor
            # is found by the file it is open on
            _close_open(made[0])
            try:
                os.unlink(made[0])
            except OSError:
                pass
        if isinstance(e, OSError) and e.errno is not None and e.filename != path:
            # the user knows the checkpoint's name, not the temporary file's
            # (a new error: one made with two names prints both, whatever they become)
            raise type(e)(e.errno, e.strerror, path) from None
        raise
    _sync_dir(directory)


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
_TEMP = re.compile(r"\.fungrad-(?P<host>[A-Za-z0-9-]{1,32})-(?P<pid>[0-9]{1,10})-[0-9a-f]{16}\.tmp")
_OLD_TEMP = re.compile(r"\.fungrad-[a-z0-9_]{8}\.tmp")  # tempfile's names, from fungrad 0.1's saves
#: Seconds after which a temporary file of a save is a leftover even if its writer may still run.
STALE_AFTER = 3600.0


# No try statement nested in _write_atomic's: Python 3.11 reports the line
# of a nested try outside the outer one's handler, so an interrupt there (as
# a trace function raises it) would skip the clean-up.


def _mode_of(target: str) -> int | None:
    # replacing a file keeps its permissions, as writing it with open() would
    try:
        return os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        return None


def _write_and_close(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(directory: str, made: list[str]) -> int:
    # O_EXCL with mode 0o666: the umask applies, as for open(); mkstemp would give 0o600.
    # The name goes into made before the file exists, so that the caller can
    # remove the file whatever statement an interrupt lands on.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    while True:
        name = os.path.join(directory, f".fungrad-{_HOST}-{os.getpid()}-{secrets.token_hex(8)}.tmp")
        made[:] = [name]
        try:
            return os.open(name, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 64 random bits
            made.clear()  # another writer's file
            continue


def _close_open(name: str) -> None:
    # close this process's descriptors open on the file `name` (Linux; elsewhere nothing)
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == name:
                os.close(int(fd))
        except (OSError, ValueError):
            pass


def _writer_gone(host: str, pid: int) -> bool:
    if host != _HOST or os.name != "posix" or pid == os.getpid():
        return False  # another machine's process, or no safe way to ask
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _remove_leftovers(directory: str) -> None:
    """Remove the temporary files of saves into ``directory`` that were killed (best effort)."""
    try:
        entries = os.scandir(directory)
    except OSError:
        return
    now = time.time()
    uid = os.getuid() if hasattr(os, "getuid") else None
    with entries:
        for e in entries:
            m = _TEMP.fullmatch(e.name)
            if m is None and _OLD_TEMP.fullmatch(e.name) is None:
                continue
            try:
                st = e.stat(follow_symlinks=False)
                if not e.is_file(follow_symlinks=False) or (uid is not None and st.st_uid != uid):
                    continue
                if now - st.st_mtime > STALE_AFTER or (m is not None and _writer_gone(m["host"], int(m["pid"]))):
                    os.unlink(e.path)
            except OSError:
                pass


def _sync_dir(directory: str) -> None:
    # makes the rename itself durable on POSIX; Windows cannot open directories
    if os.name != "posix":
        return
    fd = -1
    try:
        fd = os.open(directory, os.O_RDONLY)
        os.fsync(fd)
    except OSError:
        pass
    finally:
        if fd >= 0:
            os.close(fd)


# --------------------------------------------------------------------------
# Reading


class _Bad(Exception):
    """A malformed tree; carries the JSON pointer of the bad part."""

    def __init__(self, at: str, msg: str) -> None:
        super().__init__(f"at {at or '/'}: {msg}")


class _BadJSON(Exception):
    """JSON that parses, but not as the format allows (duplicate keys, NaN and Infinity)."""


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


_TUPLE = object()  # marks the work item that turns a decoded list into a tuple
_BUILD = object()  # marks the work item that builds a registered class from its decoded parts


def _decode(x: Any, at: str) -> Any:
    """The pytree of the JSON value ``x`` (at JSON pointer ``at``), walked with a stack."""
    root: list[Any] = [None]
    # (json value, pointer, depth, box, key): the decoded value goes to box[key];
    # (_TUPLE, box, key) and (_BUILD, ...) run after the children they need
    todo: list[tuple[Any, ...]] = [(x, at, 1, root, 0)]
    out: list[Any] | dict[Any, Any]  # the container decoded at this step
    while todo:
        item = todo.pop()
        v = item[0]
        if v is _TUPLE:
            _, box, key = item
            box[key] = tuple(box[key])
            continue
        if v is _BUILD:
            _build(*item[1:])
            continue
        _, at, depth, box, key = item
        cls = v.__class__
        if v is None or cls is int or cls is str or cls is bool:
            box[key] = v
            continue
        if cls is float:
            if v - v != 0.0:
                # save tags infinities, and NaN literals are refused while parsing: only a
                # literal beyond the range of a float (1e400) reads as one
                raise _Bad(
                    at,
                    f"a number beyond the range of a float (it reads as {v}); "
                    'infinities are written {"float": "inf"} or {"float": "-inf"}',
                )
            box[key] = v
            continue
        if depth > MAX_DEPTH:
            raise _Bad(at, f"nested deeper than {MAX_DEPTH} containers, the most a checkpoint holds")
        if cls is list:
            if all([e.__class__ is float or e.__class__ is int for e in v]):
                # numbers only (a layer's weights): taken as they are, with no
                # work item (and JSON pointer) per number, which cost a hostile
                # file of millions of them gigabytes
                for i, e in enumerate(v):
                    if e.__class__ is float and e - e != 0.0:
                        todo.append((e, f"{at}/{i}", depth + 1, [None], 0))  # said as for one number alone
                        break
                box[key] = v
                continue
            out = box[key] = [None] * len(v)
            todo.extend([(v[i], f"{at}/{i}", depth + 1, out, i) for i in range(len(v) - 1, -1, -1)])
            continue
        if cls is not dict:  # pragma: no cover - json.loads makes nothing else
            raise _Bad(at, f"unexpected {cls.__name__}")
        keys = v.keys()
        if keys == {"dict"} and v["dict"].__class__ is dict:
            d = v["dict"]
            out = box[key] = dict.fromkeys(d)
            todo.extend([(d[k], f"{at}/dict/{k}", depth + 1, out, k) for k in reversed(d)])
        elif keys == {"tuple"} and v["tuple"].__class__ is list:
            t = v["tuple"]
            out = box[key] = [None] * len(t)
            todo.append((_TUPLE, box, key))
            todo.extend([(t[i], f"{at}/tuple/{i}", depth + 1, out, i) for i in range(len(t) - 1, -1, -1)])
        elif keys == {"float"} or keys == {"float", "bits"}:
            box[key] = _decode_float(v, at)
        elif "type" in keys and "children" in keys and keys <= _CLASS_KEYS and v["children"].__class__ is list:
            name = v["type"]
            if not isinstance(name, str):
                raise _Bad(at, f'"type" must be a class name, got {name!r}')
            kind = _find_class(name, at)
            ch = v["children"]
            parts: list[Any] = [[None] * len(ch), None]  # children, static fields
            named = (_names_in(v, "fields", at), _names_in(v, "static_fields", at))
            todo.append((_BUILD, kind, name, parts, at, box, key, named))
            todo.append((v.get("static"), f"{at}/static", depth + 1, parts, 1))
            todo.extend([(ch[i], f"{at}/children/{i}", depth + 1, parts[0], i) for i in range(len(ch) - 1, -1, -1)])
        else:
            raise _Bad(
                at,
                "expected a number, string, null, array, or an object tagged "
                f'"dict", "tuple", "float" or "type"+"children"; got an object with keys {sorted(keys)}',
            )
    return root[0]


_CLASS_KEYS = {"type", "children", "static", "fields", "static_fields"}


def _names_in(v: dict[str, Any], key: str, at: str) -> list[str] | None:
    names = v.get(key)
    if names is None:
        return None  # a file of version 1, or a class with no static fields
    if names.__class__ is not list or not all(n.__class__ is str for n in names):
        raise _Bad(at, f'"{key}" must be a list of field names, got {_cut(names)}')
    return names


def _find_class(name: str, at: str) -> type:
    cls = tree.lookup(name)
    if cls is None:
        for mod in _PROVIDERS:
            # the module comes from the table above; the file only picks which
            if name.startswith(mod + ".") and mod not in sys.modules:
                importlib.import_module(mod)
                cls = tree.lookup(name)
    if cls is None:
        raise _Bad(
            at,
            f"checkpoint names type {name}, which is not registered with fungrad.tree.register; "
            "import the module that defines it and register it",
        )
    return cls


def _build(
    cls: type, name: str, parts: list[Any], at: str, box: Any, key: Any, named: tuple[Any, Any] = (None, None)
) -> None:
    children, aux = parts
    n = len(children)
    fields = tree._field_names(cls)
    if fields is None and named != (None, None):
        raise _Bad(at, f"the file gives field names for {name}, but the class now flattens by functions of its own")
    if fields is not None:
        dyn, stat = fields
        # static fields the class gained at the end since take their defaults (below)
        saved_stat = named[1] if named[1] is not None or named[0] is None else []
        for saved, now, what in ((named[0], dyn, "fields"), (saved_stat, stat[: len(saved_stat or ())], "static fields")):
            if saved is not None and list(saved) != list(now):
                raise _Bad(
                    at,
                    f"{name} was saved with the {what} ({', '.join(saved) or 'none'}), but the class now has "
                    f"({', '.join(now) or 'none'}): it changed since the file was saved, and its values would "
                    "go to other fields. Load it with the class as it was, or convert the file",
                )
        if n != len(dyn):
            raise _Bad(at, f"could not rebuild a {name}: expected {len(dyn)} children ({', '.join(dyn)}), got {n}")
        is_nt = not attrs.has(cls)  # a namedtuple: no static fields, aux is None
        if not is_nt and not stat and aux is None:
            aux = ()  # "static" may be left out of a hand-written file when there is none
        if is_nt and aux is not None:
            raise _Bad(at, f"could not rebuild a {name}: a namedtuple has no static fields, got {_cut(aux)}")
        if not is_nt and type(aux) is tuple and len(aux) < len(stat):
            # a file from before the class gained trailing static fields:
            # those take their declared defaults (Layer.activation, say)
            aux = _with_defaults(cls, stat, aux)
            parts[1] = aux
        if not is_nt and not (type(aux) is tuple and len(aux) == len(stat)):
            raise _Bad(
                at,
                f"could not rebuild a {name}: expected its static fields ({', '.join(stat) or 'none'}) "
                f"as a tuple of {len(stat)}, got {_cut(aux)}",
            )
        _check_fields(cls, name, dict(zip(dyn, children)), dict(zip(stat, aux or ())), at)
    try:
        obj = tree.unflatten(tree.TreeDef(cls, aux, (_LEAF,) * n), children)
        got = tree.children(obj)
    except Exception as e:
        raise _Bad(at, f"could not rebuild a {name} from {n} children and static fields {_cut(aux)}: {e}") from None
    if got is None or len(got.children) != n:
        raise _Bad(at, f"could not rebuild a {name}: it does not have {n} children")
    box[key] = obj


def _with_defaults(cls: type, stat: Sequence[str], aux: tuple[Any, ...]) -> tuple[Any, ...]:
    by_name = {f.name: f for f in attrs.fields(cls)}
    extra = []
    for name in stat[len(aux) :]:
        f = by_name.get(name)
        if f is None or f.default is attrs.NOTHING or isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
            return aux  # no default: the length check below says what is missing
        extra.append(f.default)
    return aux + tuple(extra)


# --- field types ------------------------------------------------------------
#
# A loaded class gets only field values of the types it declares: attrs and
# NamedTuple annotations, checked on the raw value before any converter sees
# it (``tuple("abc")`` would make a str look like a tuple of weights). Fields
# that fungrad's own classes declare as ``Any`` get a rule here instead.


# ints from this one up round to inf: a float cannot hold them
_INT_TOP = 2**1024 - 2**970


def _real(v: Any) -> bool:
    # a float, or an int a float can hold (a weight of 400 digits would only
    # fail at its first use)
    return v.__class__ is float or (v.__class__ is int and -_INT_TOP < v < _INT_TOP)


def _numbers(v: Any) -> bool:
    return all(_real(x) for x in tree.leaves(v))


def _squares(v: Any) -> bool:
    # a moving average of g ** 2 is never negative (its square root is taken)
    return all(_real(x) and not x < 0 for x in tree.leaves(v))


def _count(v: Any) -> bool:
    return v.__class__ is int and v >= 0


_RULES: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    "fungrad.optim.CountState": {"step": (_count, "an int >= 0")},
    "fungrad.optim.SGDState": {
        "step": (_count, "an int >= 0"),
        "velocity": (_numbers, "None or a pytree of numbers shaped like the params"),
    },
    "fungrad.optim.AdamState": {
        "step": (_count, "an int >= 0"),
        "mu": (_numbers, "a pytree of numbers shaped like the params"),
        "nu": (_squares, "a pytree of numbers >= 0 (averages of squares) shaped like the params"),
    },
}
_SAME_SHAPE: dict[str, tuple[str, str]] = {"fungrad.optim.AdamState": ("mu", "nu")}

_checks: dict[type, dict[tuple[str, bool], Callable[[Any], bool]]] = {}


def _field_checks(cls: type) -> dict[tuple[str, bool], Callable[[Any], bool]]:
    """One compiled check per (field, is static) of ``cls``, from its annotations; cached."""
    checks = _checks.get(cls)
    if checks is None:
        try:
            # evaluates the annotations of a class the program registered, in its own module
            hints = typing.get_type_hints(cls)
        except Exception:
            hints = {}  # annotations that cannot be resolved are not checked
        checks = {(f, st): _compile(h, st) for f, h in hints.items() for st in (False, True)}
        _checks[cls] = checks
    return checks


def _check_fields(cls: type, name: str, dyn: dict[str, Any], stat: dict[str, Any], at: str) -> None:
    checks = _field_checks(cls)
    rules = _RULES.get(name, {})
    for group, static in ((dyn, False), (stat, True)):
        for field, v in group.items():
            rule = rules.get(field)
            if rule is not None:
                if not rule[0](v):
                    raise _Bad(at, f"{name}.{field} must be {rule[1]}, got {_show(v)}")
                continue
            check = checks.get((field, static))
            if check is not None and not check(v):
                expected = _hint_text(typing.get_type_hints(cls)[field])
                raise _Bad(at, f"{name}.{field} must be {expected}, got {_show(v)}")
    pair = _SAME_SHAPE.get(name)
    if pair is not None and pair[0] in dyn and pair[1] in dyn:
        a, b = (tree.structure(dyn[f]) for f in pair)
        if a != b:
            raise _Bad(
                at, f"{name}.{pair[0]} and {name}.{pair[1]} must have one structure, got {_cut(a)} and {_cut(b)}"
            )


def _cut(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _show(v: Any) -> str:
    return f"{type(v).__name__} {_cut(v)}"


_SEQUENCES = (collections.abc.Sequence, collections.abc.MutableSequence)
_MAPPINGS = (collections.abc.Mapping, collections.abc.MutableMapping)


def _anything(v: Any) -> bool:
    return True


_Check = Callable[[Any], bool]
# How a hint is built from its parts: (the parts, make(results of the parts)).
_Split = tuple[Sequence[Any], Callable[[list[Any]], Any]]


def _fold(h: Any, split: Callable[[Any], _Split]) -> Any:
    """Build a result for the type hint ``h`` from the results of its parts, parts first.

    A loop over an explicit stack, not a recursion: ``split(h)`` gives the
    parts of ``h`` (its arguments, or none) and the function that makes its
    result from theirs.
    """
    results: list[Any] = []
    todo: list[tuple[Any, _Split | None]] = [(h, None)]
    while todo:
        h, made = todo.pop()
        if made is None:
            made = split(h)
            if made[0]:
                todo.append((h, made))
                todo.extend((p, None) for p in reversed(made[0]))
                continue
            results.append(made[1]([]))
            continue
        n = len(made[0])
        parts = results[-n:]
        del results[-n:]
        results.append(made[1](parts))
    return results[0]


def _leaf(result: Any) -> _Split:
    return (), lambda _: result


def _first(parts: list[Any]) -> Any:
    return parts[0]


def _compile(h: Any, static: bool) -> _Check:
    """A test of whether a loaded value is of the annotated type ``h`` (kinds of hint it does not know pass)."""
    return _fold(h, lambda x: _check_split(x, static))  # type: ignore[no-any-return]


def _check_split(h: Any, static: bool) -> _Split:
    if h is Any or h is object:
        return _leaf(_anything)
    if h is None or h is type(None):
        return _leaf(lambda v: v is None)
    origin, args = typing.get_origin(h), typing.get_args(h)
    if origin is Union or origin is types.UnionType:
        return args, lambda alts: lambda v: any(c(v) for c in alts)
    if origin is typing.Literal:
        return _leaf(lambda v: any(type(v) is type(a) and v == a for a in args))
    if origin is typing.Annotated:
        return (args[0],), _first
    if hasattr(h, "__supertype__"):  # typing.NewType
        return (h.__supertype__,), _first
    cls = origin if origin is not None else h
    if not isinstance(cls, type):
        return _leaf(_anything)  # TypeVar, ForwardRef, strings: nothing to check against
    # a number field holds a float or an int, never a bool (bool is an int to Python)
    if cls is float or getattr(cls, "__fungrad_leaf__", False):
        return _leaf(_real)
    if cls is int or cls is bool or cls is str:
        return _leaf(lambda v: v.__class__ is cls)
    if cls is tuple or cls is list or cls in _SEQUENCES:
        # static fields are stored as tuples (lists are not hashable)
        kinds = (list, tuple) if static and cls is list else cls
        if not args:
            return _leaf(lambda v: isinstance(v, kinds))
        if cls is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if args == ((),):
                return _leaf(lambda v: isinstance(v, kinds) and len(v) == 0)
            return args, lambda items: lambda v: (
                isinstance(v, kinds) and len(v) == len(items) and all(c(x) for c, x in zip(items, v))
            )
        return (args[0],), lambda item: lambda v: isinstance(v, kinds) and all(item[0](x) for x in v)
    if cls is dict or cls in _MAPPINGS:
        if len(args) != 2:
            return _leaf(lambda v: isinstance(v, dict))
        return (args[1],), lambda value: lambda v: isinstance(v, dict) and all(value[0](x) for x in v.values())

    def instance(v: Any) -> bool:
        try:
            return isinstance(v, cls)
        except TypeError:  # classes that refuse isinstance cannot be checked
            return True

    return _leaf(instance)


def _hint_text(h: Any) -> str:
    return _fold(h, _text_split)  # type: ignore[no-any-return]


def _text_split(h: Any) -> _Split:
    if h is type(None) or h is None:
        return _leaf("None")
    origin, args = typing.get_origin(h), typing.get_args(h)
    if origin is Union or origin is types.UnionType:
        return args, lambda parts: " or ".join(dict.fromkeys(parts))  # a node and a float both read "float"
    if origin is typing.Literal:
        return _leaf(" or ".join(repr(a) for a in args))
    if origin is not None and args:
        name = getattr(origin, "__name__", origin)
        inner = [a for a in args if a is not Ellipsis]

        def make(parts: list[str]) -> str:
            texts = iter(parts)
            return f"{name}[{', '.join('...' if a is Ellipsis else next(texts) for a in args)}]"

        return inner, make
    if getattr(h, "__fungrad_leaf__", False):
        return _leaf("float")
    if isinstance(h, type):
        return _leaf(h.__qualname__ if h.__module__ == "builtins" else tree.type_name(h))
    return _leaf(str(h))


# --- the file -----------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise _BadJSON(f"{name} is not a number this format writes; infinities and NaN are tagged objects")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _BadJSON(f"the key {k[:40]!r} appears twice in one object")
            seen.add(k)
    return d


def _json_depth(text: str) -> int:
    """How deeply the arrays and objects of ``text`` nest (strings skipped)."""
    if text.count("[") + text.count("{") <= _MAX_JSON_DEPTH:
        return 0  # cannot be deeper than it has brackets
    brackets = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    steps = [1 if c in "[{" else -1 for c in re.findall(r"[\[\]{}]", brackets)]
    return max(accumulate(steps), default=0)


def load_with_metadata(path: PathLike) -> tuple[Any, dict[str, Any]]:
    """Read a checkpoint written by :func:`save`: ``(params, metadata)``.

    Raises ``ValueError`` naming ``path`` and what was expected when the file
    is not JSON (or has a duplicate key, a number out of a float's range,
    ``NaN`` or ``Infinity``), is not a fungrad checkpoint of a known version,
    nests deeper than :data:`MAX_DEPTH`, or holds a malformed tree: a type
    not registered with :func:`fungrad.tree.register` (fungrad's own models
    and optimizer states need no import first), or a class field whose value
    is not of the type the class declares.

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
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what}: it is not JSON ({e})") from None
    if _json_depth(text) > _MAX_JSON_DEPTH:
        raise ValueError(
            f"{path}: malformed checkpoint: nested deeper than {MAX_DEPTH} containers, "
            "the most a checkpoint holds (fungrad.checkpoint.MAX_DEPTH)"
        )
    try:
        doc = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
        )
    except _BadJSON as e:
        raise ValueError(f"{path}: malformed checkpoint: {e}") from None
    except RecursionError:
        raise ValueError(f"{path}: the checkpoint is too deep to read from this deep in the call stack") from None
    except ValueError as e:  # json.JSONDecodeError, and ints too long to read
        raise ValueError(f"{what}: it is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f'{what}: expected a JSON object with "format": "{FORMAT}", got a {type(doc).__name__}')
    if doc.get("format") != FORMAT:
        got = repr(doc["format"]) if "format" in doc else "no format"
        raise ValueError(f'{what}: expected "format": "{FORMAT}", found {got}')
    version = doc.get("version")
    if type(version) is not int or version not in (1, VERSION):
        raise ValueError(f"{path}: unknown checkpoint version {version!r}; this fungrad reads versions 1 and {VERSION}")
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

    A fresh process can load fungrad's own models and optimizer states
    without importing :mod:`fungrad.nn` or :mod:`fungrad.optim` first.

    >>> import fungrad as fg, os, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "ckpt.json")
    >>> fg.checkpoint.save(path, {"w": [1e-300, float("-inf")]})
    >>> fg.checkpoint.load(path)
    {'w': [1e-300, -inf]}
    >>> tmp.cleanup()
    """
    return load_with_metadata(path)[0]
