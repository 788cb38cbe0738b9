"""`Gemm` as SIMT loops, mma.sync m16n8k16 (ldmatrix or register fragments), or Hopper wgmma, as the plan
chose; the partial sums of a gemm whose k the plan split over warp groups are added before the
accumulator is next used."""
from __future__ import annotations

from ...ir import nodes as N
from ...passes.infer import TypedKernel
from . import cexpr as cx
from . import ctype
from . import wgmma as W
from .emitter import Emitter
from .expr import cname
from .smem import row_major


class GemmEmitter(Emitter):
    """`Gemm`; the driver calls `sum_partials` before a statement uses a k-split gemm's accumulator."""

    def visit_Gemm(self, s: N.Gemm) -> None:
        """Operands the plan keeps in shared memory or as mma fragments are read in place, other register
        operands through a staged copy; then the instruction the plan chose."""
        with self.scope():
            ops = {}
            in_registers = {i.role for i in self.plan.layout.instrs(s) if i.name == "mov"}
            for x, role in ((s.a, "A"), (s.b, "B")):
                t = self.tk.tiles[x.name]
                if role in in_registers:  # held as the mma fragment the plan gave it: read in place
                    ops[x.name] = (None, None)
                elif x.name in self.plan.layouts:  # shared tiles, and register tiles kept in shared memory
                    ops[x.name] = (self.tile_ptr(x.name), self.plan.layouts[x.name])
                else:
                    if not self.staged:
                        self.barrier()
                    ops[x.name] = (self.stage(x.name), row_major(t.shape))
            self.sync()
            mma = self.plan.mma.get(id(s))
            wg = self.plan.wgmma.get(id(s))
            if wg is not None:
                self.gemm_wgmma(s, wg, ops)
            elif mma is not None:
                self.gemm_mma(s, mma, ops)
            else:
                self.gemm_simt(s, ops)

    def gemm_simt(self, s: N.Gemm, ops) -> None:
        """Each thread sums its accumulator values over k in f32 (gemms the tensor cores cannot take)."""
        acc = self.tk.tiles[s.acc.name]
        a = self.tk.tiles[s.a.name]
        m = self.mapping(s.acc.name)
        k = a.shape[0] if s.trans_a else a.shape[1]
        (ap, al), (bp, bl) = ops[s.a.name], ops[s.b.name]
        self.line(f"float sum[{m.values}];")
        with self.unrolled(m.values):
            self.line("sum[v] = 0.0f;")
        with self.scope(f"for (int kk = 0; kk < {k}; ++kk)"):
            with self.values(m) as (i, j):
                av = ctype.to_compute(f"{ap}[{al.offset(['kk', i] if s.trans_a else [i, 'kk'])}]", a.dtype)
                bv = ctype.to_compute(f"{bp}[{bl.offset([j, 'kk'] if s.trans_b else ['kk', j])}]", a.dtype)
                self.line(f"sum[v] += {av} * {bv};")
        with self.values(m) as _:
            v = ctype.rounded(f"{ctype.to_compute(f'{cname(s.acc.name)}[v]', acc.dtype)} + sum[v]", acc.dtype)
            self.line(f"{cname(s.acc.name)}[v] = {ctype.from_compute(v, acc.dtype)};")

    def gemm_mma(self, s: N.Gemm, mma, ops) -> None:
        """mma.sync on the plan's warp tiling: the ldmatrix addresses of shared operands, or the operands'
        own registers where the plan laid them out as fragments."""
        til = mma.tiling
        (ap, al), (bp, bl) = ops[s.a.name], ops[s.b.name]
        mi, ni = til.mi, til.ni
        m0 = f"warp_m * {mi * 16} + i * 16"
        n0 = f"warp_n * {ni * 8} + j * 16"
        a_off = b_off = b_off2 = None
        # lane l supplies the row address of 8x8 matrix l / 8 (see the fragment table in plan.py's notes)
        if al is not None and s.trans_a:  # a is stored K x M: rows of the stored tile are k
            a_off = al.offset(["kk + (lane / 16) * 8 + lane % 8", f"{m0} + ((lane / 8) % 2) * 8"])
        elif al is not None:
            a_off = al.offset([f"{m0} + lane % 16", "kk + (lane / 16) * 8"])
        nlast = f"warp_n * {ni * 8} + {(ni - 1) * 8}"
        if bl is not None and s.trans_b:  # b is stored N x K
            b_off = bl.offset([f"{n0} + (lane / 16) * 8 + lane % 8", "kk + ((lane / 8) % 2) * 8"])
            b_off2 = bl.offset([f"{nlast} + lane % 8", "kk + ((lane / 8) % 2) * 8"])
        elif bl is not None:  # b is stored K x N
            b_off = bl.offset(["kk + lane % 16", f"{n0} + (lane / 16) * 8"])
            b_off2 = bl.offset(["kk + lane % 16", nlast])
        elem = ctype.storage(self.tk.tiles[s.a.name].dtype)
        if til.wk > 1:
            self.partial[s.acc.name] = til.wk
        self.text(self.ops.gemm_mma(elem=elem, acc=cname(s.acc.name), k=_gemm_k(self.tk, s), mi=mi, ni=ni,
                                    warps_n=til.wn, warps_mn=til.wm * til.wn, wk=til.wk, a_ptr=ap, a_off=a_off and cx.paren(a_off), a_trans=s.trans_a,
                                    b_ptr=bp, b_off=b_off and cx.paren(b_off), b_off_x2=b_off2 and cx.paren(b_off2),
                                    b_trans=not s.trans_b, a_regs=None if al is not None else cname(s.a.name),
                                    b_regs=None if bl is not None else cname(s.b.name)))

    def gemm_wgmma(self, s: N.Gemm, wg, ops) -> None:
        """One wgmma group per gemm: a fence (the accumulator was written by other code), every
        (k-step, instruction) of this warpgroup, commit; then wait until at most `lag` groups
        are pending (1 inside a pipeline that keeps one in flight, else 0)."""
        til = wg.tiling
        elem = ctype.storage(self.tk.tiles[s.a.name].dtype)
        da, db, k = wg.a_desc, wg.b_desc, _gemm_k(self.tk, s)
        name, code = W.instruction(til.inst_n, elem, not da.k_major, not db.k_major)
        self.wgmma_helpers[name] = code
        lag = next((p.lag for p in self.plan.pipelines.values() if any(s is c for c in p.consumers)), 0)
        (ap, _), (bp, _) = ops[s.a.name], ops[s.b.name]
        issues = []
        for kk in range(k // 16):
            for i in range(til.mi):
                for j in range(til.nsplit):
                    issues.append((f"{(i * til.ni + j * (til.inst_n // 8)) * 4}",
                                   da.starts[i][kk] >> 4, db.starts[j][kk] >> 4))
        self.text(self.ops.gemm_wgmma(
            name=name, acc=cname(s.acc.name), a_ptr=ap, b_ptr=bp, a_high=f"{da.high:#x}ull",
            b_high=f"{db.high:#x}ull", a_wg=da.wg_stride >> 4, b_wg=db.wg_stride >> 4, wgn=til.wgn,
            issues=issues, lag=lag, values=self.mapping(s.acc.name).values,
            shape=f"{til.mi} x m64n{til.inst_n}k16 x {til.nsplit}, {k // 16} k-steps"))

    def sum_partials(self, acc: str) -> None:
        """Add the k groups' partial accumulators (the plan split k over warp groups): every thread
        then holds the full sums of its values, as the accumulator's (replicated) mapping says."""
        groups = self.partial.pop(acc)
        m = self.mapping(acc)
        per = self.T // groups  # threads per k group (the groups are the outermost warps)
        self.remark(f"{acc}: add the partial sums of its {groups} k groups")
        with self.scope():
            self.barrier()
            parts = self.scratch(self.T * m.values * 4, "float")
            with self.unrolled(m.values):
                self.line(f"{parts}[v * {self.T} + tid] = {cname(acc)}[v];")
            self.pending = True
            self.sync()
            with self.unrolled(m.values):
                terms = " + ".join(f"{parts}[v * {self.T} + {g * per} + tid % {per}]" for g in range(groups))
                self.line(f"{cname(acc)}[v] = {terms};")
            self.barrier()


def _gemm_k(tk: TypedKernel, s: N.Gemm) -> int:
    a = tk.tiles[s.a.name]
    return a.shape[0] if s.trans_a else a.shape[1]
