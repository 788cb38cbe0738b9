"""The user-facing kernel object: `@tile_kernel`, `tilelang.load(...)` and calling a kernel."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .backends import get_backend
from .diagnostics import TileError, did_you_mean, internal_errors
from .frontend.python_frontend import build_function
from .frontend.tile_parser import parse_file, parse_module
from .ir import nodes as N
from .ir.nodes import Kernel
from .layout import infer_layouts, packing
from .quant import PackedWeight
from .passes import TypedKernel, lower
from .passes.specialize import resolve_consts, with_candidates
from .runtime import autotune, dispatch
from .runtime.args import BoundCall, bind, check_packed


def _key(consts: dict[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in consts.items()))


class TileKernel:
    """A kernel's IR plus compiled variants, one per (backend, target, constants).

    Calls on a GPU backend autotune the consts declared with candidates that the
    caller does not pin (`runtime/autotune.py`); `tuned(...)` shows the choice.  A call
    whose signature was seen before skips all of that (`runtime/dispatch.py`)."""

    def __init__(self, ir: Kernel, tuner: autotune.Autotuner | None = None):
        self.ir = ir
        self.tuner = tuner or autotune.TUNER
        self._typed: dict[tuple, TypedKernel] = {}
        self._launchers: dict[tuple, Any] = {}
        self._fast = dispatch.FastPath(ir)

    @property
    def name(self) -> str:
        return self.ir.name

    def lower(self, **consts) -> TypedKernel:
        """The typed kernel for these compile-time constants (defaults for the rest)."""
        values = resolve_consts(self.ir, consts)
        key = _key(values)
        if key not in self._typed:
            self._typed[key] = lower(self.ir, values)
        return self._typed[key]

    def compile(self, backend: str = "reference", target: str | None = None, **consts):
        tk = self.lower(**consts)
        key = (backend, target, _key(tk.consts))
        if key not in self._launchers:
            compiler = get_backend(backend)
            # one verdict on the kernel's layouts for every backend (the CPU ones take the GPU plan's)
            with internal_errors("the layout pass", self.name, self.ir.loc):
                infer_layouts(tk, target if backend in ("cuda", "tvm") else None)
            with internal_errors(f"the {backend} backend", self.name, self.ir.loc):
                self._launchers[key] = compiler.compile(tk, target)
        return self._launchers[key]

    def with_candidates(self, **candidates: Sequence[int]) -> "TileKernel":
        """This kernel with other candidate lists for its int consts, e.g. `with_candidates(BN=[16, 32, 64])`."""
        return TileKernel(with_candidates(self.ir, candidates), self.tuner)

    def __call__(self, *args, backend: str | None = None, target: str | None = None, **kwargs) -> None:
        """Run on arrays (torch, numpy or cupy); outputs are written in place.

        The first call with a signature binds and checks every argument, picks (or tunes) the constants and
        prepares the launch; later calls with that signature go straight to the prepared launch. Calls with
        a packed weight take the checked path every time (its order is checked against the plan)."""
        key, entry = self._fast.lookup(args, kwargs, backend, target)
        if entry is None:
            call, chosen = self._bind(args, kwargs, backend)
            consts = self._consts(call, chosen, target)
            launcher = self.compile(chosen, target, **consts)
            if self._packed:
                launcher(self._packed_call(call, chosen, target, consts))
                return
            if key is None:
                launcher(call)
                return
            entry = dispatch.prepare(self.ir, launcher, call, args, kwargs)
            self._fast.remember(key, entry)
        entry(args, kwargs)

    @property
    def _packed(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.ir.tensors if p.storage == "packed")

    def _packed_call(self, call: BoundCall, backend: str, target: str | None, consts: dict) -> BoundCall:
        """Check packed arguments against the plan; the interpreter reads them in the plain packing."""
        plan = infer_layouts(self.lower(**consts), target if backend in ("cuda", "tvm") else None)
        check_packed(self.ir, plan, call)
        if backend == "cuda":
            return dataclasses.replace(call, arrays={**call.arrays, **{n: call.arrays[n].data for n in self._packed}})
        if backend != "reference":
            raise packing.plain_only(backend, self.ir.param(self._packed[0]))
        return dataclasses.replace(call, arrays={**call.arrays, **{n: call.arrays[n].plain() for n in self._packed}})

    def pack(self, tensor: str, values, target: str | None = None, **consts) -> PackedWeight:
        """Integers [N, K] (each fitting the tensor's field dtype, e.g. `TW="u4"`) stored in the order this
        kernel's layout plan chooses for packed parameter `tensor`, for these constants and `target`.

        The returned weight carries the constants the order depends on (calls take them from it)
        and the order's signature (a call whose plan orders it otherwise is refused)."""
        p = self.ir.param(tensor)
        if not isinstance(p, N.TensorParam) or p.storage != "packed":
            raise TileError(f"'{tensor}' is not a packed tensor of kernel '{self.name}'", self.ir.loc,
                            hint="declare it `name: u4[N, K] @ packed`")
        tk = self.lower(**consts)
        layout = infer_layouts(tk, target).packed_layout(tensor)
        dt = tk.tensor(tensor).dtype
        q = np.asarray(values)
        if q.ndim != 2 or not np.issubdtype(q.dtype, np.integer):
            raise TileError(f"pack('{tensor}', ...) takes integers [N, K], got {q.dtype} {list(q.shape)}",
                            hint="pass the quantized values (tilelang.quant.unpack of the plain packing)")
        lo, hi = (-(1 << (dt.bits - 1)), (1 << (dt.bits - 1)) - 1) if dt.is_signed else (0, (1 << dt.bits) - 1)
        if q.size and (q.min() < lo or q.max() > hi):
            raise TileError(f"values in [{q.min()}, {q.max()}] do not fit {dt}", hint=f"{dt} holds {lo}..{hi}")
        pinned = {c: v for c, v in tk.consts.items() if self._decides_order(tensor, c, tk, target, layout)}
        return PackedWeight(packing.pack(q, layout), tuple(q.shape), dt.name, pinned, layout.signature)

    def _decides_order(self, tensor: str, const: str, tk, target, layout) -> bool:
        """Whether another value of an int const would order `tensor` otherwise (those are pinned)."""
        c = next(c for c in self.ir.consts if c.name == const)
        if c.kind != "int":
            return False
        for other in set(c.candidates) | {c.default}:
            if other is None or other == tk.consts[const]:
                continue
            try:
                alt = infer_layouts(self.lower(**{**tk.consts, const: other}), target).packed_layout(tensor)
            except (TileError, KeyError):
                return True
            if alt.signature != layout.signature:
                return True
        return False

    def tuned(self, *args, backend: str | None = None, target: str | None = None, **kwargs) -> dict[str, Any]:
        """Every compile-time constant a call with these arguments would run with: pinned, tuned or default.

        Tunes now (without launching on the arguments) if the call would and no choice is cached."""
        call, backend = self._bind(args, kwargs, backend)
        return resolve_consts(self.ir, self._consts(call, backend, target))

    def _bind(self, args: tuple, kwargs: dict, backend: str | None) -> tuple[BoundCall, str]:
        call = bind(self.ir, args, kwargs)
        devices = {i.device for i in call.infos.values()}
        if backend is None:
            backend = "triton" if devices - {"cpu"} else "reference"
        if len(devices) > 1:
            where = ", ".join(f"{n} on {i.device}" for n, i in call.infos.items())
            raise TileError(f"arguments of '{self.name}' are on different devices: {where}", self.ir.loc,
                            hint="move every tensor to one device")
        return call, backend

    def _consts(self, call: BoundCall, backend: str, target: str | None) -> dict[str, Any]:
        """The call's pinned constants plus, on a GPU backend, the tuned values of the free tunable ones."""
        if not _tunes(backend, call):
            return call.consts
        choice = self.tuner.choose(self.ir, call, backend, target,
                                   lambda consts: self.compile(backend, target, **consts))
        return call.consts if choice is None else {**call.consts, **choice.config}

    def __repr__(self) -> str:
        return f"<TileKernel {self.name}>"


def _tunes(backend: str, call: BoundCall) -> bool:
    """Autotuning runs on GPU arrays with a compiling backend, unless TILELANG_AUTOTUNE=0.

    The reference interpreter and Triton's interpreter never tune: their timings say nothing about a GPU."""
    if not autotune.enabled() or backend == "reference" or not call.infos:
        return False
    if any(not i.device.startswith("cuda") for i in call.infos.values()):
        return False
    if backend == "triton":
        from .backends.triton.launcher import interpreting
        return not interpreting()
    return True


def tile_kernel(fn) -> TileKernel:
    """Decorator: a Python function written in the tile language becomes a TileKernel."""
    return TileKernel(build_function(fn))


class Kernels(dict):
    """The kernels of one file by name; an unknown name is an `UnknownKernel` error with a did-you-mean."""

    def __init__(self, module):
        super().__init__((k.name, TileKernel(k)) for k in module.kernels)
        self.file = module.file

    def __missing__(self, name):
        raise UnknownKernel(f"{self.file} has no kernel '{name}'",
                            hint=did_you_mean(str(name), self, f"its kernels: {', '.join(self) or 'none'}"))


class UnknownKernel(TileError, KeyError):
    """A kernel name a file does not define (a KeyError too, for code that catches that)."""

    def __str__(self) -> str:
        return self.render()


def load(path: str | Path) -> Kernels:
    """Every kernel of a `.tile` file, by name."""
    return Kernels(parse_file(path))


def loads(text: str, file: str = "<string>") -> Kernels:
    return Kernels(parse_module(text, file))
