"""The machine a plan is made for: which instructions the layout pass may choose.

Plans differ per target (a gemm is a `wgmma` on sm_90a and an `mma.sync` on sm_80), the
verdict on an author's layout does not: every target accepts or rejects an annotation the
same way, and honors it (a layout wgmma cannot read makes that gemm an mma.sync).

* `sm_80`: Ampere and anything newer without arch-specific features: mma.sync, ldmatrix,
  cp.async. The CUDA backend's portable code.
* `sm_90a`: Hopper with its arch-specific instructions: wgmma, TMA.
* `llvm`: the CPU (TVM's llvm target). It keeps its own loop structure; the plan it gets is
  the default GPU target's, used only for the verdict on annotations.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..diagnostics import TileError


@dataclass(frozen=True)
class Target:
    name: str
    wgmma: bool = False
    tma: bool = False
    gpu: bool = True

    def __str__(self) -> str:
        return self.name


TARGETS = {t.name: t for t in (Target("sm_80"), Target("sm_90a", wgmma=True, tma=True), Target("llvm", gpu=False))}
DEFAULT_GPU = "sm_90a"  # the lent GPUs are Hopper; `tilelang check` and `show` plan for it unless told


def target_of(name: str | Target | None) -> Target:
    """The target named `name` (an arch such as "sm_90a", "sm_80", "sm_89"; None: the default GPU).

    Any sm_XY without the arch-specific suffix plans as sm_80 (portable code)."""
    if isinstance(name, Target):
        return name
    if isinstance(name, str) and name.startswith("cuda:"):
        name = name[len("cuda:"):]
    if name is None:
        return TARGETS[DEFAULT_GPU]
    if name in TARGETS:
        return TARGETS[name]
    if name.startswith("sm_") and name[3:].isdigit() and int(name[3:]) >= 80:
        return TARGETS["sm_80"]
    if name in ("cuda", "gpu"):
        return TARGETS[DEFAULT_GPU]
    if name == "cpu":
        return TARGETS["llvm"]
    raise TileError(f"unknown target '{name}'", hint=f"use one of {', '.join(TARGETS)} (or any sm_XY, XY >= 80)")


def layout_target(name: str | Target | None) -> Target:
    """The GPU target whose plan decides: the CPU takes the default GPU's plan for its verdicts."""
    t = target_of(name)
    return t if t.gpu else TARGETS[DEFAULT_GPU]
