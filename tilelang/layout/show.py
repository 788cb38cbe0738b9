"""`tilelang show --layouts` / `--draw DIR`: a kernel's inferred layouts as text and pictures.

Text: per tile its layout in annotation form (paste it as `layout=` to pin it), why it
has it, and a grid of the top-left corner: for register tiles each element's holder
`T<thread>V<register>` (CuTe's TV pictures), for shared tiles the 16-byte chunk each
chunk of a row is stored at (swizzles show as permuted columns). Then per statement the
instructions and mappings chosen. Pictures: one PNG per tile, cells coloured by thread
(register tiles) or by the bank group a 16-byte chunk lands in (shared tiles).
"""

from __future__ import annotations

import colorsys
from pathlib import Path

from ..ir.printer import stmt_lines
from ..passes.infer import TypedKernel
from . import png, tv
from .cost import offset_table
from .infer import infer_layouts
from .plan import AssignPlan, CopyPlan, DequantPlan, GemmPlan, LayoutPlan, TileLayout

GRID_ROWS, GRID_COLS = 16, 16  # text grids show at most this corner
DRAW_ROWS, DRAW_COLS = 64, 64  # pictures show at most this corner


def layouts_text(tk: TypedKernel, plan: LayoutPlan | None = None, target=None) -> str:
    """The plan the backends emit for `target` (default: the default GPU target)."""
    plan = plan or infer_layouts(tk, target)
    warps = plan.threads // 32
    lines = [f"layouts of kernel {plan.kernel} for {plan.target}: {plan.threads} threads ({warps} warps)",
             f"cost: {plan.cost}", ""]
    for t in plan.tiles:
        lines += _tile_text(t)
        lines.append("")
    lines.append("statements")
    for p in plan.stmts:
        lines += _stmt_text(p)
    return "\n".join(lines) + "\n"


def _tile_text(t: TileLayout) -> list[str]:
    if t.storage == "virtual":
        return [f"tile {t.name}: {t.type}", "  layout  none: not stored", f"  why     {t.origin}"]
    where = " (kept in shared memory)" if t.storage == "resident" else ""
    out = [f"tile {t.name}: {t.type}{where}", f"  layout  {t.expr}"]
    if t.mapping is not None:
        m = t.mapping
        rep = tv.replication(m)
        out.append(f"          {m.values_per_thread} value{'s' if m.values_per_thread != 1 else ''} per thread" +
                   (f", each element held by {rep} threads" if rep > 1 else ""))
        out.append(f"  why     {t.origin}")
        out += ["  " + line for line in _tv_grid(m)]
    else:
        s = t.shared
        out.append(f"          {s.scheme}; {s.cosize * s.elem_bytes} bytes; {t.bank_conflicts} bank conflicts")
        out.append(f"  why     {t.origin}")
        out += ["  " + line for line in _chunk_grid(t)]
    return out


def _corner(shape: tuple[int, ...], rows: int, cols: int) -> tuple[int, int, str]:
    r = shape[-2] if len(shape) >= 2 else 1
    c = shape[-1]
    lead = ", ".join("0" for _ in shape[:-2])
    view = f"[{lead + ', ' if lead else ''}{'rows 0-' + str(min(r, rows) - 1) + ', ' if len(shape) >= 2 else ''}" \
           f"cols 0-{min(c, cols) - 1}]"
    return min(r, rows), min(c, cols), view


def _cell_coord(shape, i: int, j: int) -> tuple[int, ...]:
    return (0,) * (len(shape) - 2) + (i, j) if len(shape) >= 2 else (j,)


def _tv_grid(m) -> list[str]:
    shape = m.shape
    rows, cols, view = _corner(shape, GRID_ROWS, GRID_COLS)
    cells = [[_holder(m, _cell_coord(shape, i, j)) for j in range(cols)] for i in range(rows)]
    width = max(len(c) for row in cells for c in row)
    return [f"holders {view} (T thread, V register index; lowest thread if replicated):"] + \
        ["  " + " ".join(c.rjust(width) for c in row) for row in cells]


def _holder(m, coord) -> str:
    t, v = m.thread_of(coord)[0]
    return f"T{t}V{v}"


def _chunk_grid(t: TileLayout) -> list[str]:
    s = t.shared
    per_chunk = max(16 // s.elem_bytes, 1)
    if s.cols % per_chunk:
        return []
    off = offset_table(s)
    rows = min(s.rows, 8)
    chunks = min(s.cols // per_chunk, GRID_COLS)
    head = f"16-byte chunks [rows 0-{rows - 1}, chunks 0-{chunks - 1}]: stored at chunk (row-relative):"
    grid = []
    for r in range(rows):
        base = off[r, 0] // per_chunk - (off[r, 0] // per_chunk) % max(s.cols // per_chunk, 1)
        grid.append("  " + " ".join(f"{off[r, c * per_chunk] // per_chunk - base:2d}" for c in range(chunks)))
    return [head] + grid


def _stmt_text(p) -> list[str]:
    head = f"  {stmt_lines(p.stmt, indent='')[0].rstrip(';')}"
    if isinstance(p, CopyPlan):
        rep = f", stored by 1 of {p.replicas} replicas" if p.replicas > 1 and p.instrs[-1].role == "store" else ""
        conv = f", conversion: {p.conversion}" if p.conversion != "none" else ""
        return [head, f"      {_instrs(p.instrs)}{conv}{rep}", f"      {_who(p.mapping, p.vector)}"]
    if isinstance(p, GemmPlan):
        if p.kind == "fma":
            return [head, f"      {_instrs(p.instrs)} ({p.why or 'no tensor-core instruction fits'})"]
        if p.kind == "wgmma":
            t = p.tiling
            return [head, f"      {p.grid}, {t.mi} x m64n{t.inst_n}k16{f' x {t.nsplit}' if t.nsplit > 1 else ''} per "
                          f"warpgroup: {_instrs(p.instrs)}; operands by descriptor (A {_major(p.a_desc)}, "
                          f"B {_major(p.b_desc)})", f"      C {p.c!r}"]
        return [head, f"      {p.grid}: {_instrs(p.instrs)}" + (f" ({p.why})" if p.why else ""),
                f"      A {p.a!r}", f"      B {p.b!r}", f"      C {p.c!r}"]
    if isinstance(p, DequantPlan):
        return [head, f"      {_instrs(p.instrs)}", f"      {_who(p.mapping, p.vector)}"]
    if isinstance(p, AssignPlan):
        out = [head]
        for c in p.conversions:
            out.append(f"      convert {_path(c.path)} ({c.kind}): {c.src!r} -> {c.dst!r}")
        for r in p.reduces:
            masks = ", ".join(map(str, r.xor_masks)) or "none"
            warps = f", then {r.cross_warp} warps through shared memory" if r.cross_warp > 1 else ""
            out.append(f"      reduce {_path(r.path)} over axis {r.axis}: {r.in_thread} in-thread, "
                       f"shuffle xor {masks}{warps}")
        return out
    return [head]


def _who(mapping, vector: int) -> str:
    if mapping is None:
        return f"threads sweep the tile, {vector} element{'s' if vector > 1 else ''} at a time"
    return f"mapping {mapping!r}, runs of {vector}"


def _major(d) -> str:
    return "K-major" if d.k_major else "MN-major"


def _path(path) -> str:
    return "value" if not path else "value." + ".".join(map(str, path))


def _instrs(instrs) -> str:
    return ", ".join(f"{i.name} [{i.role}, {i.vector}/thread]" for i in instrs)


# ----------------------------------------------------------------------------- pictures

def draw_layouts(tk: TypedKernel, out_dir: Path, plan: LayoutPlan | None = None) -> list[Path]:
    """One PNG per tile in `out_dir` (`<kernel>.<tile>.png`); returns the paths written."""
    plan = plan or infer_layouts(tk)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in plan.tiles:
        if t.storage == "virtual":
            continue
        path = out_dir / f"{plan.kernel}.{t.name}.png"
        png.write(path, _picture(t))
        paths.append(path)
    return paths


def _picture(t: TileLayout) -> png.Canvas:
    shape = t.type.shape
    rows, cols, view = _corner(shape, DRAW_ROWS, DRAW_COLS)
    lines: list[list[tuple[str, tuple[int, int, int]]]] = []
    if t.mapping is not None:
        for i in range(rows):
            row = []
            for j in range(cols):
                th, v = t.mapping.thread_of(_cell_coord(shape, i, j))[0]
                row.append((f"T{th}\nV{v}", _thread_colour(th)))
            lines.append(row)
        rep = tv.replication(t.mapping)
        held = f"  (each element held by {rep} threads; lowest shown)" if rep > 1 else ""
        title = f"{t.name}: register {t.type.dtype}{list(shape)} {view}  {t.expr}{held}"
    else:
        s = t.shared
        off = offset_table(s)
        for i in range(min(rows, s.rows)):
            row = []
            for j in range(min(cols, s.cols)):
                o = int(off[i, j])
                row.append((str(o), _thread_colour((o * s.elem_bytes // 16) % 8)))
            lines.append(row)
        title = f"{t.name}: shared {t.type.dtype}{list(shape)} {view}  {t.expr}  (offsets; colour = bank group)"
    return png.grid_picture(title, lines)


def _thread_colour(t: int) -> tuple[int, int, int]:
    hue = (t * 0.6180339887) % 1.0
    r, g, b = colorsys.hls_to_rgb(hue, 0.78, 0.65)
    return int(r * 255), int(g * 255), int(b * 255)
