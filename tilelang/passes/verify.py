"""Checks that a typed kernel fits the machine model: threads, registers, shared memory."""
from __future__ import annotations

from ..diagnostics import TileError
from ..ir import nodes as N
from ..ir.visit import walk_stmts
from .infer import TypedKernel

MAX_THREADS = 1024
MAX_VALUES_PER_THREAD = 1024  # one register tile, in elements per thread
MAX_SHARED_BYTES = 227 * 1024  # Hopper's per-block limit


def verify(tk: TypedKernel) -> TypedKernel:
    k = tk.kernel
    threads = tk.threads
    if threads < 32 or threads > MAX_THREADS or threads % 32:
        raise TileError(f"{threads} threads per block: use a multiple of 32 from 32 to {MAX_THREADS}",
                        k.threads.loc)
    shared = 0
    for s in walk_stmts(k.body):
        name = s.name if isinstance(s, (N.Alloc, N.Assign)) else None
        if name is None:
            continue
        t = tk.tiles[name]
        if t.scope == "shared":
            shared += t.numel * max(t.dtype.bits, 8) // 8
            if shared > MAX_SHARED_BYTES:
                raise TileError(f"shared tiles need {shared} bytes once '{name}' ({t}) is allocated; "
                                f"a block has at most {MAX_SHARED_BYTES}", s.loc, hint="use smaller shared tiles")
        elif isinstance(s, N.Alloc) or s.define:
            per_thread = -(-t.numel // threads)
            if per_thread > MAX_VALUES_PER_THREAD:
                raise TileError(f"tile '{name}' ({t}) does not fit its launch: {per_thread} values per thread "
                                f"with {threads} threads", s.loc,
                                hint=f"use smaller tiles or more threads (at most {MAX_VALUES_PER_THREAD} "
                                     "values per thread)")
    return tk
