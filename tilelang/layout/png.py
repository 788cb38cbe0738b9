"""A tiny pure-Python PNG writer with a 3x5 pixel font: layout pictures without plotting libraries.

Only what `show.draw_layouts` needs: an RGB canvas, filled rectangles, text (letters
drawn upper-case), and a captioned grid of labelled, coloured cells.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", "A": "010101111101101", "B": "110101110101110",
    "C": "011100100100011", "D": "110101101101110", "E": "111100110100111", "F": "111100110100100",
    "G": "011100101101011", "H": "101101111101101", "I": "111010010010111", "J": "001001001101010",
    "K": "101101110101101", "L": "100100100100111", "M": "101111111101101", "N": "110101101101101",
    "O": "010101101101010", "P": "110101110100100", "Q": "010101101110011", "R": "110101110101101",
    "S": "011100010001110", "T": "111010010010010", "U": "101101101101111", "V": "101101101101010",
    "W": "101101111111101", "X": "101101010101101", "Y": "101101010010010", "Z": "111001010100111",
    " ": "000000000000000", "(": "010100100100010", ")": "010001001001010", "[": "110100100100110",
    "]": "011001001001011", ",": "000000000010100", ".": "000000000000010", ":": "000010000010000",
    "*": "000101010101000", "-": "000000111000000", "_": "000000000000111", "=": "000111000111000",
    "/": "001001010100100", "\\": "100100010001001", "`": "100010000000000", "'": "010010000000000", ";": "000010000010100",
    "+": "000010111010000", ">": "100010001010100", "<": "001010100010001", "?": "111001010000010",
}
CHAR_W, CHAR_H = 4, 6  # glyph plus spacing, in font pixels

Colour = tuple[int, int, int]


class Canvas:
    def __init__(self, width: int, height: int, background: Colour = (255, 255, 255)):
        self.width, self.height = width, height
        self.rows = [bytearray(bytes(background) * width) for _ in range(height)]

    def rect(self, x: int, y: int, w: int, h: int, colour: Colour) -> None:
        x0, x1 = max(x, 0), min(x + w, self.width)
        for yy in range(max(y, 0), min(y + h, self.height)):
            self.rows[yy][3 * x0:3 * x1] = bytes(colour) * (x1 - x0)

    def text(self, x: int, y: int, s: str, scale: int = 1, colour: Colour = (0, 0, 0)) -> None:
        for line_no, line in enumerate(s.split("\n")):
            for k, ch in enumerate(line):
                glyph = _GLYPHS.get(ch.upper(), _GLYPHS["?"])
                for bit, on in enumerate(glyph):
                    if on == "1":
                        gy, gx = divmod(bit, 3)
                        self.rect(x + (k * CHAR_W + gx) * scale, y + (line_no * CHAR_H + gy) * scale, scale, scale,
                                  colour)

    def png_bytes(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(r) for r in self.rows)
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + \
            _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def text_size(s: str, scale: int) -> tuple[int, int]:
    lines = s.split("\n")
    return max(len(x) for x in lines) * CHAR_W * scale, len(lines) * CHAR_H * scale


def grid_picture(title: str, cells: list[list[tuple[str, Colour]]]) -> Canvas:
    """A caption above a grid; each cell a (label, fill colour)."""
    ncols = max(len(r) for r in cells)
    scale = 2 if ncols <= 32 else 1
    cw = max(text_size(label, scale)[0] for row in cells for label, _ in row) + 4 * scale
    ch = max(text_size(label, scale)[1] for row in cells for label, _ in row) + 3 * scale
    tw, th = text_size(title, 2)
    pad = 8
    width = max(ncols * cw, tw) + 2 * pad
    height = th + 2 * pad + len(cells) * ch + pad
    c = Canvas(width, height)
    c.text(pad, pad, title, 2)
    top = th + 2 * pad
    for i, row in enumerate(cells):
        for j, (label, colour) in enumerate(row):
            x, y = pad + j * cw, top + i * ch
            c.rect(x, y, cw, ch, (120, 120, 120))
            c.rect(x + 1, y + 1, cw - 1, ch - 1, colour)
            c.text(x + 2 * scale, y + 2 * scale, label, scale)
    return c


def write(path: Path, canvas: Canvas) -> None:
    Path(path).write_bytes(canvas.png_bytes())
