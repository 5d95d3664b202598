"""One Ctrl-C rule for every entry point: SIGINT and SIGTERM stop the run, what is complete is
kept and named, temporaries are removed, and the exit status is 130 (SIGINT) / 143 (SIGTERM).

`stop_on_signals` (installed by nasfpn/core/exits.py:run_entry_point) turns the first SIGINT /
SIGTERM into an `Interrupted` exception, raised in the main thread at the next Python instruction:
inside a loop of images or records that is between two of them, since every output is written
under a temporary name and renamed when complete (nasfpn/core/atomic.py), and the temporaries are
removed by the `finally` blocks the exception runs through. Code in C++ (a MINDIR export, a graph
compilation, an ONNX Runtime call) sees the signal when it returns, and the exception then removes
its partial output. A block that must not be cut (renaming a set of shards into place, removing a
temporary) runs under `deferred_signals`: a signal during it takes effect when it ends.

A second signal while stopping is ignored (the clean-up finishes); SIGKILL still stops at once, and
the next run removes the temporaries left (nasfpn/core/storage.py:remove_stale_temporaries).

Training keeps its own rule (nasfpn/training/preemption.py: the step is finished and
checkpointed, exit 4): its handler replaces this one while the training loop runs.

What is complete: a long loop names it with `report_progress(describe)`, a function returning
one line ("12 of 40 images drawn in out/ ..."), asked only when a signal stops the run.
"""

import contextlib
import os
import signal
import threading
from typing import Callable, Iterator, Optional

HANDLED = (signal.SIGINT, signal.SIGTERM)
NOTHING_REPORTED = "no output of this run is complete"


class Interrupted(KeyboardInterrupt):
    """A SIGINT / SIGTERM stopped the run (a KeyboardInterrupt, so that code which lets Ctrl-C
    through lets this through too); exit status 128 + the signal's number."""

    def __init__(self, signum: int):
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class _State:
    def __init__(self):
        self.pending: Optional[int] = None  # the signal received, not yet raised (deferred)
        self.raised = 0  # the signal Interrupted was raised for: further signals are ignored
        self.deferred = 0  # depth of deferred_signals blocks
        self.describe: Optional[Callable[[], str]] = None


_state = _State()


def _handle(signum, frame):
    name = signal.Signals(signum).name
    if _state.raised or _state.pending is not None:
        # os.write: safe in a handler, unlike print/logging (which may hold their lock now)
        os.write(2, f"{name} again: ignored while stopping (SIGKILL stops at once)\n".encode())
        return
    _state.pending = signum
    if _state.deferred:
        os.write(2, f"{name}: stopping once the current write is complete\n".encode())
        return
    _raise_pending()


def _raise_pending():
    signum, _state.pending = _state.pending, None
    _state.raised = signum
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT / SIGTERM raise Interrupted in the main thread for the block (elsewhere Python cannot
    install handlers and the signals keep their action); the previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _handle) for signum in HANDLED}
    _state.__init__()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """A block a signal must not cut: a SIGINT / SIGTERM during it raises Interrupted when it ends
    (unless it ends by another exception, which then goes on)."""
    _state.deferred += 1
    try:
        yield
    finally:
        _state.deferred -= 1
    if not _state.deferred and _state.pending is not None:
        _raise_pending()


def swallowed() -> Optional[Interrupted]:
    """The Interrupted of a signal that some library caught and dropped (the run went on), or of
    one held by a deferred block that ended by an exception someone caught: the entry point then
    stops as if it had just arrived (None when no signal came)."""
    signum = _state.raised or _state.pending
    return Interrupted(signum) if signum else None


def report_progress(describe: Optional[Callable[[], str]]) -> None:
    """Set what a signal's stop line says is complete: `describe()` returns one line (None: nothing)."""
    _state.describe = describe


def completed_line() -> str:
    """What is complete, as the last `report_progress` describes it (never raises: the run is
    stopping and this only informs)."""
    if _state.describe is None:
        return NOTHING_REPORTED
    try:
        return _state.describe()
    except Exception as exc:  # noqa: BLE001 - a report of progress must not hide the stop
        return f"(progress unknown: {exc.__class__.__name__})"


def stop_line(exc: Interrupted) -> str:
    """The one line an entry point prints when a signal stopped it."""
    return f"stopped by {exc.signal_name}: {completed_line()}; temporaries removed (exit {exc.exit_status})"
