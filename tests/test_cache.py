"""The prepared-session cache: round trips, atomic writes, manifest, pruning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmaffect.data.cache import FORMAT_VERSION, Cache, read_stream, read_stream_meta, write_stream
from mmaffect.errors import DataError
from mmaffect.utils.io import atomic_path, atomic_write_text


def test_stream_round_trip_and_frame_slices(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "times": np.arange(250) / 10.0,
        "faces": rng.integers(0, 255, (250, 8, 8, 3), dtype=np.uint8),
        "word_vectors": rng.normal(size=(7, 4)).astype(np.float16),
        "word_tokens": np.array(["gut", "schön", "<laughter>", "a", "b", "c", "d"], dtype=object),
        "word_index": rng.integers(-1, 7, (250, 5)).astype(np.int32),
    }
    path = tmp_path / "s" / "text-abc.h5"
    write_stream(path, arrays, {"n_words": 7})
    back = read_stream(path)
    for k, v in arrays.items():
        assert np.array_equal(back[k], v), k
    part = read_stream(path, frames=slice(100, 110))
    assert np.array_equal(part["faces"], arrays["faces"][100:110])
    # per-session arrays are never sliced
    assert part["word_vectors"].shape == (7, 4)
    assert list(part["word_tokens"]) == list(arrays["word_tokens"])
    assert read_stream_meta(path) == {"n_words": 7}


def test_write_is_atomic(tmp_path):
    dest = tmp_path / "x.h5"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []
    atomic_write_text(tmp_path / "y.txt", "ok")
    assert (tmp_path / "y.txt").read_text() == "ok"


def test_unreadable_stream_names_file(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="bad.h5"):
        read_stream(bad)


def test_manifest_sessions_partitions_and_prune(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(DataError, match="no prepared sessions"):
        cache.sessions()
    keep = cache.stream_path("A", "labels", "k1")
    old = cache.stream_path("A", "labels", "k0")
    for p in (keep, old):
        write_stream(p, {"times": np.arange(3) / 10, "labels": np.zeros((3, 2), np.float32),
                         "label_names": np.array(["arousal", "valence"], dtype=object)})
    manifest = {"format_version": FORMAT_VERSION, "config": {"x": 1}, "sessions": {
        "A": {"partition": "train", "n_frames": 3, "streams": {"labels": "A/labels-k1.h5", "audio": None}},
        "B": {"partition": "devel", "n_frames": 3, "streams": {"labels": None}},
    }}
    cache.write_manifest(manifest)
    assert [s.name for s in cache.sessions(partitions=["train"])] == ["A"]
    a = cache.sessions()[0]
    assert a.has("labels") and not a.has("audio") and not a.has("faces")
    assert a.load()["labels"].shape == (3, 2)
    assert cache.config() == {"x": 1}
    assert cache.prune(manifest) == [old]
    assert keep.exists() and not old.exists()


def test_manifest_version_mismatch_is_an_error(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 999, "sessions": {}}))
    with pytest.raises(DataError, match="format 999"):
        Cache(tmp_path).read_manifest()
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt cache manifest"):
        Cache(tmp_path).read_manifest()
