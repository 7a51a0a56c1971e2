"""Before a multi-process run starts ``jax.distributed``: every process arrives, or the start ends in one line that
names the missing ones.

``jax.distributed.initialize`` waits for its peers and, when one never comes, aborts the whole process from C++
after its timeout (``DEADLINE_EXCEEDED``, a stack trace, status 134) without saying which process is missing. So
the processes first meet on the coordinator's own port with plain sockets: process 0 listens there and waits for
every other process to say its id (and how many processes it was started with); each other process knocks until
process 0 answers. When all have arrived, process 0 tells them to go, closes the port and starts JAX's coordination
service on it, which the others then join at once. While it waits, each process says once on stderr what it waits
for; when ``timeout`` seconds (``mesh.start_timeout``) pass first, each ends with one UserError: process 0 naming
the process ids that never arrived, the others naming the coordinator they could not reach.
"""

from __future__ import annotations

import socket
import sys
import time

from runtime.errors import UserError

# Say what we wait for when the peers have not all arrived after this long (a normal start takes well under it).
QUIET_SECONDS = 2.0


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port); UserError for anything else."""
    host, sep, port = str(address).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"coordinator address '{address}' is not HOST:PORT (e.g. 10.0.0.1:1234); set "
                        "mesh.coordinator_address or JAX_COORDINATOR_ADDRESS")
    return host, int(port)


def rendezvous(address: str, num_processes: int, process_id: int, timeout: float) -> None:
    """Wait until all ``num_processes`` processes have arrived at ``address`` (see the module doc); UserError after
    ``timeout`` seconds, or when the processes disagree on their count or ids."""
    host, port = split_address(address)
    deadline = time.monotonic() + timeout
    if process_id == 0:
        _gather(port, num_processes, deadline, address, timeout)
    else:
        _join(host, port, num_processes, process_id, deadline, address, timeout)


def _say_once(state: dict, text: str) -> None:
    if not state.get("said") and time.monotonic() - state["since"] >= QUIET_SECONDS:
        state["said"] = True
        print(text, file=sys.stderr, flush=True)


def _gather(port: int, n: int, deadline: float, address: str, timeout: float) -> None:
    try:
        server = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True) \
            if socket.has_dualstack_ipv6() else socket.create_server(("", port))
    except OSError as err:
        raise UserError(f"process 0 cannot listen on {address} ({err.strerror}); choose another port for "
                        "mesh.coordinator_address") from None
    peers: dict[int, socket.socket] = {}
    state = {"since": time.monotonic()}
    try:
        while len(peers) < n - 1:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = ", ".join(str(i) for i in range(1, n) if i not in peers)
                raise UserError(f"{n - 1 - len(peers)} of the {n} processes did not arrive at {address} within "
                                f"{timeout:g} s: process {missing} missing; start each with its mesh.process_id (or "
                                "check that they can reach this host), or raise mesh.start_timeout")
            _say_once(state, f"process 0 of {n}: waiting up to {timeout:g} s at {address} for process "
                             f"{', '.join(str(i) for i in range(1, n) if i not in peers)}")
            server.settimeout(min(left, 0.5))
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            pid = _hello(conn, n, peers)
            if pid is not None:
                peers[pid] = conn
        for pid, conn in peers.items():
            try:
                conn.sendall(b"go\n")
            except OSError:
                raise UserError(f"process {pid} of {n} left {address} before the run could start; start it again "
                                "with the others") from None
        for conn in peers.values():  # let each peer close first: the port is free for JAX at once
            conn.settimeout(5)
            try:
                conn.recv(16)
            except OSError:
                pass
    finally:
        for conn in peers.values():
            conn.close()
        server.close()


def _hello(conn: socket.socket, n: int, peers: dict) -> int | None:
    """The process id a knocking peer says (``wse-join <id> <count>``); UserError when it contradicts this start."""
    conn.settimeout(5)
    try:
        words = conn.recv(64).decode("ascii", "replace").split()
    except OSError:
        conn.close()
        return None
    if len(words) != 3 or words[0] != "wse-join" or not words[1].isdigit() or not words[2].isdigit():
        conn.close()  # not one of ours (a port scanner, a stale client): ignore it
        return None
    pid, count = int(words[1]), int(words[2])
    if count != n or not 0 < pid < n or pid in peers:
        conn.sendall(b"refused\n")
        conn.close()
        why = (f"was started with {count} processes, process 0 with {n}" if count != n else
               f"claims process id {pid}, which {'is taken' if pid in peers else f'is outside 1..{n - 1}'}")
        raise UserError(f"a process that joined {n} processes {why}; give every process the same "
                        "mesh.num_processes and its own mesh.process_id")
    return pid


def _join(host: str, port: int, n: int, pid: int, deadline: float, address: str, timeout: float) -> None:
    state = {"since": time.monotonic(), "reached": False}
    while True:
        left = deadline - time.monotonic()
        if left <= 0 and state["reached"]:
            raise UserError(f"process {pid} of {n} reached process 0 at {address}, but not every process arrived "
                            f"within {timeout:g} s (process 0 names the missing ones); start them, or raise "
                            "mesh.start_timeout")
        if left <= 0:
            raise UserError(f"process {pid} of {n} could not join the coordinator (process 0) at {address} within "
                            f"{timeout:g} s: it is not running or not reachable; start it, check the address, or "
                            "raise mesh.start_timeout")
        _say_once(state, f"process {pid} of {n}: waiting up to {timeout:g} s for process 0 at {address}")
        try:
            with socket.create_connection((host, port), timeout=min(left, 1.0)) as conn:
                conn.sendall(f"wse-join {pid} {n}\n".encode("ascii"))
                state["reached"] = True
                conn.settimeout(max(deadline - time.monotonic(), 0.1))
                reply = conn.recv(16)
        except (OSError, socket.timeout):
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
            continue
        if reply.startswith(b"go"):
            return
        if reply.startswith(b"refused"):
            raise UserError(f"process 0 at {address} refused process {pid} of {n}: give every process the same "
                            "mesh.num_processes and its own mesh.process_id")
        time.sleep(0.2)  # the coordinator went away mid-answer: knock again
