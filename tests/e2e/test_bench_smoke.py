"""Smoke run of bench/bench.py: it runs end to end against tmuxish and prints its tables.

A benchmark, not a test: no timing is asserted here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench.py"

# The entry script of the venv running the tests (PATH may not have it), else the one on PATH.
TMUXISH = shutil.which("tmuxish", path=str(Path(sys.executable).parent)) or shutil.which("tmuxish")

pytestmark = pytest.mark.skipif(TMUXISH is None, reason="tmuxish not installed")


@pytest.mark.timeout(150)
def test_bench_quick_tiny_runs_and_prints_tables(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    cp = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--tiny",
            "--systems",
            "raw,tmuxish",
            # This entry script as it is: no pip install into a fresh venv (seconds).
            "--cli-exe",
            str(TMUXISH),
            "--json",
            str(out_json),
        ],
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert cp.returncode == 0, cp.stderr[-4000:]
    for heading in ("1. Throughput", "2. Key echo latency", "4. CLI cost", "5. Memory", "Targets"):
        assert heading in cp.stdout, cp.stdout
    rows = [line.split() for line in cp.stdout.splitlines()]
    assert ["plain", "raw"] in [r[:2] for r in rows], cp.stdout
    data = json.loads(out_json.read_text())
    assert data["unavailable"] == {}, data["unavailable"]
    tmuxish_plain = data["results"]["throughput"]["plain"]["tmuxish"]
    assert tmuxish_plain[0] is not None, data["errors"]
    assert tmuxish_plain[0]["exact"], "tmuxish must deliver every byte of the cat unchanged"
