"""Stopping on SIGTERM / SIGINT without losing work (what Slurm, Kubernetes and ModelArts send
before they kill a job, and Ctrl-C).

The handler only records the signal; the training loop asks between optimizer steps, and then
finishes the step, writes its checkpoint and returns (train.py exits with EXIT_INTERRUPTED). A
second signal while stopping is ignored, so the save completes; SIGKILL still stops at once, and
then the save's temporary is removed by the next run and the previous checkpoint is the newest.

With several ranks, every rank must stop at the same step (else their checkpoints hold different
steps): after each step the ranks take the maximum of their "stop" flags (one int32 all-reduce),
so a signal to any rank stops all of them after the same step.
"""
import os
import signal
import threading

HANDLED = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Records the first SIGTERM/SIGINT while installed (in the main thread; elsewhere Python
    cannot install handlers, and the signals keep their default action)."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    @property
    def requested(self):
        return self.signal_name is not None

    def _handle(self, signum, frame):
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            return
        # os.write: safe inside a handler, unlike logging (which may hold its lock right now)
        os.write(2, f"{signal.Signals(signum).name} again: ignored, the checkpoint is being "
                    "written (SIGKILL stops at once and keeps the previous checkpoint)\n".encode())

    def install(self):
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.uninstall()


class StopVote:
    """Whether any rank asks to stop: the maximum of the ranks' flags (one rank: its own flag)."""

    def __init__(self, group_size):
        self.reduce = None
        if group_size > 1:
            import mindspore.ops as ops
            self.reduce = ops.AllReduce(ops.ReduceOp.MAX)

    def __call__(self, local_request):
        if self.reduce is None:
            return bool(local_request)
        import mindspore as ms
        flag = ms.Tensor([1 if local_request else 0], ms.int32)
        return bool(self.reduce(flag).asnumpy()[0])
