"""The learning-rate schedules as formulas: the release's (docs/conventions.md#training) and the
step schedule of the short recipe (docs/training.md#the-short-recipe).

The release's: five linear warm-up phases, then a cosine from lr_max to lr_end. Phase k runs from boundary
b_{k-1} to b_k (in steps, b_0 = 0) and interpolates linearly from `start_k` to lr_max * `end_k`:

    lr(i) = start_k * (b_k - i) / (b_k - b_{k-1}) + lr_max * end_k * (i - b_{k-1}) / (b_k - b_{k-1})

with start_1 = lr_init and, for k = 2..5, the release's fixed start v_k scaled by the lr asked for:

    start_k = v_k * lr_asked / 0.1,   (v_2, v_3, v_4, v_5) = (1e-5, 1e-4, 1e-3, 1e-2)

i.e. 1e-4, 1e-3, 1e-2 and 0.1 of lr_asked. `lr_asked` is the configured `lr` before batch scaling
(lr_max is lr_asked scaled by the global batch when lr_scale_by_batch is on). The release's starts
were chosen for its lr 0.1, so at lr 0.1 the factor is exactly 1 and every step keeps the release's
value, whatever the batch scaling; at lr 0.001 phase 5 starts at 1e-4 instead of ten times the peak.
The ends, end_k = (1e-4 / 3, 1e-3, 1e-2, 0.1, 1) for k = 1..5, are fractions of lr_max. After b_5:

    lr(i) = lr_end + (lr_max - lr_end) * (1 + cos(pi * (i - b_5) / (total - b_5))) / 2

Negative values are clamped to 0. A phase of 0 epochs is skipped.

The step schedule (lr_schedule: step; mmdetection's `policy='step'` with `warmup='linear'`):
with e(i) = i // steps_per_epoch the epoch of step i (from 0) and n(i) the number of decay epochs
d in lr_decay_epochs with e(i) >= d,

    regular(i) = lr_max * lr_decay_factor ** n(i)
    lr(i) = regular(i) * (1 - (1 - i / warmup_iters) * (1 - warmup_ratio))   for i < warmup_iters
    lr(i) = regular(i)                                                       otherwise

so step 0 runs at lr_max * warmup_ratio and the warm-up reaches lr_max at step warmup_iters; with
decay epochs [30, 40] epochs 0..29 run at lr_max, 30..39 at lr_max * factor, 40.. at factor^2.

Fitted to the run (`fit_schedule_to_run`, set by configs/finetune.yaml; step schedule only): a
recipe is written for a run of some length, and a small set makes a much shorter one (40 images at
batch 16: 2 steps an epoch). With S the steps per epoch:

    epochs   = epoch_size, or ceil(fit_min_steps / S) when epoch_size x S < fit_min_steps
    decay    = lr_decay_epochs, read as written for W epochs - W = epoch_size, or (last + 1) when
               the last is not before epoch_size (mmdetection's [8, 11] of 12) - and, when W is
               not `epochs`, each d -> min(max(1, round(d x epochs / W)), epochs - 1), repeats merged
    warm-up  = min(warmup_iters, max(1, floor(MAX_WARMUP_FRACTION x epochs x S)))

`fit_schedule_to_run` (the function) applies them to the config and gives the log line the trainer
writes. A run at least as long as the recipe's keeps it exactly.

`schedule_warnings` names what a configuration gets that it probably did not mean (a warm-up
longer than the run, a phase starting above the peak); `describe_lr` is the range a run uses.
"""

import dataclasses
import math

import numpy as np

MAX_WARMUP_FRACTION = 0.1  # fit_schedule_to_run: the warm-up takes at most this part of the run
RELEASE_LR = 0.1  # the release's lr, for which its fixed phase starts were chosen
RELEASE_BATCH = 8 * 16  # the release's lr (0.1) is for 8 devices x 16 images
# (release start value at lr 0.1, end value as a fraction of lr_max) of warm-up phases 1..5;
# phase 1 starts at lr_init.
WARMUP_PHASES = ((None, 1e-4 / 3), (1e-5, 1e-3), (1e-4, 1e-2), (1e-3, 1e-1), (1e-2, 1.0))


def warmup_starts(lr_init, lr_asked=RELEASE_LR):
    """The start value of each of the five warm-up phases (formula in the module docstring)."""
    scale = lr_asked / RELEASE_LR
    return tuple(lr_init if start is None else start * scale for start, _ in WARMUP_PHASES)


def warmup_boundaries(steps_per_epoch, warmup_epochs):
    """b_0..b_5 in steps."""
    return np.cumsum([0] + [e * steps_per_epoch for e in warmup_epochs])


def release_lr_schedule(
    total_steps,
    steps_per_epoch,
    lr_max,
    lr_init=1e-6,
    lr_end_rate=5e-3,
    warmup_epochs=(2, 5, 23, 60, 160),
    lr_asked=RELEASE_LR,
):
    """float32 learning rate for each step 0..total_steps-1. `lr_asked`: the lr the warm-up starts
    are scaled by (the configured lr before batch scaling); its default gives the release's
    fixed starts."""
    if len(warmup_epochs) != len(WARMUP_PHASES):
        raise ValueError(f"expected {len(WARMUP_PHASES)} warm-up phase lengths, got {list(warmup_epochs)}")
    steps = np.arange(total_steps, dtype=np.float64)
    lr = np.zeros(total_steps, np.float64)
    boundaries = warmup_boundaries(steps_per_epoch, warmup_epochs)
    starts = warmup_starts(lr_init, lr_asked)
    for k, (_, end) in enumerate(WARMUP_PHASES):
        lo, hi = boundaries[k], boundaries[k + 1]
        if hi <= lo:
            continue
        in_phase = (steps >= lo) & (steps < hi)
        i = steps[in_phase]
        lr[in_phase] = starts[k] * (hi - i) / (hi - lo) + lr_max * end * (i - lo) / (hi - lo)
    last = boundaries[-1]
    lr_end = lr_end_rate * lr_max
    decay = steps >= last
    if decay.any():
        span = max(total_steps - last, 1)
        lr[decay] = lr_end + (lr_max - lr_end) * (1 + np.cos(math.pi * (steps[decay] - last) / span)) / 2
    return np.maximum(lr, 0.0).astype(np.float32)


def step_lr_schedule(
    total_steps,
    steps_per_epoch,
    lr_max,
    warmup_ratio=0.1,
    warmup_iters=1000,
    decay_epochs=(30, 40),
    decay_factor=0.1,
):
    """float32 learning rate for each step 0..total_steps-1 of the step schedule with linear
    warm-up (formula in the module docstring)."""
    steps = np.arange(total_steps, dtype=np.float64)
    epoch = np.arange(total_steps) // steps_per_epoch
    decays = (epoch[:, None] >= np.asarray(list(decay_epochs), np.int64)[None, :]).sum(axis=1)
    lr = lr_max * float(decay_factor) ** decays
    if warmup_iters > 0:
        warming = steps < warmup_iters
        lr[warming] *= 1 - (1 - steps[warming] / warmup_iters) * (1 - warmup_ratio)
    return lr.astype(np.float32)


def fitted_step_schedule(schedule, steps_per_epoch: int) -> tuple:
    """(epochs, warm-up steps, decay epochs, notes) of the schedule section's step schedule for
    this run: the configured ones, or with fit_schedule_to_run those fitted to the data (rule in
    the module docstring); notes say what was changed and why."""
    epochs, warmup = int(schedule.epoch_size), int(schedule.warmup_iters)
    decay = [int(d) for d in schedule.lr_decay_epochs]
    if not schedule.fit_schedule_to_run or schedule.lr_schedule != "step":
        return epochs, warmup, decay, []
    notes = []
    if epochs * steps_per_epoch < schedule.fit_min_steps:
        epochs = -(-schedule.fit_min_steps // steps_per_epoch)
        notes.append(
            f"epoch_size {schedule.epoch_size} -> {epochs} (a run of at least fit_min_steps "
            f"{schedule.fit_min_steps} steps; {steps_per_epoch} an epoch)"
        )
    written_for = schedule.epoch_size if not decay or decay[-1] < schedule.epoch_size else decay[-1] + 1
    if decay and written_for != epochs:
        scaled = sorted({min(max(1, round(d * epochs / written_for)), max(epochs - 1, 1)) for d in decay})
        notes.append(
            f"lr_decay_epochs {decay} -> {scaled} (written for {written_for} epochs, the run has "
            f"{epochs}: scaled by {epochs}/{written_for})"
        )
        decay = scaled
    total = epochs * steps_per_epoch
    limit = max(1, int(MAX_WARMUP_FRACTION * total))
    if warmup > limit:
        notes.append(
            f"warm-up {warmup} -> {limit} steps (at most {MAX_WARMUP_FRACTION:g} of the run's {total} "
            f"steps = epoch_size {epochs} x {steps_per_epoch})"
        )
        warmup = limit
    return epochs, warmup, decay, notes


def fit_schedule_to_run(schedule, steps_per_epoch: int) -> tuple:
    """(the schedule section with the fitted epoch_size, warmup_iters and lr_decay_epochs, one log
    line) under its fit_schedule_to_run; (the same section, "") when it is off. The caller applies
    the fitted values to the Config as if given, so the schedule, its warnings, the log's headline
    and the epoch loop all use them."""
    if not schedule.fit_schedule_to_run or schedule.lr_schedule != "step":
        return schedule, ""
    epochs, warmup, decay, notes = fitted_step_schedule(schedule, steps_per_epoch)
    if not notes:
        return schedule, (
            f"schedule fitted to the run: as configured (epoch_size {epochs}, warm-up {warmup} steps, "
            f"lr_decay_epochs {decay}: the run of {epochs * steps_per_epoch} steps fits the recipe)"
        )
    fitted = dataclasses.replace(schedule, epoch_size=epochs, warmup_iters=warmup, lr_decay_epochs=decay)
    return fitted, "schedule fitted to the run: " + "; ".join(notes)


def lr_schedule_from_config(schedule, steps_per_epoch, global_batch):
    """The learning rate of each step of the schedule section's schedule (lr_schedule) over its
    epoch_size epochs; lr scaled to the global batch when asked (fit_schedule_to_run is applied
    before, by fit_schedule_to_run)."""
    if schedule.lr_schedule == "step":
        return step_lr_schedule(
            schedule.epoch_size * steps_per_epoch,
            steps_per_epoch,
            effective_lr(schedule, global_batch),
            schedule.warmup_ratio,
            schedule.warmup_iters,
            schedule.lr_decay_epochs,
            schedule.lr_decay_factor,
        )
    return release_lr_schedule(
        schedule.epoch_size * steps_per_epoch,
        steps_per_epoch,
        effective_lr(schedule, global_batch),
        schedule.lr_init,
        schedule.lr_end_rate,
        schedule.release_warmup_epochs,
        lr_asked=schedule.lr,
    )


def effective_lr(schedule, global_batch):
    """The schedule section's lr, scaled linearly from the release's 128-image batch when
    lr_scale_by_batch is on."""
    return schedule.lr * global_batch / RELEASE_BATCH if schedule.lr_scale_by_batch else schedule.lr


def _peak_text(schedule, global_batch):
    if schedule.lr_scale_by_batch:
        return (
            f"peak lr {effective_lr(schedule, global_batch):.3g} (lr {schedule.lr:g} scaled by global batch "
            f"{global_batch}/{RELEASE_BATCH})"
        )
    return f"peak lr {schedule.lr:g} (as given)"


def schedule_warnings(schedule, steps_per_epoch, global_batch):
    """Messages about a schedule that runs at an lr nobody asked for: warm-up phases longer than
    the run (the peak is never reached), or a phase starting above the peak (the lr falls during
    it). Empty for the release's schedule."""
    if schedule.lr_schedule == "step":
        return step_schedule_warnings(schedule, steps_per_epoch)
    warmup = schedule.release_warmup_epochs
    total = schedule.epoch_size * steps_per_epoch
    lr = lr_schedule_from_config(schedule, steps_per_epoch, global_batch)
    peak = effective_lr(schedule, global_batch)
    messages = []
    warmup_steps = int(warmup_boundaries(steps_per_epoch, warmup)[-1])
    if warmup_steps >= total > 0:
        messages.append(
            f"the warm-up (warmup_epochs1..5 = {', '.join(map(str, warmup))}: {sum(warmup)} epochs) is "
            f"longer than the run (epoch_size {schedule.epoch_size}): the lr stays within "
            f"{float(lr.min()):.3g}..{float(lr.max()):.3g} and never reaches the {_peak_text(schedule, global_batch)}; "
            f"set warmup_epochs1..4 to 0 and warmup_epochs5 to a fraction of epoch_size (e.g. "
            f"--warmup_epochs5={max(1, schedule.epoch_size // 10)})"
        )
    starts = warmup_starts(schedule.lr_init, schedule.lr)
    above = [(k + 1, start) for k, start in enumerate(starts) if warmup[k] > 0 and start > peak]
    if above:
        phases = ", ".join(f"phase {k} at {start:.3g}" for k, start in above)
        fixes = []
        if above[0][0] == 1:
            fixes.append(f"--lr_init below {peak:.3g}")
        if above[-1][0] > 1:
            fixes.append("--lr_scale_by_batch=false with lr given for this batch, or a larger global batch")
        messages.append(
            f"the warm-up starts above the {_peak_text(schedule, global_batch)} ({phases}): the lr "
            f"falls during the warm-up instead of rising; set {' or '.join(fixes)}"
        )
    return messages


def step_schedule_warnings(schedule, steps_per_epoch):
    """The step schedule's parts a run never reaches: a warm-up as long as the run, decay epochs at
    or after its end."""
    total = schedule.epoch_size * steps_per_epoch
    warmup, decay = schedule.warmup_iters, schedule.lr_decay_epochs
    messages = []
    if warmup >= total > 0:
        messages.append(
            f"the warm-up (warmup_iters {warmup}) is not shorter than the run "
            f"({total} steps = epoch_size {schedule.epoch_size} x {steps_per_epoch}): the lr "
            f"never reaches lr; lower --warmup_iters"
        )
    late = [e for e in decay if e >= schedule.epoch_size]
    if late:
        messages.append(
            f"lr_decay_epochs {late} are not before the end of the run (epoch_size "
            f"{schedule.epoch_size}): the lr is never decayed there"
        )
    return messages


def warmup_steps_of(schedule, steps_per_epoch):
    """Steps of the warm-up of the configured schedule."""
    if schedule.lr_schedule == "step":
        return int(schedule.warmup_iters)
    return int(warmup_boundaries(steps_per_epoch, schedule.release_warmup_epochs)[-1])


def warn_about_schedule(log, schedule, steps_per_epoch, global_batch):
    """Log each of `schedule_warnings` once, as a warning of `log`."""
    for message in schedule_warnings(schedule, steps_per_epoch, global_batch):
        log.warning("%s", message)


def lr_headline(schedule, lr, steps_per_epoch, global_batch, start_step):
    """The lr a run from `start_step` actually uses (min..max over its steps, the lr where the
    warm-up ends, i.e. its first cosine step) and the peak it was configured with."""
    warmup_steps = warmup_steps_of(schedule, steps_per_epoch)
    return f"{describe_lr(lr, start_step, warmup_steps)}; {_peak_text(schedule, global_batch)}"


def describe_lr(lr, start_step, warmup_steps):
    """min..max of `lr` from `start_step` on, and its value at step `warmup_steps`."""
    run = lr[start_step:]
    if len(run) == 0:
        return "no steps to run"
    text = f"lr {float(run.min()):.3g}..{float(run.max()):.3g} over steps {start_step}..{len(lr) - 1}"
    if warmup_steps == 0:
        return text + ", no warm-up"
    if warmup_steps >= len(lr):
        return text + f", still in warm-up at the last step ({float(lr[-1]):.3g})"
    return text + f", {float(lr[warmup_steps]):.3g} at the end of warm-up (step {warmup_steps})"
