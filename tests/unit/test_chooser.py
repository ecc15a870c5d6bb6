"""The chooser's pure helpers and its key-driven state machine, without a terminal."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tmuxish.client.chooser import (
    FIXED_ROWS,
    Choice,
    ChooserState,
    cell_width,
    clean,
    filter_sessions,
    fit,
    format_age,
    format_rows,
    list_height,
    matches,
    preview_lines,
    sort_sessions,
    status_text,
)
from tmuxish.errors import NameInUse, ServerGone, TmuxishError

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def session(
    sid: int,
    name: str | None = None,
    command: tuple[str, ...] = ("sh",),
    status: str = "running",
    exit_code: int | None = None,
    clients: int = 0,
    age: float = 5,
) -> dict[str, Any]:
    return {
        "id": sid,
        "name": name,
        "command": list(command),
        "status": status,
        "exit_code": exit_code,
        "clients": clients,
        "cols": 80,
        "rows": 24,
        "created": (NOW - timedelta(seconds=age)).isoformat(timespec="seconds"),
    }


# -- helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (86399, "23h"),
        (86400, "1d"),
    ],
)
def test_age_units(seconds: int, text: str) -> None:
    created = (NOW - timedelta(seconds=seconds)).isoformat()
    assert format_age(created, NOW) == text


def test_age_odd_input() -> None:
    assert format_age("not a date", NOW) == "?"
    assert format_age("", NOW) == "?"
    # Naive timestamps are taken as UTC; a clock that went backwards shows 0s, not a minus.
    assert format_age("2024-05-01T11:59:00", NOW) == "1m"
    assert format_age((NOW + timedelta(seconds=30)).isoformat(), NOW) == "0s"


def test_status_text() -> None:
    assert status_text(session(1)) == "running"
    assert status_text(session(1, status="exited", exit_code=3)) == "exited (3)"


def test_matches_id_name_command_status_case_insensitive() -> None:
    s = session(12, name="Web", command=("python", "-m", "http.server"))
    assert matches(s, "")
    assert matches(s, "12")
    assert matches(s, "web")
    assert matches(s, "HTTP")
    assert matches(s, "running")
    assert matches(s, "web  http")  # every term must occur
    assert not matches(s, "web nginx")
    assert not matches(s, "db")


def test_filter_keeps_order() -> None:
    sessions = [session(1, "api"), session(2, "web"), session(3, "webhook")]
    assert [s["id"] for s in filter_sessions(sessions, "web")] == [2, 3]
    assert [s["id"] for s in filter_sessions(sessions, "")] == [1, 2, 3]
    assert filter_sessions(sessions, "zzz") == []


def test_sort_running_first_then_id() -> None:
    sessions = [
        session(3),
        session(1, status="exited", exit_code=0),
        session(10),
        session(2),
    ]
    assert [s["id"] for s in sort_sessions(sessions)] == [2, 3, 10, 1]


def test_fit_and_width() -> None:
    assert fit("hello", 10) == "hello"
    assert fit("hello world", 6) == "hello…"
    assert fit("hello", 0) == ""
    assert cell_width("日本") == 4
    assert fit("日本語", 5) == "日本…"
    assert cell_width(fit("日本語", 4)) <= 4
    assert clean("a\x1b[31mb\n") == "a?[31mb?"


def test_format_rows_columns() -> None:
    sessions = [
        session(1, "web", ("sh",), age=120),
        session(2, None, ("top",), status="exited", exit_code=130, clients=2, age=7200),
    ]
    header, rows = format_rows(sessions, 78, NOW)
    assert header.split() == ["ID", "NAME", "COMMAND", "STATUS", "CLIENTS", "AGE"]
    assert rows[0].split() == ["1", "web", "sh", "running", "0", "2m"]
    assert rows[1].split() == ["2", "-", "top", "exited", "(130)", "2", "2h"]
    # Columns line up under the header.
    for col in ("STATUS", "AGE"):
        start = header.index(col)
        assert all(row[start - 1] == " " and row[start] != " " for row in rows)


def test_format_rows_long_command_fits_width() -> None:
    long = tuple(f"--option-{i}" for i in range(30))
    sessions = [session(1, "x" * 40, ("prog", *long)), session(22)]
    for width in (78, 60, 40, 20):
        header, rows = format_rows(sessions, width, NOW)
        assert all(cell_width(line) <= width for line in [header, *rows])
    header, rows = format_rows(sessions, 78, NOW)
    assert "…" in rows[0]  # command and name were cut, not wrapped
    assert rows[0].rstrip().endswith("5s")  # the later columns survive


def test_format_rows_sanitises_control_characters() -> None:
    _, rows = format_rows([session(1, "a\x1bb", ("echo", "x\ny"))], 78, NOW)
    assert "\x1b" not in rows[0] and "\n" not in rows[0]


def test_preview_lines() -> None:
    text = "one\ntwo\nthree\n\n   \n"
    assert preview_lines(text, 10) == ["one", "two", "three"]
    assert preview_lines(text, 2) == ["two", "three"]
    assert preview_lines(text, 0) == []
    assert preview_lines("", 5) == []


def test_list_height() -> None:
    assert list_height(2, 24) == 2
    assert list_height(0, 24) == 1
    assert list_height(50, 24) == (24 - FIXED_ROWS) // 2
    assert list_height(50, 4) == 1


def test_chooser_module_does_not_import_prompt_toolkit() -> None:
    code = (
        "import sys, tmuxish.client.chooser, tmuxish.client.commands, tmuxish.cli; "
        "assert 'prompt_toolkit' not in sys.modules, 'prompt_toolkit imported'"
    )
    subprocess.run([sys.executable, "-P", "-c", code], check=True)


# -- state -------------------------------------------------------------------------------------


class FakeBackend:
    def __init__(self, sessions: list[dict[str, Any]]) -> None:
        self.sessions = sessions
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.screens: dict[int, str] = {}
        self.fail: dict[str, TmuxishError] = {}

    def request(self, command: str, /, **args: Any) -> Any:
        self.calls.append((command, args))
        if command in self.fail:
            raise self.fail[command]
        if command == "ls":
            return [dict(s) for s in self.sessions]
        if command == "capture":
            if args["target"] not in self.screens:
                raise TmuxishError(f"session {args['target']} has no screen model")
            return self.screens[args["target"]]
        if command == "rm":
            self.sessions = [s for s in self.sessions if s["id"] != args["target"]]
            return {}
        if command == "kill":
            for s in self.sessions:
                if s["id"] == args["target"]:
                    s["status"], s["exit_code"] = "exited", 129
            return {}
        if command == "rename":
            for s in self.sessions:
                if s["id"] == args["target"]:
                    s["name"] = args["name"]
            return {}
        raise AssertionError(command)


def mode(state: ChooserState) -> str:
    return state.mode  # a call, so that mypy does not narrow the attribute between actions


def make(*sessions: dict[str, Any], inside: int | None = None) -> tuple[ChooserState, FakeBackend]:
    backend = FakeBackend(list(sessions))
    return ChooserState(backend, inside=inside, clock=lambda: NOW), backend


def test_move_clamps() -> None:
    state, _ = make(session(1), session(2), session(3))
    assert state.selected_id == 1
    state.move(-1)
    assert state.selected_id == 1
    state.move(5)
    assert state.selected_id == 3
    state.move_to(0)
    assert state.selected_id == 1
    state.move_to(-1)
    assert state.selected_id == 3


def test_typing_filters_and_moves_selection_to_a_match() -> None:
    state, _ = make(session(1, "api"), session(2, "web"), session(3, "webhook"))
    state.type_text("w")
    state.type_text("e")
    assert state.query == "we"
    assert [s["id"] for s in state.visible] == [2, 3]
    assert state.selected_id == 2
    state.move(1)
    state.type_text("b")
    assert state.selected_id == 3  # still visible: kept
    state.backspace()
    state.backspace()
    state.backspace()
    assert state.query == ""
    assert state.selected_id == 3


def test_escape_backs_out_one_step() -> None:
    state, _ = make(session(1, "api"), session(2, "web"))
    state.type_text("web")
    state.escape()  # clears the filter
    assert state.query == "" and not state.done
    state.escape()  # then quits
    assert state.done and state.result is None


def test_letters_only_filter() -> None:
    """Issue 14: `n` started a session while the user meant to filter. Every printable key,
    the old command letters included, now only filters."""
    state, backend = make(session(1, "nginx"), session(2, "web"))
    for ch in "nxqrjk/":
        state.type_text(ch)
    assert state.query == "nxqrjk/" and not state.done and mode(state) == "list"
    assert [c for c, _ in backend.calls if c != "ls"] == []


def test_most_recent_is_preselected() -> None:
    backend = FakeBackend([session(1), session(2), session(3)])
    state = ChooserState(backend, inside=None, clock=lambda: NOW, recent=2)
    assert state.selected_id == 2
    state = ChooserState(backend, inside=None, clock=lambda: NOW, recent=None)
    assert state.selected_id == 1


def test_readonly_is_shown() -> None:
    backend = FakeBackend([session(1)])
    state = ChooserState(backend, inside=None, clock=lambda: NOW, readonly=True)
    assert "read-only" in state.title() and "attach read-only" in state.help_line()
    assert len(state.help_line()) <= 79


def test_enter_attaches_running_only() -> None:
    state, _ = make(session(1), session(2, status="exited", exit_code=1), session(3), inside=3)
    state.enter()
    assert state.done and state.result == Choice("attach", 1)

    state, _ = make(session(2, status="exited", exit_code=1))
    state.enter()
    assert not state.done and state.error and "exited" in state.message

    state, _ = make(session(3), inside=3)
    state.enter()
    assert not state.done and "inside" in state.message

    state, _ = make(session(1))
    state.type_text("nomatch")
    state.enter()
    assert not state.done and state.error


def test_new_and_quit() -> None:
    state, _ = make(session(1))
    state.new()
    assert state.done and state.result == Choice("new")
    state, _ = make(session(1))
    state.quit()
    assert state.done and state.result is None


def test_kill_asks_then_kills_as_the_cli_does() -> None:
    """Issue 14: kill means `tmuxish kill` (SIGHUP; the session stays, exited), not rm -f."""
    state, backend = make(session(1), session(2), session(3))
    state.move(1)
    state.ask_kill()
    assert mode(state) == "confirm" and "kill session 2" in state.message
    state.confirm(False)
    assert mode(state) == "list" and len(state.sessions) == 3
    assert not any(c in ("rm", "kill") for c, _ in backend.calls)

    state.ask_kill()
    state.confirm(True)
    assert ("kill", {"target": 2, "signal": "HUP"}) in backend.calls
    assert not any(c == "rm" for c, _ in backend.calls)
    assert [s["id"] for s in state.sessions] == [1, 3, 2]  # exited ones sort last
    assert state.selected_id == 2
    assert "killed session 2" in state.message

    state.ask_kill()  # now exited: removing it
    assert "remove exited session 2" in state.message
    state.confirm(True)
    assert ("rm", {"target": 2, "force": False}) in backend.calls
    assert [s["id"] for s in state.sessions] == [1, 3]
    assert "removed session 2" in state.message


def test_kill_warns_about_own_session() -> None:
    state, _ = make(session(1), inside=1)
    state.ask_kill()
    assert state.message == "kill session 1, the one this terminal is inside? (y/n)"


def test_kill_exited_says_remove_and_errors_are_shown() -> None:
    state, backend = make(session(4, status="exited", exit_code=0))
    state.ask_kill()
    assert "remove exited session 4" in state.message
    backend.fail["rm"] = TmuxishError("no session 4")
    state.confirm(True)
    assert state.error and state.message == "no session 4" and mode(state) == "list"


def test_kill_applies_to_the_session_asked_about() -> None:
    state, backend = make(session(1), session(2))
    state.ask_kill()
    backend.sessions.insert(0, session(0))
    state.refresh()  # the periodic refresh runs while the question is open
    state.confirm(True)
    assert ("kill", {"target": 1, "signal": "HUP"}) in backend.calls


def test_rename() -> None:
    state, backend = make(session(1, "web"), session(2))
    assert state.start_rename() == "web"
    assert mode(state) == "rename"
    state.finish_rename("api")
    assert ("rename", {"target": 1, "name": "api"}) in backend.calls
    assert state.sessions[0]["name"] == "api" and mode(state) == "list"

    state.move(1)
    assert state.start_rename() == ""
    state.finish_rename(None)
    assert mode(state) == "list" and not any(
        c == "rename" and a["target"] == 2 for c, a in backend.calls
    )

    backend.fail["rename"] = NameInUse("name 'api' is in use")
    state.start_rename()
    state.finish_rename("api")
    assert state.error and "in use" in state.message


def test_preview_and_placeholder() -> None:
    state, backend = make(session(1), session(2))
    backend.screens[1] = "$ echo hi\nhi\n$\n\n"
    state.load_preview()
    assert state.preview_text(10) == ["$ echo hi", "hi", "$"]
    state.move(1)
    state.load_preview()  # session 2 has no screen model: capture fails
    text = state.preview_text(10)
    assert len(text) == 1 and "no preview" in text[0] and "no screen model" in text[0]
    n = len(backend.calls)
    state.load_preview()  # unchanged selection: no new request
    assert len(backend.calls) == n
    state.tick()
    assert len(backend.calls) == n + 2  # ls + capture


def test_preview_when_nothing_selected() -> None:
    state, _ = make()
    assert "no sessions" in state.preview_text(5)[0]
    state, _ = make(session(1))
    state.type_text("zzz")
    state.load_preview()
    assert "no session matches" in state.preview_text(5)[0]


def test_refresh_keeps_selection_by_id() -> None:
    state, backend = make(session(1), session(2), session(3))
    state.move(2)
    backend.sessions.insert(0, session(0))
    state.refresh()
    assert state.selected_id == 3
    backend.sessions = [s for s in backend.sessions if s["id"] != 3]
    state.refresh()
    assert state.selected_id == 2  # gone: the row now at its old place, clamped


def test_server_gone_propagates() -> None:
    state, backend = make(session(1), session(2))
    backend.fail["capture"] = ServerGone("lost connection")
    with pytest.raises(ServerGone):
        state.load_preview()


def test_status_and_help_lines() -> None:
    state, _ = make(session(1), session(2))
    assert state.status_line() == ""
    assert "Esc quit" in state.help_line() and "^O new" in state.help_line()
    assert len(state.help_line()) <= 79  # fits an 80-column terminal with its margin
    state.type_text("x")
    assert state.status_line() == "filter: x"
    assert "Esc" in state.help_line()
    assert state.title() == "tmuxish: 2 sessions, 0 shown"
