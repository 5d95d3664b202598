"""MindSpore context set-up shared by the entry points."""

import logging
import os

from nasfpn.core.errors import DeviceError


def set_context(device, device_id=None):
    """Graph/PyNative mode and device of the device section (context_mode, device_target,
    device_id: nasfpn/config/sections.py:DeviceConfig); a clear error for an absent device.
    `device_id` overrides the section's (a distributed rank's local device)."""
    import mindspore as ms

    mode = ms.GRAPH_MODE if device.context_mode == "graph" else ms.PYNATIVE_MODE
    target = device.device_target
    try:
        ms.set_context(mode=mode)
        ms.set_device(target, int(device.device_id if device_id is None else device_id))
    except (RuntimeError, ValueError) as exc:
        # A second run in one process (a notebook, the tests) finds the runtime started on the
        # device it asks for: nothing to change.
        if "has been initialized" in str(exc) and ms.get_context("device_target") == target:
            return
        raise DeviceError(
            f"--device_target={target}: device not available "
            f"({str(exc).splitlines()[0]}); use --device_target=CPU"
        ) from None


LOG_FORMAT = "%(asctime)s {rank}%(levelname)s %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"


def setup_logging(level="INFO"):
    os.environ.setdefault("GLOG_v", "3")
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format=LOG_FORMAT.format(rank=""),
        datefmt=LOG_DATE_FORMAT,
    )
    return logging.getLogger("nasfpn")


def tag_logs_with_rank(rank, group_size):
    """Put `rank N` into every later log line when the job has more than one process: their lines
    meet in one console (msrun) and must say whose they are."""
    if group_size <= 1:
        return
    formatter = logging.Formatter(LOG_FORMAT.format(rank=f"rank {rank} "), datefmt=LOG_DATE_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
