"""Real small or read-only file systems for storage-fault tests."""

import contextlib
import os
import subprocess

import pytest


@contextlib.contextmanager
def tmpfs(path, size, read_only=False):
    """A real small (or read-only) file system at `path`; skips the test where mounting is not
    permitted (no root / no CAP_SYS_ADMIN): no other fault behaves like a full or read-only disk
    for root, who ignores permission bits."""
    os.makedirs(path, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
