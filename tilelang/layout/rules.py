"""The registry of layout rules: one inference rule and one validation per statement kind.

In the spirit of Tilus' rule registry: every statement kind of the IR has exactly one `Rule`,
and the layout pass applies them in the fixed `ORDER` (author annotations first, then gemms,
whose fragments are the hardest constraints, then elementwise assignments, copies, dequants;
scalar statements and loops contribute nothing). A rule has three parts:

* `infer(state, stmt)`: record what the statement asks of its tiles (annotations, fragment
  roles, which tiles must share a mapping, run lengths);
* `plan(state, index, stmt)`: once every tile has its layout, the statement's plan (mappings,
  instructions, vector widths) and its cost; None for statements with nothing to plan;
* `validate(plan, stmt_plan)`: re-check the statement against the finished plan; a failure is
  a bug in the rules (an `InternalError`), never the author's.

`tests/test_conformance.py` checks that every statement type has a rule here, a case in the
reference interpreter and an emitter in every backend.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..ir import nodes as N


@dataclass(frozen=True)
class Rule:
    kind: type
    infer: Callable[[Any, Any], None]
    plan: Callable[[Any, int, Any], Any]
    validate: Callable[[Any, Any], None]


ORDER: tuple[type, ...] = (N.Alloc, N.Gemm, N.Assign, N.Copy, N.Dequant, N.AtomicAdd, N.Let, N.For, N.ReadScalar, N.If)
RULES: dict[type, Rule] = {}


def register(kind: type, infer=None, plan=None, validate=None) -> None:
    """Register the rule of statement type `kind` (once)."""
    assert kind not in RULES, f"two layout rules for {kind.__name__}"
    RULES[kind] = Rule(kind, infer or _nothing, plan or _no_plan, validate or _nothing)


def _nothing(*_) -> None:
    return None


def _no_plan(*_):
    return None, None
