"""The warm-up starts scale with the lr asked for; warnings when a schedule runs at an lr nobody
asked for; the headline's lr range. Pure numpy + load_config: no network is built."""

import logging

import numpy as np
import pytest

from nasfpn.training.lr_schedule import lr_headline, lr_schedule_from_config, warn_about_schedule
from tests.conftest import make_config
from tests.helpers.lr_reference import RELEASE_EPOCHS, RELEASE_STARTS, reference_lr

SHORT_WARMUP = ("--warmup_epochs1=0", "--warmup_epochs2=0", "--warmup_epochs3=0", "--warmup_epochs4=0")


@pytest.mark.parametrize("global_batch, lr_max", [(128, 0.1), (16, 0.0125)])
def test_the_release_config_keeps_the_release_values_with_its_batch_scaling(global_batch, lr_max):
    # default_config.yaml: lr 0.1 scaled by global batch / 128 (8 x 16 images: 0.1; one device
    # of 16: 0.0125); the phase starts stay the release's fixed numbers in both cases.
    spe = 3
    lr = lr_schedule_from_config(make_config().schedule, spe, global_batch)
    # rtol: float64 formula rounded once to float32 (half an ulp, 6e-8) on both sides
    np.testing.assert_allclose(
        lr, reference_lr(300 * spe, spe, lr_max, RELEASE_STARTS, RELEASE_EPOCHS), rtol=1e-6, atol=0
    )


def test_the_phase_starts_scale_with_the_lr_asked_for():
    # lr 0.001 unscaled: starts are 1e-4, 1e-3, 1e-2, 0.1 of it (lr_init stays as given)
    cfg = make_config(
        "--lr=0.001",
        "--lr_scale_by_batch=false",
        "--epoch_size=30",
        "--warmup_epochs1=1",
        "--warmup_epochs2=1",
        "--warmup_epochs3=1",
        "--warmup_epochs4=2",
        "--warmup_epochs5=3",
    )
    lr = lr_schedule_from_config(cfg.schedule, 4, 8)
    ref = reference_lr(120, 4, 0.001, (1e-6, 1e-7, 1e-6, 1e-5, 1e-4), (1, 1, 1, 2, 3))
    np.testing.assert_allclose(lr, ref, rtol=1e-6, atol=0)
    assert lr[8 * 4 - 4 * 3] == pytest.approx(1e-4, rel=1e-6)  # phase 5's first step: 0.1 x lr
    assert lr.max() == pytest.approx(0.001, rel=1e-6)


def test_a_batch_scaled_lr_scales_the_starts_by_the_lr_asked_for_not_the_peak():
    # lr 0.4 scaled to a global batch of 64: peak 0.2; starts are fractions of 0.4 (phase 5: 0.04)
    cfg = make_config("--lr=0.4", "--epoch_size=10", *SHORT_WARMUP, "--warmup_epochs5=2")
    lr = lr_schedule_from_config(cfg.schedule, 5, 64)
    np.testing.assert_allclose(
        lr, reference_lr(50, 5, 0.2, (1e-6, 4e-5, 4e-4, 4e-3, 4e-2), (0, 0, 0, 0, 2)), rtol=1e-6, atol=0
    )


def _warnings(caplog, cfg, spe, global_batch):
    log = logging.getLogger("test.lr")
    with caplog.at_level(logging.WARNING, logger="test.lr"):
        warn_about_schedule(log, cfg.schedule, spe, global_batch)
    return [r.getMessage() for r in caplog.records if r.name == "test.lr"]


@pytest.mark.parametrize("spe, global_batch", [(7330, 128), (7330, 16), (1, 16), (1, 13)])
def test_the_release_schedule_does_not_warn(caplog, spe, global_batch):
    assert _warnings(caplog, make_config(), spe, global_batch) == []


def test_a_run_shorter_than_the_release_warm_up_warns_with_the_lr_it_gets(caplog):
    # 10 epochs of 20 steps end inside phase 3 (b2 = 140, b3 = 600): the peak 0.1 x 2/128 =
    # 0.0015625 is never reached; the highest lr is phase 3's start 1e-4 (step 140), from which
    # it falls towards 0.0015625 x 1e-2.
    cfg = make_config("--epoch_size=10", "--batch_size=2")
    message, above_peak = _warnings(caplog, cfg, 20, 2)
    lr = reference_lr(200, 20, 0.0015625, RELEASE_STARTS, RELEASE_EPOCHS)
    assert message == (
        "the warm-up (warmup_epochs1..5 = 2, 5, 23, 60, 160: 250 epochs) is longer than the run "
        f"(epoch_size 10): the lr stays within {lr.min():.3g}..{lr.max():.3g} and never reaches the "
        "peak lr 0.00156 (lr 0.1 scaled by global batch 2/128); set warmup_epochs1..4 to 0 and "
        "warmup_epochs5 to a fraction of epoch_size (e.g. --warmup_epochs5=1)"
    )
    assert f"{lr.max():.3g}" == "0.0001"
    # and phase 5 (never reached here) would start at 0.01, above that peak
    assert above_peak.startswith(
        "the warm-up starts above the peak lr 0.00156 (lr 0.1 scaled by global batch 2/128) (phase 5 at 0.01)"
    )


def test_a_phase_start_above_the_peak_warns(caplog):
    # global batch 8: peak 0.1 x 8/128 = 0.00625, below phase 5's start 0.01
    [message] = _warnings(caplog, make_config(), 10, 8)
    assert message == (
        "the warm-up starts above the peak lr 0.00625 (lr 0.1 scaled by global batch 8/128) (phase 5 "
        "at 0.01): the lr falls during the warm-up instead of rising; set --lr_scale_by_batch=false "
        "with lr given for this batch, or a larger global batch"
    )


def test_an_lr_init_above_the_peak_warns(caplog):
    cfg = make_config(
        "--lr=0.001",
        "--lr_init=0.01",
        "--lr_scale_by_batch=false",
        "--epoch_size=10",
        "--warmup_epochs1=1",
        "--warmup_epochs2=0",
        "--warmup_epochs3=0",
        "--warmup_epochs4=0",
        "--warmup_epochs5=1",
    )
    [message] = _warnings(caplog, cfg, 10, 8)
    assert message == (
        "the warm-up starts above the peak lr 0.001 (as given) (phase 1 at 0.01): the lr "
        "falls during the warm-up instead of rising; set --lr_init below 0.001"
    )


def test_the_headline_gives_the_lr_range_the_run_uses():
    cfg = make_config(
        "--lr=0.04", "--lr_scale_by_batch=false", "--epoch_size=8", *SHORT_WARMUP, "--warmup_epochs5=2"
    )
    lr = lr_schedule_from_config(cfg.schedule, 80, 8)
    # from step 0: phase 5 starts at 0.004; the cosine ends at lr_end plus half a step: still above
    # 5e-3 x 0.04 = 2e-4 (printed 0.0002 at 3 digits)
    assert lr_headline(cfg.schedule, lr, 80, 8, 0) == (
        "lr 0.0002..0.04 over steps 0..639, 0.04 at the end of warm-up (step 160); peak lr 0.04 (as given)"
    )
    # resumed at step 400: the warm-up's low values are not in the range any more
    late = reference_lr(640, 80, 0.04, (1e-6, 4e-6, 4e-5, 4e-4, 4e-3), (0, 0, 0, 0, 2))[400:]
    assert lr_headline(cfg.schedule, lr, 80, 8, 400).startswith(
        f"lr {late.min():.3g}..{late.max():.3g} over steps 400..639"
    )
    short = make_config("--epoch_size=1")
    assert "still in warm-up at the last step" in lr_headline(
        short.schedule, lr_schedule_from_config(short.schedule, 4, 128), 4, 128, 0
    )


# The step schedule with linear warm-up (lr_schedule step, mmdetection's policy='step' with
# warmup='linear'), against values computed by hand from the formula in nasfpn/training/lr_schedule.py.

STEP_OPTIONS = (
    "--lr_schedule=step",
    "--lr=0.08",
    "--lr_scale_by_batch=false",
    "--epoch_size=6",
    "--warmup_ratio=0.1",
    "--warmup_iters=4",
    "--lr_decay_epochs=[2,4]",
    "--lr_decay_factor=0.1",
)
# 3 steps per epoch. Warm-up: 0.08 x (1 - (1 - i/4) x 0.9) = 0.08 x (0.1, 0.325, 0.55, 0.775);
# epochs 0-1 at 0.08, 2-3 at 0.008 (x0.1 at the start of epoch 2), 4-5 at 0.0008.
STEP_TABLE = [
    0.008,
    0.026,
    0.044,
    0.062,
    0.08,
    0.08,
    0.008,
    0.008,
    0.008,
    0.008,
    0.008,
    0.008,
    0.0008,
    0.0008,
    0.0008,
    0.0008,
    0.0008,
    0.0008,
]


def test_the_step_schedule_follows_the_hand_computed_table():
    lr = lr_schedule_from_config(make_config(*STEP_OPTIONS).schedule, 3, 8)
    assert lr.dtype == np.float32 and len(lr) == 18
    # rtol: the float64 formula and the table, each rounded once to float32 (half an ulp, 6e-8)
    np.testing.assert_allclose(lr, np.array(STEP_TABLE, np.float32), rtol=1e-6, atol=0)


def test_a_warm_up_longer_than_an_epoch_warms_the_decayed_lr():
    # warmup_iters 8: 1 - (1 - i/8) x 0.9 = 0.1 + 0.1125 i, so steps 0-5 are 0.008 + 0.009 i; it
    # reaches into epoch 2 (steps 6, 7): the decayed 0.008 x 0.775 and 0.008 x 0.8875; step 8 is
    # past the warm-up.
    cfg = make_config(*STEP_OPTIONS, "--warmup_iters=8")
    lr = lr_schedule_from_config(cfg.schedule, 3, 8)
    expected = [0.008, 0.017, 0.026, 0.035, 0.044, 0.053, 0.0062, 0.0071, 0.008]
    np.testing.assert_allclose(lr[:9], np.array(expected, np.float32), rtol=1e-6, atol=0)


def test_no_warm_up_no_decay_and_the_batch_scaling():
    cfg = make_config(*STEP_OPTIONS, "--warmup_iters=0", "--lr_decay_epochs=[]")
    assert lr_schedule_from_config(cfg.schedule, 3, 8).tolist() == [np.float32(0.08)] * 18
    # lr_scale_by_batch: 0.16 x 64/128 = 0.08 at the peak, the warm-up starts at 0.008
    scaled = make_config(*STEP_OPTIONS, "--lr=0.16", "--lr_scale_by_batch=true")
    np.testing.assert_allclose(
        lr_schedule_from_config(scaled.schedule, 3, 64), np.array(STEP_TABLE, np.float32), rtol=1e-6, atol=0
    )


def test_the_step_schedule_warns_about_parts_the_run_never_reaches(caplog):
    assert _warnings(caplog, make_config(*STEP_OPTIONS), 3, 8) == []
    cfg = make_config(*STEP_OPTIONS, "--warmup_iters=18", "--lr_decay_epochs=[2,6,9]")
    caplog.clear()
    assert _warnings(caplog, cfg, 3, 8) == [
        "the warm-up (warmup_iters 18) is not shorter than the run (18 steps = epoch_size 6 x 3): "
        "the lr never reaches lr; lower --warmup_iters",
        "lr_decay_epochs [6, 9] are not before the end of the run (epoch_size 6): the lr is never "
        "decayed there",
    ]
    lr = lr_schedule_from_config(make_config(*STEP_OPTIONS).schedule, 3, 8)
    assert lr_headline(make_config(*STEP_OPTIONS).schedule, lr, 3, 8, 0) == (
        "lr 0.0008..0.08 over steps 0..17, 0.08 at the end of warm-up (step 4); peak lr 0.08 (as given)"
    )


@pytest.mark.parametrize(
    "option, message",
    [
        (
            "--lr_decay_epochs=[40,30]",
            "--lr_decay_epochs: expected increasing epoch numbers >= 1, got [40, 30]",
        ),
        ("--lr_decay_epochs=[0]", "--lr_decay_epochs: expected increasing epoch numbers >= 1, got [0]"),
        ("--warmup_ratio=1.5", "--warmup_ratio: expected in [0, 1], got 1.5"),
        ("--lr_decay_factor=0", "--lr_decay_factor: expected in (0, 1], got 0.0"),
        ("--lr_schedule=cosine", "--lr_schedule: expected one of ['release', 'step'], got 'cosine'"),
    ],
)
def test_bad_step_schedule_settings_name_their_keys(option, message):
    from nasfpn.config.flat import ConfigError

    with pytest.raises(ConfigError) as raised:
        make_config(*STEP_OPTIONS, option)
    assert str(raised.value) == message


# ---- fit_schedule_to_run (configs/finetune.yaml) --------------------------------------------------
def fitted(*options):
    return make_config(
        "--lr_schedule=step",
        "--fit_schedule_to_run=true",
        "--lr=0.01",
        "--lr_scale_by_batch=false",
        "--warmup_ratio=0.1",
        "--epoch_size=12",
        "--warmup_iters=100",
        "--lr_decay_epochs=[8,11]",
        *options,
    )


def test_a_small_set_gets_fit_min_steps_with_the_decays_and_warm_up_scaled(caplog):
    """40 images at batch 16: 2 steps an epoch, 24 in 12 epochs. Raised to ceil(300 / 2) = 150
    epochs; decays [8, 11] of 12 -> round(100.0), round(137.5) = [100, 138]; warm-up 100 -> 30."""
    from nasfpn.training.lr_schedule import fit_schedule_to_run

    cfg, line = fit_schedule_to_run(fitted("--fit_min_steps=300").schedule, steps_per_epoch=2)
    assert (cfg.epoch_size, cfg.warmup_iters, list(cfg.lr_decay_epochs)) == (150, 30, [100, 138])
    assert line == (
        "schedule fitted to the run: epoch_size 12 -> 150 (a run of at least fit_min_steps 300 steps; 2 an "
        "epoch); lr_decay_epochs [8, 11] -> [100, 138] (written for 12 epochs, the run has 150: scaled by "
        "150/12); warm-up 100 -> 30 steps (at most 0.1 of the run's 300 steps = epoch_size 150 x 2)"
    )
    lr = lr_schedule_from_config(cfg, steps_per_epoch=2, global_batch=16)
    expected = [
        0.01 * (0.1 + 0.9 * i / 30) if i < 30 else 0.01 * 0.1 ** ((i >= 200) + (i >= 276)) for i in range(300)
    ]
    np.testing.assert_allclose(lr, expected, rtol=1e-6)  # float32 rounding of float64 values
    with caplog.at_level(logging.WARNING):
        warn_about_schedule(logging.getLogger("t"), cfg, 2, 16)
    assert not caplog.records


def test_a_short_run_without_a_step_floor_gets_a_tenth_as_warm_up():
    from nasfpn.training.lr_schedule import fit_schedule_to_run

    cfg, line = fit_schedule_to_run(fitted("--fit_min_steps=0").schedule, steps_per_epoch=2)
    assert (cfg.epoch_size, cfg.warmup_iters, list(cfg.lr_decay_epochs)) == (12, 2, [8, 11])
    assert line == (
        "schedule fitted to the run: warm-up 100 -> 2 steps (at most 0.1 of the run's 24 steps = "
        "epoch_size 12 x 2)"
    )


def test_decay_epochs_past_a_shorter_run_scale_with_its_epochs():
    """[8, 11] past a 6-epoch run: read as written for 12, -> 4 and round(5.5) = 6 kept below the
    end, 5; a 2-epoch run merges both into epoch 1."""
    from nasfpn.training.lr_schedule import fitted_step_schedule

    assert fitted_step_schedule(fitted("--epoch_size=6", "--warmup_iters=10"), 100)[:3] == (6, 10, [4, 5])
    _, _, decay, notes = fitted_step_schedule(fitted("--epoch_size=2", "--warmup_iters=10"), 1000)
    assert decay == [1] and notes == [
        "lr_decay_epochs [8, 11] -> [1] (written for 12 epochs, the run has 2: scaled by 2/12)"
    ]


def test_a_run_as_long_as_the_recipe_keeps_it_exactly():
    from nasfpn.training.lr_schedule import fit_schedule_to_run

    cfg = fitted()
    same, line = fit_schedule_to_run(cfg.schedule, 500)
    assert same is cfg.schedule and line.startswith(
        "schedule fitted to the run: as configured (epoch_size 12, warm-up 100"
    )
    off, line = fit_schedule_to_run(fitted("--fit_schedule_to_run=false").schedule, 2)
    assert (off.epoch_size, off.warmup_iters, line) == (12, 100, "")
