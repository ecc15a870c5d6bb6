"""`tmuxish web` in a real browser: Debian's Chromium driven by playwright, the real CLI, a real
server. Attach, type, resize, detach, exit; 64 MiB through a tab with the memory bounded."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("websockets", reason="the web extra (websockets) is not installed")

from helpers import Cli, wait_for
from webkit import Web, start_web, stop_web

SCREEN_JS = """() => {
  const t = window.tmuxish && window.tmuxish.term;
  if (!t) return "";
  const b = t.buffer.active, lines = [];
  for (let i = 0; i < t.rows; i++) {
    const l = b.getLine(b.viewportY + i);
    lines.push(l ? l.translateToString(true) : "");
  }
  return lines.join("\\n");
}"""


def screen(page: Any) -> str:
    return str(page.evaluate(SCREEN_JS))


def wait_screen(page: Any, text: str, timeout: float = 15) -> str:
    return str(wait_for(lambda: text in (s := screen(page)) and s, timeout, f"{text!r} on screen"))


def open_page(page: Any, web: Web, sid: int) -> None:
    page.goto(web.url)
    page.locator(f'tr[data-session="{sid}"] button.attach').click()
    page.wait_for_function("() => window.tmuxish.attached !== null")


def term_size(page: Any) -> tuple[int, int]:
    cols, rows = page.evaluate("() => [window.tmuxish.term.cols, window.tmuxish.term.rows]")
    return int(cols), int(rows)


def test_attach_type_resize_detach_exit(cli: Cli, web: Web, page: Any, tmp_path: Path) -> None:
    sid = cli.new("sh", name="demo")
    page.goto(web.url)
    # The list shows what `ls` shows; the token left the address bar.
    row = page.locator(f'tr[data-session="{sid}"]')
    row.wait_for()
    assert "demo" in row.inner_text() and "running" in row.inner_text()
    assert "#" not in page.url
    row.locator("button.attach").click()
    page.wait_for_function("() => window.tmuxish.attached !== null")

    page.keyboard.type("echo hi-$((6*7))")
    page.keyboard.press("Enter")
    wait_screen(page, "hi-42")

    # The session follows the browser window, through the fit addon and a RESIZE frame.
    before = term_size(page)
    page.set_viewport_size({"width": 640, "height": 330})
    wait_for(lambda: term_size(page) != before, 10, "the terminal to refit")
    cols, rows = term_size(page)
    wait_for(lambda: (cli.session(sid)["cols"], cli.session(sid)["rows"]) == (cols, rows), 10)
    page.keyboard.type("stty size")
    page.keyboard.press("Enter")
    wait_screen(page, f"{rows} {cols}")
    shot = tmp_path / "tmuxish-web.png"
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 1000

    # Detach leaves the session running, with no client.
    page.locator("#detach").click()
    page.locator(f'tr[data-session="{sid}"]').wait_for()
    wait_for(lambda: cli.session(sid)["clients"] == 0, 10, "the tab to detach")
    assert cli.session(sid)["status"] == "running"

    # Attach again (the repaint shows the earlier output); the exit shows in the page.
    page.locator(f'tr[data-session="{sid}"] button.attach').click()
    wait_screen(page, "hi-42")
    page.keyboard.type("exit 3")
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.tmuxish.exitCode === 3")
    assert page.locator("#status").inner_text() == "session exited with code 3"
    wait_screen(page, "[session exited with code 3]")
    assert web.token not in web.log()


def test_two_tabs_share_a_session_under_its_size_policy(cli: Cli, web: Web, browser: Any) -> None:
    sid = cli.new("sh")
    context = browser.new_context(viewport={"width": 900, "height": 500})
    try:
        big, small = context.new_page(), context.new_page()
        small.set_viewport_size({"width": 500, "height": 300})
        open_page(big, web, sid)
        open_page(small, web, sid)
        wait_for(lambda: cli.session(sid)["clients"] == 2, 10, "two tabs attached")
        # The default policy follows the latest client to attach, as with terminals.
        cols, rows = term_size(small)
        wait_for(lambda: (cli.session(sid)["cols"], cli.session(sid)["rows"]) == (cols, rows))
        small.keyboard.type("echo from-$((1+1))-tab")
        small.keyboard.press("Enter")
        wait_screen(big, "from-2-tab")
    finally:
        context.close()


def test_read_only_tabs_cannot_type(cli: Cli, page: Any, tmp_path: Path) -> None:
    web = start_web(cli, tmp_path, "--read-only")
    try:
        sid = cli.new("sh")
        open_page(page, web, sid)
        assert page.locator("#badge").is_visible()
        cli.run("send", str(sid), "echo typed-$((2*3))", "Enter")
        wait_screen(page, "typed-6")
        page.keyboard.type("echo nope-$((3*3))")
        page.keyboard.press("Enter")
        cli.run("send", str(sid), "echo after-$((4*4))", "Enter")
        wait_screen(page, "after-16")
        assert "nope" not in cli.run("capture", str(sid)).stdout
    finally:
        stop_web(web)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_64_mib_through_a_tab_with_memory_bounded(cli: Cli, web: Web, page: Any) -> None:
    size = 64 << 20
    sid = cli.new("sh", "-c", f"read x; yes 0123456789abcdef | head -c {size}; echo END-$((5*5))")
    server_pid = cli.server_pid()
    assert server_pid is not None
    open_page(page, web, sid)
    web_before, server_before = web.rss(), _rss(server_pid)
    peaks = {"web": web_before, "server": server_before}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peaks["web"] = max(peaks["web"], web.rss())
            peaks["server"] = max(peaks["server"], _rss(server_pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        started = time.monotonic()
        page.keyboard.press("Enter")
        try:
            wait_screen(page, "END-25", timeout=90)
        except AssertionError:
            state = "() => [window.tmuxish.received, window.tmuxish.written, window.tmuxish.acked]"
            print("tab state:", page.evaluate(state), "log:", web.log(), "screen:", screen(page))
            raise
    finally:
        done.set()
        sampler.join()
    elapsed = time.monotonic() - started
    received = page.evaluate("() => window.tmuxish.received")
    web_mib = f"{web_before >> 20} -> peak {peaks['web'] >> 20} MiB"
    server_mib = f"{server_before >> 20} -> peak {peaks['server'] >> 20} MiB"
    print(f"64 MiB in {elapsed:.1f}s: tab received {received} bytes; web RSS {web_mib}; ", end="")
    print(f"server RSS {server_mib}")
    # The tab's window is 1 MiB; what the web process holds for it is bounded by that, not by
    # what the program prints.
    assert peaks["web"] - web_before < 48 << 20
    assert peaks["server"] - server_before < 96 << 20
    assert os.path.exists(f"/proc/{web.proc.pid}")
