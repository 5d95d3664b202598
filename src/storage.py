"""Storage problems the user fixes (a read-only or full disk, a file where a folder is expected),
found before a long run where possible and reported as one line naming the path.

`check_output_dir(path, need_bytes)` is called before the expensive part of a run; `storage_error`
turns an OSError met later (while saving) into the same kind of message.
"""
import errno
import os
import shutil
import tempfile

from .errors import UserError

# errno values the user can act on: room, permissions, a read-only mount, a file size limit.
USER_FIXABLE = {errno.ENOSPC: "no space left on the device",
                errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "the file system is read-only",
                errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted",
                errno.EFBIG: "file too large for this file system or the process's file size limit"}


class StorageError(UserError):
    """An output location that cannot take the run's files."""


def megabytes(n_bytes):
    return f"{n_bytes / 2**20:.1f} MB"


def check_output_dir(path, need_bytes=0, what="output folder"):
    """Make `path` if needed and check that a file can be created there and that about
    `need_bytes` are free; raise StorageError naming the path otherwise. Leaves nothing behind
    (folders it had to make stay: they are where the run will write)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise StorageError(f"{path}: is a file, expected a folder for the {what}; give another path "
                           "or move the file away")
    try:
        os.makedirs(path, exist_ok=True)
        probe_fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(probe_fd)
        os.remove(probe)
    except NotADirectoryError:
        raise StorageError(f"{path}: a part of this path is a file, expected folders for the {what}; "
                           "give another path") from None
    except OSError as exc:
        raise StorageError(f"{path}: cannot write the {what} there ({describe(exc)}); give a writable "
                           "path") from None
    free = shutil.disk_usage(path).free
    if need_bytes and free < need_bytes:
        raise StorageError(f"{path}: {megabytes(free)} free, the {what} needs about "
                           f"{megabytes(need_bytes)}; free some space or give a path on another disk")


def describe(exc):
    return USER_FIXABLE.get(exc.errno) or exc.strerror or str(exc)


def storage_error(exc, path, advice):
    """A StorageError for an OSError the user can fix (full disk, read-only, permissions), with
    `advice` appended; None for other errors (they are the run's failure, not the user's)."""
    if getattr(exc, "errno", None) not in USER_FIXABLE:
        return None
    return StorageError(f"could not write {path} ({describe(exc)}); {advice}")
