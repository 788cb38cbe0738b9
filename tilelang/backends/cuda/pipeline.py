"""`For` loops, plain or software-pipelined as the plan says: producers (cp.async into shared tiles and
raw rings, or TMA onto mbarriers) run ahead of the consumers by whole stages, and wgmma groups may lag
one iteration (drained after the loop)."""
from __future__ import annotations

from contextlib import nullcontext

from ...ir import nodes as N
from ...ir.visit import walk_stmts
from . import cexpr as cx
from . import ctype
from . import mapping as M
from . import tma as TMA
from .emitter import Emitter
from .expr import cname
from .plan import Ring


class PipelineEmitter(Emitter):
    """`For`: loop bodies go back through the driver's `stmts`; a ringed copy in them reads its ring stage
    through `copy_from_ring` (called by copies.py), the producers fill shared tiles by `load_global_shared`."""

    def visit_For(self, s: N.For) -> None:
        """A plain loop, or the software pipeline the plan made of it: cp.async, or TMA with mbarriers."""
        lo, hi = self.ex.scalar(s.start), self.ex.scalar(s.stop)
        pipe = self.plan.pipelines.get(id(s))
        var = cname(s.var)
        self.kinds[s.var] = "int"
        reads, writes = _global_accesses(s.body)
        with self.scope():
            self.line(f"const int lo = {lo.code}, hi = {hi.code};")
            if pipe is None:
                with self.scope(f"for (int {var} = lo; {var} < hi; ++{var})"):
                    self.global_reads |= reads  # the previous iteration's accesses
                    self.global_writes |= writes
                    self.stmts(s.body)
                self.global_reads |= reads
                self.global_writes |= writes
                return
            if id(s) in self.plan.mbarriers:
                self.pipeline_tma(s, pipe, var)
            else:
                self.pipeline_cp_async(pipe, var)

    def pipeline_cp_async(self, pipe, var: str) -> None:
        """A pipeline filled by cp.async: every thread issues its part of iteration it + ahead's loads into
        stage (it + ahead) % S, one commit group per iteration; waiting for all but the newest ahead - 1
        groups and a barrier make iteration it's stage readable (and free the stage it - 1 read)."""
        S, A = pipe.stages, pipe.ahead
        self.remark(f"software pipeline: {S} stages; loads for iteration k + {A} are in flight "
                    f"while iteration k computes" + (" (and iteration k - 1's wgmma)" if pipe.lag else ""))
        lagged = self._lagged_accumulators(pipe)
        self.fence_registers(lagged)
        rings = [(r, self.plan.rings[id(r)]) for r in pipe.ringed]
        sides = [((id(r), tensor), ring) for r in pipe.ringed for tensor, ring in self.plan.side_rings_of(r)]
        for r, ring in rings:
            rt = self.ring_type(r)
            self.line(f"{rt}* const {ring.name}_stages = reinterpret_cast<{rt}*>(tl_smem + "
                      f"{self.plan.smem_offsets[ring.name]});  // raw global window of line "
                      f"{r.loc.line if r.loc else '?'}, {S} stages of {ring.stage_elems} elements")
        for (_, tensor), ring in sides:
            rt = ctype.storage(self.tk.tensor(tensor).dtype)
            self.line(f"{rt}* const {ring.name}_stages = reinterpret_cast<{rt}*>(tl_smem + "
                      f"{self.plan.smem_offsets[ring.name]});  // {tensor}'s groups of the tile, {S} stages")
        with self.scope(f"for (int stage = 0; stage < {A}; ++stage)"):
            with self.scope():
                self.line(f"const int {var} = lo + stage;")
                with self.scope(f"if ({var} < hi)"):
                    self.producers(pipe, "stage")
            self.line("tl::cp_async_commit();")
        with self.scope(f"for (int {var} = lo; {var} < hi; ++{var})"):
            self.line(f"const int it = {var} - lo;")
            self.line(f"tl::cp_async_wait<{A - 1}>();  // iteration it's tiles have landed (this thread's part)")
            # it also orders iteration it-1's global accesses
            self.barrier(note="... everyone's" + (", visible to wgmma (the async proxy)" if self.plan.wgmma else "")
                         + "; iteration it-1 is done reading")
            with self.scope():
                self.line(f"const int next = {var} + {A};")
                with self.scope("if (next < hi)"):
                    self.line(f"const int {var} = next;")
                    self.producers(pipe, f"(it + {A}) % {S}")
                self.line("tl::cp_async_commit();")
            self.stage_pointers(pipe, f"it % {S}")
            for r, ring in rings:
                self.line(f"const {self.ring_type(r)}* const {ring.name} = {ring.name}_stages + "
                          f"(it % {S}) * {ring.stage_elems};")
                self.ring_ptr[id(r)] = ring.name
            for key, ring in sides:
                self.line(f"const {ctype.storage(self.tk.tensor(key[1]).dtype)}* const {ring.name} = "
                          f"{ring.name}_stages + (it % {S}) * {ring.stage_elems};")
                self.side_ptr[key] = ring.name
            self.stmts(pipe.consumers)
            for r, _ in rings:
                del self.ring_ptr[id(r)]
            for key, _ in sides:
                del self.side_ptr[key]
            self.shadow.clear()
        self.drain_wgmma(pipe, lagged)
        self.line("tl::cp_async_wait<0>();")
        self.barrier()

    def pipeline_tma(self, s: N.For, pipe, var: str) -> None:
        """A pipeline filled by TMA: thread 0 loads iteration it's tiles into stage it % S, the bytes
        landing on that stage's mbarrier, which everyone waits on (phase parity (it / S) & 1).  Refills
        are issued after an iteration's consumers and a barrier, into the stage of iteration
        it - lag (done with it by then: its wgmma group has completed in every warpgroup).

        (Tried: an "empty" mbarrier per stage released by each warp instead of the barrier; on the
        H200 it was no faster at 128x256 tiles and 13% slower at 128x128.)"""
        S, A = pipe.stages, pipe.tma_ahead
        self.remark(f"software pipeline, TMA: {S} stages; loads run {A} iterations ahead, one mbarrier per stage")
        self.line(f"unsigned long long* const tl_bars = reinterpret_cast<unsigned long long*>(tl_smem + "
                  f"{self.plan.mbarriers[id(s)]});")
        with self.scope("if (tid == 0)"):
            self.line(f"for (int i = 0; i < {S}; ++i) tl::mbar_init(&tl_bars[i], 1);")
            self.line("tl::fence_mbar_init();")
        self.barrier(fence=False)
        lagged = self._lagged_accumulators(pipe)
        self.fence_registers(lagged)
        with self.scope("if (tid == 0)"):
            with self.scope(f"for (int stage = 0; stage < {A}; ++stage)"):
                self.line(f"const int {var} = lo + stage;")
                with self.scope(f"if ({var} < hi)"):
                    self.tma_producers(pipe, "stage")
        with self.scope(f"for (int {var} = lo; {var} < hi; ++{var})"):
            self.line(f"const int it = {var} - lo;")
            self.line(f"tl::mbar_wait(&tl_bars[it % {S}], (it / {S}) & 1);  // iteration it's tiles have landed")
            self.stage_pointers(pipe, f"it % {S}")
            self.stmts(pipe.consumers)
            # no proxy fence: consumers fence their own writes
            self.barrier(fence=False, note="every thread is done with iteration it (and it - lag's wgmma)")
            with self.scope("if (tid == 0)"):
                self.line(f"const int next = {var} + {A};")
                with self.scope("if (next < hi)"):
                    self.line(f"const int {var} = next;")
                    self.tma_producers(pipe, f"(it + {A}) % {S}")
        self.drain_wgmma(pipe, lagged)
        self.barrier()
        self.line(f"if (tid == 0) for (int i = 0; i < {S}; ++i) tl::mbar_inval(&tl_bars[i]);")

    def _lagged_accumulators(self, pipe) -> list[str]:
        """Accumulators of the pipeline's wgmmas when one wgmma group stays in flight across iterations."""
        if not pipe.lag:
            return []
        return list(dict.fromkeys(g.acc.name for g in walk_stmts(pipe.consumers) if id(g) in self.plan.wgmma))

    def fence_registers(self, accs: list[str]) -> None:
        """Make the accumulators opaque here: ptxas must not rematerialize their values between wgmmas."""
        for acc in accs:
            self.line(f"tl::fence_regs<{self.mapping(acc).values}>({cname(acc)});")

    def drain_wgmma(self, pipe, lagged: list[str]) -> None:
        """After a pipeline whose wgmma groups lag: wait for the last one, fence its accumulators."""
        if pipe.lag:
            self.line("tl::wgmma_wait<0>();  // the last iteration's wgmma group")
        self.fence_registers(lagged)

    def stage_pointers(self, pipe, stage: str) -> None:
        """Each producer's tile name bound to its slot in the ring of `stage`."""
        for c in pipe.producers:
            n = c.dst.name
            st = ctype.storage(self.tk.tiles[n].dtype)
            self.line(f"{st}* const {cname(n)} = {n}_stages + ({stage}) * {self.plan.layouts[n].cosize};")

    def tma_producers(self, pipe, stage: str) -> None:
        """Thread 0: expect the stage's bytes on its mbarrier, then one TMA box per column block of each tile."""
        for let in pipe.lets:
            self.stmt(let)
        self.line(f"unsigned long long* const bar = &tl_bars[{stage}];")
        self.line(f"tl::mbar_expect_tx(bar, {sum(self.plan.tma[c.dst.name].bytes for c in pipe.producers)});")
        for c in pipe.producers:
            n, ld = c.dst.name, self.plan.tma[c.dst.name]
            self.comment(c)
            with self.scope():
                w = self.window(c.src, self.tk.tiles[n].shape)
                st = ctype.storage(self.tk.tiles[n].dtype)
                self.line(f"{st}* const dst = {n}_stages + ({stage}) * {self.plan.layouts[n].cosize};")
                name, _ = TMA.copy_helper(ld.rank)
                with self.scope(f"for (int j = 0; j < {ld.blocks}; ++j)") if ld.blocks > 1 else nullcontext():
                    col = f"(int)({w.starts[-1]} + j * {ld.block})" if ld.blocks > 1 else f"(int){w.starts[-1]}"
                    coords = [col] + [f"(int){x}" for x in reversed(w.starts[:-1])]
                    off = f" + j * {ld.block_elems}" if ld.blocks > 1 else ""
                    self.line(f"tl::{name}(dst{off}, &{ld.param}, bar, {', '.join(coords)});")

    def producers(self, pipe, stage: str) -> None:
        """cp.async one iteration's shared tiles and ringed windows into the slots of `stage`."""
        saved = dict(self.ptr)
        for let in pipe.lets:
            self.stmt(let)
        for c in pipe.producers:
            n = c.dst.name
            self.ptr[n] = f"({n}_stages + ({stage}) * {self.plan.layouts[n].cosize})"
            self.comment(c)
            with self.scope():
                self.load_global_shared(c, asynchronous=True)
        for r in pipe.ringed:
            ring = self.plan.rings[id(r)]
            self.comment(r)
            with self.scope():
                self.fill_ring(r, ring, f"({ring.name}_stages + ({stage}) * {ring.stage_elems})")
            for tensor, side in self.plan.side_rings_of(r):
                with self.scope():
                    self.fill_side_ring(r, tensor, side, f"({side.name}_stages + ({stage}) * {side.stage_elems})")
        self.ptr = saved

    def ring_type(self, s: N.Copy | N.Dequant) -> str:
        """A ring holds the raw global elements: packed fields as bytes."""
        return "unsigned char" if isinstance(s, N.Dequant) else ctype.storage(self.tk.tensor(s.src.tensor).dtype)

    def fill_ring(self, s: N.Copy | N.Dequant, ring: Ring, dst: str) -> None:
        """cp.async the statement's global window, as raw elements, into one ring stage.

        16-byte chunks; a chunk that crosses the row's end copies only the bytes inside (cp.async
        zero-fills the rest), rows outside copy none.  Rows that are not 16-byte aligned in
        global memory take an element-by-element path."""
        t = self.tk.tiles[s.dst.name]
        w = self.window(s.src, t.shape)
        p = w.tensor
        if p.storage == "packed":  # one tile of the packed order: a contiguous stretch of whole chunks
            n = ring.shape[0]
            tiles_k = f"(({w.dims[1]} + {t.shape[1] - 1}) / {t.shape[1]})"
            tile = f"({w.starts[0]} / {t.shape[0]}) * {tiles_k} + {w.starts[1]} / {t.shape[1]}"
            self.line(f"const unsigned char* const src = reinterpret_cast<const unsigned char*>({cname(p.name)}) "
                      f"+ ({tile}) * {n};")
            with self.scope("if (tl::aligned_to(src, 16))"):
                with self.scope(f"for (int j = tid; j < {n // 16}; j += {self.T})"):
                    self.line(f"tl::cp_async_16({dst} + j * 16, src + j * 16, 16);")
            with self.scope("else"):
                with self.scope(f"for (int j = tid; j < {n}; j += {self.T})"):
                    self.line(f"{dst}[j] = src[j];")
            return
        rt = self.ring_type(s)
        eb = ring.elem_bytes
        n = 16 // eb
        gptr = f"reinterpret_cast<const {rt}*>({cname(p.name)})"
        if isinstance(s, N.Dequant):  # bytes: the window starts on one (plan.py checks BK * bits % 128)
            bits = p.dtype.bits
            limit = f"(({w.dims[-1]} * {bits} + 7) / 8)"
            col0 = f"{w.starts[-1]} * {bits} / 8"
            addr = lambda c, col: f"{w.offset(c, skip_last=True)} + {col}"  # noqa: E731
            vec = f"tl::aligned_to({cname(p.name)}, 16) && {limit} % 16 == 0"
        else:
            limit = w.dims[-1]
            col0 = w.starts[-1]
            addr = lambda c, col: w.offset(c)  # noqa: E731
            vec = f"{w.dims[-1]} % {n} == 0 && tl::aligned_to({cname(p.name)}, 16)"
        self.line(f"const bool vec = {vec};")
        with self.scope("if (vec)"):
            chunks = M.Flat(tuple(ring.shape[:-1]) + (ring.row // n,), self.T, 1)
            with self.values(chunks, "j") as c:
                c = c[:-1] + [cx.mul(c[-1], n)]
                self.line(f"const long long col = {cx.add(col0, c[-1])};")
                self.line(f"const long long rem = {w.inbounds(c, skip_last=True)} && col >= 0 ? "
                          f"({limit} - col) * {eb} : 0;")
                self.line("const int nb = rem >= 16 ? 16 : rem > 0 ? (int)rem : 0;")
                self.line(f"tl::cp_async_16({dst} + {cx.row_major_offset(c, ring.shape)}, "
                          f"nb ? {gptr} + {addr(c, 'col')} : {gptr}, nb);")
        with self.scope("else"):
            zero = "0" if isinstance(s, N.Dequant) else ctype.from_compute(ctype.literal(0, p.dtype), p.dtype)
            with self.values(M.Flat(ring.shape, self.T, 1), "j", "#pragma unroll 4") as c:
                self.line(f"const long long col = {cx.add(col0, c[-1])};")
                self.line(f"{dst}[{cx.row_major_offset(c, ring.shape)}] = ({w.inbounds(c, skip_last=True)} && "
                          f"tl::in_range(col, {limit})) ? {gptr}[{addr(c, 'col')}] : {zero};")

    def fill_side_ring(self, s: N.Dequant, tensor: str, ring: Ring, dst: str) -> None:
        """cp.async one stage of a packed dequant's scales (or zero points): per tile row, its BK / G
        groups as one 4-, 8- or 16-byte chunk.  Rows past the tensor and groups past its last column
        zero-fill (the fast path reads only tiles inside); rows that are not chunk-aligned in global
        memory go value by value."""
        t = self.tk.tiles[s.dst.name]
        w = self.window(s.src, t.shape)
        p = self.tk.tensor(tensor)
        rows, gpt = ring.shape
        eb = ring.elem_bytes
        chunk = gpt * eb
        nrow, ncol = (str(d) if isinstance(d, int) else cname(d) for d in p.dims)
        src = cname(p.name)
        gp = f"reinterpret_cast<const {ctype.storage(p.dtype)}*>({src})"
        self.line(f"const long long r0 = {w.starts[0]}, g0 = {w.starts[1]} / {s.group.value};")
        self.line(f"const bool vec = {src}st1 == 1 && ({src}st0 * {eb}) % {chunk} == 0 && tl::aligned_to({src}, {chunk});")
        with self.scope("if (vec)"):
            with self.scope(f"for (int j = tid; j < {rows}; j += {self.T})"):
                self.line(f"const long long rem = r0 + j < {nrow} && g0 < {ncol} ? ({ncol} - g0) * {eb} : 0;")
                self.line(f"const int nb = rem >= {chunk} ? {chunk} : (int)rem;")
                self.line(f"tl::cp_async_ca<{chunk}>({dst} + j * {gpt}, nb ? {gp} + (r0 + j) * {src}st0 + g0 : {gp}, nb);")
        with self.scope("else"):
            zero = ctype.from_compute(ctype.literal(0, p.dtype), p.dtype)
            with self.scope(f"for (int j = tid; j < {rows * gpt}; j += {self.T})"):
                self.line(f"const long long r = r0 + j / {gpt}, g = g0 + j % {gpt};")
                self.line(f"{dst}[j] = r < {nrow} && g < {ncol} ? {gp}[r * {src}st0 + g * {src}st1] : {zero};")

    def copy_from_ring(self, s: N.Copy, ring: str) -> None:
        """A prefetched global -> register copy: the tile's runs read from the ring stage (up to 16 bytes
        at a time), converted; the tile then shadows the stage (see the module notes)."""
        t = self.tk.tiles[s.dst.name]
        raw = self.tk.tensor(s.src.tensor).dtype
        m = self.mapping(s.dst.name)
        run, eb = self.plan.vector(s), ctype.nbytes(raw)
        sub = min(run, 16 // eb)
        while run % sub:
            sub //= 2
        vt = f"tl::Vec<{ctype.storage(raw)}, {sub}>"
        dst = cname(s.dst.name)
        with self.scope(), self.value_runs(m, run) as names:
            off = cx.row_major_offset(names, t.shape)
            for q in range(0, run, sub):
                if sub == 1:
                    self.line(f"{dst}[v + {q}] = {ctype.convert(f'{ring}[{cx.add(off, str(q))}]', raw, t.dtype)};")
                    continue
                self.line(f"const {vt} r{q} = *reinterpret_cast<const {vt}*>({ring} + {cx.add(off, str(q))});")
                for u in range(sub):
                    self.line(f"{dst}[v + {q + u}] = {ctype.convert(f'r{q}.v[{u}]', raw, t.dtype)};")
        self.shadow[s.dst.name] = (ring, raw)


def _global_accesses(body) -> tuple[bool, bool]:
    """Whether statements (loops included) read / write global tensors."""
    reads = writes = False
    for s in walk_stmts(body):
        if isinstance(s, N.Dequant) or isinstance(s, N.Copy) and isinstance(s.src, N.GlobalRef):
            reads = True
        if isinstance(s, N.Copy) and isinstance(s.dst, N.GlobalRef):
            writes = True
    return reads, writes
