"""Python names for a kernel's identifiers in generated Triton code.

User names come from the grammar's NAME regex, but they reach generated source, so
they are checked again here and given a prefix by kind (`p_` tensor pointers, `d_`
dims, `s_` scalars, `t_` tiles): a tile named `tl`, `range` or `def` then cannot
shadow Triton or Python.  Generated temporaries start with `_`, which no prefixed
name does.
"""
from __future__ import annotations

import re

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.visit import walk_stmts

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_ident(name: str, loc=None) -> str:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise TileError(f"{name!r} is not a valid identifier", loc,
                        hint="names are letters, digits and '_', not starting with a digit")
    return name


class Names:
    """The generated name of every tensor, dim, scalar and tile of one kernel."""

    def __init__(self, kernel: N.Kernel):
        self.kernel_fn = check_ident(kernel.name, kernel.loc) + "_kernel"
        self._map: dict[str, str] = {}
        for p in kernel.tensors:
            self._add(p.name, "p_", p.loc)
        for d in kernel.dim_symbols:
            self._add(d, "d_", kernel.loc)
        for p in kernel.scalars:
            self._add(p.name, "s_", p.loc)
        for s in walk_stmts(kernel.body):
            if isinstance(s, (N.Let, N.For, N.ReadScalar)):
                self._add(s.var if isinstance(s, N.For) else s.name, "s_", s.loc)
            elif isinstance(s, (N.Alloc, N.Assign)):
                self._add(s.name, "t_", s.loc)

    def _add(self, name: str, prefix: str, loc) -> None:
        self._map.setdefault(check_ident(name, loc), prefix + name)

    def __getitem__(self, name: str) -> str:
        return self._map[name]
