"""What `tilelang show --layouts` prints is what the TVM cuda lowering emits (read as text, no TVM).

TVM has no wgmma, so its cuda lowering follows the sm_80 plan.  For every kernel of the library,
in f16 and bf16, the plan's decisions are read back from the generated TVMScript, statement by
statement (each statement's code follows its `# file.tile:LINE:` comment):

* every register tile held in registers is a local array of the plan's values per thread;
  virtual tiles are never stored; resident tiles are shared buffers their definition writes;
* every swizzled shared tile is indexed through exactly the plan's swizzle, in every access;
* every gemm runs the plan's instruction: mma.sync over the plan's warp grid (k groups included)
  with the fragments it implies (ldmatrix, .trans where the plan's instruction is, or the
  operand's own registers where the plan holds it as the fragment), or the scalar loop;
* every global -> shared copy the plan vectorizes issues 16-byte cp.async; no other does.

Then the printing itself: the slot coordinates printed for a mapping evaluate to the mapping, and
the indices printed for a shared layout (every family, annotations included) to the plan's
offsets; and a layout the plan changes changes the code.
"""
from __future__ import annotations

import itertools
import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tilelang  # noqa: E402
from kernel_refs import load  # noqa: E402
from refusals import refused  # noqa: E402
from tilelang.backends.tvm import generate  # noqa: E402
from tilelang.backends.tvm import mapping as M  # noqa: E402
from tilelang.backends.tvm.emit import tir_dtype  # noqa: E402
from tilelang.backends.tvm.lower_cuda import PLAN_TARGET  # noqa: E402
from tilelang.backends.tvm.smem import SharedBuffer  # noqa: E402
from tilelang.layout import (column_spatial, infer_layouts, local, replicate, smem_col_major, smem_padded,  # noqa: E402
                             smem_row_major, smem_swizzled, spatial)
from tilelang.layout.plan import CopyPlan, GemmPlan  # noqa: E402
from tilelang.layout.shared import smem_gmma  # noqa: E402
from tilelang.layout.swizzle import Swizzle  # noqa: E402
from tilelang.ir import nodes as N  # noqa: E402
from tilelang.ir.visit import walk_stmts  # noqa: E402

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
CASES = [(f.stem, name, dt) for f in sorted(KERNELS.glob("*.tile")) for name in tilelang.load(f)
         for dt in ("f16", "bf16")]


def _lowered(file: str, name: str, dt: str):
    k = load(file)[name]
    return k.lower(**{c.name: dt for c in k.ir.consts if c.kind == "dtype" and c.default in ("f16", "bf16")})


def _sections(code: str) -> dict[int, str]:
    """Generated code per source line: the text after each `# file.tile:LINE:` comment, up to the next."""
    out: dict[int, str] = {}
    parts = re.split(r"^\s*# [^\n]*?\.tile:(\d+): .*$", code, flags=re.M)
    for line, text in zip(parts[1::2], parts[2::2]):
        out[int(line)] = out.get(int(line), "") + text
    return out


def _indices(code: str, buf: str) -> list[str]:
    """The index text of every access `buf[...]` (brackets matched)."""
    out = []
    for m in re.finditer(rf"\b{buf}\[", code):
        depth, i = 1, m.end()
        while depth:
            depth += {"[": 1, "]": -1}.get(code[i], 0)
            i += 1
        out.append(code[m.end():i - 1])
    return out


def _swizzle_term(sw: Swizzle, width: int) -> str:
    """The end of the XOR operand the lowering prints for a swizzle within rows of `width` elements."""
    read, write = sw.base + max(sw.shift, 0), sw.base - min(sw.shift, 0)
    shift = read - (width.bit_length() - 1)
    return (f" // {1 << shift}" if shift else "") + f" % {1 << sw.bits} * {1 << write})"


@pytest.mark.parametrize("file,name,dt", CASES, ids=[f"{f}.{n}.{d}" for f, n, d in CASES])
def test_generated_tvm_cuda_is_the_plan(file, name, dt):
    tk = _lowered(file, name, dt)
    if refused(f"{file}:{name}", "tvm", lambda: generate(tk, "cuda")):
        return
    plan = infer_layouts(tk, PLAN_TARGET)
    code = generate(tk, "cuda")
    sections = _sections(code)
    for t in plan.tiles:
        tdt = tir_dtype(t.type.dtype)
        if t.mapping is not None:
            assert f't_{t.name} = T.alloc_buffer(({t.mapping.values_per_thread},), "{tdt}", scope="local")' in code, \
                f"register tile '{t.name}' is not {t.mapping.values_per_thread} values per thread"
        elif t.storage == "virtual":
            assert not re.search(rf"\bt_{t.name}\b", code), f"virtual tile '{t.name}' was stored"
        else:
            lay = t.shared
            assert re.search(rf't_{t.name} = T.alloc_buffer\(\((\d+, )?{lay.rows}, {lay.cols},\), "{tdt}", '
                             r'scope="shared.dyn"\)', code), f"'{t.name}' is not a {lay.rows}x{lay.cols} shared buffer"
            accesses = _indices(code, f"t_{t.name}")
            if t.storage == "resident":  # written by its definition, in shared memory; never mirrored
                define = next(s for s in walk_stmts(tk.kernel.body) if isinstance(s, N.Assign) and s.name == t.name)
                assert f"t_{t.name}[" in sections[define.loc.line] and f"m_{t.name}" not in code
            if lay.swizzle is not None:  # the library's swizzles permute 16-byte chunks within rows
                term = _swizzle_term(lay.swizzle, lay.cols)
                assert accesses and all("T.bitwise_xor(" in a and term in a for a in accesses), \
                    f"shared tile '{t.name}' is not indexed through {lay.swizzle}"
    for p in plan.stmts:
        text = sections[p.stmt.loc.line]
        if isinstance(p, GemmPlan):
            if p.kind == "mma":
                t = p.tiling
                ab = {"f16": "fp16", "bf16": "bf16"}[tk.tiles[p.stmt.a.name].dtype.name]
                assert f'T.ptx_legacy.mma("m16n8k16", "row", "col", "{ab}", "{ab}", "fp32"' in text
                rows = f"tx // 32 // {t.wn}" + (f" % {t.wm}" if t.wk > 1 else "")
                assert f"({rows}) * {t.m // t.wm}" in text  # the warp grid's rows
                assert f"(tx // 32 % {t.wn}) * {t.n // t.wn}" in text  # and columns
                assert f"(fi * {t.ni} + fj) * 4" in text  # the accumulator's fragments
                steps = tk.tiles[p.stmt.a.name].shape[0 if p.stmt.trans_a else 1] // 16 // t.wk
                reads = {i.role: i for i in p.instrs}
                for ref, i in ((p.stmt.a, reads["A"]), (p.stmt.b, reads["B"])):
                    if i.name == "mov":  # the operand is held as the fragment: read from its registers
                        at = f"(fi * {steps} + gk - 1) * 8" if i.role == "A" else f"((gk - 1) * {t.ni} + fj) * 4"
                        assert f"t_{ref.name}.data, {at}" in text
                    else:
                        assert f"T.ptx_legacy.ldmatrix({i.name.endswith('.trans')}, " in text
                assert (f"add the partial sums of its {t.wk} k groups" in code) == (t.wk > 1)
            else:
                assert "ptx_legacy" not in text and "for gk in T.serial(" in text
        elif isinstance(p, CopyPlan) and isinstance(p.stmt.src, N.GlobalRef) and p.mapping is None:
            assert ("cp.async.cg.shared.global" in text) == (p.vector > 1), f"{p.stmt}: not a copy of {p.vector}"


def _library_mappings():
    seen = {}
    for file, name, _ in CASES[::2]:
        plan = infer_layouts(_lowered(file, name, "f16"), PLAN_TARGET)
        for t in plan.tiles:
            if t.mapping is not None:
                seen[(t.mapping, plan.threads)] = None
    return list(seen)


ANNOTATED = [(spatial(4, 8) * local(1, 4), 32), (spatial(4, 4) * local(1, 8), 32),
             (column_spatial(8, 4) * local(2, 2), 64), (replicate(2) * spatial(16) * local(4), 32),
             (local(2, 1) * column_spatial(4, 8) * local(2, 1), 32)]


@pytest.mark.parametrize("m,threads", _library_mappings() + ANNOTATED, ids=lambda x: repr(x))
def test_printed_slots_are_the_mapping(m, threads):
    """Slot v of thread tx visits element m(tx, v), for threads the guard lets in (all the mapping's)."""
    sl = M.held(m, threads)
    assert sl.count == m.values_per_thread
    for tx, v in itertools.product(range(threads), range(sl.count)):
        if sl.guard and not eval(sl.guard, {}, {"tx": tx}):
            assert tx >= m.num_threads
            continue
        assert tuple(eval(c, {}, {"tx": tx, "v": v}) for c in sl.coords) == m(tx, v)


LAYOUTS = [
    ((4, 64), smem_row_major(4, 64, 2)), ((2, 3, 16), smem_row_major(6, 16, 4)),
    *(((8, c), smem_swizzled(8, c, 2)) for c in (16, 32, 64, 128, 256)), ((16, 32), smem_swizzled(16, 32, 4)),
    ((16, 64), smem_padded(16, 64, 8)), ((16, 24), smem_col_major(16, 24, 2)),
    ((16, 16), smem_swizzled(16, 16, 4, Swizzle(3, 3, 3))),  # the swizzle moves elements across rows
    ((8, 64), smem_swizzled(8, 64, 2, Swizzle(2, 4, -2))),  # reads bits below the ones it writes
    ((2, 8, 64), smem_swizzled(16, 64, 2)), ((16, 128), smem_gmma(16, 128, 2)), ((8, 32), smem_gmma(8, 32, 4)),
]


@pytest.mark.parametrize("shape,layout", LAYOUTS, ids=lambda x: getattr(x, "scheme", None) or str(x))
def test_printed_indices_are_the_plan_offsets(shape, layout):
    """Every element's place in the TIR buffer (row-major over its dims) is the layout's offset."""
    buf = SharedBuffer(layout, shape)
    dims = buf.dims
    names = [f"c{i}" for i in range(len(shape))]
    idx = buf.index(tuple(names))
    env = {"T": type("T", (), {"bitwise_xor": staticmethod(lambda a, b: a ^ b)})}
    seen = set()
    for coord in itertools.product(*map(range, shape)):
        at = [eval(x, env, dict(zip(names, coord))) for x in idx]
        assert all(0 <= a < d for a, d in zip(at, dims)), (coord, at, dims)
        pos = 0
        for a, d in zip(at, dims):
            pos = pos * d + a
        row = 0
        for c, s in zip(coord[:-1], shape[:-1]):
            row = row * s + c
        assert pos == layout(row, coord[-1]), coord
        seen.add(pos)
    assert len(seen) == math.prod(shape) and math.prod(dims) >= layout.cosize


GEMM = (KERNELS / "gemm.tile").read_text()


def test_a_layout_the_plan_changes_changes_the_code():
    """Padding an operand drops the swizzle for a wider row; a column-major operand, which ldmatrix cannot
    read, makes the plan (and so the code) take the scalar loop with the buffer transposed."""
    def cuda(src):
        tk = tilelang.loads(src, "gemm.tile")["gemm"].lower(T="f16")
        return tk, generate(tk, "cuda")
    _, plain = cuda(GEMM)
    assert all("T.bitwise_xor(" in a for a in _indices(plain, "t_a"))
    tk, padded = cuda(GEMM.replace("a = shared(T[BM, BK]);", "a = shared(T[BM, BK], layout=padded(8));"))
    assert infer_layouts(tk, PLAN_TARGET).shared("a").row_stride == 40
    assert 't_a = T.alloc_buffer((3, 64, 40,), "float16"' in padded
    assert not any("T.bitwise_xor(" in a for a in _indices(padded, "t_a")) and "T.ptx_legacy.mma(" in padded
    tk, colmajor = cuda(GEMM.replace("a = shared(T[BM, BK]);", "a = shared(T[BM, BK], layout=col_major);"))
    assert [p.kind for p in infer_layouts(tk, PLAN_TARGET).stmts if isinstance(p, GemmPlan)] == ["fma"]
    assert 't_a = T.alloc_buffer((32, 64,), "float16"' in colmajor  # element copies: no cp.async ring
    assert "ptx_legacy" not in colmajor and "for gk in T.serial(32):" in colmajor


ADD = """
kernel add(X: f16[M, N], Y: f16[M, N], Z: f16[M, N], BM: const = 4, BN: const = 32)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    x = register(f16[BM, BN]LAYOUT);
    y = register(f16[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    copy(Y[block_id(0), block_id(1)], y);
    z = x + y;
    copy(z, Z[block_id(0), block_id(1)]);
}
"""


@pytest.mark.parametrize("layout,values,guard", [("", 4, ""), (", layout=spatial(4, 8) * local(1, 4)", 4, ""),
                                                 (", layout=spatial(4, 4) * local(1, 8)", 8, "tx < 16")])
def test_an_annotated_mapping_is_what_every_statement_computes_in(layout, values, guard):
    """The tiles computed together take the annotation: the add stays in registers (no mirror, no
    barrier), over fewer threads than the block where the annotation says so."""
    tk = tilelang.loads(ADD.replace("LAYOUT", layout), "add.tile")["add"].lower()
    text = generate(tk, "cuda")
    m = infer_layouts(tk, PLAN_TARGET).mapping("z")
    assert m == infer_layouts(tk, PLAN_TARGET).mapping("x")
    for name in ("x", "y", "z"):
        assert f't_{name} = T.alloc_buffer(({values},), "float16", scope="local")' in text
    assert not re.search(r"\bm_\w+\[", text) and "tvm_storage_sync" not in text
    assert ("if tx < 16:" in text) == bool(guard)
    assert "t_z[v] = T.Cast(\"float16\", (T.Cast(\"float32\", t_x[v]) + T.Cast(\"float32\", t_y[v])))" in text
