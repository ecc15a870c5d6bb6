"""The output log's cap holds whatever size a chunk of output has."""

from __future__ import annotations

from pathlib import Path

from tmuxish.server.logfile import OutputLog


def test_no_file_passes_the_cap_even_for_a_chunk_larger_than_it(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    log = OutputLog(str(path), 4096)
    try:
        log.write(b"a" * 3000)
        log.write(b"b" * 10_000)  # one PTY read can bring more than 4 KiB
    finally:
        log.close()
    older, newer = Path(f"{path}.1").read_bytes(), path.read_bytes()
    assert len(older) <= 4096 and len(newer) <= 4096
    # The two files hold the tail of the output, with no gap.
    assert older + newer == (b"a" * 3000 + b"b" * 10_000)[-len(older + newer) :]
