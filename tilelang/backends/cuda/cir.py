"""A statement-level C IR: the CUDA emitters build it, small passes tidy it, one printer writes it.

Emitting a statement does not know what comes after it (is the next thing a barrier too? does the
loop body read the coordinate just declared?), so the emitters write what is safe and the passes
over the finished tree take out what turned out redundant. No pass edits printed text."""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Union


@dataclass(frozen=True)
class Line:
    """One line of C, kept as written (a statement, or a declaration that stays even if unread)."""
    code: str


@dataclass(frozen=True)
class Decl:
    """`const ctype name = value;` declared in case the code after it reads it (a loop's coordinates):
    `drop_dead_decls` removes it where nothing after it in its block does."""
    ctype: str
    name: str
    value: str


@dataclass(frozen=True)
class Barrier:
    """`__syncthreads()`; with `fence`, shared writes before it also become visible to the async proxy
    (wgmma, TMA) after it. `note` is a trailing comment."""
    fence: bool = False
    note: str = ""


@dataclass(frozen=True)
class Comment:
    text: str


@dataclass(frozen=True)
class Block:
    """`head { body }`, a bare `{ body }` scope where `head` is empty; `pragma` (loop unrolling) goes on
    the line before it."""
    head: str
    body: tuple["Node", ...]
    pragma: str = ""


@dataclass(frozen=True)
class Snippet:
    """A rendered code shape (templates/ops.cu.j2), its lines kept as written and indented to its place."""
    lines: tuple[str, ...]


Node = Union[Line, Decl, Barrier, Comment, Block, Snippet]


class Builder:
    """Appends nodes to the innermost open block."""

    def __init__(self) -> None:
        self.open: list[list[Node]] = [[]]

    def add(self, node: Node) -> None:
        self.open[-1].append(node)

    @contextmanager
    def block(self, head: str = "", pragma: str = "") -> Iterator[None]:
        self.open.append([])
        yield
        body = self.open.pop()
        self.add(Block(head, tuple(body), pragma))

    def finish(self) -> tuple[Node, ...]:
        assert len(self.open) == 1, "a block was left open"
        return tuple(self.open[0])


_WORD = re.compile(r"[A-Za-z_]\w*")


def names_used(node: Node) -> set[str]:
    """Every identifier the node's code mentions (a word-boundary scan, enough to find a coordinate)."""
    if isinstance(node, Line):
        return set(_WORD.findall(node.code))
    if isinstance(node, Decl):
        return set(_WORD.findall(node.value))
    if isinstance(node, Block):
        return set(_WORD.findall(node.head)).union(*map(names_used, node.body))
    if isinstance(node, Snippet):
        return set().union(*(_WORD.findall(l) for l in node.lines))
    return set()


def drop_dead_decls(body: tuple[Node, ...]) -> tuple[Node, ...]:
    """Remove the `Decl`s that nothing kept after them in their block reads (inner blocks first)."""
    kept: list[Node] = []
    used: set[str] = set()
    for node in reversed(body):
        if isinstance(node, Block):
            node = Block(node.head, drop_dead_decls(node.body), node.pragma)
        if isinstance(node, Decl) and node.name not in used:
            continue
        kept.append(node)
        used |= names_used(node)
    return tuple(reversed(kept))


def drop_redundant_barriers(body: tuple[Node, ...]) -> tuple[Node, ...]:
    """Remove a barrier that directly follows another: nothing between them to order (the first one's
    fence, if any, already covers every write before the second)."""
    kept: list[Node] = []
    for node in body:
        if isinstance(node, Block):
            node = Block(node.head, drop_redundant_barriers(node.body), node.pragma)
        if isinstance(node, Barrier) and kept and isinstance(kept[-1], Barrier):
            continue
        kept.append(node)
    return tuple(kept)


PASSES = (drop_dead_decls, drop_redundant_barriers)  # dead declarations go first: they separate nothing


def render(body: tuple[Node, ...], depth: int = 0) -> list[str]:
    """The C lines of `body`, two spaces of indent per level; `#pragma`s start their line."""
    pad = "  " * depth
    out: list[str] = []
    for node in body:
        if isinstance(node, Line):
            out.append(pad + node.code if node.code else "")
        elif isinstance(node, Decl):
            out.append(f"{pad}const {node.ctype} {node.name} = {node.value};")
        elif isinstance(node, Comment):
            out.append(f"{pad}// {node.text}")
        elif isinstance(node, Barrier):
            if node.fence:
                out.append(pad + "tl::fence_proxy_async();")
            out.append(pad + "__syncthreads();" + (f"  // {node.note}" if node.note else ""))
        elif isinstance(node, Block):
            if node.pragma:
                out.append(node.pragma)
            out.append(f"{pad}{node.head} {{" if node.head else pad + "{")
            out.extend(render(node.body, depth + 1))
            out.append(pad + "}")
        else:
            out.extend(l if l.startswith("#pragma") or not l else pad + l for l in node.lines)
    return out


def lower(body: tuple[Node, ...], depth: int) -> str:
    """Run the passes, then print."""
    for p in PASSES:
        body = p(body)
    return "\n".join(render(body, depth))
