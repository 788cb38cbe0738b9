"""Loading generated Triton source as a module, and launching its kernel on a BoundCall.

Triton decides at decoration time whether `@triton.jit` compiles or interprets,
and its own library functions (`tl.sum`, `tl.cdiv`, ...) are decorated when
triton is imported.  So the mode is fixed per process by TRITON_INTERPRET as it
was at that import; the launcher wraps the kernel's plain function in whichever
of JITFunction / InterpretedFunction matches, and explains the mismatch
(CPU tensors without the interpreter) as a TileError.

Generated modules live in the shared disk cache (`runtime/cache.py`), keyed like
every other artifact, so a later process imports them without lowering again.

Repeated calls (`runtime/dispatch.py`) skip Triton's Python JIT path: `Launcher.fast`
takes the compiled kernel for the call's specialization once and calls its
low-level launcher directly.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.scalar import binop
from ...runtime import dispatch
from ...runtime.args import BoundCall
from ...runtime.cache import DiskCache, cache_key, cache_root, write_atomic
from .lower import Program, lower

_MODULES: dict[str, ModuleType] = {}
_GRID_LIMITS = (2**31 - 1, 65535, 65535)


def _import(path: Path, name: str) -> ModuleType:
    """Import a generated module from its file, once per process."""
    if name in _MODULES:
        return _MODULES[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Triton reads the kernel's source back through inspect
    spec.loader.exec_module(module)
    _MODULES[name] = module
    return module


def load_source(source: str) -> ModuleType:
    """Write `source` to a module file in the cache folder (atomically) and import it, once per process."""
    key = hashlib.sha256(source.encode()).hexdigest()[:24]
    path = cache_root() / "triton" / f"tl_{key}.py"
    if f"tilelang_triton_{key}" not in _MODULES and (not path.exists() or path.read_text() != source):
        write_atomic(path, source)
    return _import(path, f"tilelang_triton_{key}")


def cached_program(tk, target: str | None = None) -> tuple[Program, Path, str]:
    """The kernel's Program, its module file and its cache key.

    The DiskCache entry (under `cache_root()/triton`) is keyed by `cache_key`: the
    specialized IR, backend, target, constants and tool versions, so a hit skips
    layout inference and code generation; a miss lowers and writes the entry
    atomically (two processes racing on one key both end up with one whole entry)."""
    key = cache_key(tk, "triton", target, tools=("triton",))
    cache = DiskCache(cache_root() / "triton")
    entry = cache.get(key)
    program = _read_entry(entry) if entry is not None else None
    if program is None:
        if entry is not None:
            warnings.warn(f"tilelang: ignoring an unreadable Triton cache entry {entry}; regenerating it")
            shutil.rmtree(entry, ignore_errors=True)
        program = lower(tk)
        meta = {"fn_name": program.fn_name, "args": [list(a) for a in program.args], "num_warps": program.num_warps}
        entry = cache.put(key, {"kernel.py": program.source, "program.json": json.dumps(meta, indent=1)})
    return program, entry / "kernel.py", key


def _read_entry(entry: Path) -> Program | None:
    try:
        meta = json.loads((entry / "program.json").read_text())
        return Program((entry / "kernel.py").read_text(), meta["fn_name"],
                       tuple((kind, name) for kind, name in meta["args"]), int(meta["num_warps"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def interpreting() -> bool:
    """Whether this process runs Triton kernels in the interpreter (TRITON_INTERPRET=1 at import)."""
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(tl.standard.sum, InterpretedFunction)


def _patch_interpreter_bf16() -> None:
    """Make Triton's interpreter treat bf16 like the GPU does, so CPU tests can be exact.

    It keeps bf16 as raw uint16 bits: its tl.dot multiplies those bits
    (triton-lang/triton#11584, in 3.6 and 3.9), its f32 -> bf16 cast truncates
    where the GPU rounds to nearest even, and casts between bf16 and integers
    convert the bits.  Compiled Triton is unaffected."""
    import triton.language as tl
    from triton.runtime import interpreter as ti
    builder = ti.InterpreterBuilder
    if getattr(builder, "tilelang_bf16", False):
        return
    create_dot, cast_impl = builder.create_dot, builder.cast_impl

    def as_f32(h):
        if h.dtype != tl.bfloat16:
            return h
        return ti.TensorHandle((h.data.astype(np.uint32) << 16).view(np.float32), tl.float32)

    def dot(self, a, b, d, *args, **kwargs):
        return create_dot(self, as_f32(a), as_f32(b), d, *args, **kwargs)

    def cast(self, src, dst_type):
        have, want = src.dtype.scalar, dst_type.scalar
        if have == tl.bfloat16 and want not in (tl.float32, tl.bfloat16):  # via f32, not via raw bits
            return cast_impl(self, cast_impl(self, src, tl.float32), dst_type)
        if want != tl.bfloat16 or have == tl.bfloat16:
            return cast_impl(self, src, dst_type)
        if have != tl.float32:
            src = cast_impl(self, src, tl.float32)
        u = np.ascontiguousarray(src.data, np.float32).view(np.uint32)
        nearest = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        nan = (u & 0x7FFFFFFF) > 0x7F800000
        bits = np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), nearest)
        return ti.TensorHandle(bits, tl.bfloat16)

    builder.create_dot, builder.cast_impl, builder.tilelang_bf16 = dot, cast, True


def _scalar(e: N.Expr, env: dict) -> int:
    if isinstance(e, N.Const):
        return e.value
    if isinstance(e, N.Var):
        return env[e.name]
    if isinstance(e, N.BinOp):
        a, b = _scalar(e.lhs, env), _scalar(e.rhs, env)
        if e.op in ("floordiv", "mod", "cdiv") and b == 0:
            raise TileError("division by zero in a grid extent", e.loc)
        return binop(e.op, a, b)
    if isinstance(e, N.Unary) and e.op == "neg":
        return -_scalar(e.x, env)
    raise TileError(f"the Triton backend cannot evaluate {type(e).__name__} in a grid extent", e.loc,
                    hint="grid extents use dims, scalars and constants with + - * // % cdiv min max")


def _torch(x, packed: bool):
    """A torch view of an argument (numpy and cupy arrays share their memory)."""
    import torch
    mod = type(x).__module__.split(".")[0]
    if mod == "numpy":
        raw = {"bfloat16": np.int16, "float8_e4m3fn": np.uint8, "float8_e5m2": np.uint8}.get(x.dtype.name)
        t = torch.from_numpy(x.view(raw) if raw else x)
        if raw:
            t = t.view({"bfloat16": torch.bfloat16, "float8_e4m3fn": torch.float8_e4m3fn,
                        "float8_e5m2": torch.float8_e5m2}[x.dtype.name])
    elif mod == "cupy":
        t = torch.as_tensor(x, device=f"cuda:{x.device.id}")
    else:
        t = x
    return t.view(torch.uint8) if packed and t.dtype == torch.int8 else t


def launch_options(program: Program) -> dict:
    """Triton compile options; no FMA contraction, so f32 operations round one by one as in the interpreter."""
    return {"num_warps": program.num_warps, "enable_fp_fusion": False}


class Launcher:
    """Runs one specialized kernel; computes the grid from the call's dims and scalars."""

    def __init__(self, tk, program: Program, module: ModuleType):
        self.tk = tk
        self.program = program
        self.fn = getattr(module, program.fn_name).fn  # the plain Python function
        self._run = None

    def grid(self, call: BoundCall) -> tuple[int, ...]:
        env = {**call.dims, **call.scalars}
        grid = tuple(int(_scalar(g, env)) for g in self.tk.kernel.grid)
        for axis, (g, limit) in enumerate(zip(grid, _GRID_LIMITS)):
            if not 0 <= g <= limit:
                raise TileError(f"grid extent {g} along axis {axis} is outside 0..{limit}", self.tk.kernel.grid[axis].loc,
                                hint="put the largest extent on axis 0" if axis else None)
        return grid

    def _runner(self, call: BoundCall):
        if interpreting():
            if self._run is None:
                from triton.runtime.interpreter import InterpretedFunction
                _patch_interpreter_bf16()
                self._run = InterpretedFunction(self.fn)
            return self._run
        if any(i.device == "cpu" for i in call.infos.values()):
            raise TileError(f"kernel '{self.tk.kernel.name}' got CPU arrays, which the Triton backend runs only in "
                            "Triton's interpreter", self.tk.kernel.loc,
                            hint="move the tensors to CUDA, or set TRITON_INTERPRET=1 before triton is imported, "
                                 "or use backend='reference'")
        if self._run is None:
            from triton.runtime.jit import JITFunction
            self._run = JITFunction(self.fn)
        return self._run

    def _args(self, call: BoundCall) -> list:
        args = []
        for kind, name in self.program.args:
            if kind == "tensor":
                args.append(_torch(call.arrays[name], self.tk.tensor(name).dtype.is_packed))
            else:
                args.append(call.dims[name] if kind == "dim" else call.scalars[name])
        return args

    def prepare(self, call: BoundCall) -> None:
        """Compile for this call's argument types without launching (thread-safe: the autotuner
        compiles its candidates concurrently, and Triton releases the GIL while it compiles)."""
        grid = self.grid(call)
        run = self._runner(call)
        if 0 not in grid and hasattr(run, "warmup"):
            run.warmup(*self._args(call), grid=grid, **launch_options(self.program))

    def __call__(self, call: BoundCall) -> None:
        grid = self.grid(call)
        if 0 in grid:
            return
        self._runner(call)[grid](*self._args(call), **launch_options(self.program))

    def fast(self, call: BoundCall) -> dispatch.Launch | None:
        """A launch for every call with `call`'s signature (runtime/dispatch.py), or None where there is none
        (Triton's interpreter; a grid that reads a scalar).

        It is what `JITFunction.run` ends in, in Triton 3.6 and 3.9: the `CompiledKernel` of the call's
        specialization (taken once, through `warmup`, on the arguments' device) launched by
        `kernel.run(grid..., stream, function, packed_metadata, launch_metadata, hooks..., *args)`.
        The argument list is prebuilt; a call fills in its tensors and scalars and the current stream.  Launch
        hooks (Triton's profiler interface) and their metadata are passed only while a hook is installed."""
        if interpreting() or dispatch.grid_reads_scalars(self.tk.kernel):
            return None
        import torch
        from triton import knobs
        grid = self.grid(call)
        if 0 in grid:
            return lambda values: None  # nothing to launch, on any device (as in __call__)
        jit = self._runner(call)  # a TileError for CPU arrays
        args = self._args(call)
        device = int(next(i.device for i in call.infos.values()).split(":")[1])
        with torch.cuda.device(device):
            kernel = jit.warmup(*args, grid=grid, **launch_options(self.program))
            kernel = kernel.result() if hasattr(kernel, "result") else kernel  # Triton's async compile mode
            run = kernel.run  # loads the binary on this device
        function, metadata = kernel.function, kernel.packed_metadata
        enter, leave = knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook
        index = dispatch.value_index(self.tk.kernel)
        fill = []  # (slot in args, slot in the call's values, how a value becomes the argument)
        for slot, (kind, name) in enumerate(self.program.args):
            if kind == "dim":
                continue  # fixed by the signature: the exact shapes
            mod = type(call.arrays.get(name)).__module__.split(".")[0]
            fill.append((slot, index[name], _cupy_pointer if kind == "tensor" and mod == "cupy" else None))
        template = [a if kind == "dim" else None for a, (kind, _) in zip(args, self.program.args)]
        g0, g1, g2 = (*grid, 1, 1)[:3]
        stream = dispatch.torch_stream()
        current = dispatch.torch_device()

        def launch(values: list) -> None:
            if current() != device:
                with torch.cuda.device(device):
                    return launch(values)
            a = template.copy()
            for slot, i, convert in fill:
                a[slot] = values[i] if convert is None else convert(values[i])
            s = stream(device)
            if _hooked(enter) or _hooked(leave):  # a profiler watches launches: give it what JIT launches give
                run(g0, g1, g2, s, function, metadata, kernel.launch_metadata(grid, s, *a), enter, leave, *a)
            else:
                run(g0, g1, g2, s, function, metadata, None, None, None, *a)

        return launch


def _hooked(hook) -> bool:
    """Whether a Triton launch hook would do anything (a HookChain with calls, in Triton 3.6 and 3.9)."""
    return hook is not None and bool(getattr(hook, "calls", True))


def _cupy_pointer(x) -> int:
    return x.data.ptr


def compile(tk, target: str | None = None) -> Launcher:  # noqa: A001 - backend interface name
    """Generate (or find in the disk cache), load and wrap the kernel.

    `target` only keys the cache: Triton compiles for the current device and caches its binaries itself."""
    program, path, key = cached_program(tk, target)
    return Launcher(tk, program, _import(path, f"tilelang_triton_{key}"))
