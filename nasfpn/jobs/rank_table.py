"""Ascend rank tables (HCCL JSON) for scripts/run_distribute_train.sh: which devices of this server
to start, with which RANK_ID, checked against DEVICE_NUM before anything starts.

    python -m nasfpn.jobs.rank_table RANK_TABLE_FILE DEVICE_NUM [SERVER_ID]

prints "RANK_SIZE <n>" then one "DEVICE_ID RANK_ID" line per device of this server. DEVICE_NUM is
the number of devices of this server (the release's single-server form: all of them). The server
is SERVER_ID when given (the server_id of the table, usually its IP), else the table's only server,
else the one whose server_id is an address of this machine. A mismatch is an error naming the
file, the server and the counts (exit status 2).
"""

import json
import socket
import subprocess
import sys

from nasfpn.core.errors import UserError


class RankTableError(UserError):
    """A rank table that does not fit the launch."""


def read_rank_table(path):
    """[(server_id, [(device_id, rank_id), ...]), ...] of an HCCL rank table (version 1.0 layout:
    server_count, server_list[].device[] with device_id and rank_id)."""
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except FileNotFoundError:
        raise RankTableError(f"rank table not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise RankTableError(f"{path}: not valid JSON ({exc})") from None
    servers = table.get("server_list") if isinstance(table, dict) else None
    if not isinstance(servers, list) or not servers:
        raise RankTableError(f"{path}: expected an HCCL rank table with a non-empty 'server_list'")
    count = table.get("server_count")
    if count is not None and int(count) != len(servers):
        raise RankTableError(f"{path}: server_count is {count} but server_list has {len(servers)} servers")
    parsed = []
    for index, server in enumerate(servers):
        try:
            devices = [(int(d["device_id"]), int(d["rank_id"])) for d in server["device"]]
        except (KeyError, TypeError, ValueError):
            raise RankTableError(
                f"{path}: server_list[{index}] needs 'device' entries with device_id and rank_id"
            ) from None
        parsed.append((str(server.get("server_id", index)), devices))
    return parsed


def local_addresses():
    """This machine's host names and IPv4 addresses (to find its entry in the table)."""
    names = {socket.gethostname(), socket.getfqdn(), "127.0.0.1"}
    try:
        names.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    try:
        names.update(
            subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return names


def this_server(servers, path, server_id=None):
    ids = [sid for sid, _ in servers]
    if server_id is not None:
        if server_id not in ids:
            raise RankTableError(f"{path}: no server '{server_id}' (servers: {', '.join(ids)})")
        return ids.index(server_id)
    if len(servers) == 1:
        return 0
    mine = [i for i, sid in enumerate(ids) if sid in local_addresses()]
    if len(mine) != 1:
        raise RankTableError(
            f"{path} lists {len(servers)} servers ({', '.join(ids)}) and none is "
            "this machine by address; give this server's server_id as SERVER_ID "
            "(the 4th argument or SERVER_ID=...) on each server"
        )
    return mine[0]


def launch_plan(path, device_num, server_id=None):
    """(rank size, [(device_id, rank_id)] of this server) for DEVICE_NUM devices on it."""
    servers = read_rank_table(path)
    index = this_server(servers, path, server_id)
    sid, devices = servers[index]
    if device_num != len(devices):
        per_server = ", ".join(f"{s}: {len(d)}" for s, d in servers)
        raise RankTableError(
            f"DEVICE_NUM is {device_num} but {path} gives server {sid} "
            f"{len(devices)} devices ({len(servers)} server(s); devices per server: "
            f"{per_server}); DEVICE_NUM is the device count of this server"
        )
    return sum(len(d) for _, d in servers), devices


def main(argv):
    if len(argv) not in (2, 3) or not argv[1].isdigit():
        print(
            "usage: python -m nasfpn.jobs.rank_table RANK_TABLE_FILE DEVICE_NUM [SERVER_ID]", file=sys.stderr
        )
        return 2
    try:
        rank_size, devices = launch_plan(argv[0], int(argv[1]), argv[2] if len(argv) == 3 else None)
    except RankTableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"RANK_SIZE {rank_size}")
    for device_id, rank_id in devices:
        print(device_id, rank_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
