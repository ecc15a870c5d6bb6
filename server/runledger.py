"""What a session's shell tracker remembers of ``run`` requests, so that a client whose server
went away mid-run (``tmuxish server upgrade``, or a crash the keeper recovers from) can follow the
same command on the next server (``run-follow``) and still get its output and exit status.

The ledger travels with the session's state. It holds the run in progress (its id, the token its
C and D marks carry, whether its C came) and the results of runs that ended while no client
followed them; a server that restores a run in progress keeps the session's output from then on
(the tracker's ring), for the follower to get first. Pure: marks in, values out.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tmuxish.server.shellhook import Mark

#: Results kept for runs that ended with no client following (the oldest go first).
KEPT_RESULTS = 16
#: Output a restarted server keeps for a run's follower (the oldest goes first past it), and
#: for how long it waits for the follower to come back.
BACKLOG_BYTES = 16 * 1024 * 1024
BACKLOG_WAIT = 60.0


class RunLedger:
    def __init__(self) -> None:
        #: The run in progress: {"id", "token" (None: any mark), "typed", "started",
        #: "started_at" (wall clock: it outlives a server)}.
        self.current: dict[str, Any] | None = None
        #: Run id -> {"exit_code", "duration"}, for runs that ended unfollowed.
        self.results: dict[str, dict[str, Any]] = {}
        #: A restored run in progress: the output since this server took over, for its
        #: follower (None: nothing kept), until when it is kept, how much of its start was
        #: dropped, and whether the run's C had come by then.
        self.backlog: bytearray | None = None
        self._backlog_until = 0.0
        self.backlog_dropped = 0
        self.resume_started = False

    def begin(self, run_id: str, token: str | None, typed: bool) -> None:
        self.current = {
            "id": run_id,
            "token": token,
            "typed": typed,
            "started": False,
            "started_at": 0.0,
        }
        self.backlog = None

    def end(self, run_id: str) -> None:
        """Its client got the result: nothing to keep."""
        if self.current is not None and self.current["id"] == run_id:
            self.current = None
        self.results.pop(run_id, None)

    def on_mark(self, mark: Mark) -> None:
        """A C or D mark of the shell's (the tracker checked it is one)."""
        run = self.current
        if run is None or mark.kind not in ("C", "D"):
            return
        if run["token"] is not None and mark.param("tmuxish") != run["token"]:
            return  # the shell's own marks around a wrapped run's
        if mark.kind == "C" and not run["started"]:
            run["started"] = True
            run["started_at"] = time.time()
        elif mark.kind == "D":
            # Even without its C: a crash between the C and the keeper hearing of it.
            began = run["started_at"] or time.time()
            duration = max(0.0, round(time.time() - began, 6))
            self.results[run["id"]] = {"exit_code": mark.status, "duration": duration}
            while len(self.results) > KEPT_RESULTS:
                del self.results[next(iter(self.results))]
            self.current = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "current": None if self.current is None else dict(self.current),
            "results": {k: dict(v) for k, v in self.results.items()},
        }

    def keep(self, data: bytes) -> None:
        """Output of the session, kept for a restored run's follower (bounded in bytes and in
        time: a follower that does not come back does not hold it for good)."""
        backlog = self.backlog
        if backlog is None:
            return
        if time.monotonic() > self._backlog_until:
            self.backlog = None
            return
        backlog += data
        if len(backlog) > BACKLOG_BYTES:
            excess = len(backlog) - BACKLOG_BYTES
            del backlog[:excess]
            self.backlog_dropped += excess

    def take_backlog(self) -> bytes:
        kept = bytes(self.backlog or b"")
        self.backlog = None
        return kept

    def restore(self, saved: Any) -> bool:
        """Take a saved ledger; True if a run was in progress (its output is then kept, for
        its follower)."""
        if not isinstance(saved, dict):
            return False
        results = saved.get("results")
        if isinstance(results, dict):
            self.results = {
                k: v for k, v in results.items() if isinstance(k, str) and isinstance(v, dict)
            }
        current = saved.get("current")
        if not (isinstance(current, dict) and isinstance(current.get("id"), str)):
            return False
        token = current.get("token")
        started_at = current.get("started_at")
        self.current = {
            "id": current["id"],
            "token": token if isinstance(token, str) else None,
            "typed": bool(current.get("typed")),
            "started": bool(current.get("started")),
            "started_at": float(started_at) if isinstance(started_at, int | float) else 0.0,
        }
        self.backlog = bytearray()
        self._backlog_until = time.monotonic() + BACKLOG_WAIT
        self.resume_started = self.current["started"]
        return True
