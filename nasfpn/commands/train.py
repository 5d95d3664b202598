"""Train NAS-FPN (RetinaNet) on a MindRecord dataset, on one device or data-parallel.

    python train.py --mindrecord_dir=DIR [--device_target=Ascend|GPU|CPU] [--epoch_size=300]
        [--batch_size=16] [--pre_trained=CKPT --pre_trained_epoch_size=N] [--distribute=True]
        [--save_checkpoint_path=./ckpt] [--resume=True]

Distributed launches: scripts/run_distribute_train*.sh (rank table on Ascend, msrun on GPU/CPU).
SIGTERM / SIGINT: the current step is finished and checkpointed, then the exit status is 4
(nasfpn/core/exits.py); --resume=True continues from there.
"""

from typing import Any, Optional, Sequence

from nasfpn.config.flat import Config, load_config
from nasfpn.core.context import setup_logging
from nasfpn.core.exits import EXIT_INTERRUPTED, EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> Any:
    return run(load_config(argv))


def run(cfg: Config) -> Any:
    log = setup_logging(cfg.log_level)
    from nasfpn.evaluation.during_training import make_evaluator
    from nasfpn.jobs.profiling import profiling_hooks
    from nasfpn.training.run import train_from_config

    # evaluation and profiling sit above training in the layers: handed in from here
    return train_from_config(cfg, log, make_evaluator, profiling_hooks(cfg.job, log))


def exit_status(result: Any) -> int:
    """4 when a signal stopped the run (its last step checkpointed), else 0."""
    return EXIT_INTERRUPTED if result.stopped_by else EXIT_OK
