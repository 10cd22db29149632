"""The ``fungrad`` command: ``demo``, ``train`` and ``bench``.

``fungrad demo --out DIR`` trains the micrograd tutorial's network and
micrograd's moons classifier and writes pictures and a checkpoint;
``fungrad train`` trains one model with chosen options; ``fungrad bench``
runs :mod:`fungrad.bench`. Mistakes in options, values or files print one
line, ``fungrad: error: ...``, and exit with code 2.

>>> from fungrad.cli import main
>>> main(["train", "--steps", "-3"])
2
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import fungrad as fg

__all__ = ["main", "build_parser", "UsageError"]

# Seeds chosen for the demo (see the README): the tutorial's network reaches
# a loss under 0.1 in 40 steps and the moons classifier 100% training
# accuracy in 100 steps with them. Any seed tried does both; these are fixed
# so that every run of the demo prints the same numbers.
TUTORIAL_SEED = 0
MOONS_DATA_SEED = 0
MOONS_MODEL_SEED = 1

# `fungrad train`'s default learning rate for each --optimizer: each one takes
# both data sets to 100% training accuracy in 100 steps from seed 0.
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "adam": 0.01}
MOMENTUM = 0.9


class UsageError(Exception):
    """A bad value or file named on the command line: reported in one line, exit code 2."""


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
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(
            f"expected hidden layer sizes as positive integers separated by commas, like 16,16; got {text!r}"
        )
    return sizes


# --------------------------------------------------------------------------
# Shared helpers


def _outdir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the output directory {path}: {e.strerror or e}") from None
    return out


def _write(what: str, path: Path, write: Callable[[Path], Any]) -> Path:
    try:
        write(path)
    except OSError as e:
        raise UsageError(f"cannot write {what} to {path}: {e.strerror or e}") from None
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


def _data(dataset: str, seed: int) -> tuple[list[list[float]], list[float]]:
    if dataset == "tiny":
        return fg.data.tiny()
    return fg.data.make_moons(100, noise=0.1, seed=seed)


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


# --------------------------------------------------------------------------
# fungrad demo


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


def _demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = _outdir(args.out)
    say = (lambda *a: None) if args.quiet else print
    notes: list[str] = []

    # 1. The tutorial: MLP(3, [4, 4, 1]), tanh everywhere, sum of squared errors, 40 steps of sgd.
    tiny = fg.data.tiny()
    model = fg.nn.MLP.init(3, [4, 4, 1], seed=TUTORIAL_SEED)
    say(f"1. the micrograd tutorial: {_mlp_text(model)} on 4 samples, sum of squared errors, sgd lr 0.05")

    def report_tiny(step: int, params: Any, loss: float) -> None:
        if step % 5 == 0:
            say(f"   step {step:3d}  loss {loss:.4f}")

    t0 = time.perf_counter()
    tutorial, tiny_hist = fg.train.fit(
        _tiny_loss, model, tiny, optimizer=0.05, steps=40, callback=report_tiny, progress=False
    )
    tiny_time = time.perf_counter() - t0
    tiny_final = _tiny_loss(tutorial, tiny)
    say(f"   after 40 steps: loss {tiny_final:.4f}")

    # 2. micrograd's moons demo: relu hidden layers, linear output, max-margin
    # loss + L2, sgd with the learning rate going from 1.0 down to 0.1.
    moons = fg.data.make_moons(100, noise=0.1, seed=MOONS_DATA_SEED)
    model = fg.nn.MLP.init(2, [16, 16, 1], seed=MOONS_MODEL_SEED, activation="relu", final_activation="linear")
    say(f"2. micrograd's moons demo: {_mlp_text(model)} on 100 points, max-margin loss + L2, sgd lr 1.0 -> 0.1")
    accs: list[float] = []

    def metric(params: Any, batch: Any) -> float:
        accs.append(_accuracy(params, batch))
        return accs[-1]

    def report_moons(step: int, params: Any, loss: float) -> None:
        if step % 10 == 0:
            say(f"   step {step:3d}  loss {loss:.4f}  accuracy {accs[-1]:.0%}")

    t0 = time.perf_counter()
    classifier, moons_hist = fg.train.fit(
        _moons_loss,
        model,
        moons,
        optimizer=fg.optim.SGD(fg.optim.linear(1.0, 0.1, 100)),
        steps=100,
        metric=metric,
        callback=report_moons,
        progress=False,
    )
    moons_time = time.perf_counter() - t0
    moons_final = _moons_loss(classifier, moons)
    moons_acc = _accuracy(classifier, moons)
    right = round(moons_acc * len(moons[1]))
    say(f"   after 100 steps: loss {moons_final:.4f}  accuracy {moons_acc:.0%}")

    # 3. The files.
    written: list[Path | None] = []

    def loss_figure() -> Any:
        try:
            from matplotlib.figure import Figure
        except ImportError as e:
            raise ImportError('loss.png needs matplotlib: pip install "fungrad[plot]"') from e
        fig = Figure(figsize=(11, 4), layout="tight")
        a, b = fig.subplots(1, 2)
        fg.viz.plot_history(tiny_hist, ax=a)
        a.set_title("tutorial MLP(3, [4, 4, 1]): sum of squared errors")
        fg.viz.plot_history(moons_hist, ax=b)
        b.set_title("moons MLP(2, [16, 16, 1]): max-margin loss + L2")
        return fig

    def boundary_figure() -> Any:
        fig = fg.viz.plot_decision_boundary(classifier, moons[0], moons[1])
        fig.axes[0].set_title(f"moons: decision boundary, training accuracy {moons_acc:.0%}")
        return fig

    written.append(_plot(notes.append, "loss.png", loss_figure, out / "loss.png"))
    written.append(_plot(notes.append, "decision_boundary.png", boundary_figure, out / "decision_boundary.png"))
    written.append(_write_neuron(out, notes.append))
    meta = {
        "model": "micrograd's moons classifier",
        "dataset": "moons",
        "samples": 100,
        "noise": 0.1,
        "data_seed": MOONS_DATA_SEED,
        "seed": MOONS_MODEL_SEED,
        "steps": 100,
        "final_loss": moons_final,
        "final_accuracy": moons_acc,
    }
    written.append(
        _write("the checkpoint", out / "moons_model.json", lambda p: fg.checkpoint.save(p, classifier, metadata=meta))
    )
    wall = time.perf_counter() - start

    print(f"fungrad demo: done in {wall:.1f} s (training {tiny_time + moons_time:.1f} s)")
    print(f"  tutorial  {_mlp_text(tutorial):<31}  40 steps   loss {tiny_hist.loss[0]:.4f} -> {tiny_final:.4f}")
    print(
        f"  moons     {_mlp_text(classifier):<31} 100 steps   loss {moons_hist.loss[0]:.4f} -> {moons_final:.4f}"
        f"   accuracy {moons_acc:.0%} ({right}/{len(moons[1])})"
    )
    _list_files(out, written, notes)
    return 0


# --------------------------------------------------------------------------
# fungrad train


def _load_model(path: str, nin: int, hidden: tuple[int, ...] | None, act: str, final: str) -> tuple[Any, dict[str, Any]]:
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
        and model.nouts[-1] == 1
        and (hidden is None or model.nouts[:-1] == hidden)
        and (model.activation, model.final_activation) == (act, final)
    )
    if not fits:
        sizes = f"{[*hidden, 1]}" if hidden is not None else "[..., 1]"
        raise UsageError(f"--resume: {path} holds an {_mlp_text(model)}, but this run needs an MLP({nin}, {sizes}) {act}/{final}")
    return model, meta


def _train(args: argparse.Namespace) -> int:
    nin = 3 if args.dataset == "tiny" else 2
    act, final = ("tanh", "tanh") if args.dataset == "tiny" else ("relu", "linear")
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    done = 0
    if args.resume:
        model, meta = _load_model(args.resume, nin, args.hidden, act, final)
        steps_before = meta.get("steps", 0)
        done = steps_before if isinstance(steps_before, int) else 0
    else:
        hidden = args.hidden if args.hidden is not None else (16, 16)
        model = fg.nn.MLP.init(nin, [*hidden, 1], seed=args.seed, activation=act, final_activation=final)
    out = _outdir(args.out)
    if args.optimizer == "sgd":
        opt: Any = fg.optim.SGD(lr)
    elif args.optimizer == "momentum":
        opt = fg.optim.SGD(lr, momentum=MOMENTUM)
    else:
        opt = fg.optim.Adam(lr)
    data = _data(args.dataset, args.seed)
    loss_fn = _tiny_loss if args.dataset == "tiny" else _moons_loss
    print(
        f"fungrad train: {_mlp_text(model)} on {args.dataset} ({len(data[1])} samples), "
        f"{args.optimizer} lr {lr:g}, {args.steps} steps"
        + (f" from {args.resume} (step {done})" if args.resume else "")
    )
    start = time.perf_counter()
    params, history = fg.train.fit(
        loss_fn,
        model,
        data,
        optimizer=opt,
        steps=args.steps,
        metric=_accuracy,
        progress=False if args.no_progress else None,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    seconds = time.perf_counter() - start
    final_loss = loss_fn(params, data)
    acc = _accuracy(params, data)
    meta = {
        "dataset": args.dataset,
        "seed": args.seed,
        "optimizer": args.optimizer,
        "lr": lr,
        "steps": done + len(history),
        "final_loss": final_loss,
        "final_accuracy": acc,
    }
    notes: list[str] = []
    written = [
        _write("the checkpoint", out / "model.json", lambda p: fg.checkpoint.save(p, params, metadata=meta)),
        _write(
            "the history",
            out / "history.json",
            # the lists at the top level, so fg.viz.plot_history(json.load(f)) draws it
            lambda p: p.write_text(json.dumps({**meta, **history.to_dict()}, indent=1) + "\n"),
        ),
        _plot(notes.append, "loss.png", lambda: fg.viz.plot_history(history), out / "loss.png"),
    ]
    print(
        f"  {len(history)} steps in {seconds:.1f} s   loss {history.loss[0]:.4f} -> {final_loss:.4f}"
        f"   accuracy {acc:.0%}"
    )
    _list_files(out, written, notes)
    return 0


# --------------------------------------------------------------------------
# fungrad bench


def _add_bench(sub: Any) -> None:
    description = "Time fungrad's training step (eager and compiled) against micrograd's."
    try:
        bench = importlib.import_module("fungrad.bench")
    except ModuleNotFoundError as e:
        if e.name != "fungrad.bench":
            raise
        p = sub.add_parser("bench", help="benchmark fungrad (not in this build)", description=description)
        p.set_defaults(handler=lambda args: _no_bench())
        return
    p = sub.add_parser("bench", help="benchmark fungrad's training step", description=description)
    bench.add_arguments(p)
    p.set_defaults(handler=bench.run_cli)


def _no_bench() -> int:
    raise UsageError("this build of fungrad has no benchmark (fungrad/bench.py is missing)")


# --------------------------------------------------------------------------
# The parser and main


def build_parser() -> argparse.ArgumentParser:
    """The ``fungrad`` argument parser, with its three subcommands."""
    parser = _Parser(
        prog="fungrad",
        description="fungrad: a scalar autodiff engine, micrograd done the functional way.",
        epilog="Run 'fungrad COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"fungrad {fg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "demo",
        help="train the tutorial's MLP and micrograd's moons classifier; write pictures and a checkpoint",
        description=(
            "Train the micrograd tutorial's MLP(3, [4, 4, 1]) on its 4 samples (40 steps of sgd), then "
            "micrograd's moons classifier MLP(2, [16, 16, 1]) on 100 points (100 steps, max-margin loss + L2) "
            "to 100%% training accuracy. Writes loss.png, decision_boundary.png, neuron.svg (the tutorial's "
            "neuron with data and gradients; neuron.dot when Graphviz's dot is missing) and moons_model.json "
            "(a checkpoint) into --out."
        ),
    )
    p.add_argument("--out", metavar="DIR", default="fungrad-demo", help="directory for the files (default: %(default)s)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the summary, not the loss as it goes down")
    p.set_defaults(handler=_demo)

    p = sub.add_parser(
        "train",
        help="train an MLP on the tutorial's data or on moons; save a checkpoint, a loss plot and the history",
        description=(
            "Train an MLP and write model.json (a checkpoint), history.json (loss and accuracy per step) and "
            "loss.png into --out. tiny: the tutorial's 4 samples, tanh layers, sum of squared errors. moons: "
            "100 points, relu hidden layers and a linear output, max-margin loss + L2 (1e-4)."
        ),
    )
    p.add_argument("--dataset", choices=("tiny", "moons"), default="moons", help="data set to train on (default: %(default)s)")
    p.add_argument(
        "--hidden",
        type=_hidden,
        metavar="SIZES",
        default=None,
        help="hidden layer sizes, comma separated (default: 16,16, or the checkpoint's with --resume)",
    )
    p.add_argument("--steps", type=_positive_int, default=100, metavar="N", help="optimizer steps (default: %(default)s)")
    p.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        metavar="LR",
        help="learning rate (default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")",
    )
    p.add_argument(
        "--optimizer",
        choices=("sgd", "momentum", "adam"),
        default="sgd",
        help=f"sgd, sgd with momentum {MOMENTUM}, or adam (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the initial weights, the moons sample and the minibatch order (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=None, metavar="N", help="minibatch size (default: the whole data set)")
    p.add_argument("--out", metavar="DIR", default="fungrad-train", help="directory for the files (default: %(default)s)")
    p.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        default=None,
        help="start from the model in this checkpoint (a model.json of fungrad train, or the demo's moons_model.json); "
        "the optimizer's state starts afresh",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only in a terminal anyway)")
    p.set_defaults(handler=_train)

    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fungrad`` command with ``argv`` (default: ``sys.argv[1:]``); return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, and usage errors (already reported in one line)
        return e.code if isinstance(e.code, int) else 2
    try:
        return int(args.handler(args) or 0)
    except UsageError as e:
        print(f"fungrad: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # an optional dependency that is missing: its message names the extra
        print(f"fungrad: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fungrad: interrupted", file=sys.stderr)
        return 130
