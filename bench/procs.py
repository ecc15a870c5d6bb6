"""Process helpers: find a server's PID by its socket, read its memory, time CLI calls, kill."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence


class CommandFailed(Exception):
    pass


def listening_inodes(paths: Iterable[str]) -> dict[int, str]:
    """Inodes of listening AF_UNIX sockets bound to any of `paths` (from /proc/net/unix)."""
    wanted = {os.path.abspath(p) for p in paths}
    found: dict[int, str] = {}
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            # Num RefCount Protocol Flags Type St Inode [Path]
            if len(parts) < 8:
                continue
            flags = int(parts[3], 16)
            if parts[7] in wanted and flags & 0x10000:  # __SO_ACCEPTCON: listening
                found[int(parts[6])] = parts[7]
    return found


def pids_holding_sockets(inodes: Iterable[int]) -> list[int]:
    """PIDs of processes with an fd on any of the given socket inodes."""
    targets = {f"socket:[{i}]" for i in inodes}
    if not targets:
        return []
    pids: list[int] = []
    for name in os.listdir("/proc"):
        if name.isdigit() and any(link in targets for _path, link in _fd_links(int(name))):
            pids.append(int(name))
    return sorted(pids)


def pids_listening_on(paths: Iterable[str]) -> list[int]:
    return pids_holding_sockets(listening_inodes(paths))


def pids_by_cmdline(*needles: str) -> list[int]:
    """PIDs whose command line contains every needle (fallback when the socket is not visible)."""
    pids: list[int] = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmd for n in needles):
            pids.append(int(name))
    return sorted(pids)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def memory_kib(pids: Iterable[int]) -> tuple[int, int]:
    """Summed (RSS, PSS) in KiB of the given processes, from /proc/PID/smaps_rollup."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


def rss_kib_fast(pids: Iterable[int]) -> int:
    """Summed RSS in KiB from /proc/PID/statm (cheap enough to sample every few ms)."""
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page_kib
        except OSError:
            continue
    return total


def hwm_kib(pid: int) -> int | None:
    """Peak RSS (VmHWM) of a process over its life, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _fd_links(pid: int) -> Iterator[tuple[str, str]]:
    """(/proc path, what it links to) for each fd of ``pid`` still there to read."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return
    for fd in fds:
        path = f"{fd_dir}/{fd}"
        try:
            yield path, os.readlink(path)
        except OSError:
            continue


def memfd_kib(pids: Iterable[int]) -> int:
    """KiB allocated to the memfds the given processes hold open (each file counted once).

    Not in anyone's RSS unless mapped: tmuxish's keeper holds every session's state and screen
    snapshot (history included) as memfds it never maps, so RSS alone leaves them out.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    for pid in pids:
        for path, link in _fd_links(pid):
            if not link.startswith("/memfd:"):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total // 1024


#: Longer than tmuxish's screen snapshot round (server/screen_snapshots.py INTERVAL, 2 s): a
#: round reads histories back into memory for ~0.5 s, so a shorter quiet period can end
#: between two rounds while sessions still wait for their first snapshot.
QUIET_S = 2.5


def settle_memory(
    pids: Sequence[int], deadline_s: float = 30.0, quiet_s: float = QUIET_S
) -> tuple[int, int, int, bool]:
    """Wait until the RSS of pids has not changed for `quiet_s` (sampled every 50 ms), then
    measure: (RSS, PSS, memfd KiB, settled). Not a few samples: tmuxish compresses a session's
    cold history 0.5 s after its output stops (server/session.py COMPACT_IDLE), and the memory
    a session holds at rest is what is measured. settled is False if RSS still moved at the
    deadline (the number is then a sample of a moving value, and the report says so)."""
    deadline = time.monotonic() + deadline_s
    last = -1
    changed = time.monotonic()
    settled = False
    while time.monotonic() < deadline:
        cur = rss_kib_fast(pids)
        now = time.monotonic()
        if cur != last:
            last, changed = cur, now
        elif now - changed >= quiet_s:
            settled = True
            break
        # Polling interval of a condition wait (memory has no change notification).
        select.select([], [], [], 0.05)
    rss, pss = memory_kib(pids)
    return rss, pss, memfd_kib(pids), settled


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float = 30.0,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    try:
        cp = subprocess.run(
            list(argv),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            env=dict(env),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise CommandFailed(f"{' '.join(argv)}: timed out after {timeout}s") from e
    except OSError as e:
        raise CommandFailed(f"{' '.join(argv)}: {e}") from e
    if check and cp.returncode != 0:
        err = (cp.stderr or cp.stdout).decode(errors="replace").strip()
        raise CommandFailed(f"{' '.join(argv)}: exit {cp.returncode}: {err[:300]}")
    return cp


def timed_run(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float = 30.0,
    input: bytes | None = None,
    check: bool = True,
) -> int:
    """Wall time in ns of one CLI call (spawn to exit, output collected)."""
    t0 = time.perf_counter_ns()
    run(argv, env, timeout=timeout, input=input, check=check)
    return time.perf_counter_ns() - t0


def wait_pids_exit(pids: Iterable[int], deadline_s: float) -> list[int]:
    """Wait (pidfd poll) for processes (not necessarily our children); return those still alive."""
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except OSError:
            continue
    try:
        deadline = time.monotonic() + deadline_s
        pending = dict(fds)
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLIN)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ev in poller.poll(int(left * 1000) + 1):
                if pending.pop(fd, None) is not None:
                    poller.unregister(fd)
            # zombies of our own children count as gone
            for fd, pid in list(pending.items()):
                if not alive(pid):
                    pending.pop(fd)
                    poller.unregister(fd)
        return sorted(pending.values())
    finally:
        for fd in fds:
            os.close(fd)


def kill_pids(pids: Iterable[int], grace_s: float = 3.0) -> None:
    """SIGTERM, wait with a deadline, then SIGKILL what is left."""
    pids = [p for p in pids if p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    left = wait_pids_exit(pids, grace_s)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_pids_exit(left, 2.0)
