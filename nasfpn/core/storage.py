"""Output paths: checked before the work, one writer at a time, storage faults as user errors.

Every entry point that writes (eval, export, infer, the 310 twin, postprocess, create_data) calls
`check_output_dir` / `check_output_file` before its expensive part, so a read-only folder, a path
that is a file where a folder is expected (or the reverse) or a disk without room for the expected
size is refused at once with one line naming the path. Writes that still fail on the way (the disk
fills up meanwhile) go through `storage_errors`, which turns the OSError into a `StorageError`.

`output_folder_lock` is the one-writer rule of the outputs of eval / infer / the twin: the
project's one lock (nasfpn/core/locks.py), an fcntl.flock on a small hidden file that the kernel
releases when the holder dies, so a killed run never leaves a lock that blocks the next one.

`claim_output_dir` with overwrite replaces an output folder as a whole (`replacing_folder`): the
run writes into a fresh folder beside it, swapped in when the run finishes.

Temporaries are named `.tmp<pid>-<final name>` (nasfpn/core/atomic.py, the export's folder, the
fresh folder of an overwrite); one killed outright leaves its temporary, which
`remove_stale_temporaries` clears on the next start once that pid is gone.
"""

import contextlib
import errno
import fnmatch
import glob
import os
import re
import shutil

from nasfpn.core.atomic import NAME_MAX_BYTES, temporary_name
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

# A component of a path holds at most 255 bytes on common file systems. An output's temporary name
# is shortened to fit (nasfpn/core/atomic.py:temporary_name), so every legal final name can be written.
MAX_OUTPUT_NAME_BYTES = NAME_MAX_BYTES


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
    """StorageError when the last part of `path` is longer than a file name may be."""
    length = len(os.fsencode(os.path.basename(os.path.abspath(path))))
    if length > MAX_OUTPUT_NAME_BYTES:
        raise StorageError(
            f"{name or path}: the file name is {length} bytes long, over the {MAX_OUTPUT_NAME_BYTES} "
            "the file system allows; give a shorter name"
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
def claim_output_dir(folder, option, result_patterns, overwrite=False, need_bytes=0, output_patterns=None):
    """One writer per output folder, for the whole block: the folder is checked (check_output_dir),
    locked (a concurrent second run refuses), and refused when it holds an earlier run's results
    (`result_patterns`) unless `overwrite` - checked under the lock, so of two runs started together
    one works and the other refuses.

    Yields the folder to write into: `folder` itself, or - `overwrite` over an earlier run's
    results - a fresh folder beside it that replaces `folder` as a whole when the block finishes
    (replacing_folder), so old and new outputs never sit side by side and a failed run leaves the
    earlier folder as it was. `output_patterns` (default `result_patterns`) are all the files a run
    writes; the other entries of the earlier folder are the user's and are carried over."""
    existed = existing_ancestor(folder)
    check_output_dir(folder, need_bytes, option=option, create=True)
    try:
        with output_folder_lock(folder, option):
            if not refuse_earlier_results(folder, result_patterns, option, overwrite):
                yield folder
                return
            with replacing_folder(folder, option, output_patterns or result_patterns) as fresh:
                yield fresh
    except BaseException:
        remove_empty_folders_made(folder, existed)
        raise


@contextlib.contextmanager
def replacing_folder(folder, option, output_patterns):
    """Yield a fresh folder `.tmp<pid>-<name>` beside `folder`; when the block finishes, the user's
    entries of `folder` (all but `output_patterns`, the lock and temporaries) are hard-linked into
    it (copied where the file system has no hard links) and it takes the place of `folder`
    (exchange_paths); the earlier folder is then removed. A failed block removes the fresh folder
    and leaves `folder` untouched."""
    parent, name = os.path.split(os.path.abspath(folder))
    check_replaceable(folder, option)
    remove_stale_temporaries(parent, (name,), exact=True)  # a killed run's fresh folder
    fresh = os.path.join(parent, temporary_name(name))
    with storage_errors(fresh, f"--{option}: making the fresh folder"):
        os.mkdir(fresh)
    try:
        yield fresh
        with storage_errors(folder, f"--{option}: replacing"):
            carry_user_entries(folder, fresh, output_patterns)
            exchange_paths(fresh, folder)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)  # the failed run's folder, or the earlier one


def check_replaceable(folder, option):
    """StorageError for a folder that cannot be swapped for another: a mount point, or the working
    folder (or one holding it), whose replacement would leave this shell in a deleted folder."""
    absolute, cwd = os.path.abspath(folder), os.getcwd()
    if os.path.ismount(absolute):
        why = "is a mount point"
    elif cwd == absolute or cwd.startswith(absolute.rstrip(os.sep) + os.sep):
        why = "is the working folder or holds it"
    else:
        return
    raise StorageError(
        f"--{option}={folder}: {why}, which --overwrite=True cannot replace as a whole; "
        "give a folder of its own (a subfolder)"
    )


def _is_run_entry(entry, output_patterns):
    return (
        entry == OUTPUT_LOCK_NAME
        or TEMPORARY_PATTERN.match(entry) is not None
        or any(fnmatch.fnmatchcase(entry, p) for p in output_patterns)
    )


def carry_user_entries(old, new, output_patterns):
    """Hard-link (or copy) into `new` the entries of `old` that no run writes; a name the new run
    wrote itself is the run's and stays. Returns the names carried over."""
    carried = []
    for entry in sorted(os.listdir(old)):
        src, dst = os.path.join(old, entry), os.path.join(new, entry)
        if _is_run_entry(entry, output_patterns) or os.path.lexists(dst):
            continue
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
            shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(src, dst)
        carried.append(entry)
    return carried


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:  # no hard links here (FAT, some network file systems)
        shutil.copy2(src, dst)


RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100


def _rename_exchange(a, b):
    """Linux renameat2(RENAME_EXCHANGE): swap two paths atomically; OSError where unsupported."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    function = getattr(libc, "renameat2", None)
    if function is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if function(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), b)


def exchange_paths(a, b):
    """Swap folders `a` and `b` (same parent): atomically where the kernel and file system can
    (renameat2), else by three renames through `<b>.old` (a crash between them leaves `b`'s
    earlier folder under `.tmp<pid>-<name>.old`, which no later run deletes)."""
    try:
        _rename_exchange(a, b)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise
    parent, name = os.path.split(os.path.abspath(b))
    aside = os.path.join(parent, temporary_name(name + ".old"))
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


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

# Temporaries of atomic_path, of the export and of an --overwrite run's fresh folder:
# ".tmp<pid>-<final name>" (a long final name shortened: nasfpn/core/atomic.py:temporary_name).
TEMPORARY_PATTERN = re.compile(r"^\.tmp(\d+)-(.+)$")


def _is_temporary_of(name, match, prefixes, exact=False):
    pid = int(match.group(1))
    if any(name == temporary_name(p, pid) for p in prefixes):
        return True
    return not exact and match.group(2).startswith(prefixes)


def remove_stale_temporaries(directory, final_prefixes, exact=False):
    """Delete the temporaries (files or folders) in `directory` of outputs whose final name starts
    with one of `final_prefixes` (is one of them, when `exact`), left by a process that is gone
    (killed mid-save). Nothing else is touched. Returns (removed, left_alone): left alone are those
    of a process still running."""
    removed, in_use = [], []
    if not os.path.isdir(directory):
        return removed, in_use
    for name in sorted(os.listdir(directory)):
        match = TEMPORARY_PATTERN.match(name)
        if not match or not _is_temporary_of(name, match, tuple(final_prefixes), exact):
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
