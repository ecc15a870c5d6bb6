"""What a change of width costs the screen model: libghostty reflows all the history in one call.

    python bench/reflow_cost.py            # every content kind, plain and compressed history
    python bench/reflow_cost.py plain sgr  # some of them

For each content kind, history length and pair of widths it prints the reflow's time, what the
feed's sample (``Screen.sample_reflow``) predicted for it, and their ratio. The numbers behind
``feed.RESIZE_STEP`` and ``parse_cost.ReflowCost`` came from this script.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tmuxish.server.screen import Screen, warm_up

KINDS: dict[str, Callable[[int, int], bytes]] = {
    "plain": lambda i, w: b"%08d " % i + b"x" * (w - 9),
    "wide": lambda i, w: ("\u65e5" * (w // 2)).encode(),
    "sgr": lambda i, w: (
        b"".join(
            b"\x1b[38;2;%d;%d;%dm%c" % (j % 256, i % 256, j * 7 % 256, 97 + j % 26)
            for j in range(w)
        )
        + b"\x1b[0m"
    ),
    "comb": lambda i, w: ("e\u0301" * w).encode(),
    "link": lambda i, w: (
        b"".join(b"\x1b]8;;http://x/%d\x07%c" % (j, 97 + j % 26) for j in range(w))
        + b"\x1b]8;;\x07"
    ),
}

#: (written at this width, history lines, resized from, resized to)
CASES = (
    (80, 14000, 80, 200),
    (80, 14000, 80, 1000),
    (200, 14000, 200, 80),
    (1000, 3000, 1000, 80),
    (80, 14000, 10000, 80),  # written at 80, widened to 10,000 first: the hostile client
)


def history(kind: str, width: int, lines: int, cols: int) -> Screen:
    screen = Screen(width, 24)
    line = KINDS[kind]
    data = b"".join(line(i, width) + b"\r\n" for i in range(lines))
    for i in range(0, len(data), 65536):
        screen.feed(data[i : i + 65536])
    if cols != width:
        screen.resize(cols, 24)
    return screen


def main(kinds: list[str]) -> None:
    warm_up()
    print(
        f"{'content':7} {'hist':>6} {'from':>5} {'to':>5} {'comp':4} {'ms':>7} {'sample':>7} ratio"
    )
    for kind in kinds:
        for width, lines, old, new in CASES:
            for compressed in (False, True):
                screen = history(kind, width, lines, old)
                if compressed:
                    while screen.compact(0.05):
                        pass
                rows = screen.history_rows
                sampled = screen.sample_reflow(new) or 0.0
                predicted = sampled * rows * max(old, new)
                t0 = time.perf_counter()
                screen.resize(new, 24)
                spent = time.perf_counter() - t0
                screen.close()
                ratio = spent / predicted if predicted else 0.0
                print(
                    f"{kind:7} {rows:6} {old:5} {new:5} {'yes' if compressed else 'no':4} "
                    f"{spent * 1000:7.1f} {predicted * 1000:7.1f} {ratio:5.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:] or list(KINDS))
