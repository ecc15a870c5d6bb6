"""Per-session screen model: an in-memory terminal emulator (libghostty-vt via pyghostty).

The session feeds every byte the program writes into a :class:`Screen`, so the server can
repaint a client's terminal on attach, print the screen for ``capture``, and answer terminal
queries while nobody is attached.

How the repaint is built (see ``ARCHITECTURE.md`` section 4):

* The text, colours, cursor, scroll region, tab stops, charsets, hyperlink and kitty keyboard
  state come from libghostty's VT formatter, restricted to the active area (without a selection
  it would replay the whole scrollback) and with palette output off (OSC 4 would overwrite the
  user's own palette).
* Terminal modes are written by this module rather than by the formatter, because the formatter
  emits them all before the text, and several of them change how that text lands: autowrap off
  or insert mode would garble it, origin mode would shift it. The alternate screen is entered
  first, the rest is set after the text.
* ``ESC =`` is added for keypad application mode, because terminals that ignore DECNKM
  (``?66``) still honour DECKPAM; the title goes out as OSC 2; the cursor shape as DECSCUSR.
* The repaint ends with the bytes of an escape sequence or UTF-8 character the program had only
  half written when the repaint was taken, so the rest of it, arriving with live output, completes
  the same sequence in the client's terminal instead of showing up as text.

Replies to terminal queries come from libghostty itself (its write_pty callback, plus callbacks
that supply device attributes and the window size), not from a scanner in this module.

Known limits of libghostty-vt 0.1.3 that a repaint cannot undo: the formatter only sees the
active screen (the primary screen under the alternate one is invisible, so the session repaints
again when the program leaves the alternate screen), the cursor saved with DECSC is not exposed,
and a pending wrap at the right margin is lost when origin mode is on.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from typing import Any

from tmuxish.config import DEFAULT_HISTORY_LIMIT

log = logging.getLogger(__name__)

#: Replies kept for :meth:`Screen.take_responses`; beyond this a program flooding queries while
#: nobody drains them loses replies instead of growing the server.
MAX_RESPONSE_BYTES = 64 * 1024

#: Longest unfinished escape sequence kept for replay at the end of a repaint. Longer ones
#: (a huge OSC 52 copy, say) are not replayed; the client then sees their tail as text.
CONTINUATION_MAX_BYTES = 4096

#: Cells of history :meth:`Screen.sample_reflow` copies and reflows to predict a reflow's cost
#: (~1 ms for plain text, ~12 ms at the costliest content measured).
REFLOW_SAMPLE_CELLS = 10_000

# fmt: off
# Modes this module knows, as (number, is_ansi). Taken from ghostty's src/terminal/modes.zig;
# modes the loaded library does not recognise are dropped at load time.
_KNOWN_MODES: tuple[tuple[int, bool], ...] = (
    (2, True), (4, True), (12, True), (20, True),
    (1, False), (3, False), (4, False), (5, False), (6, False), (7, False), (8, False),
    (9, False), (12, False), (25, False), (40, False), (45, False), (47, False), (66, False),
    (67, False), (69, False), (1000, False), (1002, False), (1003, False), (1004, False),
    (1005, False), (1006, False), (1007, False), (1015, False), (1016, False), (1035, False),
    (1036, False), (1039, False), (1045, False), (1047, False), (1048, False), (1049, False),
    (2004, False), (2026, False), (2027, False), (2031, False), (2033, False), (2048, False),
)
# fmt: on

# Not replayed as plain modes: 132-column switching would resize a real xterm's window (the
# size follows the PTY instead); the alternate screens are entered before the text;
# save-cursor is an action, not a state; synchronized output wraps the repaint itself;
# grapheme clustering and left/right margins must be on before the text; origin mode needs the
# cursor re-addressed after it.
_SPECIAL_DEC = frozenset({3, 40, 47, 1047, 1048, 1049, 2026, 2027, 69, 6})
_PRE_TEXT_DEC = (2027, 69)
_ALT_SCREEN_DEC = (1049, 1047, 47)

# Bytes written on detach. Unconditional, so that a screen model that fell out of step with the
# client's terminal still leaves it sane; each one is a no-op on a terminal already in that state.
_RESET_COMMON = b"".join(
    (
        b"\x1b[?2026l",  # end a synchronized update the program left open
        b"\x1b[?9l\x1b[?1000l\x1b[?1002l\x1b[?1003l",  # mouse reporting
        b"\x1b[?1005l\x1b[?1006l\x1b[?1015l\x1b[?1016l",  # mouse encodings
        b"\x1b[?1004l\x1b[?2004l",  # focus events, bracketed paste
        b"\x1b[?2031l\x1b[?2048l",  # unsolicited reports would land in the user's shell
        b"\x1b[?1l\x1b>\x1b[?66l",  # cursor keys, keypad
        b"\x1b[=0;1u\x1b[>4m",  # kitty keyboard flags, modifyOtherKeys
        b"\x1b7\x1b[r\x1b8",  # scroll region reset without moving the cursor
        b"\x1b[?69l\x1b[?7h\x1b[4l\x1b[20l",  # margins, autowrap, insert, newline mode
        b"\x1b(B\x0f",  # ASCII in G0, G0 invoked: no line-drawing garbage in the shell
        b"\x1b]8;;\x1b\\",  # close a hyperlink the cursor may be inside
        b"\x1b[0 q\x1b[?25h",  # user's default cursor shape, cursor visible
        b"\x1b[0m",
    )
)

_MAX_TITLE = 4096

#: History kept by default, in lines, at any width: more than the 10 MB byte budget it replaces
#: held at 80 columns (13,600 lines).
DEFAULT_HISTORY_LINES = DEFAULT_HISTORY_LIMIT

_DECSTBM = re.compile(rb"\x1b\[(\d+);(\d+)r")
_DECSLRM = re.compile(rb"\x1b\[(\d+);(\d+)s")
# C0, DEL and C1 controls: stripped from the title so it cannot end the OSC early or smuggle in
# a sequence of its own.
_TITLE_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# DECSCUSR parameter per (GhosttyRenderStateCursorVisualStyle, blinking): bar=0, block=1,
# underline=2; hollow block (3) is a renderer state with no DECSCUSR of its own.
_DECSCUSR = {(0, True): 5, (0, False): 6, (1, True): 1, (1, False): 2, (2, True): 3, (2, False): 4}


def history_cap(lines: int, cols: int) -> int:
    """libghostty's scrollback cap, in bytes of its pages, that keeps at least ``lines`` rows
    of ``cols`` columns: the memory bound of a history of ``lines`` lines at that width.

    A row costs ~9 bytes a column in pages filled by output (measured: 708 at 80 columns,
    8,969 at 1000, 110,701 at 10,000, where pages hold fewer rows) and up to ~10.3 in pages
    a reflow filled (907 at 80 columns, 2,053 at 200); the fit below is above every
    measurement. Whole pages are pruned (under 1 MiB at any width), hence the slack.
    """
    if lines <= 0:
        return 0
    row = cols * 23 // 2 + 64 + cols * cols // 3000
    return lines * row + 1024 * 1024


#: Most cells of history in one page, which libghostty keeps under any scrollback cap but 0
#: (measured: 79,160 at 20 columns, 56,080 at 80, 84,800 at 200, 33,000 at 1000).
_PAGE_CELLS = 100_000

# Stands in for the native handles after close(): not a pointer, so cffi raises on use.
_CLOSED = object()


class ScreenUnavailable(Exception):
    """pyghostty (libghostty-vt) cannot be loaded or refused to create a terminal."""


class _Lib:
    """The loaded library plus what every Screen shares: callbacks, mode defaults."""

    def __init__(self) -> None:
        from tmuxish.server import ghostty_abi

        self.ffi, self.lib = ghostty_abi.load()
        ffi, lib = self.ffi, self.lib
        self.vt_write: Any = lib.ghostty_terminal_vt_write
        self.get: Any = lib.ghostty_terminal_get
        # ABI-mode cffi cannot pass GhosttyPoint (a tagged union) by value; pyghostty declares a
        # layout-identical struct twin, and a cast of the symbol to that signature is the same
        # call on x86-64 and aarch64.
        self.grid_ref: Any = ffi.cast(
            "GhosttyResult(*)(GhosttyTerminal, GhosttyPointS, GhosttyGridRef*)",
            ffi.addressof(lib, "ghostty_terminal_grid_ref"),
        )
        # One set of C callbacks for all screens, routed by the userdata handle: cffi callbacks
        # are executable trampolines, a scarce resource under W^X policies.
        self.cb_write_pty = ffi.callback(
            "GhosttyTerminalWritePtyFn", _on_write_pty, onerror=_on_callback_error
        )
        self.cb_device_attributes = ffi.callback(
            "GhosttyTerminalDeviceAttributesFn",
            _on_device_attributes,
            False,
            onerror=_on_callback_error,
        )
        self.cb_size = ffi.callback(
            "GhosttyTerminalSizeFn", _on_size, False, onerror=_on_callback_error
        )
        self.mode_defaults = self._mode_defaults()

    def _mode_defaults(self) -> dict[int, bool]:
        """Packed mode -> value in a fresh terminal, for the modes this library knows."""
        ffi, lib = self.ffi, self.lib
        t = ffi.new("GhosttyTerminal*")
        if lib.ghostty_terminal_new(ffi.NULL, t, 80, 24) != lib.GHOSTTY_SUCCESS:
            raise ScreenUnavailable("ghostty_terminal_new failed")
        try:
            cfg = ffi.new("GhosttyTerminalModeConfig*")
            defaults: dict[int, bool] = {}
            for number, ansi in _KNOWN_MODES:
                cfg.mode = _pack_mode(number, ansi)
                if self.get(t[0], lib.GHOSTTY_TERMINAL_DATA_MODE, cfg) == lib.GHOSTTY_SUCCESS:
                    defaults[cfg.mode] = bool(cfg.value)
            return defaults
        finally:
            lib.ghostty_terminal_free(t[0])


_loaded: _Lib | None = None


#: The formatter writes every palette colour as 38;5;N / 48;5;N, one attribute per sequence.
_PALETTE_SGR = re.compile(rb"\x1b\[([34])8;5;(\d{1,3})m")


def _base_sgr(match: re.Match[bytes]) -> bytes:
    layer, index = match[1], int(match[2])
    if index >= 16:
        return match[0]
    base = (30 if layer == b"3" else 40) if index < 8 else (90 if layer == b"3" else 100)
    return b"\x1b[%dm" % (base + index % 8)


def base_colours(data: bytes) -> bytes:
    """The 16 base colours with their own SGR codes (31, 103), as tmux repaints them, not as
    38;5;1 / 48;5;11: terminals that brighten bold text do so only for SGR 30-37 (issue 14).
    The model keeps the palette index only, so a program's 38;5;1 comes back as 31 too."""
    if b";5;" not in data:
        return data
    return _PALETTE_SGR.sub(_base_sgr, data)


def _load() -> _Lib:
    global _loaded
    if _loaded is None:
        try:
            _loaded = _Lib()
        except ScreenUnavailable:
            raise
        except Exception as exc:  # ImportError, OSError from dlopen, cffi errors on a bad build
            raise ScreenUnavailable(f"pyghostty unavailable: {exc}") from exc
    return _loaded


def _pack_mode(number: int, ansi: bool) -> int:
    # ghostty_mode_new() is static inline in the C header, so cffi cannot call it.
    return (number & 0x7FFF) | (int(ansi) << 15)


def _clamp(cells: int) -> int:
    return min(max(cells, 1), 0xFFFF)


def warm_up() -> None:
    """Pay the one-off costs ahead of the first attach: loading the cffi declarations (~0.5 s),
    the first terminal, the first format and render-state update (~0.1-0.2 s each), and the
    first compression (a resize samples history in a compressed scratch terminal)."""
    screen = Screen(80, 24)
    try:
        screen.feed(
            "\x1b]2;warm-up\x07\x1b[1;31mwarm\x1b[0m \x1b[38;2;1;2;3mup\x1b[0m 日本\r\n".encode()
            * 30
        )
        screen.repaint()
        screen.history(10)
        screen.screen_text(escapes=True)
        screen.history_text()
        screen.sample_reflow(120)  # compression, on a scratch terminal: ~8 ms the first time
    finally:
        screen.close()


def _screen_from(userdata: Any) -> Screen | None:
    lib = _loaded
    if lib is None or userdata == lib.ffi.NULL:
        return None
    ref: weakref.ref[Screen] = lib.ffi.from_handle(userdata)
    screen = ref()
    return screen


def _on_callback_error(exc_type: Any, exc: BaseException, tb: Any) -> None:
    # cffi would print the traceback to stderr; the server logs to a file instead.
    log.error("error in a libghostty callback", exc_info=(exc_type, exc, tb))


def _on_write_pty(terminal: Any, userdata: Any, data: Any, length: int) -> None:
    screen = _screen_from(userdata)
    if screen is not None and _loaded is not None:
        screen._add_response(_loaded.ffi.buffer(data, length)[:])


def _on_device_attributes(terminal: Any, userdata: Any, out: Any) -> bool:
    # DA1 as a VT220 with ANSI colour (what xterm-alikes report); DA2 as a VT220, firmware 10.
    out.primary.conformance_level = 62
    out.primary.features[0] = 22
    out.primary.num_features = 1
    out.secondary.device_type = 1
    out.secondary.firmware_version = 10
    out.secondary.rom_cartridge = 0
    out.tertiary.unit_id = 0
    return True


def _on_size(terminal: Any, userdata: Any, out: Any) -> bool:
    screen = _screen_from(userdata)
    if screen is None:
        return False
    out.columns = screen.cols
    out.rows = screen.rows
    # The pixel size is unknown to the server; zero tells a program there is nothing to use.
    out.cell_width = 0
    out.cell_height = 0
    return True


class Screen:
    """One session's terminal emulator. Not thread-safe: feed and read from one thread."""

    def __init__(self, cols: int, rows: int, history_lines: int = DEFAULT_HISTORY_LINES) -> None:
        lib = _load()
        self._l = lib
        ffi, c = lib.ffi, lib.lib
        # A fresh console-socket PTY is often 0x0, which libghostty refuses; the session sets a
        # real size moments later.
        cols, rows = _clamp(cols), _clamp(rows)
        self._cols = cols
        self._rows = rows
        self._responses = bytearray()
        self._responses_dropped = 0
        handle = ffi.new("GhosttyTerminal*")
        if c.ghostty_terminal_new(ffi.NULL, handle, cols, rows) != c.GHOSTTY_SUCCESS:
            raise ScreenUnavailable(f"ghostty_terminal_new({cols}x{rows}) failed")
        self._t: Any = handle[0]
        self._finalizer = weakref.finalize(self, c.ghostty_terminal_free, self._t)
        # A weak reference behind the handle: a strong one would keep every Screen alive forever.
        self._userdata = ffi.new_handle(weakref.ref(self))
        # History is a number of lines at any width (as tmux's history-limit), but libghostty's
        # line cap is slow in 0.1.3: its byte cap is set from the lines at the current width,
        # after every resize. It prunes whole pages (~600 KB), so any limit but 0 keeps at
        # least one page (~900 rows of 80 columns); 0 turns history off.
        self.history_lines = max(history_lines, 0)
        self._history_cap = ffi.new("size_t*", history_cap(self.history_lines, cols))
        self._set(c.GHOSTTY_TERMINAL_OPT_SCROLLBACK_MAX_BYTES, self._history_cap)
        self._set(
            c.GHOSTTY_TERMINAL_OPT_CONTINUATION_MAX_BYTES,
            ffi.new("size_t*", CONTINUATION_MAX_BYTES),
        )
        self._set(c.GHOSTTY_TERMINAL_OPT_USERDATA, self._userdata)
        self._set(c.GHOSTTY_TERMINAL_OPT_WRITE_PTY, lib.cb_write_pty)
        self._set(c.GHOSTTY_TERMINAL_OPT_DEVICE_ATTRIBUTES, lib.cb_device_attributes)
        self._set(c.GHOSTTY_TERMINAL_OPT_SIZE, lib.cb_size)
        # Out-parameters reused by the getters, so reading state allocates nothing.
        self._u16 = ffi.new("uint16_t*")
        self._bool = ffi.new("bool*")
        self._int = ffi.new("int*")
        self._size = ffi.new("size_t*")
        self._str = ffi.new("GhosttyString*")
        self._mode = ffi.new("GhosttyTerminalModeConfig*")
        self._vt_write = lib.vt_write
        # is_alt is read around every feed by the session; keep it to one cffi call.
        self._get = lib.get
        self._key_active_screen = c.GHOSTTY_TERMINAL_DATA_ACTIVE_SCREEN
        self._alternate = c.GHOSTTY_TERMINAL_SCREEN_ALTERNATE
        #: False once libghostty said it cannot compress pages on this system.
        self._compressible = True
        #: While the alternate screen is shown: what is known of the primary screen's history
        #: (libghostty reports none there), as (at most so many rows, at this width).
        self._primary_rows: list[tuple[int, int]] = []

    def _set(self, option: int, value: Any) -> None:
        res = self._l.lib.ghostty_terminal_set(self._t, option, value)
        if res != self._l.lib.GHOSTTY_SUCCESS:
            raise ScreenUnavailable(f"ghostty_terminal_set({option}) failed: {res}")

    def close(self) -> None:
        """Free the native terminal now rather than at garbage collection.

        Later calls raise TypeError (cffi refuses the placeholder handle) instead of touching
        freed memory.
        """
        self._finalizer()
        self._t = _CLOSED

    # -- input -----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._vt_write(self._t, data, len(data))

    def compact(self, budget: float = 0.002) -> bool:
        """Compress cold scrollback pages in memory; True while there is more to do.

        libghostty keeps every row as 8-byte cells (~650 bytes a row at 80 columns: 3.2 MB for
        5000 lines of history) unless asked to compress the history pages nobody looks at
        (measured: those 3.2 MB become ~0.3 MB, in ~1.3 ms). Reads (``history``,
        ``history_text``, a resize) restore the pages they touch; the next call compresses them
        again. Each step is bounded (<= 0.25 ms measured) and this returns after ``budget``
        seconds of steps: call it when output is quiet (compressing after every 64 KiB chunk of
        a flood halved the feed rate) and again while it returns True.
        """
        if not self._compressible:
            return False
        ffi, c = self._l.ffi, self._l.lib
        result = ffi.new("GhosttyTerminalCompressionResult*")
        incremental = c.GHOSTTY_TERMINAL_COMPRESSION_MODE_INCREMENTAL
        unsupported = c.GHOSTTY_TERMINAL_COMPRESSION_RESULT_UNSUPPORTED
        deadline = time.perf_counter() + budget
        while True:
            res = c.ghostty_terminal_compress(self._t, incremental, result)
            state = result[0]
            if res != c.GHOSTTY_SUCCESS or state == unsupported:
                # It needs to drop physical pages while keeping the mapping; not everywhere.
                self._compressible = False
                return False
            if state != c.GHOSTTY_TERMINAL_COMPRESSION_RESULT_PENDING:
                return False
            if time.perf_counter() >= deadline:
                return True

    def reflow_rows(self) -> int:
        """Rows of history a change of width reflows: the primary screen's, also while the
        alternate screen is shown. There libghostty reports none, so this is at most what the
        scrollback cap lets the primary screen hold (a row takes at least 8 bytes a column),
        and at most what :meth:`note_primary_rows` implies at this width."""
        if not self.is_alt:
            return self.history_rows
        most = int(self._history_cap[0]) // (8 * self._cols)
        # A line of L cells takes ceil(L / width) rows: at a wider width no more, at a
        # narrower one at most ceil(width / cols) times as many, whatever widths came between;
        # and the history only loses lines while the alternate screen is shown.
        for rows, width in self._primary_rows:
            most = min(most, rows * -(-width // self._cols))
        return most

    def note_primary_rows(self, rows: int | None) -> None:
        """The primary screen held at most ``rows`` rows of history at this width when the
        alternate screen was entered (None: unknown)."""
        self._primary_rows = [] if rows is None else [(rows, self._cols)]

    def sample_reflow(self, cols: int, cells: int = REFLOW_SAMPLE_CELLS) -> float | None:
        """Seconds a cell of this history costs to reflow to ``cols`` columns, measured on about
        ``cells`` cells of it (four runs of rows from oldest to newest) copied into a scratch
        terminal. None without a history to sample (none, or the alternate screen's).

        Colours, hyperlinks and combining marks make a cell cost up to a hundred times what
        plain text does, so a prediction needs the content at hand.
        """
        if self.is_alt:
            return None
        available = self.history_rows
        if available <= 0:
            return None
        wanted = min(available, max(1, cells // self._cols))
        runs = 4 if wanted >= 8 else 1
        per_run = wanted // runs
        c = self._l.lib
        data = bytearray()
        for i in range(runs):
            first = (available - per_run) * i // max(runs - 1, 1)
            sel = self._selection(c.GHOSTTY_POINT_TAG_HISTORY, first, first + per_run - 1)
            data += self._format(sel, vt=True, unwrap=False, trim=False, state=True)
            data += b"\x1b[0m\r\n"
        sampled = per_run * runs
        # The sample goes into the scratch's history, compressed as idle history is (it costs
        # up to eight times as much to reflow: measured at 10,000 columns).
        scratch = Screen(self._cols, 1, history_lines=sampled + 1)
        try:
            scratch.feed(bytes(data))
            while scratch.compact(0.01):
                pass
            # CPU time: a sample the scheduler preempted says nothing about the content.
            t0 = time.thread_time()
            scratch.resize(cols, 1)
            spent = time.thread_time() - t0
        finally:
            scratch.close()
        return spent / (sampled * max(cols, self._cols))

    def trim_history(self, rows: int) -> None:
        """Drop the oldest history until about ``rows`` rows are left (0 drops it all): the
        primary screen's history, on either screen. libghostty prunes whole pages down to its
        byte cap at once, and keeps at least one page (``_PAGE_CELLS``) unless the cap is 0;
        the next resize sets the usual cap again."""
        rows = max(rows, 0)
        if self.is_alt:
            # Nothing to count here: a row takes at least 8 bytes a column, so this cap holds
            # no more than ``rows`` rows.
            self._set_history_cap(rows * 8 * self._cols)
            if rows:
                page = _PAGE_CELLS // self._cols + 1
                self._primary_rows.append((max(rows, page), self._cols))
            else:
                self._primary_rows.append((0, self._cols))
            return
        # From history_cap's fit (above what a row takes) down, until few enough are left.
        cap = rows * history_cap(1, self._cols) - 1024 * 1024 if rows else 0
        for _ in range(6):
            self._set_history_cap(cap)
            have = self.history_rows
            if have <= rows or cap == 0:
                return
            cap = cap * rows // have

    def _set_history_cap(self, cap: int) -> None:
        self._history_cap[0] = max(cap, 0)
        self._set(self._l.lib.GHOSTTY_TERMINAL_OPT_SCROLLBACK_MAX_BYTES, self._history_cap)

    def resize(self, cols: int, rows: int) -> None:
        cols, rows = _clamp(cols), _clamp(rows)
        if (cols, rows) == (self._cols, self._rows):
            return
        c = self._l.lib
        # Wider rows take more bytes: the reflow must not prune them to the old width's cap.
        cap = history_cap(self.history_lines, cols)
        if cap > self._history_cap[0]:
            self._history_cap[0] = cap
            self._set(c.GHOSTTY_TERMINAL_OPT_SCROLLBACK_MAX_BYTES, self._history_cap)
        res = c.ghostty_terminal_resize(self._t, cols, rows, 0, 0)
        if res != c.GHOSTTY_SUCCESS:
            raise ValueError(f"cannot resize the screen model to {cols}x{rows}: {res}")
        self._cols, self._rows = cols, rows
        # libghostty 0.1.3 loses track of its scrollback budget across reflows: after a few
        # resizes with output in between, history grew without bound (measured: 885 rows of
        # budget became 57,000 after 20 resizes; a soak server passed 1 GiB). Setting the cap
        # again re-establishes it (and narrower rows take fewer bytes).
        self._history_cap[0] = cap
        self._set(c.GHOSTTY_TERMINAL_OPT_SCROLLBACK_MAX_BYTES, self._history_cap)

    def _add_response(self, data: bytes) -> None:
        if len(self._responses) + len(data) > MAX_RESPONSE_BYTES:
            self._responses_dropped += len(data)
            return
        self._responses += data

    def take_responses(self) -> bytes:
        """Replies to queries in the data fed so far (DA, DSR, DECRQM, XTVERSION, size, ...).

        The emulator answers every query it sees; the session writes these to the PTY only
        while no read-write client is attached (an attached terminal answers for itself; a
        read-only one's replies are dropped with its input), and must call this after every
        feed either way so old replies are not sent late.
        """
        if not self._responses:
            return b""
        out = bytes(self._responses)
        self._responses.clear()
        if self._responses_dropped:
            log.warning("dropped %d bytes of terminal replies", self._responses_dropped)
            self._responses_dropped = 0
        return out

    # -- state -----------------------------------------------------------------------------

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def rows(self) -> int:
        return self._rows

    def _get_u16(self, key: int) -> int:
        self._l.get(self._t, key, self._u16)
        return int(self._u16[0])

    @property
    def cursor(self) -> tuple[int, int]:
        c = self._l.lib
        return (
            self._get_u16(c.GHOSTTY_TERMINAL_DATA_CURSOR_X),
            self._get_u16(c.GHOSTTY_TERMINAL_DATA_CURSOR_Y),
        )

    @property
    def cursor_visible(self) -> bool:
        self._l.get(self._t, self._l.lib.GHOSTTY_TERMINAL_DATA_CURSOR_VISIBLE, self._bool)
        return bool(self._bool[0])

    @property
    def is_alt(self) -> bool:
        self._get(self._t, self._key_active_screen, self._int)
        return bool(self._int[0] == self._alternate)

    @property
    def title(self) -> str:
        c = self._l.lib
        if self._l.get(self._t, c.GHOSTTY_TERMINAL_DATA_TITLE, self._str) != c.GHOSTTY_SUCCESS:
            return ""
        s = self._str[0]
        if not s.len:
            return ""
        return bytes(self._l.ffi.buffer(s.ptr, s.len)).decode("utf-8", "replace")

    @property
    def history_rows(self) -> int:
        """Rows of scrollback above the visible screen (0 on the alternate screen)."""
        self._l.get(self._t, self._l.lib.GHOSTTY_TERMINAL_DATA_SCROLLBACK_ROWS, self._size)
        return int(self._size[0])

    def mode(self, number: int, ansi: bool = False) -> bool:
        """Whether a mode is set: DEC private by default (``mode(2004)``), ANSI with ``ansi``."""
        c = self._l.lib
        self._mode.mode = _pack_mode(number, ansi)
        if self._l.get(self._t, c.GHOSTTY_TERMINAL_DATA_MODE, self._mode) != c.GHOSTTY_SUCCESS:
            raise ValueError(f"unknown mode {number} (ansi={ansi})")
        return bool(self._mode.value)

    def _cursor_shape(self) -> int:
        """DECSCUSR shape as GhosttyRenderStateCursorVisualStyle (bar 0, block 1, underline 2).

        Only the render state exposes it; the terminal's CURSOR_STYLE is the SGR pen. The render
        state is made for this one read and freed at once: it keeps a copy of the screen's rows
        (~118 KiB at 80x24), which every session would otherwise hold from its first repaint on.
        """
        ffi, c = self._l.ffi, self._l.lib
        handle = ffi.new("GhosttyRenderState*")
        if c.ghostty_render_state_new(ffi.NULL, handle) != c.GHOSTTY_SUCCESS:
            return 1
        try:
            if c.ghostty_render_state_update(handle[0], self._t) != c.GHOSTTY_SUCCESS:
                return 1
            shape = ffi.new("GhosttyRenderStateCursorVisualStyle*")
            c.ghostty_render_state_get(
                handle[0], c.GHOSTTY_RENDER_STATE_DATA_CURSOR_VISUAL_STYLE, shape
            )
            return int(shape[0])
        finally:
            c.ghostty_render_state_free(handle[0])

    # -- output ----------------------------------------------------------------------------

    def _ref(self, x: int, y: int, tag: int) -> Any:
        ffi = self._l.ffi
        point = ffi.new("GhosttyPointS*")
        point.tag = tag
        point.value.x = x
        point.value.y = y
        ref = ffi.new("GhosttyGridRef*")
        ref.size = ffi.sizeof("GhosttyGridRef")
        res = self._l.grid_ref(self._t, point[0], ref)
        if res != self._l.lib.GHOSTTY_SUCCESS:
            raise RuntimeError(f"ghostty_terminal_grid_ref({tag}, {x}, {y}) failed: {res}")
        return ref

    def _selection(self, tag: int, first: int, last: int) -> Any:
        """Whole rows first..last (inclusive) in the coordinate space ``tag``."""
        ffi = self._l.ffi
        sel = ffi.new("GhosttySelection*")
        sel.size = ffi.sizeof("GhosttySelection")
        sel.start = self._ref(0, first, tag)[0]
        sel.end = self._ref(self._cols - 1, last, tag)[0]
        return sel

    def _active(self) -> Any:
        return self._selection(self._l.lib.GHOSTTY_POINT_TAG_ACTIVE, 0, self._rows - 1)

    def _format(
        self, selection: Any, *, vt: bool, unwrap: bool, trim: bool, state: bool = False
    ) -> bytes:
        """Run the formatter once; ``state`` adds cursor, style, region, tabs, keyboard, pwd."""
        ffi, c = self._l.ffi, self._l.lib
        opts = ffi.new("GhosttyFormatterTerminalOptions*")
        opts.size = ffi.sizeof("GhosttyFormatterTerminalOptions")
        opts.emit = c.GHOSTTY_FORMATTER_FORMAT_VT if vt else c.GHOSTTY_FORMATTER_FORMAT_PLAIN
        opts.unwrap = unwrap
        opts.trim = trim
        extra = opts.extra
        extra.size = ffi.sizeof("GhosttyFormatterTerminalExtra")
        extra.palette = False  # OSC 4 would overwrite the user's palette
        extra.modes = False  # written by repaint() in an order that keeps the text intact
        extra.scrolling_region = state
        extra.tabstops = state
        extra.pwd = state
        extra.keyboard = state
        screen = extra.screen
        screen.size = ffi.sizeof("GhosttyFormatterScreenExtra")
        screen.cursor = state
        screen.style = state
        screen.hyperlink = state
        screen.protection = state
        screen.kitty_keyboard = state
        screen.charsets = state
        opts.selection = selection
        formatter = ffi.new("GhosttyFormatter*")
        res = c.ghostty_formatter_terminal_new(ffi.NULL, formatter, self._t, opts[0])
        if res != c.GHOSTTY_SUCCESS:
            raise RuntimeError(f"ghostty_formatter_terminal_new failed: {res}")
        try:
            ptr = ffi.new("uint8_t**")
            length = ffi.new("size_t*")
            res = c.ghostty_formatter_format_alloc(formatter[0], ffi.NULL, ptr, length)
            if res != c.GHOSTTY_SUCCESS:
                raise RuntimeError(f"ghostty_formatter_format_alloc failed: {res}")
            try:
                out: bytes = ffi.buffer(ptr[0], length[0])[:]
                return base_colours(out) if vt else out
            finally:
                c.ghostty_free(ffi.NULL, ptr[0], length[0])
        finally:
            c.ghostty_formatter_free(formatter[0])

    def _continuation(self) -> bytes:
        ffi, c = self._l.ffi, self._l.lib
        buf = ffi.new("uint8_t[]", CONTINUATION_MAX_BYTES)
        n = ffi.new("size_t*")
        res = c.ghostty_terminal_continuation_buf(self._t, buf, CONTINUATION_MAX_BYTES, n)
        if res != c.GHOSTTY_SUCCESS:
            # Unavailable (longer than the cap, or tracking lost): the client may show the
            # tail of that one sequence as text, nothing worse.
            return b""
        out: bytes = ffi.buffer(buf, n[0])[:]
        return out

    def repaint(self) -> bytes:
        """Bytes that recreate this screen on a freshly reset terminal of the same size."""
        defaults = self._l.mode_defaults
        modes = {packed: self._mode_value(packed) for packed in defaults}
        out = bytearray(b"\x1b[?2026h\x1b[0m\x1b[H\x1b[2J")
        if self.is_alt:
            which = next((m for m in _ALT_SCREEN_DEC if modes.get(_pack_mode(m, False))), 1049)
            out += b"\x1b[?%dh\x1b[H\x1b[2J" % which
        for number in _PRE_TEXT_DEC:
            packed = _pack_mode(number, False)
            if packed in modes and modes[packed] != defaults[packed]:
                out += b"\x1b[?%d%s" % (number, b"h" if modes[packed] else b"l")
        body = self._format(self._active(), vt=True, unwrap=True, trim=False, state=True)
        out += body
        for packed, value in modes.items():
            number, ansi = packed & 0x7FFF, bool(packed >> 15)
            if value == defaults[packed] or (not ansi and number in _SPECIAL_DEC):
                continue
            out += b"\x1b[%s%d%s" % (b"" if ansi else b"?", number, b"h" if value else b"l")
        origin = _pack_mode(6, False)
        if modes.get(origin):
            out += self._origin_cursor(body)
        if modes.get(_pack_mode(66, False)):
            out += b"\x1b="
        style = self._cursor_shape()
        if style != 1:  # not the default block: vim's bar in insert mode, for one
            blink = bool(modes.get(_pack_mode(12, False)))
            out += b"\x1b[%d q" % _DECSCUSR.get((style, blink), 2)
        # Capped: a program can set a title of any length, and every attach would replay it.
        title = _TITLE_CONTROLS.sub("", self.title)[:_MAX_TITLE]
        if title:
            out += b"\x1b]2;" + title.encode() + b"\x07"
        if not modes.get(_pack_mode(2026, False)):
            out += b"\x1b[?2026l"
        out += self._continuation()
        return bytes(out)

    def _mode_value(self, packed: int) -> bool:
        self._mode.mode = packed
        self._l.get(self._t, self._l.lib.GHOSTTY_TERMINAL_DATA_MODE, self._mode)
        return bool(self._mode.value)

    def _origin_cursor(self, body: bytes) -> bytes:
        """Set origin mode, then re-address the cursor relative to the margins it homes to."""
        # The formatter wrote the margins after the text, which holds only text, SGR and OSC 8,
        # so the last DECSTBM/DECSLRM in the body are the ones in force.
        top = left = 1
        regions = _DECSTBM.findall(body)
        if regions:
            top = int(regions[-1][0])
        margins = _DECSLRM.findall(body)
        if margins and self._mode_value(_pack_mode(69, False)):
            left = int(margins[-1][0])
        x, y = self.cursor
        return b"\x1b[?6h\x1b[%d;%dH" % (y + 2 - top, x + 2 - left)

    def history(self, lines: int) -> bytes:
        """The last ``lines`` rows of scrollback, for a client to write before :meth:`repaint`.

        Each row ends in ``\\r\\n``. The bytes assume a freshly reset terminal (cursor at the
        top left) of the same width, and finish by scrolling the rows off the screen so that the
        clear at the start of the repaint cannot erase them: they end up in the terminal's own
        scrollback. Empty on the alternate screen, which has no scrollback.
        """
        if lines <= 0 or self.is_alt:
            return b""
        available = self.history_rows
        n = min(lines, available)
        if n == 0:
            return b""
        c = self._l.lib
        sel = self._selection(c.GHOSTTY_POINT_TAG_HISTORY, available - n, available - 1)
        body = self._format(sel, vt=True, unwrap=True, trim=True)
        # The formatter closes every styled run before its line break; the reset before the last
        # one matters too, or the scrolling below would fill new lines with a background colour
        # (background colour erase).
        return b"".join(
            (
                body,
                b"\x1b[0m\r\n",
                b"\x1b[%d;1H" % self._rows,
                b"\n" * min(n, self._rows - 1),
            )
        )

    def screen_text(self, escapes: bool = False) -> str:
        """The visible screen, one line per row joined by ``\\n``, trailing blanks trimmed."""
        return self._text(self._active(), escapes, pad_to=self._rows)

    def history_text(self, escapes: bool = False) -> str:
        """Scrollback and visible screen, oldest row first (only the screen on the alternate)."""
        c = self._l.lib
        last = self.history_rows + self._rows - 1
        sel = self._selection(c.GHOSTTY_POINT_TAG_SCREEN, 0, last)
        return self._text(sel, escapes, pad_to=last + 1)

    def _text(self, selection: Any, escapes: bool, pad_to: int) -> str:
        raw = self._format(selection, vt=escapes, unwrap=False, trim=True)
        text = raw.decode("utf-8", "replace")
        # Rows holding only written spaces are not trimmed by the formatter; capture-pane would.
        lines = [ln.rstrip(" ") for ln in (text.split("\r\n") if escapes else text.split("\n"))]
        # The formatter leaves out blank rows at the end; capture-pane prints one line per row.
        if len(lines) < pad_to:
            lines.extend([""] * (pad_to - len(lines)))
        return "\n".join(lines)

    def reset_modes(self, maybe_alt: bool = False) -> bytes:
        """Bytes a client writes on detach so the user's terminal is left sane.

        ``maybe_alt``: output not parsed yet may have entered the alternate screen; leave it
        even if this model is not on it (then with 1047, which restores no saved cursor).
        """
        out = bytearray()
        alt = self.is_alt
        if maybe_alt and not alt:
            out += b"\x1b[?1047l"
        origin = self._mode_value(_pack_mode(6, False))
        if alt:
            if origin:
                out += b"\x1b[?6l"
            # Only when on it: leaving 1049 on the primary screen would also restore a stale
            # saved cursor position.
            which = next(
                (m for m in _ALT_SCREEN_DEC if self._mode_value(_pack_mode(m, False))), 1049
            )
            out += b"\x1b[?%dl" % which
        out += _RESET_COMMON
        if origin and not alt:
            # Leaving origin mode homes the cursor; put it back where the program left it.
            x, y = self.cursor
            out += b"\x1b[?6l\x1b[%d;%dH" % (y + 1, x + 1)
        return bytes(out)
