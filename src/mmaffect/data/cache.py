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
killed ``prepare`` never leaves a half-written entry behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mmaffect.errors import DataError
from mmaffect.utils.io import atomic_path, atomic_write_json

FORMAT_VERSION = 1
STREAMS = ("labels", "audio", "faces", "text")
MANIFEST = "manifest.json"

_STR = h5py.string_dtype(encoding="utf-8")


def _chunks(arr: np.ndarray, frames: int = 100) -> tuple[int, ...] | None:
    if arr.ndim == 0 or arr.size == 0:
        return None
    return (max(1, min(len(arr), frames)),) + arr.shape[1:]


def write_stream(path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any] | None = None) -> None:
    """Write ``arrays`` (and JSON-able ``attrs``) to an HDF5 file atomically."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
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
        cfg = self.read_manifest().get("config")
        if cfg is None:
            raise DataError("cache has no configuration; run `mmaffect prepare`", path=self.manifest_path)
        return cfg

    def prune(self, manifest: dict[str, Any]) -> list[Path]:
        """Delete stream files of listed sessions that the manifest no longer references."""
        removed = []
        for name, entry in manifest["sessions"].items():
            keep = {self.root / p for p in entry["streams"].values() if p}
            folder = self.root / name
            if folder.is_dir():
                for f in folder.glob("*.h5"):
                    if f not in keep:
                        f.unlink()
                        removed.append(f)
        return removed
