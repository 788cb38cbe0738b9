"""The `tilelang` command: check, show and build kernels (`.tile` files and `@tile_kernel` Python files)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .diagnostics import TileError, TileErrors, did_you_mean
from .frontend.sources import kernel_files, parse_source_file
from .ir.nodes import Kernel
from .ir.printer import kernel_str
from .passes import lower
from .tracebacks import report_command_error


def _errors(e: TileError) -> list[TileError]:
    return list(e.errors) if isinstance(e, TileErrors) else [e]


def check_file(path: Path, target: str | None = None) -> list[TileError]:
    """Parse, build, type-check and plan the layouts of every kernel of a file with its default
    constants, for `target` (default: the default GPU target): the verdict every build gives."""
    from .layout import infer_layouts
    try:
        module = parse_source_file(path)
    except TileError as e:
        return _errors(e)
    errors: list[TileError] = []
    for k in module.kernels:
        try:
            infer_layouts(lower(k), target)
        except TileError as e:
            errors += _errors(e)
    return errors


def cmd_check(args) -> int:
    files = kernel_files(args.paths)
    errors = [e for f in files for e in check_file(f, args.target)]
    for e in errors:
        print(e.render(), file=sys.stderr)
    n = len(files)
    if errors:
        print(f"{len(errors)} error{'s' if len(errors) != 1 else ''} in {n} file{'s' if n != 1 else ''}", file=sys.stderr)
        return 1
    print(f"ok: {n} file{'s' if n != 1 else ''} checked")
    return 0


def _consts(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise TileError(f"--const {pair!r}: expected NAME=VALUE", hint="e.g. --const BM=128 --const T=bf16")
        out[name] = int(value) if value.lstrip("-").isdigit() else value
    return out


def _pinned(consts: dict[str, object], kernels: list[Kernel], file: str) -> None:
    """Every --const must name a compile-time parameter of at least one kernel shown."""
    known = sorted({c.name for k in kernels for c in k.consts})
    for name in consts:
        if name not in known:
            whose = f"kernel '{kernels[0].name}'" if len(kernels) == 1 else f"any kernel of {file}"
            raise TileError(f"--const {name}: not a compile-time parameter of {whose}",
                            hint=did_you_mean(name, known, f"compile-time parameters: {', '.join(known) or 'none'}"))


def cmd_show(args) -> int:
    module = parse_source_file(args.file)
    consts = _consts(args.const)
    kernels = [module.kernel(args.kernel)] if args.kernel else list(module.kernels)
    _pinned(consts, kernels, args.file)
    for k in kernels:
        given = {c.name: consts[c.name] for c in k.consts if c.name in consts}
        tk = lower(k, given)
        print(kernel_str(tk.kernel, tk))
        if args.layouts or args.draw:
            from .layout import infer_layouts
            from .layout.show import draw_layouts, layouts_text
            print(layouts_text(tk, target=args.target))
            if args.draw:
                for path in draw_layouts(tk, Path(args.draw), infer_layouts(tk, args.target)):
                    print(f"wrote {path}")
        print()
    return 0


def cmd_build(args) -> int:
    from .build import build
    return build(args.dir, backend=args.backend, out=Path(args.output), target=args.target)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tilelang", description=__doc__)
    ap.add_argument("--version", action="version", version=f"tilelang {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="parse and verify .tile files and @tile_kernel .py files, reporting every error")
    c.add_argument("paths", nargs="+")
    c.add_argument("--target", default=None, help="plan layouts for this GPU (default sm_90a; e.g. sm_80)")
    c.set_defaults(fn=cmd_check)
    s = sub.add_parser("show", help="print a file's kernels as typed IR")
    s.add_argument("file")
    s.add_argument("--kernel", help="only this kernel")
    s.add_argument("--const", action="append", default=[], metavar="NAME=VALUE", help="compile-time constant")
    s.add_argument("--layouts", action="store_true", help="print each tile's layout and task mapping")
    s.add_argument("--draw", metavar="DIR", help="write a PNG per tile showing its layout")
    s.add_argument("--target", default=None, help="plan layouts for this GPU (default sm_90a; e.g. sm_80)")
    s.set_defaults(fn=cmd_show)
    b = sub.add_parser("build", help="compile every .tile file in a folder for a backend")
    b.add_argument("dir")
    b.add_argument("--backend", default="triton", choices=["triton", "tvm", "cuda"])
    b.add_argument("-o", "--output", default="build")
    b.add_argument("--target", default=None, help="e.g. sm_90, sm_90a, llvm")
    b.set_defaults(fn=cmd_build)
    from .bench.commands import register
    register(sub)  # tune, bench
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except Exception as e:  # noqa: BLE001 - a user's mistake or a located compiler bug, never a raw traceback
        return report_command_error(e, f"tilelang {args.cmd}")


if __name__ == "__main__":
    sys.exit(main())
