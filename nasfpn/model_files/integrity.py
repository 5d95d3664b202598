"""What makes a stored weight file trustworthy before anything uses it.

- **Checksum** (`verify_checkpoint_crc`): every checkpoint written here ends with MindSpore's own
  CRC-32 trailer (`save_checkpoint(..., crc_check=True)`: the 7 bytes `crc_num` and the CRC of
  everything before them in 10 big-endian bytes), so the check travels inside the file, to a
  checkpoint copied alone to another machine too. A file whose CRC differs is refused by name. A
  file without the trailer (the release's checkpoints, the published one of --hub, those written
  by earlier versions) cannot be checked this way and is read as before; the published one is
  checked by its sha256 (nasfpn/inference/hub.py).
  MindSpore's own `load_checkpoint(..., crc_check=True)` turns a mismatch into "May not have
  permission to read it", so the CRC is checked here, over the file in blocks, and MindSpore reads
  the file without repeating it.
- **Values** (`check_weight_values`): no inf or NaN anywhere, no negative BatchNorm moving
  variance; the first bad parameter is named with what it holds.
"""

import binascii
import os
from typing import Iterable, Mapping, Optional, Tuple

import numpy as np

from nasfpn.core.errors import UserError

CRC_MARKER = b"crc_num"
CRC_DIGITS = 10  # MindSpore writes the CRC-32 as 10 big-endian bytes after the marker
TRAILER = len(CRC_MARKER) + CRC_DIGITS
BLOCK = 8 << 20
# The BatchNorm moving variance in our names, and in torchvision / timm state dicts.
VARIANCE_SUFFIXES = ("moving_variance", "running_var")

_verified = {}  # (real path, size, mtime_ns) -> "crc32" | "none": one check per file version


class DamagedFileError(UserError):
    """A weight file whose checksum or values show it was damaged (or trained into nonsense)."""


def _file_key(path: str) -> Tuple[str, int, int]:
    stat = os.stat(path)
    return os.path.realpath(path), stat.st_size, stat.st_mtime_ns


def stored_crc(path: str) -> Optional[int]:
    """The CRC-32 a file's MindSpore trailer records, or None when it has no trailer."""
    size = os.path.getsize(path)
    if size < TRAILER:
        return None
    with open(path, "rb") as f:
        f.seek(size - TRAILER)
        tail = f.read(TRAILER)
    if tail[: len(CRC_MARKER)] != CRC_MARKER:
        return None
    return int.from_bytes(tail[len(CRC_MARKER) :], byteorder="big")


def crc_of_body(path: str) -> int:
    """CRC-32 of everything before the trailer, read in blocks."""
    remaining = os.path.getsize(path) - TRAILER
    crc = 0
    with open(path, "rb") as f:
        while remaining > 0:
            block = f.read(min(BLOCK, remaining))
            if not block:
                break
            crc = binascii.crc32(block, crc)
            remaining -= len(block)
    return crc


def verify_checkpoint_crc(path: str) -> str:
    """ "crc32" when `path` carries a CRC that matches, "none" when it carries none;
    DamagedFileError naming the file when its CRC differs. A file checked once (same size and
    modification time) is not read again."""
    key = _file_key(path)
    if key in _verified:
        return _verified[key]
    expected = stored_crc(path)
    if expected is None:
        verdict = "none"
    else:
        actual = crc_of_body(path)
        if actual != expected:
            raise DamagedFileError(
                f"{path} is damaged: its CRC-32 is {actual:08x}, the file records {expected:08x} "
                "(changed after it was written: a bad copy, disk or transfer); use another copy"
            )
        verdict = "crc32"
    _verified[key] = verdict
    return verdict


# ---- values ---------------------------------------------------------------------------------
def is_variance(name: str) -> bool:
    return name.endswith(VARIANCE_SUFFIXES)


def value_fault(name: str, values: np.ndarray) -> str:
    """What is wrong with one parameter's values ("" when nothing): NaN / inf anywhere, a negative
    BatchNorm variance."""
    if not np.issubdtype(values.dtype, np.floating):
        return ""
    finite = np.isfinite(values)
    if not finite.all():
        nan = int(np.count_nonzero(np.isnan(values)))
        inf = values.size - int(np.count_nonzero(finite)) - nan
        held = " and ".join(
            f"{kind} ({count} of {values.size} values)"
            for kind, count in (("NaN", nan), ("inf", inf))
            if count
        )
        return f"holds {held}"
    if is_variance(name):
        negative = int(np.count_nonzero(values < 0))
        if negative:
            return (
                f"is a BatchNorm variance with {negative} negative values of {values.size} "
                f"(min {float(values.min()):.6g}; a variance is >= 0)"
            )
    return ""


def first_value_fault(named_values: Iterable[Tuple[str, object]]) -> Optional[Tuple[str, str]]:
    """(name, fault) of the first parameter with impossible values; None when all are fine.
    `named_values`: (name, numpy array or anything with asnumpy())."""
    for name, value in named_values:
        values = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
        fault = value_fault(name, values)
        if fault:
            return name, fault
    return None


def check_weight_values(named_values: Mapping[str, object], source: str, advice: str = "") -> None:
    """DamagedFileError naming `source` and its first bad parameter unless every value is possible."""
    found = first_value_fault(named_values.items())
    if found:
        name, fault = found
        raise DamagedFileError(
            f"{source}: {name} {fault}; these weights cannot give a working detector"
            + (f"; {advice}" if advice else "")
        )
