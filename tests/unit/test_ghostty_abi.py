"""The libghostty declarations come from the cache after the first start, and a bad cache file
is never executed and never used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyghostty")

PROBE = """
import sys
from tmuxish.server import ghostty_abi
ffi, lib = ghostty_abi.load()
t = ffi.new("GhosttyTerminal*")
assert lib.ghostty_terminal_new(ffi.NULL, t, 80, 24) == lib.GHOSTTY_SUCCESS
data = b"hello"
lib.ghostty_terminal_vt_write(t[0], data, len(data))
lib.ghostty_terminal_free(t[0])
print("parsed" if "pyghostty._ffi" in sys.modules else "cached")
"""


def probe(cache: Path) -> str:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-P", "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def cached_files(cache: Path) -> list[Path]:
    return sorted((cache / "tmuxish").glob("ghostty-abi-*.py"))


def test_the_first_start_parses_and_keeps_the_declarations_the_next_reads_them(
    tmp_path: Path,
) -> None:
    assert probe(tmp_path) == "parsed"
    [kept] = cached_files(tmp_path)
    assert oct(kept.parent.stat().st_mode & 0o777) == "0o700"
    assert probe(tmp_path) == "cached"
    assert probe(tmp_path) == "cached"


def test_a_bad_cache_file_is_not_executed_and_is_replaced(tmp_path: Path) -> None:
    probe(tmp_path)
    [kept] = cached_files(tmp_path)
    marker = tmp_path / "executed"
    kept.write_text(f"open({str(marker)!r}, 'w').close()\nffi = FFI('x', _types=b'')\n")
    assert probe(tmp_path) == "parsed"
    assert not marker.exists()
    assert probe(tmp_path) == "cached"  # rewritten with the real declarations


def test_an_unwritable_cache_directory_only_costs_the_parse(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    assert probe(blocked) == "parsed"
    assert probe(blocked) == "parsed"
