"""One writer per output: the one lock mechanism of the project (training's checkpoint folder,
the output folders of eval / infer / the 310 twin / postprocess, create_data.py's MindRecord
prefix).

A lock is a small hidden file. Its holder takes an `fcntl.flock` on it, which the kernel releases
when the holder dies however it dies, and writes a holder record into it (pid, host, start time)
that a refused run's message quotes; the holder removes the file when it ends (also on an error or
a signal it handles). A record left behind by a holder that did not remove it (SIGKILL, a crash of
the machine) is judged by what can be checked from here: this host and the pid gone - taken over
with a warning; this host and the pid alive - refused (a holder on a file system without flock);
another host - refused when `foreign_blocks` (training: its process cannot be checked from here,
the message says to delete the file), else taken over like a dead one.
"""

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from typing import Callable, Iterator, Optional

from nasfpn.core.errors import RunError, UserError

LOCK_ATTEMPTS = 3  # a lock file removed by a finishing holder between our open and flock: retry


class FolderLockedError(UserError):
    """Another live run holds the folder."""


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def this_holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def read_holder(path: str) -> Optional[dict]:
    """The holder recorded in lock file `path`; None when the file is gone, {} when it holds no
    record (empty: a holder killed between creating and writing it)."""
    try:
        with open(path, encoding="utf-8") as f:
            return _parse_holder(f.read())
    except FileNotFoundError:
        return None


def _parse_holder(text: str) -> dict:
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def is_stale(holder: dict) -> bool:
    """A record whose process is known to be gone: none at all, or this host's with its pid dead."""
    if not holder:
        return True
    return holder.get("host") == socket.gethostname() and not process_alive(int(holder.get("pid", 0)))


def _names_same_file(path: str, handle) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def _open_flocked(lock_file: str, busy: Callable[[dict], str], error_type: type):
    """The lock file opened and flocked by us (flock unsupported: opened only); while another
    process holds the flock, error_type(busy(its record)) at once."""
    from nasfpn.core.storage import storage_errors

    for _ in range(LOCK_ATTEMPTS):
        with storage_errors(lock_file, "taking the lock"):
            handle = open(lock_file, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _parse_holder(handle.read())
            handle.close()
            raise error_type(busy(holder)) from None
        except OSError:
            pass  # no flock on this file system (some network ones): the record alone decides
        if _names_same_file(lock_file, handle):
            return handle
        handle.close()
    raise RunError(f"{lock_file}: could not take the lock in {LOCK_ATTEMPTS} attempts")


@contextlib.contextmanager
def writer_lock(
    lock_file: str,
    busy: Callable[[dict], str],
    error_type: type = FolderLockedError,
    foreign_blocks: bool = False,
    log: Optional[logging.Logger] = None,
) -> Iterator[str]:
    """Hold `lock_file` for the block (yields its path); another holder -> error_type(busy(its
    record: pid, host, started)) at once, nothing is waited for. See the module's docstring."""
    log = log or logging.getLogger("nasfpn")
    handle = _open_flocked(lock_file, busy, error_type)
    try:
        handle.seek(0)
        left = _parse_holder(handle.read())
        if left and not is_stale(left) and (foreign_blocks or left.get("host") == socket.gethostname()):
            raise error_type(busy(left))  # the file is theirs: left as it is
    except BaseException:
        handle.close()
        raise
    if left:
        log.warning(
            "%s: taking over the lock of pid %s on %s (started %s), which is no longer running",
            lock_file,
            left.get("pid"),
            left.get("host"),
            left.get("started"),
        )
    try:
        with contextlib.suppress(OSError):  # the record only informs a refused run; a full disk may lack room
            handle.truncate(0)
            os.pwrite(handle.fileno(), json.dumps(this_holder()).encode(), 0)  # unbuffered: close cannot fail
        yield lock_file
    finally:
        # Only while the path still names our file: a folder replaced as a whole meanwhile
        # (claim_output_dir with overwrite) took our lock file away with the earlier folder.
        if _names_same_file(lock_file, handle):
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock_file)  # while still holding the flock: no other run holds this file
        handle.close()


def folder_lock(directory: str, name: str, what: str, log: Optional[logging.Logger] = None):
    """Training's lock of its checkpoint folder, `<directory>/<name>`: a record of another host
    blocks (a folder shared between machines), the message says how to clear it."""
    path = os.path.join(directory, name)

    def busy(holder: dict) -> str:
        return (
            f"{directory}: another {what} (pid {holder.get('pid')} on {holder.get('host')}, "
            f"started {holder.get('started')}) is writing there now (lock {path}); wait for it "
            "to end or give another folder. If that process is gone (it ran on another "
            "machine), delete the lock file"
        )

    return writer_lock(path, busy, FolderLockedError, foreign_blocks=True, log=log)
