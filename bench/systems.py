"""One adapter per multiplexer: start detached sessions, attach argv, detach keys, PIDs, cleanup.

Every adapter instance owns a private directory in /tmp (short path: AF_UNIX
paths are limited to ~107 bytes) holding its socket(s), so a run never touches
the user's own tmux/screen/tmuxish servers. `cleanup()` kills everything the
instance started and is also run at exit for any instance still alive.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from procs import (
    CommandFailed,
    kill_pids,
    pids_by_cmdline,
    pids_listening_on,
    run,
)

ALL_SYSTEMS = ("raw", "tmuxish", "tmuxish-noscreen", "tmux", "screen", "dtach")

_LIVE: set[System] = set()
_LIVE_LOCK = threading.Lock()


class Unavailable(Exception):
    """The system cannot be measured (not installed, or not working yet)."""


def _python_shebang(path: str) -> bool:
    with contextlib.suppress(OSError, UnicodeDecodeError), open(path, "rb") as f:
        first = f.readline().decode().strip()
        if first.startswith("#!"):
            return os.path.basename(first[2:].strip().split()[0]).startswith("python")
    return False


_EXE: dict[str, str] = {}


def use_tmuxish_exe(path: str) -> None:
    """Time this entry script instead of the `tmuxish` on PATH (a normal install, --cli-exe)."""
    _EXE["exe"] = path


def tmuxish_exe() -> str:
    """The tmuxish entry script itself: not a pyenv shim in front of it.

    A pyenv shim is a bash script that runs `pyenv exec` (~90 ms measured here); the user of a
    venv or a pip install does not pay it, and the `python -c pass` baseline does not either.
    """
    if "exe" not in _EXE:
        found = shutil.which("tmuxish") or "tmuxish"
        if os.path.exists(found) and not _python_shebang(found) and shutil.which("pyenv"):
            with contextlib.suppress(CommandFailed):
                cp = run(["pyenv", "which", "tmuxish"], dict(os.environ), timeout=10)
                real = cp.stdout.decode(errors="replace").strip()
                if real and _python_shebang(real):
                    found = real
        _EXE["exe"] = found
    return _EXE["exe"]


def client_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("TMUX", "TMUX_PANE", "STY", "WINDOW", "TMUXISH_SOCKET"):
        env.pop(var, None)
    env["TERM"] = "xterm-256color"
    env["LC_ALL"] = "C.UTF-8"
    return env


def poll_until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait for a condition that has no notification (a file appearing), with a deadline."""
    deadline = time.monotonic() + timeout_s
    interval = 0.001
    while not pred():
        if time.monotonic() > deadline:
            raise CommandFailed(f"timed out waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 2, 0.02)


class System:
    """Base adapter. Subclasses fill in the CLI specifics."""

    name = "?"
    binary: str | None = None
    attachable = True
    detach_keys = b""
    # The Python API, if the system has one (tmuxish).
    has_api = False

    def api_new_sessions(self, python: str, script: str, n: int) -> None:
        """Create ``n`` sessions through the system's Python API (only if ``has_api``)."""
        raise NotImplementedError

    def __init__(self, cols: int = 80, rows: int = 24, history: int | None = None) -> None:
        if self.binary is not None and shutil.which(self.binary) is None:
            raise Unavailable(f"{self.binary} is not installed")
        self.cols = cols
        self.rows = rows
        self.history = history
        self.env = client_env()
        self.dir = tempfile.mkdtemp(prefix=f"tb{self.name[:3]}", dir="/tmp")
        self._ids = itertools.count(1)
        self._closed = False
        with _LIVE_LOCK:
            _LIVE.add(self)

    # -- sessions --------------------------------------------------------------
    def new_session(self, script: str) -> str:
        """Start `sh -c script` in a new detached session; return its id for attach."""
        raise NotImplementedError

    def new_sessions(self, script: str, n: int, workers: int = 4) -> list[str]:
        """Create n sessions as fast as the CLI allows (not timed: used to fill memory tests)."""
        if n <= 0:
            return []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda _i: self.new_session(script), range(n)))

    def attach_argv(self, sid: str) -> list[str]:
        raise NotImplementedError

    def server_pids(self) -> list[int]:
        raise NotImplementedError

    def count_sessions(self) -> int:
        raise NotImplementedError

    def cli(self, op: str, sid: str) -> tuple[list[str], bytes | None] | None:
        """argv (+stdin) for a CLI op (ls, kill, send, capture, wait: for a program that has
        exited, run: `true` in a bash session); None if the system has none."""
        return None

    # -- teardown ----------------------------------------------------------------
    def _stop(self) -> None:
        kill_pids(self.server_pids())

    def cleanup(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def __enter__(self) -> System:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class Raw(System):
    """The workload straight on the bench's PTY: the baseline. Nothing to start or attach."""

    name = "raw"
    attachable = False

    def server_pids(self) -> list[int]:
        return []


class Tmux(System):
    name = "tmux"
    binary = "tmux"
    detach_keys = b"\x02d"  # C-b d

    def __init__(self, cols: int = 80, rows: int = 24, history: int | None = None) -> None:
        super().__init__(cols, rows, history)
        self.sock = os.path.join(self.dir, "s")
        self.conf = os.path.join(self.dir, "conf")
        # No user config. Status line off so the pane is the same 80x24 as every other system;
        # assume-paste-time 0: tmux would otherwise treat keys that arrive within 1 ms of the
        # previous ones as a paste and skip key bindings (C-b d would reach the pane).
        lines = ["set -g status off", "set -g assume-paste-time 0"]
        if history is not None:
            lines.append(f"set -g history-limit {history}")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._pid: int | None = None

    def _base(self) -> list[str]:
        return ["tmux", "-S", self.sock, "-f", self.conf]

    def _new_args(self, script: str) -> tuple[str, list[str]]:
        sid = f"s{next(self._ids)}"
        args = ["new-session", "-d", "-s", sid, "-x", str(self.cols), "-y", str(self.rows)]
        return sid, [*args, "sh", "-c", script]

    def new_session(self, script: str) -> str:
        sid, args = self._new_args(script)
        run([*self._base(), *args], self.env)
        return sid

    def new_sessions(self, script: str, n: int, workers: int = 4) -> list[str]:
        sids: list[str] = []
        while len(sids) < n:
            argv = self._base()
            for _ in range(min(50, n - len(sids))):
                sid, args = self._new_args(script)
                if len(argv) > 5:
                    argv.append(";")
                argv += args
                sids.append(sid)
            run(argv, self.env, timeout=120)
        return sids

    def attach_argv(self, sid: str) -> list[str]:
        return ["tmux", "-S", self.sock, "attach-session", "-t", sid]

    def server_pids(self) -> list[int]:
        if self._pid is not None and os.path.exists(f"/proc/{self._pid}"):
            return [self._pid]
        pids = pids_listening_on([self.sock])
        if not pids and os.path.exists(self.sock):
            with contextlib.suppress(CommandFailed, ValueError):
                cp = run(["tmux", "-S", self.sock, "display-message", "-p", "#{pid}"], self.env)
                pids = [int(cp.stdout.strip())]
        if pids:
            self._pid = pids[0]
        return pids

    def count_sessions(self) -> int:
        cp = run(["tmux", "-S", self.sock, "list-sessions", "-F", "#{session_name}"], self.env)
        return len(cp.stdout.splitlines())

    def cli(self, op: str, sid: str) -> tuple[list[str], bytes | None] | None:
        t = ["tmux", "-S", self.sock]
        return {
            "ls": ([*t, "ls"], None),
            "kill": ([*t, "kill-session", "-t", sid], None),
            "send": ([*t, "send-keys", "-t", sid, "-l", "hello"], None),
            "capture": ([*t, "capture-pane", "-p", "-t", sid], None),
        }.get(op)

    def _stop(self) -> None:
        pids = self.server_pids() if os.path.exists(self.sock) else []
        with contextlib.suppress(CommandFailed):
            run(["tmux", "-S", self.sock, "kill-server"], self.env, timeout=20, check=False)
        kill_pids(pids)


class Screen(System):
    name = "screen"
    binary = "screen"
    detach_keys = b"\x01d"  # C-a d

    def __init__(self, cols: int = 80, rows: int = 24, history: int | None = None) -> None:
        super().__init__(cols, rows, history)
        self.screendir = os.path.join(self.dir, "S")
        os.mkdir(self.screendir, 0o700)
        self.rc = os.path.join(self.dir, "screenrc")  # empty: no user config
        open(self.rc, "w").close()
        self.env["SCREENDIR"] = self.screendir

    def _sockets(self) -> list[str]:
        try:
            return os.listdir(self.screendir)
        except FileNotFoundError:
            return []

    def new_session(self, script: str) -> str:
        name = f"s{next(self._ids)}"
        argv = ["screen", "-c", self.rc, "-S", name, "-d", "-m"]
        if self.history is not None:
            argv += ["-h", str(self.history)]
        run([*argv, "sh", "-c", script], self.env)
        found: list[str] = []

        def ready() -> bool:
            found[:] = [s for s in self._sockets() if s.split(".", 1)[1:] == [name]]
            return bool(found)

        poll_until(ready, 10.0, f"screen socket for {name}")
        return found[0]  # "PID.name": unambiguous, unlike a bare name prefix

    def attach_argv(self, sid: str) -> list[str]:
        return ["screen", "-r", sid]

    def server_pids(self) -> list[int]:
        pids = []
        for s in self._sockets():
            head = s.split(".", 1)[0]
            if head.isdigit() and os.path.exists(f"/proc/{head}"):
                pids.append(int(head))
        return sorted(pids)

    def count_sessions(self) -> int:
        return len(self.server_pids())

    def cli(self, op: str, sid: str) -> tuple[list[str], bytes | None] | None:
        hard = os.path.join(self.dir, "hardcopy")
        return {
            "ls": (["screen", "-ls"], None),
            "kill": (["screen", "-S", sid, "-X", "quit"], None),
            "send": (["screen", "-S", sid, "-X", "stuff", "hello"], None),
            "capture": (["screen", "-S", sid, "-X", "hardcopy", hard], None),
        }.get(op)


class Dtach(System):
    name = "dtach"
    binary = "dtach"
    detach_keys = b"\x1c"  # ^\

    def _socks(self) -> list[str]:
        return [os.path.join(self.dir, s) for s in os.listdir(self.dir) if s.startswith("d")]

    def new_session(self, script: str) -> str:
        sock = os.path.join(self.dir, f"d{next(self._ids)}")
        run(["dtach", "-n", sock, "sh", "-c", script], self.env)
        poll_until(lambda: os.path.exists(sock), 10.0, f"dtach socket {sock}")
        return sock

    def attach_argv(self, sid: str) -> list[str]:
        # winch: on attach the program gets SIGWINCH and may redraw (dtach keeps no screen).
        return ["dtach", "-a", sid, "-r", "winch"]

    def server_pids(self) -> list[int]:
        return pids_listening_on(self._socks())

    def count_sessions(self) -> int:
        return len(self.server_pids())

    def cli(self, op: str, sid: str) -> tuple[list[str], bytes | None] | None:
        if op == "send":
            return (["dtach", "-p", sid], b"hello")
        return None  # dtach has no ls, kill or capture


class Tmuxish(System):
    name = "tmuxish"
    binary = None  # the entry script chosen by tmuxish_exe(), which need not be on PATH
    detach_keys = b"\x10\x11"  # Ctrl-P Ctrl-Q

    def __init__(self, cols: int = 80, rows: int = 24, history: int | None = None) -> None:
        if shutil.which(tmuxish_exe()) is None:
            raise Unavailable(f"{tmuxish_exe()} is not installed")
        super().__init__(cols, rows, history)
        self.sock = os.path.join(self.dir, "s")

    def _t(self) -> list[str]:
        return [tmuxish_exe(), "-S", self.sock]

    def new_session(self, script: str) -> str:
        argv = [*self._t(), "new", "-d", "-x", str(self.cols), "-y", str(self.rows)]
        cp = run([*argv, "--", "sh", "-c", script], self.env, timeout=30)
        out = cp.stdout.decode(errors="replace").strip().splitlines()
        if not out or not out[-1].strip():
            raise CommandFailed("tmuxish new printed no session id")
        return out[-1].strip()

    def attach_argv(self, sid: str) -> list[str]:
        return [*self._t(), "attach", sid]

    has_api = True

    def api_new_sessions(self, python: str, script: str, n: int) -> None:
        """Create ``n`` sessions from one Python process through ``tmuxish.SyncClient``: what a
        script using the API pays, interpreter start and imports included."""
        code = (
            "import sys\n"
            "from tmuxish import SyncClient\n"
            "with SyncClient(sys.argv[1]) as c:\n"
            "    for _ in range(int(sys.argv[2])):\n"
            "        c.new(['sh', '-c', sys.argv[3]],\n"
            "              cols=int(sys.argv[4]), rows=int(sys.argv[5]))\n"
        )
        argv = [python, "-c", code, self.sock, str(n), script, str(self.cols), str(self.rows)]
        run(argv, self.env, timeout=120)

    def server_pids(self) -> list[int]:
        return pids_listening_on([self.sock]) or pids_by_cmdline("tmuxish", self.sock)

    def count_sessions(self) -> int:
        cp = run([*self._t(), "ls", "--json"], self.env)
        data = json.loads(cp.stdout or b"[]")
        if isinstance(data, dict):
            data = data.get("sessions", [])
        return len(data)

    def cli(self, op: str, sid: str) -> tuple[list[str], bytes | None] | None:
        t = self._t()
        return {
            "ls": ([*t, "ls"], None),
            "kill": ([*t, "kill", sid], None),
            "send": ([*t, "send", sid, "hello"], None),
            "capture": ([*t, "capture", sid], None),
            "wait": ([*t, "wait", sid], None),
            "run": ([*t, "run", "-t", sid, "--", "true"], None),
        }.get(op)

    def _stop(self) -> None:
        pids = self.server_pids()
        if os.path.exists(self.sock):
            with contextlib.suppress(CommandFailed):
                run([*self._t(), "kill-server"], self.env, timeout=20, check=False)
        kill_pids(pids)


class TmuxishNoScreen(Tmuxish):
    """tmuxish with its screen model off (TMUXISH_NO_SCREEN=1 reaches the autostarted server):
    the pass-through cost alone, so tmuxish / this is what the emulator costs (issue 3)."""

    name = "tmuxish-noscreen"
    has_api = False

    def __init__(self, cols: int = 80, rows: int = 24, history: int | None = None) -> None:
        super().__init__(cols, rows, history)
        self.env["TMUXISH_NO_SCREEN"] = "1"

    def cli(self, op: str, sid: str) -> tuple[list[str], bytes | None] | None:
        # No screen model, nothing to capture: the call would fail by design.
        return None if op == "capture" else super().cli(op, sid)


ADAPTERS: dict[str, type[System]] = {
    "raw": Raw,
    "tmux": Tmux,
    "screen": Screen,
    "dtach": Dtach,
    "tmuxish": Tmuxish,
    "tmuxish-noscreen": TmuxishNoScreen,
}


def make(name: str, cols: int = 80, rows: int = 24, history: int | None = None) -> System:
    return ADAPTERS[name](cols, rows, history)


def cleanup_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for s in live:
        with contextlib.suppress(Exception):
            s.cleanup()


def install_signal_cleanup() -> None:
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def versions(names: Sequence[str]) -> dict[str, str]:
    cmds = {
        "tmux": ["tmux", "-V"],
        "screen": ["screen", "-v"],
        "tmuxish": [tmuxish_exe(), "--version"],
        "tmuxish-noscreen": [tmuxish_exe(), "--version"],
    }
    out: dict[str, str] = {}
    for n in names:
        if n == "dtach":
            out[n] = "dtach (version from --help)"
            with contextlib.suppress(Exception):
                cp = run(["dtach", "--help"], client_env(), timeout=5, check=False)
                first = cp.stdout.decode(errors="replace").splitlines()[0]
                out[n] = first.replace(" - version", "")
        elif n in cmds and shutil.which(cmds[n][0]):
            with contextlib.suppress(Exception):
                cp = run(cmds[n], client_env(), timeout=10, check=False)
                txt = (cp.stdout or cp.stderr).decode(errors="replace").strip().splitlines()
                out[n] = txt[0] if txt else "?"
    return out
