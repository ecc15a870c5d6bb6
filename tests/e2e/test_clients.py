"""Clients and the commands around them, end to end through the real CLI: window sizes and
their policies, read-only attach, send/wait/rename, and the output log."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from helpers import Cli, wait_for
from term_model import PROMPT, Term, attached, capture_lines, shell

from tmuxish import SyncClient


def size_of(cli: Cli, sid: int) -> tuple[int, int]:
    info = cli.session(sid)
    return info["cols"], info["rows"]


def wait_size(cli: Cli, sid: int, size: tuple[int, int]) -> None:
    wait_for(lambda: size_of(cli, sid) == size, 20, f"session size {size}")


def stty_size(term: Term, tag: str) -> str:
    """Run `stty size` in the attached shell; its "rows cols" answer."""
    term.send(f"echo {tag}=$(stty size)\r")
    found: re.Match[str] = term.wait(
        lambda t: re.search(rf"^{tag}=(\d+ \d+)$", t.text(), re.MULTILINE), f"{tag} answer"
    )
    return found.group(1)


def detached_stty_size(cli: Cli, sid: int, tag: str) -> str:
    cli.run("send", str(sid), f"echo {tag}=$(stty size)", "Enter")
    found: re.Match[str] = wait_for(
        lambda: re.search(rf"^{tag}=(\d+ \d+)$", cli.run("capture", str(sid)).stdout, re.M),
        20,
        f"{tag} answer",
    )
    return found.group(1)


def test_resize_while_detached_then_attach(cli: Cli) -> None:
    sid = cli.new(*shell(cli))
    # No `tmuxish resize` command exists; the protocol request is reached through the API.
    with SyncClient(cli.socket_path, autostart=False) as client:
        client.resize(sid, 100, 30)
    assert size_of(cli, sid) == (100, 30)
    assert detached_stty_size(cli, sid, "detached") == "30 100"

    same = Term(cli, "attach", str(sid), cols=100, rows=30)
    attached(cli, sid, 1)  # typing before the client's raw mode would be echoed by its PTY
    assert stty_size(same, "same") == "30 100"
    same.detach()

    # Under the default policy (latest) an attaching client's size wins.
    other = Term(cli, "attach", str(sid), cols=90, rows=28)
    wait_size(cli, sid, (90, 28))
    assert stty_size(other, "other") == "28 90"
    assert cli.session(sid)["policy"] == "latest"
    other.detach()
    assert size_of(cli, sid) == (90, 28)  # a detach alone leaves the size as it was


@pytest.mark.parametrize(
    ("policy", "both", "after"),
    [
        ("latest", (90, 40), (100, 30)),
        ("smallest", (90, 30), (100, 30)),
        ("largest", (100, 40), (100, 30)),
    ],
)
def test_window_size_policy_with_two_clients(
    cli: Cli, policy: str, both: tuple[int, int], after: tuple[int, int]
) -> None:
    out = cli.run("new", "-d", "--window-size", policy, "-x", "80", "-y", "24", "--", *shell(cli))
    sid = int(out.stdout)
    assert cli.session(sid)["policy"] == policy
    a = Term(cli, "attach", str(sid), cols=100, rows=30)
    wait_size(cli, sid, (100, 30))
    b = Term(cli, "attach", str(sid), cols=90, rows=40)
    attached(cli, sid, 2)
    wait_size(cli, sid, both)
    # Typed in b, the latest client in every policy, so `latest` keeps its size.
    assert stty_size(b, "both") == f"{both[1]} {both[0]}"
    a.wait_text(f"both={both[1]} {both[0]}")
    b.detach()
    wait_size(cli, sid, after)
    assert stty_size(a, "alone") == f"{after[1]} {after[0]}"
    a.detach()


@pytest.mark.parametrize("mode", ["direct", "relay"])
def test_read_only_client(cli: Cli, mode: str) -> None:
    cli.env["TMUXISH_ATTACH_MODE"] = mode
    sid = cli.new(*shell(cli))
    # Alone, a read-only client does not size the session either.
    reader = Term(cli, "attach", "-r", str(sid), cols=120, rows=50)
    reader.wait_text(PROMPT.rstrip())
    attached(cli, sid, 1)
    reader.send("echo typed-$((40+2))\r")
    writer = Term(cli, "attach", str(sid), cols=80, rows=24)
    attached(cli, sid, 2)
    writer.send("echo writer-$((1+2))\r")
    reader.wait_text("writer-3")
    writer.wait_text("writer-3")
    assert size_of(cli, sid) == (80, 24)
    assert stty_size(writer, "size") == "24 80"
    reader.send("\x03echo typed-again-$((2+3))\r")
    writer.send("echo last-$((3+4))\r")
    reader.wait_text("last-7")
    screen = "\n".join(capture_lines(cli, "--history", str(sid)))
    assert "typed-" not in screen and "42" not in screen, screen
    reader.detach()  # the detach keys still work for a read-only client
    assert size_of(cli, sid) == (80, 24)
    writer.detach()


def test_send_key_names_and_literal(cli: Cli) -> None:
    sid = cli.new(*shell(cli))
    wait_for(lambda: PROMPT.rstrip() in cli.run("capture", str(sid)).stdout, 20, "prompt")
    cli.run("send", str(sid), "cat -vT", "Enter")
    # -l: every argument is text, so key names arrive as their letters.
    cli.run("send", "-l", str(sid), "Up C-c Enter")
    cli.run("send", str(sid), "Enter")
    cli.run("send", str(sid), "Up", "Enter", "Tab", "x", "Enter")
    wait_for(lambda: "^I" in cli.run("capture", str(sid)).stdout, 20, "cat's echo")
    lines = capture_lines(cli, str(sid))
    assert "Up C-c Enter" in lines, lines
    assert "^[[A" in lines, lines
    assert "^Ix" in lines, lines
    cli.run("send", str(sid), "C-c")
    cli.run("send", str(sid), "echo rc=$?", "Enter")
    wait_for(lambda: "rc=130" in capture_lines(cli, str(sid)), 20, "cat killed by C-c")


def test_send_follows_application_cursor_mode(cli: Cli) -> None:
    # The program turns on application cursor keys (as vi and less do), then shows its input.
    sid = cli.new("sh", "-c", "printf '\\033[?1hREADY\\n'; exec cat -v")
    wait_for(lambda: "READY" in cli.run("capture", str(sid)).stdout, 20, "the mode to be set")
    cli.run("send", str(sid), "Up", "Home", "C-Up", "Enter")
    # Like a terminal (and tmux): SS3 forms for plain cursor keys, modified ones unchanged.
    wait_for(lambda: "^[OA^[OH^[[1;5A" in capture_lines(cli, str(sid)), 20, "the keys")


def test_wait_returns_the_exit_code(cli: Cli) -> None:
    quick = cli.new("sh", "-c", "exit 5")
    assert cli.run("wait", str(quick), check=False).returncode == 5
    sid = cli.new(*shell(cli))
    cli.run("send", str(sid), "exit 3", "Enter")
    assert cli.run("wait", str(sid), check=False, timeout=30).returncode == 3
    # Waiting on a session that exited long ago answers at once with the same code.
    assert cli.run("wait", str(quick), check=False).returncode == 5
    proc = cli.run("wait", "nosuch", check=False)
    assert proc.returncode not in (0, 3, 5) and "no session named 'nosuch'" in proc.stderr


def test_rename_and_target_by_new_name(cli: Cli) -> None:
    sid = cli.new(*shell(cli), name="old")
    cli.run("rename", "old", "fresh")
    assert cli.session(sid)["name"] == "fresh"
    proc = cli.run("send", "old", "x", check=False)
    assert proc.returncode != 0 and "no session named 'old'" in proc.stderr
    cli.run("send", "fresh", "echo renamed-$((2*4))", "Enter")
    wait_for(lambda: "renamed-8" in capture_lines(cli, "fresh"), 20, "output via the new name")
    term = Term(cli, "attach", "fresh")
    term.wait_text("renamed-8")
    term.detach()
    cli.run("rename", str(sid), "third")  # by id too
    assert [s["name"] for s in cli.sessions()] == ["third"]


def test_output_log_and_rotation(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "scr_out.log"
    rotated = tmp_path / "scr_out.log.1"
    log.write_bytes(b"kept-from-before\n")
    out = cli.run("new", "-d", "--log", str(log), "--log-max", "4096", "--", *shell(cli))
    sid = int(out.stdout)
    cli.run("send", "-l", str(sid), "printf '\\033[31mred\\033[0m-%s\\n' $((20+3))")
    cli.run("send", str(sid), "Enter")
    # Raw bytes, appended: the program's SGR as it wrote it, after what the file held.
    wait_for(lambda: b"\x1b[31mred\x1b[0m-23" in log.read_bytes(), 20, "the log")
    assert log.read_bytes().startswith(b"kept-from-before\n")
    assert not rotated.exists()

    # Numbered lines, so whatever survives rotation can be checked for gaps; 11 KB is more than
    # two files' worth, so the first rotated file has been replaced by a later one.
    program = f"{sys.executable} -c \"for i in range(1000): print('line-%04d' % i)\""
    cli.run("send", "-l", str(sid), f"{program}; echo done-$((1+1))")
    cli.run("send", str(sid), "Enter")
    wait_for(lambda: "done-2" in capture_lines(cli, str(sid)), 20, "the output")
    wait_for(lambda: b"\ndone-2\r\n" in log.read_bytes(), 20, "the end of the output in the log")
    assert rotated.exists()
    older, newer = rotated.read_bytes(), log.read_bytes()
    # No file passes the cap: a chunk that does not fit is split at it (a PTY read is usually
    # 4 KiB, but one read brought 8072 bytes in CI under load).
    assert len(older) <= 4096 and len(newer) <= 4096
    assert b"kept-from-before" not in older + newer
    numbers = [int(n) for n in re.findall(rb"^line-(\d{4})\r$", older + newer, re.M)]
    assert numbers == list(range(numbers[0], 1000)) and numbers[0] > 0, numbers[:3]


def test_output_log_cap_survives_upgrade(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "scr_up.log"
    out = cli.run("new", "-d", "--log", str(log), "--log-max", "4096", "--", *shell(cli))
    sid = int(out.stdout)
    wait_for(lambda: PROMPT.encode() in log.read_bytes(), 20, "the prompt in the log")
    assert "1 sessions kept" in cli.run("server", "upgrade").stdout
    program = f"{sys.executable} -c \"for i in range(1000): print('line-%04d' % i)\""
    cli.run("send", "-l", str(sid), f"{program}; echo done-$((1+1))")
    cli.run("send", str(sid), "Enter")
    wait_for(lambda: b"\ndone-2\r\n" in log.read_bytes(), 20, "the end of the output in the log")
    # The re-executed server reopened the log with the session's own cap, not the default.
    assert (tmp_path / "scr_up.log.1").exists()
    assert log.stat().st_size <= 4096
