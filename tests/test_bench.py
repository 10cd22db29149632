"""fungrad.bench: the cases run, agree with each other, and the command line reports them (no timing asserts)."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from conftest import require
from fungrad import bench


def parse(argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


def test_moons_case_checks_agree():
    require("micrograd", 'pip install "fungrad[bench]"')
    r = bench.moons_case(points=6, repeats=1)
    assert set(r["step_gc_on"]) == set(bench.LIBRARIES)
    assert set(r["memory"]) == set(bench.LIBRARIES)
    assert r["checks"]["losses agree (rel 1e-12)"]
    assert r["checks"]["jit equals eager"] and r["checks"]["tape equals eager"]
    assert r["first_call"][bench.JIT]["lines"] > 0


def test_chain_case_runs_micrograd_past_its_recursion_limit():
    require("micrograd", 'pip install "fungrad[bench]"')
    limit = sys.getrecursionlimit()
    r = bench.chain_case(ops=3 * (limit + 500), repeats=1)
    assert "micrograd_error" not in r and set(r["gc_on"]) == set(bench.LIBRARIES)
    assert sys.getrecursionlimit() == limit  # restored


def test_cli_json_and_table(capsys):
    require("micrograd", 'pip install "fungrad[bench]"')
    assert bench.run_cli(parse(["--points", "6", "--chain", "300", "--repeats", "1", "--json"])) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"machine", "moons", "chain", "targets"} <= set(report)
    assert bench.run_cli(parse(["--points", "6", "--no-chain", "--repeats", "1"])) == 0
    out = capsys.readouterr().out
    assert "moons step, GC on" in out and "vs micrograd" in out and "checks:" in out


def test_scaling_and_plot(tmp_path):
    r = bench.scaling(sizes=(300, 600), repeats=1)
    assert {(row["case"], row["mode"]) for row in r["rows"]} == {
        (case, mode) for case in ("chain", "wide sum") for mode in bench.SCALING_MODES
    }
    assert all(v >= 1.0 for v in r["spread"].values())
    require("matplotlib", 'pip install "fungrad[plot]"')
    path = tmp_path / "scaling.png"
    bench.plot_scaling(r, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cost per node" in bench.format_report({"machine": bench.machine(), "scaling": r})


def test_missing_micrograd_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "micrograd", None)
    with pytest.raises(SystemExit, match=r'pip install "fungrad\[bench\]"'):
        bench.run_cli(parse(["--repeats", "1"]))


def test_bad_arguments():
    assert bench.run_cli(parse(["--repeats", "0"])) == 2
    assert bench.run_cli(parse(["--plot", "x.png", "--no-chain", "--points", "4", "--repeats", "1"])) == 2
