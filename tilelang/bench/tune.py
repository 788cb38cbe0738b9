"""`tilelang tune KERNEL --shape ... --sweep BN,BK [--plot heat.png]`: a grid search over a kernel's constants.

It is the autotuner's own search (`runtime.autotune.Autotuner.search`: every combination of
the swept constants' values, their declared candidates or `--values NAME=a/b/c`, compiled in
parallel, then launched and timed on the GPU with CUDA graphs on clones of the arguments),
shown whole instead of keeping the winner; every other int constant is pinned (to `--const`
or its default).  A combination that does not lower, compile or run is kept in the table with
the reason.  The table lists every trial; the heat map (text, and PNG
with `--plot`) shows the first two swept constants, the others at the fastest trial's values:
darker is faster, as in the seed report's GEMV study of TILE_S x TILE_R, which
`scripts/gpu_tune_bench.sh` reproduces over `gemv`'s own tiles (BN outputs per block x BK of
the reduction per step) at GPT-2-medium and Llama shapes.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .. import progress
from ..diagnostics import TileError
from ..ir import nodes as N
from ..ir.dtypes import DTYPES, packed_row_bytes
from ..kernel import TileKernel, load
from ..layout import png
from ..runtime import autotune
from ..runtime.args import bind



@dataclass
class Trial:
    config: dict[str, int]
    us: float | None = None
    error: str = ""


def resolve_kernel(spec: str) -> TileKernel:
    """A library kernel by name, or `FILE.tile:NAME`."""
    if ":" in spec:
        path, name = spec.rsplit(":", 1)
        kernels = load(path)
        if name not in kernels:
            raise TileError(f"{path} has no kernel '{name}'", hint="kernels: " + ", ".join(kernels))
        return kernels[name]
    from .. import kernels
    return kernels.load(spec)


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """`A=1,B=2` -> {"A": "1", "B": "2"}."""
    out = {}
    for part in filter(None, text.split(",")):
        name, sep, value = part.partition("=")
        if not sep or not name or not value:
            raise TileError(f"{what} {text!r}: expected NAME=VALUE[,NAME=VALUE...]", hint="e.g. --shape M=1,K=1024,N=4096")
        out[name.strip()] = value.strip()
    return out


def arguments(kernel: TileKernel, shape: dict[str, str], consts: dict[str, object], device: str) -> tuple:
    """Random arguments for every runtime parameter: tensors shaped by `shape`'s dims, in the dtypes the
    constants (or defaults) give; scalars from `shape` (floats default to 1e-6)."""
    import torch

    from ..ir.dtypes import torch_dtypes
    torch_dtype = torch_dtypes()
    k = kernel.ir
    const = {c.name: c for c in k.consts}
    out = []
    for p in k.params:
        if isinstance(p, N.ConstParam):
            continue
        if isinstance(p, N.ScalarParam):
            if p.name in shape:
                out.append(float(shape[p.name]) if p.dtype.is_float else int(shape[p.name]))
            elif p.dtype.is_float:
                out.append(1e-6)
            else:
                raise TileError(f"kernel '{k.name}' needs a value for its scalar '{p.name}'", p.loc,
                                hint=f"add {p.name}=... to --shape")
            continue
        name = p.dtype if isinstance(p.dtype, str) else p.dtype.name
        dt = DTYPES[str(consts.get(name, const[name].default if name in const else name))]
        dims = []
        for d in p.dims:
            v = d if isinstance(d, int) else consts.get(d, const[d].default if d in const else shape.get(d))
            if v is None:
                raise TileError(f"kernel '{k.name}' needs the size '{d}' of '{p.name}'", p.loc,
                                hint=f"add {d}=... to --shape")
            dims.append(int(v))
        if dt.is_packed:
            dims[-1] = packed_row_bytes(dims[-1], dt.bits)
            out.append(torch.randint(0, 256, dims, dtype=torch.uint8, device=device))
        elif dt.is_float:
            out.append((torch.randn(dims, device=device) * 0.1).to(torch_dtype[dt.name]))
        else:
            out.append(torch.randint(0, 8, dims, device=device).to(torch_dtype[dt.name]))
    return tuple(out)


def sweep_space(kernel: TileKernel, names: list[str], values: dict[str, str]) -> dict[str, list[int]]:
    consts = {c.name: c for c in kernel.ir.consts}
    space = {}
    for n in names:
        c = consts.get(n)
        if c is None or c.kind != "int":
            raise TileError(f"kernel '{kernel.name}' has no int constant '{n}' to sweep",
                            kernel.ir.loc, hint="its int constants: " +
                            ", ".join(c.name for c in kernel.ir.consts if c.kind == "int"))
        if n in values:
            space[n] = [int(v) for v in values[n].split("/")]
        elif c.candidates:
            space[n] = list(c.candidates)
        else:
            raise TileError(f"constant '{n}' of '{kernel.name}' declares no candidates", c.loc,
                            hint=f"give its values: --values {n}=16/32/64")
    return space


def tune(kernel: TileKernel, args: tuple, space: dict[str, list[int]], pins: dict[str, object], backend: str,
         timer: autotune.Timer | None = None) -> list[Trial]:
    """Every configuration of `space`, timed (others pinned to `pins` or defaults), in grid order."""
    fixed = {c.name: c.default for c in kernel.ir.consts if c.kind == "int" and c.name not in space}
    call = bind(kernel.ir, args, {**fixed, **pins})
    try:
        choice = autotune.Autotuner(timer).search(kernel.ir, space, call,
                                                  lambda consts: kernel.compile(backend, None, **consts), progress.step)
        timings, skipped = choice.timings, choice.skipped
    except TileError as e:  # nothing ran: every configuration failed, with its reason in the message
        timings, skipped = {}, {autotune.label(c): e.message for c in autotune.configs(space)}
    finally:
        progress.done()
    return [Trial(c, timings[autotune.label(c)] * 1e6 if autotune.label(c) in timings else None,
                  skipped.get(autotune.label(c), "")[:100]) for c in autotune.configs(space)]


def table(trials: list[Trial]) -> str:
    names = list(trials[0].config)
    ok = [t.us for t in trials if t.us is not None]
    best = min(ok) if ok else None
    lines = ["| " + " | ".join(names + ["us", "vs best", "note"]) + " |", "|" + "---|" * (len(names) + 3)]
    for t in trials:
        cells = [str(t.config[n]) for n in names]
        if t.us is None:
            cells += ["-", "-", t.error]
        else:
            cells += [f"{t.us:.2f}", f"{t.us / best:.2f}x", "best" if t.us == best else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def heat_grid(trials: list[Trial]) -> tuple[str, str, list, list, dict]:
    """(row const, column const, row values, column values, {(row, col): trial}) of the first two swept
    constants, any others at the fastest trial's values."""
    names = list(trials[0].config)
    ok = [t for t in trials if t.us is not None]
    best = min(ok, key=lambda t: t.us).config if ok else trials[0].config
    rest = names[2:]
    chosen = [t for t in trials if all(t.config[n] == best[n] for n in rest)]
    row = names[0]
    col = names[1] if len(names) > 1 else None
    rows = list(dict.fromkeys(t.config[row] for t in chosen))
    cols = list(dict.fromkeys(t.config[col] for t in chosen)) if col else [None]
    cells = {(t.config[row], t.config[col] if col else None): t for t in chosen}
    return row, col, rows, cols, cells


def heat_text(trials: list[Trial]) -> str:
    row, col, rows, cols, cells = heat_grid(trials)
    head = [f"{row} \\ {col}"] + [str(c) for c in cols] if col else [row, "us"]
    lines = ["  ".join(h.rjust(9) for h in head)]
    for r in rows:
        vals = [cells.get((r, c)) for c in cols]
        lines.append("  ".join([str(r).rjust(9)] + [(f"{t.us:.2f}" if t and t.us is not None else "x").rjust(9)
                                                     for t in vals]))
    return "\n".join(lines)


FAST, SLOW, FAILED, HEADER = (70, 110, 200), (255, 248, 220), (190, 190, 190), (235, 235, 235)


def heat_png(trials: list[Trial], title: str, path: Path) -> Path:
    """The heat map as a PNG (`layout/png.py`): microseconds per cell, darker is faster, grey failed."""
    row, col, rows, cols, cells = heat_grid(trials)
    times = [t.us for t in cells.values() if t.us is not None]
    lo, hi = (min(times), max(times)) if times else (0.0, 1.0)

    def colour(t: Trial | None):
        if t is None or t.us is None:
            return FAILED
        f = 0.0 if hi == lo else (t.us - lo) / (hi - lo)  # 0 fastest
        return tuple(round(a + (b - a) * f) for a, b in zip(FAST, SLOW))

    grid = [[(f"{row}\\{col}" if col else row, HEADER)] + [(str(c), HEADER) for c in cols if c is not None]]
    for r in rows:
        grid.append([(str(r), HEADER)] + [((f"{cells[(r, c)].us:.1f}" if cells.get((r, c)) and
                                            cells[(r, c)].us is not None else "x"), colour(cells.get((r, c))))
                                          for c in cols])
    png.write(path, png.grid_picture(title, grid))
    return path


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("kernel", help="a library kernel (e.g. gemv) or FILE.tile:NAME")
    ap.add_argument("--shape", required=True, help="dims and scalars, e.g. M=1,K=1024,N=4096")
    ap.add_argument("--sweep", required=True, help="int constants to search, e.g. BN,BK")
    ap.add_argument("--values", action="append", default=[], metavar="NAME=A/B/C",
                    help="values of a swept constant (default: its declared candidates), e.g. BK=64/128/256")
    ap.add_argument("--const", action="append", default=[], metavar="NAME=VALUE",
                    help="pin a constant or dtype, e.g. T=bf16 or STAGES=3")
    ap.add_argument("--backend", default="triton", choices=["triton", "cuda", "tvm"])
    ap.add_argument("--plot", metavar="PNG", help="write the heat map of the first two swept constants")
    ap.add_argument("--out", metavar="MD", help="also write the table and heat map to this markdown file")


def run(args: argparse.Namespace, timer: autotune.Timer | None = None, device: str = "cuda") -> int:
    """The command; tests pass a timer and a device (the reference backend on CPU arrays)."""
    kernel = resolve_kernel(args.kernel)
    if timer is None:
        import torch
        if not torch.cuda.is_available():
            raise TileError("tilelang tune times kernels on a CUDA GPU, and torch sees none here",
                            hint="run it on a machine with an NVIDIA GPU (scripts/gpu_tune_bench.sh)")
    shape = parse_pairs(args.shape, "--shape")
    pins = {k: int(v) if v.lstrip("-").isdigit() else v for pair in args.const
            for k, v in parse_pairs(pair, "--const").items()}
    values = {k: v for pair in args.values for k, v in parse_pairs(pair, "--values").items()}
    space = sweep_space(kernel, [n.strip() for n in args.sweep.split(",") if n.strip()], values)
    unknown = sorted(set(values) - set(space))
    if unknown:
        raise TileError(f"--values for {', '.join(unknown)}, which --sweep does not name", hint=f"--sweep {args.sweep}")
    call_args = arguments(kernel, shape, pins, device)
    trials = tune(kernel, call_args, space, pins, args.backend, timer)
    title = f"{kernel.name} {args.shape} ({args.backend})"
    text = f"## {title}\n\n{table(trials)}\n\nheat map (us per call):\n\n```\n{heat_text(trials)}\n```\n"
    print(text)
    if args.plot:
        print(f"wrote {heat_png(trials, title, Path(args.plot))}")
    if args.out:
        Path(args.out).write_text(text)
    return 0 if any(t.us is not None for t in trials) else 1
