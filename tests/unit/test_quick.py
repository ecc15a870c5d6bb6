"""The everyday commands' fast path: which command lines it takes, and that it asks the server
exactly what the full CLI would."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmuxish import protocol, quick
from tmuxish.cli import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["ls"],
        ["-S", "/tmp/x/s", "ls"],
        ["-L", "work", "kill", "3"],
        ["send", "web", "make", "Enter"],
        ["send", "1", "Up", "C-c"],
        ["capture"],
        ["capture", "web"],
        ["capture", "7"],
    ],
)
def test_plain_command_lines_take_the_fast_path(argv: list[str]) -> None:
    parsed = quick.parse(argv)
    assert parsed is not None
    socket_path, socket_name, command, rest = parsed
    args = build_parser().parse_args(argv)
    assert (socket_path, socket_name, command) == (args.socket_path, args.socket_name, args.command)
    # The request is the one the full CLI sends through the API for the same line.
    name, request = quick.request(command, rest)
    assert name == command
    if command == "kill":
        assert request == {"target": args.target, "signal": args.signal}
    elif command == "send":
        from tmuxish.keynames import send_args

        assert request == {"target": args.target, **send_args(list(args.keys), args.literal)}
    elif command == "capture":
        target = int(args.target) if args.target and args.target.isdigit() else args.target
        assert request == {"target": target, "history": args.history, "escapes": args.escapes}


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
        ["attach", "1"],
        ["new", "--", "sh"],
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

    opened = Connection.open.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        Connection,
        "open",
        classmethod(lambda cls, path, timeout=10.0, pass_fds=(): opened(cls, path, 0.5, pass_fds)),
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
