"""--enable_profiling: MindSpore's Profiler around a few training steps, as a trainer hook.

The first step of a run compiles the graph, so the profiled window starts after it: steps
FIRST_PROFILED_STEP .. FIRST_PROFILED_STEP + PROFILED_STEPS - 1 of the run (fewer when the run is
shorter). The data is analysed when the window closes (or the run ends) and written under
<output_path>/profiler, where MindSpore Insight reads it.
"""

import os

from nasfpn.training.hooks import Hook

FIRST_PROFILED_STEP = 2
PROFILED_STEPS = 3
PROFILER_FOLDER = "profiler"


def profiler_dir(output_path):
    return os.path.join(output_path, PROFILER_FOLDER)


class ProfilerHook(Hook):
    """Starts the Profiler before step FIRST_PROFILED_STEP of the run and stops it after
    PROFILED_STEPS steps or at the end of the run, whichever comes first."""

    def __init__(self, output_dir, log, first_step=FIRST_PROFILED_STEP, steps=PROFILED_STEPS):
        self.output_dir, self.log = output_dir, log
        self.first_step, self.steps = first_step, steps
        self.profiler = None
        self.profiled = 0
        self.done = False

    def _start(self):
        from mindspore import Profiler

        os.makedirs(self.output_dir, exist_ok=True)
        self.profiler = Profiler(output_path=self.output_dir, start_profile=False)
        self.profiler.start()

    def _stop(self):
        self.profiler.stop()
        self.profiler.analyse()
        self.profiler, self.done = None, True
        self.log.info(
            "profiled %d training steps; MindSpore Profiler data in %s",
            self.profiled,
            os.path.abspath(self.output_dir),
        )

    def after_step(self, run):
        steps_of_run = run.global_step - run.start_step
        if self.profiler is not None:
            self.profiled += 1
            if self.profiled == self.steps:
                self._stop()
        elif not self.done and steps_of_run == self.first_step - 1:
            self._start()

    def after_run(self, run):
        if self.profiler is not None:
            self._stop()


def profiling_hooks(job, log):
    """[ProfilerHook] writing under the job section's output_path with its enable_profiling, else []."""
    return [ProfilerHook(profiler_dir(job.output_path), log)] if job.enable_profiling else []
