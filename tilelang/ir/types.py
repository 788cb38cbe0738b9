"""Types the shape checker assigns: a tile is (shape, dtype, scope); a scalar has a dtype."""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

from .dtypes import DType


@dataclass(frozen=True)
class TileType:
    shape: tuple[int, ...]
    dtype: DType
    scope: str = "register"

    @property
    def numel(self) -> int:
        return prod(self.shape)

    def __str__(self) -> str:
        return f"{self.scope} {self.dtype}[{', '.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class ScalarType:
    dtype: DType
    weak: bool = False  # an untyped literal: takes its partner's dtype

    def __str__(self) -> str:
        return f"scalar {self.dtype}"


Type = TileType | ScalarType
