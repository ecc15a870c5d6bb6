"""The session table `tmuxish ls` prints, and session ages as the chooser shows them too."""

from __future__ import annotations

from datetime import UTC, datetime

from tmuxish.errors import printable

#: Not typing.TYPE_CHECKING: importing typing (and re with it) costs `tmuxish ls` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any


def format_age(created: str, now: datetime) -> str:
    """How long ago ``created`` (ISO 8601) was, in the largest whole unit: 42s, 5m, 3h, 2d."""
    try:
        then = datetime.fromisoformat(created)
    except (TypeError, ValueError):
        return "?"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


#: Characters an argument may have and still be shown unquoted (shlex's set; importing shlex
#: would bring re, and `ls` starts faster without it).
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")


def quote(arg: str) -> str:
    """``arg`` as a shell would need it typed (``shlex.quote``), so `sh -c 'echo bye; exit 3'`
    reads back as it was given."""
    if arg and all(ch in _SAFE for ch in arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def format_table(sessions: list[dict[str, Any]]) -> str:
    rows = [("ID", "NAME", "COMMAND", "STATUS", "CLIENTS", "SIZE", "AGE")]
    for s in sessions:
        code = "?" if s["exit_code"] is None else s["exit_code"]
        status = s["status"] if s["status"] == "running" else f"exited ({code})"
        status = printable(str(status))
        if s["status"] == "running" and not s.get("screen", True):
            # No repaint and no capture for this one: say so where users look.
            status += " (no screen)"
        elif s["status"] == "running" and s.get("screen_behind"):
            # Output outran the screen model; it resyncs from the tail once output pauses.
            status += " (screen behind)"
        command = printable(" ".join(quote(arg) for arg in s["command"]))
        if len(command) > 40:
            command = command[:39] + "…"
        rows.append(
            (
                str(s["id"]),
                printable(s["name"] or "-"),
                command,
                status,
                str(s["clients"]),
                f"{s['cols']}x{s['rows']}",
                format_age(s["created"], datetime.now(UTC)),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in rows
    )
