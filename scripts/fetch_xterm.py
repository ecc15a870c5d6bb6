#!/usr/bin/env python3
"""Fetch the xterm.js files the web page ships, unmodified, and check them against pinned hashes.

    python3 scripts/fetch_xterm.py          # fetch with `npm pack`, verify, install
    python3 scripts/fetch_xterm.py --check  # verify the committed copies only (no network)

The built files are committed (client/web/static/xterm/) so that a wheel and CI need no npm. To move
to a new release, change VERSIONS, run with --update to print the new hashes, review, and commit
both the files and the hashes below.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "client" / "web" / "static" / "xterm"

#: npm package -> version (xterm.js 6 and its fit addon, both MIT).
VERSIONS = {"@xterm/xterm": "6.0.0", "@xterm/addon-fit": "0.11.0"}

#: sha256 of each `npm pack` tarball, as the registry served it when pinned.
TARBALLS = {
    "@xterm/xterm": "908e66e04af6c8dc6b00dd3b54de088e2e81e5ed866284fd6c2fb3c2d1c7a3f6",
    "@xterm/addon-fit": "26003b4517a132b64e4ff228fd88a5fda3fff5e606c76093f6dcff772e9ecec0",
}

#: (package, path inside the tarball) -> (file name shipped, sha256).
FILES = {
    ("@xterm/xterm", "package/lib/xterm.js"): (
        "xterm.js",
        "14903579ff54664cd72f8e8699e6961a6272c21863ec1c3b118cdc8af5d4a972",
    ),
    ("@xterm/xterm", "package/css/xterm.css"): (
        "xterm.css",
        "854a7c0fb70e8b1a083c16797ab827299fb18744f5ad34f227b48337e33293c6",
    ),
    ("@xterm/xterm", "package/LICENSE"): (
        "LICENSE.xterm",
        "b569f629d00f2626a8100df2a1798210535621e42164dfd426a6fe5aac7b0ccd",
    ),
    ("@xterm/addon-fit", "package/lib/addon-fit.js"): (
        "addon-fit.js",
        "ba3ea256ce0620a0992a197d6c9baea64823fc93d8da07a9e366ca9943c18527",
    ),
    ("@xterm/addon-fit", "package/LICENSE"): (
        "LICENSE.addon-fit",
        "e256f01188af527e4d06d21d06fbf785ae9c50d4b328bf03cbe0ba7f0aa4228f",
    ),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(package: str, workdir: Path) -> bytes:
    """The registry tarball of ``package`` at its pinned version, through the npm client."""
    spec = f"{package}@{VERSIONS[package]}"
    out = subprocess.run(
        ["npm", "pack", "--silent", spec],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    return (workdir / out).read_bytes()


def fetch(update: bool) -> int:
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for package in VERSIONS:
            data = pack(package, Path(tmp))
            if update:
                print(f"tarball {package}: {sha256(data)}")
            elif sha256(data) != TARBALLS[package]:
                problems.append(f"{package}: tarball hash {sha256(data)} is not the pinned one")
                continue
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for (pkg, member), (name, digest) in FILES.items():
                    if pkg != package:
                        continue
                    extracted = tar.extractfile(member)
                    if extracted is None:
                        problems.append(f"{package}: {member} missing")
                        continue
                    content = extracted.read()
                    if update:
                        print(f"file {name}: {sha256(content)}")
                    elif sha256(content) != digest:
                        problems.append(f"{name}: hash {sha256(content)} is not the pinned one")
                        continue
                    DEST.mkdir(parents=True, exist_ok=True)
                    (DEST / name).write_bytes(content)
    for problem in problems:
        print(f"fetch_xterm: {problem}", file=sys.stderr)
    return 1 if problems else 0


def check() -> int:
    problems = []
    for name, digest in FILES.values():
        path = DEST / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif sha256(path.read_bytes()) != digest:
            problems.append(f"{name}: differs from the pinned release")
    for problem in problems:
        print(f"fetch_xterm: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the committed files only")
    parser.add_argument("--update", action="store_true", help="print the hashes of new versions")
    args = parser.parse_args()
    return check() if args.check else fetch(args.update)


if __name__ == "__main__":
    sys.exit(main())
