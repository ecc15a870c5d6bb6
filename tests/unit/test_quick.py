"""The everyday commands' fast path: which command lines it takes, and that it asks the server
exactly what the full CLI would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tmuxish import protocol, quick
from tmuxish.cli import build_parser


class FakeConnection:
    """Stands in for the server connection of the full CLI: keeps the request it is asked."""

    ANSWERS: dict[str, Any] = {
        "ls": [],
        "kill": {"id": 3},
        "send": 5,
        "capture": "screen",
        "wait": 0,
        "new": {"id": 4},
    }

    def __init__(self) -> None:
        self.sock = self
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def settimeout(self, timeout: float | None) -> None:
        pass

    def request(self, command: str, /, **args: Any) -> Any:
        self.asked.append((command, args))
        return self.ANSWERS[command]

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def full_cli_request(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """The one request the full CLI (argparse, commands, the Python API) sends for ``argv``."""
    from tmuxish.client import commands

    conn = FakeConnection()
    monkeypatch.setattr(commands, "_connect", lambda *args, **kwargs: conn)
    commands.dispatch(build_parser().parse_args(argv))
    assert len(conn.asked) == 1, conn.asked
    return conn.asked[0]


@pytest.fixture
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings at their defaults: no config file, none of the settings' variables."""
    from tmuxish import config

    monkeypatch.setenv("TMUXISH_CONFIG", str(tmp_path / "none.toml"))
    for option in config.OPTIONS:
        if option.env:
            monkeypatch.delenv(option.env, raising=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["ls"],
        ["list"],
        ["-S", "/tmp/x/s", "ls"],
        ["-L", "work", "kill", "3"],
        ["send", "web", "make", "Enter"],
        ["send", "1", "Up", "C-c"],
        ["capture"],
        ["capture", "web"],
        ["capture", "7"],
        ["wait", "3"],
        ["wait", "web"],
        ["new", "-d"],
        ["new", "-d", "--"],
        ["new", "-d", "sleep", "100"],
        ["new", "-d", "--", "sleep", "100"],
        ["new", "-d", "-s", "web", "-x", "100", "-y", "30", "--", "sh", "-c", "top -d 1"],
        ["new", "-s", "w", "-d", "-c", "/tmp", "-e", "A=1", "-e", "B==2", "sh", "-x", "--", "y"],
        ["new", "-c", "/", "-d", "-s", "build", "make", "-j8"],
    ],
)
def test_plain_command_lines_take_the_fast_path(
    argv: list[str], no_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = quick.parse(argv)
    assert parsed is not None
    socket_path, socket_name, command, line = parsed
    args = build_parser().parse_args(argv)
    assert (socket_path, socket_name) == (args.socket_path, args.socket_name)
    assert command == {"list": "ls"}.get(args.command, args.command)
    # The request is the one the full CLI sends through the API for the same line.
    assert quick.request(command, line) == full_cli_request(argv, monkeypatch)


def test_new_takes_the_configured_settings(
    no_config: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text('default_command = "bash -l"\nwindow_size = "smallest"\n')
    monkeypatch.setenv("TMUXISH_CONFIG", str(config_file))
    monkeypatch.setenv("TMUXISH_DEFAULT_SIZE", "120x40")
    for argv in (["new", "-d"], ["new", "-d", "-y", "10", "sh"]):
        parsed = quick.parse(argv)
        assert parsed is not None
        request = quick.request(parsed[2], parsed[3])
        assert request == full_cli_request(argv, monkeypatch)
    assert request[1]["window_size"] == "smallest" and request[1]["cols"] == 120


def test_the_fast_path_defaults_are_the_config_defaults(no_config: None) -> None:
    from tmuxish import config

    assert quick.settings() == {key: config.load()[key] for key in quick.DEFAULTS}
    env_of = {option.key: option.env for option in config.OPTIONS}
    assert {key: env for key, (env, _) in quick.DEFAULTS.items()} == {
        key: env_of[key] for key in quick.DEFAULTS
    }
    for env in (
        {"TMUXISH_CONFIG": "/x/c.toml", "HOME": "/h"},
        {"XDG_CONFIG_HOME": "/xdg", "HOME": "/h"},
        {"HOME": "/h"},
        {"XDG_CONFIG_HOME": "", "HOME": "/h"},
    ):
        assert quick.config_file(env) == str(config.config_path(env)), env


def test_a_bad_setting_is_the_full_clis_to_report(
    no_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMUXISH_DEFAULT_SIZE", "huge")
    parsed = quick.parse(["new", "-d", "sh"])
    assert parsed is not None
    with pytest.raises(quick.Unusual):
        quick.request(parsed[2], parsed[3])
    assert quick.run(["-S", "/nonexistent/s", "new", "-d", "sh"]) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["new", "-d", "-e", "NOEQUALS", "sh"],
        ["new", "-d", "-e", "=1", "sh"],
        ["new", "-d", "-x", "0", "sh"],
        ["new", "-d", "-y", "big", "sh"],
        ["new", "-d", "-x", "10001", "sh"],
        ["new", "-d", "-c", "", "sh"],
        ["new", "-d", "-s", "", "sh"],
    ],
)
def test_a_bad_new_line_is_the_full_clis_to_report(argv: list[str], no_config: None) -> None:
    parsed = quick.parse(argv)
    assert parsed is not None
    with pytest.raises(quick.Unusual):
        quick.request(parsed[2], parsed[3])


@pytest.mark.parametrize(
    "argv",
    [
        ["attach", "1"],
        ["a", "web"],
        ["attach", "-r", "1"],
    ],
)
def test_a_direct_attach_takes_the_fast_path(argv: list[str]) -> None:
    parsed = quick.parse(argv)
    assert parsed is not None
    args = build_parser().parse_args(argv)
    assert parsed[2] == "attach"
    assert parsed[3].args == [args.target]
    assert bool(parsed[3].options.get("-r")) == args.readonly


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["ls", "--json"],
        ["ls", "extra"],
        ["kill", "-s", "TERM", "3"],
        ["kill"],
        ["send", "-l", "1", "text"],
        ["send", "1"],
        ["capture", "-e", "1"],
        ["capture", "1", "2"],
        ["ls", "--help"],
        ["-H", "ssh://box", "ls"],
        ["-S"],
        ["attach"],
        ["attach", "--detach-keys", "", "1"],
        ["attach", "1", "2"],
        ["new", "--", "sh"],
        ["new", "sh"],
        ["new", "-d", "--log", "f", "sh"],
        ["new", "-d", "--runtime", "runc", "--bundle", "b"],
        ["new", "-ds", "web"],
        ["new", "-d", "-s"],
        ["new", "-d", "-s", "-x"],
        ["new", "-d", "--help"],
        ["wait"],
        ["wait", "1", "2"],
    ],
)
def test_anything_else_goes_to_the_full_cli(argv: list[str]) -> None:
    assert quick.parse(argv) is None


def test_a_remote_host_in_the_environment_goes_to_the_full_cli(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TMUXISH_HOST", "ssh://box")
    assert quick.run(["ls"]) is None


def test_no_server_goes_to_the_full_cli(tmp_path: object) -> None:
    assert quick.run(["-S", f"{tmp_path}/none", "ls"]) is None


class FakeServer:
    """A server that greets, takes each request, and closes without answering (a lost reply);
    or, with ``answer_hello=False``, accepts and never says a word (a stuck server)."""

    def __init__(self, path: str, answer_hello: bool = True) -> None:
        import socket
        import threading

        self.requests: list[protocol.Message] = []
        self.answer_hello = answer_hello
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        held = []
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            if not self.answer_hello:
                held.append(conn)
                continue
            with conn:
                conn.settimeout(5)
                decoder = protocol.Decoder()
                conn.sendall(protocol.hello({"pid": 0}))
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    got = [m for m in decoder.feed(data) if m[0] == protocol.REQUEST]
                    self.requests += got
                    if got:
                        break  # close without a reply
        for conn in held:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def run_like_entry(argv: list[str]) -> int:
    from tmuxish import cli

    code = quick.run(argv)
    return cli.main(argv) if code is None else code


def test_a_lost_reply_is_reported_not_sent_again(
    sock_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Failed before the fix: the fast path fell back to the full CLI, which typed the keys twice.
    server = FakeServer(str(sock_dir / "s"))
    try:
        code = run_like_entry(["-S", str(sock_dir / "s"), "send", "1", "make", "Enter"])
    finally:
        server.close()
    assert [m[2] for m in server.requests] == ["send"]
    assert code == 1
    assert capsys.readouterr().err == "tmuxish: the server closed the connection\n"


def test_a_stuck_server_costs_one_deadline_not_two(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from tmuxish.client.connection import Connection

    dialled = Connection.dial
    monkeypatch.setattr(
        Connection, "dial", staticmethod(lambda path, timeout=10.0: dialled(path, 0.5))
    )
    server = FakeServer(str(sock_dir / "s"), answer_hello=False)
    try:
        start = time.monotonic()
        code = run_like_entry(["-S", str(sock_dir / "s"), "ls"])
        elapsed = time.monotonic() - start
    finally:
        server.close()
    assert code == 1
    assert capsys.readouterr().err == "tmuxish: the server did not answer in time\n"
    assert elapsed < 0.9, elapsed


@pytest.mark.parametrize(
    "value", ["/tmp/x/s,3", "/tmp/x/../x/s,4", "/tmp/x/s,", "/tmp/y/s,3", "3", "", "/tmp/x/s,a"]
)
def test_the_session_we_run_inside_is_the_full_clis(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tmuxish.client import commands

    monkeypatch.setenv("TMUXISH", value)
    monkeypatch.delenv("TMUXISH_HOST", raising=False)
    args = build_parser().parse_args(["-S", "/tmp/x/s", "attach", "1"])
    assert quick.inside_session("/tmp/x/s") == commands._inside(args)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--", "make", "test"],
        ["run", "-t", "build", "--", "cd src && make; echo $?"],
        ["run", "-t", "3", "--timeout", "600", "--raw", "ls", "-la"],
        ["run", "--raw", "-t", "web", "true"],
    ],
)
def test_run_asks_what_the_full_cli_asks(
    argv: list[str], no_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` streams, so the pin is on the conversation both paths share (quick.stream_run)."""
    from tmuxish.client import commands

    asked: list[tuple[dict[str, Any], bool]] = []

    def stream_run(conn: Any, args: dict[str, Any], raw: bool, *_: Any) -> int:
        asked.append((args, raw))
        return 0

    monkeypatch.setattr(quick, "stream_run", stream_run)
    monkeypatch.setattr(commands, "_connect", lambda *args, **kwargs: FakeConnection())
    commands.dispatch(build_parser().parse_args(argv))
    parsed = quick.parse(argv)
    assert parsed is not None
    command, line = parsed[2], parsed[3]
    assert command == "run"
    name, args = quick.request(command, line)
    assert name == "run"
    assert [(args, bool(line.options.get("--raw")))] == asked


@pytest.mark.parametrize(
    "argv",
    [["run"], ["run", "--"], ["run", "--stdin", "--", "cat"], ["run", "--timeout=5", "true"]],
)
def test_run_lines_the_fast_path_leaves_to_the_full_cli(argv: list[str]) -> None:
    assert quick.parse(argv) is None
