"""`tilelang show --layouts` text and `--draw` pictures (PNG files from the pure-Python writer)."""

import struct
import zlib
from pathlib import Path

import tilelang
from tilelang.cli import main
from tilelang.layout import infer_layouts
from tilelang.layout.png import Canvas
from tilelang.layout.show import draw_layouts, layouts_text

KERNELS = Path(__file__).resolve().parent.parent / "kernels"

SMALL = """
kernel small(X: f16[M, N], Y: f16[M, N])
    grid(cdiv(M, 4)) threads(32)
{
    x = register(f32[4, 16]);
    s = shared(f16[8, 64]);
    copy(X[block_id(0), 0], x);
    y = x * 2.0;
    copy(y, Y[block_id(0), 0]);
}
"""


def small():
    (k,) = tilelang.loads(SMALL, "small.tile").values()
    return k.lower()


def test_text_has_every_tile_with_a_full_tv_grid_for_small_tiles():
    tk = small()
    plan = infer_layouts(tk)
    text = layouts_text(tk, plan)
    lines = text.splitlines()
    assert lines[0] == "layouts of kernel small for sm_90a: 32 threads (1 warps)"
    for name in ("x", "s", "y"):
        assert f"tile {name}: " in text
    start = lines.index("  holders [rows 0-3, cols 0-15] (T thread, V register index; lowest thread if replicated):")
    grid = [row.split() for row in lines[start + 1:start + 5]]
    m = plan.mapping("x")
    for i, j in ((0, 0), (1, 5), (3, 15)):
        t, v = m.thread_of((i, j))[0]
        assert grid[i][j] == f"T{t}V{v}"
    assert f"layout  {plan.tile('x').expr}" in text
    assert "statements" in text and "ld.global" in text


def test_shared_tiles_show_their_swizzle_as_chunk_permutations():
    tk = tilelang.load(KERNELS / "gemm.tile")["gemm"].lower()
    text = layouts_text(tk)
    block = text.split("tile b: ")[1].split("tile acc")[0]
    rows = [line.split() for line in block.splitlines() if line.strip() and line.split()[0].isdigit()]
    rows = [r for r in rows if all(x.isdigit() for x in r)]
    assert rows[0] == [str(i) for i in range(8)] and rows[1] == ["1", "0", "3", "2", "5", "4", "7", "6"]


def decode_png(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + n
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == h * (1 + 3 * w) and all(raw[r * (1 + 3 * w)] == 0 for r in range(h))
    rows = [raw[r * (1 + 3 * w) + 1:(r + 1) * (1 + 3 * w)] for r in range(h)]
    return w, h, lambda x, y: tuple(rows[y][3 * x:3 * x + 3])


def test_png_writer_round_trips_pixels():
    c = Canvas(7, 5)
    c.rect(2, 1, 3, 2, (10, 20, 30))
    c.text(0, 0, "T1", 1)
    w, h, px = decode_png(c.png_bytes())
    assert (w, h) == (7, 5) and px(3, 2) == (10, 20, 30) and px(3, 4) == (255, 255, 255)
    assert px(0, 0) == (0, 0, 0)  # top-left pixel of the T glyph


def test_draw_writes_a_readable_picture_per_tile(tmp_path):
    tk = small()
    plan = infer_layouts(tk)
    paths = draw_layouts(tk, tmp_path / "pics", plan)
    assert [p.name for p in paths] == ["small.x.png", "small.s.png", "small.y.png"]
    w, h, px = decode_png(paths[0].read_bytes())
    colours = {px(x, y) for x in range(w) for y in range(h)}
    threads = {plan.mapping("x").thread_of((i, j))[0][0] for i in range(4) for j in range(16)}
    assert len(colours) >= len(threads)  # one fill colour per thread, plus text and lines
    assert (0, 0, 0) in colours  # labels are drawn


def test_cli_show_layouts_and_draw(tmp_path, capsys):
    assert main(["show", str(KERNELS / "gemm.tile"), "--layouts", "--draw", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "layouts of kernel gemm for sm_90a" in out and "wgmma.m64n64k16.f32.f16" in out
    assert main(["show", str(KERNELS / "gemm.tile"), "--layouts", "--target", "sm_80"]) == 0
    assert "mma.m16n8k16.f32.f16" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gemm.a.png", "gemm.acc.png", "gemm.b.png"]
    decode_png((tmp_path / "gemm.acc.png").read_bytes())
