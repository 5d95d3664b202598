"""Atomic output: write under a temporary name beside the target, rename when complete.

A crash or an error mid-write leaves the previous file (or nothing) under the final name, never a
truncated file that looks complete; a SIGINT / SIGTERM (nasfpn/core/interrupts.py) removes the
temporary the same way.

Temporaries are named `.tmp<pid>-<final name>`; a final name too long for that (file systems allow
255 bytes a name) is cut and ends in a hash of the whole name, so every legal final name has a
legal temporary name, and two long names that share their start still get different ones."""

import contextlib
import hashlib
import json
import os

from nasfpn.core.interrupts import deferred_signals

NAME_MAX_BYTES = 255  # the longest file name ext4, xfs, btrfs, tmpfs, NTFS and APFS allow
HASH_CHARS = 12


def temporary_name(final_name: str, pid: int | None = None, kind: str = "tmp") -> str:
    """`.<kind><pid>-<final_name>`, shortened to NAME_MAX_BYTES bytes when needed: the stem is cut
    (on a UTF-8 character boundary) and `~<hash of the whole name>` put before the extension, which
    is kept for writers that pick the format by it (OpenCV)."""
    head = f".{kind}{os.getpid() if pid is None else pid}-"
    name = head + final_name
    if len(os.fsencode(name)) <= NAME_MAX_BYTES:
        return name
    stem, ext = os.path.splitext(final_name)
    if len(os.fsencode(ext)) > 16:  # not an extension, just a dot in a long name
        stem, ext = final_name, ""
    digest = "~" + hashlib.sha256(os.fsencode(final_name)).hexdigest()[:HASH_CHARS]
    room = NAME_MAX_BYTES - len(os.fsencode(head + digest + ext))
    kept = os.fsencode(stem)[:room].decode("utf-8", errors="ignore")
    return head + kept + digest + ext


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's folder (same extension, for writers that care);
    it replaces `path` only if the block finishes, and is removed otherwise."""
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, temporary_name(name))
    try:
        yield tmp
        with deferred_signals():  # the rename completes, or the exception leaves the old file
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(path, data):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return path


def write_json_atomic(path, obj):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f)
    return path
