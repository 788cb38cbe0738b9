"""Run generated CUDA code on the CPU: a test harness for machines without a GPU.

The kernel's source is compiled as host C++20 with `templates/emulator.h.j2` in place of
the CUDA headers and `templates/emulator_ptx.h.j2` in place of the PTX wrappers; each
CUDA thread of a block is a `std::thread`.  Arrays are numpy (written in place).
This checks indexing, masking, mappings, fragment layouts, alignment of vector accesses
(UBSan; ldmatrix and cp.async addresses are checked by the emulator) and barrier placement
(`sanitize=True` builds with ThreadSanitizer, which reports shared-memory races); it says
nothing about speed.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import subprocess
import tempfile
from contextlib import contextmanager

import numpy as np

from ...diagnostics import TileError
from ...passes.infer import TypedKernel
from ...quant import PackedWeight
from ...runtime.args import bind
from .codegen import Source, generate_source
from .errors import explain
from .runtime import grid_of
from .templating import verbatim

_CACHE = os.path.join(tempfile.gettempdir(), "tilelang_cuda_emulator")


def host_source(src: Source) -> str:
    """The kernel as host C++: emulated CUDA, the portable prelude, emulated PTX, a launcher."""
    code = src.code
    start = code.index("// ---- tilelang prelude: headers")
    helpers = code.index("// ---- tilelang prelude: helpers")
    ptx = code.index("// ---- tilelang prelude: PTX")
    end = code.index("// ---- end of tilelang prelude")
    emu = '#include "tl_emulator.h"  // templates/emulator.h.j2 (precompiled)\n'
    emu_ptx = verbatim("emulator_ptx.h.j2")
    kernel = code[end:].replace("extern __shared__ __align__(128) unsigned char tl_smem[];",
                                "unsigned char* const tl_smem = tl_emu::block->smem;")
    types = [d.rsplit(" ", 1)[0] for d in src.decls]
    args = ", ".join(f"*({t}*)args[{i}]" for i, t in enumerate(types))
    launcher = f"""
extern "C" void tl_launch(int gx, int gy, int gz, int smem_bytes, void** args, unsigned seed) {{
  const int T = {src.threads};
  std::vector<unsigned char> smem(smem_bytes > 0 ? smem_bytes : 1);
  for (int bz = 0; bz < gz; ++bz) for (int by = 0; by < gy; ++by) for (int bx = 0; bx < gx; ++bx) {{
    std::memset(smem.data(), 0xff, smem.size());  // NaN for floats: reads of unwritten shared memory show
    std::barrier<> all(T);
    std::vector<std::barrier<>*> warps;
    for (int w = 0; w < T / 32; ++w) warps.push_back(new std::barrier<>(32));
    tl_emu::Block blk{{T, &all, warps, smem.data(), {{}}, {{}}, {{}}, {{}}}};
    std::vector<std::thread> threads;
    for (int t = 0; t < T; ++t)
      threads.emplace_back([&, t] {{
        std::mt19937 rng(seed * 7919u + (unsigned)(((bz * gy + by) * gx + bx) * T + t));
        std::vector<std::vector<tl_emu::Pending>> groups(1);
        tl_emu::block = &blk; tl_emu::rng = &rng; tl_emu::groups = &groups;
        tl_emu::thread_idx = tl_dim3{{(unsigned)t, 0, 0}};
        tl_emu::block_idx = tl_dim3{{(unsigned)bx, (unsigned)by, (unsigned)bz}};
        {src.name}({args});
      }});
    for (auto& th : threads) th.join();
    for (auto* w : warps) delete w;
  }}
}}
"""
    return (emu + code[:start] + code[helpers:ptx] + emu_ptx + "\n" + kernel.replace("extern \"C\" __global__ void", "void", 1)
            + launcher)


def _main(src: Source) -> str:
    """A `main` for the sanitizer build: argument files in, results out (argv: dir gx gy gz seed values...)."""
    lines = ["#include <cstdio>", "#include <string>", "int main(int argc, char** argv) {",
             "  std::string dir = argv[1];", "  std::vector<std::vector<unsigned char>> bufs;",
             f"  void* args[{max(len(src.params), 1)}];"]
    for i, ((kind, _), decl) in enumerate(zip(src.params, src.decls)):
        t = decl.rsplit(" ", 1)[0]
        if kind == "tensor":
            lines += [f"  FILE* f{i} = fopen((dir + \"/{i}.bin\").c_str(), \"rb\");",
                      f"  fseek(f{i}, 0, SEEK_END); long n{i} = ftell(f{i}); fseek(f{i}, 0, SEEK_SET);",
                      f"  bufs.emplace_back(n{i} > 0 ? n{i} : 1);",
                      f"  if (fread(bufs.back().data(), 1, n{i}, f{i}) != (size_t)n{i}) return 2;",
                      f"  fclose(f{i});", f"  void* v{i} = bufs.back().data();"]
        else:
            conv = "atof" if t == "float" else "atoll"
            lines.append(f"  {t} v{i} = ({t}){conv}(argv[6 + {i}]);")
        lines.append(f"  args[{i}] = &v{i};")
    lines.append(f"  tl_launch(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), {src.smem_bytes}, args, "
                 "(unsigned)atoi(argv[5]));")
    k = 0
    for i, (kind, _) in enumerate(src.params):
        if kind == "tensor":
            lines += [f"  FILE* o{i} = fopen((dir + \"/{i}.bin\").c_str(), \"wb\");",
                      f"  fwrite(bufs[{k}].data(), 1, n{i}, o{i}); fclose(o{i});"]
            k += 1
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


# UBSan's alignment check stops a misaligned vector access, which a GPU would fault on
_FLAGS = ["-std=c++20", "-O1", "-pthread", "-w", "-fPIC", "-fsanitize=alignment", "-fno-sanitize-recover=alignment"]
_SANITIZE = ["-fsanitize=thread", "-g"]


@contextmanager
def _exclusive(path: str):
    """One builder per output, across threads and processes (pytest-xdist workers share the cache):
    each open() has its own lock, so threads of one process exclude each other too."""
    with open(path + ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _header_dir(flags: list[str]) -> str:
    """A directory with templates/emulator.h.j2 as tl_emulator.h, precompiled for `flags` (the C++
    threading headers it includes take most of a build's time)."""
    text = verbatim("emulator.h.j2")
    d = os.path.join(_CACHE, "pch_" + hashlib.sha256((text + " ".join(flags)).encode()).hexdigest()[:16])
    os.makedirs(d, exist_ok=True)
    gch = os.path.join(d, "tl_emulator.h.gch")
    with _exclusive(gch):
        if not os.path.exists(gch):
            with open(os.path.join(d, "tl_emulator.h"), "w") as f:
                f.write(text)
            subprocess.run(["g++", *flags, "-x", "c++-header", os.path.join(d, "tl_emulator.h"), "-o", gch + ".tmp"],
                           capture_output=True, check=True)
            os.replace(gch + ".tmp", gch)
    return d


def _build(code: str, name: str, sanitize: bool) -> str:
    """Compile once per source (cached on disk): a shared library, or a ThreadSanitizer executable."""
    os.makedirs(_CACHE, exist_ok=True)
    flags = _FLAGS + (_SANITIZE if sanitize else [])
    key = hashlib.sha256((code + " ".join(flags)).encode()).hexdigest()[:20]
    out = os.path.join(_CACHE, f"{name}_{key}" + ("" if sanitize else ".so"))
    headers = _header_dir(flags)
    with _exclusive(out):
        if not os.path.exists(out):
            cpp = os.path.join(_CACHE, f"{name}_{key}.cpp")
            with open(cpp, "w") as f:
                f.write(code)
            link = [] if sanitize else ["-shared"]
            proc = subprocess.run(["g++", *flags, *link, "-I", headers, cpp, "-o", out + ".tmp"],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise explain(proc.stderr, code, name, "g++ (emulation)")
            os.replace(out + ".tmp", out)
    return out


class Emulated:
    """A launcher like the GPU one, for numpy arrays (written in place).

    With `sanitize=True` each call runs a ThreadSanitizer build in a subprocess and raises
    a TileError if two threads race on shared or global memory."""

    def __init__(self, tk: TypedKernel, sanitize: bool = False):
        self.tk = tk
        self.src = generate_source(tk)
        code = host_source(self.src)
        self.sanitize = sanitize
        if sanitize:
            self.exe = _build(code + _main(self.src), self.src.name, True)
        else:
            self.lib = ctypes.CDLL(_build(code, self.src.name, False))
        self.seed = 1

    def __call__(self, *args, **kwargs) -> None:
        call = bind(self.tk.kernel, args, kwargs)
        grid = grid_of(self.tk, call)
        if min(grid) <= 0:
            return
        values = []
        for kind, name in self.src.params:
            if kind == "tensor":
                a = call.arrays[name]
                if isinstance(a, PackedWeight):  # the bytes in the plan's order (checked by TileKernel calls)
                    a = np.ascontiguousarray(a.numpy())
                if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
                    raise TileError(f"the emulator takes contiguous numpy arrays; '{name}' is not one")
                values.append(a)
            elif kind == "dim":
                values.append(int(call.dims[name]))
            else:
                p = self.tk.kernel.param(name)
                v = call.scalars[name]
                values.append(float(v) if p.dtype.is_float else int(v))
        self.seed += 1
        if self.sanitize:
            self._run_sanitized(grid, values)
            return
        holders = []
        for (kind, _), decl, v in zip(self.src.params, self.src.decls, values):
            t = decl.rsplit(" ", 1)[0]
            holders.append(ctypes.c_void_p(v.ctypes.data) if kind == "tensor" else ctypes.c_float(v)
                           if t == "float" else ctypes.c_int(v) if t == "int" else ctypes.c_longlong(v))
        argv = (ctypes.c_void_p * len(holders))(*(ctypes.cast(ctypes.pointer(h), ctypes.c_void_p) for h in holders))
        self.lib.tl_launch(*grid, self.src.smem_bytes, argv, ctypes.c_uint(self.seed))

    def _run_sanitized(self, grid, values) -> None:
        with tempfile.TemporaryDirectory() as d:
            argv = [self.exe, d, *map(str, grid), str(self.seed)]
            for i, v in enumerate(values):
                if isinstance(v, np.ndarray):
                    v.tofile(os.path.join(d, f"{i}.bin"))
                    argv.append("0")
                else:
                    argv.append(repr(v))
            env = {**os.environ, "TSAN_OPTIONS": "halt_on_error=0 exitcode=66"}
            proc = subprocess.run(argv, capture_output=True, text=True, env=env)
            if "ThreadSanitizer" in proc.stderr:
                report = proc.stderr[:6000]
                raise TileError(f"ThreadSanitizer found a data race in kernel '{self.src.name}':\n{report}")
            if proc.returncode:
                raise TileError(f"the emulated kernel '{self.src.name}' failed ({proc.returncode}): {proc.stderr[:2000]}")
            for i, v in enumerate(values):
                if isinstance(v, np.ndarray):
                    v[...] = np.fromfile(os.path.join(d, f"{i}.bin"), dtype=v.dtype).reshape(v.shape)
