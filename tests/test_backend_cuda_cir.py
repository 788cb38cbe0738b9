"""The CUDA backend's statement-level C IR (`backends/cuda/cir.py`): the passes that replace editing
emitted text (redundant barriers, unread coordinate declarations) and the printer."""
from __future__ import annotations

from tilelang.backends.cuda import cir
from tilelang.backends.cuda.cir import Barrier, Block, Comment, Decl, Line, Snippet


def test_a_barrier_directly_after_a_barrier_goes_and_its_fence_with_it():
    body = (Line("a[tid] = 1;"), Barrier(fence=True), Barrier(fence=True), Barrier(), Line("b = a[0];"))
    assert cir.drop_redundant_barriers(body) == (body[0], body[1], body[4])


def test_barriers_separated_by_anything_stay():
    body = (Barrier(), Comment("x.tile:3  y = x"), Barrier(), Block("", (Barrier(),)), Barrier(),
            Block("if (tid == 0)", (Line("f();"),)), Barrier())
    assert cir.drop_redundant_barriers(body) == body


def test_redundant_barriers_inside_blocks_go_too():
    inner = Block("for (int k = 0; k < 4; ++k)", (Barrier(), Barrier(note="again")))
    assert cir.drop_redundant_barriers((inner,)) == (Block(inner.head, (Barrier(),)),)


def test_an_unread_declaration_goes_a_read_one_stays():
    body = (Decl("int", "i0", "tid / 8"), Decl("int", "i1", "tid % 8"),
            Block("if (i1 < 3)", (Line("x[v] = 0;"),)))
    assert cir.drop_dead_decls(body) == body[1:]


def test_a_declaration_read_only_by_a_dropped_one_goes():
    body = (Decl("int", "i0", "tid"), Decl("int", "i1", "i0 * 2"), Line("y = 0;"))
    assert cir.drop_dead_decls(body) == (Line("y = 0;"),)


def test_only_later_code_counts_as_a_read():
    body = (Line("z = i0;"), Decl("int", "i0", "tid"), Line("i00 = 1;"))
    assert cir.drop_dead_decls(body) == (Line("z = i0;"), Line("i00 = 1;"))


def test_lines_are_never_dropped_even_unread():
    body = (Line("const bool vec = true;"), Snippet(("{", "  q();", "}")))
    assert cir.drop_dead_decls(body) == body


def test_printer_indents_blocks_and_leaves_pragmas_at_the_line_start():
    body = (Comment("k.tile:1  c = a"),
            Block("for (int v = 0; v < 2; ++v)", (Decl("int", "i0", "v"), Line("c[v] = i0;")), "#pragma unroll"),
            Barrier(fence=True, note="done"), Line(""),
            Snippet(("{", "#pragma unroll", "  for (;;) {}", "", "}")))
    assert cir.render(body, 1) == [
        "  // k.tile:1  c = a", "#pragma unroll", "  for (int v = 0; v < 2; ++v) {", "    const int i0 = v;",
        "    c[v] = i0;", "  }", "  tl::fence_proxy_async();", "  __syncthreads();  // done", "",
        "  {", "#pragma unroll", "    for (;;) {}", "", "  }"]


def test_builder_nests_blocks_in_the_order_they_close():
    b = cir.Builder()
    b.add(Line("a;"))
    with b.block("if (x)", "#pragma unroll"):
        b.add(Line("b;"))
        with b.block():
            b.add(Barrier())
    assert b.finish() == (Line("a;"), Block("if (x)", (Line("b;"), Block("", (Barrier(),))), "#pragma unroll"))
