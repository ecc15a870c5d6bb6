"""Fixtures for tests against real OCI runtimes (runc, crun) with a busybox rootfs.

What is here, for raw tests and for end-to-end tests through the tmuxish CLI:

- ``runtime`` (parametrized runc/crun) and ``runtime_factory(name)``: a :class:`Runtime` that is
  known to run containers here (probed once per session), else the test is skipped with the
  reason. ``Runtime.argv(...)`` is the full command line, including the private-mount-namespace
  wrapper crun needs on hybrid cgroup hosts; ``Runtime.executable()`` is a one-word wrapper
  script for code that takes a runtime *program* (``tmuxish new --runtime``).
- ``bundle_factory(args, ...)``: an OCI bundle (busybox rootfs + config.json) in a tmp dir.
- ``containers``: hands out unique container ids and force-deletes them at teardown.
- ``console_dir``: a short private dir for sockets (AF_UNIX paths are limited to ~107 bytes).
- ``catcher_factory``: a ConsoleSocketListener on its own event-loop thread, for sync tests;
  ``loop_factory`` runs a test under asyncio and uvloop.
- ``subreaper`` (:func:`start_subreaped`): runs ``runtime run -d`` under a child-subreaper helper
  process, so the container's init becomes that helper's child and its real exit status can be
  waited for.
- ``read_until``: read a PTY master until a marker shows up, with a deadline.

Helpers are offered as fixtures because conftest modules are not importable under
``--import-mode=importlib``; tests that need them should live under tests/containers/.

Why crun needs a wrapper (Debian crun 1.8.1): on a host with cgroup v1 controllers plus a cgroup2
mount at /sys/fs/cgroup/unified that holds controllers (here: hugetlb), crun detects "hybrid"
mode and refuses with "cgroups in hybrid mode not supported, drop all controllers from cgroupv2".
Mounting a pure cgroup2 at /sys/fs/cgroup does not help (crun then needs eBPF device control and
fails on RLIMIT_MEMLOCK). What works: unmount /sys/fs/cgroup/unified in a private mount namespace,
so crun sees plain cgroup v1 ("legacy"), and exec crun there. The container cgroups it creates
are ordinary v1 cgroups visible from the host, and kill/delete also work without the wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import select
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tmuxish.server.console_socket import ConsoleSocketListener, ReceivedConsole

BUSYBOX = "/bin/busybox"
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_UNIFIED = "/sys/fs/cgroup/unified"
RUNTIME_NAMES = ("runc", "crun")
COMMAND_TIMEOUT = 20.0

# Runs argv in a private mount namespace without the hybrid cgroup2 mount, then execs it.
# "$0" is the runtime binary: sh -c's first operand after the script.
_PRIVATE_CGROUP_SCRIPT = f'umount {CGROUP_UNIFIED} && exec "$0" "$@"'
PRIVATE_CGROUP_PREFIX: tuple[str, ...] = (
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--",
    "sh",
    "-c",
    _PRIVATE_CGROUP_SCRIPT,
)


# --- host facts -------------------------------------------------------------------------------


def _mount_fstypes() -> dict[str, str]:
    """Mount point -> fs type of the topmost mount there (later mountinfo lines win)."""
    types: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            if len(fields) >= 5 and post:
                types[fields[4].replace("\\040", " ")] = post.split()[0]
    return types


def cgroup_layout() -> str:
    """ "unified", "hybrid" or "legacy", decided the way crun decides it."""
    types = _mount_fstypes()
    root = types.get(CGROUP_ROOT)
    if root == "cgroup2":
        return "unified"
    if types.get(CGROUP_UNIFIED) == "cgroup2":
        return "hybrid"
    return "legacy"


def crun_needs_private_cgroups() -> bool:
    """Whether crun must run with :data:`PRIVATE_CGROUP_PREFIX` on this host."""
    if cgroup_layout() != "hybrid":
        return False
    try:
        with open(os.path.join(CGROUP_UNIFIED, "cgroup.controllers")) as f:
            return bool(f.read().split())
    except OSError:
        return False


def _is_static_elf(path: str) -> bool:
    """True if ``path`` is an ELF executable without a PT_INTERP (needs no libc in the rootfs)."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    except OSError:
        return False
    if data[:4] != b"\x7fELF":
        return False
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        (phoff,) = struct.unpack_from(order + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
    else:
        (phoff,) = struct.unpack_from(order + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x2A)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            return False
        (p_type,) = struct.unpack_from(order + "I", data, off)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def runtime_prefix(name: str) -> list[str]:
    """The argv prefix that runs runtime ``name`` on this host (crun may need the wrapper)."""
    if name == "crun" and crun_needs_private_cgroups():
        return [*PRIVATE_CGROUP_PREFIX, name]
    return [name]


def runtime_skip_reason(name: str) -> str | None:
    """Why ``name`` cannot be tried here (static checks only), or None."""
    if not sys.platform.startswith("linux"):
        return "OCI runtimes need Linux"
    if os.geteuid() != 0:
        return f"{name} tests need root (rootless containers need a user-namespace config)"
    if shutil.which(name) is None:
        return f"{name} is not installed"
    if not _is_static_elf(BUSYBOX):
        return f"a static busybox is needed at {BUSYBOX} (Debian package busybox-static)"
    if name == "crun" and crun_needs_private_cgroups() and shutil.which("unshare") is None:
        return "crun needs unshare(1) to run on this hybrid cgroup host"
    return None


# --- bundles ----------------------------------------------------------------------------------

_applets: list[str] | None = None


def busybox_applets() -> list[str]:
    global _applets
    if _applets is None:
        out = subprocess.run(
            [BUSYBOX, "--list"], check=True, capture_output=True, text=True, timeout=10
        ).stdout
        _applets = [a for a in out.split() if a and "/" not in a and a != "busybox"]
    return _applets


def make_rootfs(rootfs: Path) -> None:
    """A tiny rootfs: static busybox with every applet linked into /bin."""
    bindir = rootfs / "bin"
    bindir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bindir / "busybox")
    for applet in busybox_applets():
        (bindir / applet).symlink_to("busybox")
    for d in ("proc", "sys", "dev", "tmp", "etc", "root"):
        (rootfs / d).mkdir(exist_ok=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")


def oci_config(
    args: Sequence[str],
    *,
    terminal: bool = True,
    env: Sequence[str] = ("PATH=/bin", "TERM=xterm", "HOME=/root"),
    cwd: str = "/",
    hostname: str = "tmuxish",
    readonly: bool = True,
) -> dict[str, Any]:
    """The config ``runc spec`` would write (runc 1.1), with ``args`` and ``terminal`` set."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": list(env),
            "cwd": cwd,
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": readonly},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=16m"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }


def make_bundle(directory: Path, args: Sequence[str], **config: Any) -> Path:
    """Create a bundle in ``directory`` (made if missing) running ``args``; return its path.

    Keyword arguments go to :func:`oci_config` (terminal, env, cwd, hostname, readonly).
    """
    directory.mkdir(parents=True, exist_ok=True)
    make_rootfs(directory / "rootfs")
    (directory / "config.json").write_text(json.dumps(oci_config(args, **config), indent=1))
    return directory


BundleFactory = Callable[..., Path]


@pytest.fixture
def bundle_factory(tmp_path_factory: pytest.TempPathFactory) -> BundleFactory:
    """``bundle_factory(["sh"], terminal=True, ...)`` -> a fresh bundle directory."""

    def factory(args: Sequence[str] = ("sh",), **config: Any) -> Path:
        return make_bundle(tmp_path_factory.mktemp("bundle"), args, **config)

    return factory


# --- runtimes ---------------------------------------------------------------------------------


@dataclass
class Runtime:
    """How to invoke one OCI runtime here."""

    name: str
    prefix: list[str]
    wrapper_dir: Path | None = None
    _wrapper: Path | None = field(default=None, repr=False)

    def argv(self, *args: str) -> list[str]:
        return [*self.prefix, *args]

    def run_detached_args(
        self, bundle: Path, container_id: str, console_socket: str, pid_file: str | None = None
    ) -> list[str]:
        """Arguments (no program) for ``run -d``, which returns once the container is started
        and its master was sent; ``--console-socket`` needs ``-d`` or create + start."""
        extra = ["--pid-file", pid_file] if pid_file else []
        return [
            "run",
            "-d",
            "--console-socket",
            console_socket,
            *extra,
            "--bundle",
            str(bundle),
            container_id,
        ]

    def run_detached_argv(
        self, bundle: Path, container_id: str, console_socket: str, pid_file: str | None = None
    ) -> list[str]:
        """The full command line for ``run -d``, wrapper included."""
        return self.argv(*self.run_detached_args(bundle, container_id, console_socket, pid_file))

    def run(
        self, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{shlex.join(self.argv(*args))} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def state(self, container_id: str) -> dict[str, Any] | None:
        proc = self.run("state", container_id, check=False)
        if proc.returncode != 0:
            return None
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def delete(self, container_id: str) -> None:
        """Kill and remove the container if it exists; never raises for a missing one."""
        self.run("delete", "-f", container_id, check=False)

    def executable(self) -> str:
        """A single program path that behaves like the runtime (the wrapper when one is needed)."""
        if self.prefix == [self.name]:
            found = shutil.which(self.name)
            assert found is not None
            return found
        if self._wrapper is None:
            assert self.wrapper_dir is not None
            path = self.wrapper_dir / f"{self.name}-wrapped"
            path.write_text(f'#!/bin/sh\nexec {shlex.join(self.prefix)} "$@"\n')
            path.chmod(0o755)
            self._wrapper = path
        return str(self._wrapper)


def probe_runtime(runtime: Runtime, workdir: Path) -> str | None:
    """Run a trivial container (no terminal); None if it worked, else why not."""
    bundle = make_bundle(workdir / f"probe-{runtime.name}", ["true"], terminal=False)
    cid = f"tmuxish-probe-{uuid.uuid4().hex[:10]}"
    try:
        proc = runtime.run("run", "--bundle", str(bundle), cid, check=False)
    except subprocess.TimeoutExpired:
        return f"{runtime.name} run hung for {COMMAND_TIMEOUT}s"
    finally:
        runtime.delete(cid)
    if proc.returncode != 0:
        return f"{runtime.name} cannot run containers here: {proc.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def runtime_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Runtime]:
    """``runtime_factory("crun")`` -> a working Runtime, or the test is skipped with the reason."""
    cache: dict[str, Runtime | str] = {}
    workdir = tmp_path_factory.mktemp("runtimes")

    def get(name: str) -> Runtime:
        if name not in cache:
            reason = runtime_skip_reason(name)
            if reason is None:
                rt = Runtime(name, runtime_prefix(name), wrapper_dir=workdir)
                reason = probe_runtime(rt, workdir)
                cache[name] = rt if reason is None else reason
            else:
                cache[name] = reason
        found = cache[name]
        if isinstance(found, str):
            pytest.skip(found)
        return found

    return get


@pytest.fixture(params=RUNTIME_NAMES)
def runtime(request: pytest.FixtureRequest, runtime_factory: Callable[[str], Runtime]) -> Runtime:
    name: str = request.param
    return runtime_factory(name)


class Containers:
    """Unique container ids, force-deleted at teardown."""

    def __init__(self) -> None:
        self._made: list[tuple[Runtime, str]] = []

    def new_id(self, runtime: Runtime, prefix: str = "tmuxish-test") -> str:
        cid = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self._made.append((runtime, cid))
        return cid

    def cleanup(self) -> list[str]:
        left: list[str] = []
        for rt, cid in reversed(self._made):
            rt.delete(cid)
            if rt.state(cid) is not None:
                left.append(f"{rt.name}:{cid}")
        self._made.clear()
        return left


@pytest.fixture
def containers() -> Iterator[Containers]:
    tracker = Containers()
    try:
        yield tracker
    finally:
        left = tracker.cleanup()
        assert not left, f"containers survived cleanup: {left}"


@pytest.fixture
def console_dir() -> Iterator[str]:
    """A short private (0700) directory for console sockets."""
    d = tempfile.mkdtemp(dir="/tmp", prefix="tx-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- receiving consoles from sync test code ---------------------------------------------------


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factories() -> list[Any]:
    """pytest params: asyncio, and uvloop when importable."""
    params: list[Any] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        params.append(
            pytest.param(None, id="uvloop", marks=pytest.mark.skip(reason="uvloop not installed"))
        )
    else:
        params.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return params


@pytest.fixture(params=loop_factories())
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    """Each test using it runs under plain asyncio and under uvloop."""
    factory: LoopFactory = request.param
    return factory


class ConsoleCatcher:
    """A ConsoleSocketListener running on its own event-loop thread; masters land in a queue."""

    def __init__(
        self,
        path: str,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
        *,
        persist: bool = False,
    ) -> None:
        self.path = path
        self._queue: queue.Queue[ReceivedConsole] = queue.Queue()
        self._taken: list[int] = []
        self._loop = loop_factory()
        self.listener = ConsoleSocketListener(path, self._queue.put, persist=persist)
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self.listener.start(self._loop)
            self._loop.call_soon(started.set)
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="console-catcher", daemon=True)
        self._thread.start()
        if not started.wait(5):
            raise AssertionError("console catcher loop did not start")

    def get(self, timeout: float = 5.0) -> ReceivedConsole:
        """The next master received; the caller owns its fd (closed by close() if still open)."""
        try:
            console = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no console arrived on {self.path} within {timeout}s") from None
        self._taken.append(console.fd)
        return console

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.listener.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
        while True:
            try:
                self._taken.append(self._queue.get_nowait().fd)
            except queue.Empty:
                break
        for fd in self._taken:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._taken.clear()


CatcherFactory = Callable[..., ConsoleCatcher]


@pytest.fixture
def catcher_factory(console_dir: str) -> Iterator[CatcherFactory]:
    """``catcher_factory(loop_factory=..., persist=...)``; all are closed at teardown."""
    made: list[ConsoleCatcher] = []

    def factory(
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
        *,
        persist: bool = False,
        name: str = "console.sock",
    ) -> ConsoleCatcher:
        catcher = ConsoleCatcher(os.path.join(console_dir, name), loop_factory, persist=persist)
        made.append(catcher)
        return catcher

    try:
        yield factory
    finally:
        for c in made:
            c.close()


# --- PTY and process helpers ------------------------------------------------------------------


def read_until(fd: int, marker: bytes, timeout: float = 5.0) -> bytes:
    """Read ``fd`` until ``marker`` appears; return everything read. EIO counts as the end."""
    deadline = time.monotonic() + timeout
    out = b""
    while marker not in out:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{marker!r} did not appear within {timeout}s; got {out!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            raise AssertionError(f"EOF before {marker!r}; got {out!r}")
        out += chunk
    return out


# A child subreaper: runs the runtime, then waits for the container init, which the kernel
# re-parents to us when `run -d` exits. Prints one JSON line once started and one at exit.
SUBREAPER_RUNNER = r"""
import ctypes, json, os, signal, subprocess, sys
PR_SET_CHILD_SUBREAPER = 36
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err))
pid_file, timeout, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the alarm kills us if the wait hangs
proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                      timeout=timeout)
if proc.returncode != 0:
    print(json.dumps({"runtime_rc": proc.returncode, "stderr": proc.stderr}), flush=True)
    sys.exit(1)
pid = int(open(pid_file).read().strip())
with open(f"/proc/{pid}/stat") as f:
    ppid = int(f.read().rpartition(")")[2].split()[1])
print(json.dumps({"runtime_rc": 0, "pid": pid, "ppid": ppid, "me": os.getpid()}), flush=True)
signal.alarm(int(timeout) + 1)
while True:
    wpid, status = os.waitpid(-1, 0)
    if wpid == pid:
        break
print(json.dumps({"status": status}), flush=True)
"""


class _LineReader:
    """Newline-delimited JSON from a helper's stdout, with deadlines."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self._proc = proc
        self._fd = proc.stdout.fileno()
        self._buf = b""

    def next(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"subreaper helper said nothing in {timeout}s: {self._buf!r}")
            if select.select([self._fd], [], [], left)[0]:
                chunk = os.read(self._fd, 4096)
                if not chunk:
                    rc = self._proc.wait(5)
                    raise AssertionError(f"subreaper helper exited {rc}: {self._buf!r}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        result: dict[str, Any] = json.loads(line)
        return result


@dataclass
class SubreapedRun:
    """A ``runtime run -d`` started under the subreaper helper."""

    proc: subprocess.Popen[bytes]
    reader: _LineReader
    started: dict[str, Any]

    @property
    def pid(self) -> int:
        value: int = self.started["pid"]
        return value

    def wait_exit(self, timeout: float = 10.0) -> int:
        """The container init's exit code as a shell reports it (128+N for signal N)."""
        status = int(self.reader.next(timeout)["status"])
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
        return os.waitstatus_to_exitcode(status)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_subreaped(
    runtime: Runtime,
    bundle: Path,
    container_id: str,
    console_socket: str,
    workdir: str,
    timeout: float = COMMAND_TIMEOUT,
) -> SubreapedRun:
    """Start the container under a subreaper helper; returns once it is running."""
    pid_file = os.path.join(workdir, f"{container_id}.pid")
    argv = runtime.run_detached_argv(bundle, container_id, console_socket, pid_file)
    proc = subprocess.Popen(
        [sys.executable, "-c", SUBREAPER_RUNNER, pid_file, str(timeout), *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    reader = _LineReader(proc)
    try:
        started = reader.next(timeout + 5)
        if started.get("runtime_rc") != 0:
            raise AssertionError(f"{runtime.name} run -d failed: {started}")
    except BaseException:
        proc.kill()
        proc.wait(5)
        assert proc.stdout is not None
        proc.stdout.close()
        raise
    return SubreapedRun(proc, reader, started)


@pytest.fixture
def subreaper(console_dir: str) -> Iterator[Callable[..., SubreapedRun]]:
    """``subreaper(runtime, bundle, container_id, console_socket)`` -> a started SubreapedRun.

    Helpers still running at teardown are killed (the containers themselves are the
    ``containers`` fixture's job).
    """
    runs: list[SubreapedRun] = []

    def start(
        runtime: Runtime, bundle: Path, container_id: str, console_socket: str
    ) -> SubreapedRun:
        run = start_subreaped(runtime, bundle, container_id, console_socket, console_dir)
        runs.append(run)
        return run

    try:
        yield start
    finally:
        for run in runs:
            run.stop()


@pytest.fixture(name="read_until")
def read_until_fixture() -> Callable[..., bytes]:
    """:func:`read_until` for test modules (conftest is not importable under importlib mode)."""
    return read_until
