"""Output paths: checked before the work, one writer at a time, storage faults as user errors.

Every entry point that writes (eval, export, infer, the 310 twin, postprocess, create_data) calls
`check_output_dir` / `check_output_file` before its expensive part, so a read-only folder, a path
that is a file where a folder is expected (or the reverse) or a disk without room for the expected
size is refused at once with one line naming the path. Writes that still fail on the way (the disk
fills up meanwhile) go through `storage_errors`, which turns the OSError into a `StorageError`.

`output_folder_lock` is the one-writer rule of the outputs of eval / infer / the twin: the
project's one lock (nasfpn/core/locks.py), an fcntl.flock on a small hidden file that the kernel
releases when the holder dies, so a killed run never leaves a lock that blocks the next one.

Temporaries are named `.tmp<pid>-<final name>` (nasfpn/core/atomic.py, the export's folder); one killed
outright leaves its temporary, which `remove_stale_temporaries` clears on the next start once that
pid is gone.
"""

import contextlib
import errno
import glob
import os
import re
import shutil

from nasfpn.core.errors import UserError, UserFileExistsError
from nasfpn.core.locks import process_alive, writer_lock


class StorageError(UserError):
    """An output path that cannot be written: read-only, not a folder / not a file, no space."""


class OutputInUseError(UserError):
    """Another run is writing into the same output now (it holds the folder's lock)."""


# errno values the user can act on: room, permissions, a read-only mount, a file size limit, a
# file or folder in the way.
USER_FIXABLE = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large for this file system or the process's file size limit",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder, not a file",
    errno.EEXIST: "a file is in the way",
    errno.ENAMETOOLONG: "a file or folder name is longer than the file system allows",
    errno.ELOOP: "the path runs through a loop of symbolic links",
}

# A component of a path holds at most 255 bytes on common file systems; an output's temporary
# adds ".tmp<pid>-" (pids reach 7 digits), so its final name must leave room for that.
NAME_MAX_BYTES = 255
MAX_OUTPUT_NAME_BYTES = NAME_MAX_BYTES - len(".tmp4194304-")


def megabytes(n_bytes):
    return f"{n_bytes / 2**20:.1f} MB"


def describe(exc):
    return USER_FIXABLE.get(exc.errno) or exc.strerror or str(exc)


def storage_error(exc, path, advice):
    """A StorageError for an OSError the user can fix (full disk, read-only, permissions), with
    `advice` appended; None for other errors (they are the run's failure, not the user's)."""
    if getattr(exc, "errno", None) not in USER_FIXABLE:
        return None
    return StorageError(f"could not write {path} ({describe(exc)}); {advice}")


def _label(option):
    return f"--{option}={{}}" if option else "{}"


def existing_ancestor(path):
    """The longest prefix of `path` that exists (what decides whether the rest can be made)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def free_bytes(path):
    """Free bytes for an unprivileged-or-not writer on the file system that holds `path`."""
    return shutil.disk_usage(existing_ancestor(path)).free


def check_output_dir(path, need_bytes=0, what="output folder", option=None, create=True):
    """Check that `path` is, or can be made, a writable folder with about `need_bytes` free, and
    make it when `create` (otherwise a refused run leaves no empty folder behind).

    StorageError (one line naming the path, or `--option=path`, and what to do) when a part of it is
    a file, it cannot be created or written (read-only, permissions) or there is less free space
    than `need_bytes`. An existing folder is probed with a real file, since os.access does not see
    every read-only mount; a folder still to be made is judged by its nearest existing parent."""
    name = _label(option).format(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise StorageError(
            f"{name}: is a file, expected a folder for the {what}; give another path or move the file away"
        )
    ancestor = existing_ancestor(path)
    if not os.path.isdir(ancestor):
        raise StorageError(
            f"{name}: a part of this path is a file ({ancestor}), expected folders for "
            f"the {what}; give another path"
        )
    try:
        if os.path.isdir(path):
            _probe_write(path)
        else:
            _check_can_create_in(ancestor)
        if create:
            os.makedirs(path, exist_ok=True)
    except OSError as exc:
        if exc.errno not in USER_FIXABLE:
            raise
        raise StorageError(
            f"{name}: cannot write the {what} there ({describe(exc)}); give a writable path"
        ) from None
    check_free_space(path, need_bytes, name, what)
    return path


def _probe_write(folder):
    probe = os.path.join(folder, temporary_name("write-probe"))
    with open(probe, "wb"):
        pass
    os.remove(probe)


def _check_can_create_in(folder):
    """OSError (EROFS / EACCES) unless a folder could be made in `folder`, without making one."""
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), folder)


def check_free_space(path, need_bytes, name=None, what="output"):
    """StorageError when the file system of `path` has less than about `need_bytes` free."""
    if need_bytes <= 0:
        return
    free = free_bytes(path)
    if free < need_bytes:
        raise StorageError(
            f"{name or path}: {megabytes(free)} free, the {what} needs about "
            f"{megabytes(need_bytes)}; free some space or give a path on another disk"
        )


def check_name_length(path, name=None):
    """StorageError when the last part of `path` is too long to be written under a temporary name."""
    length = len(os.fsencode(os.path.basename(os.path.abspath(path))))
    if length > MAX_OUTPUT_NAME_BYTES:
        raise StorageError(
            f"{name or path}: the file name is {length} bytes long; at most {MAX_OUTPUT_NAME_BYTES} "
            f"fit the file system's {NAME_MAX_BYTES} with the temporary name's prefix; give a shorter name"
        )


def check_output_file(path, need_bytes=0, option=None, create_dir=False):
    """Make sure the file `path` can be written (its folder checked as by check_output_dir, made
    when `create_dir`); an existing folder under that name is refused (a file never replaces it)."""
    name = _label(option).format(path)
    if os.path.isdir(path):
        raise StorageError(f"{name}: is a folder, expected a file name; give a file path")
    check_name_length(path, name)
    folder = os.path.dirname(os.path.abspath(path))
    check_output_dir(folder, what="file's folder", create=create_dir)
    check_free_space(folder, need_bytes, name, "file")
    return path


@contextlib.contextmanager
def storage_errors(path, what="writing"):
    """Turn a storage OSError (no space, read-only, permission, file-in-the-way) raised inside the
    block into a StorageError naming `path`; other exceptions pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in USER_FIXABLE:
            raise
        raise StorageError(
            f"{what} {path}: {describe(exc)}; free some space, make it writable or write elsewhere"
        ) from None


# Below this, a failed write is taken for a full disk: a write fails with ENOSPC only once fewer
# bytes than one block (4 KiB on common file systems) are left; 64 KiB leaves room for rounding.
NEARLY_FULL_BYTES = 64 * 1024


def raise_if_disk_full(path, exc, what="writing"):
    """For libraries that hide the OSError (MindSpore's export raises RuntimeError, OpenCV returns
    False): a StorageError when the file system of `path` is full after the failure, else nothing
    (the caller re-raises `exc`)."""
    if free_bytes(path) < NEARLY_FULL_BYTES:
        first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise StorageError(
            f"{what} {path}: no space left on the device; free some space or write "
            f"elsewhere ({first_line[:200]})"
        ) from None


# ---- one writer per output ------------------------------------------------------------------

OUTPUT_LOCK_NAME = ".output.lock"


def output_folder_lock(folder, option):
    """The lock of an output folder of eval / infer / the 310 twin: a second run into `folder`
    while the first still runs refuses, naming the folder and `--option`."""
    path = os.path.join(folder, OUTPUT_LOCK_NAME)
    return writer_lock(
        path,
        lambda holder: (
            f"--{option}={folder}: another run (pid {holder.get('pid', 'unknown')}) is writing there "
            f"now (lock {path}); wait for it to finish or give another --{option}"
        ),
        OutputInUseError,
    )


def refuse_earlier_results(folder, patterns, option, overwrite):
    """UserFileExistsError when `folder` holds another run's results (files matching `patterns`,
    glob patterns relative to it), unless `overwrite`; returns the paths found."""
    found = sorted({p for pattern in patterns for p in glob.glob(os.path.join(glob.escape(folder), pattern))})
    if found and not overwrite:
        shown = ", ".join(os.path.basename(p) for p in found[:3]) + (", ..." if len(found) > 3 else "")
        raise UserFileExistsError(
            f"--{option}={folder} already holds another run's results "
            f"({len(found)} file(s): {shown}); give a fresh --{option} or pass "
            "--overwrite=True to replace them"
        )
    return found


@contextlib.contextmanager
def claim_output_dir(folder, option, result_patterns, overwrite=False, need_bytes=0):
    """One writer per output folder, for the whole block: the folder is checked (check_output_dir),
    locked (a concurrent second run refuses), and refused when it holds an earlier run's results
    (`result_patterns`) unless `overwrite` - checked under the lock, so of two runs started together
    one works and the other refuses. With `overwrite` the earlier results are removed first (asked
    for), so the folder never mixes two runs' files. Yields the removed paths."""
    existed = existing_ancestor(folder)
    check_output_dir(folder, need_bytes, option=option, create=True)
    try:
        with output_folder_lock(folder, option):
            earlier = refuse_earlier_results(folder, result_patterns, option, overwrite)
            for path in earlier:
                with storage_errors(path, "removing the earlier result"):
                    os.remove(path)
            yield earlier
    except BaseException:
        remove_empty_folders_made(folder, existed)
        raise


def remove_empty_folders_made(folder, existed):
    """Remove `folder` and its parents up to (not including) `existed`, those still empty: a run
    refused or failed before writing leaves no empty folders it made."""
    folder, existed = os.path.abspath(folder), os.path.abspath(existed)
    while folder != existed and folder.startswith(existed + os.sep):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)


# ---- temporaries of killed runs -------------------------------------------------------------

# Temporaries of atomic_path and of the export: ".tmp<pid>-<final name>".
TEMPORARY_PATTERN = re.compile(r"^\.tmp(\d+)-(.+)$")


def temporary_name(final_name, pid=None):
    return f".tmp{os.getpid() if pid is None else pid}-{final_name}"


def remove_stale_temporaries(directory, final_prefixes):
    """Delete the temporaries (files or folders) in `directory` of outputs whose final name starts
    with one of `final_prefixes`, left by a process that is gone (killed mid-save). Nothing else is
    touched. Returns (removed, left_alone): left alone are those of a process still running."""
    removed, in_use = [], []
    if not os.path.isdir(directory):
        return removed, in_use
    for name in sorted(os.listdir(directory)):
        match = TEMPORARY_PATTERN.match(name)
        if not match or not match.group(2).startswith(tuple(final_prefixes)):
            continue
        path = os.path.join(directory, name)
        pid = int(match.group(1))
        if pid != os.getpid() and process_alive(pid):
            in_use.append(path)
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
        removed.append(path)
    return removed, in_use
