"""fungrad.bench: the cases run, agree with each other, and the command line reports them (no timing asserts)."""

from __future__ import annotations

import contextlib
import io
import json
import sys

import pytest

import fungrad as fg
from conftest import require, require_torch
from fungrad import bench, cli


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["bench", *map(str, argv)])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_moons_case_checks_agree():
    require("micrograd", 'pip install "fungrad[bench]"')
    r = bench.moons_case(points=3, repeats=1)
    assert set(r["step_gc_on"]) == {*bench.LIBRARIES, bench.REFERENCE}
    assert set(r["memory"]) == set(bench.LIBRARIES) - {bench.JIT}
    assert r["checks"]["straight-line equals eager"] is True
    assert set(r["back_to_back"]) == {bench.JIT, bench.REFERENCE} and all(v > 0 for v in r["back_to_back"].values())
    assert 0 < r["memory"][bench.EAGER] < r["memory"][bench.MICROGRAD]
    assert r["checks"]["losses agree (rel 1e-12)"]
    assert r["checks"]["jit equals eager"] is True and r["checks"]["tape equals eager"] is True
    assert r["first_call"][bench.JIT]["lines"] > 0
    # the tape holds the step's ops, forward and backward: more than the jit's code has lines
    assert r["first_call"][bench.TAPE]["nodes"] > r["first_call"][bench.JIT]["lines"]


def test_the_tape_interpreter_equals_eager_on_every_primitive():
    def f(x, y):
        terms = [fg.exp(x), fg.log(y), fg.tanh(x), fg.relu(x - y), fg.sigmoid(y), fg.sqrt(y), fg.sin(x),
                 fg.cos(y), abs(x - y), x ** 3, y ** x, x / y, -x, fg.where(x - y, x, y)]
        return sum(terms)

    vg = fg.value_and_grad(f, argnums=(0, 1))
    replay = bench.tape(vg)
    for x, y in [(0.3, 1.7), (-1.2, 0.5), (2.0, 2.0)]:
        assert replay(x, y) == vg(x, y)
    assert len(replay.cache_info()) == 1  # traced once, replayed on new values
    with pytest.raises(TypeError, match="tape: expected a function, got int"):
        bench.tape(3)


@pytest.mark.slow
def test_chain_case_runs_micrograd_past_its_recursion_limit():
    require("micrograd", 'pip install "fungrad[bench]"')
    limit = sys.getrecursionlimit()
    r = bench.chain_case(ops=3 * (limit + 500), repeats=1)
    assert "micrograd_error" not in r and set(r["gc_on"]) == set(bench.LIBRARIES)
    assert sys.getrecursionlimit() == limit  # restored


@pytest.mark.slow
def test_cli_json_and_table():
    require("micrograd", 'pip install "fungrad[bench]"')
    code, out, err = run("--points", 2, "--chain", 30, "--repeats", 1, "--digits", 12, "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert {"machine", "moons", "chain", "digits", "targets"} <= set(report)
    assert report["chain"]["ops"] == 30 and report["moons"]["points"] == 2 and report["digits"]["batch"] == 12
    assert report["digits"]["checks"]["jit(vmap) numpy equals its eager run"] is True
    code, out, err = run("--points", 2, "--no-chain", "--no-digits", "--repeats", 1)
    assert (code, err) == (0, "")
    assert "moons step, GC on" in out and "vs micrograd" in out and "checks:" in out
    assert "fungrad tape" in out and "deep chain" not in out and "digits" not in out


def test_targets_say_ok_or_missed_against_each_target():
    fake = {lib: 1.0 for lib in bench.LIBRARIES}
    moons = {"case": "x", "points": 100, "repeats": 1, "step_gc_on": dict(fake), "step_gc_off": dict(fake),
             "memory": dict(fake), "checks": {}}
    moons["step_gc_on"][bench.EAGER] = 0.05  # meets its target of 0.06x
    moons["step_gc_on"][bench.REFERENCE] = 0.5  # shown, but the jit target is checked on back-to-back calls
    moons["back_to_back"] = {bench.JIT: 1.0, bench.REFERENCE: 0.8}  # 1.25x the reference: missed
    report = {"machine": bench.machine(), "moons": moons}
    report["targets"] = bench._targets(report)
    text = bench.format_report(report)
    assert "\ntargets:\n" in text
    assert "  ok     fungrad eager step, GC on: 0.050x (target <= 0.06x)" in text
    assert "  MISSED fungrad eager peak memory: 1.000x (target <= 0.2x)" in text
    assert "  MISSED fungrad jit call, vs straight-line Python: 1.25x (target <= 1.2x)" in text
    assert "jit call, calls back to back" in text and "1.25x straight-line Python (800.0 ms)" in text


@pytest.mark.slow
def test_scaling_and_plot_without_pyplot(tmp_path, monkeypatch):
    r = bench.scaling(sizes=(300, 600), repeats=1)
    assert {(row["case"], row["mode"]) for row in r["rows"]} == {
        (case, mode) for case in ("chain", "wide sum") for mode in bench.SCALING_MODES
    }
    assert all(v >= 1.0 for v in r["spread"].values())
    assert "cost per node" in bench.format_report({"machine": bench.machine(), "scaling": r})
    matplotlib = require("matplotlib", 'pip install "fungrad[plot]"')
    backend = matplotlib.get_backend()
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # any use of pyplot would fail
    path = tmp_path / "scaling.png"
    fig = bench.plot_scaling(r, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes[0].lines) == 6 and fig.axes[0].get_xscale() == "log"
    assert matplotlib.get_backend() == backend  # no global state changed


def test_bad_arguments_of_the_functions():
    with pytest.raises(ValueError, match=r"moons_case: points must be an int >= 2, got 0"):
        bench.moons_case(points=0)
    with pytest.raises(ValueError, match=r"chain_case: ops must be an int >= 3, got -1"):
        bench.chain_case(ops=-1)
    with pytest.raises(ValueError, match=r"scaling: repeats must be an int >= 1, got 0"):
        bench.scaling(sizes=(30,), repeats=0)
    with pytest.raises(ValueError, match=r"unknown libraries \['pytorch'\]"):
        bench.moons_case(points=4, libraries=("pytorch",))


def test_missing_micrograd_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "micrograd", None)
    with pytest.raises(ImportError, match=r'pip install "fungrad\[bench\]"'):
        bench.require_micrograd()
    code, out, err = run("--repeats", 1)
    assert (code, out) == (1, "")
    assert err == 'fungrad: error: fungrad bench compares with micrograd, which is not installed: pip install "fungrad[bench]"\n'


def test_plot_path_is_checked_before_measuring(tmp_path):
    code, out, err = run("--only-scaling", "--plot", tmp_path / "missing" / "s.png")
    assert (code, out) == (2, "")
    assert err.startswith(f"fungrad: error: --plot {tmp_path / 'missing' / 's.png'}: cannot write into") and err.count("\n") == 1


@pytest.mark.slow
def test_cli_only_digits_reports_every_path_and_checks_them():
    code, out, err = run("--only-digits", "--digits", 12, "--repeats", 1, "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert set(report) == {"machine", "digits", "targets"}
    d = report["digits"]
    assert set(d["times"]) >= {"per-example graphs", "vmap eager", "jit(vmap) python", "jit(vmap) numpy"}
    assert d["checks"]["numpy and python replays, largest gradient difference"] < 1e-12
    require_torch()  # the comparison runs wherever PyTorch is installed, always in CI
    assert d["checks"]["PyTorch largest gradient difference"] < 1e-12
    assert d["checks"]["PyTorch loss difference"] < 1e-12
    assert report["targets"] == []  # set on the full training split only
    code, out, err = run("--only-digits", "--only-scaling")
    assert code == 2 and "choose one" in err


def test_missing_numpy_is_said_before_any_measuring(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(ImportError, match=r'NumPy is not installed: pip install "fungrad\[bench\]"'):
        bench.require_numpy()
    code, out, err = run("--only-digits", "--repeats", 1)
    assert (code, out) == (1, "")
    assert "NumPy is not installed" in err and err.count("\n") == 1


def test_options_are_honoured_or_refused(monkeypatch):
    seen = {}
    monkeypatch.setattr(bench, "run", lambda **kw: seen.update(kw) or {"machine": bench.machine(), "targets": []})
    assert run("--quick", "--only-digits", "--digits", 50)[0] == 0
    assert seen["digits"] == 50  # an explicit size wins over --quick's, as --chain's does
    assert run("--quick", "--only-digits")[0] == 0 and seen["digits"] == 200
    code, out, err = run("--only-digits", "--scaling")
    assert code == 2 and "--only-digits and --scaling: choose one" in err


def test_a_failed_check_is_exit_status_1(monkeypatch):
    report = {"machine": bench.machine(), "targets": [],
              "digits": {"checks": {"jit(vmap) numpy equals its eager run": False, "PyTorch loss difference": 0.5}}}
    assert bench.failed_checks(report) == ["digits: jit(vmap) numpy equals its eager run"]
    monkeypatch.setattr(bench, "run", lambda **kw: report)
    monkeypatch.setattr(bench, "format_report", lambda r: "the table")
    code, out, err = run("--only-digits")
    assert (code, out) == (1, "the table\n")
    assert err == "fungrad bench: checks failed: digits: jit(vmap) numpy equals its eager run\n"
