"""The measurements. Each function measures ONE system once and returns plain numbers.

Honesty rules kept here:
- every wait is on a condition (a marker in the output, a process exit, a file) with a deadline;
- throughput counts the bytes that actually arrived and checks them against what `cat` wrote;
- key echo is timed only when the typed character is visible in what came back;
- markers are printed by the workload, never typed, so the terminal's own local echo (before a
  client switches it to raw mode) cannot fake them.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from procs import (
    CommandFailed,
    hwm_kib,
    memory_kib,
    rss_kib_fast,
    settle_memory,
    timed_run,
)
from systems import System, client_env, make, poll_until
from termio import Terminal, TimedOut, deadline_in, now_ns, visible_text

MiB = 1 << 20


@dataclass
class Config:
    reps: int = 5
    size: int = 64 * MiB
    keys: int = 2000
    warm_keys: int = 20
    attach_samples: int = 5
    cli_samples: int = 7
    create_n: int = 100
    mem_counts: tuple[int, ...] = (1, 10, 100, 1000)
    hist_sessions: int = 10
    hist_lines: int = 5000
    flood_bytes: int = 100_000_000
    cols: int = 80
    rows: int = 24
    python: str = "python3"
    token: str = field(default_factory=lambda: os.urandom(4).hex())


# -- test data -------------------------------------------------------------------------


def make_text(size: int, sgr: bool, seed: int = 1) -> bytes:
    """Log-like lowercase text (lines of 1-18 words, some wider than 80 columns).

    With sgr=True every word carries its own SGR colour (16, 256 and true colour, bold,
    underline, backgrounds) and every line ends with a reset: dense escape sequences.
    Uppercase never occurs, so the bench's markers cannot appear in the data.
    """
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(500)]
    lines: list[str] = []
    total = 0
    while total < min(size, MiB):
        ws = [rng.choice(words) for _ in range(rng.randint(1, 18))]
        if sgr:
            out = []
            for w in ws:
                k = rng.randrange(6)
                if k == 0:
                    seq = f"\x1b[3{rng.randrange(8)}m"
                elif k == 1:
                    seq = f"\x1b[1;3{rng.randrange(8)}m"
                elif k == 2:
                    seq = f"\x1b[38;5;{rng.randrange(256)}m"
                elif k == 3:
                    r, g, b = (rng.randrange(256) for _ in range(3))
                    seq = f"\x1b[38;2;{r};{g};{b}m"
                elif k == 4:
                    seq = f"\x1b[4;48;5;{rng.randrange(256)}m"
                else:
                    seq = "\x1b[0m"
                out.append(seq + w)
            line = " ".join(out) + "\x1b[0m\n"
        else:
            line = " ".join(ws) + "\n"
        lines.append(line)
        total += len(line)
    block = "".join(lines).encode()
    data = block * (size // len(block)) + block[: size % len(block)]
    cut = data.rfind(b"\n") + 1
    return data[:cut] if cut else data + b"\n"


# -- workload scripts (all `sh -c`; markers built from a per-run token) -----------------


def _m(name: str, cfg: Config) -> str:
    return f"{name}_{cfg.token}"


def _handshake_prefix(cfg: Config) -> str:
    # Wait for a first line (the bench types \r until READY shows: this proves the attach
    # path carries input and output), then swallow extra \r until the go line "g".
    return (
        "stty -echo; IFS= read -r _; "
        f"printf '%s\\n' {_m('READY', cfg)}; "
        'while IFS= read -r l; do [ "$l" = g ] && break; done; '
    )


def throughput_script(path: str, cfg: Config) -> str:
    return (
        _handshake_prefix(cfg)
        + f"printf '%s\\n' {_m('START', cfg)}; cat {shlex.quote(path)}; "
        + f"printf '\\033[0m\\033[2K\\r%s\\n' {_m('END', cfg)}; exec sleep 100000"
    )


def latency_script(cfg: Config) -> str:
    return _handshake_prefix(cfg) + f"stty raw -echo; printf '%s' {_m('GO', cfg)}; exec cat"


def attach_script(cfg: Config) -> str:
    # Prints the marker at start and again on SIGWINCH (dtach keeps no screen: it can only ask
    # the program to redraw). `wait` returns early on a trapped signal.
    return (
        f"mark() {{ printf '\\r\\033[2K%s' {_m('MARK', cfg)}; }}; trap mark WINCH; mark; "
        "while :; do sleep 100000 & wait $!; kill $! 2>/dev/null; done"
    )


def repaint_script() -> str:
    return "stty -echo; while IFS= read -r l; do printf 'SHOWN_%s\\n' \"$l\"; done"


IDLE_SCRIPT = "exec sleep 100000"


def history_script(cfg: Config, done_dir: str) -> str:
    return (
        f"seq -f 'history line %05g the quick brown fox jumps over the lazy dog 0123456' "
        f"{cfg.hist_lines}; mktemp -p {shlex.quote(done_dir)} >/dev/null; exec sleep 100000"
    )


def flood_script(cfg: Config, done_file: str) -> str:
    return (
        f"yes 'flood line: the quick brown fox jumps over the lazy dog 0123456789' "
        f"| head -c {cfg.flood_bytes}; touch {shlex.quote(done_file)}; exec sleep 100000"
    )


# -- helpers -----------------------------------------------------------------------------


@contextlib.contextmanager
def workload(name: str, script: str, cfg: Config) -> Iterator[Terminal]:
    """The workload shown on the bench's terminal: directly (raw) or via an attached client."""
    if name == "raw":
        with Terminal(["sh", "-c", script], client_env(), cfg.cols, cfg.rows) as term:
            yield term
        return
    with make(name, cfg.cols, cfg.rows) as system:
        sid = system.new_session(script)
        with Terminal(system.attach_argv(sid), system.env, cfg.cols, cfg.rows) as term:
            yield term


def type_until(term: Terminal, keys: bytes, marker: bytes, timeout_s: float) -> None:
    """Type `keys` every 250 ms until `marker` shows (the client may still be connecting)."""
    deadline = deadline_in(timeout_s)
    start = len(term.buf)
    while True:
        term.write(keys)
        try:
            term.wait_for(marker, min(deadline, deadline_in(0.25)), start)
            return
        except TimedOut:
            if term.exit_status is not None or now_ns() > deadline:
                raise


def wait_raw_mode(term: Terminal, timeout_s: float = 5.0) -> None:
    """The attached client must have put the terminal in raw mode (no local echo)."""
    deadline = deadline_in(timeout_s)
    while not term.echo_is_off():
        if now_ns() > deadline:
            raise TimedOut("terminal still echoes: client never set raw mode")
        term.pump(5)


# -- 1. throughput -------------------------------------------------------------------------


def throughput(name: str, path: str, payload: int, expected: bytes, cfg: Config) -> dict[str, Any]:
    """cat `path` through an attached client; MB/s of payload, bytes delivered, exactness."""
    with workload(name, throughput_script(path, cfg), cfg) as term:
        type_until(term, b"\r", _m("READY", cfg).encode(), 30)
        wait_raw_mode(term)
        mark = len(term.buf)
        t0 = now_ns()
        term.write(b"g\r")
        deadline = deadline_in(30 + payload / (0.5 * MiB))
        end = _m("END", cfg).encode()
        t1 = term.wait_for(end, deadline, mark)
        region = memoryview(term.buf)[mark:]
        end_at = term.find(end, mark) - mark + len(end)
        start_line = _m("START", cfg).encode() + b"\r\n"
        end_seq = b"\x1b[0m\x1b[2K\r" + end
        s = term.find(start_line, mark)
        e = term.find(end_seq, mark)
        # Byte-exact: what arrived between the markers is what cat wrote (with the PTY's \r\n).
        exact = s >= 0 and e >= 0 and region[s - mark + len(start_line) : e - mark] == expected
        region.release()
    secs = (t1 - t0) / 1e9
    return {
        "mbps": payload / secs / 1e6,
        "seconds": secs,
        "delivered": end_at,
        # 1.0 = every byte a plain PTY would show (markers included)
        "delivered_frac": end_at / (len(start_line) + len(expected) + len(end_seq)),
        "exact": bool(exact),
    }


# -- 2. key echo latency ---------------------------------------------------------------------


def key_latency(name: str, cfg: Config) -> dict[str, Any]:
    alphabet = b"abcdefghijklmnopqrstuvwxyz"
    with workload(name, latency_script(cfg), cfg) as term:
        type_until(term, b"\r", _m("READY", cfg).encode(), 30)
        wait_raw_mode(term)
        mark = len(term.buf)
        term.write(b"g\r")
        term.wait_for(_m("GO", cfg).encode(), deadline_in(10), mark)
        fd = term.master
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        lat: list[int] = []
        unclean = 0
        carry = b""
        for i in range(cfg.warm_keys + cfg.keys):
            key = alphabet[i % 26 : i % 26 + 1]
            acc = carry
            t0 = time.perf_counter_ns()
            os.write(fd, key)
            while True:
                if not poller.poll(5000):
                    raise TimedOut(f"no echo of key {i} ({key!r}) within 5 s")
                acc += os.read(fd, 65536)
                t1 = time.perf_counter_ns()
                vis, carry = visible_text(acc)
                if key in vis:
                    break
            if i >= cfg.warm_keys:
                lat.append(t1 - t0)
                if vis != key:
                    unclean += 1
    lat.sort()
    n = len(lat)
    return {
        "p50_us": lat[n // 2] / 1e3,
        "p99_us": lat[min(n - 1, (n * 99) // 100)] / 1e3,
        "max_us": lat[-1] / 1e3,
        "unclean": unclean,
    }


# -- 3. attach / detach ------------------------------------------------------------------------


def attach_detach(name: str, cfg: Config) -> dict[str, Any]:
    marker = _m("MARK", cfg).encode()
    attach: list[int] = []
    detach: list[int] = []
    notes: set[str] = set()
    with make(name, cfg.cols, cfg.rows) as system:
        sid = system.new_session(attach_script(cfg))
        for _ in range(cfg.attach_samples):
            with Terminal(system.attach_argv(sid), system.env, cfg.cols, cfg.rows) as term:
                t_mark = term.wait_for(marker, deadline_in(20))
                attach.append(t_mark - term.spawn_ns)
                wait_raw_mode(term)
                mark = len(term.buf)
                t0 = now_ns()
                term.write(system.detach_keys)
                t_exit = term.wait_exit(deadline_in(10))
                detach.append(t_exit - t0)
                if term.exit_status != 0:
                    notes.add(f"client exit status {term.exit_status} on detach")
                if b"detached" not in term.buf[mark:]:
                    notes.add("no 'detached' message")
    attach.sort()
    detach.sort()
    return {
        "attach_ms": attach[len(attach) // 2] / 1e6,
        "detach_ms": detach[len(detach) // 2] / 1e6,
        "notes": sorted(notes),
    }


# -- 4. CLI cost --------------------------------------------------------------------------------


def _median(xs: list[int]) -> float:
    xs = sorted(xs)
    return float(xs[len(xs) // 2]) if xs else float("nan")


def _attach_once(system: System, sid: str, cfg: Config) -> int:
    """ns from spawning an attach client to the session's marker on its screen (then detach,
    untimed): what `attach` costs a script before it has the screen."""
    with Terminal(system.attach_argv(sid), system.env, cfg.cols, cfg.rows) as term:
        took = term.wait_for(_m("MARK", cfg).encode(), deadline_in(20)) - term.spawn_ns
        wait_raw_mode(term)
        term.write(system.detach_keys)
        term.wait_exit(deadline_in(10))
    return took


#: The CLI ops timed per call, interleaved with the `python -c pass` baseline.
CLI_OPS = ("ls", "kill", "send", "run", "capture", "wait", "attach")

#: The shell `run` types into: no rc files, so its prompt comes at once and is the same for all.
SHELL_SCRIPT = "exec bash --norc --noprofile"


def cli_cost(name: str, cfg: Config) -> dict[str, Any]:
    """ls/kill/send/run/capture/wait/attach wall times and per-session `new` cost, with
    `python3 -c pass` timed in the same block (interleaved) as the baseline."""
    py_argv = [cfg.python, "-c", "pass"]
    # The same interpreter without site start-up (.pth files): what `python -c pass` costs in
    # a clean venv, give or take ~5 ms. Dev environments can spend far more than that in site
    # (an editable install's finder, injected .pth files), which every command pays too.
    bare_argv = [cfg.python, "-S", "-c", "pass"]
    env = client_env()
    py: list[int] = []
    bare: list[int] = []
    ops: dict[str, list[int]] = {op: [] for op in CLI_OPS}
    errors: dict[str, str] = {}
    with make(name, cfg.cols, cfg.rows) as system:
        anchor = system.new_session(IDLE_SCRIPT)
        victims: list[str] = []
        if system.cli("kill", anchor) is not None:
            victims = system.new_sessions(IDLE_SCRIPT, cfg.cli_samples)
        # `wait` on a program that has exited: the command's own cost, not the program's.
        ended = system.new_session("exit 0") if system.cli("wait", anchor) else None
        shown = system.new_session(attach_script(cfg)) if system.attachable else None
        # `run -- true` in a shell: the command's own cost (bash runs `true` in microseconds).
        # One untimed call first: it waits for the new shell's first prompt.
        shell = None
        if system.cli("run", anchor) is not None:
            shell = system.new_session(SHELL_SCRIPT)
            spec = system.cli("run", shell)
            assert spec is not None
            timed_run(spec[0], system.env, timeout=30)
        for i in range(cfg.cli_samples):
            py.append(timed_run(py_argv, env))
            bare.append(timed_run(bare_argv, env))
            for op in ops:
                if op in errors or (op == "kill" and not victims):
                    continue
                try:
                    if op == "attach":
                        if shown is not None:
                            ops[op].append(_attach_once(system, shown, cfg))
                        continue
                    sid = {
                        "kill": victims[i] if victims else anchor,
                        "wait": ended,
                        "run": shell,
                    }.get(op)
                    spec = system.cli(op, sid or anchor)
                    if spec is None:
                        continue
                    argv, stdin = spec
                    # `screen -ls` exits non-zero even when it lists sessions
                    ops[op].append(
                        timed_run(argv, system.env, input=stdin, check=argv[1:] != ["-ls"])
                    )
                except (CommandFailed, TimedOut) as e:
                    errors[op] = str(e)
                    ops[op] = []
        t0 = now_ns()
        for _ in range(cfg.create_n):
            system.new_session(IDLE_SCRIPT)
        create = (now_ns() - t0) / cfg.create_n
        if system.count_sessions() < cfg.create_n:
            raise CommandFailed(f"created {cfg.create_n} sessions but fewer are listed")
        create_api = None
        if system.has_api:
            before = system.count_sessions()
            t0 = now_ns()
            system.api_new_sessions(cfg.python, IDLE_SCRIPT, cfg.create_n)
            create_api = (now_ns() - t0) / cfg.create_n
            if system.count_sessions() < before + cfg.create_n:
                raise CommandFailed(f"created {cfg.create_n} sessions via the API; fewer listed")
    py_med = _median(py)
    bare_med = _median(bare)
    out: dict[str, Any] = {"py_ms": py_med / 1e6, "py_bare_ms": bare_med / 1e6, "errors": errors}
    for op, xs in ops.items():
        out[f"{op}_ms"] = _median(xs) / 1e6 if xs else None
        out[f"{op}_x"] = _median(xs) / py_med if xs else None
        # The ratio with this environment's site start-up taken out of both sides.
        out[f"{op}_bare_x"] = (_median(xs) - py_med + bare_med) / bare_med if xs else None
    out["new_ms"] = create / 1e6
    out["new_x"] = create / py_med
    out["new_bare_x"] = (create - py_med + bare_med) / bare_med
    out["new_api_ms"] = None if create_api is None else create_api / 1e6
    out["new_api_x"] = None if create_api is None else create_api / py_med
    return out


# -- 5. memory ----------------------------------------------------------------------------------


def memory_idle(name: str, cfg: Config, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Server RSS/PSS (summed over the system's server processes) with N idle sessions, and the
    memfds they hold (tmuxish's keeper: session records and screen snapshots, in no RSS)."""
    out: dict[Any, Any] = {}  # keyed by session count
    with make(name, cfg.cols, cfg.rows) as system:
        have = 0
        for count in cfg.mem_counts:
            system.new_sessions(IDLE_SCRIPT, count - have, workers=8)
            have = count
            listed = system.count_sessions()
            if listed != count:
                raise CommandFailed(f"{count} sessions created, {listed} listed")
            pids = system.server_pids()
            rss, pss, memfd, settled = settle_memory(pids)
            out[count] = {
                "rss_kib": rss,
                "pss_kib": pss,
                "memfd_kib": memfd,
                "procs": len(pids),
                "settled": settled,
            }
            if log is not None:
                log(
                    f"  {name}: {count} idle: RSS {rss} KiB, PSS {pss} KiB, memfds {memfd} KiB, "
                    f"{len(pids)} procs{'' if settled else ', RSS still moving'}"
                )
    lo, hi = min(cfg.mem_counts), max(cfg.mem_counts)
    if hi > lo:
        for k in ("rss", "pss", "memfd"):
            out[f"per_session_{k}_kib"] = (out[hi][f"{k}_kib"] - out[lo][f"{k}_kib"]) / (hi - lo)
    out["settled"] = all(out[c]["settled"] for c in cfg.mem_counts)
    return out


def memory_history(name: str, cfg: Config) -> dict[str, Any]:
    """Server memory per session holding `hist_lines` lines of history (tmux history-limit and
    screen -h raised to that; tmuxish and dtach use their defaults)."""
    with make(name, cfg.cols, cfg.rows, history=cfg.hist_lines) as system:
        system.new_session(IDLE_SCRIPT)
        rss0, pss0, fd0, ok0 = settle_memory(system.server_pids())
        done_dir = os.path.join(system.dir, "done")
        os.mkdir(done_dir)
        system.new_sessions(history_script(cfg, done_dir), cfg.hist_sessions)
        poll_until(lambda: len(os.listdir(done_dir)) >= cfg.hist_sessions, 120, "history sessions")
        rss1, pss1, fd1, ok1 = settle_memory(system.server_pids())
    n = cfg.hist_sessions
    return {
        "per_session_rss_kib": (rss1 - rss0) / n,
        "per_session_pss_kib": (pss1 - pss0) / n,
        "per_session_memfd_kib": (fd1 - fd0) / n,
        "settled": ok0 and ok1,
    }


def memory_flood(name: str, cfg: Config) -> dict[str, Any]:
    """Peak server RSS while a session prints flood_bytes with no client attached."""
    with make(name, cfg.cols, cfg.rows) as system:
        done = os.path.join(system.dir, "flood.done")
        system.new_session(flood_script(cfg, done))
        t0 = now_ns()  # after the CLI returned: tmux/tmuxish start their server in `new`
        pids = system.server_pids()
        if not pids:
            raise CommandFailed("server process not found")
        peak = 0
        deadline = time.monotonic() + 300
        while not os.path.exists(done):
            peak = max(peak, rss_kib_fast(pids))
            if time.monotonic() > deadline:
                raise TimedOut("flood did not finish in 300 s")
            time.sleep(0.01)  # RSS sampling interval
        secs = (now_ns() - t0) / 1e9
        hwm = max((hwm_kib(p) or 0) for p in pids)
        rss_after, _ = memory_kib(pids)
    return {
        "peak_rss_kib": max(peak, hwm),
        "rss_after_kib": rss_after,
        "mbps": cfg.flood_bytes / secs / 1e6,
    }


# -- 6. re-attach repaint ---------------------------------------------------------------------


def repaint(name: str, cfg: Config) -> dict[str, Any]:
    tok = f"p{cfg.token}"
    shown = f"SHOWN_{tok}".encode()
    with make(name, cfg.cols, cfg.rows) as system:
        sid = system.new_session(repaint_script())
        with Terminal(system.attach_argv(sid), system.env, cfg.cols, cfg.rows) as term:
            type_until(term, tok.encode() + b"\r", shown, 30)
            wait_raw_mode(term)
            term.write(system.detach_keys)
            term.wait_exit(deadline_in(10))
        with Terminal(system.attach_argv(sid), system.env, cfg.cols, cfg.rows) as term:
            try:
                t = term.wait_for(shown, deadline_in(3))
                return {"repaint": True, "ms": (t - term.spawn_ns) / 1e6}
            except TimedOut:
                return {"repaint": False, "ms": None}


def probe(system: System) -> None:
    """Fail fast if a system does not work end to end (e.g. tmuxish while it is being written)."""
    system.new_session(IDLE_SCRIPT)
    if system.count_sessions() < 1:
        raise CommandFailed("session not listed")
    if not system.server_pids():
        raise CommandFailed("server process not found by its socket")
