"""On-disk cache of prepared sessions.

Layout::

    CACHE/
      manifest.json            resolved config, sessions, per-stream files, reports
      <session>/<stream>-<key>.h5

Each session has up to four *streams* (``labels``, ``audio``, ``faces``,
``text``), each in its own HDF5 file, chunked along time and compressed. A
stream's *key* is a digest of everything it depends on: the content of its
input files, the frame time stamps, the preprocessing parameters of that
stream (and, for text, the embedder's identity) and the cache format version.
A second ``prepare`` therefore recomputes only the streams whose inputs or
parameters changed (e.g. only ``text`` after switching the embedder).
Every file is written under a temporary name and renamed into place, so a
killed ``prepare`` never leaves a half-written entry behind; the hidden
temporary files such a kill leaves are removed by the next ``prepare``.

Every session's manifest entry names the digest of the preprocessing
configuration its streams were built with (``config``; the configurations
themselves are under ``configs``). The manifest's ``config`` is the
configuration of *every* session, or ``None`` when sessions were prepared with
different ones (a ``prepare --sessions`` with other settings, or a ``prepare``
with new settings killed half-way): such a cache is refused by
:meth:`Cache.config` in one line naming the sessions and the keys that differ,
until every session is prepared again with one configuration.

Several processes may prepare into one cache at once (e.g. disjoint
``--sessions``). Inter-process locks (:mod:`filelock`, in ``CACHE/.locks/``)
make that safe: a session's folder is written, cleaned and pruned only by the
process holding that session's lock, and the manifest is read, updated and
written back under the manifest lock, so no process loses another's sessions
and no cleanup removes a file another live process is writing. Two processes
preparing the *same* session take turns (the second reuses what the first
wrote). The locks are advisory ``flock`` locks: they are released when a
process dies, and they need a file system that supports them (local disks do;
some network file systems do not).
"""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from filelock import FileLock, Timeout

from mmaffect.errors import DataError
from mmaffect.utils.io import atomic_path, atomic_write_json, params_digest

FORMAT_VERSION = 1
STREAMS = ("labels", "audio", "faces", "text")
MANIFEST = "manifest.json"
LOCKS = ".locks"
# How long to wait for the manifest lock (held only while the manifest is read and rewritten).
MANIFEST_LOCK_TIMEOUT = 600.0

_STR = h5py.string_dtype(encoding="utf-8")


def _chunks(arr: np.ndarray, frames: int = 100) -> tuple[int, ...] | None:
    if arr.ndim == 0 or arr.size == 0:
        return None
    return (max(1, min(len(arr), frames)),) + arr.shape[1:]


def write_stream(path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any] | None = None) -> None:
    """Write ``arrays`` (and JSON-able ``attrs``) to an HDF5 file atomically.

    An I/O failure (full disk, read-only folder) is an :class:`OSError` naming ``path``.
    """
    try:
        _write_stream(path, arrays, attrs)
    except OSError as exc:
        if exc.filename is not None:
            raise
        # h5py's errors carry the reason in the text only ("... errno = 28, error message = 'No space ...'")
        raise OSError(exc.errno or errno.EIO, exc.strerror or f"cannot write cache file ({str(exc).splitlines()[0]})",
                      str(path)) from None


def _write_stream(path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any] | None) -> None:
    # The HDF5 file is built in memory (the core driver) and its bytes written with plain file I/O: HDF5's
    # own writes, failing on a full disk, leave handles that crash the interpreter when freed.
    with h5py.File(f"mmaffect-stream-{id(arrays)}.h5", "w", driver="core", backing_store=False) as f:
        _fill_stream(f, arrays, attrs)
        f.flush()
        image = f.id.get_file_image()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as out:
            out.write(image)


def _fill_stream(f: h5py.File, arrays: dict[str, np.ndarray], attrs: dict[str, Any] | None) -> None:
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.dtype.kind in "OU":
            f.create_dataset(name, data=arr.astype(object), dtype=_STR)
            continue
        f.create_dataset(
            name,
            data=arr,
            chunks=_chunks(arr),
            compression="gzip" if arr.size > 0 else None,
            compression_opts=(1 if arr.dtype == np.uint8 else 4) if arr.size > 0 else None,
            shuffle=arr.size > 0 and arr.dtype.itemsize > 1,
        )
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["meta"] = json.dumps(attrs or {}, default=str)


def read_stream(path: Path, *, keys: list[str] | None = None, frames: slice | None = None) -> dict[str, np.ndarray]:
    """Read datasets of a stream file; ``frames`` slices the per-frame arrays.

    Arrays that are not per-frame (``word_vectors``, ``word_tokens``) are
    always read whole.
    """
    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            for name in keys or list(f.keys()):
                ds = f[name]
                if ds.dtype.kind == "O" or h5py.check_string_dtype(ds.dtype):
                    out[name] = np.array([s.decode() if isinstance(s, bytes) else s for s in ds[()]], dtype=object)
                elif frames is not None and name not in PER_SESSION_ARRAYS and ds.ndim > 0:
                    out[name] = ds[frames]
                else:
                    out[name] = ds[()]
    except OSError as exc:
        raise DataError(f"cannot read cache file ({exc}); run `mmaffect prepare` again", path=path) from None
    return out


def read_stream_meta(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs.get("meta", "{}"))


def stream_is_readable(path: Path) -> bool:
    """Whether a stream file opens and its datasets' headers are intact (a truncated or garbled file is not).

    Cheap: the arrays themselves are not decompressed, except the last chunk of each dataset, which
    catches a file cut short after its header.
    """
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format_version") != FORMAT_VERSION:
                return False
            json.loads(f.attrs.get("meta", "{}"))
            for name in f.keys():
                ds = f[name]
                if ds.ndim > 0 and ds.shape[0] > 0:
                    ds[-1:]
                else:
                    ds[()]
    except (OSError, ValueError, KeyError, RuntimeError):
        return False
    return True


def _flat(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def record_session(manifest: dict[str, Any], name: str, entry: dict[str, Any], cfg: dict[str, Any]) -> None:
    """Record session ``name`` (its ``entry``) as prepared with ``cfg`` in ``manifest``, in place.

    The entry keeps the digest of its own configuration; the manifest's ``config`` stays the
    configuration of every session, or becomes ``None`` when they differ (see the module docstring).
    Entries of caches written before configurations were recorded per session take the manifest's.
    """
    configs: dict[str, Any] = dict(manifest.get("configs") or {})
    legacy = manifest.get("config")
    for other in manifest["sessions"].values():
        if "config" not in other and legacy is not None:
            digest = params_digest(legacy)
            other["config"] = digest
            configs.setdefault(digest, legacy)
    digest = params_digest(cfg)
    configs[digest] = cfg
    manifest["sessions"][name] = {**entry, "config": digest}
    used = {e.get("config") for e in manifest["sessions"].values()}
    manifest["configs"] = {d: c for d, c in configs.items() if d in used}
    manifest["config"] = cfg if used == {digest} else None


def mixed_configs_message(manifest: dict[str, Any]) -> str | None:
    """One line naming the sessions and keys of a cache prepared with several configurations, else None.

    >>> m = {"sessions": {}, "config": None}
    >>> record_session(m, "a", {}, {"text": {"delay": 0.5}})
    >>> record_session(m, "b", {}, {"text": {"delay": 0.0}})
    >>> mixed_configs_message(m)
    'cache mixes 2 preprocessing configurations: session a has text.delay=0.5; session b has text.delay=0.0; prepare every session again with one configuration (or into a new folder)'
    """
    if manifest.get("config") is not None:
        return None
    groups: dict[str, list[str]] = {}
    for session, entry in sorted(manifest["sessions"].items()):
        groups.setdefault(entry.get("config") or "unknown", []).append(session)
    if len(groups) < 2:
        return None
    configs = manifest.get("configs") or {}
    flats = {d: _flat(configs.get(d) or {}) for d in groups}
    keys = sorted({k for f in flats.values() for k in f if len({repr(g.get(k)) for g in flats.values()}) > 1})
    parts = []
    for digest, names in sorted(groups.items(), key=lambda kv: (len(kv[1]), kv[1])):
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        values = ", ".join(f"{k}={flats[digest].get(k)}" for k in keys) or "an unrecorded configuration"
        parts.append(f"session{'s' if len(names) > 1 else ''} {shown} {'have' if len(names) > 1 else 'has'} {values}")
    return (f"cache mixes {len(groups)} preprocessing configurations: {'; '.join(parts)}; "
            "prepare every session again with one configuration (or into a new folder)")


PER_SESSION_ARRAYS = frozenset({"word_vectors", "word_tokens", "label_names"})


@dataclass
class CachedSession:
    """A prepared session: where its streams are and what was found."""

    name: str
    partition: str | None
    n_frames: int
    streams: dict[str, Path | None]
    report: dict[str, Any] = field(default_factory=dict)

    def has(self, stream: str) -> bool:
        return self.streams.get(stream) is not None

    def load(self, *, frames: slice | None = None, streams: tuple[str, ...] = STREAMS) -> dict[str, np.ndarray]:
        """All arrays of the requested streams (see docs/architecture.md section 2)."""
        out: dict[str, np.ndarray] = {}
        for stream in streams:
            path = self.streams.get(stream)
            if path is not None:
                out.update(read_stream(path, frames=frames))
        return out


class Cache:
    """A cache folder with its manifest."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def stream_path(self, session: str, stream: str, key: str) -> Path:
        return self.root / session / f"{stream}-{key}.h5"

    # ------------------------------------------------------------------ inter-process locks

    def _lock(self, name: str) -> FileLock:
        folder = self.root / LOCKS
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(folder / f"{name}.lock")

    @contextlib.contextmanager
    def manifest_lock(self) -> Iterator[None]:
        """Hold the manifest lock (every read-modify-write of the manifest takes it)."""
        lock = self._lock("manifest")
        try:
            lock.acquire(timeout=MANIFEST_LOCK_TIMEOUT)
        except Timeout:
            raise DataError(f"another process has held the cache lock {lock.lock_file} for "
                            f"{MANIFEST_LOCK_TIMEOUT:.0f} s", path=self.root) from None
        try:
            yield
        finally:
            lock.release()

    def session_lock(self, session: str) -> FileLock:
        """The lock of one session's folder: whoever writes, cleans or prunes it holds this."""
        return self._lock(f"session-{session}")

    def update_manifest(self, update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read the manifest, apply ``update`` to it and write it back, under the manifest lock."""
        with self.manifest_lock():
            manifest = self.read_manifest()
            update(manifest)
            self.write_manifest(manifest)
            return manifest

    @staticmethod
    def pending_sessions(manifest: dict[str, Any]) -> list[str]:
        """Sessions a ``prepare`` started and has not finished (running now, or killed)."""
        return sorted(manifest.get("pending") or [])

    # ------------------------------------------------------------------ temporary files

    @staticmethod
    def _temp_files(folder: Path, pattern: str) -> list[Path]:
        return [f for f in folder.glob(pattern) if f.name.startswith(".") and f.is_file()]

    def remove_temp_files(self, session: str) -> list[Path]:
        """Remove the hidden temporary files of a session folder (call with the session's lock held)."""
        folder = self.root / session
        removed = []
        if folder.is_dir():
            for f in self._temp_files(folder, ".*.h5") + self._temp_files(folder, ".*.wav"):
                f.unlink(missing_ok=True)
                removed.append(f)
        return removed

    def clean_stale_files(self) -> list[Path]:
        """Remove temporary files left by killed processes; files a live process is writing stay.

        Root temporaries (the manifest's) are removed under the manifest lock; a session folder's
        only when its lock is free (a live writer holds it).
        """
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        with self.manifest_lock():
            for f in self._temp_files(self.root, f".{Path(MANIFEST).stem}.*"):
                f.unlink(missing_ok=True)
                removed.append(f)
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (self._temp_files(folder, ".*.h5") or self._temp_files(folder, ".*.wav")):
                continue
            lock = self.session_lock(folder.name)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue  # a live process is preparing this session
            try:
                removed += self.remove_temp_files(folder.name)
            finally:
                lock.release()
        return removed

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"format_version": FORMAT_VERSION, "config": None, "sessions": {}}
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"corrupt cache manifest ({exc})", path=self.manifest_path) from None
        if manifest.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"cache format {manifest.get('format_version')} is not {FORMAT_VERSION}; "
                "prepare into a new folder",
                path=self.manifest_path,
            )
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def sessions(self, *, partitions: list[str] | None = None) -> list[CachedSession]:
        """Prepared sessions, optionally only those of some partitions."""
        manifest = self.read_manifest()
        if not manifest["sessions"]:
            raise DataError("no prepared sessions; run `mmaffect prepare` first", path=self.root)
        out = []
        for name, entry in sorted(manifest["sessions"].items()):
            if partitions is not None and entry.get("partition") not in partitions:
                continue
            streams = {
                s: (self.root / entry["streams"][s]) if entry["streams"].get(s) else None for s in STREAMS
            }
            out.append(CachedSession(name, entry.get("partition"), entry["n_frames"], streams, entry.get("report", {})))
        return out

    def config(self) -> dict[str, Any]:
        """The resolved preprocessing configuration the cache was built with."""
        if not self.root.is_dir():
            raise DataError("cache folder not found; run `mmaffect prepare` or pass the right folder",
                            path=self.root.absolute())
        if not self.manifest_path.is_file():
            raise DataError(f"not a cache (no {MANIFEST}); run `mmaffect prepare`", path=self.root.absolute())
        manifest = self.read_manifest()
        mixed = mixed_configs_message(manifest)
        if mixed is not None:
            raise DataError(mixed, path=self.root.absolute())
        cfg = manifest.get("config")
        if cfg is None:
            raise DataError("cache has no configuration; run `mmaffect prepare`", path=self.manifest_path)
        return cfg

    def prune(self, manifest: dict[str, Any] | None = None) -> list[Path]:
        """Delete stream files of listed sessions that the manifest no longer references.

        Each session folder is pruned only while its lock is free (else another process is preparing
        it and prunes it itself), against the manifest as it is on disk at that moment.
        ``manifest`` is accepted for compatibility; the one on disk is authoritative.
        """
        removed: list[Path] = []
        names = sorted(self.read_manifest()["sessions"])
        for name in names:
            folder = self.root / name
            if not folder.is_dir():
                continue
            lock = self.session_lock(name)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                with self.manifest_lock():
                    entry = self.read_manifest()["sessions"].get(name)
                    if entry is None:
                        continue
                    keep = {self.root / p for p in entry["streams"].values() if p}
                    for f in folder.glob("*.h5"):
                        if f not in keep and not f.name.startswith("."):
                            f.unlink(missing_ok=True)
                            removed.append(f)
                removed += self.remove_temp_files(name)
            finally:
                lock.release()
        return removed
