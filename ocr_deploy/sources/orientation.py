"""EXIF orientation: phone photos store the sensor's pixels and a tag saying how to turn them.

OpenCV applies the tag only for some imread flags, never with IMREAD_UNCHANGED (which keeps
16-bit depth and alpha), so images are decoded unchanged and turned here, by the tag read from
the file's own bytes (JPEG APP1, PNG eXIf). The frame is then segmented, and every output
written, the way the photo is displayed.
"""

from __future__ import annotations

import struct

import numpy as np

_ORIENTATION_TAG = 0x0112
# Orientation value -> what turns the stored pixels into the displayed image, in words.
DESCRIPTIONS = {
    2: "mirrored", 3: "rotated 180°", 4: "flipped upside down", 5: "transposed",
    6: "rotated 90° clockwise", 7: "transversed", 8: "rotated 90° counter-clockwise",
}


def _tiff_orientation(tiff: bytes) -> int | None:
    """The orientation in IFD0 of a TIFF-structured EXIF block, or None."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", tiff[4:8])
    if offset + 2 > len(tiff):
        return None
    (count,) = struct.unpack(order + "H", tiff[offset:offset + 2])
    for entry in range(count):
        start = offset + 2 + 12 * entry
        if start + 12 > len(tiff):
            return None
        tag, kind, _, value = struct.unpack(order + "HHIH", tiff[start:start + 10])
        if tag == _ORIENTATION_TAG and kind == 3:  # SHORT
            return value if 1 <= value <= 8 else None
    return None


def _jpeg_exif(data: bytes) -> bytes | None:
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no EXIF before the pixels
            return None
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if marker == 0xE1 and data[position + 4:position + 10] == b"Exif\x00\x00":
            return data[position + 10:position + 2 + length]
        position += 2 + length
    return None


def _png_exif(data: bytes) -> bytes | None:
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind == b"eXIf":
            return data[position + 8:position + 8 + length]
        if kind in (b"IDAT", b"IEND"):
            return None
        position += 12 + length
    return None


def exif_orientation(data: bytes | np.ndarray) -> int:
    """The EXIF orientation (1..8) of an encoded JPEG or PNG; 1 when it has none."""
    head = bytes(data[: 256 * 1024])
    block = None
    if head[:2] == b"\xff\xd8":
        block = _jpeg_exif(head)
    elif head[:8] == b"\x89PNG\r\n\x1a\n":
        block = _png_exif(head)
    try:
        return (_tiff_orientation(block) or 1) if block else 1
    except struct.error:  # a truncated or malformed block: taken as no orientation
        return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels turned to the displayed image (EXIF 2..8); 1 leaves them as they are."""
    turned = {
        2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return image if turned is None else np.ascontiguousarray(turned(image))
