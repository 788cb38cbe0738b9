"""Fast dispatch: a call whose signature was seen before goes straight to a launch prepared for it.

A kernel call does four things before its launch: `bind` checks every argument
(~half of a small call's host time), the constants are resolved (and tuned), the
launcher is looked up, and the backend packs the arguments.  All of it depends
only on the call's *signature*, which `Signature.key` computes (the one
definition of "the same call as before", shared by every backend):

* for each array: its library type, dtype, exact shape, contiguity, device, and
  whether its data pointer is 16-byte aligned (Triton specializes pointers on it,
  the CUDA backend's TMA needs it);
* for each scalar: its type, and for an int what Triton specializes on (== 1,
  divisible by 16, fits in 32 bits);
* the names of the keyword arguments, and the values (with their types) of the
  pinned constants and dims; the backend and target asked for.

Shapes enter exactly, not by bucket: a hit then proves that `bind` would accept the
call exactly as it accepted the first one, so the fast path re-checks nothing and
cannot drift from `bind`.  Autotuning keys its choice by shape bucket
(`autotune.bucket`), so a new shape in a known bucket costs one `bind`, never a search.

The first call with a signature runs the full path and leaves a `prepare`d entry:
the runtime values are gathered from the positional and keyword arguments in
declaration order, scalars converted as `bind` converted them, and handed to the
launcher's `fast(call)` launch where the backend offers one (Triton: the compiled
kernel's low-level launcher; CUDA: a direct driver launch with prepacked
parameters), else to the launcher with a BoundCall rebuilt from the first call's
facts.  Anything that changes the signature (dtype, shape, strides, device,
alignment, scalar kind, a keyword) misses, and runs the full checks again.

`TILELANG_FAST_DISPATCH=0` (read when a kernel is created) turns the fast path off.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from ..ir import nodes as N
from ..ir.visit import sub_exprs
from .args import BoundCall, runtime_params

Launch = Callable[[list], None]
"""A prepared launch: takes the call's runtime values (`runtime_params` order, scalars converted)."""

Entry = Callable[[tuple, dict], None]
"""A prepared call: takes the call's positional and keyword arguments as given."""

MAX_ENTRIES = 256  # signatures remembered per kernel; the oldest is dropped past this


def enabled() -> bool:
    return os.environ.get("TILELANG_FAST_DISPATCH", "1") != "0"


class Signature:
    """Computes the signature key of a call to one kernel (see the module docstring)."""

    def __init__(self, kernel: N.Kernel):
        self.pinned = frozenset(c.name for c in kernel.consts) | frozenset(kernel.dim_symbols)

    def key(self, args: tuple, kwargs: dict, backend: str | None, target: str | None) -> tuple:
        keys = _KEYS
        try:
            key = (backend, target, *[keys[type(a)](a) for a in args])
        except KeyError:  # a type seen for the first time
            key = (backend, target, *map(value_key, args))
        if kwargs:
            pinned = self.pinned
            key += tuple((k, (type(v), v) if k in pinned else value_key(v)) for k, v in kwargs.items())
        return key


def value_key(v: Any):
    """The part of the signature one runtime value contributes (tensor or scalar)."""
    t = type(v)
    f = _KEYS.get(t)
    if f is None:
        f = _KEYS[t] = _key_function(t)
    return f(v)


def _key_function(t: type) -> Callable[[Any], Any]:
    lib = t.__module__.split(".")[0]
    if lib == "torch" and hasattr(t, "data_ptr"):
        return lambda x: (t, x.dtype, x.shape, x.is_contiguous(), x.device, x.data_ptr() % 16 == 0)
    if lib == "cupy" and hasattr(t, "data"):
        return lambda x: (t, x.dtype, x.shape, x.flags.c_contiguous, x.device.id, x.data.ptr % 16 == 0)
    if issubclass(t, np.ndarray):
        return lambda x: (t, x.dtype, x.shape, x.flags.c_contiguous, x.ctypes.data % 16 == 0)
    if issubclass(t, (bool, np.bool_, float, np.floating)):
        return lambda x: t
    if issubclass(t, (int, np.integer)):
        return lambda x: (t, x == 1, x % 16 == 0, -2**31 <= x < 2**31)
    return lambda x: (t, x)  # anything else (a str, a list: bind rejects it) keys by value, if hashable


_KEYS: dict[type, Callable[[Any], Any]] = {}


class FastPath:
    """One kernel's prepared calls, by signature."""

    def __init__(self, kernel: N.Kernel):
        self.signature = Signature(kernel)
        self.entries: dict[tuple, Entry] = {}
        self.enabled = enabled()

    def lookup(self, args: tuple, kwargs: dict, backend, target) -> tuple[tuple | None, Entry | None]:
        """(the call's key, its entry if one was prepared); the key is None where the call cannot have one:
        fast dispatch is off, or an argument cannot be keyed (unhashable, or an array whose attributes
        raise): such a call goes the full way, where `bind` explains what is wrong with it."""
        if not self.enabled:
            return None, None
        try:
            key = self.signature.key(args, kwargs, backend, target)
            return key, self.entries.get(key)
        except Exception:  # noqa: BLE001 - see the docstring
            return None, None

    def remember(self, key: tuple, entry: Entry) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            del self.entries[next(iter(self.entries))]
        self.entries[key] = entry


def prepare(kernel: N.Kernel, launcher, call: BoundCall, args: tuple, kwargs: dict) -> Entry:
    """The entry for every later call with the signature of this one, which `bind` accepted as `call`.

    Neither the entry nor the launch it makes keeps the first call's arrays."""
    params = runtime_params(kernel)
    keywords = tuple(p.name for p in params[len(args):])
    given = [*args, *(kwargs[n] for n in keywords)]
    # bind converted scalars to float/int/bool; convert later calls' values the same way (the key fixes their type)
    converts = tuple((i, type(call.scalars[p.name])) for i, p in enumerate(params)
                     if isinstance(p, N.ScalarParam) and type(given[i]) is not type(call.scalars[p.name]))
    fast = getattr(launcher, "fast", None)
    launch = fast(call) if fast is not None else None
    if launch is None:
        launch = _rebinding(launcher, call, params)

    def entry(args: tuple, kwargs: dict) -> None:
        values = [*args, *(kwargs[n] for n in keywords)] if keywords else list(args)
        for i, convert in converts:
            values[i] = convert(values[i])
        launch(values)

    return entry


def _rebinding(launcher, call: BoundCall, params) -> Launch:
    """A launch through the launcher's ordinary `__call__`, on a BoundCall rebuilt from the first call's
    facts (consts, dims, array infos) and this call's values: binding skipped, packing not."""
    tensors = tuple((i, p.name) for i, p in enumerate(params) if isinstance(p, N.TensorParam))
    scalars = tuple((i, p.name) for i, p in enumerate(params) if isinstance(p, N.ScalarParam))
    consts, dims, infos = call.consts, call.dims, call.infos

    def launch(values: list) -> None:
        launcher(BoundCall(consts, dims, {n: values[i] for i, n in tensors}, {n: values[i] for i, n in scalars},
                           infos))

    return launch


def grid_reads_scalars(kernel: N.Kernel) -> bool:
    """Whether the launch grid depends on a scalar argument's value (then a launch cannot fix it in advance)."""
    scalars = {p.name for p in kernel.scalars}
    return any(isinstance(e, N.Var) and e.name in scalars for g in kernel.grid for e in sub_exprs(g))


def value_index(kernel: N.Kernel) -> dict[str, int]:
    """Where each runtime parameter's value sits in the list a `Launch` takes."""
    return {p.name: i for i, p in enumerate(runtime_params(kernel))}


def torch_stream() -> Callable[[int], int]:
    """`f(device_index) -> torch's current CUDA stream there, as a handle`, the cheapest way torch offers
    (the private `_cuda_getCurrentRawStream` that Triton's own launcher uses, else the public API)."""
    import torch
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    return raw if raw is not None else (lambda index: torch.cuda.current_stream(index).cuda_stream)


def torch_device() -> Callable[[], int]:
    """`f() -> torch's current CUDA device index`, the cheapest way torch offers (as `torch_stream`)."""
    import torch
    return getattr(torch._C, "_cuda_getDevice", torch.cuda.current_device)
