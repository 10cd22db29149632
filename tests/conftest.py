"""Shared fixtures: PyTorch as the float64 oracle, and a headless matplotlib."""

from __future__ import annotations

import os

import decimal

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def require(module: str, install: str):
    """Import ``module``; a skip on a developer machine without it, a failure in CI."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is required in CI ({install})")
        pytest.skip(f"{module} is not installed ({install})")


def require_torch():
    """PyTorch, in float64; a skip on a developer machine without it, a failure in CI."""
    try:
        import torch
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("PyTorch is required in CI (pip install torch==2.13.0)")
        pytest.skip("PyTorch is not installed (pip install torch==2.13.0)")
    torch.set_default_dtype(torch.float64)
    return torch


@pytest.fixture(scope="session")
def torch():
    return require_torch()


# values that are not leaves by the rules of grad, and the type name a message gives
BAD_LEAVES = [
    (1 + 2j, "complex"),
    (True, "bool"),
    ("1.0", "str"),
    (b"1", "bytes"),
    (decimal.Decimal("0.5"), "Decimal"),
]
