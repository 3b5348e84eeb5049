"""Tests of the synthetic SEWA-layout corpus (mmaffect.data.writers.synthetic, mmaffect.data.writers.face_render)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from mmaffect.data.writers.face_render import FaceParams, FaceRenderer, detect_faces, haar_detector
from mmaffect.data.writers.synthetic import (
    AUDIO_SAMPLE_RATE,
    SYNTH_VERSION,
    FOLDERS,
    NEGATIVE_WORDS,
    POSITIVE_WORDS,
    expressiveness,
    lexical_valence,
    plan_session,
    render_audio,
    synthesize,
)
from mmaffect.errors import ConfigError

DURATION = 8.0
FPS = 25
NAMES = ("Train_01", "Devel_01")
EXT = {"audio": "wav", "video": "avi", "labels": "csv", "turns": "csv", "transcriptions": "csv"}
NUM = r"-?\d+\.\d+"


def _make(root: Path, *, seed: int, n_devel: int = 1):
    return synthesize(
        root, n_train=1, n_devel=n_devel, n_test=0, duration=DURATION, seed=seed, progress=False, jobs=1
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_a")
    return _make(root, seed=3)


@pytest.fixture(scope="module")
def corpus_again(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("synth_b"), seed=3)


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def _rows(path: Path) -> list[list[str]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text
    return [line.split(";") for line in text.splitlines()]


def test_layout_is_exactly_sewa(corpus):
    root = corpus.root
    expected = {"synth.json"} | {f"{d}/{n}.{EXT[d]}" for d in FOLDERS for n in NAMES}
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert found == expected
    assert [s.name for s in corpus.sessions] == list(NAMES)
    assert corpus.bytes == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    for s in corpus.sessions:
        assert s.files == {d: root / d / f"{s.name}.{EXT[d]}" for d in FOLDERS}


def test_label_rows(corpus):
    for name in NAMES:
        rows = _rows(corpus.root / "labels" / f"{name}.csv")
        assert len(rows) == int(DURATION * 10)
        for i, row in enumerate(rows):
            assert len(row) == 5
            assert row[0] == f"'{name}'"
            assert row[1] == f"{i / 10:.2f}"
            assert all(re.fullmatch(NUM, x) for x in row[2:])
            assert all(-1.0 <= float(x) <= 1.0 for x in row[2:])
        values = np.array([[float(x) for x in r[2:]] for r in rows])
        assert np.abs(np.diff(values, axis=0)).max() < 0.1  # smooth at 10 Hz
        assert values.std(axis=0).min() > 0.002  # and not constant


def test_turns_and_transcriptions(corpus):
    for name in NAMES:
        turns = [(float(a), float(b)) for a, b in _rows(corpus.root / "turns" / f"{name}.csv")]
        assert turns, "every session has at least one target turn"
        for (s0, e0), (s1, _) in zip(turns, turns[1:]):
            assert e0 < s1
        assert all(0 <= s < e <= DURATION for s, e in turns)
        trans = _rows(corpus.root / "transcriptions" / f"{name}.csv")
        for row in trans:
            assert len(row) == 3 and re.fullmatch(NUM, row[0]) and re.fullmatch(NUM, row[1])
            assert row[2].startswith("'") and row[2].endswith("'") and "'" not in row[2][1:-1]
            start, end = float(row[0]), float(row[1])
            # Words only while the target speaks.
            assert any(s <= start and end <= e for s, e in turns)
            tokens = row[2][1:-1].split()
            assert 4 <= len(tokens) <= 25
            assert all(re.fullmatch(r"[a-z]+|<[a-z]+>", w) for w in tokens)


def test_audio_file(corpus):
    info = sf.info(str(corpus.root / "audio" / "Train_01.wav"))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (AUDIO_SAMPLE_RATE, 1, "PCM_16", "WAV")
    assert info.frames == int(DURATION * AUDIO_SAMPLE_RATE)
    y, _ = sf.read(str(corpus.root / "audio" / "Train_01.wav"))
    assert 0.01 < np.sqrt(np.mean(y**2)) < 0.3 and np.abs(y).max() < 1.0


def test_video_decodes(corpus):
    path = corpus.root / "video" / "Train_01.avi"
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "mpeg4"
        assert not c.streams.audio
        frames = list(c.decode(stream))
        assert float(stream.average_rate) == FPS
    assert len(frames) == int(DURATION * FPS)
    assert (frames[0].width, frames[0].height) == (320, 240)
    assert abs(float(frames[-1].time) - (DURATION - 1 / FPS)) < 1e-6


def test_same_seed_same_bytes_other_seed_differs(corpus, corpus_again, tmp_path):
    a, b = corpus.root, corpus_again.root
    for d in ("audio", "labels", "turns", "transcriptions"):
        for name in NAMES:
            f = f"{d}/{name}.{EXT[d]}"
            assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "synth.json").read_bytes() == (b / "synth.json").read_bytes()
    fa, fb = _decoded(a / "video" / "Devel_01.avi"), _decoded(b / "video" / "Devel_01.avi")
    assert len(fa) == len(fb) and all(np.array_equal(x, y) for x, y in zip(fa, fb))
    other = _make(tmp_path, seed=4, n_devel=0)
    for d in ("audio", "labels", "turns"):
        f = f"{d}/Train_01.{EXT[d]}"
        assert (a / f).read_bytes() != (other.root / f).read_bytes(), f
    ha = hashlib.sha256(_decoded(a / "video" / "Train_01.avi")[0].tobytes()).hexdigest()
    hb = hashlib.sha256(_decoded(other.root / "video" / "Train_01.avi")[0].tobytes()).hexdigest()
    assert ha != hb


def test_haar_finds_frontal_faces_and_not_turned_away(corpus):
    det = haar_detector()
    meta = json.loads((corpus.root / "synth.json").read_text())
    assert meta["version"] == SYNTH_VERSION
    counts = {"frontal": [0, 0], "hidden": [0, 0]}
    for s in meta["sessions"]:
        plan = plan_session(s["name"], duration=DURATION, seed=3)
        assert [list(x) for x in plan.face_missing] == s["face_missing"]
        frames = _decoded(corpus.root / "video" / f"{s['name']}.avi")
        poses = plan.pose_at(np.arange(len(frames)) / FPS)
        for i in range(len(frames)):
            key = "frontal" if poses[i] == "frontal" else "hidden"
            if i % (8 if key == "frontal" else 2):
                continue
            counts[key][0] += 1
            counts[key][1] += len(detect_faces(det, frames[i])) > 0
        visible = float(np.mean(poses == "frontal"))
        info = next(x for x in corpus.sessions if x.name == s["name"])
        assert info.face_visible_fraction == pytest.approx(visible)
    assert counts["hidden"][0] > 0
    assert counts["frontal"][1] >= 0.95 * counts["frontal"][0]
    assert counts["hidden"][1] == 0
    # Every hidden pose, rendered directly, is missed too; the frontal face is found at any expression.
    r = FaceRenderer(width=320, height=240, rng=np.random.default_rng(11))
    for pose in ("away", "absent"):
        for flip in (False, True):
            assert len(detect_faces(det, r.render(FaceParams(pose=pose, flip=flip, roll=5.0)))) == 0
    for v, a in ((-1.0, -1.0), (1.0, 1.0), (-1.0, 1.0), (1.0, -1.0)):
        boxes = detect_faces(det, r.render(FaceParams(valence=v, arousal=a, talk=1.0, cx=150.0, cy=120.0)))
        assert len(boxes) == 1
        x, y, w, h = boxes[0]
        assert abs(x + w / 2 - 150.0) < 15 and abs(y + h / 2 - 120.0) < 25 and 50 < w < 160


def test_face_expression_changes_with_affect():
    r = FaceRenderer(width=320, height=240, rng=np.random.default_rng(5))
    base = r.render(FaceParams()).astype(int)
    for kw in ({"valence": 1.0}, {"valence": -1.0}, {"arousal": 1.0}, {"arousal": -1.0}):
        diff = np.abs(r.render(FaceParams(**kw)).astype(int) - base)
        ys, xs = np.nonzero(diff.max(axis=2) > 30)
        assert len(ys) > 40  # visibly different...
        assert 60 < ys.min() and ys.max() < 180 and 100 < xs.min() and xs.max() < 220  # ...only on the face


def test_audio_prosody_follows_target_arousal():
    rms, arousal, partner_rms, partner_ar = [], [], [], []
    for name in ("Train_07", "Devel_03"):
        plan = plan_session(name, duration=60.0, seed=1)
        y = render_audio(plan)
        fl = AUDIO_SAMPLE_RATE // 10
        n = len(y) // fl
        db = 10 * np.log10((y[: n * fl].reshape(n, fl).astype(np.float64) ** 2).mean(axis=1))
        t = np.arange(n) / 10
        target = plan.target_speaking(t + 0.05) & plan.target_speaking(t + 0.0999)
        a, _ = plan.affect_at(t)
        rms += list(db[target])
        arousal += list(a[target])
        partner = np.zeros(n, bool)
        for turn in plan.partner_turns:
            partner |= (t >= turn.start) & (t + 0.1 <= turn.end)
        partner_rms += list(db[partner])
        partner_ar += list(a[partner])
        f0 = np.array([s.f0 for s in plan.syllables if s.target])
        sa, _ = plan.affect_at(np.array([s.start for s in plan.syllables if s.target]))
        assert np.corrcoef(np.log(f0), sa)[0, 1] > 0.8
    assert np.corrcoef(rms, arousal)[0, 1] > 0.25
    assert abs(np.corrcoef(partner_rms, partner_ar)[0, 1]) < 0.2


def test_transcript_valence_follows_valence():
    lex, val = [], []
    for k in range(3):
        plan = plan_session(f"Train_{k + 1:02d}", duration=60.0, seed=2)
        assert 0.3 < sum(t.duration for t in plan.target_turns) / plan.duration < 0.6
        for turn in plan.target_turns:
            _, v = plan.affect_at(np.arange(turn.start, turn.end, 0.1))
            lex.append(lexical_valence(turn.text))
            val.append(v.mean())
    assert np.corrcoef(lex, val)[0, 1] > 0.6
    assert lexical_valence(" ".join(POSITIVE_WORDS)) == 1.0
    assert lexical_valence(" ".join(NEGATIVE_WORDS) + " <laughter>") == -1.0
    assert np.isnan(lexical_valence("<breathing>"))


def test_labels_weakly_correlated_and_sessions_differ():
    a = plan_session("Train_01", duration=40.0, seed=0)
    b = plan_session("Train_02", duration=40.0, seed=0)
    assert abs(np.corrcoef(a.arousal, a.valence)[0, 1]) < 0.3
    assert not np.allclose(a.arousal, b.arousal)
    assert 0.15 < sum(e - s for s, e, _ in a.face_missing) / a.duration < 0.65
    assert {p for _, _, p in a.face_missing} == {"away", "absent"}


def test_face_mostly_hidden_while_speaking_and_expressive_only_part_of_the_time():
    """Version 2: the modalities cover different times (docs/synthetic.md, "What each modality knows")."""
    speaking_visible, listening_visible, express = [], [], []
    for k in range(4):
        plan = plan_session(f"Train_{k + 1:02d}", duration=60.0, seed=4)
        t = plan.times
        frontal = plan.pose_at(t) == "frontal"
        speaking = plan.target_speaking(t)
        speaking_visible.append(frontal[speaking].mean())
        listening_visible.append(frontal[~speaking].mean())
        express.append(expressiveness(plan, t))
        # periods are sorted, disjoint and inside the session
        ends = [0.0] + [e for _, e, _ in plan.face_missing]
        assert all(ends[i] <= s < e <= plan.duration for i, (s, e, _) in enumerate(plan.face_missing))
    assert np.mean(speaking_visible) < 0.4 < 0.7 < np.mean(listening_visible)
    e = np.concatenate(express)
    assert 0 < e.min() < 0.2 and 0.8 < e.max() < 1 and 0.3 < e.mean() < 0.7
    assert max(np.abs(np.diff(x)).max() for x in express) < 0.3  # a slow trace (σ = 1 s at least), not frame noise
    # deterministic: the same plan gives the same expressiveness
    plan = plan_session("Train_01", duration=60.0, seed=4)
    np.testing.assert_array_equal(expressiveness(plan, plan.times), express[0])


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError):
        synthesize(tmp_path / "x", n_train=0, n_devel=0, n_test=0, progress=False)
    with pytest.raises(ConfigError):
        synthesize(tmp_path / "x", n_train=1, n_devel=0, n_test=0, duration=2.0, progress=False)
    with pytest.raises(ConfigError):
        synthesize(tmp_path / "x", n_train=-1, progress=False)
    assert not (tmp_path / "x").exists()
