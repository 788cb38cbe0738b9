"""Backends: each lowers a typed kernel to an artifact and loads it as a launcher.

A backend module exposes `NAME`, `SOURCE_SUFFIX`, `generate(tk, target) -> str` (the
source `tilelang build` writes), `compile(tk, target) -> Launcher`, where a launcher
is called with a `BoundCall` (arguments already checked by
`tilelang.runtime.args.bind`), and optionally the ahead-of-time trio behind `tilelang build` and
`tilelang.load_build`: `build_aot(tk, out_dir, target) -> [files written]`, `aot_target(target)`
(the full name of the target built for) and `aot_artifact(files) -> (file, has_binary)`, with
`load_aot(tk, file) -> Launcher`, which needs no compiler where `has_binary`.
A launcher may also offer `fast(call) -> Launch | None`: a launch prepared once for
every later call with `call`'s signature (`tilelang.runtime.dispatch`), which takes
just the call's tensors and scalars.  Backends never import each other.
"""
from __future__ import annotations

import importlib

from ..diagnostics import TileError, did_you_mean

BACKENDS = {
    "reference": "tilelang.backends.reference",
    "triton": "tilelang.backends.triton",
    "tvm": "tilelang.backends.tvm",
    "cuda": "tilelang.backends.cuda",
}


def get_backend(name: str):
    if name not in BACKENDS:
        raise TileError(f"unknown backend '{name}'",
                        hint=did_you_mean(name, BACKENDS, "backends: " + ", ".join(BACKENDS)))
    try:
        return importlib.import_module(BACKENDS[name])
    except ImportError as e:
        raise TileError(f"backend '{name}' is not available here: {e}",
                        hint="install its dependencies (see README)") from None
