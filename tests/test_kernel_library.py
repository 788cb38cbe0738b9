"""The kernel library as a whole: every file loads, every kernel lowers with its default
constants, names are unique, and every kernel has a test against numpy."""
from __future__ import annotations

from pathlib import Path

import pytest

import tilelang
from kernel_refs import KERNELS

FILES = sorted(KERNELS.glob("*.tile"))
ALL = [(path.stem, name) for path in FILES for name in tilelang.load(path)]


def test_library_is_not_empty():
    assert len(FILES) >= 10 and len(ALL) >= 20


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_file_loads(path):
    kernels = tilelang.load(path)
    assert kernels and all(k.ir.loc.file == str(path) for k in kernels.values())


@pytest.mark.parametrize("file,name", ALL)
def test_default_constants_lower_and_fit_the_machine(file, name):
    tk = tilelang.load(KERNELS / f"{file}.tile")[name].lower()
    assert tk.threads % 32 == 0
    for t in tk.tiles.values():
        assert all(e & (e - 1) == 0 for e in t.shape), f"{name}: tile extents must be powers of 2, got {t}"


def test_kernel_names_are_unique_across_files():
    names = [name for _, name in ALL]
    assert len(names) == len(set(names))


def test_every_kernel_is_run_against_numpy_by_some_test():
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_kernel_*.py")
                    if p.name != Path(__file__).name)
    untested = [name for _, name in ALL if f'"{name}"' not in tests]
    assert not untested
