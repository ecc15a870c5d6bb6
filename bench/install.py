"""A normal (non-editable) install of the working tree in a private venv: tmuxish as users get it.

A dev checkout runs tmuxish from an editable install, whose .pth finder runs in EVERY interpreter
start (measured here: `python -c pass` 21 ms in the dev venv, 10 ms in a plain venv). Timing the
CLI there, against that venv's `python -c pass`, puts ~10 ms on both sides of every ratio and makes
tmuxish look closer to its target than a user would find it. So the bench builds the tree once with
`pip install` into a fresh venv (~7 s here, offline from the local index) and caches it under a hash
of the sources, so an unchanged tree is not rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What the wheel is built from (pyproject's package-dir), plus the metadata files.
SOURCES = ("tmuxish", "client", "server", "bin")
META = ("pyproject.toml", "README.md")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tmuxish-bench"


def _files(root: Path) -> Iterator[Path]:
    for name in META:
        if (root / name).is_file():
            yield root / name
    for top in SOURCES:
        for dirpath, dirnames, filenames in os.walk(root / top):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                if not f.endswith((".pyc", ".pyo")):
                    yield Path(dirpath) / f


def source_hash(root: Path = ROOT) -> str:
    """Hash of the files the wheel is built from, as they are on disk (uncommitted edits count)."""
    h = hashlib.sha256(sys.version.encode())
    for p in _files(root):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _copy_tree(root: Path, dest: Path) -> None:
    """Copy only the sources: pip would otherwise write build/ and *.egg-info into the worktree."""
    for p in _files(root):
        target = dest / p.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)


#: A cached venv unused for this long is removed by the next build (other worktrees' benches
#: may be using theirs right now: never remove a recent one).
STALE_S = 6 * 3600


def _prune(keep: Path) -> None:
    now = time.time()
    for old in CACHE.glob("venv-*"):
        if old == keep:
            continue
        stamp = old / ".complete"
        try:
            age = now - stamp.stat().st_mtime
        except OSError:
            age = now - old.stat().st_mtime  # an interrupted build: judge by the directory
        if age > STALE_S:
            shutil.rmtree(old, ignore_errors=True)


def installed_exe(log: Callable[[str], None], root: Path = ROOT) -> tuple[str, str]:
    """The `tmuxish` entry script of a normal install of `root` (built now or taken from the
    cache); and a one-line note for the report's header."""
    key = source_hash(root)
    venv = CACHE / f"venv-{key}"
    exe = venv / "bin" / "tmuxish"
    CACHE.mkdir(parents=True, exist_ok=True)
    # One build per hash at a time: benches of several worktrees share the cache.
    with open(CACHE / f"venv-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".complete").exists() and exe.exists():
            (venv / ".complete").touch()  # in use: not stale
            return str(exe), f"tmuxish: normal pip install of the tree in {venv} (cached)"
        _prune(venv)
        took = _build(root, venv, log)
    return str(exe), f"tmuxish: normal pip install of the tree in {venv} (built in {took:.1f} s)"


def _build(root: Path, venv: Path, log: Callable[[str], None]) -> float:
    log(f"building a normal install of {root} into {venv} (pip install, once per source hash)")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tbsrc", dir=CACHE) as tmp:
        src = Path(tmp) / "src"
        _copy_tree(root, src)
        # A venv that is not at its final path would have wrong shebangs: build in place,
        # mark complete only at the end, so an interrupted build is redone, never used.
        shutil.rmtree(venv, ignore_errors=True)
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # pip byte-compiles, as for any user
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        cp = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", str(src)],
            env=env,
            capture_output=True,
            timeout=600,
        )
        if cp.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            err = cp.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"pip install of the tree failed: {err[-1] if err else '?'}")
    (venv / ".complete").touch()
    took = time.monotonic() - t0
    log(f"built in {took:.1f} s")
    return took
