"""Reading image files whole: a file cut short is refused, not decoded into a grey half-image.

OpenCV decodes a truncated JPEG without complaint (the missing rows come out grey), so every reader
of user images (conversion, infer.py, the 310 twin) checks that the file reaches its format's end
marker before decoding it.
"""

import struct

from nasfpn.data.transforms import ImageDecodeError, decode_image

JPEG_START = b"\xff\xd8"
JPEG_START_OF_SCAN = b"\xff\xda"
JPEG_END = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHUNK_OVERHEAD = 12  # length (4) + type (4) + CRC (4) around each chunk's data
BMP_START = b"BM"


def _jpeg_truncation(data):
    # Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so the last
    # start-of-scan marker is the real one (not an EXIF thumbnail's), and an end-of-image marker
    # after it means the last scan is complete. Bytes after the end marker are tolerated.
    last_scan = data.rfind(JPEG_START_OF_SCAN)
    if last_scan < 0:
        return "truncated JPEG (no image data: no start-of-scan marker)"
    if data.find(JPEG_END, last_scan + len(JPEG_START_OF_SCAN)) < 0:
        return "truncated JPEG (no end-of-image marker after the image data)"
    return None


def _png_truncation(data):
    # Walk the length-prefixed chunks up to IEND; running past the end of the data means truncation.
    offset = len(PNG_SIGNATURE)
    while offset + PNG_CHUNK_OVERHEAD <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        offset += PNG_CHUNK_OVERHEAD + length
        if offset > len(data):
            break
        if kind == b"IEND":
            return None
    return "truncated PNG (no complete IEND chunk)"


def _bmp_truncation(data):
    declared = int.from_bytes(data[2:6], "little") if len(data) >= 6 else 0
    if len(data) < 6 or len(data) < declared:
        return f"truncated BMP ({len(data)} of {declared} bytes)"
    return None


def truncation_reason(data):
    """Why the encoded image `data` is incomplete (JPEG, PNG, BMP), or None when it is whole or of
    another format (left to the decoder)."""
    data = bytes(data)
    if data.startswith(JPEG_START):
        return _jpeg_truncation(data)
    if data.startswith(PNG_SIGNATURE):
        return _png_truncation(data)
    if data.startswith(BMP_START):
        return _bmp_truncation(data)
    return None


class TruncatedImageError(ImageDecodeError):
    """An image file that ends before its format's end marker."""


def read_image_file(path):
    """(encoded bytes, RGB uint8 HxWx3) of a complete image file.

    Raises ImageDecodeError for a file that cannot be read or decoded, TruncatedImageError (a
    subclass) for one that decodes but is cut short; both name the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        image = decode_image(data)
    except ImageDecodeError:
        raise ImageDecodeError(f"{path}: not a decodable image") from None
    # Checked after decoding so that "truncated" means "decodes, but part of it is missing".
    reason = truncation_reason(data)
    if reason:
        raise TruncatedImageError(f"{path}: {reason}")
    return data, image
