"""Global memory: tile-indexed windows as masked Triton loads and stores, bit-packed integers, dequant.

A window `A[i, j]` of a tile shaped [R, C] covers rows i*R .. i*R+R-1 and columns
j*C .. j*C+C-1 (leading tensor dims beyond the tile's rank are plain indices).
Each tile dim gets a vector of element offsets from `tl.arange`; the mask
compares them with the tensor's dims, so reads past an edge give `pad` and
writes there are dropped, exactly as in the interpreter.  Tensors are
contiguous (the runtime checks), so strides are products of dims.
"""
from __future__ import annotations

import math
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
    terms: tuple[tuple[str, ...], ...]  # per tensor dim: its bound checks (leading dims' are scalars)


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
    offs, vecs, dim_terms = [], [], []
    for d, (idx, ext, dim) in enumerate(zip(ref.indices, full, p.dims)):
        stop = None
        if isinstance(idx, N.ElemOffset):  # an element offset: the start itself, bounded by `stop` too
            stop = None if idx.stop is None else em.expr(idx.stop).code
            idx, ext_scale = idx.start, 1
        else:
            ext_scale = ext
        c = const_value(idx)
        in_bounds = stop is None and isinstance(c, int) and isinstance(dim, int) and 0 <= c and c * ext_scale + ext <= dim
        checks_low = not em.is_nonneg(idx)
        if d < rank - t:  # a leading dim: a scalar index
            code = em.expr(idx).code
            offs.append(code)
            vecs.append(None)
        else:
            if isinstance(c, int):
                start = f"{c * ext_scale} + " if c else ""
            else:
                i = em.expr(idx).code
                start = f"{i} + " if ext_scale == 1 else f"{i} * {ext_scale} + "
            vec = em.fresh("o")
            em.line(f"{vec} = {start}tl.arange(0, {ext})")
            code = vec + expand(d - (rank - t), t)
            offs.append(code)
            vecs.append(vec)
        checks = [] if in_bounds else [f"({code} < {dim_code(em, dim)})"] + ([f"({code} >= 0)"] if checks_low else [])
        if stop is not None:
            checks.append(f"({code} < {stop})")
        dim_terms.append(tuple(checks))
    return Window(p, tuple(offs), tuple(vecs), _mask(em, dim_terms, rank - t, tuple(shape)), tuple(dim_terms))


def _mask(em: Emitter, dim_terms, lead: int, shape: tuple[int, ...]) -> str | None:
    """A name for the conjunction of per-dim bound checks (the first `lead` dims' are scalars), a block
    shaped `shape`; None if there are none."""
    terms = [c for ts in dim_terms[lead:] for c in ts]
    scalar_terms = [c for ts in dim_terms[:lead] for c in ts]
    if not terms and not scalar_terms:
        return None
    # A scalar condition enters a block mask through where(): the interpreter turns `scalar & block`
    # into an int32 mask that tl.load rejects (compiled Triton does not care).
    code = " & ".join(terms) if terms else f"tl.full({shape}, True, tl.int1)"
    if scalar_terms:
        code = f"tl.where({' & '.join(scalar_terms)}, {code}, False)"
    return em.bind(code, "m")


def _ptr(em: Emitter, w: Window) -> str:
    off = _horner(em, w.offs, w.tensor.dims)
    return em.names[w.tensor.name] + ("" if off is None else f" + ({off})")


def read_scalar(em: Emitter, ref: N.GlobalRef) -> str:
    """Code for one element of a tensor at element indices (a 0-d block), 0 where they fall outside it."""
    p = em.tk.tensor(ref.tensor)
    offs = [em.expr(i).code for i in ref.indices]
    checks = [f"({o} < {dim_code(em, d)})" for o, d in zip(offs, p.dims)]
    checks += [f"({o} >= 0)" for o, i in zip(offs, ref.indices) if not em.is_nonneg(i)]
    off = _horner(em, [o if o == "0" else f"({o})" for o in offs], p.dims)
    ptr = em.names[p.name] + ("" if off is None else f" + ({off})")
    return f"tl.load({ptr}, mask={' & '.join(checks)}, other=0)"


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


def atomic_add(em: Emitter, value: Val, shape: tuple[int, ...], ref: N.GlobalRef) -> None:
    """Add a tile's value into the window atomically, converted to the tensor's dtype; nothing past the edges."""
    w = window(em, ref, shape)
    code = convert(value.code, value.dtype, w.tensor.dtype)
    mask = "" if w.mask is None else f", mask={w.mask}"
    em.line(f"tl.atomic_add({_ptr(em, w)}, {code}{mask}, sem='relaxed')")


def unpack(em: Emitter, ref: N.GlobalRef, shape: tuple[int, ...], raw: bool = False) -> tuple[str, Window]:
    """The i32 values of a window of a bit-packed tensor (rows are LSB-first bit streams), 0 outside it.

    With `raw` (for dequant, which masks its result) signed values stay in their `bits`-bit two's
    complement form and elements outside the tensor are unspecified.  Widths dividing 8 read whole
    bytes, once each (`_whole_bytes`); otherwise element c of a row occupies bits c*b .. c*b+b-1 and
    may straddle two bytes, so each element reads its byte and the next one where it does."""
    p = em.tk.tensor(ref.tensor)
    bits, w = p.dtype.bits, window(em, ref, shape)
    k = p.dims[-1]
    row_bytes = str((k * bits + 7) // 8) if isinstance(k, int) else em.bind(_row_bytes(em.names[k], bits), "rb")
    rows = _horner(em, w.offs[:-1], p.dims[:-1])
    base = em.names[p.name] + ("" if rows is None else f" + {paren(rows)} * {row_bytes}")
    if _whole_bytes_fit(em, shape, bits):
        code = _whole_bytes(em, ref, w, shape, bits, base, row_bytes)
        if w.mask is not None and not raw:
            code = f"tl.where({w.mask}, {code}, 0)"
    else:
        col = w.vecs[-1]
        byte = em.bind(f"({col} * {bits}) >> 3", "byte")
        shift = em.bind(f"({col} * {bits}) & 7", "sh")
        x = expand(len(shape) - 1, len(shape))
        ptr = f"{base} + {byte}{x}"
        mask = "" if w.mask is None else f", mask={w.mask}"
        lo = f"tl.load({ptr}{mask}, other=0).to(tl.int32)"
        if 8 % bits:
            straddles = f"({shift}{x} > {8 - bits})"
            hi = f"tl.load({ptr} + 1, mask={straddles if w.mask is None else f'{w.mask} & {straddles}'}, other=0)"
            code = f"((({lo}) | ({hi}.to(tl.int32) << 8)) >> {shift}{x}) & {(1 << bits) - 1}"
        else:
            code = f"({lo} >> {shift}{x}) & {(1 << bits) - 1}"
    if p.dtype.is_signed and not raw:
        v = em.bind(code, "q")
        code = f"tl.where({v} >= {1 << (bits - 1)}, {v} - {1 << bits}, {v})"
    return code, w


def _whole_bytes_fit(em: Emitter, shape: tuple[int, ...], bits: int) -> bool:
    """Whether `_whole_bytes` applies: fields do not straddle bytes, tile rows are whole bytes, and
    the bytes fill a 16-byte vector per thread.  Compiled with Triton 3.6, the interleaving gave wrong
    gemm results on smaller tiles ([16, 16] u4 and u2 feeding tl.dot; the interpreter was right);
    tiles from 16 bytes per thread up checked out on the GPU, so smaller ones keep per-element reads."""
    if 8 % bits or shape[-1] * bits % 8:
        return False
    return math.prod(shape) * bits // 8 >= 16 * em.tk.threads


def _row_bytes(k: str, bits: int) -> str:
    """Code for cdiv(k * bits, 8).  For widths dividing 8 it is spelled as repeated halving,
    `c - c // 2`, which Triton's alignment analysis follows (a `+ 7` would hide that a k divisible
    by 16 gives rows of whole 8-byte words), so whole-byte loads can be vectorized."""
    if 8 % bits:
        return f"({k} * {bits} + 7) // 8"
    for _ in range((8 // bits).bit_length() - 1):
        k = f"{k} - {k} // 2" if k.isidentifier() else f"{paren(k)} - {paren(k)} // 2"
    return k


def _whole_bytes(em: Emitter, ref: N.GlobalRef, w: Window, shape: tuple[int, ...], bits: int, base: str,
                 row_bytes: str) -> str:
    """The unsigned fields of a window whose columns cover whole bytes: one (vectorizable) load of the
    bytes, then each byte's 8 // bits fields split off and interleaved back into column order."""
    nb = shape[-1] * bits // 8
    idx = ref.indices[-1]
    c = const_value(idx)
    start = (f"{c * nb} + " if c else "") if isinstance(c, int) else f"{em.expr(idx).code} * {nb} + "
    vec = em.bind(f"{start}tl.arange(0, {nb})", "ob")
    x = expand(len(shape) - 1, len(shape))
    cols = (f"({vec}{x} < {row_bytes})",) + (() if em.is_nonneg(idx) else (f"({vec}{x} >= 0)",))
    mask = _mask(em, w.terms[:-1] + (cols,), len(w.terms) - len(shape), shape[:-1] + (nb,))
    b = em.bind(f"tl.load({base} + {vec}{x}" + ("" if mask is None else f", mask={mask}, other=0") + ").to(tl.int32)",
                "by")
    fields = [b if i == 0 and bits == 8 else f"({b} >> {i * bits})" if i * bits + bits == 8 else
              f"({b} >> {i * bits}) & {(1 << bits) - 1}" if i else f"{b} & {(1 << bits) - 1}"
              for i in range(8 // bits)]

    def interleave(vals):  # [v0, v1, ...] -> a [..., len] block with v_i at position i of the last dim
        if len(vals) == 1:
            return vals[0]
        return f"tl.join({interleave(vals[0::2])}, {interleave(vals[1::2])})"
    return f"tl.reshape({interleave(fields)}, {tuple(shape)})"


def _to_f32(em: Emitter, q: str, dt: DType) -> str:
    """Packed integer fields (raw two's complement if signed) as exact f32 values without an int-to-float
    conversion instruction (a quarter-rate op): OR the field into the mantissa of 2^23 and subtract."""
    if dt.is_signed:  # offset binary: the field XOR 2^(b-1) is value + 2^(b-1)
        half = 1 << (dt.bits - 1)
        return f"(({paren(q)} ^ {half}) | 0x4B000000).to(tl.float32, bitcast=True) - {float(2**23 + half)!r}"
    return f"({paren(q)} | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0"


def _group_index(em: Emitter, s: N.Dequant, w: Window, shape: tuple[int, ...], last_dim) -> tuple[str, int]:
    """The column of S and Z for the window's columns, clamped like the interpreter's, and how many
    consecutive tile columns share one: a scalar when the group spans the tile (G % BK == 0), a vector
    of BK // G groups when the tile spans whole groups, else one index per column."""
    g, bk = const_value(s.group), shape[-1]
    kg = f"{dim_code(em, last_dim)} - 1"
    idx = s.src.indices[-1]
    if isinstance(g, int) and (g % bk == 0 or bk % g == 0):
        c = const_value(idx)
        start = str(c * bk) if isinstance(c, int) else f"{paren(em.expr(idx).code)} * {bk}"
        first = f"{start} // {g}"
        if not em.is_nonneg(idx):
            first = f"tl.maximum({first}, 0)"
        if g % bk == 0:
            return em.bind(f"tl.minimum({first}, {kg})", "g"), bk
        vec = em.bind(f"tl.minimum({first} + tl.arange(0, {bk // g}), {kg})", "g")
        return vec + expand(len(shape) - 1, len(shape)), g
    col = f"tl.maximum({w.vecs[-1]}, 0)" if not em.is_nonneg(idx) else w.vecs[-1]
    vec = em.bind(f"tl.minimum({col} // {em.expr(s.group).code}, {kg})", "g")
    return vec + expand(len(shape) - 1, len(shape)), 1


def _spread(code: str, shape: tuple[int, ...], share: int) -> str:
    """A [..., BK // share] block of per-group values repeated `share` times along the last dim."""
    if share in (1, shape[-1]):
        return code
    r = len(shape)
    wide_shape = shape[:-1] + (shape[-1] // share, share)
    return f"tl.reshape(tl.broadcast_to({code}[{', '.join([':'] * r)}, None], {wide_shape}), {tuple(shape)})"


def dequant(em: Emitter, s: N.Dequant) -> str:
    """Code for `(q - zero[r, c // group]) * scale[r, c // group]` in f32, rounded to the tile's dtype, 0 outside W.

    Scales and zeros are read once per group and row where the group size is a compile-time
    multiple or divisor of the tile's width, and broadcast; packed fields become f32 by `_to_f32`."""
    dst = em.tk.tiles[s.dst.name]
    shape = dst.shape
    p = em.tk.tensor(s.src.tensor)
    g = const_value(s.group)
    if g is not None and g < 1:
        raise TileError(f"group size {g} must be positive", s.group.loc)
    if p.dtype.is_packed:
        raw, w = unpack(em, s.src, shape, raw=True)
        q = em.bind(_to_f32(em, raw, p.dtype), "q")
    else:
        w = window(em, s.src, shape)
        raw = f"tl.load({_ptr(em, w)}" + ("" if w.mask is None else f", mask={w.mask}, other=0") + ")"
        q = em.bind(f"{paren(raw)}.to(tl.float32)", "q")
    rows = _mask(em, w.terms[:-1], len(w.terms) - len(shape), shape[:-1] + (1,))
    out, cols = q, {}
    for name, stem in ((s.zero, "z"), (s.scale, "s")):
        if name is None:
            continue
        t = em.tk.tensor(name)
        if t.dims[-1] not in cols:
            cols[t.dims[-1]] = _group_index(em, s, w, shape, t.dims[-1])
        col, share = cols[t.dims[-1]]
        off = _horner(em, w.offs[:-1] + (col,), t.dims)
        mask = "" if rows is None else f", mask={rows}, other=0"
        v = em.bind(_spread(f"tl.load({em.names[name]} + ({off}){mask}).to(tl.float32)", shape, share), stem)
        out = f"({out} - {v})" if stem == "z" else f"{out} * {v}"
    if w.mask is not None:
        out = f"tl.where({w.mask}, {out}, 0.0)"
    return convert(out, f32, dst.dtype)
