"""The interactive chooser under a real PTY, read back through a real terminal model.

Everything the `tmuxish` process writes is fed into a libghostty terminal (the server's own
screen model), and the assertions are on what that terminal shows, with deadlines.
"""

from __future__ import annotations

import pytest
from helpers import Cli, wait_for

pytest.importorskip("pyghostty")

from term_model import DETACH, PROMPT, Term
from term_model import shell as prompt_shell

#: How the prompt reads on the screen (screen text has trailing blanks trimmed).
SHOWN = PROMPT.rstrip()
UP, DOWN, ESC = "\x1b[A", "\x1b[B", "\x1b"
CTRL_O, CTRL_R, CTRL_X = "\x0f", "\x12", "\x18"


def shell(cli: Cli) -> list[str]:
    cli.env["SHELL"] = "/bin/sh"  # what `n` starts
    return prompt_shell(cli)


def start(cli: Cli, *args: str, rows: int = 24, cols: int = 80) -> Term:
    return Term(cli, *args, cols=cols, rows=rows)


def selected(term: Term) -> str:
    return term.line_with("> ")


def two_sessions(cli: Cli) -> tuple[int, int]:
    sh = shell(cli)
    a = cli.new(*sh, name="web")
    b = cli.new(*sh)
    cli.run("send", str(a), "-l", "echo web-$((40+2))\r")
    cli.run("send", str(b), "-l", "echo other-$((6*6))\r")
    wait_for(lambda: "web-42\n" in cli.run("capture", str(a)).stdout, what="session a output")
    wait_for(lambda: "other-36\n" in cli.run("capture", str(b)).stdout, what="session b output")
    return a, b


def test_lists_sessions_with_preview_and_esc_quits(cli: Cli) -> None:
    a, b = two_sessions(cli)
    term = start(cli)
    # The most recently used session (b, created last) starts selected, as `attach` picks it.
    term.shows("tmuxish: 2 sessions", "ID  NAME", "other-36")
    assert selected(term).split()[:5] == [">", str(b), "-", "sh", "running"]
    assert term.line_with(f"  {a}  ").split()[:4] == [str(a), "web", "sh", "running"]
    assert term.line_with(f"session {b}, 80x24")
    assert term.screen.is_alt
    # Up moves and the preview follows the selection.
    term.send(UP)
    term.shows(f"session {a} (web), 80x24", "web-42", gone=("other-36",))
    assert selected(term).split()[1] == str(a)
    term.send(DOWN)
    term.shows("other-36", gone=("web-42",))
    term.send(ESC)
    assert term.exit_status() == 0
    assert not term.screen.is_alt  # the terminal is back on its normal screen
    assert [s["clients"] for s in cli.sessions()] == [0, 0]


def test_filter_then_enter_attaches_then_detach(cli: Cli) -> None:
    sh = shell(cli)
    cli.new(*sh, name="alpha")
    beta = cli.new(*sh, name="beta")
    cli.new(*sh)
    term = start(cli)
    term.shows("tmuxish: 3 sessions")
    term.send("bet")
    term.shows("filter: bet", "1 shown", gone=("alpha",))
    assert selected(term).split()[:3] == [">", str(beta), "beta"]
    term.send("\r")
    term.shows(SHOWN, gone=("tmuxish: 3 sessions",))
    wait_for(lambda: cli.session(beta)["clients"] == 1, what="beta to have a client")
    # The relay is raw: typed bytes reach the shell, nothing stray came before them.
    term.send("echo in-$((2+3))\r")
    text = term.shows("in-5")
    assert f"{PROMPT}echo in-$((2+3))" in text
    term.send(DETACH)
    term.shows(f"[detached from session beta ({beta})]")
    assert term.exit_status() == 0
    assert cli.session(beta)["clients"] == 0


def test_escape_clears_filter_then_quits(cli: Cli) -> None:
    two_sessions(cli)
    term = start(cli)
    term.shows("tmuxish: 2 sessions")
    term.send("zzz")
    term.shows("filter: zzz", "nothing matches the filter", "no session matches")
    term.send(ESC)  # clear the filter
    term.shows("web-42", "Esc quit", gone=("filter:",))
    term.send(ESC)  # quit
    assert term.exit_status() == 0


def test_ctrl_x_kills_as_the_cli_does_then_removes(cli: Cli) -> None:
    """Issue 14: kill in the chooser is `tmuxish kill` (SIGHUP, the session stays listed as
    exited), not kill-and-remove; on an exited session it removes, as `tmuxish rm`."""
    a, b = two_sessions(cli)
    term = start(cli)
    term.shows("tmuxish: 2 sessions", "other-36")
    term.send(CTRL_X)
    term.shows(f"kill session {b}? (y/n)")
    term.send("n")
    term.shows("Esc quit", gone=("(y/n)",))
    assert len(cli.sessions()) == 2
    term.send(CTRL_X)
    term.shows(f"kill session {b}? (y/n)")
    term.send("y")
    term.shows(f"killed session {b} (SIGHUP)", "exited (129)")
    assert [(s["id"], s["status"]) for s in cli.sessions()] == [(a, "running"), (b, "exited")]
    assert selected(term).split()[1] == str(b)
    term.send(CTRL_X)
    term.shows(f"remove exited session {b}? (y/n)")
    term.send("y")
    term.shows(f"removed session {b}", "tmuxish: 1 session", "web-42")
    assert [s["id"] for s in cli.sessions()] == [a]
    term.send(ESC)
    assert term.exit_status() == 0


def test_typed_letters_filter_and_ctrl_o_starts_a_new_session(cli: Cli) -> None:
    two_sessions(cli)
    term = start(cli)
    term.shows("tmuxish: 2 sessions")
    # Issue 14: `n` typed as the start of a filter used to start a session.
    term.send("nxq")
    term.shows("filter: nxq", "0 shown")
    assert len(cli.sessions()) == 2
    term.send(ESC)
    term.shows("Esc quit", gone=("filter:",))
    term.send(CTRL_O)
    term.shows(SHOWN, gone=("tmuxish: 2 sessions",))
    wait_for(lambda: len(cli.sessions()) == 3, what="a third session")
    new = cli.sessions()[-1]
    assert new["command"] == ["/bin/sh"] and new["clients"] == 1
    assert (new["cols"], new["rows"]) == (80, 24)
    term.send("echo new-$((3*3))\r")
    term.shows("new-9")
    term.send(DETACH)
    term.shows(f"[detached from session {new['id']}]")
    assert term.exit_status() == 0


def test_ctrl_r_renames(cli: Cli) -> None:
    a, b = two_sessions(cli)
    term = start(cli)
    term.shows("tmuxish: 2 sessions", "other-36")
    term.send(UP)
    term.shows(f"session {a} (web), 80x24")
    term.send(CTRL_R)
    term.shows(f"new name for session {a}: web")  # the prompt starts with the current name
    term.send("\x15api\r")  # Ctrl-U clears it
    term.shows(f"renamed session {a} to api", f"session {a} (api)")
    assert cli.session(a)["name"] == "api"
    term.send(DOWN)
    term.shows(f"session {b}, 80x24")
    term.send(CTRL_R)
    term.shows(f"new name for session {b}:", "Esc cancel")
    term.send("api\r")  # taken: the server's error is shown, nothing changes
    term.shows("already exists")
    assert cli.session(b)["name"] is None
    term.send(CTRL_R)
    term.shows(f"new name for session {b}:", "Esc cancel")
    term.send("db\x1b")  # Esc cancels
    term.shows("Esc quit", gone=("new name",))
    assert cli.session(b)["name"] is None
    term.send(ESC)
    assert term.exit_status() == 0


def test_layout_follows_resize(cli: Cli) -> None:
    a, _ = two_sessions(cli)
    term = start(cli)
    term.shows("tmuxish: 2 sessions", "other-36")
    term.send(UP)
    term.shows("web-42")

    def rule() -> str:
        return term.line_with(f"session {a} (web)")

    assert len(rule()) == 80
    assert "Esc quit" in term.lines()[23]
    term.resize(40, 120)
    wait_for(lambda: len(rule()) == 120, what="the layout to widen")
    wait_for(lambda: "Esc quit" in term.lines()[39], what="the help line on the new bottom row")
    term.resize(12, 50)
    wait_for(lambda: len(rule()) == 50, what="the layout to narrow")
    lines = term.lines()
    assert len(lines) == 12 and "move" in lines[11]
    assert all(len(line) <= 50 for line in lines)
    assert "tmuxish: 2 sessions" in lines[0]
    term.send(ESC)
    assert term.exit_status() == 0


def test_attach_without_target_attaches_the_most_recent(cli: Cli) -> None:
    """Issue 14: as tmux's `attach` and the README say, not the chooser; a leftover exited
    session, even a newer one, does not change that."""
    a, b = two_sessions(cli)
    term = Term(cli, "attach", str(a))
    term.shows("web-42")
    attached_to_a = wait_for(lambda: cli.session(a)["clients"] == 1, what="a client on a")
    assert attached_to_a
    term.send(DETACH)
    term.shows(f"[detached from session web ({a})]")
    assert term.exit_status() == 0
    gone = cli.new("sh", "-c", "exit 3")
    wait_for(lambda: cli.session(gone)["status"] == "exited", what="the session to exit")
    term = start(cli, "attach")
    term.shows("web-42", gone=("tmuxish:",))
    wait_for(lambda: cli.session(a)["clients"] == 1, what="a client on session a")
    assert cli.session(b)["clients"] == 0
    term.send(DETACH)
    term.shows(f"[detached from session web ({a})]")
    assert term.exit_status() == 0


def test_attach_without_target_and_no_running_session(cli: Cli) -> None:
    gone = cli.new("sh", "-c", "exit 3")
    wait_for(lambda: cli.session(gone)["status"] == "exited", what="the session to exit")
    term = start(cli, "attach")
    term.shows("tmuxish: no running sessions")
    assert term.exit_status() == 1


def test_choose_always_opens_the_chooser_and_r_attaches_read_only(cli: Cli) -> None:
    sid = cli.new(*shell(cli))
    cli.run("send", str(sid), "-l", "echo one-$((0+1))\r")
    wait_for(lambda: "one-1\n" in cli.run("capture", str(sid)).stdout, what="output")
    term = start(cli, "choose", "-r")
    term.shows("tmuxish: 1 session (attaching read-only)", "Enter attach read-only", "one-1")
    term.send("\r")
    term.shows("one-1", gone=("tmuxish: 1 session",))
    wait_for(lambda: cli.session(sid)["clients"] == 1, what="a client")
    term.send("echo typed-$((2+2))\r")  # read-only: goes nowhere
    cli.run("send", str(sid), "-l", "echo sent-$((3+3))\r")
    term.shows("sent-6")
    assert "typed-4" not in cli.run("capture", str(sid)).stdout
    term.send(DETACH)
    term.shows(f"[detached from session {sid}]")
    assert term.exit_status() == 0


def test_attach_without_terminal_keeps_old_behaviour(cli: Cli) -> None:
    two_sessions(cli)
    proc = cli.run("attach", check=False)  # stdin is /dev/null
    assert proc.returncode == 2
    assert "attach needs a terminal" in proc.stderr


def test_one_session_attaches_directly(cli: Cli) -> None:
    sid = cli.new(*shell(cli))
    term = start(cli)
    term.shows(SHOWN)
    wait_for(lambda: cli.session(sid)["clients"] == 1, what="a client")
    assert "tmuxish:" not in term.text()
    term.send(DETACH)
    term.shows(f"[detached from session {sid}]")
    assert term.exit_status() == 0


def test_exited_leftovers_do_not_make_a_choice(cli: Cli) -> None:
    """Issue 14: one leftover exited session was enough to bring up the chooser. `tmuxish`
    alone attaches to the one running session, and starts one when none runs."""
    gone = cli.new("sh", "-c", "exit 3")
    wait_for(lambda: cli.session(gone)["status"] == "exited", what="the session to exit")
    sid = cli.new(*shell(cli))
    term = start(cli)
    term.shows(SHOWN)
    wait_for(lambda: cli.session(sid)["clients"] == 1, what="a client")
    assert "tmuxish:" not in term.text()
    term.send(DETACH)
    term.shows(f"[detached from session {sid}]")
    assert term.exit_status() == 0
    cli.run("kill", str(sid))
    wait_for(lambda: cli.session(sid)["status"] == "exited", what="the shell to end")
    term = start(cli)
    term.shows(SHOWN)
    new = wait_for(lambda: [s for s in cli.sessions() if s["status"] == "running"], what="new")
    assert len(cli.sessions()) == 3 and new[0]["id"] not in (gone, sid)
    assert "tmuxish:" not in term.text()
    term.send(DETACH)
    assert term.exit_status() == 0


def test_no_session_starts_one(cli: Cli) -> None:
    shell(cli)
    assert cli.server_pid() is None
    term = start(cli)
    term.shows(SHOWN)
    sessions = wait_for(cli.sessions, what="a session")
    assert len(sessions) == 1 and sessions[0]["command"] == ["/bin/sh"]
    term.send("echo first-$((1+1))\r")
    term.shows("first-2")
    term.send(DETACH)
    term.shows(f"[detached from session {sessions[0]['id']}]")
    assert term.exit_status() == 0


def test_exited_session_is_listed_and_cannot_be_attached(cli: Cli) -> None:
    a, _ = two_sessions(cli)
    gone = cli.new("sh", "-c", "exit 3")
    wait_for(lambda: cli.session(gone)["status"] == "exited", what="the session to exit")
    term = start(cli)
    term.shows("tmuxish: 3 sessions", "exited (3)")
    term.send("3")  # type to filter by id
    term.shows("1 shown")
    term.send("\r")
    term.shows(f"session {gone} has exited; Ctrl-X removes it")
    term.send(CTRL_X)
    term.shows(f"remove exited session {gone}? (y/n)")
    term.send("y")
    term.shows("tmuxish: 2 sessions")
    assert gone not in [s["id"] for s in cli.sessions()]
    term.send(ESC + ESC)
    assert term.exit_status() == 0
    assert a in [s["id"] for s in cli.sessions()]


def test_no_command_without_terminal_prints_help(cli: Cli) -> None:
    proc = cli.run()
    assert "usage: tmuxish" in proc.stdout
    assert cli.server_pid() is None
