import contextlib
import io
import json
import os
import re
import subprocess
import sys
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


def test_demo_files_are_real(demo):
    _, stdout, _, out = demo
    for name in ("loss.png", "decision_boundary.png"):
        assert (out / name).read_bytes()[:8] == PNG
        assert (out / name).stat().st_size > 10_000
    if (out / "neuron.svg").exists():
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


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_train_moons(tmp_path, optimizer):
    code, out, err = run("train", "--dataset", "moons", "--hidden", "4", "--steps", 3, "--optimizer", optimizer, "--lr", 0.05, "--out", tmp_path, "--no-progress")
    assert code == 0, err
    model = fg.checkpoint.load(tmp_path / "model.json")
    assert (model.nin, model.nouts, model.activation, model.final_activation) == (2, (4, 1), "relu", "linear")
    assert "3 steps in" in out and "accuracy" in out


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


def test_resume_the_demo_checkpoint(demo, tmp_path):
    out = demo[3]
    code, stdout, err = run("train", "--steps", 1, "--out", tmp_path, "--resume", out / "moons_model.json", "--no-progress")
    assert code == 0, err
    assert "(step 100)" in stdout


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["train", "--hidden", "16,x"], ["--hidden", "16,x"]),
        (["train", "--hidden", "0"], ["--hidden"]),
        (["train", "--steps", "-5"], ["--steps", "positive integer"]),
        (["train", "--lr", "nan"], ["--lr"]),
        (["train", "--optimizer", "rmsprop"], ["--optimizer", "rmsprop"]),
        (["train", "--bogus"], ["unrecognized arguments: --bogus"]),
        (["demo", "--steps", "3"], ["unrecognized arguments"]),
        (["frobnicate"], ["invalid choice"]),
        ([], ["required"]),
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


def test_python_dash_m_fungrad_help():
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "fungrad", "--help"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    for word in ("demo", "train", "bench"):
        assert word in r.stdout
    r = subprocess.run([sys.executable, "-m", "fungrad", "train", "--steps", "0"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("fungrad: error:")
