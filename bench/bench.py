#!/usr/bin/env python3
"""tmuxish benchmark: tmuxish against tmux, GNU screen, dtach and a raw PTY, in ONE run.

    python bench/bench.py [--quick] [--systems raw,tmuxish,tmux,screen,dtach]
                          [--reps N] [--only throughput,latency,attach,cli,memory,repaint]
                          [--json out.json]

Every repetition runs each system back to back, in an order rotated per repetition;
ratios are computed within a repetition (system / baseline) and the table shows the
median over repetitions. Memory and re-attach repaint are measured once per run.
See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import install
import measure
import procs
import report
import systems
from measure import Config
from systems import ALL_SYSTEMS, Unavailable

GROUPS = ("throughput", "latency", "attach", "cli", "memory", "repaint")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def baseline_python() -> str:
    """The interpreter tmuxish runs on (its entry script's shebang), else this one.

    Not a `python3` found on PATH: a pyenv shim is a shell script that would add ~90 ms.
    """
    exe = systems.tmuxish_exe()
    with contextlib.suppress(OSError, UnicodeDecodeError), open(exe, "rb") as f:
        first = f.readline().decode().strip()
        if first.startswith("#!"):
            cand = first[2:].strip().split()[0]
            if os.path.basename(cand).startswith("python") and os.access(cand, os.X_OK):
                return cand
    return sys.executable


def compile_tmuxish(python: str) -> str:
    """Byte-compile the installed tmuxish package, as `pip install` does; a note for the header.

    An editable install under PYTHONDONTWRITEBYTECODE=1 (this repository's CI and dev shells)
    has no .pyc files for tmuxish, so every CLI call and every server start recompiles every
    module it imports: a cost no installed tmuxish has. Files edited later are recompiled again
    by each process (Python checks the source's mtime), so a run measures what is on disk.
    """
    code = (
        "import os, tmuxish, tmuxish.client, tmuxish.server\n"
        "for m in (tmuxish, tmuxish.client, tmuxish.server):\n"
        "    print(os.path.dirname(m.__file__))"
    )
    try:
        cp = procs.run([python, "-c", code], systems.client_env(), timeout=30)
        dirs = cp.stdout.decode().split()
        procs.run([python, "-m", "compileall", "-q", *dirs], systems.client_env(), timeout=120)
    except Exception as e:
        return f"tmuxish bytecode: NOT compiled ({e})"
    return "tmuxish bytecode: compiled with compileall before the run, as pip install does"


def choose_tmuxish(args: argparse.Namespace) -> list[str]:
    """Which tmuxish entry script is timed; notes for the header saying so."""
    if args.cli_exe:
        exe = shutil.which(args.cli_exe) or args.cli_exe
        systems.use_tmuxish_exe(os.path.abspath(exe))
        return [f"tmuxish entry script {systems.tmuxish_exe()} (--cli-exe)"]
    if args.no_install:
        return [
            f"tmuxish entry script {systems.tmuxish_exe()} (--no-install: as found on PATH; "
            "an editable install's start-up cost is in every ratio)"
        ]
    try:
        exe, note = install.installed_exe(log)
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        note = (
            f"tmuxish: the normal install FAILED ({e}); timing {systems.tmuxish_exe()} "
            "from PATH instead: its start-up is not a user's"
        )
        log(note)
        return [note]
    systems.use_tmuxish_exe(exe)
    log(note)
    return [f"tmuxish entry script {exe}", note]


def make_config(args: argparse.Namespace) -> Config:
    cfg = Config()
    if args.quick:
        cfg.reps = 2
        cfg.size = 8 * measure.MiB
        cfg.keys = 200
        cfg.attach_samples = 3
        cfg.cli_samples = 5
        cfg.create_n = 30
        cfg.mem_counts = (1, 10, 100)
        cfg.hist_sessions = 5
        cfg.flood_bytes = 100_000_000
    if args.tiny:  # smoke test: everything tiny, seconds per system
        cfg.reps = 1
        cfg.size = 256 * 1024
        cfg.keys = 20
        cfg.warm_keys = 5
        cfg.attach_samples = 2
        cfg.cli_samples = 2
        cfg.create_n = 3
        cfg.mem_counts = (1, 3)
        cfg.hist_sessions = 2
        cfg.hist_lines = 500
        cfg.flood_bytes = 2_000_000
    if args.reps is not None:
        cfg.reps = args.reps
    if args.size_mib is not None:
        cfg.size = int(args.size_mib * measure.MiB)
    if args.keys is not None:
        cfg.keys = args.keys
    if args.mem_counts is not None:
        cfg.mem_counts = tuple(int(x) for x in args.mem_counts.split(","))
    cfg.cols, cfg.rows = args.cols, args.rows
    cfg.python = baseline_python()
    return cfg


class Bench:
    def __init__(self, cfg: Config, names: list[str], groups: list[str]) -> None:
        self.cfg = cfg
        self.names = names
        self.groups = groups
        self.unavailable: dict[str, str] = {}
        self.errors: dict[str, dict[str, list[str]]] = {}
        reps = cfg.reps
        self.res: dict[str, Any] = {
            "throughput": {k: {n: [None] * reps for n in names} for k in ("plain", "sgr")},
            "latency": {n: [None] * reps for n in names},
            "attach": {n: [None] * reps for n in names},
            "cli": {n: [None] * reps for n in names},
            "memory": {"idle": {}, "history": {}, "flood": {}},
            "repaint": {},
        }

    def attempt(self, name: str, what: str, fn: Callable[[], Any]) -> Any:
        if name in self.unavailable:
            return None
        t0 = time.monotonic()
        try:
            out = fn()
        except Unavailable as e:
            self.unavailable[name] = str(e)
            log(f"{what} {name}: unavailable: {e}")
            return None
        except Exception as e:  # measured system misbehaved: report n/a, keep going
            msg = f"{type(e).__name__}: {e}"
            failures = self.errors.setdefault(name, {}).setdefault(what.split(" rep")[0], [])
            failures.append(msg)
            log(f"{what} {name}: FAILED {msg}")
            if os.environ.get("BENCH_TRACE"):
                traceback.print_exc()
            return None
        log(f"{what} {name}: {short(out)} ({time.monotonic() - t0:.1f}s)")
        return out

    def probe(self) -> None:
        for name in self.names:
            if name == "raw":
                continue

            def go(name: str = name) -> None:
                with systems.make(name, self.cfg.cols, self.cfg.rows) as s:
                    measure.probe(s)

            try:
                go()
            except Exception as e:
                self.unavailable[name] = f"{type(e).__name__}: {e}"
                log(f"probe {name}: unavailable: {self.unavailable[name]}")

    def run(self) -> None:
        cfg = self.cfg
        self.probe()
        data_dir = tempfile.mkdtemp(prefix="tbdata", dir="/tmp")
        try:
            files: dict[str, tuple[str, int, bytes]] = {}
            if "throughput" in self.groups:
                for kind in ("plain", "sgr"):
                    data = measure.make_text(cfg.size, sgr=(kind == "sgr"))
                    path = os.path.join(data_dir, f"{kind}.txt")
                    with open(path, "wb") as f:
                        f.write(data)
                    files[kind] = (path, len(data), data.replace(b"\n", b"\r\n"))
                    del data
            for rep in range(cfg.reps):
                order = self.names[rep % len(self.names) :] + self.names[: rep % len(self.names)]
                tag = f"rep {rep + 1}/{cfg.reps}"
                if "throughput" in self.groups:
                    for kind, (path, size, expected) in files.items():
                        for n in order:
                            self.res["throughput"][kind][n][rep] = self.attempt(
                                n,
                                f"throughput-{kind} {tag}",
                                functools.partial(measure.throughput, n, path, size, expected, cfg),
                            )
                if "latency" in self.groups:
                    for n in order:
                        self.res["latency"][n][rep] = self.attempt(
                            n, f"latency {tag}", functools.partial(measure.key_latency, n, cfg)
                        )
                attachable = [n for n in order if n != "raw"]
                if "attach" in self.groups:
                    for n in attachable:
                        self.res["attach"][n][rep] = self.attempt(
                            n, f"attach {tag}", functools.partial(measure.attach_detach, n, cfg)
                        )
                if "cli" in self.groups:
                    for n in attachable:
                        self.res["cli"][n][rep] = self.attempt(
                            n, f"cli {tag}", functools.partial(measure.cli_cost, n, cfg)
                        )
            files.clear()
            attachable = [n for n in self.names if n != "raw"]
            if "memory" in self.groups:
                mem = self.res["memory"]
                for n in attachable:
                    mem["idle"][n] = self.attempt(
                        n, "memory-idle", functools.partial(measure.memory_idle, n, cfg, log)
                    )
                for n in attachable:
                    mem["history"][n] = self.attempt(
                        n, "memory-history", functools.partial(measure.memory_history, n, cfg)
                    )
                for n in attachable:
                    mem["flood"][n] = self.attempt(
                        n, "memory-flood", functools.partial(measure.memory_flood, n, cfg)
                    )
            if "repaint" in self.groups:
                for n in attachable:
                    self.res["repaint"][n] = self.attempt(
                        n, "repaint", functools.partial(measure.repaint, n, cfg)
                    )
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


def short(out: Any) -> str:
    if isinstance(out, dict):
        parts = []
        for k, v in out.items():
            if isinstance(v, float):
                parts.append(f"{k}={v:.4g}")
            elif isinstance(v, int | bool | str):
                parts.append(f"{k}={v}")
        return " ".join(parts)[:160]
    return str(out)[:160]


def header(cfg: Config, names: list[str], notes: list[str]) -> str:
    vers = systems.versions([n for n in names if n != "raw"])
    cpu = os.cpu_count()
    lines = [
        "tmuxish bench: "
        + time.strftime("%Y-%m-%d %H:%M")
        + f"  {platform.system()} {platform.release()}, {cpu} CPUs, Python "
        + platform.python_version(),
        "systems: " + ", ".join(f"{n} ({vers[n]})" if n in vers else n for n in names),
        f"reps={cfg.reps} (medians over reps; ratios are paired per rep, then the median), "
        f"terminal {cfg.cols}x{cfg.rows}, python baseline {cfg.python}",
        *notes,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, 2 reps (~2 minutes)")
    ap.add_argument("--systems", default=",".join(ALL_SYSTEMS), help="comma list")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5, quick 2)")
    ap.add_argument("--only", default=",".join(GROUPS), help="comma list of " + ",".join(GROUPS))
    ap.add_argument("--json", default=None, metavar="OUT", help="write all results as JSON")
    ap.add_argument("--size-mib", type=float, default=None, help="throughput cat size in MiB")
    ap.add_argument("--keys", type=int, default=None, help="keystrokes for echo latency")
    ap.add_argument("--mem-counts", default=None, help="idle session counts, e.g. 1,10,100,1000")
    ap.add_argument("--cols", type=int, default=80)
    ap.add_argument("--rows", type=int, default=24)
    ap.add_argument(
        "--no-compile",
        action="store_true",
        help="do not byte-compile tmuxish first (see compile_tmuxish)",
    )
    ap.add_argument(
        "--cli-exe",
        default=None,
        metavar="PATH",
        help="time this tmuxish entry script (default: a normal pip install of this tree,\n"
        "built into a cached venv; see bench/install.py)",
    )
    ap.add_argument(
        "--no-install",
        action="store_true",
        help="time the tmuxish on PATH as it is (an editable install in a dev venv: its\n"
        "start-up cost is not a user's; for the smoke test)",
    )
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    bad = [n for n in names if n not in ALL_SYSTEMS]
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    badg = [g for g in groups if g not in GROUPS]
    if bad or badg:
        ap.error(f"unknown system/group: {', '.join(bad + badg)}")
    notes = choose_tmuxish(args) if {"tmuxish", "tmuxish-noscreen"} & set(names) else []
    cfg = make_config(args)

    # tmux and 1000 PTYs need file descriptors; children inherit the raised soft limit.
    with contextlib.suppress(ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < min(hard, 16384):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))

    if notes and (args.no_install or args.cli_exe):
        if args.no_compile:
            bytecode = "tmuxish bytecode: not compiled by the bench (--no-compile)"
            if os.environ.get("PYTHONDONTWRITEBYTECODE"):
                bytecode += "; PYTHONDONTWRITEBYTECODE is set: modules without .pyc recompile"
            notes.append(bytecode)
        else:
            notes.append(compile_tmuxish(cfg.python))
        log(notes[-1])

    systems.install_signal_cleanup()
    bench = Bench(cfg, names, groups)
    t0 = time.monotonic()
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted: printing what was measured")
    finally:
        systems.cleanup_all()
    elapsed = time.monotonic() - t0

    text = header(cfg, names, notes) + "\n\n" + report.render(bench, cfg, names)
    text += f"\n\n(run took {elapsed:.0f} s)"
    print(text)
    if args.json:
        out = {
            "config": {k: v for k, v in vars(cfg).items()},
            "systems": names,
            "unavailable": bench.unavailable,
            "errors": bench.errors,
            "results": bench.res,
            "summary": report.summary(bench, names),
            "elapsed_s": elapsed,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
