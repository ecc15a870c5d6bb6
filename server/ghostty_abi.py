"""The libghostty-vt declarations, without parsing C at every server start.

pyghostty (cffi in ABI mode) parses its ~80 KB of C declarations with pycparser when it is
imported: ~150 ms here, paid at every server start, which is the first command after a boot,
every crash restart and every upgrade. cffi can write what it parsed out as data (its
"out-of-line ABI mode"), from which ``_cffi_backend.FFI`` builds the same ``ffi`` in ~9 ms. This
module keeps that data in the user's cache directory, named by a hash of pyghostty's own
declarations and the cffi and Python versions, and loads the library through it. The cached
file is read as literals (``ast.literal_eval``), never executed. Anything unexpected (no cache
directory, a file that does not parse, a layout check that fails) falls back to
``import pyghostty``, which is what ran before.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import logging
import os
import sys
import tempfile
from typing import Any

log = logging.getLogger(__name__)

#: The module name cffi records in the data (any stable name will do).
MODULE = "_tmuxish_ghostty"
#: pyghostty's files whose contents are the declarations (the generated header and the
#: by-value union twins it declares beside it).
SOURCES = ("_cdef.py", "_ffi.py")


def load() -> tuple[Any, Any]:
    """``(ffi, lib)`` for libghostty-vt, from the cache when it holds them."""
    package = _package_dir()
    path = None
    if package is not None:
        path = _cache_path(package)
        if path is not None and os.path.exists(path):
            try:
                return _from_cache(path, package)
            except Exception as exc:  # a truncated or foreign file: rebuild it below
                log.warning("ignoring the cached libghostty declarations %s: %s", path, exc)
    import pyghostty

    if path is not None:
        _write_cache(pyghostty.ffi, path)
    return pyghostty.ffi, pyghostty.lib


def _package_dir() -> str | None:
    """pyghostty's directory, found without importing it (its import is the slow part)."""
    try:
        spec = importlib.util.find_spec("pyghostty")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(next(iter(spec.submodule_search_locations)))


def _cache_path(package: str) -> str | None:
    import _cffi_backend

    digest = hashlib.sha256()
    digest.update(f"{_cffi_backend.__version__} {sys.version} {sys.platform}\0".encode())
    for name in SOURCES:
        try:
            with open(os.path.join(package, name), "rb") as f:
                digest.update(f.read())
        except OSError:
            return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tmuxish", f"ghostty-abi-{digest.hexdigest()[:24]}.py")


def _library_file(package: str) -> str:
    """Where pyghostty itself looks for the shared library (its ``_libpath``)."""
    chosen = os.environ.get("PYGHOSTTY_LIB")
    if chosen:
        return chosen
    for ext in (".so", ".dylib", ".dll"):
        candidate = os.path.join(package, "_lib", f"libghostty-vt{ext}")
        if os.path.exists(candidate):
            return candidate
    raise OSError(f"libghostty-vt not found in {package}/_lib")


def _from_cache(path: str, package: str) -> tuple[Any, Any]:
    import _cffi_backend

    with open(path, encoding="ascii") as f:
        tree = ast.parse(f.read(), path)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    if len(calls) != 1:
        raise ValueError("not one FFI(...) call")
    call = calls[0]
    args = [ast.literal_eval(arg) for arg in call.args]
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    ffi = _cffi_backend.FFI(*args, **kwargs)
    # The check pyghostty makes of the union twins, so a file that disagrees with the library
    # is never used.
    twin, real = "GhosttyPointS", "GhosttyPoint"
    if (ffi.sizeof(twin), ffi.alignof(twin)) != (ffi.sizeof(real), ffi.alignof(real)):
        raise ValueError("GhosttyPointS does not match GhosttyPoint")
    return ffi, ffi.dlopen(_library_file(package))


def _write_cache(ffi: Any, path: str) -> None:
    """Keep ``ffi``'s parsed declarations for the next start (best effort)."""
    from cffi import recompiler

    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ghostty-abi-", suffix=".py", dir=directory)
        os.close(fd)
        try:
            recompiler.make_py_source(ffi, MODULE, tmp)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except Exception as exc:  # a read-only home, a full disk: the next start parses again
        log.info("cannot cache the libghostty declarations in %s: %s", directory, exc)
