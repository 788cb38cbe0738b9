"""Run the TVM cuda lowering's TVMScript on the CPU, thread by thread: a test harness without a GPU.

The generated PrimFunc is Python syntax.  Its `threadIdx.x` loop body becomes a generator per
CUDA thread; the threads of a block run in lockstep between the points where they must meet:
barriers (`T.tvm_storage_sync`) and warp collectives (ldmatrix, mma.sync m16n8k16 and warp
shuffles, computed from the PTX ISA's fragment tables), each of which every thread of the
block must reach together (a barrier or collective some threads skip is an error, as is an
index outside its buffer).  cp.async copies complete at once.  Values are numpy scalars of the
buffers' dtypes; f32 arithmetic stays f32.  It checks indexing, mappings, layouts, fragment
addressing and barrier placement, nothing about speed.
"""
from __future__ import annotations

import ast
import math

import ml_dtypes
import numpy as np

from tilelang.backends.tvm import generate
from tilelang.backends.tvm.signature import signature

WARP = 32
DTYPES = {"float16": np.float16, "float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "int32": np.int32,
          "int64": np.int64, "int8": np.int8, "uint8": np.uint8, "uint32": np.uint32, "bool": np.bool_,
          "float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2}


class Buf:
    """A buffer whose every index is checked (numpy would wrap negative ones)."""

    def __init__(self, array: np.ndarray, name: str = ""):
        self.a, self.name = array, name

    @property
    def data(self):
        return self

    def _at(self, idx):
        if (min(idx) if type(idx) is tuple else idx) < 0:  # numpy itself rejects indices past the end
            raise IndexError(f"{self.name}[{idx}] is outside its shape {self.a.shape}")
        return idx

    def __getitem__(self, idx):
        return self.a[self._at(idx)]

    def __setitem__(self, idx, value):
        self.a[self._at(idx)] = value

    def flat(self, idx) -> int:
        return int(np.ravel_multi_index(self._at(idx), self.a.shape))


class _Meet:
    """What a thread yields where the block's threads meet."""

    def __init__(self, kind: str, *args):
        self.kind, self.args = kind, args


def _int_cast(t):
    info = np.iinfo(t)
    span = info.max - info.min + 1

    def cast(x):
        x = int(x)  # floats truncate toward zero
        return t(x if info.min <= x <= info.max else (x - info.min) % span + info.min)  # wraps like the GPU
    return cast


_CASTS = {name: bool if name == "bool" else _int_cast(t) if np.issubdtype(np.dtype(t), np.integer) else t
          for name, t in DTYPES.items()}


def _cast(dtype: str, x):
    return _CASTS[dtype](x)


def _literal(dtype: str):
    cast = _CASTS[dtype]
    return lambda x: cast(float(x.strip('"')) if isinstance(x, str) else x)


class _T:
    """The `T` namespace the generated text calls, for one block."""

    def __init__(self):
        for name in DTYPES:  # T.float32(x), T.int32(x), ...
            setattr(self, name, _literal(name))
        self.shared: dict[str, Buf] = {}
        self.ptx = {"cp.async.cg.shared.global": self._cp_async, "cp.async.commit_group": lambda: None,
                    "cp.async.wait_group": lambda n: None}

    # casts, arithmetic
    Cast = staticmethod(_cast)
    Select = staticmethod(lambda c, a, b: a if c else b)
    if_then_else = Select
    And = staticmethod(lambda a, b: bool(a) and bool(b))
    Or = staticmethod(lambda a, b: bool(a) or bool(b))
    Not = staticmethod(lambda a: not a)
    bitwise_xor = staticmethod(lambda a, b: a ^ b)
    bitwise_and = staticmethod(lambda a, b: a & b)
    bitwise_or = staticmethod(lambda a, b: a | b)
    bitwise_not = staticmethod(lambda a: ~a)
    shift_left = staticmethod(lambda a, b: a << int(b))
    shift_right = staticmethod(lambda a, b: a >> int(b))
    floordiv = staticmethod(lambda a, b: a // b)
    floormod = staticmethod(lambda a, b: a % b)
    truncdiv = staticmethod(lambda a, b: type(a)(int(a / b)) if b else 0)
    truncmod = staticmethod(lambda a, b: a - type(a)(int(a / b)) * b)
    ceildiv = staticmethod(lambda a, b: -(-a // b))
    max = staticmethod(lambda a, b: a if a >= b else b)
    min = staticmethod(lambda a, b: a if a <= b else b)
    abs = staticmethod(abs)
    isnan = staticmethod(lambda x: bool(np.isnan(x)))
    min_value = staticmethod(lambda t: DTYPES[t](np.iinfo(DTYPES[t]).min))
    max_value = staticmethod(lambda t: DTYPES[t](np.iinfo(DTYPES[t]).max))

    def _f(fn):  # noqa: N805 - f32 math like the GPU's
        return staticmethod(lambda *xs: np.float32(fn(*(np.float32(x) for x in xs))))
    exp, exp2, log, log2, sqrt, tanh, erf = _f(np.exp), _f(np.exp2), _f(np.log), _f(np.log2), _f(np.sqrt), \
        _f(np.tanh), _f(lambda x: math.erf(float(x)))
    sin, cos, floor, ceil, fmod, pow = _f(np.sin), _f(np.cos), _f(np.floor), _f(np.ceil), _f(np.fmod), _f(np.power)
    del _f

    # structure
    unroll = staticmethod(lambda *a: range(*a))
    serial = staticmethod(lambda *a: range(*a))
    thread_binding = staticmethod(lambda n, thread: range(n))
    evaluate = staticmethod(lambda x: None)
    address_of = staticmethod(lambda buf, idx: (buf, buf.flat(idx)))

    def alloc_buffer(self, shape, dtype, scope, name):
        if scope.startswith("shared"):  # one per block
            if name not in self.shared:
                self.shared[name] = Buf(np.full(shape, np.nan if "float" in dtype else 0, DTYPES[dtype]), name)
            return self.shared[name]
        return Buf(np.full(shape, np.nan if "float" in dtype else 0, DTYPES[dtype]), name)

    @staticmethod
    def _cp_async(dst, src, size, src_size):
        (db, do), (sb, so) = dst, src
        n = size // db.a.itemsize
        got = int(src_size) // sb.a.itemsize
        d = db.a.reshape(-1)
        if do + n > d.size or so + got > sb.a.size:
            raise IndexError(f"cp.async past the end of {db.name} or {sb.name}")
        d[do:do + n] = 0
        d[do:do + got] = sb.a.reshape(-1)[so:so + got]


def _transform(text: str) -> ast.Module:
    """The PrimFunc as plain Python: meeting points become yields, the thread loop a generator."""
    tree = ast.parse(text)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    fn.decorator_list = []

    class Rewrite(ast.NodeTransformer):
        def visit_Call(self, node):
            self.generic_visit(node)
            f = node.func
            name = ast.unparse(f)
            if name in ("T.ptx_legacy.ldmatrix", "T.ptx_legacy.mma", "T.tvm_warp_shuffle_down", "T.tvm_storage_sync"):
                kind = name.rsplit(".", 1)[1]
                return ast.Yield(ast.Call(ast.Name("_Meet", ast.Load()), [ast.Constant(kind)] + node.args, []))
            if name == "T.address_of" and isinstance(node.args[0], ast.Subscript):
                sub = node.args[0]
                return ast.Call(f, [sub.value, sub.slice], [])
            return node

        def visit_Assign(self, node):
            self.generic_visit(node)
            v = node.value
            if isinstance(v, ast.Call) and ast.unparse(v.func) == "T.alloc_buffer":
                v.keywords.append(ast.keyword("name", ast.Constant(node.targets[0].id)))
            if isinstance(v, ast.Call) and ast.unparse(v.func) == "T.match_buffer":
                shape = v.args[1].elts
                out = [ast.Assign([node.targets[0]], ast.Call(ast.Name("Buf", ast.Load()), [v.args[0], ast.Constant(
                    node.targets[0].id)], []))]
                for i, d in enumerate(shape):
                    if isinstance(d, ast.Name):
                        out.append(ast.parse(f"{d.id} = {ast.unparse(v.args[0])}.shape[{i}]").body[0])
                return out
            if isinstance(v, ast.Call) and ast.unparse(v.func) == "T.int32" and not v.args:
                return None  # a dim var, bound from a buffer's shape
            return node

        def visit_Expr(self, node):
            self.generic_visit(node)
            if isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "T.func_attr":
                return None
            return node

        def visit_For(self, node):
            self.generic_visit(node)
            it = node.iter
            if isinstance(it, ast.Call) and any(k.arg == "thread" and k.value.value == "threadIdx.x"
                                                for k in it.keywords):
                thread = ast.parse(f"def _thread({node.target.id}):\n    if False:\n        yield").body[0]
                thread.body = node.body + thread.body
                launch = ast.parse(f"_run_block(_thread, {ast.unparse(it.args[0])}, T)").body[0]
                return [thread, launch]
            return node

    Rewrite().visit(fn)
    fn.body.insert(0, ast.parse("T = _new_T()").body[0])
    return ast.fix_missing_locations(tree)


def _run_block(thread, n: int, T) -> None:
    T.shared.clear()  # a block's shared memory starts undefined (NaN), whatever the last block left
    gens = [thread(tx) for tx in range(n)]
    sent: list = [None] * n
    while True:
        meets = []
        for tx, g in enumerate(gens):
            try:
                meets.append(g.send(sent[tx]))
            except StopIteration:
                meets.append(None)
        if all(m is None for m in meets):
            return
        kinds = {m.kind if m is not None else "exit" for m in meets}
        if len(kinds) != 1:
            raise AssertionError(f"threads diverge at a barrier or warp collective: {sorted(kinds)}")
        kind = kinds.pop()
        sent = [None] * n
        if kind == "tvm_storage_sync":
            continue
        for w in range(0, n, WARP):
            lanes = meets[w:w + WARP]
            results = {"ldmatrix": _ldmatrix, "mma": _mma, "tvm_warp_shuffle_down": _shuffle}[kind](lanes)
            sent[w:w + WARP] = results


def _ldmatrix(lanes):
    """Each lane 8i + r addresses row r of matrix i; lane l receives row l // 4, columns 2 (l % 4) and
    + 1 of each matrix (of the transposed matrix with .trans)."""
    trans, num = lanes[0].args[0], lanes[0].args[1]
    mats = []
    for i in range(num):
        rows = []
        for r in range(8):
            buf, off = lanes[8 * i + r].args[5]
            if off % 8:
                raise AssertionError("ldmatrix rows must be 16-byte aligned")
            rows.append(buf.a.reshape(-1)[off:off + 8])
        m = np.stack(rows)
        mats.append(m.T if trans else m)
    for lane, meet in enumerate(lanes):
        frag, offset = meet.args[3], meet.args[4]
        for i, m in enumerate(mats):
            frag.a[offset + 2 * i: offset + 2 * i + 2] = m[lane // 4, 2 * (lane % 4): 2 * (lane % 4) + 2]
    return [None] * len(lanes)


# The PTX fragment tables of mma.m16n8k16: [lane, register element] -> (row, column) of A, B, C
_G, _Q = np.arange(WARP)[:, None] // 4, np.arange(WARP)[:, None] % 4
_A = (_G + 8 * (np.arange(8) // 2 % 2), 2 * _Q + np.arange(8) % 2 + 8 * (np.arange(8) // 4))
_B = (2 * _Q + np.arange(4) % 2 + 8 * (np.arange(4) // 2), np.broadcast_to(_G, (WARP, 4)))
_C = (_G + 8 * (np.arange(4) // 2), 2 * _Q + np.arange(4) % 2)


def _mma(lanes):
    """mma.m16n8k16 (row.col, f32 accumulator) from the PTX fragment tables."""
    a, b = np.zeros((16, 16), np.float32), np.zeros((16, 8), np.float32)
    a[_A] = [m.args[6].a[m.args[7]:m.args[7] + 8] for m in lanes]
    b[_B] = [m.args[8].a[m.args[9]:m.args[9] + 4] for m in lanes]
    c = (a @ b)[_C]
    for lane, meet in enumerate(lanes):
        acc, oc = meet.args[10], meet.args[11]
        acc.a[oc:oc + 4] += c[lane]
    return [None] * len(lanes)


def _shuffle(lanes):
    """shfl.down within segments of `width` lanes: a lane past its segment's end keeps its own value."""
    values = [m.args[1] for m in lanes]
    out = []
    for lane, meet in enumerate(lanes):
        offset, width = int(meet.args[2]), int(meet.args[3])
        src = lane + offset
        out.append(values[src] if src // width == lane // width else values[lane])
    return out


def emulate(tk, call) -> None:
    """Run the kernel's TVM cuda code on the call's numpy arrays (written in place)."""
    sig = signature(tk)
    code = compile(_transform(generate(tk, "cuda")), f"<tvm cuda {tk.kernel.name}>", "exec")
    env = {"Buf": Buf, "_Meet": _Meet, "_new_T": _T, "_run_block": _run_block}
    exec(code, env)
    fn = env[sig.name]
    args = []
    for t in sig.tensors:
        a = call.arrays[t.name]
        args.append(a.view(np.uint8) if t.dtype == "uint8" and a.dtype == np.int8 else a)
    args += [int(call.dims[d]) for d in sig.dim_args]
    args += [_cast(dt, call.scalars[n]) for n, dt in sig.scalars]
    aligned = int(all(a.ctypes.data % 16 == 0 for a in args[:len(sig.tensors)]))
    with np.errstate(all="ignore"):
        fn(*args, aligned)
