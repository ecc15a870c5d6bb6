"""Layers that hold: the shared core (``tmuxish/``) imports neither side, the client never imports
the server nor the server the client, and only ``tmuxish.protocol`` builds wire frames.

The one door between the layers is the entry: ``tmuxish/cli.py`` dispatches to either side,
``tmuxish/quick.py`` (its fast path) to the client, and ``tmuxish/__init__.py`` re-exports the
public API from ``tmuxish.client.api``; all of them lazily, inside functions. Every import is
counted, lazy or under TYPE_CHECKING, since either is a dependency someone has to keep.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: (file, side it may import): the entry's doors, nothing more.
DOORS = {
    ("tmuxish/cli.py", "tmuxish.client"),
    ("tmuxish/cli.py", "tmuxish.server"),
    ("tmuxish/quick.py", "tmuxish.client"),
    ("tmuxish/__init__.py", "tmuxish.client"),
}

#: Who may not import what, by the directory a file is in.
FORBIDDEN = {
    "tmuxish": ("tmuxish.client", "tmuxish.server"),
    "client": ("tmuxish.server",),
    "server": ("tmuxish.client",),
}


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import in ``source``, at any depth; ``from a import b`` counts
    as both ``a`` and ``a.b`` (b may be a module)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_breaks(relpath: str, source: str) -> list[str]:
    """Every import in the file at ``relpath`` (from the repository root) that breaks a layer."""
    forbidden = FORBIDDEN.get(relpath.split("/")[0], ())
    breaks = []
    for line, module in imported_modules(source):
        for side in forbidden:
            if _within(module, side) and (relpath, side) not in DOORS:
                breaks.append(f"{relpath}:{line} imports {module}")
    return sorted(set(breaks))


def sources() -> list[tuple[str, str]]:
    files = [
        p
        for d in ("tmuxish", "client", "server")
        for p in sorted((ROOT / d).glob("*.py"))
        if not p.is_symlink()
    ]
    return [(p.relative_to(ROOT).as_posix(), p.read_text()) for p in files]


def test_every_layer_holds() -> None:
    files = sources()
    assert {"tmuxish/cli.py", "client/api.py", "server/daemon.py"} <= {f for f, _ in files}
    breaks = [b for relpath, source in files for b in layer_breaks(relpath, source)]
    assert breaks == []


def test_the_doors_are_used_only_lazily() -> None:
    """The entry reaches into a side only inside a function, so `ls` pays for neither."""
    for relpath, source in sources():
        if not any(relpath == door for door, _ in DOORS):
            continue
        for node in ast.parse(source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [m for _, m in imported_modules(ast.unparse(node))]
                sides = ("tmuxish.client", "tmuxish.server")
                assert not any(_within(m, s) for m in names for s in sides), (relpath, names)


@pytest.mark.parametrize(
    ("relpath", "source"),
    [
        ("tmuxish/config.py", "def f():\n    from tmuxish.server.policy import POLICIES\n"),
        ("tmuxish/paths.py", "from tmuxish import client\n"),
        ("client/remote.py", "if TYPE_CHECKING:\n    import tmuxish.server.daemon\n"),
        ("server/session.py", "from tmuxish.client.core import StreamState\n"),
        ("tmuxish/quick.py", "from tmuxish.server import daemon\n"),
    ],
)
def test_a_layer_break_is_found(relpath: str, source: str) -> None:
    assert layer_breaks(relpath, source) != []


def test_only_the_protocol_module_builds_frames() -> None:
    """Frames come from tmuxish.protocol's builders; nothing else packs msgpack for the wire.
    (server/upgrade.py packs its state blob for the next process, not for a peer.)"""
    offenders = []
    for relpath, source in sources():
        if relpath in ("tmuxish/protocol.py", "tmuxish/minipack.py", "server/upgrade.py"):
            continue
        needles = ("protocol.encode(", "msgpack.packb(", "packb(", "import msgpack", "minipack")
        for needle in needles:
            if needle in source:
                offenders.append(f"{relpath}: {needle}")
    assert offenders == []
