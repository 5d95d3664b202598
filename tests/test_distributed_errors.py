"""The message of a failed distributed set-up names the real situation (no launcher, or a peer failed)."""
from src.training.distributed import init_failure_message


def test_without_a_launcher_the_message_asks_for_one():
    message = init_failure_message("no MS_ROLE", {})
    assert message.startswith("--distribute=True needs a distributed launcher (msrun, or an Ascend")
    assert message.endswith(": no MS_ROLE")


def test_under_msrun_the_scheduler_points_to_the_failed_worker():
    message = init_failure_message("worker 0 is the first one timed out", {"MS_ROLE": "MS_SCHED"})
    assert message == ("distributed set-up failed in the msrun scheduler (worker 0 is the first one "
                       "timed out); another process probably exited first: its log has the cause")
    assert "needs a distributed launcher" not in message


def test_a_rank_table_launch_is_a_launcher_too():
    message = init_failure_message("timeout", {"RANK_TABLE_FILE": "/r.json", "RANK_ID": "3"})
    assert message.startswith("distributed set-up failed in this rank (timeout)")
