"""Stopping on SIGTERM / SIGINT without losing work (what Slurm, Kubernetes and ModelArts send
before they kill a job, and Ctrl-C).

The handler only records the signal; the training loop asks between optimizer steps, and then
finishes the step, writes its checkpoint and returns (train.py exits with EXIT_INTERRUPTED). A
second signal while stopping is ignored, so the save completes; SIGKILL still stops at once, and
then the save's temporary is removed by the next run and the previous checkpoint is the newest.

With several ranks, every rank must stop at the same step (else their checkpoints hold different
steps): after each step the ranks sum their 0/1 "stop" flags (one float32 all-reduce; CPU has no MAX) and stop when it is positive,
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
        name = signal.Signals(signum).name
        # os.write: safe inside a handler, unlike logging (which may hold its lock right now)
        if self.signal_name is None:
            self.signal_name = name
            os.write(
                2,
                f"{name}: stopping after the current step, which is checkpointed first "
                "(a second signal is ignored meanwhile)\n".encode(),
            )
            return
        os.write(
            2,
            f"{name} again: ignored, the checkpoint is being written (SIGKILL stops at "
            "once and keeps the previous checkpoint)\n".encode(),
        )

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
    """Whether any rank asks to stop: the sum of the ranks' 0/1 flags is positive (one rank: its own flag)."""

    def __init__(self, group_size):
        self.reduce = None
        if group_size > 1:
            import mindspore.ops as ops

            self.reduce = ops.AllReduce(ops.ReduceOp.SUM)

    def __call__(self, local_request):
        if self.reduce is None:
            return bool(local_request)
        import mindspore as ms

        # float32 sum: the CPU AllReduce kernel has neither int32 nor MAX; sums of 0.0 / 1.0 are exact
        flag = ms.Tensor([1.0 if local_request else 0.0], ms.float32)
        return bool(self.reduce(flag).asnumpy()[0] > 0.5)
