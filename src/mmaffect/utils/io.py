"""Atomic file writing and content hashing.

Nothing mmaffect writes is ever half-written: files are written under a
temporary name in the destination folder and renamed into place, which is
atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(dest: str | Path, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it to ``dest`` on success.

    On an exception the temporary file is removed and ``dest`` is untouched;
    an :class:`OSError` that names no file (a write failing on a full disk)
    is raised again naming ``dest``.
    ``suffix`` defaults to the suffix of ``dest`` (some writers, e.g. video
    encoders, choose the container from it).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.stem}.", suffix=dest.suffix if suffix is None else suffix, dir=dest.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the file the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if exc.filename is None:  # a failed write (full disk) names no file: name the destination
            raise OSError(exc.errno, exc.strerror or str(exc).splitlines()[0], str(dest)) from exc
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


# the names atomic_path gives its temporaries: "." + the destination's stem + "." + mkstemp's 8
# random characters + a suffix ("last.pt" -> ".last.k1ll3d5x.pt")
_TEMPORARY = re.compile(r"\.[^.]+\.[a-z0-9_]{8}(\.[^.]+)?")


def temporary_files(folder: str | Path) -> list[Path]:
    """The temporary files of :func:`atomic_path` in ``folder``: left there by a writer that was killed
    mid-write, or being written now (delete them only while no writer can run, e.g. under a lock).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for name in (".last.k1ll3d5x.pt", ".lock", "last.pt"):
    ...     _ = (d / name).write_bytes(b"")
    >>> [p.name for p in temporary_files(d)]
    ['.last.k1ll3d5x.pt']
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _TEMPORARY.fullmatch(p.name))


def atomic_write_text(dest: str | Path, text: str) -> None:
    """Write ``text`` to ``dest`` atomically (UTF-8)."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(dest: str | Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(dest: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``dest`` atomically."""
    atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def file_digest(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content (hex, first 16 characters)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def write_error(exc: BaseException, path: str | Path, what: str = "cannot write") -> OSError:
    """An :class:`OSError` naming ``path`` for a failed write whose library error names no file
    (libsndfile says "System error" on a full disk): the one-line error users get.

    >>> err = write_error(RuntimeError("System error."), "a.wav", "cannot write the audio")
    >>> err.filename, err.strerror
    ('a.wav', 'cannot write the audio (System error.; a full disk?)')
    """
    reason = (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__
    return OSError(getattr(exc, "errno", None) or errno.EIO, f"{what} ({reason}; a full disk?)", str(path))


def params_digest(obj: Any) -> str:
    """Stable SHA-256 of a JSON-serialisable object (hex, first 16 characters)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def release_freed_memory() -> None:
    """Hand memory freed by the C allocator back to the OS (glibc ``malloc_trim``; no-op elsewhere).

    Long chunked runs (``mmaffect predict``) allocate and free large buffers in
    several threads; glibc keeps the freed pages in per-thread arenas, so the
    resident size would creep up chunk after chunk without this.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # musl or another libc: nothing to do
        pass
