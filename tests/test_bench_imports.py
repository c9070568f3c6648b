"""`make bench` is not run by `make test`, so a refactor that breaks its imports would go unseen:
every bench module must at least import (a renamed global in bot/ broke bench/pull.py once)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench


@pytest.mark.parametrize("name", [m.name for m in pkgutil.iter_modules(bench.__path__, "bench.")])
def test_bench_module_imports(name: str) -> None:
    importlib.import_module(name)
