"""MindSpore context set-up shared by the entry points."""
import logging
import os

from .errors import DeviceError


def set_context(cfg, device_id=None):
    """Graph/PyNative mode and device from the config; a clear error for an absent device."""
    import mindspore as ms
    mode = ms.GRAPH_MODE if cfg.context_mode == "graph" else ms.PYNATIVE_MODE
    try:
        ms.set_context(mode=mode)
        ms.set_device(cfg.device_target, int(cfg.device_id if device_id is None else device_id))
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(f"--device_target={cfg.device_target}: device not available "
                           f"({str(exc).splitlines()[0]}); use --device_target=CPU") from None


def setup_logging(level="INFO"):
    os.environ.setdefault("GLOG_v", "3")
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    return logging.getLogger("nasfpn")
