"""Autotuning over compile-time constants: a grid search whose winner is cached per shape bucket and GPU.

A const declared with candidates (`BN: const[16, 32, 64] = 32`) is tunable in a
call that does not pin it.  The first call on a GPU backend tries every
combination of the unpinned candidates on clones of the arguments (so in-place
outputs are not touched), skips the ones that fail to lower, compile or launch
(remembering why), times the rest and keeps the fastest.  The choice is kept in
memory and in `cache_root()/autotune/<key>.json` (written atomically), keyed by
everything that can change it: the kernel's IR (candidates included), backend,
target, GPU name, tool and tilelang versions, the pinned constants, the
arguments' dtypes and the shape bucket of every dim (`bucket`).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import statistics
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..diagnostics import TileError
from ..ir import nodes as N
from ..ir.printer import kernel_str
from .args import BoundCall
from .arrays import clone
from .cache import cache_root, code_fingerprint, tool_versions, write_atomic

Config = dict[str, int]
Timer = Callable[[Callable[[], None], Mapping[str, int]], float]
"""`timer(run, config) -> seconds per launch`; `config` lets a log or a test tell the trials apart."""

_TOOLS = {"triton": ("triton",), "tvm": ("apache-tvm",), "cuda": ("cupy", "cupy-cuda12x", "cupy-cuda13x")}


def enabled() -> bool:
    """`TILELANG_AUTOTUNE=0` turns autotuning off: tunable consts take their defaults."""
    return os.environ.get("TILELANG_AUTOTUNE", "1") != "0"


def tunables(kernel: N.Kernel, pinned: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
    """Candidates of every const the call leaves free, in declaration order."""
    return {c.name: c.candidates for c in kernel.consts if c.candidates and c.name not in pinned}


def configs(space: Mapping[str, tuple[int, ...]]) -> list[Config]:
    """Every combination of the candidates (the grid of the search)."""
    names = list(space)
    return [dict(zip(names, values)) for values in itertools.product(*(space[n] for n in names))]


def trim(kernel: N.Kernel, space: Mapping[str, tuple[int, ...]], dims: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """Drop tile sizes larger than the problem: for a grid extent `cdiv(D, C)` with C tunable, keep
    the candidates below D rounded up to a power of two and the smallest one at or above it.

    At M = 1, BM = 16, 64 and 128 all launch one block of which only row 0 is real; timing the
    larger ones costs compilations and never wins.  The rule reads only the dims' buckets, so it
    agrees with the cache key."""
    out = dict(space)
    for extent in kernel.grid:
        if not (isinstance(extent, N.BinOp) and extent.op == "cdiv" and isinstance(extent.lhs, N.Var)
                and isinstance(extent.rhs, N.Var) and extent.lhs.name in dims and extent.rhs.name in out):
            continue
        need = bucket(dims[extent.lhs.name])
        need = 1 << (need - 1).bit_length()
        cands = sorted(out[extent.rhs.name])
        above = [c for c in cands if c >= need]
        out[extent.rhs.name] = tuple(c for c in space[extent.rhs.name] if c < need or c == (above or [None])[0])
    return out


def bucket(n: int) -> int:
    """The shape bucket of a dim: itself up to 16, else the next power of two.

    Small dims (decode batch sizes, M = 1 vs M = 16) change which tiling wins, so
    they stay exact; larger ones share a choice within a factor of two."""
    return n if n <= 16 else 1 << (n - 1).bit_length()


def label(config: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in config.items())


@dataclass(frozen=True)
class Choice:
    """The outcome of a search: the winning values and what was seen on the way."""
    config: Config
    timings: dict[str, float]  # seconds per launch, by config label
    skipped: dict[str, str]  # config label -> why it could not run
    cached: bool = False  # served from memory or disk, without timing anything


def device_name(call: BoundCall) -> str:
    """The name of the GPU the call runs on (`torch.cuda.get_device_name`), or 'cpu'."""
    dev = next((i.device for i in call.infos.values() if i.device != "cpu"), None)
    if dev is None:
        return "cpu"
    index = int(dev.split(":")[1])
    try:
        import torch
        return torch.cuda.get_device_name(index)
    except Exception:  # noqa: BLE001 - no torch, or torch without CUDA: ask CuPy
        import cupy
        name = cupy.cuda.runtime.getDeviceProperties(index)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)


def tune_key(kernel: N.Kernel, call: BoundCall, backend: str, target: str | None) -> tuple[str, dict]:
    """The cache key of a search and the readable facts it hashes."""
    from .. import __version__
    facts = {
        "kernel": kernel.name,
        "backend": backend,
        "target": str(target),
        "device": device_name(call),
        "tools": f"tilelang={__version__}+{code_fingerprint()},"
                 + tool_versions(_TOOLS.get(backend, ()) + ("torch",)),
        "pinned": {k: str(v) for k, v in sorted(call.consts.items())},
        "dtypes": {k: str(i.dtype) for k, i in sorted(call.infos.items())},
        "bucket": {d: bucket(n) for d, n in sorted(call.dims.items())},
    }
    text = kernel_str(kernel) + "\n" + json.dumps(facts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32], facts


def gpu_timer(run: Callable[[], None], config: Mapping[str, int], launches: int = 20, reps: int = 10) -> float:
    """Median seconds per launch: CUDA events around a CUDA-graph replay of `launches` launches.

    Replaying a graph keeps Python's launch overhead (tens of microseconds on the
    lent machines) out of the comparison; a launcher that cannot be captured is
    timed on a plain batch of launches instead."""
    import torch
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    batch = _captured(run, launches) or (lambda: [run() for _ in range(launches)])
    batch()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        batch()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / launches)
    return statistics.median(times)


def _captured(run: Callable[[], None], launches: int):
    import torch
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            for _ in range(launches):
                run()
    except Exception:  # noqa: BLE001 - not capturable (e.g. a launcher with its own stream)
        torch.cuda.synchronize()
        return None
    return graph.replay


class Autotuner:
    """Searches, caches and reports; one per process is shared by every TileKernel (`TUNER`)."""

    def __init__(self, timer: Timer | None = None, root: Path | None = None):
        self.timer = timer or gpu_timer
        self.root = root  # None: cache_root()/"autotune", read when used
        self.memory: dict[str, Choice] = {}
        self._seen: dict[tuple, tuple[N.Kernel, Choice | None]] = {}  # per-call fast path, see `choose`

    def folder(self) -> Path:
        return Path(self.root) if self.root is not None else cache_root() / "autotune"

    def choose(self, kernel: N.Kernel, call: BoundCall, backend: str, target: str | None,
               compile: Callable[[dict], Callable[[BoundCall], None]]) -> Choice | None:
        """The best values of the call's unpinned tunable consts (None if there are none).

        `compile(consts)` returns a launcher for one full set of constants.  Repeated calls with the
        same kernel object, pinned constants, dtypes, devices and shape buckets skip hashing the IR."""
        fast = (id(kernel), backend, str(target), tuple(sorted((k, str(v)) for k, v in call.consts.items())),
                tuple((k, str(i.dtype), i.device) for k, i in sorted(call.infos.items())),
                tuple((d, bucket(n)) for d, n in sorted(call.dims.items())))
        seen = self._seen.get(fast)
        if seen is not None and seen[0] is kernel:
            return seen[1]
        choice = self._choose(kernel, call, backend, target, compile)
        self._seen[fast] = (kernel, choice if choice is None else dataclasses.replace(choice, cached=True))
        return choice

    def _choose(self, kernel: N.Kernel, call: BoundCall, backend: str, target: str | None, compile) -> Choice | None:
        space = trim(kernel, tunables(kernel, call.consts), call.dims)
        if not space:
            return None
        key, facts = tune_key(kernel, call, backend, target)
        hit = self.memory.get(key) or self._load(key, space)
        if hit is not None:
            self.memory[key] = hit
            _log(f"autotune {kernel.name} [{_where(facts)}]: {label(hit.config)} (cached)")
            return hit
        with _on_device(call):
            choice = self.search(kernel, space, call, compile)
        self.memory[key] = dataclasses.replace(choice, cached=True)
        self._store(key, facts, choice)
        best = choice.timings[label(choice.config)]
        _log(f"autotune {kernel.name} [{_where(facts)}]: {label(choice.config)} ({best * 1e6:.1f} us; "
             f"{len(choice.timings)} timed, {len(choice.skipped)} skipped)")
        return choice

    def search(self, kernel: N.Kernel, space, call: BoundCall, compile,
               step: Callable[[int, int, str], None] | None = None) -> Choice:
        """Compile every configuration of `space` (in parallel), then launch and time each on clones of
        the call's arrays; failures are skipped with their reason.  Uncached: `tilelang tune` shows it all,
        with `step(i, n, label)` after each configuration (its progress bar)."""
        scratch = dataclasses.replace(call, arrays={n: clone(a) for n, a in call.arrays.items()})
        timings: dict[str, float] = {}
        skipped: dict[str, str] = {}
        grid = configs(space)
        builds = _build_all(grid, lambda config: _build(compile, {**call.consts, **config}, scratch))
        for i, config in enumerate(grid, 1):
            name = label(config)
            if step is not None:
                step(i, len(grid), name)
            try:
                launch = builds[name].result()
                launch(scratch)  # fails here on resources the compiler could not check
                timings[name] = float(self.timer(lambda: launch(scratch), config))
            except Exception as e:  # noqa: BLE001 - any failing configuration is skipped, with its reason
                skipped[name] = _reason(e)
                _log(f"autotune {kernel.name}: skipped {name}: {skipped[name]}")
        if not timings:
            reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
            raise TileError(f"autotuning '{kernel.name}' found no configuration that runs ({reasons})", kernel.loc,
                            hint="pin the constants by keyword, or widen the candidate lists")
        best = min(timings, key=timings.__getitem__)
        return Choice(next(c for c in grid if label(c) == best), timings, skipped)

    def _load(self, key: str, space: Mapping[str, tuple[int, ...]]) -> Choice | None:
        path = self.folder() / f"{key}.json"
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            config = {k: data["config"][k] for k in space}
            if set(data["config"]) != set(space) or any(type(config[k]) is not int or config[k] not in space[k]
                                                         for k in space):
                raise ValueError("its configuration is not one of the candidates")
            return Choice(config, dict(data["timings"]), dict(data["skipped"]), cached=True)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            warnings.warn(f"tilelang: ignoring the unreadable autotune cache file {path} ({e}); tuning again")
            return None

    def _store(self, key: str, facts: dict, choice: Choice) -> None:
        data = {**facts, "config": choice.config, "timings": choice.timings, "skipped": choice.skipped}
        write_atomic(self.folder() / f"{key}.json", json.dumps(data, indent=1))


TUNER = Autotuner()


def _build(compile, consts: dict, call: BoundCall):
    """A launcher for one configuration, compiled: backends that compile when asked for a launcher
    (CUDA through NVRTC) do so here, Triton, which compiles at the first launch, in `prepare`."""
    with _on_device(call):  # the current device is per thread
        launch = compile(consts)
        prepare = getattr(launch, "prepare", None)
        if prepare is not None:
            prepare(call)
    return launch


def _build_all(grid: list[Config], build) -> dict[str, concurrent.futures.Future]:
    """Compile every configuration on a thread pool: compilation dominates a search, and the
    compilers (Triton's MLIR/LLVM/ptxas, NVRTC) run outside the GIL."""
    workers = max(1, min(len(grid), os.cpu_count() or 1, 16))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return {label(c): pool.submit(build, c) for c in grid}


def _where(facts: dict) -> str:
    dims = " ".join(f"{d}~{n}" for d, n in facts["bucket"].items())
    return f"{facts['backend']}, {facts['device']}, {dims}"


def _reason(e: Exception) -> str:
    text = e.message if isinstance(e, TileError) else str(e)
    return f"{type(e).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"


def _log(message: str) -> None:
    """`TILELANG_LOG=1` prints what autotuning picked (and skipped) on stderr."""
    if os.environ.get("TILELANG_LOG") == "1":
        print(f"tilelang: {message}", file=sys.stderr)


@contextlib.contextmanager
def _on_device(call: BoundCall):
    """Make the call's GPU current while tuning, so timers and clones agree with the launches."""
    dev = next((i.device for i in call.infos.values() if i.device != "cpu"), None)
    if dev is None:
        yield
        return
    import torch
    with torch.cuda.device(int(dev.split(":")[1])):
        yield
