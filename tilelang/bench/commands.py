"""The `tune` and `bench` subcommands of `tilelang` (registered by cli.py)."""
from __future__ import annotations


def register(sub) -> None:
    from . import library, tune
    t = sub.add_parser("tune", help="grid-search a kernel's constants on the GPU; table and heat map")
    tune.add_arguments(t)
    t.set_defaults(fn=tune.run)
    b = sub.add_parser("bench", help="time library kernels against their torch peers on the GPU (CUDA graphs)")
    library.add_arguments(b)
    b.set_defaults(fn=library.run)
