"""The training loop: schedule, train step, logging, NaN guard, checkpoints, resume, periodic eval."""
import csv
import glob
import logging
import math
import os
import re
import time

import mindspore as ms
import numpy as np

from ..checkpoint import (load_checkpoint_into, network_params_from, read_checkpoint,
                          save_checkpoint_atomic)
from ..model import RetinaNetWithLoss, build_detector
from .lr_schedule import effective_lr, lr_schedule_from_config
from .train_step import TrainStep, build_optimizer
from ..errors import RunError

CKPT_PREFIX = "retinanet"
CKPT_PATTERN = re.compile(rf"{CKPT_PREFIX}-(\d+)_(\d+)\.ckpt$")
CLASS_HEAD = "network.head.multi_cls_layers"  # dropped by filter_weight (fine-tuning, other classes)


class TrainingError(RunError):
    """Training cannot continue (non-finite loss, bad resume state)."""


def checkpoint_dir(cfg, rank):
    return os.path.join(cfg.save_checkpoint_path, f"ckpt_{rank}")


def list_checkpoints(directory):
    """Epoch checkpoints in `directory`, oldest first, as (epoch, path)."""
    found = []
    for path in glob.glob(os.path.join(directory, f"{CKPT_PREFIX}-*.ckpt")):
        match = CKPT_PATTERN.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


class Trainer:
    """Owns the networks and the train step for one process (one rank)."""

    def __init__(self, cfg, steps_per_epoch, rank=0, group_size=1, log=None):
        self.cfg = cfg
        self.rank = rank
        self.steps_per_epoch = steps_per_epoch
        self.global_batch = cfg.batch_size * group_size
        self.log = log or logging.getLogger("nasfpn")
        self.lr = lr_schedule_from_config(cfg, steps_per_epoch, self.global_batch)
        self.detector = build_detector(cfg)
        self.net = RetinaNetWithLoss(self.detector, cfg.num_classes, cfg.gamma, cfg.alpha)
        if cfg.amp_level != "O0":
            if cfg.device_target == "CPU":
                self.log.warning("amp_level=%s ignored on CPU (float32 training)", cfg.amp_level)
            else:
                ms.amp.auto_mixed_precision(self.net, cfg.amp_level)
        self.optimizer = build_optimizer(self.net, self.lr, cfg.momentum, cfg.weight_decay)
        self.step = TrainStep(self.net, self.optimizer, cfg.loss_scale,
                              cfg.loss_scale_type == "dynamic", cfg.grad_clip_norm)
        self.ckpt_dir = checkpoint_dir(cfg, rank)
        self.start_step = 0

    # ---- starting point ---------------------------------------------------------------------
    def restore(self):
        """Resume (newest checkpoint of this rank) or pre_trained weights; sets self.start_step."""
        cfg = self.cfg
        existing = list_checkpoints(self.ckpt_dir)
        if cfg.resume and existing:
            path = existing[-1][1]
            params = read_checkpoint(path)
            network_params_from(params, self.net, path)  # refuse a file that does not fit
            # The lr array comes from the config (epoch_size may have grown); the step indexes it.
            params.pop("learning_rate", None)
            ms.load_param_into_net(self.step, params)
            if "global_step" not in params or "moments." + self.net.trainable_params()[0].name not in params:
                raise TrainingError(f"{path} has no optimizer state (global_step, moments); it cannot "
                                    "be resumed from - use --pre_trained instead")
            self.start_step = int(params["global_step"].asnumpy().reshape(-1)[0])
            self.log.info("resumed from %s at step %d (epoch %d)", path, self.start_step,
                          self.start_step // self.steps_per_epoch)
        elif cfg.pre_trained:
            skip = (CLASS_HEAD,) if cfg.filter_weight else ()
            load_checkpoint_into(self.net, cfg.pre_trained, skip=skip)
            self.start_step = cfg.pre_trained_epoch_size * self.steps_per_epoch
            self.log.info("loaded %s; schedule starts at epoch %d", cfg.pre_trained, cfg.pre_trained_epoch_size)
        if self.start_step:
            self.optimizer.global_step.set_data(ms.Tensor([self.start_step], ms.int32))
        return self.start_step

    # ---- checkpoints ------------------------------------------------------------------------
    def save(self, epoch):
        name = f"{CKPT_PREFIX}-{epoch}_{self.steps_per_epoch}.ckpt"
        path = save_checkpoint_atomic(self.step, os.path.join(self.ckpt_dir, name))
        for _, old in list_checkpoints(self.ckpt_dir)[:-max(1, self.cfg.keep_checkpoint_max)]:
            os.remove(old)
        return path

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self, dataset, evaluate=None):
        """Train until cfg.epoch_size epochs; returns a dict with the last loss and figures."""
        cfg = self.cfg
        total = cfg.epoch_size * self.steps_per_epoch
        if self.start_step >= total:
            self.log.info("nothing to do: step %d >= %d", self.start_step, total)
            return {"steps": 0, "last_loss": None}
        os.makedirs(self.ckpt_dir, exist_ok=True)
        self.step.set_train()
        first_epoch = self.start_step // self.steps_per_epoch
        skip = self.start_step % self.steps_per_epoch
        iterator = dataset.create_tuple_iterator(num_epochs=cfg.epoch_size - first_epoch)
        self.log.info("training %d steps (%d epochs x %d), global batch %d, lr max %.5f (%s)",
                      total - self.start_step, cfg.epoch_size - first_epoch, self.steps_per_epoch,
                      self.global_batch, effective_lr(cfg, self.global_batch),
                      "scaled by batch/128" if cfg.lr_scale_by_batch else "as given")
        global_step, last_loss, best, skipped = self.start_step, None, None, 0
        log_path = os.path.join(self.ckpt_dir, "train_log.csv")
        new_log = not os.path.exists(log_path)
        with open(log_path, "a", newline="") as log_file:
            writer = csv.writer(log_file)
            if new_log:
                writer.writerow(["global_step", "epoch", "loss", "lr", "seconds"])
            for epoch in range(first_epoch, cfg.epoch_size):
                tick = time.perf_counter()
                for index, batch in enumerate(iterator):
                    if skip and index < skip:  # mid-epoch resume: consume what was already trained
                        continue
                    loss, overflow, _ = self.step(*batch)
                    loss = float(loss.asnumpy())
                    seconds = time.perf_counter() - tick
                    lr = float(self.lr[global_step])
                    global_step += 1
                    if not math.isfinite(loss) or bool(overflow.asnumpy()):
                        skipped += 1
                        self._non_finite(loss, global_step, skipped)
                    else:
                        skipped, last_loss = 0, loss
                    writer.writerow([global_step, epoch + 1, f"{loss:.6f}", f"{lr:.9g}", f"{seconds:.4f}"])
                    if global_step % cfg.log_interval == 0:
                        log_file.flush()
                        self.log.info("epoch %d/%d step %d/%d (global %d) loss %.4f lr %.6f %.2f s/step "
                                      "%.1f img/s", epoch + 1, cfg.epoch_size, index + 1, self.steps_per_epoch,
                                      global_step, loss, lr, seconds, self.global_batch / max(seconds, 1e-9))
                    tick = time.perf_counter()
                skip = 0
                best = self._end_of_epoch(epoch + 1, evaluate, best)
        return {"steps": global_step - self.start_step, "last_loss": last_loss, "best": best,
                "ckpt_dir": self.ckpt_dir}

    def _non_finite(self, loss, global_step, skipped):
        if self.cfg.loss_scale_type == "dynamic" and skipped < 50:
            self.log.warning("step %d: non-finite gradients (loss %s); update skipped, loss scale lowered",
                             global_step, loss)
            return
        raise TrainingError(
            f"step {global_step}: loss is {loss} (non-finite loss or gradients); stopped before writing a "
            "checkpoint. Lower --lr, set --grad_clip_norm (e.g. 10), or use --loss_scale_type=dynamic.")

    def _end_of_epoch(self, epoch, evaluate, best):
        cfg = self.cfg
        if cfg.save_checkpoint and (epoch % cfg.save_checkpoint_epochs == 0 or epoch == cfg.epoch_size):
            self.log.info("saved %s", self.save(epoch))
        if evaluate is not None and cfg.eval_interval and epoch % cfg.eval_interval == 0:
            score = evaluate(self.detector)
            self.step.set_train()
            self.log.info("epoch %d: eval AP %.4f (best %s)", epoch, score,
                          "-" if best is None else f"{best:.4f}")
            if best is None or score > best:
                best = score
                save_checkpoint_atomic(self.step, os.path.join(self.ckpt_dir, f"{CKPT_PREFIX}-best.ckpt"))
        return best


def read_train_log(path):
    """(global_step, loss, lr) arrays from a train_log.csv."""
    data = np.genfromtxt(path, delimiter=",", names=True)
    return data["global_step"], data["loss"], data["lr"]
