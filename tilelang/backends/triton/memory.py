"""Global memory: tile-indexed windows as masked Triton loads and stores, bit-packed integers, dequant.

A window `A[i, j]` of a tile shaped [R, C] covers rows i*R .. i*R+R-1 and columns
j*C .. j*C+C-1 (leading tensor dims beyond the tile's rank are plain indices).
Each tile dim gets a vector of element offsets from `tl.arange`; the mask
compares them with the tensor's dims, so reads past an edge give `pad` and
writes there are dropped, exactly as in the interpreter.  Tensors are
contiguous (the runtime checks), so strides are products of dims.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.dtypes import DType, bool_, f32, i32
from ...ir.types import TileType
from .exprs import Emitter, Val, const_value, convert_like_interpreter, expand, literal, paren, tl_dtype, wide


@dataclass(frozen=True)
class Window:
    tensor: N.TensorParam
    offs: tuple[str, ...]  # per tensor dim: the offsets, broadcast to the tile's rank, or a scalar index
    vecs: tuple[str | None, ...]  # per tensor dim: the 1-d offset vector of a tile dim, None for leading dims
    mask: str | None  # a name, or None where the window is statically in bounds


def dim_code(em: Emitter, d) -> str:
    return str(d) if isinstance(d, int) else em.names[d]


def _horner(em: Emitter, offs, dims) -> str | None:
    """Row-major linear offset sum(offs[d] * prod(dims[d+1:])); None for a constant 0."""
    acc = None
    for d, o in enumerate(offs):
        if acc is not None:
            acc = f"({acc}) * {dim_code(em, dims[d])}" if " + " in acc else f"{acc} * {dim_code(em, dims[d])}"
        if o != "0":
            acc = o if acc is None else f"{acc} + {o}"
    return acc


def window(em: Emitter, ref: N.GlobalRef, shape: tuple[int, ...]) -> Window:
    p = em.tk.tensor(ref.tensor)
    rank, t = len(p.dims), len(shape)
    full = (1,) * (rank - t) + tuple(shape)
    offs, vecs, terms, scalar_terms = [], [], [], []
    for d, (idx, ext, dim) in enumerate(zip(ref.indices, full, p.dims)):
        c = const_value(idx)
        in_bounds = isinstance(c, int) and isinstance(dim, int) and 0 <= c and (c + 1) * ext <= dim
        checks_low = not em.is_nonneg(idx)
        if d < rank - t:  # a leading dim: a scalar index
            code = em.expr(idx).code
            offs.append(code)
            vecs.append(None)
        else:
            if isinstance(c, int):
                start = f"{c * ext} + " if c else ""
            else:
                i = em.expr(idx).code
                start = f"{i} + " if ext == 1 else f"{i} * {ext} + "
            vec = em.fresh("o")
            em.line(f"{vec} = {start}tl.arange(0, {ext})")
            code = vec + expand(d - (rank - t), t)
            offs.append(code)
            vecs.append(vec)
        if not in_bounds:
            into = terms if d >= rank - t else scalar_terms
            into.append(f"({code} < {dim_code(em, dim)})")
            if checks_low:
                into.append(f"({code} >= 0)")
    if not terms and not scalar_terms:
        return Window(p, tuple(offs), tuple(vecs), None)
    # A scalar condition enters a block mask through where(): the interpreter turns `scalar & block`
    # into an int32 mask that tl.load rejects (compiled Triton does not care).
    code = " & ".join(terms) if terms else f"tl.full({tuple(shape)}, True, tl.int1)"
    if scalar_terms:
        code = f"tl.where({' & '.join(scalar_terms)}, {code}, False)"
    mask = em.fresh("m")
    em.line(f"{mask} = {code}")
    return Window(p, tuple(offs), tuple(vecs), mask)


def _ptr(em: Emitter, w: Window) -> str:
    off = _horner(em, w.offs, w.tensor.dims)
    return em.names[w.tensor.name] + ("" if off is None else f" + ({off})")


def convert(code: str, have: DType, want: DType) -> str:
    if have == want:
        return code
    if want == bool_:
        return f"({code} != 0)"
    return f"{paren(code)}.to({tl_dtype(want)})"


def load(em: Emitter, ref: N.GlobalRef, dst: TileType, pad: N.Expr | None) -> str:
    """Code for the window read as `dst`'s dtype, `pad` outside the tensor."""
    p = em.tk.tensor(ref.tensor)
    if p.dtype.is_packed:  # elements outside read as 0 here
        code, w = unpack(em, ref, dst.shape)
        src = i32
    else:
        w = window(em, ref, dst.shape)
        code, src = None, p.dtype
    if w.mask is None:
        return convert(code or f"tl.load({_ptr(em, w)})", src, dst.dtype)
    padv = 0 if pad is None else const_value(pad)
    if padv is not None and convert_like_interpreter(padv, src).item() == padv:  # pad is exact in the source dtype
        if code is None:
            code = f"tl.load({_ptr(em, w)}, mask={w.mask}, other={literal(padv)})"
        elif padv != 0:
            code = f"tl.where({w.mask}, {code}, {literal(padv)})"
        return convert(code, src, dst.dtype)
    # the interpreter pads after widening: select in the wide type, then convert
    compute = wide(src)
    val = code or f"tl.load({_ptr(em, w)}, mask={w.mask})"
    pad_code = literal(padv) if padv is not None else em.scalar_const(pad, compute)
    return convert(f"tl.where({w.mask}, {convert(val, src, compute)}, {pad_code})", compute, dst.dtype)


def store(em: Emitter, value: Val, shape: tuple[int, ...], ref: N.GlobalRef) -> None:
    """Write a tile's value into the window, converted to the tensor's dtype; nothing past the edges."""
    w = window(em, ref, shape)
    code = convert(value.code, value.dtype, w.tensor.dtype)
    mask = "" if w.mask is None else f", mask={w.mask}"
    em.line(f"tl.store({_ptr(em, w)}, {code}{mask})")


def unpack(em: Emitter, ref: N.GlobalRef, shape: tuple[int, ...]) -> tuple[str, Window]:
    """The i32 values of a window of a bit-packed tensor (rows are LSB-first bit streams).

    Element c of a row occupies bits c*b .. c*b+b-1; with b not dividing 8 it may
    straddle two bytes, so the next byte is read too where it does."""
    p = em.tk.tensor(ref.tensor)
    bits, w = p.dtype.bits, window(em, ref, shape)
    k = p.dims[-1]
    row_bytes = str((k * bits + 7) // 8) if isinstance(k, int) else em.bind(f"({em.names[k]} * {bits} + 7) // 8", "rb")
    rows = _horner(em, w.offs[:-1], p.dims[:-1])
    col = w.vecs[-1]
    byte = em.bind(f"({col} * {bits}) >> 3", "byte")
    shift = em.bind(f"({col} * {bits}) & 7", "sh")
    x = expand(len(shape) - 1, len(shape))
    ptr = em.names[p.name] + ("" if rows is None else f" + {paren(rows)} * {row_bytes}") + f" + {byte}{x}"
    mask = "" if w.mask is None else f", mask={w.mask}"
    lo = f"tl.load({ptr}{mask}, other=0).to(tl.int32)"
    if 8 % bits:
        straddles = f"({shift}{x} > {8 - bits})"
        hi = f"tl.load({ptr} + 1, mask={straddles if w.mask is None else f'{w.mask} & {straddles}'}, other=0)"
        code = f"((({lo}) | ({hi}.to(tl.int32) << 8)) >> {shift}{x}) & {(1 << bits) - 1}"
    else:
        code = f"({lo} >> {shift}{x}) & {(1 << bits) - 1}"
    if p.dtype.is_signed:
        v = em.bind(code, "q")
        code = f"tl.where({v} >= {1 << (bits - 1)}, {v} - {1 << bits}, {v})"
    return code, w


def dequant(em: Emitter, s: N.Dequant) -> str:
    """Code for `(q - zero[r, c // group]) * scale[r, c // group]` in f32, rounded to the tile's dtype."""
    dst = em.tk.tiles[s.dst.name]
    p = em.tk.tensor(s.src.tensor)
    g = const_value(s.group)
    if g is not None and g < 1:
        raise TileError(f"group size {g} must be positive", s.group.loc)
    if p.dtype.is_packed:
        q, w = unpack(em, s.src, dst.shape)
    else:
        w = window(em, s.src, dst.shape)
        q = f"tl.load({_ptr(em, w)}" + ("" if w.mask is None else f", mask={w.mask}, other=0") + ")"
    x = expand(len(dst.shape) - 1, len(dst.shape))
    group_col = em.bind(f"{w.vecs[-1]} // {em.expr(s.group).code}", "g")
    q = em.bind(f"{paren(q)}.to(tl.float32)", "q")
    out = q
    for name, stem in ((s.zero, "z"), (s.scale, "s")):
        if name is None:
            continue
        t = em.tk.tensor(name)
        # the last index is clamped like the interpreter's; other dims are the weights' own
        last = f"tl.minimum({group_col}, {dim_code(em, t.dims[-1])} - 1){x}"
        off = _horner(em, w.offs[:-1] + (last,), t.dims)
        mask = "" if w.mask is None else f", mask={w.mask}, other=0"
        v = em.bind(f"tl.load({em.names[name]} + ({off}){mask}).to(tl.float32)", stem)
        out = f"({out} - {v})" if stem == "z" else f"{out} * {v}"
    return convert(out, f32, dst.dtype)
