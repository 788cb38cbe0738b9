"""tilelang: a tile-level GPU kernel language with inferred layouts and pluggable backends."""
from . import tracebacks
from .diagnostics import InternalError, TileError, Unsupported
from .kernel import TileKernel, load, loads, tile_kernel
from .prebuilt import load_build
from . import kernels  # noqa: E402 - the library: tilelang.kernels.rmsnorm

__version__ = "0.1.0"
__all__ = ["InternalError", "TileError", "TileKernel", "Unsupported", "kernels", "load", "load_build", "loads",
           "tile_kernel", "__version__"]

tracebacks.install()
