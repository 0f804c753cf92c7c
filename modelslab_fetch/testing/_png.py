"""Small, valid PNG images, made without an imaging library (zlib and struct suffice)."""

from __future__ import annotations

import struct
import zlib

__all__ = ["solid_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A `width` x `height` PNG of one colour, with a lighter diagonal so it is not blank."""
    light = tuple(min(255, channel + 80) for channel in rgb)
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type "none" for each scanline
        for x in range(width):
            rows.extend(light if x == y * width // height else rgb)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
