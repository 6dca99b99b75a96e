"""A fault kit shared by `tests/` and `bench/`: find Ray's processes in /proc and SIGKILL them, lose a node of a
local cluster (`ray.cluster_utils.Cluster`) when a condition is met, and forge the images an attacker or a broken
disk would send (headers declaring huge sizes, truncated files).

Linux only (/proc). Nothing here starts Ray or imports torch.
"""
import io
import ipaddress
import os
import signal
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image

__all__ = [
    "cpu_seconds_by_process",
    "cpu_seconds_by_thread",
    "declaring",
    "image_bytes",
    "is_loopback",
    "kill_node_when",
    "listening_sockets",
    "node_processes",
    "processes",
    "serve_replicas",
    "sigkill",
    "train_workers",
    "descends_from",
    "truncate_file",
]


# --- processes ---

def processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, command line split at its NULs) of every live process this user may read; Ray titles its workers
    in the first word (`ray::ServeReplica:<app>:<deployment>`, `ray::RayTrainWorker...`)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone since the listing
            continue
        yield int(pid), raw.rstrip(b"\0").decode(errors="replace").split("\0")


def _rss_kb(pid: int) -> int | None:
    """Resident memory of `pid` in kB; None for a zombie (no VmRSS) or a process gone."""
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])
    except (OSError, IndexError):
        return None


def serve_replicas(app: str, deployment: str = "", ours: bool = True) -> dict[int, int]:
    """{pid: resident kB} of the live replicas of Serve application `app`'s `deployment` ("": all of them); with
    `ours`, only those this process's Ray started (as `train_workers`)."""
    me = os.getpid()
    out = {}
    for pid, argv in processes():
        if argv[0].startswith(f"ray::ServeReplica:{app}:{deployment}") and (not ours or descends_from(pid, me)) \
                and (kb := _rss_kb(pid)) is not None:
            out[pid] = kb
    return out


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether process `pid` is a descendant of `ancestor` (its parent, its parent's parent, ...)."""
    while pid is not None and pid > 1:
        pid = _parent(pid)
        if pid == ancestor:
            return True
    return False


def train_workers(ours: bool = True) -> list[int]:
    """The pids of the live Ray Train workers, ascending; with `ours`, only those this process's Ray started (its
    raylets are our children): another session's workers on the same machine are never taken for ours."""
    me = os.getpid()
    return sorted(pid for pid, argv in processes() if any("RayTrainWorker" in a for a in argv)
                  and (not ours or descends_from(pid, me)))


def _cpu_seconds(stat: str) -> float:
    """User + system CPU seconds from the text of a /proc/<pid>[/task/<tid>]/stat file."""
    fields = stat.rsplit(")", 1)[1].split()  # after the name, which may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_by_process() -> dict[tuple[str, str], float]:
    """CPU seconds so far (user + system) of every process on this machine, by (pid, name)."""
    out = {}
    for pid, argv in processes():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name = " ".join(argv).strip()[:70] or stat.split("(", 1)[1].rsplit(")", 1)[0]
        out[(str(pid), name)] = _cpu_seconds(stat)
    return out


def cpu_seconds_by_thread(pid: int) -> dict[int, float]:
    """CPU seconds so far (user + system) of every thread of `pid`, by thread id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = _cpu_seconds(Path(f"/proc/{pid}/task/{tid}/stat").read_text())
        except OSError:  # the thread ended since the listing
            continue
    return out


def _socket_owners() -> dict[str, int]:
    """{socket inode: pid} for the sockets of every process this user may read."""
    owners = {}
    for pid, _ in processes():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[target[8:-1]] = pid
    return owners


def _address(hex_addr: str) -> str:
    """/proc/net/tcp{,6}'s address field (32-bit words in host byte order) as text."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)


def listening_sockets() -> list[tuple[str, int, int | None]]:
    """(address, port, owner pid) of every listening TCP socket of this machine, IPv4 and IPv6, from
    /proc/net/tcp{,6}; the pid is None where the owner's descriptors cannot be read."""
    owners, out = _socket_owners(), []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:  # no IPv6 on this machine
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            addr, port = fields[1].split(":")
            out.append((_address(addr), int(port, 16), owners.get(fields[9])))
    return out


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 or an IPv4-mapped loopback address (`::ffff:127.0.0.1`)."""
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


def sigkill(pid: int, group: bool = False) -> None:
    """SIGKILL `pid` (its whole process group with `group`): a crash, not a graceful stop, so whatever it held in
    flight dies with it."""
    if group:
        os.killpg(pid, signal.SIGKILL)
    else:
        os.kill(pid, signal.SIGKILL)


# --- a node lost ---

def _raylet_pid(node) -> int:
    """The raylet's pid of `node` (a `ray._private.node.Node`, as `Cluster.add_node` returns it)."""
    return node.all_processes["raylet"][0].process.pid


def node_processes(node) -> dict[int, list[str]]:
    """{pid: command line} of the processes `node`'s raylet started (its workers, Train workers and Tune trials
    among them): on a local cluster every node shares this machine, so a node's own are the raylet's children."""
    raylet = _raylet_pid(node)
    return {pid: argv for pid, argv in processes() if _parent(pid) == raylet}


class NodeKiller(threading.Thread):
    """The thread `kill_node_when` starts; `result` holds what happened once it has ended (see there)."""

    def __init__(self, cluster, node, predicate: Callable[[], bool], timeout: float, poll: float,
                 on_kill: Callable[[], None] | None):
        super().__init__(daemon=True, name="kill-node-when")
        self.cluster, self.node, self.predicate = cluster, node, predicate
        self.timeout, self.poll, self.on_kill = timeout, poll, on_kill
        self.started_at = time.perf_counter()
        self.result: dict = {"killed": False}

    def run(self) -> None:
        deadline = self.started_at + self.timeout
        while True:
            try:
                met = bool(self.predicate())
            except (OSError, ValueError, KeyError) as e:  # a predicate reading files being written: try again
                self.result["predicate_error"] = repr(e)
                met = False
            if met or time.perf_counter() > deadline:
                break
            time.sleep(self.poll)
        if not met:
            self.result["waited_s"] = round(time.perf_counter() - self.started_at, 3)
            return
        node_id = self.node.node_id
        children = node_processes(self.node)
        killed_at, killed_time = time.perf_counter(), time.time()
        # SIGKILL to the raylet and the node's other daemons, then to whatever the raylet had started and is
        # still alive: the machine is gone, not shutting down
        self.cluster.remove_node(self.node, allow_graceful=False)
        for pid in children:
            try:
                sigkill(pid)
            except ProcessLookupError:
                pass
        done = time.perf_counter()
        self.result.update(killed=True, node_id=node_id, killed_at=killed_at, killed_time=killed_time,
                           remove_s=round(done - killed_at, 3),
                           waited_s=round(killed_at - self.started_at, 3),
                           processes=sorted(" ".join(argv)[:60] for argv in children.values()))
        if self.on_kill is not None:
            self.on_kill()

    def wait(self, timeout: float | None = None) -> dict:
        """Join the thread; its `result`."""
        self.join(timeout)
        return self.result


def kill_node_when(cluster, node, predicate: Callable[[], bool], timeout: float = 600.0, poll: float = 0.05,
                   on_kill: Callable[[], None] | None = None) -> NodeKiller:
    """In a thread, poll `predicate()` every `poll` s; once it is true, lose `node` of the local `cluster`
    (`ray.cluster_utils.Cluster`): `cluster.remove_node(node, allow_graceful=False)` SIGKILLs its raylet and
    daemons, then every process the raylet had started is SIGKILLed too. `on_kill()` runs right after (e.g. to
    free resources held elsewhere). Returns the started thread; `.wait()` gives its result: `killed` (False when
    `timeout` passed first), `node_id`, `waited_s` (from the call to the kill), `killed_at` (time.perf_counter()),
    `killed_time` (time.time()), `remove_s` (how long the removal took) and `processes` (the node's processes at
    the kill, titles cut short)."""
    killer = NodeKiller(cluster, node, predicate, timeout, poll, on_kill)
    killer.start()
    return killer


# --- forged images ---

def image_bytes(width: int = 40, height: int = 30, fmt: str = "PNG", color: tuple = (10, 200, 30)) -> bytes:
    """A plain image of one colour, encoded as `fmt` (PNG, JPEG, ...)."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format=fmt)
    return buf.getvalue()


def declaring(width: int, height: int, fmt: str = "PNG") -> bytes:
    """A small PNG or JPEG whose header claims width x height pixels: a decompression bomb's calling card.

    The PNG's IHDR CRC is recomputed, so only a size check can stop it; the JPEG's SOF0 frame header is
    rewritten."""
    data = bytearray(image_bytes(fmt=fmt))
    if fmt.upper() == "PNG":
        assert data[12:16] == b"IHDR"
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    else:
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def truncate_file(path: str | Path, keep: int = 200) -> None:
    """Cut the file at `path` to its first `keep` bytes, as an interrupted copy leaves it."""
    path = Path(path)
    path.write_bytes(path.read_bytes()[:keep])
