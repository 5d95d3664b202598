"""Evaluation during training: each line's "(best X)" includes the evaluation just made, and a
new best writes retinanet-best.ckpt (a real CheckpointStore on a real, small MindSpore cell)."""

import logging

from nasfpn.training.checkpoint_store import CheckpointStore
from nasfpn.training.hooks import PeriodicEval, RunState


def test_best_includes_this_evaluation(tmp_path, caplog):
    import mindspore.nn as nn

    cell = nn.Dense(2, 2)
    log = logging.getLogger("nasfpn")
    store = CheckpointStore(str(tmp_path), cell, keep_max=2, log=log)
    scores = iter([0.2, 0.1, 0.3])
    hook = PeriodicEval(lambda detector: next(scores), 1, cell, cell, store, log)
    run = RunState(steps_per_epoch=1, epoch_size=3, start_step=0, global_batch=1)
    hook.before_run(run)
    with caplog.at_level(logging.INFO, logger="nasfpn"):
        for epoch in (1, 2, 3):
            run.epoch = run.global_step = epoch
            hook.after_epoch(run)
    lines = [r.getMessage() for r in caplog.records if "eval AP" in r.getMessage()]
    assert lines == [
        "epoch 1: eval AP 0.2000 (best 0.2000, new)",
        "epoch 2: eval AP 0.1000 (best 0.2000)",
        "epoch 3: eval AP 0.3000 (best 0.3000, new)",
    ]
    assert store.best_score() == 0.3 and (tmp_path / "retinanet-best.ckpt").is_file()
