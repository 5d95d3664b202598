"""Data-parallel set-up through MindSpore's own communication (rank table on Ascend, msrun)."""
import os

from ..errors import RunError


def init_distributed(distribute):
    """(rank, group size); initialises communication and DATA_PARALLEL when `distribute`."""
    if not distribute:
        return 0, 1
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init
    try:
        init()
    except RuntimeError as exc:
        raise RunError("--distribute=True needs a distributed launcher (msrun, or an Ascend rank "
                           f"table with RANK_ID/DEVICE_ID set): {str(exc).splitlines()[0]}") from None
    rank, size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=size)
    return rank, size


def local_device_id(default=0):
    """Device index of this process: DEVICE_ID (rank-table launch) or the local rank under msrun."""
    for key in ("DEVICE_ID", "MS_LOCAL_RANK_ID", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return default
