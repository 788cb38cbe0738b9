"""Reductions of register tiles into a dense scratch buffer: in-thread folds, then shuffles and shared
memory across the threads holding one result. The fastest shape the input's mapping allows: per row of
a flat mapping, per digit of a task mapping, else a staged copy reduced by teams of threads."""
from __future__ import annotations

import math

from ...ir import nodes as N
from ...ir.dtypes import f32
from ...ir.types import TileType
from . import cexpr as cx
from . import ctype
from . import mapping as M
from .emitter import Emitter
from .expr import cname


class ReduceEmitter(Emitter):
    """`reduce` serves `eval_into` (elementwise.py), which in turn evaluates a reduction's computed input."""

    def reduce(self, r: N.Reduce) -> str:
        """Compute a reduction into a scratch buffer (dense, the result's shape); returns its name."""
        xt = self.tk.type_of(r.x)
        rt = self.tk.type_of(r)
        assert isinstance(xt, TileType) and isinstance(rt, TileType)
        if isinstance(r.x, N.TileRef) and r.x.name not in self.plan.virtual:
            arr, mx = cname(r.x.name), self.mapping(r.x.name)
        else:
            mx = self.plan.reduce_inputs[id(r)]
            arr = self.fresh("tl_x")
            self.line(f"{ctype.storage(xt.dtype)} {arr}[{mx.values}];")
            self.eval_into(r.x, mx, xt.shape, lambda code, c: f"{arr}[v] = {ctype.from_compute(code, xt.dtype)};")
        dt = xt.dtype
        acc = "float" if dt.is_float else "long long"
        out = self.scratch(rt.numel * ctype.nbytes(dt), ctype.storage(dt))
        load = ctype.to_compute("%s", dt)
        if dt.is_float and dt != f32:
            load = "tl::to_f32(%s)"
        store = ctype.from_compute("%s", dt)
        common = dict(op=r.op, acc=acc, identity=ctype.identity(r.op, dt), load=load, dst=out, store=store,
                      threads=self.T)
        fast = _row_reduce_shape(mx, r.axis, self.T)
        digits = _digit_reduce_shape(mx, r.axis, self.T)
        if fast is None and digits is not None:
            self.sync()
            self.digit_reduce(r, arr, mx, xt, rt, digits, out, acc, load, store)
        elif fast is not None:
            slots, slot_of, valid, row_of, team = fast
            parts = self._parts(acc, (xt.numel // xt.shape[-1]) * max(team // 32, 1)) if team > 32 else ""
            self.sync()
            self.text(self.ops.row_reduce(src=arr, values=mx.values, slots=slots, slot_of=slot_of, valid=valid,
                                          row_of=row_of, team=team, rows=xt.numel // xt.shape[-1], parts=parts,
                                          **common))
        else:
            buf = self.stage_array(arr, mx, xt)
            self.sync()
            length = xt.shape[r.axis]
            inner = math.prod(xt.shape[r.axis + 1:])
            outs = rt.numel
            group = _team_size(self.T, outs, length)
            parts = self._parts(acc, self.T // 32) if group > 32 else ""
            self.text(self.ops.team_reduce(src=buf, outs=outs, length=length, inner=inner, group=group,
                                           parts=parts, **common))
        self.pending = True
        return out

    def digit_reduce(self, r, arr, m, xt, rt, digits, out, acc, load, store) -> None:
        """Reduce a tile held under a task mapping along `r.axis` without staging it.

        Each thread folds its values that differ only along the axis; lanes that differ only
        in the axis's thread digits combine by butterfly shuffles; warps, through shared memory."""
        slot_digits, intra, inter = digits
        slots = math.prod(e for e, _ in slot_digits)
        op = f"tl::{r.op.capitalize()}()"
        ident = ctype.identity(r.op, xt.dtype)

        def slot_of(v: str) -> str:
            terms, stride = [], 1
            for e, st in slot_digits:
                terms.append(cx.mul(cx.mod(cx.div(v, st), e), stride))
                stride *= e
            return cx.add(*terms)

        with self.scope():
            self.remark(f"{r.op} along axis {r.axis}: in-thread, then lanes {[st for _, st in intra]} "
                        f"by shuffles{', then warps ' + str([st // 32 for _, st in inter]) if inter else ''}")
            self.line(f"{acc} p[{slots}];")
            with self.unrolled(slots, "s"):
                self.line(f"p[s] = {ident};")
            with self.unrolled(m.values):
                self.line(f"p[{slot_of('v')}] = {op}(p[{slot_of('v')}], {load % (arr + '[v]')});")
            for e, st in intra:
                mask = st
                while mask < st * e:
                    with self.unrolled(slots, "s"):
                        self.line(f"p[s] = {op}(p[s], __shfl_xor_sync(0xffffffffu, p[s], {mask}));")
                    mask *= 2
            lead = " && ".join(f"{cx.mod(cx.div('tid', st), e)} == 0" for e, st in intra) or "true"
            nw = math.prod(e for e, _ in inter)
            parts = self._parts(acc, rt.numel * nw) if inter else None
            with self.scope(f"if ({lead})"):
                wa = cx.add(*(cx.mul(cx.mod(cx.div("tid", st), e), math.prod(x for x, _ in inter[:i]))
                              for i, (e, st) in enumerate(inter)))
                for k in range(slots):
                    v, rest = 0, k
                    for e, st in slot_digits:
                        v += (rest % e) * st
                        rest //= e
                    coords, _ = m.coords("tid", str(v))
                    coords[r.axis] = "0"
                    o = cx.row_major_offset(coords, rt.shape)
                    if inter:
                        self.line(f"{parts}[({o}) * {nw} + {wa}] = p[{k}];")
                    else:
                        self.line(f"{out}[{o}] = {store % f'p[{k}]'};")
            if inter:
                self.barrier()
                with self.scope(f"for (int o = tid; o < {rt.numel}; o += {self.T})"):
                    self.line(f"{acc} q = {parts}[o * {nw}];")
                    self.line(f"for (int w = 1; w < {nw}; ++w) q = {op}(q, {parts}[o * {nw} + w]);")
                    self.line(f"{out}[o] = {store % 'q'};")

    def _parts(self, acc: str, n: int) -> str:
        return self.scratch(n * 8, acc, "tl_parts")


def _team_size(threads: int, outs: int, length: int) -> int:
    """Threads that cooperate on one reduction result: enough teams for the results, no idle members."""
    per_out = max(1, threads // outs)
    want = 1
    while want * 2 <= min(per_out, 32) and want < length:
        want *= 2
    if per_out >= 64 and length > 32:
        warps = threads // 32
        d = max(x for x in range(1, warps + 1) if warps % x == 0 and 32 * x <= per_out)
        return 32 * d
    return want


def _digit_reduce_shape(m: M.Mapping, axis: int, threads: int):
    """For a task mapping: (value digits kept per slot, lane digits, warp digits) along `axis`, or None.

    Digits are (extent, stride) of the value or thread index.  Lane digits must be powers of
    two within a warp (butterfly shuffles), warp digits whole warps."""
    if not isinstance(m, M.Tasked) or m.task.num_threads != threads:
        return None
    tdig, vdig = [], []
    t_stride = v_stride = 1
    for atom in reversed(m.task.atoms):
        if atom.kind == "replicate":
            return None
        step = 1
        for extent, d in atom.digits():
            if extent > 1:
                (tdig if atom.kind == "spatial" else vdig).append((d, extent, (t_stride if atom.kind == "spatial"
                                                                               else v_stride) * step))
            step *= extent
        t_stride *= atom.threads
        v_stride *= atom.values
    along = [(e, st) for d, e, st in tdig if d == axis]
    pow2 = all(e & (e - 1) == 0 and st & (st - 1) == 0 for e, st in along)
    intra = [(e, st) for e, st in along if st < 32]
    inter = [(e, st) for e, st in along if st >= 32]
    if not pow2 or any(st * e > 32 for e, st in intra):
        return None
    return [(e, st) for d, e, st in vdig if d != axis], intra, inter


def _row_reduce_shape(m: M.Mapping, axis: int, threads: int):
    """For a flat mapping reduced along its last axis: (slots, slot_of(v), valid, row_of(s), team) or None.

    Each thread folds its values per output row ("slot"); the threads sharing a row then
    combine.  Either every row spans all threads evenly (team = threads), or a row's runs
    sit on `team` consecutive threads (a power of two, or whole warps)."""
    if not isinstance(m, M.Flat) or axis != len(m.shape) - 1:
        return None
    vec, C = m.vec, m.shape[-1]
    rows = m.numel // C
    cq = C // vec  # runs per row
    chunks = m.values // vec
    if cq % threads == 0:
        per = cq // threads
        return rows, f"v / {vec * per}", None, "s", threads
    if threads % cq == 0 and (cq <= 32 and cq & (cq - 1) == 0 or cq % 32 == 0):
        tpr = threads // cq
        valid = None if m.numel % (threads * vec) == 0 else f"s * {tpr} + tid / {cq} < {rows}"
        return chunks, f"v / {vec}" if vec > 1 else "v", valid, f"s * {tpr} + tid / {cq}", cq
    return None
