"""A subscription link as a QR code in PNG, written with the standard library (``qrcode``
gives the matrix; neither Pillow nor pypng is needed in the bot's image)."""

from __future__ import annotations

import struct
import zlib

import qrcode  # type: ignore[import-untyped]
from qrcode.constants import ERROR_CORRECT_M  # type: ignore[import-untyped]

SCALE = 8  # pixels per module: a phone camera reads it off a screen at arm's length


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def qr_png(text: str, scale: int = SCALE) -> bytes:
    """*text* as a black-on-white 8-bit greyscale PNG with the standard 4-module border.
    CPU-bound (a few ms): call it through ``asyncio.to_thread`` on the event loop."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4)
    code.add_data(text)
    code.make(fit=True)
    matrix = code.get_matrix()
    rows = []
    for modules in matrix:
        line = b"".join((b"\x00" if dark else b"\xff") * scale for dark in modules)
        rows.extend([b"\x00" + line] * scale)  # filter byte 0 (none) per scanline
    size = len(matrix) * scale
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(b"".join(rows), 6)),
            _chunk(b"IEND", b""),
        )
    )
