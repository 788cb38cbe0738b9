"""`Dequant`: w = (q - zero) * scale by group from packed integer fields, with the interpreter's f32
semantics. Runs of fields are loaded whole and, for f16/bf16 tiles, turned into pairs by bit tricks;
tensors stored in the plan's packed order load each thread's runs straight into its registers."""
from __future__ import annotations

from contextlib import nullcontext

from ...ir import nodes as N
from ...ir.dtypes import DType
from . import cexpr as cx
from . import ctype
from . import mapping as M
from .copies import Window
from .emitter import Emitter
from .expr import cname


class DequantEmitter(Emitter):
    """`Dequant` over a window of copies.py; inside a pipeline it reads the ring stage pipeline.py filled."""

    def visit_Dequant(self, s: N.Dequant) -> None:
        """w = (q - zero) * scale by group, as if in f32, rounded to the tile's dtype.

        Runs of `run` consecutive fields that start on a byte and fill a power-of-two number of
        bytes (1/2/4/8-bit fields) are loaded at once (up to 16 bytes); 4-bit (and, for f16, 8-bit)
        fields into an f16/bf16 tile become pairs by bit tricks and two packed fmas (`_pair_run`),
        others are converted with the 2^23 magic number in f32.  Other elements (row ends, odd
        widths, unaligned rows) take the per-element path."""
        if self.tk.tensor(s.src.tensor).storage == "packed":
            self.dequant_packed(s)
            return
        t = self.tk.tiles[s.dst.name]
        shared = t.scope == "shared"
        if shared:
            self.barrier()
        self.global_access(write=False)
        p = self.tk.tensor(s.src.tensor)
        bits = p.dtype.bits
        run = chunk = self.plan.vector(s)
        m = M.Flat(tuple(t.shape), self.T, run) if shared else self.mapping(s.dst.name)
        while chunk * bits > 128 and chunk % 2 == 0:  # runs longer than 16 bytes: several loads
            chunk //= 2
        nbytes = chunk * bits // 8 if (chunk * bits) % 8 == 0 else 0
        fast = bits in (1, 2, 4, 8) and nbytes in (1, 2, 4, 8, 16) and chunk > 1
        sp = self.tk.tensor(s.scale)
        zp = self.tk.tensor(s.zero) if s.zero else None
        with self.scope():
            w = self.window(s.src, t.shape)
            g = self.ex.scalar(s.group)
            self.line(f"const long long group = {g.code};")
            row_bytes = w.strides[-2] if len(w.dims) > 1 else None
            ring = self.ring_ptr.get(id(s))  # the packed window prefetched into shared memory (aligned rows)
            if fast:
                cond = f"tl::aligned_to({cname(p.name)}, {nbytes})"
                if row_bytes is not None:
                    cond += f" && {row_bytes} % {nbytes} == 0"
                self.line(f"const bool vec = {'true' if ring else cond};")
            with self.value_runs(m, run) as names:
                self.line(f"const bool row = {w.inbounds(names, skip_last=True)};")
                self.line(f"const long long col = {w.coord(len(w.dims) - 1, names)};")
                if fast:
                    with self.scope(f"if (vec && row && col >= 0 && col + {run - 1} < {w.dims[-1]})"):
                        for c0 in range(0, run, chunk):
                            cc, col = _at(names, c0), "col" if c0 == 0 else f"(col + {c0})"
                            if ring:
                                rows = cx.row_major_offset(names[:-1], tuple(t.shape[:-1])) if len(t.shape) > 1 \
                                    else "0"
                                src = (f"{ring} + ({rows}) * {t.shape[-1] * bits // 8}", f"({cc[-1]}) * {bits} / 8")
                            else:
                                src = (f"reinterpret_cast<const unsigned char*>({cname(p.name)}) + "
                                       f"{w.offset(names, skip_last=True)}", f"{col} * {bits} / 8")
                            with self.scope() if run > chunk else nullcontext():
                                self._dequant_run(s, w, cc, chunk, bits, nbytes, sp, zp, src, col, c0)
                    head = "else"
                else:
                    head = ""
                with self.scope(head):  # a rolled loop: the cold path stays small (and quick to compile)
                    if not shared:
                        self.line(f"float w[{run}];  // local memory, on this path only")
                    with self.scope(f"for (int u = 0; u < {run}; ++u)", "#pragma unroll 1"):
                        cu = names[:-1] + [f"{names[-1]} + u"]
                        self.line("float x = 0.0f;")
                        with self.scope(f"if (row && tl::in_range(col + u, {w.dims[-1]}))"):
                            q = self.packed_field(w, cu) if p.dtype.is_packed else \
                                ctype.to_compute(f"{cname(p.name)}[{w.offset(cu)}]", p.dtype)
                            self.line("const long long gi = (col + u) / group;")
                            zero = self._side(zp, w, names, "gi") if zp is not None else "0.0f"
                            self.line(f"x = ((float)({q}) - {zero}) * {self._side(sp, w, names, 'gi')};")
                        if shared:
                            val = ctype.from_compute(ctype.rounded("x", t.dtype), t.dtype)
                            off = self.plan.layouts[s.dst.name].offset(cu)
                            self.line(f"{self.tile_ptr(s.dst.name)}[{off}] = {val};")
                        else:
                            self.line("w[u] = x;")
                    if not shared:
                        self._store_run(s, names, run)
        if shared:
            self.barrier()

    def dequant_packed(self, s: N.Dequant) -> None:
        """Dequantize one tile of a tensor stored in the plan's packed order (layout/packing.py) into the
        register tile it was ordered for: each thread loads its runs whole (run c at byte (c * threads
        + tid) * run bytes of the tile: one coalesced stretch per run) and dequantizes them in registers.

        Tiles inside the tensor whose scales (and zero points) pairs can apply take the fast path:
        every value's row and group is the thread's base plus a constant (task mappings add thread and
        value parts), so each distinct (row, group) scale is loaded once per tile and every pair of
        fields is one PRMT/LOP3 and two packed fmas. Other tiles (the tensor's edges, whose padding
        fields give 0 as in the interpreter), widths and scales go field by field in f32."""
        t = self.tk.tiles[s.dst.name]
        p = self.tk.tensor(s.src.tensor)
        pl = self.plan.layout.packed_layout(p.name)
        bits, rb = pl.bits, pl.run_bytes
        signed = "true" if p.dtype.is_signed else "false"
        sp = self.tk.tensor(s.scale)
        zp = self.tk.tensor(s.zero) if s.zero else None
        pairs = _pair_type(t.dtype, bits, 4) if rb % 16 == 0 else None
        groups = _packed_groups(pl, s.group.value if isinstance(s.group, N.Const) else None) if pairs else None
        self.global_access(write=False)
        with self.scope():
            w = self.window(s.src, t.shape)
            self.line(f"const long long group = {self.ex.scalar(s.group).code};")
            ring = self.ring_ptr.get(id(s))
            if ring is None:
                tiles_k = f"(({w.dims[1]} + {t.shape[1] - 1}) / {t.shape[1]})"
                tile = f"({w.starts[0]} / {t.shape[0]}) * {tiles_k} + {w.starts[1]} / {t.shape[1]}"
                self.line(f"const unsigned char* const base = reinterpret_cast<const unsigned char*>({cname(p.name)}) "
                          f"+ ({tile}) * {pl.block_bytes};")
            else:
                self.line(f"const unsigned char* const base = {ring};")
            if groups is None:
                self._packed_generic(s, w, pl, signed, sp, zp)
                return
            self.line(f"bool fast = {w.starts[0]} + {t.shape[0]} <= {w.dims[0]} && "
                      f"{w.starts[1]} + {t.shape[1]} <= {w.dims[1]};")
            self._packed_fast(s, w, pl, pairs, groups, signed, sp, zp)
            with self.scope("if (!fast)"):
                self._packed_generic(s, w, pl, signed, sp, zp)

    def _packed_fast(self, s, w: Window, pl, pairs: str, groups: dict, signed: str, sp, zp) -> None:
        """Scales (and zero offsets) of the tile's distinct (row, group) pairs, loaded once; then, if they
        all apply as pairs, every run's pairs dequantized straight into the tile's registers."""
        m = self.mapping(s.dst.name)
        (r0, c0), _ = m.coords("tid", "0")
        self.line(f"const int srow = (int){w.starts[0]} + {r0};")
        self.line(f"const int scol = (int)(({w.starts[1]} + {c0}) / group);")
        off = f" + {1 << (pl.bits - 1)}.0f" if signed == "true" else ""
        keys = sorted(set(groups.values()))
        for n, (dr, dg) in enumerate(keys):
            raw = self._group_side(s, w, sp, dr, dg)
            self.line(f"const float sc{n} = {ctype.to_compute(raw, sp.dtype) if sp.dtype.is_float else f'(float){raw}'};")
            if zp is not None:
                rawz = self._group_side(s, w, zp, dr, dg)
                self.line(f"const float zp{n} = {ctype.to_compute(rawz, zp.dtype) if zp.dtype.is_float else f'(float){rawz}'};")
            checks = ([f"tl::pair_scale_ok<{pairs}>(sc{n})"] if sp.dtype != self.tk.tiles[s.dst.name].dtype else []) + \
                ([f"tl::pair_zero_ok<{pairs}>(zp{n})"] if zp is not None else [])
            if checks:
                self.line(f"fast = fast && {' && '.join(checks)};")
        with self.scope("if (fast)"):
            for n in range(len(keys)):
                z = f"zp{n}" if zp is not None else "0.0f"
                self.line(f"const unsigned s2_{n} = tl::splat2<{pairs}>(sc{n}), "
                          f"m2_{n} = tl::splat2<{pairs}>(-(tl::PairMagic<{pairs}>::m + {z}{off}));")
            per_word = 32 // pl.bits
            for c in range(m.values // pl.run):
                self.line(f"const tl::Vec<unsigned int, {pl.run_bytes // 4}> q{c} = *reinterpret_cast<const "
                          f"tl::Vec<unsigned int, {pl.run_bytes // 4}>*>(base + ({c * m.threads} + tid) * {pl.run_bytes});")
                for u in range(0, pl.run, 2):
                    v = c * pl.run + u
                    n = keys.index(groups[v])
                    self.line(f"tl::set_pair({cname(s.dst.name)}, {v}, tl::dequant_pair<{pairs}, {pl.bits}, {signed}>("
                              f"q{c}.v[{u // per_word}], {(u % per_word) // 2}, m2_{n}, s2_{n}));")

    def _group_side(self, s: N.Dequant, w: Window, p: N.TensorParam, dr: int, dg: int) -> str:
        """The scale (zero point) of group (srow + dr, scol + dg): from its pipeline ring's stage where
        the plan gave it one (cuda/plan.py `_side_tensors`), else from global memory."""
        ring = self.side_ptr.get((id(s), p.name))
        if ring is None:
            return f"{cname(p.name)}[(srow + {dr}) * {cname(p.name)}st0 + (scol + {dg}) * {cname(p.name)}st1]"
        gpt = self.plan.side_rings[(id(s), p.name)].shape[1]
        return (f"{ring}[(srow - (int)({w.starts[0]}) + {dr}) * {gpt} + "
                f"(scol - (int)({w.starts[1]} / group) + {dg})]")

    def _packed_generic(self, s, w: Window, pl, signed: str, sp, zp) -> None:
        """Field by field in f32 with clipped scale indices; fields past the tensor's edges give 0."""
        t = self.tk.tiles[s.dst.name]
        m = self.mapping(s.dst.name)
        zero = ctype.from_compute(ctype.literal(0, t.dtype), t.dtype)
        with self.values(m) as c:
            self.line(f"const unsigned char* const q = base + ((v / {pl.run}) * {m.threads} + tid) * {pl.run_bytes};")
            self.line(f"const long long gi = tl::min_ll({w.starts[1]} + {c[1]}, {w.dims[1]} - 1) / group;")
            row = [f"{w.starts[0]} + {c[0]}"]
            self.line(f"const float sc = {self._side_at(sp, row, 'gi')};")
            self.line(f"const float zp = {self._side_at(zp, row, 'gi') if zp is not None else '0.0f'};")
            f = f"(float)tl::load_packed<{pl.bits}, {signed}>(q, v % {pl.run})"
            val = ctype.from_compute(ctype.rounded(f"(({f}) - zp) * sc", t.dtype), t.dtype)
            self.line(f"{cname(s.dst.name)}[v] = ({w.inbounds(c)}) ? {val} : {zero};")

    def _store_run(self, s: N.Dequant, names: list[str], run: int, v0: int = 0) -> None:
        """The run's values, f32 in `w[]`, rounded to the tile's dtype and stored (registers: from v + v0)."""
        t = self.tk.tiles[s.dst.name]
        for u in range(run):
            val = ctype.from_compute(ctype.rounded(f"w[{u}]", t.dtype), t.dtype)
            if t.scope == "shared":
                off = self.plan.layouts[s.dst.name].offset(_at(names, u))
                self.line(f"{self.tile_ptr(s.dst.name)}[{off}] = {val};")
            else:
                self.line(f"{cname(s.dst.name)}[v + {v0 + u}] = {val};")

    def _dequant_run(self, s: N.Dequant, w: Window, c: list[str], run: int, bits: int, nbytes: int,
                     sp: N.TensorParam, zp: N.TensorParam | None, src: tuple[str, str], col: str = "col",
                     v0: int = 0) -> None:
        """`run` fields from one `nbytes`-byte load (the run starts on a byte: col * bits % 8 == 0)
        at `src` = (row's first byte, byte offset in the row): global memory or a ring stage; they are
        the tile's elements at `c` (column `col` of W), register values v + v0 onwards."""
        p = w.tensor
        base, at = src
        if nbytes >= 4:
            self.line(f"const tl::Vec<unsigned int, {nbytes // 4}> q = *reinterpret_cast<const tl::Vec<unsigned int, "
                      f"{nbytes // 4}>*>({base} + {at});")
            word = lambda u: f"q.v[{u * bits // 32}]"  # noqa: E731
        else:
            ct = "unsigned char" if nbytes == 1 else "unsigned short"
            self.line(f"const unsigned int q0 = *reinterpret_cast<const {ct}*>({base} + {at});")
            word = lambda u: "q0"  # noqa: E731
        group = s.group.value if isinstance(s.group, N.Const) else None
        shared_group = group is not None and group % run == 0
        if shared_group:  # the whole run is in one group: one scale (and zero) for it
            self.line(f"const long long gi = {col} / group;")
            self.line(f"const float sc = {self._side(sp, w, c, 'gi')};")
            self.line(f"const float zp = {self._side(zp, w, c, 'gi') if zp is not None else '0.0f'};")
        dt = self.tk.tiles[s.dst.name].dtype
        pairs = _pair_type(dt, bits, nbytes) if shared_group else None
        fallback = nullcontext()
        if pairs is not None:  # runtime checks where the pair path could differ from f32 (see the prelude)
            checks = ([f"tl::pair_zero_ok<{pairs}>(zp)"] if zp is not None else []) + \
                ([f"tl::pair_scale_ok<{pairs}>(sc)"] if sp.dtype != dt else [])
            if not checks:
                self._pair_run(s, c, run, bits, nbytes, pairs, v0)
                return
            with self.scope(f"if ({' && '.join(checks)})"):
                self._pair_run(s, c, run, bits, nbytes, pairs, v0)
            fallback = self.scope("else")
        with fallback:
            self.line(f"float w[{run}];")
            signed = "true" if p.dtype.is_signed else "false"
            for u in range(run):
                f = f"tl::field_to_f32<{bits}, {signed}>({word(u)}, {(u * bits) % 32})"
                if shared_group:
                    self.line(f"w[{u}] = ({f} - zp) * sc;")
                else:
                    self.line(f"w[{u}] = ({f} - {self._side(zp, w, c, f'({col} + {u}) / group') if zp else '0.0f'})"
                              f" * {self._side(sp, w, c, f'({col} + {u}) / group')};")
            self._store_run(s, c, run, v0)

    def _pair_run(self, s: N.Dequant, c: list[str], run: int, bits: int, nbytes: int, pairs: str, v0: int) -> None:
        """The run as f16/bf16 pairs (prelude `dequant_pairs`), stored 16 bytes at a time into a shared
        tile whose rows keep 8 consecutive elements adjacent, else by halves."""
        t = self.tk.tiles[s.dst.name]
        signed = "true" if self.tk.tensor(s.src.tensor).dtype.is_signed else "false"
        off = f" + {1 << (bits - 1)}.0f" if signed == "true" else ""
        self.line(f"unsigned int h[{run // 2}];")
        self.line(f"tl::dequant_pairs<{pairs}, {bits}, {signed}, {nbytes // 4}>(h, q.v, "
                  f"tl::splat2<{pairs}>(-(tl::PairMagic<{pairs}>::m + zp{off})), tl::splat2<{pairs}>(sc));")
        if t.scope == "register":
            for u in range(run):
                self.line(f"{cname(s.dst.name)}[v + {v0 + u}] = tl::pair_half<{pairs}>(h[{u // 2}], {u % 2});")
            return
        lay = self.plan.layouts[s.dst.name]
        wide = lay.contiguous_run(8) and run % 8 == 0
        for u in range(0, run, 8 if wide else 2):
            if wide:
                self.line(f"*reinterpret_cast<uint4*>({self.tile_ptr(s.dst.name)} + {lay.offset(_at(c, u))}) = "
                          f"make_uint4(h[{u // 2}], h[{u // 2 + 1}], h[{u // 2 + 2}], h[{u // 2 + 3}]);")
            else:
                for e in (0, 1):
                    self.line(f"{self.tile_ptr(s.dst.name)}[{lay.offset(_at(c, u + e))}] = "
                              f"tl::pair_half<{pairs}>(h[{u // 2}], {e});")

    def _side(self, p: N.TensorParam, w: Window, c: list[str], gi: str) -> str:
        """The element of a scale/zero tensor beside W for W's element at `c`, in group `gi`."""
        return self._side_at(p, [w.coord(i, c) for i in range(len(p.dims) - 1)], gi)

    def _side_at(self, p: N.TensorParam, rows: list[str], gi: str) -> str:
        """Element (*rows, gi) of a scale/zero tensor as f32, each index clipped to its dim (as the interpreter)."""
        dims = [str(d) if isinstance(d, int) else cname(d) for d in p.dims]
        terms = [f"tl::min_ll({x}, {d} - 1) * {cname(p.name)}st{i}" for i, (x, d) in enumerate(zip(rows + [gi], dims))]
        v = f"{cname(p.name)}[{' + '.join(terms)}]"
        return f"(float){ctype.to_compute(v, p.dtype)}" if not p.dtype.is_float else ctype.to_compute(v, p.dtype)


def _at(c: list[str], u: int) -> list[str]:
    """Tile coordinates `u` elements further along the last axis."""
    return c[:-1] + [c[-1] if u == 0 else f"{c[-1]} + {u}"]


def _pair_type(dt: DType, bits: int, nbytes: int) -> str | None:
    """The C type of the f16/bf16 pairs a run of whole words of `bits`-bit fields dequantizes to, if any."""
    if nbytes < 4 or not (dt.name == "f16" and bits in (4, 8) or dt.name == "bf16" and bits == 4):
        return None
    return ctype.storage(dt)


def _packed_groups(pl, group: int | None) -> dict[int, tuple[int, int]] | None:
    """For the pair path of a packed dequant: per even value v, (rows below the thread's first row, groups
    after the tile's first group) of the pair (v, v + 1), the same for every thread; None where a pair
    spans two rows or groups, or a value's group depends on the thread (then: the f32 path)."""
    m, (_, cols) = pl.mapping, pl.block
    if group is None or not (cols % group == 0 or group % cols == 0):
        return None
    out = {}
    def grp(c: int) -> int:
        return c // group if cols % group == 0 else 0

    for v in range(0, m.values_per_thread, 2):
        key = None
        for t in range(m.num_threads):
            (ra, ca), (rb, cb), (r0, c0) = m(t, v), m(t, v + 1), m(t, 0)
            k = (ra - r0, grp(ca) - grp(c0))
            if rb != ra or cb != ca + 1 or grp(cb) != grp(ca) or key not in (None, k):
                return None
            key = k
        out[v] = key
    return out
