"""Image size read from a file's header, before anything is decoded.

A 1 MB PNG can hold 30000 x 30000 pixels: decoding it takes gigabytes. The size in the header
is checked against a pixel limit first. Formats whose header is not understood here return None
and are left to OpenCV (which has its own limit of 2^30 pixels).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

_HEAD_BYTES = 64 * 1024  # JPEG markers before the frame header (EXIF, ICC) fit in this
DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: a 12000 x 8000 photo passes, bombs do not


def _png(head: bytes) -> tuple[int, int] | None:
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR" or len(head) < 24:
        return None
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def _jpeg(head: bytes) -> tuple[int, int] | None:
    if head[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 9 <= len(head):
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            position += 2
            continue
        # Start-of-frame markers (C0..CF except DHT C4, JPG C8, DAC CC) carry the size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[position + 5:position + 9])
            return height, width
        (length,) = struct.unpack(">H", head[position + 2:position + 4])
        position += 2 + length
    return None


def _bmp(head: bytes) -> tuple[int, int] | None:
    if head[:2] != b"BM" or len(head) < 26:
        return None
    width, height = struct.unpack("<ii", head[18:26])
    return abs(height), abs(width)


def _webp(head: bytes) -> tuple[int, int] | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP" or len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return height, width
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return height & 0x3FFF, width & 0x3FFF
    return None


def _pnm(head: bytes) -> tuple[int, int] | None:
    if head[:1] != b"P" or head[1:2] not in b"123456":
        return None
    numbers: list[int] = []
    for line in head[2:].split(b"\n"):
        for word in line.split(b"#", 1)[0].split():
            if not word.isdigit():
                return None
            numbers.append(int(word))
            if len(numbers) == 2:
                return numbers[1], numbers[0]
    return None


def _tiff(head: bytes) -> tuple[int, int] | None:
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 8 or struct.unpack(order + "H", head[2:4])[0] != 42:
        return None
    (offset,) = struct.unpack(order + "I", head[4:8])
    if offset + 2 > len(head):
        return None
    (count,) = struct.unpack(order + "H", head[offset:offset + 2])
    size: dict[int, int] = {}
    for entry in range(count):
        start = offset + 2 + 12 * entry
        if start + 12 > len(head):
            break
        tag, kind = struct.unpack(order + "HH", head[start:start + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            value = head[start + 8:start + 12]
            size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"),
                                      value[:2] if kind == 3 else value)[0]
    return (size[257], size[256]) if len(size) == 2 else None


_READERS: tuple[Callable[[bytes], tuple[int, int] | None], ...] = (
    _png, _jpeg, _bmp, _webp, _pnm, _tiff)


def header_size(head: bytes) -> tuple[int, int] | None:
    """(height, width) from the first bytes of an image file, or None if not understood."""
    for reader in _READERS:
        try:
            size = reader(head)
        except (struct.error, IndexError, ValueError):
            size = None
        if size is not None:
            return size
    return None


def read_header_size(path: Path) -> tuple[int, int] | None:
    with path.open("rb") as stream:
        return header_size(stream.read(_HEAD_BYTES))


def too_many_pixels(size: tuple[int, int] | None, max_pixels: int | None) -> str | None:
    """Why an image of `size` is refused under `max_pixels`, or None if it is not."""
    if size is None or max_pixels is None or size[0] * size[1] <= max_pixels:
        return None
    height, width = size
    # About 12 bytes per pixel are alive at once: the decoded frame, labels, colours, overlay.
    return (f"{width}x{height} is {height * width / 1e6:.3g} MP, over the limit of "
            f"{max_pixels / 1e6:.3g} MP (--max-pixels; raising it needs about "
            f"{height * width * 12 / 2**30:.1f} GiB of memory)")
