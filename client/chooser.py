"""The interactive session chooser: `tmuxish` alone (with a choice to make), or `tmuxish choose`.

Three layers, so that most of it is testable without a terminal:

* pure helpers: filtering, sorting, row formatting, age, preview trimming, list height;
* :class:`ChooserState`, the state machine behind the keys, which talks to the server through
  anything with ``request(command, **args)`` (the blocking :class:`Connection` in real use);
* :func:`choose`, the prompt_toolkit Application that draws the state and maps keys onto it.

prompt_toolkit is imported only inside :func:`choose` (it costs ~250 ms to import), so the
flow in :func:`main` attaches straight away, without it, when there is nothing to choose.
The Application has exited and restored the terminal by the time :func:`choose` returns; only
then does the raw attach relay start (ARCHITECTURE.md section 6).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tmuxish.client.listing import format_age
from tmuxish.errors import ServerGone, TmuxishError

if TYPE_CHECKING:
    from prompt_toolkit.formatted_text import StyleAndTextTuples

#: Seconds between refreshes of the list and of the preview.
REFRESH_INTERVAL = 1.0
#: Rows of the screen that are not the list or the preview: title, header, preview rule,
#: status line, help line.
FIXED_ROWS = 5
#: The widest a NAME column gets before names are cut.
NAME_MAX = 20
#: The narrowest COMMAND column before the row is simply cut at the right edge.
COMMAND_MIN = 8
HEADERS = ("ID", "NAME", "COMMAND", "STATUS", "CLIENTS", "AGE")
GAP = "  "
#: Room for the selection marker in front of every row.
MARKER = 2

Session = dict[str, Any]


# -- pure helpers ------------------------------------------------------------------------------


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or ch in "\u200b\u200c\u200d\ufeff":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cell_width(text: str) -> int:
    """Columns ``text`` takes on a terminal (wide CJK characters count two)."""
    return sum(_char_width(ch) for ch in text)


def clean(text: str) -> str:
    """``text`` with control characters replaced, so a hostile name cannot drive the terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def fit(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` columns, ending in an ellipsis when it was cut."""
    if width <= 0:
        return ""
    if cell_width(text) <= width:
        return text
    out: list[str] = []
    used = 0
    for ch in text:
        w = _char_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` columns (never cut)."""
    return text + " " * max(0, width - cell_width(text))


def is_running(session: Session) -> bool:
    return bool(session.get("status") == "running")


def status_text(session: Session) -> str:
    if is_running(session):
        return "running"
    code = session.get("exit_code")
    return f"exited ({'?' if code is None else code})"


def command_text(session: Session) -> str:
    return " ".join(str(a) for a in session.get("command") or ())


def describe(session: Session) -> str:
    """``session 3`` or ``session 3 (web)``, for messages."""
    name = session.get("name")
    return f"session {session['id']}" + (f" ({clean(name)})" if name else "")


def matches(session: Session, query: str) -> bool:
    """Whether every whitespace-separated term of ``query`` occurs (case-insensitively) in the
    session's id, name, command or status."""
    haystack = " ".join(
        (str(session["id"]), session.get("name") or "", command_text(session), status_text(session))
    ).lower()
    return all(term in haystack for term in query.lower().split())


def filter_sessions(sessions: Iterable[Session], query: str) -> list[Session]:
    return [s for s in sessions if matches(s, query)]


def sort_sessions(sessions: Iterable[Session]) -> list[Session]:
    """Running sessions first, each group by id (the order they were created)."""
    return sorted(sessions, key=lambda s: (not is_running(s), int(s["id"])))


def row_cells(session: Session, now: datetime) -> tuple[str, ...]:
    return (
        str(session["id"]),
        clean(session.get("name") or "-"),
        clean(command_text(session)),
        status_text(session),
        str(session.get("clients", 0)),
        format_age(str(session.get("created", "")), now),
    )


def column_widths(cells: Sequence[Sequence[str]], width: int) -> list[int]:
    """Column widths for rows of ``cells`` in ``width`` columns: NAME is capped, COMMAND takes
    what the others leave (at least COMMAND_MIN; a narrower terminal cuts the row instead)."""
    widths = [cell_width(h) for h in HEADERS]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], cell_width(cell))
    widths[1] = min(widths[1], NAME_MAX)
    others = sum(w for i, w in enumerate(widths) if i != 2) + len(GAP) * (len(HEADERS) - 1)
    widths[2] = min(widths[2], max(COMMAND_MIN, width - others))
    return widths


def format_rows(sessions: Sequence[Session], width: int, now: datetime) -> tuple[str, list[str]]:
    """The header line and one line per session, each at most ``width`` columns."""
    cells = [row_cells(s, now) for s in sessions]
    widths = column_widths(cells, width)

    def line(row: Sequence[str]) -> str:
        text = GAP.join(pad(fit(c, w), w) for c, w in zip(row, widths, strict=True)).rstrip()
        return fit(text, width)

    return line(HEADERS), [line(row) for row in cells]


def preview_lines(text: str, height: int) -> list[str]:
    """The part of a captured screen that fits ``height`` rows: trailing blank rows dropped,
    then the last ``height`` rows, so the cursor's neighbourhood (a shell prompt) stays visible."""
    if height <= 0:
        return []
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines[-height:]


def list_height(count: int, term_rows: int) -> int:
    """Rows for the session list: all of them if they fit in half of what the fixed rows leave,
    the rest going to the preview; always at least one."""
    room = max(1, (term_rows - FIXED_ROWS) // 2)
    return max(1, min(max(count, 1), room))


# -- state -------------------------------------------------------------------------------------


class Backend(Protocol):
    def request(self, command: str, /, **args: Any) -> Any: ...


@dataclass(frozen=True)
class Choice:
    """What the user picked: attach to ``session_id``, or start a new session and attach."""

    action: Literal["attach", "new"]
    session_id: int | None = None


class ChooserState:
    """Everything the chooser shows and every action its keys take, without a terminal.

    Keys in list mode: every printable character goes to the filter, so typing never runs a
    command by surprise (issue 14: `n` started a session while the user meant to filter); the
    commands are on Enter and control keys. Esc clears the filter, then quits.
    """

    def __init__(
        self,
        backend: Backend,
        sessions: Iterable[Session] | None = None,
        inside: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        recent: int | None = None,
        readonly: bool = False,
    ) -> None:
        self.backend = backend
        self.inside = inside
        self.readonly = readonly
        self.clock = clock
        self.sessions: list[Session] = []
        self.query = ""
        self.mode: Literal["list", "confirm", "rename"] = "list"
        self.message = ""
        self.error = False
        self.selected_id: int | None = None
        self.pending_id: int | None = None
        self.pending_running = False
        self.preview_id: int | None = None
        self.preview = ""
        self.preview_error: str | None = None
        self.done = False
        self.result: Choice | None = None
        #: The most recently used session starts selected, as `attach` with no target picks it.
        self.selected_id = recent
        if sessions is None:
            self.refresh()
        else:
            self.sessions = sort_sessions(sessions)
            self._keep_selection(0)

    # -- selection --

    @property
    def visible(self) -> list[Session]:
        return filter_sessions(self.sessions, self.query)

    @property
    def index(self) -> int:
        for i, s in enumerate(self.visible):
            if s["id"] == self.selected_id:
                return i
        return 0

    def selected(self) -> Session | None:
        for s in self.visible:
            if s["id"] == self.selected_id:
                return s
        return None

    def _keep_selection(self, fallback_index: int) -> None:
        visible = self.visible
        if any(s["id"] == self.selected_id for s in visible):
            return
        if not visible:
            self.selected_id = None
            return
        self.selected_id = visible[min(max(fallback_index, 0), len(visible) - 1)]["id"]

    def move(self, delta: int) -> None:
        visible = self.visible
        if visible:
            i = min(max(self.index + delta, 0), len(visible) - 1)
            self.selected_id = visible[i]["id"]

    def move_to(self, index: int) -> None:
        visible = self.visible
        if visible:
            i = index if index >= 0 else len(visible) + index
            self.selected_id = visible[min(max(i, 0), len(visible) - 1)]["id"]

    # -- server --

    def refresh(self) -> None:
        index = self.index
        self.sessions = sort_sessions(self.backend.request("ls"))
        self._keep_selection(index)

    def load_preview(self, force: bool = False) -> None:
        """Capture the selected session's screen when the selection changed (or ``force``)."""
        session = self.selected()
        sid = session["id"] if session else None
        if sid == self.preview_id and not force:
            return
        self.preview_id = sid
        self.preview, self.preview_error = "", None
        if session is None:
            return
        try:
            self.preview = str(self.backend.request("capture", target=sid, escapes=False))
        except ServerGone:
            raise
        except TmuxishError as exc:
            self.preview_error = str(exc)

    def tick(self) -> None:
        """The periodic refresh: the list, then the preview of whatever is selected."""
        self.refresh()
        self.load_preview(force=True)

    def _say(self, message: str, error: bool = False) -> None:
        self.message, self.error = message, error

    # -- filter --

    def type_text(self, text: str) -> None:
        text = clean(text)
        if not text:
            return
        self.query += text
        self._keep_selection(0)

    def backspace(self) -> None:
        self.query = self.query[:-1]
        self._keep_selection(0)

    def clear_filter(self) -> None:
        self.query = ""
        self._keep_selection(0)

    def escape(self) -> None:
        """Back out one step: clear the filter, then quit."""
        if self.query:
            self.clear_filter()
        else:
            self.quit()

    # -- actions --

    def quit(self) -> None:
        self.done, self.result = True, None

    def new(self) -> None:
        self.done, self.result = True, Choice("new")

    def enter(self) -> None:
        session = self.selected()
        if session is None:
            self._say("no session selected; Ctrl-O starts a new one", error=True)
        elif not is_running(session):
            self._say(f"{describe(session)} has exited; Ctrl-X removes it", error=True)
        elif session["id"] == self.inside:
            self._say(f"this terminal is inside {describe(session)}", error=True)
        else:
            self.done, self.result = True, Choice("attach", int(session["id"]))

    def ask_kill(self) -> None:
        session = self.selected()
        if session is None:
            self._say("no session selected", error=True)
            return
        self.pending_id = int(session["id"])
        self.pending_running = is_running(session)
        self.mode = "confirm"
        verb = "kill" if self.pending_running else "remove exited"
        note = ", the one this terminal is inside" if session["id"] == self.inside else ""
        self._say(f"{verb} {describe(session)}{note}? (y/n)")

    def confirm(self, yes: bool) -> None:
        """Answer the kill question: a running session is killed as `tmuxish kill` does (SIGHUP;
        it stays listed as exited), an exited one is removed as `tmuxish rm` does."""
        self.mode = "list"
        sid, self.pending_id = self.pending_id, None
        if not yes or sid is None:
            self._say("")
            return
        try:
            if self.pending_running:
                self.backend.request("kill", target=sid, signal="HUP")
                done = f"killed session {sid} (SIGHUP)"
            else:
                self.backend.request("rm", target=sid, force=False)
                done = f"removed session {sid}"
        except ServerGone:
            raise
        except TmuxishError as exc:
            self._say(str(exc), error=True)
        else:
            self._say(done)
        self.refresh()

    def start_rename(self) -> str | None:
        """Enter rename mode; returns the text to start the prompt with (the current name)."""
        session = self.selected()
        if session is None:
            self._say("no session selected", error=True)
            return None
        self.pending_id = int(session["id"])
        self.mode = "rename"
        self._say("")
        return str(session.get("name") or "")

    def finish_rename(self, name: str | None) -> None:
        """Rename the session asked about to ``name``; None cancels."""
        self.mode = "list"
        sid, self.pending_id = self.pending_id, None
        if name is None or sid is None:
            self._say("")
            return
        try:
            self.backend.request("rename", target=sid, name=name)
        except ServerGone:
            raise
        except TmuxishError as exc:
            self._say(str(exc), error=True)
        else:
            self._say(f"renamed session {sid} to {clean(name)}")
        self.refresh()

    # -- text for the screen --

    def title(self) -> str:
        n = len(self.sessions)
        shown = len(self.visible)
        text = f"tmuxish: {n} session{'s' if n != 1 else ''}"
        if self.query:
            text += f", {shown} shown"
        if self.readonly:
            text += " (attaching read-only)"
        return text

    def status_line(self) -> str:
        if self.mode == "confirm" or self.message:
            return self.message
        if self.query:
            return f"filter: {self.query}"
        return ""

    def help_line(self) -> str:
        if self.mode == "confirm":
            return "y yes  any other key no"
        if self.mode == "rename":
            return "Enter rename  Esc cancel"
        enter = "Enter attach read-only" if self.readonly else "Enter attach"
        if self.query:
            return f"arrows move  {enter}  Backspace delete  Esc clear filter"
        text = f"arrows move  {enter}  ^O new  ^X kill  ^R rename  Esc quit"
        # The read-only variant would not fit 80 columns with the filter hint.
        return text if self.readonly else text + "  type to filter"

    def preview_text(self, height: int) -> list[str]:
        if self.selected() is None:
            if not self.sessions:
                return ["  (no sessions: Ctrl-O starts one)"]
            return [f"  (no session matches {self.query!r})"]
        if self.preview_error is not None:
            return [f"  (no preview: {self.preview_error})"]
        lines = preview_lines(self.preview, height)
        return lines or ["  (empty screen)"]


# -- the prompt_toolkit UI ---------------------------------------------------------------------


def choose(state: ChooserState) -> Choice | None:
    """Run the full-screen chooser until the user picks something or quits.

    Returns with the terminal restored (alternate screen left, cooked mode back). A lost server
    connection is raised as :class:`ServerGone` after the UI has closed.
    """
    from prompt_toolkit.application import Application, get_app
    from prompt_toolkit.buffer import Buffer
    from prompt_toolkit.data_structures import Point
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
    from prompt_toolkit.keys import Keys
    from prompt_toolkit.layout import ConditionalContainer, HSplit, Layout, VSplit, Window
    from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
    from prompt_toolkit.layout.dimension import Dimension
    from prompt_toolkit.styles import Style

    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    rule = "─" if encoding.startswith("utf") else "-"

    def term_size() -> tuple[int, int]:
        size = get_app().output.get_size()
        return size.columns, size.rows

    def rows_for_list() -> int:
        return list_height(len(state.visible), term_size()[1])

    def title() -> StyleAndTextTuples:
        cols, _ = term_size()
        return [("class:title", pad(fit(" " + state.title(), cols), cols))]

    def header() -> StyleAndTextTuples:
        cols, _ = term_size()
        head, _ = format_rows(state.visible, cols - MARKER, state.clock())
        return [("class:header", pad(" " * MARKER + head, cols))]

    def session_list() -> StyleAndTextTuples:
        cols, _ = term_size()
        visible = state.visible
        if not visible:
            text = "(no sessions)" if not state.sessions else "(nothing matches the filter)"
            return [("class:dim", " " * MARKER + text)]
        _, lines = format_rows(visible, cols - MARKER, state.clock())
        out: StyleAndTextTuples = []
        for session, line in zip(visible, lines, strict=True):
            chosen = session["id"] == state.selected_id
            style = "class:selected" if chosen else ("" if is_running(session) else "class:dim")
            marker = "> " if chosen else "  "
            out.append((style, pad(marker + line, cols)))
            out.append(("", "\n"))
        return out[:-1]

    def preview_rule() -> StyleAndTextTuples:
        cols, _ = term_size()
        session = state.selected()
        label = " preview "
        if session is not None:
            label = f" {describe(session)}, {session.get('cols')}x{session.get('rows')} "
        text = fit(rule * 2 + label, cols)
        return [("class:rule", text + rule * max(0, cols - cell_width(text)))]

    def preview() -> StyleAndTextTuples:
        _, rows = term_size()
        height = max(1, rows - FIXED_ROWS - rows_for_list())
        style = "class:dim" if state.preview_error is not None or state.selected() is None else ""
        return [(style, "\n".join(state.preview_text(height)))]

    def status() -> StyleAndTextTuples:
        cols, _ = term_size()
        style = "class:error" if state.error else "class:status"
        return [(style, fit(state.status_line(), cols))]

    def help_line() -> StyleAndTextTuples:
        cols, _ = term_size()
        return [("class:help", pad(fit(" " + state.help_line(), cols), cols))]

    def rename_label() -> str:
        return f"new name for session {state.pending_id}: "

    rename_buffer = Buffer(multiline=False)
    list_window = Window(
        FormattedTextControl(
            session_list,
            focusable=True,
            show_cursor=False,
            get_cursor_position=lambda: Point(0, state.index),
        ),
        height=lambda: Dimension.exact(rows_for_list()),
        wrap_lines=False,
    )
    rename_window = Window(BufferControl(rename_buffer), height=1)
    renaming = Condition(lambda: state.mode == "rename")
    layout = Layout(
        HSplit(
            [
                Window(FormattedTextControl(title), height=1),
                Window(FormattedTextControl(header), height=1, wrap_lines=False),
                list_window,
                Window(FormattedTextControl(preview_rule), height=1),
                Window(FormattedTextControl(preview), wrap_lines=False),
                ConditionalContainer(
                    VSplit(
                        [
                            Window(
                                FormattedTextControl(lambda: [("class:status", rename_label())]),
                                width=lambda: Dimension.exact(cell_width(rename_label())),
                            ),
                            rename_window,
                        ]
                    ),
                    filter=renaming,
                ),
                ConditionalContainer(
                    Window(FormattedTextControl(status), height=1), filter=~renaming
                ),
                Window(FormattedTextControl(help_line), height=1),
            ]
        ),
        focused_element=list_window,
    )

    listing = Condition(lambda: state.mode == "list")
    confirming = Condition(lambda: state.mode == "confirm")
    kb = KeyBindings()

    def run(action: Callable[[], object]) -> None:
        app = get_app()
        state.message, state.error = "", False
        try:
            action()
            if state.done:
                app.exit(result=state.result)
                return
            state.load_preview()
        except ServerGone as exc:
            app.exit(exception=exc)

    def bind(*keys: str | Keys, filter: Any = listing, eager: bool = False) -> Any:
        def decorator(action: Callable[[], object]) -> Callable[[KeyPressEvent], None]:
            def handler(event: KeyPressEvent) -> None:
                run(action)

            kb.add(*keys, filter=filter, eager=eager)(handler)
            return handler

        return decorator

    bind("up")(lambda: state.move(-1))
    bind("c-p")(lambda: state.move(-1))
    bind("down")(lambda: state.move(1))
    bind("c-n")(lambda: state.move(1))
    bind("pageup")(lambda: state.move(-max(1, rows_for_list() - 1)))
    bind("pagedown")(lambda: state.move(max(1, rows_for_list() - 1)))
    bind("home")(lambda: state.move_to(0))
    bind("end")(lambda: state.move_to(-1))
    bind("enter")(state.enter)
    bind("escape", eager=True)(state.escape)
    bind("c-c")(state.quit)
    bind("c-o")(state.new)
    bind("c-x")(state.ask_kill)
    bind("backspace")(state.backspace)
    bind("c-u")(state.clear_filter)

    @kb.add(Keys.Any, filter=listing)
    def _(event: KeyPressEvent) -> None:
        data = event.data
        if data and data.isprintable():
            run(lambda: state.type_text(data))

    @kb.add(Keys.BracketedPaste, filter=listing)
    def _paste(event: KeyPressEvent) -> None:
        text = " ".join(event.data.split())
        run(lambda: state.type_text(text))

    @kb.add(Keys.Any, filter=confirming, eager=True)
    def _confirm(event: KeyPressEvent) -> None:
        yes = event.data in ("y", "Y")
        run(lambda: state.confirm(yes))

    @kb.add("c-r", filter=listing)
    def _rename(event: KeyPressEvent) -> None:
        initial = state.start_rename()
        if initial is not None:
            rename_buffer.text = initial
            rename_buffer.cursor_position = len(initial)
            event.app.layout.focus(rename_window)

    def end_rename(event: KeyPressEvent, name: str | None) -> None:
        event.app.layout.focus(list_window)
        rename_buffer.reset()
        run(lambda: state.finish_rename(name))

    @kb.add("enter", filter=renaming, eager=True)
    def _rename_done(event: KeyPressEvent) -> None:
        end_rename(event, rename_buffer.text)

    @kb.add("escape", filter=renaming, eager=True)
    @kb.add("c-c", filter=renaming, eager=True)
    def _rename_cancel(event: KeyPressEvent) -> None:
        end_rename(event, None)

    style = Style.from_dict(
        {
            "title": "reverse bold",
            "header": "bold",
            "selected": "reverse",
            "dim": "#888888",
            "rule": "#888888",
            "error": "#ff5555 bold",
            "help": "reverse",
        }
    )
    app: Application[Choice | None] = Application(
        layout=layout, key_bindings=kb, style=style, full_screen=True, mouse_support=False
    )
    # A lone Esc is told apart from an escape sequence after this long (default 0.5 s).
    app.ttimeoutlen = 0.05
    app.timeoutlen = 0.2

    async def refresher() -> None:
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            if state.mode == "rename":
                continue
            try:
                state.tick()
            except ServerGone as exc:
                app.exit(exception=exc)
                return
            app.invalidate()

    def pre_run() -> None:
        state.load_preview()
        app.create_background_task(refresher())
        # `kill CHOOSER`: SIGTERM's default would leave the user's terminal in raw mode on
        # the alternate screen; exiting the application restores it first.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGTERM, lambda: app.exit(exception=SystemExit(128 + signal.SIGTERM))
            )

    return app.run(pre_run=pre_run)


# -- the flow ----------------------------------------------------------------------------------


def _subcommand(args: argparse.Namespace, argv: list[str], *keep: str) -> argparse.Namespace:
    """Arguments for another subcommand, as the parser makes them, with the socket options
    (and the named options) carried over from ``args``."""
    from tmuxish.cli import build_parser

    ns = build_parser().parse_args(argv)
    for key in ("socket_path", "socket_name", "host", *keep):
        if getattr(args, key, None) is not None:
            setattr(ns, key, getattr(args, key))
    return ns


def new_session(args: argparse.Namespace) -> int:
    """`tmuxish new` with the default command, attached, on the socket ``args`` names."""
    from tmuxish.client import commands

    return commands.cmd_new(_subcommand(args, ["new"], "detach_keys"))


def attach_session(args: argparse.Namespace, session_id: int) -> int:
    """`tmuxish attach ID` over a fresh connection (the one attach path), keeping ``args``'
    attach options (`tmuxish choose -r` attaches read-only)."""
    from tmuxish.client import commands

    ns = _subcommand(args, ["attach", str(session_id)], "detach_keys", "readonly", "history")
    return commands.cmd_attach(ns)


def main(args: argparse.Namespace, *, always: bool) -> int:
    """`tmuxish` alone (``always`` False) or `tmuxish choose`, both with a terminal on stdin and
    stdout.

    `tmuxish` alone starts a session when none is running and attaches when exactly one is
    (exited leftovers do not make a choice); otherwise, and always for `choose`, the chooser,
    with the most recently used session selected. Then attach or start a new session, each
    over its own fresh connection once the chooser has restored the terminal.
    """
    from tmuxish import config
    from tmuxish.client import commands

    config.load()  # a broken config file is reported before anything is drawn
    choice: Choice | None
    with commands._connect(args, start=True) as conn:
        sessions: list[Session] = conn.request("ls")
        running = [s for s in sessions if is_running(s)]
        if not always and len(running) == 1:
            choice = Choice("attach", int(running[0]["id"]))
        elif not always and not running:
            choice = Choice("new")
        else:
            recent = int(conn.request("get", target=None)["id"]) if sessions else None
            state = ChooserState(
                conn,
                sessions,
                inside=commands._inside(args),
                recent=recent,
                readonly=bool(getattr(args, "readonly", False)),
            )
            choice = choose(state)
    if choice is None:
        return 0
    if choice.action == "new" or choice.session_id is None:
        return new_session(args)
    return attach_session(args, choice.session_id)
