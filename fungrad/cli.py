"""The ``fungrad`` command: ``demo``, ``train`` and ``bench``.

``fungrad demo --out DIR`` trains the micrograd tutorial's network,
micrograd's moons classifier and a short digits classifier, and writes
pictures and a checkpoint;
``fungrad train`` trains one model with chosen options; ``fungrad bench``
runs :mod:`fungrad.bench`. Mistakes in options, values or files print one
line, ``fungrad: error: ...``, and exit with code 2; a missing optional
dependency exits with 1; a Ctrl-C prints ``fungrad: interrupted`` and exits
with 130 (``fungrad train`` first saves the steps it completed); a closed
standard output (``fungrad train | head -1``) ends the command quietly with
141, the status of a program stopped by SIGPIPE.

>>> from fungrad.cli import main
>>> main(["train", "--steps", "-3"])
2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import fungrad as fg

__all__ = ["main", "build_parser", "UsageError"]

# Seeds chosen for the demo (see the README): the tutorial's network reaches
# a loss under 0.1 in 40 steps and the moons classifier 100% training
# accuracy in 100 steps with them. Any seed tried does both; these are fixed
# so that every run of the demo prints the same numbers.
TUTORIAL_SEED = 0
MOONS_DATA_SEED = 0
MOONS_MODEL_SEED = 1
# The demo's digits run: `fungrad train --dataset digits` with a fifth of its
# steps, which reaches about 93% held-out accuracy in a few seconds.
DIGITS_SEED = 0
DIGITS_STEPS = 300
CONFUSION_PLOT = "confusion_digits.png"

# `fungrad train`'s default learning rate for each --optimizer: each one takes
# both data sets to 100% training accuracy in 100 steps from seed 0.
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "adam": 0.01}
MOMENTUM = 0.9

# the files `fungrad train` writes into --out
MODEL, HISTORY, LOSS_PLOT = "model.json", "history.json", "loss.png"
MAX_STEPS = 100_000_000  # days of training at the fastest step

EXIT_USAGE, EXIT_MISSING_EXTRA, EXIT_INTERRUPTED = 2, 1, 130
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a program SIGPIPE stopped


class UsageError(Exception):
    """A bad value or file named on the command line: reported in one line, exit code 2."""


class _CtrlC:
    """Python's SIGINT handler, which also remembers that Ctrl-C was pressed.

    CPython prints and drops an exception raised inside a weakref callback
    or a ``__del__`` ("Exception ignored in ..."); a Ctrl-C that lands there
    (importlib runs such callbacks at every import) would be lost and a long
    training would go on. ``fungrad train`` checks ``pressed`` after every
    step, so such a Ctrl-C still stops it, one step late.
    """

    def __init__(self) -> None:
        self.pressed = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.pressed = True
        raise KeyboardInterrupt


_ctrl_c = _CtrlC()


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage before its error; one line is easier to read
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"fungrad: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------
# Argument types: each raises ArgumentTypeError, which argparse reports


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argument type for integers from ``low`` to ``high``: beyond them a run is meaningless or endless."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = None
        if n is None or not low <= n <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low:,} to {high:,}, got {text!r}")
        return n

    return parse


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (0.0 < x < math.inf):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return x


def _hidden(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if not sizes or any(not 1 <= n <= MAX_WIDTH for n in sizes):
        raise argparse.ArgumentTypeError(
            f"expected hidden layer sizes from 1 to {MAX_WIDTH:,} separated by commas, like 16,16; got {text!r}"
        )
    return sizes


MAX_WIDTH = 10_000  # neurons in a hidden layer; a scalar engine is hours per step long before that


# --------------------------------------------------------------------------
# Shared helpers


def _outdir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the output directory {path}: {e.strerror or e}") from None
    return out


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _check_outputs(out: Path, names: Sequence[str], force: bool) -> None:
    """Fail before any work if the files cannot be written, or would overwrite others without --force."""
    existing = [n for n in names if os.path.lexists(out / n)]
    for n in existing:
        if (out / n).is_dir():
            raise UsageError(f"cannot write {out / n}: it is a directory")
    if existing and not force:
        raise UsageError(
            f"{out} already holds {_and(existing)}; pass --force to overwrite, or choose another --out"
        )
    _check_writable(out, f"cannot write into the output directory {out}")


def _check_writable(directory: Path, failure: str) -> None:
    """Fail before any work if no file can be made in ``directory``: ``failure: why``."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise UsageError(f"{failure}: {e.strerror or e}") from None


def _write_all(out: Path, files: Sequence[tuple[str, str, Callable[[Path], Any]]]) -> list[Path]:
    """Write ``(what, name, write)`` files into ``out``: all of them, or none.

    Each file is written under a temporary name in its own directory first;
    only when every one is complete are they renamed into place, so a
    failure (or a Ctrl-C) never leaves a new model beside an old history, or
    half a file. Renames happen one at a time, so the old files are kept
    (as second links, which cost no copy) until all the new ones are in
    place: a rename that fails, or a Ctrl-C, puts the old ones back.
    """
    staged: list[tuple[Path, Path]] = []
    kept: dict[Path, Path | None] = {}  # per final file: its old content's second name, None for a new file
    done: list[Path] = []
    made: list[Path] = []  # the names to remove at the end, each listed before it exists
    # No try statement nested in this one: Python 3.11 reports the line of a
    # nested try outside the outer one's handler (see checkpoint._write_atomic).
    try:
        for what, name, write in files:
            final = Path(os.path.realpath(out / name))  # through a symlink, its target is the file
            # the suffix stays last: matplotlib picks the image format from it
            tmp = final.with_name(f".{final.stem}.{os.getpid()}.tmp{final.suffix}")
            staged.append((tmp, final))
            made.append(tmp)
            _write(what, tmp, write, shown=final)
        for _, final in staged:
            kept[final] = None
            if os.path.lexists(final):
                old = kept[final] = final.with_name(f".{final.stem}.{os.getpid()}.old{final.suffix}")
                made.append(old)
                _keep(final, old)
        for tmp, final in staged:
            done.append(final)  # first: putting back a file not yet replaced changes nothing
            _rename(tmp, final)
    except BaseException:
        _put_back(done, kept)
        raise
    finally:
        # (an interrupt that lands here leaves these files behind, under names
        # of this process: the next run of the same process id removes them)
        _remove(made)
    return [final for _, final in staged]


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _keep(final: Path, old: Path) -> None:
    # a second name for the old file (a leftover of a run killed here goes first)
    try:
        if os.path.lexists(old):
            os.unlink(old)
        os.link(final, old)
    except OSError:
        try:
            shutil.copy2(final, old)  # a file system without hard links
        except OSError as e:
            raise UsageError(f"cannot write {final}: {e.strerror or e}") from None


def _rename(tmp: Path, final: Path) -> None:
    try:
        os.replace(tmp, final)
    except OSError as e:
        raise UsageError(f"cannot write {final}: {e.strerror or e}; the files written before it were put back") from None


def _put_back(done: list[Path], kept: dict[Path, Path | None]) -> None:
    for final in reversed(done):
        before = kept.get(final)
        with contextlib.suppress(OSError):
            if before is None:
                os.unlink(final)
            else:
                os.replace(before, final)


def _write(what: str, path: Path, write: Callable[[Path], Any], shown: Path | None = None) -> Path:
    try:
        write(path)
    except OSError as e:
        raise UsageError(f"cannot write {what} to {shown or path}: {e.strerror or e}") from None
    return path


def _save_figure(fig: Any, path: Path) -> Path:
    return _write("a figure", path, lambda p: fig.savefig(p, dpi=100))


def _plot(note: Callable[[str], None], name: str, make: Callable[[], Any], path: Path) -> Path | None:
    """Draw and save a figure; without matplotlib, say how to get it and go on."""
    try:
        fig = make()
    except ImportError as e:
        note(f"skipped {name}: {e}")
        return None
    return _save_figure(fig, path)


def _mlp_text(model: Any) -> str:
    acts = model.activation if model.final_activation == model.activation else f"{model.activation}/{model.final_activation}"
    return f"MLP({model.nin}, {list(model.nouts)}) {acts}"


# What each data set trains: input size, outputs, activations, and the
# defaults that reach a good model (digits: at least 95% test accuracy)
class _Setup(NamedTuple):
    nin: int
    nout: int
    act: str
    final: str
    hidden: tuple[int, ...]
    steps: int
    optimizer: str
    lr: float | None
    batch_size: int | None


SETUPS = {
    "tiny": _Setup(3, 1, "tanh", "tanh", (16, 16), 100, "sgd", None, None),
    "moons": _Setup(2, 1, "relu", "linear", (16, 16), 100, "sgd", None, None),
    "spirals": _Setup(2, 3, "tanh", "linear", (32,), 1500, "adam", 0.02, 16),
    "digits": _Setup(64, 10, "tanh", "linear", (32,), 1500, "adam", 0.02, 8),
}
MULTICLASS = ("spirals", "digits")


def _data(dataset: str, seed: int) -> tuple[Any, Any]:
    """(training data, held-out test data or None)."""
    if dataset == "tiny":
        return fg.data.tiny(), None
    if dataset == "moons":
        return fg.data.make_moons(100, noise=0.1, seed=seed), None
    xs, ys = fg.data.digits() if dataset == "digits" else fg.data.spirals(100, classes=3, seed=seed)
    return fg.data.split(xs, ys, test_fraction=0.2, seed=seed)


def _cross_entropy_loss(model: Any, batch: Any) -> Any:
    xs, ys = batch
    return fg.nn.cross_entropy([model(x) for x in xs], ys)


def _tiny_loss(model: Any, batch: Any) -> Any:
    xs, ys = batch
    return fg.nn.sum_squares([model(x) for x in xs], ys)


def _moons_loss(model: Any, batch: Any) -> Any:
    # micrograd's demo: max-margin loss plus L2 regularization
    xs, ys = batch
    return fg.nn.hinge([model(x) for x in xs], ys) + fg.nn.l2(model, 1e-4)


def _accuracy(model: Any, batch: Any) -> float:
    xs, ys = batch
    return fg.nn.accuracy([model(x) for x in xs], ys)


def _accuracy_text(acc: float, n: int | None = None) -> str:
    """How the demo reports an accuracy: ``accuracy 93%``, or with ``n`` samples ``accuracy 93% (335/360)``."""
    return f"accuracy {acc:.0%}" + (f" ({round(acc * n)}/{n})" if n is not None else "")


# --------------------------------------------------------------------------
# fungrad demo


class _Trained(NamedTuple):
    model: Any
    history: Any
    final_loss: float
    seconds: float
    accuracy: float = math.nan  # measured once, on the samples the demo reports it for
    samples: int = 0  # how many those are
    first_loss: float = math.nan  # on the whole set, when the steps' losses are minibatches'

    @property
    def start_loss(self) -> float:
        return self.history.loss[0] if math.isnan(self.first_loss) else self.first_loss  # type: ignore[no-any-return]


def _list_files(out: Path, written: Sequence[Path | None], notes: Sequence[str]) -> None:
    print(f"  files in {out}{os.sep}: " + "  ".join(p.name for p in written if p is not None))
    for n in notes:
        print(f"  note: {n}")


def _neuron() -> Any:
    # the tutorial's neuron, with its names; b makes n = 0.8814 so that o = tanh(n) = 0.7071
    x1, x2 = fg.var(2.0, name="x1"), fg.var(0.0, name="x2")
    w1, w2 = fg.var(-3.0, name="w1"), fg.var(1.0, name="w2")
    b = fg.var(6.8813735870195432, name="b")
    x1w1 = (x1 * w1).named("x1*w1")
    x2w2 = (x2 * w2).named("x2*w2")
    x1w1x2w2 = (x1w1 + x2w2).named("x1*w1 + x2*w2")
    n = (x1w1x2w2 + b).named("n")
    return n.tanh().named("o")


def _write_neuron(out: Path, note: Callable[[str], None]) -> Path:
    o = _neuron()
    grads = fg.gradients(o)
    try:
        return _write("the neuron graph", out / "neuron.svg", lambda p: fg.viz.render(o, p, grads))
    except RuntimeError:  # no `dot` program (or it failed): the DOT text still holds the graph
        path = _write("the neuron graph", out / "neuron.dot", lambda p: p.write_text(fg.viz.to_dot(o, grads)))
        note(
            "neuron.svg needs Graphviz's dot program (apt-get install graphviz); wrote neuron.dot, "
            "which 'dot -Tsvg neuron.dot -o neuron.svg' turns into it"
        )
        return path


def _demo_fit(loss: Callable[..., Any], model: Any, data: Any, **options: Any) -> tuple[Any, Any, float]:
    """``fg.train.fit`` without a progress bar (the demo prints its own lines): model, history, seconds."""
    t0 = time.perf_counter()
    model, history = fg.train.fit(loss, model, data, progress=False, **options)
    return model, history, time.perf_counter() - t0


def _demo_tutorial(say: Callable[..., None]) -> _Trained:
    """The tutorial: MLP(3, [4, 4, 1]), tanh everywhere, sum of squared errors, 40 steps of sgd."""
    tiny = fg.data.tiny()
    model = fg.nn.MLP.init(3, [4, 4, 1], seed=TUTORIAL_SEED)
    say(f"1. the micrograd tutorial: {_mlp_text(model)} on 4 samples, sum of squared errors, sgd lr 0.05")

    def report(step: int, params: Any, loss: float) -> None:
        if step % 5 == 0:
            say(f"   step {step:3d}  loss {loss:.4f}")

    model, history, seconds = _demo_fit(_tiny_loss, model, tiny, optimizer=0.05, steps=40, callback=report)
    final = _tiny_loss(model, tiny)
    say(f"   after 40 steps: loss {final:.4f}")
    return _Trained(model, history, final, seconds)


def _demo_moons(say: Callable[..., None], moons: Any) -> _Trained:
    """micrograd's moons demo: relu hidden layers, linear output, max-margin loss + L2, sgd lr 1.0 -> 0.1."""
    model = fg.nn.MLP.init(2, [16, 16, 1], seed=MOONS_MODEL_SEED, activation="relu", final_activation="linear")
    say(f"2. micrograd's moons demo: {_mlp_text(model)} on 100 points, max-margin loss + L2, sgd lr 1.0 -> 0.1")
    accs: list[float] = []

    def metric(params: Any, batch: Any) -> float:
        accs.append(_accuracy(params, batch))  # kept for the report below: fit calls it first
        return accs[-1]

    def report(step: int, params: Any, loss: float) -> None:
        if step % 10 == 0:
            say(f"   step {step:3d}  loss {loss:.4f}  {_accuracy_text(accs[-1])}")

    model, history, seconds = _demo_fit(
        _moons_loss, model, moons, optimizer=fg.optim.SGD(fg.optim.linear(1.0, 0.1, 100)), steps=100,
        metric=metric, callback=report,
    )
    final, acc = _moons_loss(model, moons), _accuracy(model, moons)
    say(f"   after 100 steps: loss {final:.4f}  {_accuracy_text(acc)}")
    return _Trained(model, history, final, seconds, acc, len(moons[1]))


def _demo_digits(say: Callable[..., None]) -> tuple[_Trained, list[int], list[int]]:
    """`fungrad train --dataset digits`, shortened: (trained, held-out labels, their predicted classes)."""
    su = SETUPS["digits"]
    lr = su.lr or DEFAULT_LR[su.optimizer]
    data, (xs, ys) = _data("digits", DIGITS_SEED)
    model = fg.nn.MLP.init(su.nin, [*su.hidden, su.nout], seed=DIGITS_SEED, activation=su.act, final_activation=su.final)
    say(
        f"3. the 8x8 digits: {_mlp_text(model)} on {len(data[1])} images, softmax cross-entropy, "
        f"{su.optimizer} lr {lr:g} (cosine schedule), {DIGITS_STEPS} steps of {su.batch_size}"
    )

    def report(step: int, params: Any, loss: float) -> None:
        if step % 50 == 0:
            say(f"   step {step:3d}  loss {loss:.4f} (on a minibatch)")

    first = _cross_entropy_loss(model, data)  # on the whole set, as the final loss is
    model, history, seconds = _demo_fit(
        _cross_entropy_loss, model, data, optimizer=_optimizer(su.optimizer, fg.optim.cosine(lr, DIGITS_STEPS)),
        steps=DIGITS_STEPS, batch_size=su.batch_size, seed=DIGITS_SEED, callback=report,
    )
    final = _cross_entropy_loss(model, data)
    logits = [model(x) for x in xs]
    acc = fg.nn.accuracy(logits, ys)
    predicted = [row.index(max(row)) for row in logits]  # the first of tied maxima, as accuracy counts
    say(f"   after {DIGITS_STEPS} steps: loss {final:.4f}  held-out {_accuracy_text(acc, len(ys))}")
    return _Trained(model, history, final, seconds, acc, len(ys), first), list(ys), predicted


def _demo_files(
    out: Path, tutorial: _Trained, moons: _Trained, data: Any, digits: tuple[_Trained, list[int], list[int]], notes: list[str]
) -> list[Path | None]:
    """The pictures and the checkpoint."""
    acc = moons.accuracy
    trained, labels, predicted = digits

    def loss_figure() -> Any:
        try:
            from matplotlib.figure import Figure
        except ImportError as e:
            raise ImportError('loss.png needs matplotlib: pip install "fungrad[plot]"') from e
        fig = Figure(figsize=(11, 4), layout="tight")
        a, b = fig.subplots(1, 2)
        fg.viz.plot_history(tutorial.history, ax=a)
        a.set_title("tutorial MLP(3, [4, 4, 1]): sum of squared errors")
        fg.viz.plot_history(moons.history, ax=b)
        b.set_title("moons MLP(2, [16, 16, 1]): max-margin loss + L2")
        return fig

    def boundary_figure() -> Any:
        fig = fg.viz.plot_decision_boundary(moons.model, data[0], data[1])
        fig.axes[0].set_title(f"moons: decision boundary, training {_accuracy_text(acc)}")
        return fig

    def confusion_figure() -> Any:
        fig = fg.viz.plot_confusion(labels, predicted, classes=SETUPS["digits"].nout)
        fig.axes[0].set_title(f"digits: {len(labels)} held-out images, {_accuracy_text(trained.accuracy, len(labels))}")
        return fig

    meta = {
        "model": "micrograd's moons classifier",
        "dataset": "moons",
        "samples": 100,
        "noise": 0.1,
        "data_seed": MOONS_DATA_SEED,
        "seed": MOONS_MODEL_SEED,
        "steps": 100,
        "final_loss": moons.final_loss,
        "final_accuracy": acc,
    }
    return [
        _plot(notes.append, "loss.png", loss_figure, out / "loss.png"),
        _plot(notes.append, "decision_boundary.png", boundary_figure, out / "decision_boundary.png"),
        _plot(notes.append, CONFUSION_PLOT, confusion_figure, out / CONFUSION_PLOT),
        _write_neuron(out, notes.append),
        _write("the checkpoint", out / "moons_model.json", lambda p: fg.checkpoint.save(p, moons.model, metadata=meta)),
    ]


# what the demo writes (neuron.dot instead of neuron.svg without Graphviz); a
# second run writes them anew, as the quick start does
DEMO_FILES = ("loss.png", "decision_boundary.png", CONFUSION_PLOT, "neuron.svg", "neuron.dot", "moons_model.json")


def _demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = _outdir(args.out)
    _check_outputs(out, DEMO_FILES, force=True)  # before training, as train does
    say = (lambda *a: None) if args.quiet else print
    tutorial = _demo_tutorial(say)
    data = fg.data.make_moons(100, noise=0.1, seed=MOONS_DATA_SEED)
    moons = _demo_moons(say, data)
    digits = _demo_digits(say)
    notes: list[str] = []
    written = _demo_files(out, tutorial, moons, data, digits, notes)
    trained = [tutorial, moons, digits[0]]
    print(f"fungrad demo: done in {time.perf_counter() - start:.1f} s (training {sum(t.seconds for t in trained):.1f} s)")
    for name, t, extra in (
        ("tutorial", tutorial, ""),
        ("moons", moons, f"   {_accuracy_text(moons.accuracy, moons.samples)}"),
        ("digits", digits[0], f"   held-out {_accuracy_text(digits[0].accuracy, digits[0].samples)}"),
    ):
        print(
            f"  {name:<9} {_mlp_text(t.model):<31} {len(t.history):>3} steps   "
            f"loss {t.start_loss:.4f} -> {t.final_loss:.4f}{extra}"
        )
    _list_files(out, written, notes)
    return 0


# --------------------------------------------------------------------------
# fungrad train


def _load_model(
    path: str, nin: int, hidden: tuple[int, ...] | None, act: str, final: str, nout: int = 1
) -> tuple[Any, dict[str, Any]]:
    mlp = fg.nn.MLP  # importing fungrad.nn registers its classes, which loading looks up by name
    try:
        model, meta = fg.checkpoint.load_with_metadata(path)
    except OSError as e:
        raise UsageError(f"cannot read --resume {path}: {e.strerror or e}") from None
    except (ValueError, TypeError) as e:
        raise UsageError(f"--resume: {e}") from None
    if not isinstance(model, mlp):
        raise UsageError(f"--resume: {path} holds a {type(model).__name__}, not a fungrad.nn.MLP")
    fits = (
        model.nin == nin
        and model.nouts[-1] == nout
        and (hidden is None or model.nouts[:-1] == hidden)
        and (model.activation, model.final_activation) == (act, final)
    )
    if not fits:
        sizes = f"{[*hidden, nout]}" if hidden is not None else f"[..., {nout}]"
        raise UsageError(f"--resume: {path} holds an {_mlp_text(model)}, but this run needs an MLP({nin}, {sizes}) {act}/{final}")
    return model, meta


def _start_model(args: argparse.Namespace) -> tuple[Any, int]:
    """The model to train (new, or from --resume) and the steps it already has; sets ``args.seed``."""
    su = SETUPS[args.dataset]
    if args.resume:
        model, meta = _load_model(args.resume, su.nin, args.hidden, su.act, su.final, su.nout)
        args.seed = _resume_seed(args, meta)
        return model, _steps_done(args.resume, meta)
    if args.seed is None:
        args.seed = 0
    hidden = args.hidden if args.hidden is not None else su.hidden
    return fg.nn.MLP.init(su.nin, [*hidden, su.nout], seed=args.seed, activation=su.act, final_activation=su.final), 0


def _resume_seed(args: argparse.Namespace, meta: dict[str, Any]) -> int:
    """The data seed of a resumed run: the checkpoint's, so that a held-out split stays held out."""
    seed = meta.get("data_seed", meta.get("seed")) if meta.get("dataset") == args.dataset else None
    if seed.__class__ is not int or seed < 0:  # type: ignore[operator]
        seed = None  # a checkpoint of another data set, or of no seed: nothing to keep
    if args.seed is None:
        return seed if seed is not None else 0
    if seed is not None and args.seed != seed and args.dataset in MULTICLASS:
        raise UsageError(
            f"--resume: {args.resume} was trained on {args.dataset} with --seed {seed}, whose held-out split "
            f"this run must keep (--seed {args.seed} would test on images it trained on); leave out --seed "
            f"or give --seed {seed}"
        )
    return args.seed


def _steps_done(path: str, meta: dict[str, Any]) -> int:
    """The steps a --resume checkpoint's model has had: its "steps" metadata, 0 when it has none."""
    done = meta.get("steps", 0)
    if done.__class__ is not int or done < 0:
        text = json.dumps(done)
        raise UsageError(
            f'--resume: {path} has "steps": {text if len(text) <= 40 else text[:37] + "..."} in its metadata; '
            "expected the number of steps the model has been trained, an integer >= 0"
        )
    return done


def _optimizer(name: str, lr: Any) -> Any:
    if name == "sgd":
        return fg.optim.SGD(lr)
    if name == "momentum":
        return fg.optim.SGD(lr, momentum=MOMENTUM)
    return fg.optim.Adam(lr)


def _fit(args: argparse.Namespace, model: Any, data: Any, loss_fn: Any, lr: float) -> tuple[Any, Any, bool]:
    """Train as the options say: ``(params, history, interrupted)``, with the completed steps after a Ctrl-C."""
    try:
        params, history = fg.train.fit(
            loss_fn,
            model,
            data,
            optimizer=_optimizer(args.optimizer, fg.optim.cosine(lr, args.steps) if args.dataset in MULTICLASS else lr),
            steps=args.steps,
            metric=_accuracy,
            progress=False if args.no_progress else None,
            seed=args.seed,
            batch_size=args.batch_size,
            callback=_stop_if_pressed,
        )
    except fg.train.Interrupted as stop:
        return stop.params, stop.history, True
    return params, history, False


def _stop_if_pressed(step: int, params: Any, loss: float) -> None:
    if _ctrl_c.pressed:  # a Ctrl-C whose KeyboardInterrupt was dropped (see _CtrlC)
        raise KeyboardInterrupt


def _save_run(out: Path, params: Any, history: Any, meta: dict[str, Any]) -> tuple[list[Path], list[str]]:
    """model.json, history.json and loss.png (when matplotlib is there), all written or none."""
    notes: list[str] = []
    files: list[tuple[str, str, Callable[[Path], Any]]] = [
        ("the checkpoint", MODEL, lambda p: fg.checkpoint.save(p, params, metadata=meta)),
        # the lists at the top level, so fg.viz.plot_history(json.load(f)) draws it
        ("the history", HISTORY, lambda p: p.write_text(json.dumps({**meta, **history.to_dict()}, indent=1) + "\n")),
    ]
    try:
        fig = fg.viz.plot_history(history)
    except ImportError as e:
        notes.append(f"skipped {LOSS_PLOT}: {e}")
    else:
        files.append(("the loss plot", LOSS_PLOT, lambda p: fig.savefig(p, dpi=100)))
    return _write_all(out, files), notes


def _with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    # options left out take the data set's defaults
    su = SETUPS[args.dataset]
    args.optimizer = args.optimizer or su.optimizer
    args.steps = args.steps or su.steps
    if args.batch_size is None:
        args.batch_size = su.batch_size
    if args.lr is None:
        args.lr = su.lr if su.lr is not None and args.optimizer == su.optimizer else DEFAULT_LR[args.optimizer]
    return args


def _train(args: argparse.Namespace) -> int:
    args = _with_defaults(args)
    model, done = _start_model(args)
    lr = args.lr
    out = _outdir(args.out)
    _check_outputs(out, (MODEL, HISTORY, LOSS_PLOT), args.force)
    data, test = _data(args.dataset, args.seed)
    loss_fn = {"tiny": _tiny_loss, "moons": _moons_loss}.get(args.dataset, _cross_entropy_loss)
    print(
        f"fungrad train: {_mlp_text(model)} on {args.dataset} ({len(data[1])} samples"
        + (f", {len(test[1])} held out" if test else "")
        + f"), {args.optimizer} lr {lr:g}"
        + (" (cosine schedule)" if args.dataset in MULTICLASS else "")
        + f", {args.steps} steps" + (f" of {min(args.batch_size, len(data[1]))}" if args.batch_size else "")
        + (f" from {args.resume} (step {done})" if args.resume else ""),
        flush=True,  # a long run: whoever reads a pipe sees what started
    )
    # the loss before and after on the whole set: a minibatch's loss would not compare
    first_loss = loss_fn(model, data) if args.batch_size else None
    start = time.perf_counter()
    params, history, interrupted = _fit(args, model, data, loss_fn, lr)
    if interrupted and not len(history):
        print("fungrad: interrupted before the first step completed; nothing saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - start
    final_loss, acc = loss_fn(params, data), _accuracy(params, data)
    test_acc = _accuracy(params, test) if test else None
    meta = {
        "dataset": args.dataset,
        "seed": args.seed,
        "optimizer": args.optimizer,
        "lr": lr,
        "steps": done + len(history),
        "final_loss": final_loss,
        "final_accuracy": acc,
        "interrupted": interrupted,
    }
    if args.resume:
        meta["resumed_at_step"] = done  # the history holds the steps from here on
    if test_acc is not None:
        meta["test_accuracy"] = test_acc
    written, notes = _save_run(out, params, history, meta)
    print(
        f"  {len(history)} steps in {seconds:.1f} s   "
        f"loss {history.loss[0] if first_loss is None else first_loss:.4f} -> {final_loss:.4f}   "
        + (f"train accuracy {acc:.1%}   test accuracy {test_acc:.1%}" if test_acc is not None else f"accuracy {acc:.0%}")
    )
    _list_files(out, written, notes)
    bad = next((k for k, v in enumerate(history.loss) if not math.isfinite(v)), None)
    diverged = bad is not None or not math.isfinite(final_loss)
    if diverged:
        at = f"at step {done + bad}" if bad is not None else "after the last step"
        print(
            f"fungrad: the loss became {history.loss[bad] if bad is not None else final_loss} {at}: "
            f"training diverged (is the learning rate too large?); the files in {out} hold the diverged model",
            file=sys.stderr,
        )
    if interrupted:
        print(
            f"fungrad: interrupted after {len(history)} of {args.steps} steps; "
            f"saved the model and history of step {done + len(history)} in {out}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 1 if diverged else 0


# --------------------------------------------------------------------------
# fungrad bench


def _check_plot_path(path: str) -> None:
    try:
        import matplotlib  # noqa: F401  (fail now, not after minutes of measuring)
    except ImportError:
        raise ImportError('--plot needs matplotlib: pip install "fungrad[plot]"') from None
    where = Path(path).parent
    if Path(path).is_dir():
        raise UsageError(f"--plot {path}: it is a directory")
    _check_writable(where, f"--plot {path}: cannot write into {where}")


def _bench(args: argparse.Namespace) -> int:
    from . import bench

    if args.plot and not (args.scaling or args.only_scaling):
        raise UsageError("--plot needs --scaling (or --only-scaling)")
    if args.plot:
        _check_plot_path(args.plot)
    if args.only_scaling and args.only_digits:
        raise UsageError("--only-scaling and --only-digits: choose one")
    if args.only_digits and args.no_digits:
        raise UsageError("--only-digits and --no-digits: choose one")
    if args.only_digits and args.scaling:
        raise UsageError("--only-digits and --scaling: choose one")
    only = args.only_scaling or args.only_digits
    digits = None if args.only_scaling or args.no_digits else args.digits or (200 if args.quick else 1437)
    # fail now, with the install hint, not after minutes of measuring
    if not only:
        bench.require_micrograd()
    if digits is not None:
        bench.require_numpy()
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)
    report = bench.run(
        points=None if only else args.points,
        repeats=repeats,
        seed=args.seed,
        chain=None if only or args.no_chain else args.chain or (10_000 if args.quick else 100_000),
        chain_repeats=repeats if args.quick else None,
        scaling_sizes=None
        if not (args.scaling or args.only_scaling)
        else (10**3, 10**4, 10**5) if args.quick else (10**4, 10**5, 10**6),
        digits=digits,
    )
    print(json.dumps(report, indent=2, default=str) if args.json else bench.format_report(report))
    if args.plot:
        _write("the scaling plot", Path(args.plot), lambda p: bench.plot_scaling(report["scaling"], p))
        if not args.json:
            print(f"\nscaling plot written to {args.plot}")
    failed = bench.failed_checks(report)
    if failed:
        # a timing may miss its target on a busy machine; a wrong result is an error
        print(f"fungrad bench: checks failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------
# The parser and main


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="train the tutorial's MLP, micrograd's moons classifier and a digits classifier; write pictures and a checkpoint",
        description=(
            "Train the micrograd tutorial's MLP(3, [4, 4, 1]) on its 4 samples (40 steps of sgd), then "
            "micrograd's moons classifier MLP(2, [16, 16, 1]) on 100 points (100 steps, max-margin loss + L2) "
            f"to 100% training accuracy, then the digits model of 'fungrad train --dataset digits' for "
            f"{DIGITS_STEPS} steps. Writes loss.png, decision_boundary.png, {CONFUSION_PLOT} (the digits held out: "
            "true class against predicted), neuron.svg (the tutorial's neuron with data and gradients; neuron.dot "
            "when Graphviz's dot is missing) and moons_model.json (a checkpoint) into --out."
        ),
    )
    p.add_argument("--out", metavar="DIR", default="fungrad-demo", help="directory for the files (default: %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the summary, not the loss as it goes down")
    p.set_defaults(handler=_demo)


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train an MLP on the tutorial's data or on moons; save a checkpoint, a loss plot and the history",
        description=(
            "Train an MLP and write model.json (a checkpoint), history.json (loss and accuracy per step) and "
            "loss.png into --out; files already there are kept unless --force is given. tiny: the tutorial's "
            "4 samples, tanh layers, sum of squared errors. moons: 100 points, relu hidden layers and a linear "
            "output, max-margin loss + L2 (1e-4). spirals (3 classes, 300 points) and digits (the 1,797 8x8 "
            "digits shipped with fungrad, 10 classes): a tanh hidden layer, softmax cross-entropy, Adam with "
            "a cosine schedule, a fifth of the data held out and its accuracy reported. "
            "Ctrl-C stops training and saves the steps completed."
        ),
    )
    add = p.add_argument
    add("--dataset", choices=tuple(SETUPS), default="moons", help="data set to train on (default: %(default)s)")
    add("--hidden", type=_hidden, metavar="SIZES", default=None,
        help="hidden layer sizes, comma separated (default: 16,16, or the checkpoint's with --resume)")
    add("--steps", type=_int_in(1, MAX_STEPS), default=None, metavar="N",
        help="optimizer steps (default: 100 for tiny and moons, 1500 for spirals and digits)")
    add("--lr", type=_positive_float, default=None, metavar="LR",
        help="learning rate (default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
        + "".join(f"; {d} with {su.optimizer} {su.lr:g}" for d, su in SETUPS.items() if su.lr is not None) + ")")
    add("--optimizer", choices=("sgd", "momentum", "adam"), default=None,
        help=f"sgd, sgd with momentum {MOMENTUM}, or adam (default: sgd; adam for spirals and digits)")
    add("--seed", type=_int_in(0, 2**63 - 1), default=None, metavar="S",
        help="seed of the initial weights, the data (its sample or its held-out split) and the minibatch "
        "order (default: 0, or the checkpoint's with --resume)")
    add("--batch-size", type=_positive_int, default=None, metavar="N",
        help="minibatch size (default: the whole data set; 16 for spirals, 8 for digits)")
    add("--out", metavar="DIR", default="fungrad-train", help="directory for the files (default: %(default)s)")
    add("--force", action="store_true", help=f"overwrite {MODEL}, {HISTORY} and {LOSS_PLOT} if --out already holds them")
    add("--resume", metavar="CHECKPOINT", default=None,
        help="start from the model in this checkpoint (a model.json of fungrad train, or the demo's "
        "moons_model.json); the optimizer's state starts afresh")
    add("--no-progress", action="store_true", help="no progress bar (it shows only in a terminal anyway)")
    p.set_defaults(handler=_train)


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark fungrad's training step",
        description="Time fungrad's training step (eager, jit, and a tape interpreter) against micrograd's.",
    )
    add = p.add_argument
    add("--repeats", type=_int_in(1, 1000), default=None, metavar="N", help="timed runs per library (default 7, quick: 3)")
    add("--quick", action="store_true", help="smaller cases and fewer repeats, for a smoke test")
    add("--json", action="store_true", help="print the results as JSON instead of a table")
    add("--points", type=_int_in(2, 10_000), default=100, metavar="N", help="moons points in the training step (default 100)")
    add("--chain", type=_int_in(3, 3_000_000), default=None, metavar="N",
        help="ops in the deep chain (default 100,000, quick: 10,000)")
    add("--no-chain", action="store_true", help="skip the deep-chain case")
    add("--digits", type=_int_in(1, 1437), default=None, metavar="N",
        help="examples in the digits full-batch case (default 1,437, the training split; quick: 200)")
    add("--no-digits", action="store_true", help="skip the digits case")
    add("--only-digits", action="store_true", help="run only the digits case (micrograd not needed)")
    add("--scaling", action="store_true", help="also measure cost per node from 10^4 to 10^6 nodes")
    add("--plot", metavar="PATH", help="with --scaling: draw the cost per node into PATH (needs matplotlib)")
    add("--only-scaling", action="store_true", help="run only the scaling measurement")
    add("--seed", type=_int_in(0, 2**63 - 1), default=0, metavar="S", help="seed of the model and the data (default 0)")
    p.set_defaults(handler=_bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``fungrad`` argument parser, with its three subcommands.

    Options of ``train`` left out are ``None``, which stands for the data
    set's own default (``SETUPS``).

    >>> from fungrad.cli import build_parser
    >>> args = build_parser().parse_args(["train", "--dataset", "tiny", "--hidden", "4,4"])
    >>> args.dataset, args.hidden, args.steps
    ('tiny', (4, 4), None)
    """
    parser = _Parser(
        prog="fungrad",
        description="fungrad: a scalar autodiff engine, micrograd done the functional way.",
        epilog="Run 'fungrad COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"fungrad {fg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo(sub)
    _add_train(sub)
    _add_bench(sub)
    return parser


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, and usage errors (already reported in one line)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        return int(args.handler(args) or 0)
    except UsageError as e:
        print(f"fungrad: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as e:  # an optional dependency that is missing: its message names the extra
        print(f"fungrad: error: {e}", file=sys.stderr)
        return EXIT_MISSING_EXTRA


def _stop_writing() -> None:
    # The recipe of Python's signal docs ("Note on SIGPIPE"): point stdout at
    # /dev/null, so that the flush at exit does not fail once more and print.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # a stdout without a file descriptor has nothing to flush there
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fungrad`` command with ``argv`` (default: ``sys.argv[1:]``); return its exit code.

    >>> from fungrad.cli import main
    >>> main(["train", "--hidden", "0"])
    2
    """
    _ctrl_c.pressed = False
    # only where Python's own handler is in place: a SIGINT that the parent
    # process ignores (nohup, a background job) stays ignored
    ours = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    try:
        if ours:
            signal.signal(signal.SIGINT, _ctrl_c)
        code = _run(argv)
        sys.stdout.flush()  # a reader that went away shows up here, not as a message at exit
        return code
    except BrokenPipeError:
        _stop_writing()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("fungrad: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)
