"""The step loop of one training process: optimizer steps over the epochs with gradient
accumulation, the hooks around each step and epoch (nasfpn/training/hooks.py), and a stop on a
signal that every rank agrees on (nasfpn/training/preemption.py), checkpointed where it stopped."""

import logging
import os
import time
from dataclasses import dataclass
from typing import Optional

from nasfpn.core.storage import check_output_dir
from nasfpn.training.hooks import RunState, last_checkpoint_text
from nasfpn.training.preemption import StopRequest, StopVote


@dataclass
class FitResult:
    """What `Trainer.fit` returns, whatever happened."""

    steps: int  # steps trained by this call
    last_loss: Optional[float]  # last finite loss (None when no step ran)
    best: Optional[float]  # best periodic-eval score (None without eval)
    last_checkpoint: Optional[str]  # newest checkpoint of this lineage
    ckpt_dir: str
    stopped_by: Optional[str] = None  # the signal that stopped the run early (None: it finished)

    @classmethod
    def of(cls, run, ckpt_dir):
        return cls(
            run.global_step - run.start_step,
            run.last_loss,
            run.best,
            run.last_checkpoint,
            ckpt_dir,
            run.stopped_by,
        )


class TrainLoop:
    """Runs `step` (a TrainStep) over a dataset: `steps_per_epoch` optimizer steps of
    `accumulate_steps` batches each, the lr of each step read from the array `lr`."""

    def __init__(
        self,
        step,
        lr,
        steps_per_epoch: int,
        accumulate_steps: int,
        store,
        stop_vote: StopVote,
        save_checkpoint: bool,
        log: logging.Logger,
    ):
        self.step = step
        self.lr = lr
        self.steps_per_epoch = steps_per_epoch
        self.accumulate_steps = accumulate_steps
        self.store = store
        self.stop_vote = stop_vote
        self.save_checkpoint = save_checkpoint
        self.log = log

    def fit(self, dataset, run: RunState, make_hooks, stop=None):
        """Train from run.start_step to run.total_steps, calling the hooks `make_hooks()` returns
        (made once there is something to train), or until `stop` (a StopRequest; by default one
        installed for the call) records a signal: then the current step is finished and
        checkpointed, and the result says which signal."""
        ckpt_dir = self.store.directory
        if run.start_step >= run.total_steps:
            self.log.info("nothing to do: step %d >= %d", run.start_step, run.total_steps)
            return FitResult.of(run, ckpt_dir)
        if self.save_checkpoint:  # about one more checkpoint must fit before it is written
            check_output_dir(ckpt_dir, self.store.checkpoint_bytes(), "checkpoint folder")
        os.makedirs(ckpt_dir, exist_ok=True)
        hooks = make_hooks()
        own_stop = stop is None
        stop = (stop or StopRequest()).install() if own_stop else stop
        try:
            for hook in hooks:
                hook.before_run(run)
            self._loop(dataset, run, hooks, stop)
        finally:
            if own_stop:
                stop.uninstall()
            for hook in hooks:
                hook.after_run(run)
        return FitResult.of(run, ckpt_dir)

    def _stop_here(self, run, stop):
        """After a step: whether any rank was asked to stop (every rank asks at every step, so all
        stop after the same one). After the last step there is nothing to stop (every rank knows)."""
        if run.global_step < run.total_steps and self.stop_vote(stop.requested):
            run.stopped_by = stop.signal_name or "a signal to another rank"
            return True
        return False

    def _save_stopped(self, run):
        """Checkpoint the step where a signal stopped the run (unless the epoch's checkpoint of
        that very step was just written) and log one line."""
        tick = time.perf_counter()
        if not self.save_checkpoint:
            saved = f"nothing saved (--save_checkpoint=False); {last_checkpoint_text(run.last_checkpoint)}"
        elif self.store.holds_step(run.global_step):
            saved = f"its checkpoint is {run.last_checkpoint}"
        else:
            run.last_checkpoint = self.store.save_epoch(
                run.epoch, run.step_in_epoch, run.global_step, last_good=run.last_checkpoint
            )
            saved = f"saved {run.last_checkpoint} in {time.perf_counter() - tick:.1f} s"
        self.log.warning(
            "%s: stopped after step %d (epoch %d, step %d of %d); %s; continue with --resume=True",
            run.stopped_by,
            run.global_step,
            run.epoch,
            run.step_in_epoch,
            run.steps_per_epoch,
            saved,
        )

    def _loop(self, dataset, run, hooks, stop):
        if self._stop_here(run, stop):  # a signal during the set-up: nothing new to save
            self.log.warning(
                "%s before the first step: stopped; nothing was trained by this run", run.stopped_by
            )
            return
        k = self.accumulate_steps
        first_epoch = run.start_step // self.steps_per_epoch
        # A mid-epoch start (resume) skips the batches of the optimizer steps already trained; a run
        # stopped inside an accumulation cycle lost that cycle's partial sum and redoes it whole.
        skip_in_first = (run.start_step % self.steps_per_epoch) * k
        trained_per_epoch = self.steps_per_epoch * k
        iterator = dataset.create_tuple_iterator(num_epochs=run.epoch_size - first_epoch)
        self.step.set_train()
        for epoch in range(first_epoch, run.epoch_size):
            run.epoch = epoch + 1
            tick = time.perf_counter()
            micro_losses = []
            for index, batch in enumerate(iterator):
                if (epoch == first_epoch and index < skip_in_first) or index >= trained_per_epoch:
                    continue
                apply_update = (index + 1) % k == 0
                loss, overflow, _ = self.step(*batch, apply_update) if k > 1 else self.step(*batch)
                micro_losses.append(float(loss.asnumpy()))
                if not apply_update:
                    continue
                run.loss, run.overflow = sum(micro_losses) / k, bool(overflow.asnumpy())
                micro_losses = []
                # the lr the optimizer used (indexed by its own global_step, which a skipped
                # update leaves as it was), and would have used for a skipped one
                run.lr = float(self.lr[run.updates])
                run.seconds = time.perf_counter() - tick
                run.global_step += 1
                run.updates += 0 if run.overflow else 1
                run.step_in_epoch = (index + 1) // k
                for hook in hooks:
                    hook.after_step(run)
                if self._stop_here(run, stop):
                    break
                tick = time.perf_counter()
            if run.stopped_by:
                iterator.stop()  # the rest of this epoch's pipeline is not needed
            if run.stopped_by and run.step_in_epoch < self.steps_per_epoch:
                self._save_stopped(run)
                return
            for hook in hooks:
                hook.after_epoch(run)
            if run.stopped_by:
                self._save_stopped(run)
                return
