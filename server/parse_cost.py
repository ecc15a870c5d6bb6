"""What parsing some bytes may cost the screen model, predicted from counts C code makes fast.

The feed (server/feed.py) cuts its parse steps with this: cost is per byte *and* per cell, so
a slice size in bytes cannot fit plain text (7 ns a byte) and ``ESC # 8`` at 1000x1000 (2 ms a
sequence) both; an upper bound from a few counts can.
"""

from __future__ import annotations

import re

#: Largest slice, whatever the prediction says: bounds what a cost it cannot see may take.
MAX_SLICE = 32 * 1024
#: Smallest slice: one slice always moves the feed on.
MIN_SLICE = 16

# REP (CSI Pn b): looked for only in slices with a "b" in them (a single-byte find is cheap).
_REP = re.compile(rb"\x1b\[[0-9;:]*b")


class SliceCost:
    """An upper bound on what parsing some bytes costs at a screen size, from cheap counts.

    Measured on 2 CPUs (one busy): any byte ~20 ns; an escape sequence at most ~2 ns per cell
    of the screen (``ESC # 8``, ``ESC[2J``, ``ESC[9999L``, alternate screen) plus a little; a
    line feed ~150 ns plus 1.2 ns per column (a scroll); ``ESC c`` ~25 us plus 0.3 ns per cell;
    a REP at most 65535 characters, ~300 us. ``factor`` (>= 1) is learnt from slices that took
    longer than predicted, for costs the counts do not see (a kitty image, clearing a huge
    history). The counts cost ~1 ns a byte (REP's regular expression ~2 ns, where there is a
    "b"), against 7-12 ns a byte for libghostty to parse text.
    """

    PER_BYTE = 20e-9
    PER_ESC = 0.3e-6
    PER_ESC_CELL = 2e-9
    PER_LF = 150e-9
    PER_LF_COL = 1.2e-9
    PER_RIS = 25e-6
    PER_RIS_CELL = 0.3e-9
    PER_REP = 300e-6

    def __init__(self, cols: int, rows: int) -> None:
        self.factor = 1.0
        self._last = MAX_SLICE
        self.resize(cols, rows)

    def resize(self, cols: int, rows: int) -> None:
        cells = cols * rows
        self._esc = self.PER_ESC + cells * self.PER_ESC_CELL
        self._lf = self.PER_LF + cols * self.PER_LF_COL
        self._ris = self.PER_RIS + cells * self.PER_RIS_CELL

    def predict(self, data: bytes | bytearray, start: int = 0, end: int | None = None) -> float:
        """Seconds that parsing ``data[start:end]`` may take, at most (times ``factor``)."""
        end = len(data) if end is None else end
        escs = data.count(b"\x1b", start, end)
        cost = (end - start) * self.PER_BYTE + data.count(b"\n", start, end) * self._lf
        if escs:
            cost += escs * self._esc
            if data.find(b"\x1bc", start, end) >= 0:
                cost += data.count(b"\x1bc", start, end) * self._ris
            if data.find(b"b", start, end) >= 0:
                cost += len(_REP.findall(data, start, end)) * self.PER_REP
        return cost * self.factor

    def cut(self, data: bytes, start: int, budget: float) -> tuple[int, float]:
        """Where a slice of ``data`` from ``start`` should end to take at most ``budget``
        seconds (at least ``MIN_SLICE`` bytes), and its predicted cost."""
        # Start from twice the last slice: one prediction per slice while the content is even.
        end = min(len(data), start + min(MAX_SLICE, 2 * self._last))
        while True:
            if end < len(data):
                # End after a line if there is one in the second half: a model left behind
                # mid-slice (a flood it lets go of) then holds no half line.
                nl = data.rfind(b"\n", start + (end - start) // 2, end)
                end = nl + 1 if nl >= 0 else end
            cost = self.predict(data, start, end)
            if cost <= budget or end - start <= MIN_SLICE:
                self._last = end - start
                return end, cost
            # Counts scale with length: shrink in proportion, with a margin for unevenness.
            shrunk = start + int((end - start) * budget / cost * 0.8)
            end = max(start + MIN_SLICE, min(shrunk, end - 1))

    def learn(self, predicted: float, spent: float) -> None:
        """Raise ``factor`` at once when a slice overran its prediction; let it decay back."""
        if predicted <= 0 or spent < 100e-6:
            return  # too short to tell a miss from timer noise
        ratio = spent / (predicted / self.factor)
        if ratio > self.factor:
            self.factor = ratio
        else:
            self.factor = max(1.0, self.factor * 0.9)


class ReflowCost:
    """What changing the screen model's width may cost, and how much history fits a step.

    libghostty reflows the whole history in one call when the width changes, and the call
    cannot be cut. Measured on 2 CPUs (one busy), per cell of ``rows x max(old, new) columns``
    of history: plain text 2-8 ns, wide characters 4-14, a hyperlink per cell 4-26, a colour per
    cell 11-110, a combining mark per cell 20-270 (compressed history costs up to twice as much).
    A prediction for the history in hand comes from a sample of it reflowed in a scratch
    terminal (``Screen.sample_reflow``) times ``factor``, which is learnt: raised at once
    by a reflow that took longer than its sample said, lowered slowly by those that did not.
    """

    #: Seconds a cell of history may cost at most (the worst content measured, with a margin):
    #: a history that fits the budget even at this cost needs no sample.
    WORST_PER_CELL = 400e-9
    #: Seconds a cell is assumed to cost when there is no sample (on the alternate screen) and
    #: no reflow measured yet: plain text, compressed. Anything costlier is learnt after one
    #: reflow.
    DEFAULT_PER_CELL = 10e-9
    #: Sample and real reflow differ (compressed pages, page allocation): start with a margin.
    #: Measured real/sample: 0.2-1.2 for plain text, 0.9-2.2 for colours, combining marks and
    #: hyperlinks, up to 3.9 for compressed history of 10,000 columns.
    START_FACTOR = 1.5
    #: Where a sample overestimates (wide rows of plain text: the scratch costs twice as much
    #: a cell), the factor decays this far.
    MIN_FACTOR = 0.5
    #: At most this far up at once: one freak measurement must not cost most of the history.
    MAX_FACTOR = 8.0

    def __init__(self) -> None:
        self.factor = self.START_FACTOR
        #: Seconds per cell of the last reflow measured (or sampled).
        self.per_cell = self.DEFAULT_PER_CELL

    def predict(self, cells: int, sampled: float | None) -> float:
        """Seconds that reflowing ``cells`` cells of history may take."""
        per_cell = self.per_cell if sampled is None else sampled
        return cells * per_cell * self.factor

    def learn(self, cells: int, spent: float, sampled: float | None) -> None:
        """A reflow of ``cells`` cells took ``spent`` seconds; ``sampled`` is what its sample
        said a cell costs (None: there was none)."""
        if cells <= 0 or spent < 1e-3:
            return  # too short to tell a miss from timer noise
        actual = spent / cells
        if sampled is not None and sampled > 0:
            ratio = actual / sampled
            if ratio > self.factor:
                self.factor = min(ratio, self.MAX_FACTOR)
            else:
                self.factor = max(self.MIN_FACTOR, ratio, self.factor * 0.9)
        self.per_cell = actual


def history_that_fits(rows: int, predicted: float, budget: float) -> int:
    """Rows of a ``rows``-row history whose reflow is predicted to fit ``budget`` seconds, when
    all of it is predicted to take ``predicted``."""
    if predicted <= budget:
        return rows
    return max(0, int(rows * budget / predicted))
