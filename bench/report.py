"""Medians, paired ratios, tables and target checks for the bench results."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from measure import CLI_OPS

Num = float | int | None


def median(xs: Sequence[Num]) -> float | None:
    vals = sorted(float(x) for x in xs if x is not None and not math.isnan(float(x)))
    if not vals:
        return None
    n = len(vals)
    return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2


def paired(a: Sequence[Num], b: Sequence[Num]) -> float | None:
    """Median over repetitions of a[i] / b[i] (both measured in the same repetition)."""
    ratios = [float(x) / float(y) for x, y in zip(a, b, strict=False) if x is not None and y]
    return median(ratios)


def col(reps: Sequence[dict[str, Any] | None], key: str) -> list[Num]:
    return [r.get(key) if r else None for r in reps]


def fmt(x: Any, spec: str = ".1f", suffix: str = "") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    return f"{x:{spec}}{suffix}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def check(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


# -- summary (numbers) ---------------------------------------------------------------------


def summary(bench: Any, names: Sequence[str]) -> dict[str, Any]:
    """Medians and paired ratios of everything measured, keyed by metric then system."""
    res = bench.res
    out: dict[str, Any] = {"throughput": {}, "latency": {}, "attach": {}, "cli": {}}
    for kind in ("plain", "sgr"):
        tp = res["throughput"][kind]
        base = {
            b: col(tp[b], "mbps") if b in tp else []
            for b in ("raw", "dtach", "tmux", "tmuxish-noscreen")
        }
        rows = {}
        for n in names:
            mb = col(tp[n], "mbps")
            exact = [r["exact"] for r in tp[n] if r]
            rows[n] = {
                "mbps": median(mb),
                "x_raw": paired(mb, base["raw"]),
                "x_dtach": paired(mb, base["dtach"]),
                "x_tmux": paired(mb, base["tmux"]),
                "x_noscreen": paired(mb, base["tmuxish-noscreen"]),
                "delivered_frac": median(col(tp[n], "delivered_frac")),
                "exact": None
                if not exact
                else (all(exact) if all(exact) or not any(exact) else "some"),
            }
        out["throughput"][kind] = rows
    lat = res["latency"]
    for n in names:
        row: dict[str, Any] = {}
        for p in ("p50_us", "p99_us"):
            v = col(lat[n], p)
            row[p] = median(v)
            for b in ("raw", "dtach", "tmux"):
                row[f"{p}_x_{b}"] = paired(v, col(lat[b], p)) if b in lat else None
        unclean = [r["unclean"] for r in lat[n] if r]
        row["unclean"] = sum(unclean) if unclean else None
        out["latency"][n] = row
    att = res["attach"]
    for n in names:
        row = {}
        for k in ("attach_ms", "detach_ms"):
            v = col(att[n], k)
            row[k] = median(v)
            for b in ("dtach", "tmux"):
                row[f"{k}_x_{b}"] = paired(v, col(att[b], k)) if b in att else None
        row["notes"] = sorted({x for r in att[n] if r for x in r["notes"]})
        rp = res["repaint"].get(n)
        row["repaint"] = rp["repaint"] if rp else None
        out["attach"][n] = row
    cli = res["cli"]
    py_all: list[Num] = []
    for n in names:
        row = {}
        for op in (*CLI_OPS, "new", "new_api"):
            row[f"{op}_ms"] = median(col(cli[n], f"{op}_ms"))
            row[f"{op}_x"] = median(col(cli[n], f"{op}_x"))
            row[f"{op}_bare_x"] = median(col(cli[n], f"{op}_bare_x"))
        row["py_ms"] = median(col(cli[n], "py_ms"))
        row["py_bare_ms"] = median(col(cli[n], "py_bare_ms"))
        py_all += col(cli[n], "py_ms")
        row["errors"] = {k: v for r in cli[n] if r for k, v in r["errors"].items()}
        out["cli"][n] = row
    out["python_ms"] = median(py_all)
    out["memory"] = res["memory"]
    return out


# -- rendering -------------------------------------------------------------------------------


def _x(v: float | None) -> str:
    return fmt(v, ".2f", "x")


def render(bench: Any, cfg: Any, names: Sequence[str]) -> str:
    s = summary(bench, names)
    parts: list[str] = []
    unavailable = bench.unavailable
    shown = [n for n in names if n not in unavailable]
    attachable = [n for n in shown if n != "raw"]
    size_mib = cfg.size / (1 << 20)

    if "throughput" in bench.groups:
        rows = []
        for kind in ("plain", "sgr"):
            for n in shown:
                r = s["throughput"][kind][n]
                rows.append(
                    [
                        kind,
                        n,
                        fmt(r["mbps"]),
                        _x(r["x_raw"]),
                        _x(r["x_dtach"]),
                        _x(r["x_tmux"]),
                        fmt(
                            None if r["delivered_frac"] is None else 100 * r["delivered_frac"],
                            ".1f",
                            "%",
                        ),
                        fmt(r["exact"]) if not isinstance(r["exact"], str) else r["exact"],
                    ]
                )
        parts.append(
            f"1. Throughput: {size_mib:g} MiB cat through an attached client into the bench's "
            f"{cfg.cols}x{cfg.rows} PTY\n"
            "   MB/s = cat payload / time from go key to end marker on screen; delivered = bytes "
            "that arrived vs a plain PTY\n"
            + table(
                ["kind", "system", "MB/s", "x raw", "x dtach", "x tmux", "delivered", "byte-exact"],
                rows,
            )
        )

    if "latency" in bench.groups:
        rows = []
        for n in shown:
            r = s["latency"][n]
            rows.append(
                [
                    n,
                    fmt(r["p50_us"], ".0f"),
                    fmt(r["p99_us"], ".0f"),
                    _x(r["p50_us_x_raw"]),
                    _x(r["p99_us_x_raw"]),
                    _x(r["p50_us_x_tmux"]),
                    _x(r["p99_us_x_tmux"]),
                    fmt(r["unclean"], "d"),
                ]
            )
        parts.append(
            f"2. Key echo latency: {cfg.keys} single keys to `cat` in raw mode, one at a time, "
            "timed until the key is visible\n"
            + table(
                [
                    "system",
                    "p50 us",
                    "p99 us",
                    "p50 x raw",
                    "p99 x raw",
                    "p50 x tmux",
                    "p99 x tmux",
                    "unclean echoes",
                ],
                rows,
            )
        )

    if "attach" in bench.groups or "repaint" in bench.groups:
        rows = []
        for n in attachable:
            r = s["attach"][n]
            rows.append(
                [
                    n,
                    fmt(r["attach_ms"], ".2f"),
                    _x(r["attach_ms_x_tmux"]),
                    fmt(r["detach_ms"], ".2f"),
                    _x(r["detach_ms_x_tmux"]),
                    fmt(r["repaint"]),
                    "; ".join(r["notes"]),
                ]
            )
        parts.append(
            "3/6. Attach: spawn client -> session's marker on screen (dtach: program redraws on "
            "SIGWINCH); detach: keys -> client exit;\n"
            "   re-attach repaint: a line printed while attached is shown again by a new attach\n"
            + table(
                [
                    "system",
                    "attach ms",
                    "x tmux",
                    "detach ms",
                    "x tmux",
                    "re-attach repaint",
                    "notes",
                ],
                rows,
            )
        )

    if "cli" in bench.groups:
        rows = []
        for n in attachable:
            r = s["cli"][n]
            cells = [n]
            for op in (*CLI_OPS, "new"):
                ms, x = r[f"{op}_ms"], r[f"{op}_x"]
                cells.append("n/a" if ms is None else f"{ms:.1f} ({x:.2f}x)")
            ms, x = r["new_api_ms"], r["new_api_x"]
            cells.append("n/a" if ms is None else f"{ms:.1f} ({x:.2f}x)")
            rows.append(cells)
        bare_note = ""
        t = s["cli"].get("tmuxish")
        if t and t.get("py_bare_ms") is not None and t.get("py_ms") is not None:
            ratios = ", ".join(f"{op} {_x(t[f'{op}_bare_x'])}" for op in (*CLI_OPS, "new"))
            bare_note = (
                f"\n   site start-up: `-c pass` {fmt(t['py_ms'], '.1f')} ms here, "
                f"`-S -c pass` {fmt(t['py_bare_ms'], '.1f')} ms; every command pays the "
                f"difference too, which flatters the ratios\n"
                f"   tmuxish with it taken out of both sides: {ratios} (still a lower bound: "
                f"site here also imports modules tmuxish needs, e.g. pathlib, typing, re)"
            )
        parts.append(
            f"4. CLI cost: ms per call (ratio to `{os.path.basename(cfg.python)} -c pass` timed "
            f"interleaved in the same block; median {fmt(s['python_ms'], '.1f')} ms);\n"
            f"   wait = on a program that has exited; attach = spawn to the session's marker on "
            f"screen (as in 3.);\n"
            f"   new = `new -d` per session while creating {cfg.create_n} sessions, a call each\n"
            + table(["system", *CLI_OPS, "new", "new via API"], rows)
            + bare_note
        )

    if "memory" in bench.groups:
        mem = s["memory"]
        rows = []
        for n in attachable:
            idle = mem["idle"].get(n)
            cells = [n]
            for c in cfg.mem_counts:
                m = idle.get(c) if idle else None
                if not m:
                    cells.append("n/a")
                    continue
                procs = "" if m["procs"] == 1 else f" [{m['procs']}p]"
                cells.append(f"{m['rss_kib'] / 1024:.1f}/{m['pss_kib'] / 1024:.1f}{procs}")
            rows.append(cells)
        parts.append(
            "5. Memory: server RSS/PSS in MiB with N idle sessions (summed over server processes; "
            "[Np] = N processes)\n"
            + table(["system", *(f"{c} idle" for c in cfg.mem_counts)], rows)
        )
        rows = []
        for n in attachable:
            idle = mem["idle"].get(n) or {}
            hist = mem["history"].get(n) or {}
            fl = mem["flood"].get(n) or {}
            rows.append(
                [
                    n,
                    fmt(idle.get("per_session_rss_kib"), ".1f"),
                    fmt(idle.get("per_session_pss_kib"), ".1f"),
                    fmt(idle.get("per_session_memfd_kib"), ".1f"),
                    fmt(hist.get("per_session_rss_kib"), ".0f"),
                    fmt(hist.get("per_session_pss_kib"), ".0f"),
                    fmt(hist.get("per_session_memfd_kib"), ".0f"),
                    fmt(None if "peak_rss_kib" not in fl else fl["peak_rss_kib"] / 1024, ".1f"),
                    fmt(fl.get("mbps"), ".1f"),
                ]
            )
        parts.append(
            f"   per session in KiB: idle (slope {min(cfg.mem_counts)}->{max(cfg.mem_counts)} "
            f"sessions), with {cfg.hist_lines} lines of history; flood of "
            f"{cfg.flood_bytes / 1e6:g} MB with no client;\n"
            "   memfd = memfds the server processes hold open (tmuxish's keeper: session records "
            "and screen snapshots), in no RSS; the targets count RSS + memfd\n"
            + table(
                [
                    "system",
                    "idle RSS",
                    "idle PSS",
                    "idle memfd",
                    "history RSS",
                    "history PSS",
                    "history memfd",
                    "flood peak RSS MiB",
                    "flood MB/s",
                ],
                rows,
            )
        )

    parts.append(render_targets(s, cfg, names, bench))
    notes = []
    for n, why in unavailable.items():
        notes.append(f"  {n}: n/a: {why}")
    for n, errs in bench.errors.items():
        for what, msgs in errs.items():
            times = f" ({len(msgs)} times)" if len(msgs) > 1 else ""
            notes.append(f"  {n}: {what} failed{times}: {msgs[0][:300]}")
    for n in names:
        cerr = s["cli"].get(n, {}).get("errors") if n in s["cli"] else None
        for op, msg in (cerr or {}).items():
            notes.append(f"  {n}: cli {op} failed: {msg[:200]}")
    if notes:
        parts.append("Problems:\n" + "\n".join(notes))
    return "\n\n".join(parts)


def held(m: dict[str, Any] | None, spec: str) -> tuple[float | None, str]:
    """Per-session memory a system holds: RSS plus memfds (in no RSS), and how it adds up."""
    rss = (m or {}).get("per_session_rss_kib")
    if rss is None:
        return None, "n/a"
    memfd = (m or {}).get("per_session_memfd_kib") or 0.0
    total = rss + memfd
    text = f"{total:{spec}} KiB"
    if memfd:
        text += f" (RSS {rss:{spec}} + memfds {memfd:{spec}})"
    if m is not None and m.get("settled") is False:
        text += " [RSS never settled: a sample of a moving value]"
    return total, text


def render_targets(s: dict[str, Any], cfg: Any, names: Sequence[str], bench: Any) -> str:
    t = "tmuxish"
    lines = ["Targets (issue 6; tmuxish, ratios paired per rep in this run):"]
    if t not in names:
        return lines[0] + " tmuxish not in --systems"

    def add(ok: bool | None, text: str, value: str) -> None:
        lines.append(f"  [{check(ok)}] {text}: {value}")

    def ge(v: float | None, lim: float) -> bool | None:
        return None if v is None else v >= lim

    def le(v: float | None, lim: float) -> bool | None:
        return None if v is None else v <= lim

    for kind in ("plain", "sgr"):
        r = s["throughput"][kind][t]
        add(ge(r["x_dtach"], 0.8), f"throughput {kind} >= 0.8x dtach", _x(r["x_dtach"]))
        add(ge(r["x_tmux"], 2.5), f"throughput {kind} >= 2.5x tmux", _x(r["x_tmux"]))
        add(
            ge(r["x_noscreen"], 0.8),
            f"issue 3: the screen model costs <= 20% of {kind} throughput (x tmuxish-noscreen)",
            _x(r["x_noscreen"]),
        )
    r = s["latency"][t]
    add(
        le(r["p50_us_x_tmux"], 1.0),
        "key echo p50 <= tmux",
        f"{_x(r['p50_us_x_tmux'])} ({fmt(r['p50_us'], '.0f')} us)",
    )
    add(
        le(r["p99_us_x_tmux"], 1.0),
        "key echo p99 <= tmux",
        f"{_x(r['p99_us_x_tmux'])} ({fmt(r['p99_us'], '.0f')} us)",
    )
    mem = s["memory"]
    idle, idle_text = held(mem["idle"].get(t), ".1f")
    add(le(idle, 100), "idle session <= 100 KiB server memory", idle_text)
    h, h_text = held(mem["history"].get(t), ".0f")
    ht, ht_text = held(mem["history"].get("tmux"), ".0f")
    add(
        None if h is None or ht is None else h <= ht,
        f"session with {cfg.hist_lines} lines of history <= tmux",
        f"{h_text} vs tmux {ht_text}",
    )
    c = s["cli"].get(t, {})
    for op in ("ls", "kill", "send", "capture"):
        x = c.get(f"{op}_x")
        add(le(x, 2.5), f"`{op}` <= 2.5x python -c pass", _x(x))
    for op in ("ls", "kill", "send", "capture"):
        x = c.get(f"{op}_bare_x")
        add(le(x, 2.5), f"`{op}` <= 2.5x, this environment's site start-up taken out", _x(x))
    for op in ("new", "send", "run", "wait", "attach"):
        x = c.get(f"{op}_x")
        add(le(x, 2.0), f"issue 15: `{op}` <= 2x python -c pass", _x(x))
    api, tmux_new = c.get("new_api_ms"), s["cli"].get("tmux", {}).get("new_ms")
    cli_new = c.get("new_ms")
    add(
        None if cli_new is None or tmux_new is None else cli_new <= 3 * tmux_new,
        f"issue 15: {cfg.create_n} sessions with the CLI <= 3x tmux's time",
        "n/a"
        if cli_new is None or not tmux_new
        else f"{cli_new / tmux_new:.2f}x tmux ({cli_new:.1f} vs {tmux_new:.1f} ms per session)",
    )
    add(
        None if api is None or tmux_new is None else api <= tmux_new,
        "issue 7: a session made through the Python API <= one `tmux new -d`",
        f"{fmt(api, '.1f')} ms vs tmux {fmt(tmux_new, '.1f')} ms",
    )
    fl = (mem["flood"].get(t) or {}).get("peak_rss_kib")
    add(
        None if fl is None else fl < 200 * 1024,
        f"{cfg.flood_bytes / 1e6:g} MB flood, no client: peak server RSS < 200 MiB",
        fmt(None if fl is None else fl / 1024, ".1f", " MiB"),
    )
    rp = s["attach"].get(t, {}).get("repaint")
    add(rp, "re-attach shows the screen", fmt(rp))
    return "\n".join(lines)
