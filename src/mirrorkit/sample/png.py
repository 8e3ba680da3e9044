"""A tiny PNG encoder, so the sample outlet can serve real images without Pillow.

:func:`sample_png` draws a striped gradient whose colours come from a seed: the same
seed always gives the same bytes, which is what content-addressed storage tests need.
"""

from __future__ import annotations

import random
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(width: int, height: int, rows: list[bytes]) -> bytes:
    """Encode 8-bit RGB ``rows`` (each ``3 * width`` bytes, top to bottom) as a PNG."""
    if len(rows) != height or any(len(row) != 3 * width for row in rows):
        raise ValueError(f"expected {height} rows of {3 * width} bytes")
    # Colour type 2 (RGB), bit depth 8, default compression/filter, no interlace.
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 (None) on every row
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def sample_png(seed: int, width: int = 320, height: int = 180) -> bytes:
    """A horizontal gradient between two seeded colours, crossed by seeded stripes."""
    rng = random.Random(seed)
    top = [rng.randrange(256) for _ in range(3)]
    bottom = [rng.randrange(256) for _ in range(3)]
    stripe = bytes(rng.randrange(256) for _ in range(3))
    period = rng.randrange(16, 48)
    width_on = rng.randrange(2, period // 2)
    rows = []
    for y in range(height):
        t = y / max(height - 1, 1)
        base = bytes(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        row = bytearray(base * width)
        for x in range((y // 4) % period, width, period):  # stripes lean as y grows
            end = min(x + width_on, width)
            row[3 * x : 3 * end] = stripe * (end - x)
        rows.append(bytes(row))
    return encode_png(width, height, rows)
