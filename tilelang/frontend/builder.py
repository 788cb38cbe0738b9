"""Build IR from the surface tree: the one place where names and intrinsics get meaning.

Both front ends call `build_kernel`; it resolves names, dispatches intrinsic calls
(`copy`, `gemm`, `sum`, `f16(...)`, ...) and reports misuse at the user's source
location.  Shapes and dtypes are checked later, once compile-time constants are
known (`passes.infer`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..diagnostics import SourceLoc, TileError, TileErrors, did_you_mean, internal_errors
from ..ir import nodes as N
from ..ir.dtypes import DTYPES, DType, dtype_list, numpy_alias
from ..ir.scalar import binop
from . import surface as S

_BIN = {"+": "add", "-": "sub", "*": "mul", "/": "div", "//": "floordiv", "%": "mod",
        "**": "pow", "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne",
        "&": "and", "|": "or", "^": "xor", "<<": "shl", ">>": "shr"}
_LITERALS = {"inf": float("inf"), "nan": float("nan"), "true": True, "false": False,
             "True": True, "False": False}
_ELEMENTWISE_UNARY = {op for op in N.UNARY_OPS if op not in ("neg", "not")}
_STATEMENTS = ("copy", "gemm", "dequant", "atomic_add")
STORAGE_ORDERS = ("packed",)  # `T: u4[N, K] @ packed` (ir.nodes.TensorParam.storage)
_SCALAR_FUNCS = ("block_id", "cdiv")
TILE_FUNCS = (_STATEMENTS + _SCALAR_FUNCS + ("shared", "register", "where", "broadcast", "iota",
              "full", "zeros", "trans", "sum", "max", "min", "argmax", "pow", "range", "pipelined")
              + tuple(sorted(_ELEMENTWISE_UNARY)))
RESERVED = frozenset(TILE_FUNCS) | frozenset(DTYPES) | frozenset(_LITERALS) | {"const", "dtype"}
_FAILED = "failed"  # the kind of a name whose defining statement had an error


class _FollowOn(Exception):
    """A statement uses a name whose definition failed: its error is already reported, so this one is not."""


@dataclass
class _Scope:
    """Names visible in one block; loops open a child scope."""
    names: dict[str, tuple[str, SourceLoc]] = field(default_factory=dict)  # name -> (kind, loc)
    parent: "_Scope | None" = None
    aliases: dict[str, str] = field(default_factory=dict)  # name -> its IR name, where that differs

    def ir_name(self, name: str) -> str:
        """The IR's name for a visible name: a name defined again after its first scope ended (in a
        sibling loop, say) gets a fresh one, since the IR names each tile and scalar once per kernel."""
        s: _Scope | None = self
        while s is not None:
            if name in s.names:
                return s.aliases.get(name, name)
            s = s.parent
        return name

    def lookup(self, name: str) -> tuple[str, SourceLoc] | None:
        s: _Scope | None = self
        while s is not None:
            if name in s.names:
                return s.names[name]
            s = s.parent
        return None

    def visible(self) -> set[str]:
        s: _Scope | None = self
        out: set[str] = set()
        while s is not None:
            out |= s.names.keys()
            s = s.parent
        return out


class _Builder:
    def __init__(self, sk: S.SKernel):
        self.sk = sk
        self.tensors: dict[str, N.TensorParam] = {}
        self.scope = _Scope()
        self.taken: set[str] = set()  # every IR name given out
        self.hoisted: list[N.Stmt] = []  # statements the one being built needs just before it
        self.dtype_params: set[str] = set()
        self.errors: list[TileError] = []

    # ------------------------------------------------------------------ names
    def declare(self, name: str, kind: str, loc: SourceLoc) -> str:
        """Define `name` in the current scope; returns the IR's name for it (see `_Scope.ir_name`)."""
        if name in RESERVED:
            raise TileError(f"'{name}' is a reserved name of the tile language", loc,
                            hint="choose another name")
        visible = self.scope.lookup(name)
        if visible is not None:
            raise TileError(f"'{name}' is already defined", loc,
                            hint="a name is defined once in its block and the blocks inside it; pick a new name",
                            related=((f"'{name}' was defined here", visible[1]),))
        ir, k = name, 2
        while ir in self.taken:
            ir, k = f"{name}_{k}", k + 1
        self.taken.add(ir)
        if ir != name:
            self.scope.aliases[name] = ir
        self.scope.names[name] = (kind, loc)
        return ir

    def dtype(self, name: str, loc: SourceLoc) -> N.DTypeLike:
        """A dtype by name, or the name of a `dtype` parameter."""
        return name if name in self.dtype_params else _dtype(name, loc)

    def is_dtype_name(self, name: str) -> bool:
        return name in DTYPES or name in self.dtype_params

    def kind_of(self, name: str, loc: SourceLoc) -> str:
        found = self.scope.lookup(name)
        if found is None:
            raise TileError(f"unknown name '{name}'", loc, hint=did_you_mean(
                name, self.scope.visible() | _LITERALS.keys(),
                "define it before use (parameters, dims, lets and tiles are in scope)"))
        if found[0] == _FAILED:
            raise _FollowOn(name)
        return found[0]

    # ------------------------------------------------------------------ kernel
    def build(self) -> N.Kernel:
        # compile-time parameters first, so tensor types may name a dtype parameter
        first = [p for p in self.sk.params if _is_compile_time(p)]
        built = {id(p): self.param(p) for p in first}
        built.update({id(p): self.param(p) for p in self.sk.params if not _is_compile_time(p)})
        params = tuple(built[id(p)] for p in self.sk.params)
        grid = tuple(self.scalar(e, "a grid extent") for e in self.sk.grid)
        if not 1 <= len(grid) <= 3:
            raise TileError(f"the grid has {len(grid)} axes; give 1 to 3", self.sk.loc)
        threads = self.scalar(self.sk.threads, "the thread count")
        body = self.block(self.sk.body)
        if self.errors:
            raise self.errors[0] if len(self.errors) == 1 else TileErrors(self.errors)
        return N.Kernel(self.sk.name, params, grid, threads, body, self.sk.loc)

    def param(self, p: S.SParam) -> N.Param:
        ann = p.annotation
        if _type_name(ann) == "const":
            default = None
            if p.default is not None:
                default = _int_literal(p.default, f"the default of const '{p.name}'")
            candidates = self.candidates(p, default) if isinstance(ann, S.SSubscript) else ()
            self.declare(p.name, "const", p.loc)
            return N.ConstParam(p.name, default, "int", candidates, p.loc)
        if isinstance(ann, S.SSubscript) and ann.base == "dtype":
            raise TileError(f"dtype parameter '{p.name}' takes no candidate list", ann.loc,
                            hint="dtype parameters are bound from the arguments; only const[...] is tunable")
        if isinstance(ann, S.SName) and ann.id == "dtype":
            dname = None
            if p.default is not None:
                if not isinstance(p.default, S.SName):
                    raise TileError(f"the default of dtype '{p.name}' must be a dtype name", p.default.loc)
                dname = _dtype(p.default.id, p.default.loc).name
            self.declare(p.name, "dtype", p.loc)
            self.dtype_params.add(p.name)
            return N.ConstParam(p.name, dname, "dtype", loc=p.loc)
        if p.default is not None:
            raise TileError("only const and dtype parameters take a default", p.default.loc)
        storage = "plain"
        if isinstance(ann, S.SBin) and ann.op == "@" and isinstance(ann.lhs, S.SSubscript):
            if not isinstance(ann.rhs, S.SName) or ann.rhs.id not in STORAGE_ORDERS:
                raise TileError(f"unknown storage order for tensor '{p.name}'", ann.rhs.loc,
                                hint=f"write `{p.name}: u4[N, K] @ packed` (storage orders: {', '.join(STORAGE_ORDERS)})")
            storage, ann = ann.rhs.id, ann.lhs
        if isinstance(ann, S.SName):
            dt = self.dtype(ann.id, ann.loc)
            self.declare(p.name, "scalar", p.loc)
            return N.ScalarParam(p.name, dt, p.loc)
        if isinstance(ann, S.SSubscript):
            dt = self.dtype(ann.base, ann.loc)
            dims: list[str | int] = []
            for d in ann.indices:
                if isinstance(d, S.SNum) and isinstance(d.value, int) and d.value > 0:
                    dims.append(d.value)
                elif isinstance(d, S.SName):
                    dims.append(d.id)
                    found = self.scope.lookup(d.id)
                    if found is None:
                        self.declare(d.id, "dim", d.loc)
                    elif found[0] not in ("dim", "const"):
                        raise TileError(f"dim '{d.id}' clashes with parameter '{d.id}'", d.loc)
                else:
                    raise TileError("a tensor dim must be a name or a positive integer", d.loc,
                                    hint="e.g. A: f16[M, K]")
            if storage == "packed" and not isinstance(dt, str) and not (dt.is_packed or dt.name in ("u8", "i8")):
                raise TileError(f"a packed tensor holds 1-8 bit integers; '{p.name}' is {dt}", ann.loc,
                                hint="declare it with a bit-width dtype (u4, i4, u8, ...) or a dtype parameter bound to one")
            t = N.TensorParam(p.name, dt, tuple(dims), p.loc, storage)
            self.declare(p.name, "tensor", p.loc)
            self.tensors[p.name] = t
            return t
        raise TileError(f"cannot read the type of parameter '{p.name}'", p.loc,
                        hint="write `name: f16[M, K]`, `name: f32` or `name: const = 64`")

    def candidates(self, p: S.SParam, default: int | None) -> tuple[int, ...]:
        """`const[16, 32, 64] = 32`: distinct integer values that include the default."""
        ann = p.annotation
        assert isinstance(ann, S.SSubscript)
        values: list[int] = []
        for e in ann.indices:
            v = _const_int(e, f"a candidate of const '{p.name}'")
            if v in values:
                raise TileError(f"candidate {v} of const '{p.name}' is listed twice", e.loc)
            values.append(v)
        if default is None:
            raise TileError(f"const '{p.name}' has candidates but no default", p.loc,
                            hint=f"write {p.name}: const[{', '.join(map(str, values))}] = {values[0]}")
        if default not in values:
            raise TileError(f"the default {default} of const '{p.name}' is not one of its candidates "
                            f"{values}", p.default.loc, hint="add the default to the candidate list")
        return tuple(values)

    # ------------------------------------------------------------------ statements
    def block(self, stmts: tuple[S.SStmt, ...]) -> tuple[N.Stmt, ...]:
        out = []
        for s in stmts:
            outer, self.hoisted = self.hoisted, []
            try:
                built = self.stmt(s)
                out += self.hoisted + [built]
            except (TileError, _FollowOn) as e:
                if isinstance(e, TileError):
                    self.errors.append(e)
                for name in s.targets if isinstance(s, S.SAssign) else ():
                    if self.scope.lookup(name) is None:  # later uses would only repeat this error
                        self.scope.names[name] = (_FAILED, s.loc)
            finally:
                self.hoisted = outer
        return tuple(out)

    def stmt(self, s: S.SStmt) -> N.Stmt:
        if isinstance(s, S.SAssign):
            return self.assign(s)
        if isinstance(s, S.SFor):
            return self.for_(s)
        if isinstance(s, S.SIf):
            return self.if_(s)
        call = s.call
        if call.func == "copy":
            return self.copy(call)
        if call.func == "gemm":
            return self.gemm(call)
        if call.func == "dequant":
            return self.dequant(call)
        if call.func == "atomic_add":
            return self.atomic_add(call)
        hint = "statements are copy(...), gemm(...), dequant(...), atomic_add(...), assignments and for loops"
        if call.func not in TILE_FUNCS and not self.is_dtype_name(call.func):
            raise TileError(f"unknown function '{call.func}'", call.loc, hint=did_you_mean(call.func, TILE_FUNCS, hint))
        raise TileError(f"'{call.func}(...)' does nothing as a statement", call.loc, hint=hint)

    def assign(self, s: S.SAssign) -> N.Stmt:
        if len(s.targets) != 1:
            raise TileError("assign one name per statement", s.loc)
        name, v = s.targets[0], s.value
        if isinstance(v, S.SCall) and v.func in ("shared", "register"):
            return self.alloc(name, v)
        existing = self.scope.lookup(name)
        if existing is not None and existing[0] == _FAILED:
            raise _FollowOn(name)
        if isinstance(v, S.SSubscript) and self.kind_of(v.base, v.loc) == "tensor":
            return self.read_scalar(name, v, existing, s.loc)
        value = self.expr(v)
        if _is_tile(value):
            if existing is None:
                return N.Assign(self.declare(name, "tile", s.loc), value, True, s.loc)
            if existing[0] == "shared":
                raise TileError(f"'{name}' is a shared tile; it cannot be assigned", s.loc,
                                hint=f"write it with copy(value, {name})")
            if existing[0] not in ("tile", "register"):
                raise TileError(f"'{name}' is a {existing[0]}, not a tile", s.loc)
            return N.Assign(self.scope.ir_name(name), value, False, s.loc)
        if existing is not None:
            raise TileError(f"'{name}' is already defined; scalars are bound once", s.loc,
                            related=((f"'{name}' was defined here", existing[1]),))
        return N.Let(self.declare(name, "scalar", s.loc), value, s.loc)

    def read_scalar(self, name: str, v: S.SSubscript, existing, loc: SourceLoc) -> N.ReadScalar:
        """`n = Lens[b];`: one element of a global tensor, by one element index per dim."""
        t = self.tensors[v.base]
        if len(v.indices) != len(t.dims):
            raise TileError(f"'{v.base}' has {len(t.dims)} dims but {len(v.indices)} indices were given", v.loc,
                            hint=f"a scalar read gives one element index per dim, e.g. {v.base}[{', '.join(['i'] * len(t.dims))}]; "
                                 "windows of a tensor are read with copy(...)")
        for i in v.indices:
            if isinstance(i, S.SSlice):
                raise TileError("a slice selects a window; a scalar read takes element indices", i.loc,
                                hint=f"load windows with copy({v.base}[...], tile)")
        if existing is not None:
            raise TileError(f"'{name}' is already defined; scalars are bound once", loc,
                            related=((f"'{name}' was defined here", existing[1]),))
        ref = N.GlobalRef(v.base, tuple(self.scalar(i, "an element index") for i in v.indices), v.loc)
        return N.ReadScalar(self.declare(name, "scalar", loc), ref, loc)

    def alloc(self, name: str, call: S.SCall) -> N.Alloc:
        kw = self.kwargs(call, {"layout", "init"} if call.func == "register" else {"layout"})
        if len(call.args) != 1:
            raise TileError(f"{call.func}(...) takes one tile type, e.g. {call.func}(f16[BM, BK])", call.loc)
        dt, shape = self.tile_type(call.args[0])
        init = self.scalar(kw["init"], "a tile's initial value") if "init" in kw else None
        layout = self.layout(kw["layout"]) if "layout" in kw else None
        return N.Alloc(self.declare(name, call.func, call.loc), call.func, dt, shape, init, layout, call.loc)

    def for_(self, s: S.SFor) -> N.For:
        it = s.iter
        if it.func not in ("range", "pipelined"):
            raise TileError(f"loops iterate over range(...) or pipelined(...), not {it.func}(...)", it.loc)
        kw = self.kwargs(it, {"stages"} if it.func == "pipelined" else set())
        if not 1 <= len(it.args) <= 2:
            raise TileError(f"{it.func}(...) takes (stop) or (start, stop)", it.loc)
        bounds = [self.scalar(a, "a loop bound") for a in it.args]
        start, stop = (N.Const(0, None, it.loc), bounds[0]) if len(bounds) == 1 else bounds
        stages = None
        if it.func == "pipelined":
            stages = self.scalar(kw["stages"], "a stage count") if "stages" in kw else N.Const(2, None, it.loc)
        self.scope = _Scope(parent=self.scope)
        try:
            var = self.declare(s.var, "loopvar", s.loc)
            body = self.block(s.body)
        finally:
            self.scope = self.scope.parent  # type: ignore[assignment]
        return N.For(var, start, stop, body, stages, s.loc)

    def if_(self, s: S.SIf) -> N.If:
        """`if` on a scalar condition; each branch is a block of its own (its names are local to it)."""
        cond = self.expr(s.cond)
        if _is_tile(cond):
            raise TileError("an if condition must be a scalar (the same for every thread), not a tile", s.cond.loc,
                            hint="choose per element with where(cond, a, b); reduce a tile first "
                                 "(e.g. max(x, axis=1)) only if a single block-wide value is meant")
        branches = []
        for stmts in (s.body, s.orelse):
            self.scope = _Scope(parent=self.scope)
            try:
                branches.append(self.block(stmts))
            finally:
                self.scope = self.scope.parent  # type: ignore[assignment]
        return N.If(cond, branches[0], branches[1], s.loc)

    def copy(self, call: S.SCall) -> N.Copy:
        kw = self.kwargs(call, {"pad"})
        if len(call.args) != 2:
            raise TileError("copy takes (source, destination)", call.loc,
                            hint="e.g. copy(A[pid_m, k], a_tile) or copy(acc, C[pid_m, pid_n])")
        src, dst = self.copy_source(call.args[0]), self.tile_or_window(call.args[1])
        if isinstance(src, N.GlobalRef) and isinstance(dst, N.GlobalRef):
            raise TileError("copy between two global tensors; one side must be a tile", call.loc,
                            hint="copy through a register or shared tile")
        pad = self.scalar(kw["pad"], "a pad value") if "pad" in kw else None
        if pad is not None and not isinstance(src, N.GlobalRef):
            raise TileError("pad= only applies when copying from a global tensor", kw["pad"].loc)
        return N.Copy(src, dst, pad, call.loc)

    def copy_source(self, e: S.SExpr) -> N.TileRef | N.GlobalRef:
        """A window, a tile, or a tile expression (`copy(x * s, Y[i, j])`): the expression becomes a
        register tile of its own, defined just before the copy, so every backend sees tile copies only."""
        if isinstance(e, (S.SName, S.SSubscript)):
            return self.tile_or_window(e)
        value = self.expr(e)
        if not _is_tile(value):
            raise TileError("a copy source must be a tile, a tile expression or a window", e.loc,
                            hint="a scalar fills a tile with full(f32[R, C], v)")
        name, k = "copy_src", 2
        while name in self.taken or self.scope.lookup(name) is not None:
            name, k = f"copy_src_{k}", k + 1
        self.taken.add(name)
        self.hoisted.append(N.Assign(name, value, True, e.loc))
        return N.TileRef(name, e.loc)

    def gemm(self, call: S.SCall) -> N.Gemm:
        kw = self.kwargs(call, {"trans_a", "trans_b"})
        if len(call.args) != 3:
            raise TileError("gemm takes (a, b, acc): acc += a @ b", call.loc)
        a, b, acc = (self.tile_name(x, "a gemm operand") for x in call.args)
        if self.kind_of(acc.name, acc.loc) == "shared":
            raise TileError("the gemm accumulator must be a register tile", acc.loc,
                            hint="declare it with register(f32[BM, BN])")
        flags = {k: _bool_literal(v, k) for k, v in kw.items()}
        return N.Gemm(a, b, acc, flags.get("trans_a", False), flags.get("trans_b", False), call.loc)

    def dequant(self, call: S.SCall) -> N.Dequant:
        kw = self.kwargs(call, {"scale", "zero", "group"}, required={"scale", "group"})
        if len(call.args) != 2:
            raise TileError("dequant takes (W[i, j], tile, scale=S, group=G[, zero=Z])", call.loc)
        src = self.tile_or_window(call.args[0])
        if not isinstance(src, N.GlobalRef):
            raise TileError("dequant reads a window of a packed global tensor", call.args[0].loc,
                            hint="e.g. dequant(W[pid_n, k], w, scale=S, group=128)")
        for i in src.indices:
            if isinstance(i, N.ElemOffset):
                raise TileError("dequant windows are tile-indexed; an element offset is not supported here", i.loc,
                                hint="e.g. dequant(W[pid_n, k], w, scale=S, group=128)")
        dst = self.tile_name(call.args[1], "the dequant destination")
        names = {}
        for key in ("scale", "zero"):
            if key in kw:
                v = kw[key]
                if not isinstance(v, S.SName) or v.id not in self.tensors:
                    raise TileError(f"{key}= must name a global tensor parameter", v.loc)
                names[key] = v.id
        group = self.scalar(kw["group"], "a group size")
        return N.Dequant(src, dst, names["scale"], group, names.get("zero"), call.loc)

    def atomic_add(self, call: S.SCall) -> N.AtomicAdd:
        self.kwargs(call, set())
        if len(call.args) != 2:
            raise TileError("atomic_add takes (tile, T[i, j]): adds a register tile into a window", call.loc,
                            hint="e.g. atomic_add(acc, Y[pid_m, pid_n])")
        src, dst = (self.tile_or_window(a) for a in call.args)
        if not isinstance(src, N.TileRef) or self.kind_of(src.name, src.loc) == "shared":
            raise TileError("atomic_add adds a register tile", call.args[0].loc,
                            hint="copy a shared tile into a register(...) tile first")
        if not isinstance(dst, N.GlobalRef):
            raise TileError("atomic_add adds into a window of a global tensor", call.args[1].loc,
                            hint="e.g. atomic_add(acc, Y[pid_m, pid_n])")
        return N.AtomicAdd(src, dst, call.loc)

    # ------------------------------------------------------------------ operands
    def kwargs(self, call: S.SCall, allowed: set[str], required: set[str] = frozenset()) -> dict[str, S.SExpr]:
        out: dict[str, S.SExpr] = {}
        for k, v in call.kwargs:
            if k not in allowed:
                ok = ", ".join(sorted(allowed)) or "none"
                raise TileError(f"{call.func}(...) has no argument '{k}'", v.loc,
                                hint=did_you_mean(k, allowed, f"its keywords: {ok}"))
            out[k] = v
        for k in sorted(required - out.keys()):
            raise TileError(f"{call.func}(...) needs {k}=...", call.loc)
        return out

    def tile_name(self, e: S.SExpr, what: str) -> N.TileRef:
        if not isinstance(e, S.SName):
            raise TileError(f"{what} must be a tile name", e.loc)
        kind = self.kind_of(e.id, e.loc)
        if kind not in ("tile", "register", "shared"):
            raise TileError(f"{what} must be a tile, but '{e.id}' is a {kind}", e.loc)
        return N.TileRef(self.scope.ir_name(e.id), e.loc)

    def tile_or_window(self, e: S.SExpr) -> N.TileRef | N.GlobalRef:
        if isinstance(e, S.SSubscript):
            if self.kind_of(e.base, e.loc) != "tensor":
                raise TileError(f"'{e.base}' is not a global tensor; only tensors are indexed", e.loc)
            t = self.tensors[e.base]
            if len(e.indices) != len(t.dims):
                raise TileError(f"'{e.base}' has {len(t.dims)} dims but {len(e.indices)} tile indices were given",
                                e.loc, hint="give one tile index per dim (use 0 for a dim the tile covers whole)")
            return N.GlobalRef(e.base, tuple(self.window_index(i) for i in e.indices), e.loc)
        if isinstance(e, S.SName) and self.kind_of(e.id, e.loc) == "tensor":
            raise TileError(f"'{e.id}' is a global tensor; say which tile of it", e.loc,
                            hint=f"index it with tile indices, e.g. {e.id}[pid, 0]")
        return self.tile_name(e, "a copy operand")

    def window_index(self, e: S.SExpr) -> N.Expr | N.ElemOffset:
        """A tile index, or `start:` / `start:stop` in elements."""
        if isinstance(e, S.SSlice):
            stop = None if e.stop is None else self.scalar(e.stop, "a window's stop")
            return N.ElemOffset(self.scalar(e.start, "a window's element offset"), stop, e.loc)
        return self.scalar(e, "a tile index")

    def tile_type(self, e: S.SExpr) -> tuple[N.DTypeLike, tuple[N.Expr, ...]]:
        if not isinstance(e, S.SSubscript):
            raise TileError("expected a tile type such as f16[BM, BK]", e.loc)
        return self.dtype(e.base, e.loc), tuple(self.scalar(d, "a tile extent") for d in e.indices)

    def shape(self, e: S.SExpr) -> tuple[N.Expr, ...]:
        if not isinstance(e, S.STuple):
            raise TileError("expected a shape such as (BM, BN)", e.loc)
        return tuple(self.scalar(d, "a tile extent") for d in e.items)

    def layout(self, e: S.SExpr) -> N.LayoutExpr:
        if isinstance(e, S.SName):
            return N.LayoutExpr(e.id, (), e.loc)
        if isinstance(e, S.SCall) and not e.kwargs:
            args = []
            for a in e.args:
                if isinstance(a, S.SNum) and isinstance(a.value, int):
                    args.append(a.value)
                else:
                    args.append(self.layout(a))
            return N.LayoutExpr(e.func, tuple(args), e.loc)
        if isinstance(e, S.SBin) and e.op == "*":
            return N.LayoutExpr("*", (self.layout(e.lhs), self.layout(e.rhs)), e.loc)
        raise TileError("cannot read this layout", e.loc,
                        hint="e.g. layout=row_major, layout=swizzle(3, 3, 3), layout=spatial(4, 8) * local(2, 2)")

    def scalar(self, e: S.SExpr, what: str) -> N.Expr:
        v = self.expr(e)
        if _is_tile(v):
            raise TileError(f"{what} must be a scalar, not a tile", e.loc)
        return v

    # ------------------------------------------------------------------ expressions
    def expr(self, e: S.SExpr) -> N.Expr:
        if isinstance(e, S.SNum):
            return N.Const(e.value, None, e.loc)
        if isinstance(e, S.SName):
            if e.id in _LITERALS:
                return N.Const(_LITERALS[e.id], None, e.loc)
            kind = self.kind_of(e.id, e.loc)
            if kind in ("tile", "register", "shared"):
                return N.TileRef(self.scope.ir_name(e.id), e.loc)
            if kind == "dtype":
                raise TileError(f"'{e.id}' is a dtype; call it to cast, e.g. {e.id}(x)", e.loc)
            if kind == "tensor":
                raise TileError(f"'{e.id}' is a global tensor; tensors are read with copy(...)", e.loc,
                                hint=f"copy({e.id}[i, j], tile) then use the tile")
            return N.Var(self.scope.ir_name(e.id), e.loc)
        if isinstance(e, S.SBin):
            if e.op == "@":
                raise TileError("`@` names a tensor parameter's storage order (`W: u4[N, K] @ packed`); it is not "
                                "an operator on values", e.loc, hint="multiply tiles with gemm(a, b, acc)")
            return N.BinOp(_BIN[e.op], self.expr(e.lhs), self.expr(e.rhs), e.loc)
        if isinstance(e, S.SUnary):
            return N.Unary("neg" if e.op == "-" else "not", self.expr(e.x), e.loc)
        if isinstance(e, S.SCall):
            return self.call(e)
        if isinstance(e, S.SSubscript):
            if self.scope.lookup(e.base) is not None and self.kind_of(e.base, e.loc) == "tensor":
                raise TileError(f"an element of '{e.base}' is read by a statement of its own", e.loc,
                                hint=f"bind it to a name first, e.g. n = {e.base}[...]; then use n")
            raise TileError(f"'{e.base}[...]' is only meaningful in copy(...) or as a tile type", e.loc,
                            hint="load a window with copy(T[i, j], tile)")
        if isinstance(e, S.SSlice):
            raise TileError("a slice is a window index; it is only meaningful inside T[...] in copy(...)", e.loc,
                            hint="e.g. copy(A[pos:, j], tile) reads the window whose first row is element pos")
        raise TileError("a tuple is not a value here", e.loc)

    def call(self, c: S.SCall) -> N.Expr:
        f, args = c.func, c.args
        if self.is_dtype_name(f):
            self.arity(c, 1)
            return N.Cast(self.expr(args[0]), self.dtype(f, c.loc), c.loc)
        if f == "block_id":
            self.arity(c, 1)
            axis = _int_literal(args[0], "a grid axis")
            if not 0 <= axis <= 2:
                raise TileError(f"grid axis {axis} is out of range; use 0, 1 or 2", args[0].loc)
            return N.BlockId(axis, c.loc)
        if f == "cdiv":
            self.arity(c, 2)
            return N.BinOp("cdiv", self.expr(args[0]), self.expr(args[1]), c.loc)
        if f == "sum" or (f in ("max", "min") and (len(args) == 1 or c.kwargs)):
            kw = self.kwargs(c, {"axis"})
            if len(args) != 1 or "axis" not in kw:
                raise TileError(f"{f}(x, axis=...) reduces one tile along an axis", c.loc,
                                hint=f"e.g. {f}(x, axis=1)" + ("; max(a, b) and min(a, b) are elementwise"
                                                               if f != "sum" else ""))
            return N.Reduce(f, self.expr(args[0]), _int_literal(kw["axis"], "a reduction axis"), c.loc)
        if f == "argmax":
            kw = self.kwargs(c, {"axis"})
            if len(args) != 1 or "axis" not in kw:
                raise TileError("argmax(x, axis=...) gives the index of each row's largest element", c.loc,
                                hint="e.g. i = argmax(x, axis=1)")
            return N.Reduce(f, self.expr(args[0]), _int_literal(kw["axis"], "a reduction axis"), c.loc)
        if f in ("max", "min", "pow"):
            self.arity(c, 2)
            return N.BinOp(f, self.expr(args[0]), self.expr(args[1]), c.loc)
        if f in _ELEMENTWISE_UNARY:
            self.arity(c, 1)
            return N.Unary(f, self.expr(args[0]), c.loc)
        if f == "where":
            self.arity(c, 3)
            return N.Where(*(self.expr(a) for a in args), loc=c.loc)
        if f == "trans":
            self.arity(c, 1)
            return N.Transpose(self.expr(args[0]), c.loc)
        if f == "broadcast":
            self.arity(c, 2)
            return N.Broadcast(self.expr(args[0]), self.shape(args[1]), c.loc)
        if f == "iota":
            kw = self.kwargs(c, {"axis"}, required={"axis"})
            if len(args) != 1:
                raise TileError("iota takes a shape and axis=, e.g. iota((BM, BN), axis=1)", c.loc)
            return N.Iota(self.shape(args[0]), _int_literal(kw["axis"], "an axis"), c.loc)
        if f in ("full", "zeros"):
            self.arity(c, 2 if f == "full" else 1)
            dt, shape = self.tile_type(args[0])
            value = self.scalar(args[1], "a fill value") if f == "full" else N.Const(0, None, c.loc)
            return N.Full(shape, value, dt, c.loc)
        if f in _STATEMENTS:
            raise TileError(f"{f}(...) is a statement and has no value", c.loc,
                            hint=f"write it on its own line: {f}(...);")
        if f in ("shared", "register"):
            raise TileError(f"{f}(...) declares a tile; assign it to a name", c.loc,
                            hint=f"e.g. t = {f}(f16[BM, BK])")
        raise TileError(f"unknown function '{f}'", c.loc,
                        hint=did_you_mean(f, set(TILE_FUNCS) | DTYPES.keys() | self.dtype_params,
                                          "see docs/LANGUAGE.md for the functions of the tile language"))

    def arity(self, c: S.SCall, n: int) -> None:
        if c.kwargs:
            raise TileError(f"{c.func}(...) takes no keyword arguments", c.kwargs[0][1].loc)
        if len(c.args) != n:
            raise TileError(f"{c.func}(...) takes {n} argument{'s' if n != 1 else ''}, got {len(c.args)}", c.loc)


_TILE_NODES = (N.TileRef, N.Reduce, N.Broadcast, N.Iota, N.Full, N.Transpose)


def _is_tile(e: N.Expr) -> bool:
    if isinstance(e, _TILE_NODES):
        return True
    if isinstance(e, N.BinOp):
        return _is_tile(e.lhs) or _is_tile(e.rhs)
    if isinstance(e, (N.Unary, N.Cast)):
        return _is_tile(e.x)
    if isinstance(e, N.Where):
        return any(_is_tile(x) for x in (e.cond, e.a, e.b))
    return False


def _is_compile_time(p: S.SParam) -> bool:
    return _type_name(p.annotation) in ("const", "dtype")


def _type_name(ann: S.SExpr) -> str | None:
    """'const' for `const` and `const[...]`, a dtype or tensor element type name otherwise."""
    if isinstance(ann, S.SName):
        return ann.id
    return ann.base if isinstance(ann, S.SSubscript) else None


def _const_int(e: S.SExpr, what: str) -> int:
    """An integer literal or an expression of literals (`2 * 64`, `1 << 7`), folded."""
    if isinstance(e, S.SNum) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return e.value
    if isinstance(e, S.SUnary) and e.op == "-":
        return -_const_int(e.x, what)
    if isinstance(e, S.SBin) and e.op in ("+", "-", "*", "//", "%", "**", "<<", ">>", "&", "|", "^"):
        a, b = _const_int(e.lhs, what), _const_int(e.rhs, what)
        if e.op in ("//", "%") and b == 0:
            raise TileError(f"division by zero in {what}", e.loc)
        if e.op in ("**", "<<", ">>") and b < 0:
            raise TileError(f"negative exponent or shift in {what}", e.loc)
        return binop(_BIN[e.op], a, b)
    raise TileError(f"{what} must be an integer literal or an expression of literals", e.loc,
                    hint="e.g. const[16, 32, 64] = 32 or const[64, 2 * 64] = 64")


def _dtype(name: str, loc: SourceLoc) -> DType:
    if name not in DTYPES:
        known = f"dtypes: {dtype_list()}"
        alias = numpy_alias(name)
        hint = f"did you mean '{alias}'? (numpy's {name}) {known}" if alias else did_you_mean(name, DTYPES, known)
        if len(name) > 1 and name[0] in "iu" and name[1:].isdigit():
            raise TileError(f"bit width {name[1:]} is out of range for '{name}'", loc, hint=hint)
        raise TileError(f"unknown dtype '{name}'", loc, hint=hint)
    return DTYPES[name]


def _int_literal(e: S.SExpr | None, what: str) -> int:
    neg = isinstance(e, S.SUnary) and e.op == "-"
    inner = e.x if neg else e
    if isinstance(inner, S.SNum) and isinstance(inner.value, int) and not isinstance(inner.value, bool):
        return -inner.value if neg else inner.value
    raise TileError(f"{what} must be an integer literal", getattr(e, "loc", None))


def _bool_literal(e: S.SExpr, what: str) -> bool:
    if isinstance(e, S.SName) and e.id in ("true", "false", "True", "False"):
        return e.id in ("true", "True")
    if isinstance(e, S.SNum) and isinstance(e.value, bool):
        return e.value
    raise TileError(f"{what} must be true or false", e.loc)


def build_kernel(sk: S.SKernel) -> N.Kernel:
    """Surface kernel -> IR kernel; raises TileError/TileErrors with every problem found."""
    with internal_errors("the IR builder", sk.name, sk.loc):
        return _Builder(sk).build()


def build_module(surface: Iterable[Callable[[], S.SKernel]], file: str) -> N.Module:
    """Read and build each kernel of one source file on its own, so that one kernel's mistakes never hide
    another's; every kernel's errors are reported together."""
    errors: list[TileError] = []
    kernels = []
    for read in surface:
        try:
            with internal_errors("the front end", loc=SourceLoc(file, 1, 1)):
                sk = read()
            kernels.append(build_kernel(sk))
        except TileErrors as e:
            errors.extend(e.errors)
        except TileError as e:
            errors.append(e)
    if errors:
        raise errors[0] if len(errors) == 1 else TileErrors(errors)
    return N.Module(tuple(kernels), file)


__all__ = ["build_kernel", "build_module", "RESERVED", "TILE_FUNCS"]
