import contextlib
import gc
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require

import fungrad as fg
from fungrad import cli

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def run(*argv):
    """main(argv) in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code, out, err, *fragments):
    assert code == 2
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fungrad: error: "), err
    for f in fragments:
        assert f in lines[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    require("matplotlib", 'pip install "fungrad[plot]"')
    out = tmp_path_factory.mktemp("demo")
    code, stdout, stderr = run("demo", "--out", out)
    return code, stdout, stderr, out


@pytest.mark.slow
def test_demo_exits_0_and_reports_100_percent(demo):
    code, stdout, stderr, out = demo
    assert code == 0 and stderr == ""
    summary = [line for line in stdout.splitlines() if line.startswith("  moons ")]
    assert len(summary) == 1 and "accuracy 100% (100/100)" in summary[0]
    assert re.search(r"^fungrad demo: done in \d+\.\d s", stdout, re.M)
    tutorial = [line for line in stdout.splitlines() if line.startswith("  tutorial ")][0]
    first, final = map(float, re.search(r"loss (\S+) -> (\S+)", tutorial).groups())
    assert final < 0.1 < first
    # the loss is printed as it goes down
    steps = [float(v) for v in re.findall(r"step +\d+  loss (\S+)", stdout)]
    assert len(steps) >= 10 and steps[0] > steps[7]


@pytest.mark.slow
def test_demo_files_are_real(demo):
    _, stdout, _, out = demo
    for name in ("loss.png", "decision_boundary.png", "confusion_digits.png"):
        assert (out / name).read_bytes()[:8] == PNG
        assert (out / name).stat().st_size > 10_000
    if shutil.which("dot"):  # in CI: the picture itself
        svg = (out / "neuron.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        # dot writes a minus sign as &#45;
        for label in ("x1*w1", "data 0.8814", "data 0.7071", "grad &#45;1.5000"):
            assert label in svg
    else:  # no dot here: the DOT text and a hint instead
        assert "digraph" in (out / "neuron.dot").read_text() and "graphviz" in stdout.lower()
    model, meta = fg.checkpoint.load_with_metadata(out / "moons_model.json")
    assert isinstance(model, fg.nn.MLP) and (model.nin, model.nouts) == (2, (16, 16, 1))
    assert meta["final_accuracy"] == 1.0
    xs, ys = fg.data.make_moons(100, noise=0.1, seed=meta["data_seed"])
    assert fg.nn.accuracy([model(x) for x in xs], ys) == 1.0


@pytest.mark.slow
def test_demo_draws_the_digits_confusion_matrix(demo):
    import struct

    from matplotlib.image import imread

    code, stdout, _, out = demo
    png = (out / "confusion_digits.png").read_bytes()
    # a PNG: its signature, then the IHDR chunk with the size, which is the figure's (5.6 x 5 inches at 100 dpi)
    assert png[:8] == PNG and png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (560, 500)
    img = imread(out / "confusion_digits.png")
    assert img.shape[:2] == (500, 560) and img.std() > 0.05  # decodes, and is not a blank page
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("  digits ")]
    assert f"{cli.DIGITS_STEPS} steps" in line
    right, n = map(int, re.search(r"held-out accuracy \d+% \((\d+)/(\d+)\)", line).groups())
    assert n == 360 and right / n >= 0.9  # 300 steps get about 93% of the held-out fifth
    assert "confusion_digits.png" in stdout


@pytest.mark.slow
def test_demo_quiet_prints_only_the_summary(tmp_path, monkeypatch):
    # the training part is what the demo fixture checks; here only what is printed
    monkeypatch.setattr(cli, "_plot", lambda note, name, make, path: None)
    code, stdout, _ = run("demo", "--out", tmp_path, "--quiet")
    assert code == 0
    assert not re.search(r"step +\d+  loss", stdout) and stdout.startswith("fungrad demo: done in")


def test_neuron_drawing_without_dot(tmp_path, monkeypatch):
    monkeypatch.setattr(fg.viz.shutil, "which", lambda name: None)
    notes = []
    path = cli._write_neuron(tmp_path, notes.append)
    assert path.name == "neuron.dot" and "digraph" in path.read_text()
    assert len(notes) == 1 and "apt-get install graphviz" in notes[0]


def test_a_missing_matplotlib_skips_the_picture_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    notes = []
    path = cli._plot(notes.append, "loss.png", lambda: fg.viz.plot_history([1.0, 0.5]), tmp_path / "loss.png")
    assert path is None and not (tmp_path / "loss.png").exists()
    assert notes == ['skipped loss.png: fungrad.viz.plot_history needs matplotlib: pip install "fungrad[plot]"']


def test_a_missing_optional_dependency_is_one_line(monkeypatch):
    def handler(args):
        raise ImportError('the progress bar needs tqdm: pip install "fungrad[progress]"')

    monkeypatch.setattr(cli, "_train", handler)
    code, out, err = run("train")
    assert code == 1 and err == 'fungrad: error: the progress bar needs tqdm: pip install "fungrad[progress]"\n'


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_train_tiny_with_each_optimizer(tmp_path, optimizer):
    code, out, err = run("train", "--dataset", "tiny", "--hidden", "4,4", "--steps", 40, "--optimizer", optimizer, "--out", tmp_path, "--no-progress")
    assert code == 0 and err == ""
    model, meta = fg.checkpoint.load_with_metadata(tmp_path / "model.json")
    assert (model.nin, model.nouts, model.activation) == (3, (4, 4, 1), "tanh")
    assert meta["steps"] == 40 and meta["optimizer"] == optimizer and meta["lr"] == cli.DEFAULT_LR[optimizer]
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["loss"]) == 40 and history["loss"][-1] < history["loss"][0]
    assert meta["final_accuracy"] == 1.0
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG  # the test extra installs matplotlib


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_train_moons(tmp_path, optimizer):
    code, out, err = run("train", "--dataset", "moons", "--hidden", "4", "--steps", 3, "--optimizer", optimizer, "--lr", 0.05, "--out", tmp_path, "--no-progress")
    assert code == 0, err
    model = fg.checkpoint.load(tmp_path / "model.json")
    assert (model.nin, model.nouts, model.activation, model.final_activation) == (2, (4, 1), "relu", "linear")
    assert "3 steps in" in out and "accuracy" in out


@pytest.mark.slow  # digits about 3 s, spirals 0.6 s: jit-compiles a 32-unit network, scores every example
@pytest.mark.parametrize("dataset, nin, nouts", [("digits", 64, (32, 10)), ("spirals", 2, (32, 3))])
def test_train_many_classes_reports_held_out_accuracy(tmp_path, dataset, nin, nouts):
    code, out, err = run("train", "--dataset", dataset, "--steps", 3, "--out", tmp_path, "--no-progress")
    assert code == 0, err
    model, meta = fg.checkpoint.load_with_metadata(tmp_path / "model.json")
    assert (model.nin, model.nouts, model.activation, model.final_activation) == (nin, nouts, "tanh", "linear")
    assert "adam lr 0.02 (cosine schedule)" in out and "held out" in out
    m = re.search(r"train accuracy ([0-9.]+)%   test accuracy ([0-9.]+)%", out)
    assert m, out
    (train, test), (xs, ys) = fg.data.split(*(fg.data.digits() if dataset == "digits" else fg.data.spirals(100)))
    assert meta["test_accuracy"] == fg.nn.accuracy([model(x) for x in xs], ys)
    assert float(m.group(2)) == pytest.approx(100 * meta["test_accuracy"], abs=0.06)


@pytest.mark.slow
def test_train_digits_reaches_95_percent_held_out(tmp_path):
    # the defaults: 1,500 Adam steps on minibatches of 8, a few seconds of training
    r = subprocess.run(
        [sys.executable, "-m", "fungrad", "train", "--dataset", "digits", "--no-progress", "--out", str(tmp_path)],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    meta = fg.checkpoint.load_with_metadata(tmp_path / "model.json")[1]
    assert meta["test_accuracy"] >= 0.95, meta


@pytest.mark.slow
def test_train_resume_round_trip(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("train", "--hidden", "4", "--steps", 3, "--batch-size", 50, "--out", a, "--no-progress")[0] == 0
    first, meta = fg.checkpoint.load_with_metadata(a / "model.json")
    code, out, err = run("train", "--steps", 2, "--out", b, "--resume", a / "model.json", "--no-progress")
    assert code == 0, err
    assert f"from {a / 'model.json'} (step 3)" in out
    second, meta2 = fg.checkpoint.load_with_metadata(b / "model.json")
    assert meta2["steps"] == 5 and second.nouts == first.nouts == (4, 1) and second != first
    history = json.loads((b / "history.json").read_text())
    assert history["loss"][0] == meta["final_loss"]  # it went on from the saved model
    # the history holds this run's steps, 3 and 4, of the model's 5
    assert history["steps"] == 5 and history["resumed_at_step"] == 3 and len(history["loss"]) == 2
    assert "resumed_at_step" not in meta


@pytest.mark.slow
def test_resume_the_demo_checkpoint(demo, tmp_path):
    out = demo[3]
    # a minibatch of 4 keeps the step (and its compile) small; the point is the resume
    code, stdout, err = run("train", "--steps", 1, "--batch-size", 4, "--out", tmp_path, "--resume", out / "moons_model.json", "--no-progress")
    assert code == 0, err
    assert "(step 100)" in stdout


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["train", "--hidden", "16,x"], ["--hidden", "16,x"]),
        (["train", "--hidden", "0"], ["--hidden"]),
        (["train", "--hidden", "16,100000"], ["--hidden", "from 1 to 10,000"]),
        (["train", "--steps", "-5"], ["--steps", "from 1 to 100,000,000"]),
        (["train", "--steps", "99999999999999999999"], ["--steps", "from 1 to 100,000,000"]),
        (["train", "--seed", "-5"], ["--seed", "from 0 to", "'-5'"]),
        (["train", "--lr", "nan"], ["--lr"]),
        (["train", "--optimizer", "rmsprop"], ["--optimizer", "rmsprop"]),
        (["train", "--bogus"], ["unrecognized arguments: --bogus"]),
        (["demo", "--steps", "3"], ["unrecognized arguments"]),
        (["frobnicate"], ["invalid choice"]),
        ([], ["required"]),
        (["bench", "--points", "0"], ["--points", "from 2 to 10,000", "'0'"]),
        (["bench", "--points", "-5"], ["--points", "'-5'"]),
        (["bench", "--points", "1e3"], ["--points", "'1e3'"]),
        (["bench", "--chain", "-1"], ["--chain", "from 3 to 3,000,000"]),
        (["bench", "--chain", "0"], ["--chain"]),
        (["bench", "--chain", str(10**400)], ["--chain"]),
        (["bench", "--repeats", "0"], ["--repeats", "from 1 to 1,000"]),
        (["bench", "--seed", "x"], ["--seed", "'x'"]),
        (["bench", "--plot", "x.png"], ["--plot needs --scaling"]),
    ],
)
def test_bad_options_give_one_line_and_exit_2(argv, fragments):
    assert_one_line_error(*run(*argv), *fragments)


def test_missing_resume_file(tmp_path):
    missing = tmp_path / "nope.json"
    assert_one_line_error(*run("train", "--resume", missing, "--out", tmp_path / "o"), str(missing), "No such file")
    assert not (tmp_path / "o").exists()  # nothing written on the way to an error


def test_resume_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("this is not json")
    assert_one_line_error(*run("train", "--resume", bad, "--out", tmp_path), "not a fungrad checkpoint")
    bad.write_text('{"format": "something-else"}')
    assert_one_line_error(*run("train", "--resume", bad, "--out", tmp_path), "not a fungrad checkpoint")
    fg.checkpoint.save(bad, {"w": [1.0]})
    assert_one_line_error(*run("train", "--resume", bad, "--out", tmp_path), "holds a dict, not a fungrad.nn.MLP")
    assert_one_line_error(*run("train", "--resume", tmp_path, "--out", tmp_path), "cannot read --resume")


@pytest.mark.parametrize("steps", ["ten", 2.5, -1, True, None])
def test_resume_whose_steps_are_no_count_is_one_line(tmp_path, steps):
    ckpt = tmp_path / "m.json"
    model = fg.nn.MLP.init(2, [4, 1], seed=0, activation="relu", final_activation="linear")
    fg.checkpoint.save(ckpt, model, metadata={"steps": steps})
    code, out, err = run("train", "--hidden", "4", "--resume", ckpt, "--out", tmp_path / "o", "--no-progress")
    assert_one_line_error(code, out, err, f"--resume: {ckpt} has \"steps\": {json.dumps(steps)}", "integer >= 0")
    assert not (tmp_path / "o").exists()  # refused before anything was trained or written


@pytest.mark.slow
def test_resume_without_steps_counts_from_0(tmp_path):
    ckpt = tmp_path / "m.json"
    fg.checkpoint.save(ckpt, fg.nn.MLP.init(2, [4, 1], seed=0, activation="relu", final_activation="linear"))
    code, out, err = run("train", "--steps", 1, "--batch-size", 4, "--resume", ckpt, "--out", tmp_path / "o", "--no-progress")
    assert code == 0, err
    assert "(step 0)" in out and fg.checkpoint.load_with_metadata(tmp_path / "o" / "model.json")[1]["steps"] == 1


def test_resume_with_another_shape(tmp_path):
    ckpt = tmp_path / "m.json"
    fg.checkpoint.save(ckpt, fg.nn.MLP.init(2, [4, 1], seed=0, activation="relu", final_activation="linear"))
    assert_one_line_error(*run("train", "--resume", ckpt, "--hidden", "8", "--out", tmp_path), "MLP(2, [4, 1])", "MLP(2, [8, 1])")
    assert_one_line_error(*run("train", "--resume", ckpt, "--dataset", "tiny", "--out", tmp_path), "MLP(3, [..., 1]) tanh")


def test_output_directory_that_cannot_be_made(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(*run("demo", "--out", blocker / "sub"), "cannot create the output directory")


def test_every_option_has_help():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert set(subparsers.choices) == {"demo", "train", "bench"}
    for name in ("demo", "train", "bench"):
        for action in subparsers.choices[name]._actions:
            assert action.help, f"fungrad {name}: {action.option_strings} has no help"
    for choice in subparsers._choices_actions:
        assert choice.help


def test_help_and_version_exit_0():
    code, out, _ = run("train", "--help")
    assert code == 0 and "--resume CHECKPOINT" in out and "--hidden SIZES" in out
    code, out, _ = run("--version")
    assert code == 0 and out.strip() == f"fungrad {fg.__version__}"


def test_bench_help():
    code, out, err = run("bench", "--help")
    assert code == 0 and "usage: fungrad bench" in out


ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.slow
def test_python_dash_m_fungrad_help():
    env = ENV
    r = subprocess.run([sys.executable, "-m", "fungrad", "--help"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    for word in ("demo", "train", "bench"):
        assert word in r.stdout
    r = subprocess.run([sys.executable, "-m", "fungrad", "train", "--steps", "0"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("fungrad: error:")


# --------------------------------------------------------------------------
# Files: never overwritten by surprise, never half written


def files_in(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.slow
def test_train_refuses_to_overwrite_without_force(tmp_path):
    argv = ("train", "--dataset", "tiny", "--hidden", "4", "--steps", 2, "--out", tmp_path, "--no-progress")
    assert run(*argv)[0] == 0
    before = (tmp_path / "model.json").read_bytes()
    assert_one_line_error(*run(*argv, "--lr", 0.5), str(tmp_path), "model.json, history.json and loss.png", "--force")
    assert (tmp_path / "model.json").read_bytes() == before
    code, _, err = run(*argv, "--lr", 0.5, "--force")
    assert code == 0, err
    model, meta = fg.checkpoint.load_with_metadata(tmp_path / "model.json")
    assert meta["lr"] == 0.5 and (tmp_path / "model.json").read_bytes() != before
    assert files_in(tmp_path) == ["history.json", "loss.png", "model.json"]  # no temporary file left


@pytest.mark.parametrize("name", ["moons_model.json", "loss.png", "neuron.svg"])
def test_an_output_that_cannot_be_written_stops_the_demo_before_it_trains(tmp_path, name):
    (tmp_path / name).mkdir()
    code, out, err = run("demo", "--out", tmp_path)
    assert_one_line_error(code, out, err, str(tmp_path / name), "is a directory")
    assert out == ""  # nothing trained, nothing printed
    assert files_in(tmp_path) == [name]


@pytest.mark.slow
def test_a_run_whose_loss_diverges_says_so_and_exits_1(tmp_path):
    code, out, err = run("train", "--dataset", "moons", "--lr", "1e308", "--steps", 3, "--out", tmp_path, "--no-progress")
    assert code == 1 and "loss 0.5656 -> nan" in out
    assert err.startswith("fungrad: the loss became nan at step 1: training diverged"), err
    assert files_in(tmp_path) == ["history.json", "loss.png", "model.json"]  # written all the same
    code, out, err = run("train", "--dataset", "moons", "--steps", 3, "--out", tmp_path, "--force", "--no-progress")
    assert code == 0 and err == ""


def test_an_output_that_cannot_be_written_stops_train_before_it_starts(tmp_path):
    (tmp_path / "history.json").mkdir()
    code, out, err = run("train", "--dataset", "tiny", "--steps", 2, "--out", tmp_path, "--force", "--no-progress")
    assert_one_line_error(code, out, err, str(tmp_path / "history.json"), "is a directory")
    assert out == ""  # before training
    assert files_in(tmp_path) == ["history.json"]  # and no model.json without its history


@pytest.mark.slow
@pytest.mark.parametrize("failing, error", [("history.json", OSError(1, "Operation not permitted")),
                                             ("loss.png", KeyboardInterrupt())])
def test_a_rename_that_fails_puts_back_the_files_renamed_before_it(tmp_path, monkeypatch, failing, error):
    argv = ("train", "--dataset", "tiny", "--hidden", "4", "--steps", 2, "--out", tmp_path, "--no-progress")
    assert run(*argv)[0] == 0
    names = ["history.json", "loss.png", "model.json"]
    before = {n: (tmp_path / n).read_bytes() for n in names}
    replace = os.replace

    def refuse(src, dst):
        if str(dst).endswith(failing) and ".tmp" in str(src):
            raise error
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    code, out, err = run(*argv, "--steps", 3, "--force")
    if isinstance(error, OSError):
        assert_one_line_error(code, out, err, f"cannot write {tmp_path / failing}", "Operation not permitted", "put back")
    else:
        assert code == 130
    # no new model beside an old history: every file is the old one, and nothing else is left
    assert {n: (tmp_path / n).read_bytes() for n in names} == before
    assert files_in(tmp_path) == names


@pytest.mark.slow
def test_an_interrupt_at_every_event_of_writing_the_files_leaves_all_old_or_all_new(tmp_path):
    from test_faults import events, inject

    names = ["model.json", "history.json", "loss.png"]

    def files(tag):
        return [(n, n, lambda p, n=n: p.write_text(f"{tag} {n}")) for n in names]

    def state():
        return {n: (tmp_path / n).read_text() for n in names if (tmp_path / n).exists()}

    old = {n: f"old {n}" for n in names}
    new = {n: f"new {n}" for n in names}
    # A collection can run a weakref callback or a finalizer of an earlier
    # test's garbage inside the traced call: its events would shift the
    # count, and the k-th event would no longer be the one counted here
    gc.collect()
    gc.disable()
    try:
        cli._write_all(tmp_path, files("old"))
        seen = events(lambda: cli._write_all(tmp_path, files("new")))
        total = len(seen)
        # the clean-up at the end: from the line that calls it, one event before its call
        cleanup = seen.index(("cli.py", "_remove", "call"))
        cli._write_all(tmp_path, files("old"))
        assert total > 50
        for k in range(1, total + 1):
            _, where = inject(lambda: cli._write_all(tmp_path, files("new")), k)
            assert state() in (old, new), where  # never a new model beside an old history
            if k < cleanup:
                assert files_in(tmp_path) == sorted(names), where  # no temporary or kept file left
            cli._write_all(tmp_path, files("old"))
            # an interrupt in the clean-up itself leaves files the next run removes
            assert files_in(tmp_path) == sorted(names), where
    finally:
        gc.enable()
    # a run killed between keeping an old file and the end leaves a kept file: the next one goes on
    (tmp_path / f".model.{os.getpid()}.old.json").write_text("leftover")
    cli._write_all(tmp_path, files("new"))
    assert state() == new and files_in(tmp_path) == sorted(names)


@pytest.mark.slow
def test_a_failed_write_leaves_no_file_of_the_run(tmp_path, monkeypatch):
    def broken(path, text, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", broken)  # the history is written with write_text
    code, out, err = run("train", "--dataset", "tiny", "--steps", 2, "--out", tmp_path, "--no-progress")
    assert_one_line_error(code, out, err, f"cannot write the history to {tmp_path / 'history.json'}", "No space left")
    assert files_in(tmp_path) == []


@pytest.mark.slow
def test_train_writes_through_a_symlink(tmp_path):
    target = tmp_path / "kept" / "model.json"
    target.parent.mkdir()
    target.write_text("old")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.json").symlink_to(target)
    assert run("train", "--dataset", "tiny", "--steps", 2, "--out", out, "--force", "--no-progress")[0] == 0
    assert (out / "model.json").is_symlink()
    assert fg.checkpoint.load_with_metadata(target)[1]["steps"] == 2


# --------------------------------------------------------------------------
# Ctrl-C and closed pipes, in real processes


def tiny_model():
    return fg.nn.MLP.init(3, [4, 1], seed=0, activation="tanh", final_activation="tanh")


@pytest.mark.slow
def test_ctrl_c_saves_the_completed_steps(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "tiny", "--hidden", "4", "--steps", "100000000", "--out", str(out), "--no-progress"]
    p = subprocess.Popen([sys.executable, "-m", "fungrad", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        assert p.stdout.readline().startswith("fungrad train: MLP(3, [4, 1]) tanh on tiny")
        time.sleep(6.0)  # training by then: its first step compiles in about a second, and a loaded machine needs room
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130
    assert "Traceback" not in stderr and len(stderr.splitlines()) == 1, stderr
    done = int(re.fullmatch(r"fungrad: interrupted after (\d+) of 100000000 steps; saved the model and history of step \1 in .*\n", stderr).group(1))
    assert done >= 1
    model, meta = fg.checkpoint.load_with_metadata(out / "model.json")
    history = json.loads((out / "history.json").read_text())
    assert meta["steps"] == done and meta["interrupted"] is True and history["interrupted"] is True
    assert len(history["loss"]) == len(history["accuracy"]) == len(history["step_time"]) == done
    # the saved model is the one after exactly `done` steps, and the history is theirs
    expected, h = fg.train.fit(cli._tiny_loss, tiny_model(), fg.data.tiny(), optimizer=fg.optim.SGD(0.1), steps=done, progress=False)
    assert model == expected and history["loss"] == h.loss
    assert f"{done} steps in" in stdout


def test_ctrl_c_while_the_package_is_still_importing_is_one_line():
    # the command's entry point sits outside the package: a KeyboardInterrupt
    # raised while fungrad itself is importing still gives one line and 130
    script = (
        "import sys, importlib.abc\n"
        "class Stop(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'fungrad.expr':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n"
        "import _fungrad_entry\n"
        "sys.exit(_fungrad_entry.main())\n"
    )
    r = subprocess.run([sys.executable, "-c", script, "demo"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60)
    assert r.returncode == 130 and r.stderr == "fungrad: interrupted\n" and r.stdout == "", r


BROKEN_IMPORT = (
    "import sys, importlib.abc\n"
    "class Broken(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name == {module!r}:\n"
    "            raise {error}\n"
    "sys.meta_path.insert(0, Broken())\n"
)
BY_PYTHON_M = "import runpy\nrunpy.run_module('fungrad', run_name='__main__', alter_sys=True)\n"
BY_SCRIPT = "import _fungrad_entry\nsys.exit(_fungrad_entry.main())\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    "start, module, error, shown",
    [
        # python -m fungrad: Python imports the package before fungrad/__main__.py runs, which then imports the command
        (BY_PYTHON_M, "fungrad.cli", "RuntimeError('a damaged file')", "RuntimeError: a damaged file"),
        (BY_PYTHON_M, "fungrad.cli", "ImportError('cannot import name x')", "ImportError: cannot import name x"),
        # the fungrad script imports the whole package itself
        (BY_SCRIPT, "fungrad.expr", "RuntimeError('a damaged file')", "RuntimeError: a damaged file"),
        (BY_SCRIPT, "attrs", "ModuleNotFoundError(\"No module named 'attrs'\")", "ModuleNotFoundError: No module named 'attrs'"),
    ],
)
def test_a_command_that_cannot_be_imported_is_one_line(start, module, error, shown):
    script = BROKEN_IMPORT.format(module=module, error=error) + start
    r = subprocess.run([sys.executable, "-c", script, "train"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60)
    assert (r.returncode, r.stdout) == (1, ""), r
    assert r.stderr == f"fungrad: error: cannot load the fungrad command ({shown}); python -c 'import fungrad.cli' shows where\n"


def test_python_dash_m_fungrad_loads_the_command():
    from fungrad import __main__

    assert __main__._command() is cli.main  # importing it runs nothing: runpy runs it as __main__


@pytest.mark.slow
def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    # a real SIGINT, delivered while the command is still building its parser
    script = (
        "import os, signal, sys\n"
        "from fungrad import cli\n"
        "build = cli.build_parser\n"
        "def interrupted_build():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return build()\n"
        "cli.build_parser = interrupted_build\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    r = subprocess.run([sys.executable, "-c", script, "train", "--out", str(tmp_path / "o")], capture_output=True, text=True, env=ENV, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (130, "", "fungrad: interrupted\n")
    assert not (tmp_path / "o").exists()


def test_ctrl_c_before_the_first_step_saves_nothing(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise fg.train.Interrupted(tiny_model(), fg.train.History())

    monkeypatch.setattr(fg.train, "fit", interrupted)
    code, out, err = run("train", "--dataset", "tiny", "--out", tmp_path, "--no-progress")
    assert code == 130 and err == "fungrad: interrupted before the first step completed; nothing saved\n"
    assert files_in(tmp_path) == []


@pytest.mark.slow
def test_a_closed_stdout_ends_quietly(tmp_path):
    # `fungrad train | head -1`: the reader leaves after the first line
    out = tmp_path / "run"
    argv = ["train", "--dataset", "tiny", "--hidden", "4", "--steps", "30", "--out", str(out), "--no-progress"]
    p = subprocess.Popen([sys.executable, "-m", "fungrad", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    first = p.stdout.readline()
    p.stdout.close()
    stderr = p.stderr.read()
    p.wait(timeout=60)
    assert first.startswith(b"fungrad train:")
    assert (p.returncode, stderr) == (141, b"")
    assert fg.checkpoint.load_with_metadata(out / "model.json")[1]["steps"] == 30  # the work was done and saved


@pytest.mark.slow
def test_a_ctrl_c_that_python_dropped_still_stops_train(tmp_path, monkeypatch):
    # CPython drops a KeyboardInterrupt raised inside a weakref callback (as
    # importlib's are): the handler has still noted the Ctrl-C, and train
    # stops after the step it was in
    tiny = fg.data.tiny

    def data_while_ctrl_c_is_dropped():
        cli._ctrl_c.pressed = True  # what cli's SIGINT handler does before its exception is lost
        return tiny()

    monkeypatch.setattr(fg.data, "tiny", data_while_ctrl_c_is_dropped)
    code, out, err = run("train", "--dataset", "tiny", "--hidden", "4", "--steps", 1000, "--out", tmp_path, "--no-progress")
    assert code == 130
    assert err == f"fungrad: interrupted after 1 of 1000 steps; saved the model and history of step 1 in {tmp_path}\n"
    assert fg.checkpoint.load_with_metadata(tmp_path / "model.json")[1]["steps"] == 1


def test_main_leaves_the_sigint_handler_as_it_found_it():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert run("train", "--steps", "0")[0] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.slow
def test_resume_keeps_the_checkpoints_held_out_split(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("train", "--dataset", "spirals", "--seed", 3, "--steps", 2, "--out", a, "--no-progress")[0] == 0
    _, meta = fg.checkpoint.load_with_metadata(a / "model.json")
    code, out, err = run("train", "--dataset", "spirals", "--steps", 1, "--lr", "1e-300", "--out", b, "--resume", a / "model.json", "--no-progress")
    assert code == 0, err
    _, meta2 = fg.checkpoint.load_with_metadata(b / "model.json")
    # the split of seed 3 again: the same model (a step of lr 1e-300) tests the same
    assert meta2["seed"] == 3 and meta2["test_accuracy"] == meta["test_accuracy"]
    assert_one_line_error(
        *run("train", "--dataset", "spirals", "--seed", 0, "--out", tmp_path / "c", "--resume", a / "model.json"),
        "with --seed 3", "leave out --seed or give --seed 3",
    )
    assert run("train", "--dataset", "spirals", "--seed", 3, "--steps", 1, "--out", tmp_path / "d", "--resume", a / "model.json", "--no-progress")[0] == 0
