"""End to end: synthetic corpus (real wav/avi files) → prepare → cache → dataset."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mmaffect.cli import main as cli_main
from mmaffect.config import load_config
from mmaffect.data.cache import Cache, read_stream
from mmaffect.data.dataset import SessionWindows, collate
from mmaffect.data.readers import read_corpus
from mmaffect.data.writers.synthetic import synthesize
from mmaffect.preprocess.pipeline import prepare

DIM = 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    synthesize(root, n_train=1, n_devel=1, n_test=0, duration=8.0, seed=3, progress=False)
    return root


def _vec_file(folder: Path, corpus: Path) -> Path:
    """A small fastText-format vector file covering the corpus vocabulary."""
    from mmaffect.preprocess.text import tokenize

    words = set()
    for f in (corpus / "transcriptions").glob("*.csv"):
        for line in f.read_text().splitlines():
            words.update(tokenize(line.split(";", 2)[2]))
    rng = np.random.default_rng(0)
    lines = [f"{len(words)} {DIM}"] + [w + " " + " ".join(f"{v:.4f}" for v in rng.normal(size=DIM)) for w in sorted(words)]
    path = folder / "vectors.vec"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("cache")
    vec = _vec_file(work, corpus)
    cfg = load_config("prepare", [f"text.embedder=fasttext:{vec}"])
    report = prepare(read_corpus(corpus), work / "cache", config=cfg, progress=False)
    return work / "cache", cfg, report


def test_prepare_writes_aligned_streams(prepared):
    cache_dir, cfg, report = prepared
    assert report.computed == 8 and report.reused == 0
    sessions = Cache(cache_dir).sessions()
    assert [s.name for s in sessions] == ["Devel_01", "Train_01"]
    for s in sessions:
        assert s.n_frames == 80
        arrays = s.load()
        assert arrays["audio"].shape == (80, 2205) and arrays["audio"].dtype == np.int16
        assert arrays["faces"].shape == (80, 96, 96, 3) and arrays["faces"].dtype == np.uint8
        assert arrays["word_index"].shape == (80, 30)
        assert arrays["word_vectors"].shape[1] == DIM
        assert arrays["labels"].shape == (80, 3)
        np.testing.assert_allclose(arrays["times"], np.arange(80) / 10)
        # masked frames are counted, and a masked crop is not a face
        r = s.report
        assert r["faces"]["n_faces_found"] == int(arrays["face_mask"].sum())
        assert r["faces"]["n_faces_found"] > 40
        assert not arrays["faces"][~arrays["face_mask"]].any()
        assert r["text"]["n_frames_with_words"] == int((arrays["word_index"] >= 0).any(1).sum())
        # the audio is real signal where the target speaks
        assert np.abs(arrays["audio"][arrays["audio_target"]]).mean() > 100
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    assert manifest["config"] == cfg


def test_second_prepare_reuses_and_param_change_recomputes_only_its_stream(prepared, corpus):
    cache_dir, cfg, _ = prepared
    again = prepare(read_corpus(corpus), cache_dir, config=cfg, progress=False)
    assert again.computed == 0 and again.reused == 8
    changed = load_config(cfg, ["text.delay=0.0"])
    third = prepare(read_corpus(corpus), cache_dir, config=changed, progress=False)
    assert third.computed == 2 and third.reused == 6
    # old text files pruned: one text file per session
    for folder in ("Devel_01", "Train_01"):
        assert len(list((cache_dir / folder).glob("text-*.h5"))) == 1
    prepare(read_corpus(corpus), cache_dir, config=cfg, progress=False)  # restore for other tests


def test_dataset_builds_model_batches(prepared):
    cache_dir, _, _ = prepared
    sessions = Cache(cache_dir).sessions()
    ds = SessionWindows(sessions, window=30, seed=1)
    assert len(ds) == 6  # ceil(80 / 30) windows per session
    batch = collate([ds[0], ds[1]])
    assert batch["audio"].shape == (2, 30, 4410)
    assert batch["faces"].shape == (2, 30, 3, 96, 96) and batch["faces"].max() <= 1.0
    assert batch["words"].shape == (2, 30, 30, DIM)
    assert batch["labels"].shape == (2, 30, 2)
    # interlocutor vector: exactly one half is zero in every frame
    first, second = batch["audio"][..., :2205], batch["audio"][..., 2205:]
    assert ((first.abs().sum(-1) == 0) | (second.abs().sum(-1) == 0)).all()
    # padding words are zero vectors and masked
    assert (batch["words"][~batch["word_mask"]] == 0).all()
    whole = SessionWindows(sessions, window=None)
    b = collate([whole[0], whole[1]])
    assert b["mask"].all() and b["labels"].shape == (2, 80, 2)
    ds.set_epoch(1)
    starts1 = [it[1] for it in ds.items]
    ds.set_epoch(1)
    assert starts1 == [it[1] for it in ds.items]  # reproducible


def test_session_without_labels_uses_media_duration(corpus, prepared, tmp_path, monkeypatch):
    # generic layout: a video only, no labels, no transcript
    import mmaffect.preprocess.audio as audio_mod

    _, cfg, _ = prepared
    session_dir = tmp_path / "generic" / "clip"
    session_dir.mkdir(parents=True)
    shutil.copy(corpus / "video" / "Train_01.avi", session_dir / "video.avi")
    shutil.copy(corpus / "audio" / "Train_01.wav", session_dir / "audio.wav")
    decodes = []
    for name in ("decode_audio_to_file", "load_audio"):
        real = getattr(audio_mod, name)
        monkeypatch.setattr(audio_mod, name, lambda *a, _real=real, **k: decodes.append(a[0]) or _real(*a, **k))
    report = prepare(read_corpus(tmp_path / "generic"), tmp_path / "cache", config=cfg, progress=False)
    entry = report.sessions["clip"]
    assert entry["n_frames"] == 80
    # one decode gives both the frame grid and the audio stream; the decoded copy is removed
    assert len(decodes) == 1 and not list((tmp_path / "cache" / "clip").glob(".decoded-*"))
    assert entry["streams"]["labels"] is None and entry["streams"]["text"] is None
    s = Cache(tmp_path / "cache").sessions()[0]
    item = SessionWindows([s], window=None, require_labels=False, embed_dim=DIM)[0]
    assert "labels" not in item and not item["word_mask"].any()
    # no turns: the frames where no speech is heard are masked, the rest fed as the target's
    speech = read_stream(s.streams["audio"], keys=["audio_speech"])["audio_speech"]
    assert (item["audio_mask"].numpy() == speech).all()
    assert 0.3 < entry["report"]["audio"]["speech_fraction"] < 1.0 and not speech.all()


def test_cli_reports_bad_media_with_file_name(corpus, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(corpus, bad)
    (bad / "video" / "Devel_01.avi").write_bytes(b"\x00garbage" * 100)
    rc = cli_main(["prepare", str(bad), "--out", str(tmp_path / "c"), "--quiet", "--sessions", "Devel_01",
                   "text.enabled=false"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Devel_01.avi" in err and "Traceback" not in err
    assert not list((tmp_path / "c").rglob("faces-*.h5"))  # nothing half-written


def test_cli_rejects_unknown_config_key(corpus, tmp_path, capsys):
    rc = cli_main(["prepare", str(corpus), "--out", str(tmp_path / "c"), "faces.sise=64"])
    assert rc == 2
    assert "faces.sise" in capsys.readouterr().err


def test_interlocutor_vector_torch_and_numpy_agree():
    from mmaffect.preprocess.audio import interlocutor_vector

    frames = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    target = np.array([True, False, True, False])
    a = interlocutor_vector(frames, target)
    b = interlocutor_vector(torch.from_numpy(frames), torch.from_numpy(target)).numpy()
    np.testing.assert_array_equal(a, b)


def test_video_without_audio_track_masks_audio(corpus, prepared, tmp_path):
    # generic layout, video only: its (absent) audio track means "no audio", masked and reported
    _, cfg, _ = prepared
    session_dir = tmp_path / "generic" / "silent"
    session_dir.mkdir(parents=True)
    shutil.copy(corpus / "video" / "Devel_01.avi", session_dir / "video.avi")
    from mmaffect.preprocess.pipeline import _probe_video

    _probe_video.cache_clear()
    report = prepare(read_corpus(tmp_path / "generic"), tmp_path / "cache", config=cfg, progress=False)
    # the container is probed once, though the grid, the cache keys and the decoder each ask
    # (each probed it before: 4 probe_video calls per session on a real mp4, now 2)
    probes = _probe_video.cache_info()
    assert probes.misses == 1 and probes.hits >= 2, probes
    entry = report.sessions["silent"]
    assert entry["streams"]["audio"] is None and entry["report"]["audio"] == {"absent": True}
    assert entry["streams"]["faces"] is not None
    assert 78 <= entry["n_frames"] <= 80  # from the video's duration
    s = Cache(tmp_path / "cache").sessions()[0]
    item = SessionWindows([s], window=None, require_labels=False, modalities=("audio", "visual"))[0]
    assert not item["audio_mask"].any() and item["face_mask"].any()


def test_audio_source_of_a_vanished_or_rewritten_video(corpus, tmp_path):
    # the probe is memoised per file version: a video rewritten in place is probed again, and one
    # that vanished after the corpus was read raises the reader's error naming the file
    from mmaffect.errors import DataError
    from mmaffect.preprocess.pipeline import _probe_video, audio_source

    session_dir = tmp_path / "generic" / "clip"
    session_dir.mkdir(parents=True)
    video = session_dir / "video.avi"
    shutil.copy(corpus / "video" / "Devel_01.avi", video)
    session = read_corpus(tmp_path / "generic")[0]
    _probe_video.cache_clear()
    assert audio_source(session) is None and audio_source(session) is None
    assert _probe_video.cache_info().misses == 1
    shutil.copy(corpus / "video" / "Train_01.avi", video)
    os.utime(video, ns=(1, 1))  # a new version even where the copy keeps size and mtime resolution
    assert audio_source(session) is None
    assert _probe_video.cache_info().misses == 2
    video.unlink()
    with pytest.raises(DataError, match="video.avi"):
        audio_source(session)


def test_train_refuses_word_vectors_of_another_size(prepared, tmp_path, capsys):
    # a cache prepared with another embedder than the model's embed_dim: one line that names the
    # cache and the fix, before any training (not a shape error mid-batch)
    cache_dir, _, _ = prepared
    args = ["train", "synthetic/text", f"data.cache={cache_dir}", "data.train_partitions=[train]",
            "data.devel_partitions=[devel]", "optim.epochs=1", "log.plot=false", "--out", str(tmp_path / "run"),
            "--quiet"]
    rc = cli_main(args)
    err = capsys.readouterr().err
    assert rc != 0 and f"model_options.embed_dim={DIM}" in err and str(cache_dir) in err, err
    assert "Traceback" not in err and not (tmp_path / "run" / "last.pt").exists()
