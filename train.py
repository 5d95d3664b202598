"""Train NAS-FPN (RetinaNet) on a MindRecord dataset, on one device or data-parallel.

    python train.py --mindrecord_dir=DIR [--device_target=Ascend|GPU|CPU] [--epoch_size=300]
        [--batch_size=16] [--pre_trained=CKPT --pre_trained_epoch_size=N] [--distribute=True]
        [--save_checkpoint_path=./ckpt] [--resume=True]

Distributed launches: scripts/run_distribute_train*.sh (rank table on Ascend, msrun on GPU/CPU).
SIGTERM / SIGINT: the current step is finished and checkpointed, then the exit status is 4
(nasfpn/core/exits.py); --resume=True continues from there.
"""

# The command lives in the package (nasfpn/commands/train.py, also `nasfpn train`); this file is
# the release's entry point for it.
from nasfpn.commands.train import exit_status, main, run  # noqa: F401  (callers import them from here)
from nasfpn.core.exits import run_entry_point
from nasfpn.jobs.modelarts import modelarts_entry

if __name__ == "__main__":
    run_entry_point(modelarts_entry(run), exit_status)
