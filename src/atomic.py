"""Atomic output: write under a temporary name beside the target, rename when complete.

A crash or an error mid-write leaves the previous file (or nothing) under the final name, never a
truncated file that looks complete."""
import contextlib
import json
import os


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's folder (same extension, for writers that care);
    it replaces `path` only if the block finishes, and is removed otherwise."""
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp{os.getpid()}-{name}")
    try:
        yield tmp
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


def check_writable_dir(path, option):
    """Prove, before any work is done, that the output folder `path` can be written: a file is
    created and removed in it, or, when it does not exist yet, in its nearest existing parent
    (nothing is created, so a run refused later leaves no empty folder). UserError
    '--<option>=<path>: ...' otherwise (a file in the way, no permission, a read-only disk)."""
    import tempfile
    from .errors import UserError
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"--{option}={path}: cannot write there ({existing} is a file, not a "
                        "folder); give a folder that can be written")
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=existing)
        os.close(handle)
        os.remove(probe)
    except OSError as exc:
        raise UserError(f"--{option}={path}: cannot write there ({exc.strerror or exc}); give a "
                        "folder that can be written") from None
    return path
