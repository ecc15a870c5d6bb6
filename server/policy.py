"""Pure policies: which size a session takes when clients with different terminals attach."""

from __future__ import annotations

from typing import Final, NamedTuple

from tmuxish.protocol import WINDOW_SIZES

POLICIES: Final = WINDOW_SIZES


# A NamedTuple, not a dataclass: the dataclasses import costs ~8 ms.
class ClientSize(NamedTuple):
    cols: int
    rows: int
    #: Monotonic time of the client's last attach, keystroke or resize.
    active: float
    readonly: bool = False


def choose_size(clients: list[ClientSize], policy: str) -> tuple[int, int] | None:
    """The size the session should take, or None to keep its current size.

    Read-only clients and clients that reported no size (0x0) never decide.
    """
    candidates = [c for c in clients if not c.readonly and c.cols > 0 and c.rows > 0]
    if not candidates:
        return None
    if policy == "smallest":
        return min(c.cols for c in candidates), min(c.rows for c in candidates)
    if policy == "largest":
        return max(c.cols for c in candidates), max(c.rows for c in candidates)
    latest = max(candidates, key=lambda c: c.active)
    return latest.cols, latest.rows


def validate_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"unknown window-size policy {policy!r}: use one of {', '.join(POLICIES)}")
    return policy
