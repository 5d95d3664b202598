"""Atomic output: write under a temporary name beside the target, rename when complete.

A crash or an error mid-write leaves the previous file (or nothing) under the final name, never a
truncated file that looks complete; a SIGINT / SIGTERM (nasfpn/core/interrupts.py) removes the
temporary the same way."""

import contextlib
import json
import os

from nasfpn.core.interrupts import deferred_signals


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's folder (same extension, for writers that care);
    it replaces `path` only if the block finishes, and is removed otherwise."""
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp{os.getpid()}-{name}")
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
