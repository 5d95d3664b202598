"""Data-parallel set-up through MindSpore's own communication (rank table on Ascend, msrun)."""

import os

from nasfpn.core.errors import RunError


def init_distributed(distribute):
    """(rank, group size); initialises communication and DATA_PARALLEL when `distribute`."""
    if not distribute:
        return 0, 1
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    try:
        init()
    except RuntimeError as exc:
        raise RunError(init_failure_message(str(exc).splitlines()[0], os.environ)) from None
    rank, size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(
        parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=size
    )
    return rank, size


def init_failure_message(reason, environ):
    """Why communication set-up failed: no launcher at all, or a launched process whose peers failed
    (msrun's scheduler fails like this when a worker has exited: the worker's log has the cause)."""
    role = environ.get("MS_ROLE")
    if role or environ.get("RANK_TABLE_FILE"):
        who = {"MS_SCHED": "the msrun scheduler", "MS_WORKER": "an msrun worker"}.get(role, "this rank")
        return (
            f"distributed set-up failed in {who} ({reason}); another process probably exited "
            "first: its log has the cause"
        )
    return (
        "--distribute=True needs a distributed launcher (msrun, or an Ascend rank table with "
        f"RANK_ID/DEVICE_ID set): {reason}"
    )


def local_device_id(default=0):
    """Device index of this process: DEVICE_ID (rank-table launch) or the local rank under msrun."""
    for key in ("DEVICE_ID", "MS_LOCAL_RANK_ID", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return default
