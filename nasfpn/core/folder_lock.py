"""One writer per folder: a lock file created with O_EXCL, holding the holder's pid, host and start
time, removed when the holder ends (also on an error or a signal it handles).

A lock left by a process that died without removing it (SIGKILL, a crash of the machine) is taken
over with a warning when its host is this machine and its pid is gone; a lock of another host is
never taken over (its process cannot be checked from here), the message says how to clear it.
"""

import contextlib
import fcntl
import json
import logging
import os
import socket
import time

from nasfpn.core.errors import UserError


class FolderLockedError(UserError):
    """Another live run holds the folder."""


def process_alive(pid):
    """Whether process `pid` exists on this machine (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def this_holder():
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def read_holder(path):
    """The holder recorded in lock file `path`; None when the file is gone, {} when unreadable
    (a holder killed between creating and writing it)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
        return holder if isinstance(holder, dict) else {}
    except ValueError:
        return {}


def is_stale(holder):
    """A lock whose process is known to be gone: this host's, pid not alive (or no content)."""
    if not holder:
        return True
    return holder.get("host") == socket.gethostname() and not process_alive(int(holder.get("pid", 0)))


@contextlib.contextmanager
def _guard(directory):
    """Serialises inspecting and taking over a stale lock between starters on this machine (a
    flock on the folder itself, released by the kernel if we die). Without flock support (some
    network file systems) the O_EXCL create alone still refuses a live holder."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def _create(path):
    """Create the lock file with our holder record; False if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(this_holder(), f)
    return True


def acquire(directory, name, what, log=None):
    """Take `<directory>/<name>`; returns its path. Raises FolderLockedError naming the holder."""
    log = log or logging.getLogger("nasfpn")
    path = os.path.join(directory, name)
    with _guard(directory):
        if _create(path):
            return path
        holder = read_holder(path)
        if holder is not None and not is_stale(holder):
            raise FolderLockedError(
                f"{directory}: another {what} (pid {holder.get('pid')} on {holder.get('host')}, "
                f"started {holder.get('started')}) is writing there now (lock {path}); wait for it "
                "to end or give another folder. If that process is gone (it ran on another "
                "machine), delete the lock file"
            )
        if holder is not None:
            log.warning(
                "%s: taking over the lock of pid %s on %s (started %s), which is no longer running",
                path,
                holder.get("pid"),
                holder.get("host"),
                holder.get("started"),
            )
            os.remove(path)
        if not _create(path):  # only without flock support: a starter on another machine won
            raise FolderLockedError(
                f"{directory}: another {what} took the lock {path} just now; give another folder"
            )
    return path


def release(path):
    """Remove our lock file (only if it is still ours)."""
    holder = read_holder(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        os.remove(path)


@contextlib.contextmanager
def folder_lock(directory, name, what, log=None):
    """Hold `<directory>/<name>` for the block; it is removed at the end, whatever happens."""
    path = acquire(directory, name, what, log)
    try:
        yield path
    finally:
        release(path)
