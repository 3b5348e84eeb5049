"""Tests of the corpus adapters (EmoDB, EmoBank, FER+) and the category → VA proxy.

The proxy tests and the tests on tiny hand-made corpora run everywhere; the
tests on the real shared corpora skip when ``shared/data`` is absent (a fresh
clone does not have it) and convert only a few items into ``tmp_path``.
"""

from __future__ import annotations

import csv
import doctest
import json
from pathlib import Path

import numpy as np
import pytest

from mmaffect.data import proxy
from mmaffect.data.writers import adapters
from mmaffect.data.writers.adapters import (
    ADAPTERS,
    SAMPLE_RATE,
    adapt_emobank,
    adapt_emodb,
    adapt_ferplus,
    measure_face_detection,
    shared_data_root,
)
from mmaffect.data.proxy import PROXY_VA, category_to_va, votes_matrix_to_va, votes_to_va
from mmaffect.errors import ConfigError, DataError

README_TABLE = {
    "anger": (-0.6, 0.8),
    "happiness": (0.8, 0.5),
    "sadness": (-0.7, -0.4),
    "fear": (-0.6, 0.6),
    "disgust": (-0.7, 0.3),
    "boredom": (-0.3, -0.7),
    "neutral": (0.0, 0.0),
    "surprise": (0.3, 0.8),
    "contempt": (-0.5, 0.2),
}
FER_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def check_labels_grid(path: Path) -> list[dict[str, str]]:
    """labels.csv exists, starts with time,arousal,valence and is on the 10 Hz grid from 0."""
    rows = read_csv(path)
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    assert header[:3] == ["time", "arousal", "valence"]
    times = np.array([float(r["time"]) for r in rows])
    np.testing.assert_allclose(times, np.arange(len(rows)) / 10.0, atol=1e-9)
    return rows


# ----------------------------------------------------------------------------- proxy (no data)


def test_proxy_doctests() -> None:
    result = doctest.testmod(proxy)
    assert result.attempted >= 8 and result.failed == 0


def test_proxy_table_is_the_readme_table() -> None:
    assert dict(PROXY_VA) == README_TABLE
    for name, va in README_TABLE.items():
        assert category_to_va(name.upper()) == va
    with pytest.raises(TypeError):
        PROXY_VA["anger"] = (0.0, 0.0)  # type: ignore[index]


@pytest.mark.parametrize("bad", ["unknown", "NF", "pride", ""])
def test_category_outside_table_raises(bad: str) -> None:
    with pytest.raises(KeyError):
        category_to_va(bad)


def test_votes_to_va_is_vote_weighted_and_ignores_unknown_nf() -> None:
    rng = np.random.default_rng(0)
    votes = rng.integers(0, 6, size=(50, 10))
    votes[:, :8] += rng.integers(0, 2, size=(50, 8))
    votes[0, :8] = 0  # only unknown/NF votes -> NaN
    points = np.array([README_TABLE[c] for c in FER_COLUMNS[:8]])
    got = votes_matrix_to_va(votes, FER_COLUMNS)
    assert np.isnan(got[0]).all()
    w = votes[1:, :8]
    expected = (w @ points) / w.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got[1:], expected, atol=1e-12)
    # unknown/NF votes do not change the result
    more = votes.copy()
    more[:, 8:] += 7
    np.testing.assert_allclose(votes_matrix_to_va(more, FER_COLUMNS)[1:], expected, atol=1e-12)
    assert votes_to_va(votes[3], FER_COLUMNS) == pytest.approx(tuple(expected[2]), abs=1e-6)
    with pytest.raises(ValueError):
        votes_to_va(votes[0], FER_COLUMNS)
    with pytest.raises(ValueError):
        votes_to_va([1, 2], FER_COLUMNS)
    with pytest.raises(ValueError):
        votes_to_va([-1] + [1] * 9, FER_COLUMNS)


# ----------------------------------------------------------------------------- shared data root


def test_shared_data_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert shared_data_root(tmp_path) == tmp_path
    assert shared_data_root(tmp_path / "missing") is None
    monkeypatch.setenv("MMAFFECT_SHARED_DATA", str(tmp_path))
    assert shared_data_root() == tmp_path
    monkeypatch.setenv("MMAFFECT_SHARED_DATA", str(tmp_path / "typo"))
    assert shared_data_root() is None
    monkeypatch.delenv("MMAFFECT_SHARED_DATA")
    (tmp_path / "a" / "shared" / "data").mkdir(parents=True)
    (tmp_path / "a" / "work").mkdir()
    monkeypatch.chdir(tmp_path / "a" / "work")
    assert shared_data_root() == tmp_path / "a" / "shared" / "data"


def test_adapter_registry() -> None:
    assert ADAPTERS == {"emodb": adapt_emodb, "emobank": adapt_emobank, "ferplus": adapt_ferplus}


# ----------------------------------------------------------------------------- tiny hand-made corpora


def make_emodb(root: Path, *, lengths: dict[str, float], label_rows: list[str] | None = None) -> Path:
    """A miniature EmoDB: wav/ with noise bursts (zero-padded tails), labels.csv, sentences.csv."""
    import soundfile as sf

    (root / "wav").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []
    for stem, speech in lengths.items():
        x = np.zeros(int(2.0 * SAMPLE_RATE), dtype=np.float32)
        x[: int(speech * SAMPLE_RATE)] = rng.uniform(-0.3, 0.3, int(speech * SAMPLE_RATE))
        sf.write(root / "wav" / f"{stem}.wav", x, SAMPLE_RATE, subtype="PCM_16")
        emotion = adapters.EMODB_EMOTIONS[stem[5]]
        rows.append(f"{stem}.wav,{stem[:2]},f,{stem[2:5]},{emotion},80.00,70.00")
    header = "file,speaker,gender,sentence,emotion,recognition_pct,naturalness_pct"
    (root / "labels.csv").write_text("\n".join([header, *(label_rows or rows)]) + "\n", encoding="utf-8")
    (root / "sentences.csv").write_text(
        'sentence,text_de,text_en\na01,"Der Lappen, liegt.",The cloth.\nb02,Sie haben es.,They have it.\n',
        encoding="utf-8",
    )
    return root


def test_emodb_synthetic_speaker_grouping(tmp_path: Path) -> None:
    src = make_emodb(tmp_path / "emodb", lengths={"03a01Wa": 1.5, "03b02Tb": 2.0, "09a01Fa": 1.0})
    out = tmp_path / "out"
    report = adapt_emodb(src, out, group="speaker", gap_labels="hold")
    assert report.sessions == ["emodb_spk03", "emodb_spk09"] and report.items == 3
    assert read_csv(out / "splits.csv") == [
        {"session": "emodb_spk03", "partition": "spk03"},
        {"session": "emodb_spk09", "partition": "spk09"},
    ]
    rows = check_labels_grid(out / "emodb_spk03" / "labels.csv")
    assert len(rows) == 45 and report.frames == 45 + 20
    va = [(float(r["valence"]), float(r["arousal"])) for r in rows]
    assert va[:20] == [README_TABLE["anger"]] * 20
    assert va[20:25] == [README_TABLE["anger"]] * 5  # hold over the gap
    assert va[25:] == [README_TABLE["sadness"]] * 20
    turns = read_csv(out / "emodb_spk03" / "turns.csv")
    assert [(float(t["start"]), float(t["end"])) for t in turns] == [(0.0, 1.5), (2.5, 4.5)]
    transcript = read_csv(out / "emodb_spk03" / "transcript.csv")
    assert transcript[0]["text"] == "Der Lappen, liegt." and float(transcript[1]["start"]) == 2.5
    import soundfile as sf

    info = sf.info(out / "emodb_spk03" / "audio.wav")
    assert info.samplerate == SAMPLE_RATE and info.frames == 45 * 2205


def test_cli_adapt_options_reach_the_adapter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mmaffect.cli import main

    src = make_emodb(tmp_path / "emodb", lengths={"03a01Wa": 1.5, "03b02Tb": 2.0, "09a01Fa": 1.0})
    assert main(["adapt", "emodb", "--src", str(src), "--out", str(tmp_path / "spk"), "--group", "speaker"]) == 0
    assert [r["session"] for r in read_csv(tmp_path / "spk" / "splits.csv")] == ["emodb_spk03", "emodb_spk09"]
    assert main(["adapt", "emodb", "--src", str(src), "--out", str(tmp_path / "utt")]) == 0
    assert len(read_csv(tmp_path / "utt" / "splits.csv")) == 3  # one recording per utterance by default
    capsys.readouterr()
    assert main(["adapt", "emobank", "--src", str(src), "--out", str(tmp_path / "x"), "--group", "speaker"]) == 2
    assert "--group applies to emodb only" in capsys.readouterr().err
    assert main(["adapt", "emodb", "--src", str(src), "--out", str(tmp_path / "y"), "--split", "valid"]) == 2
    assert "--split applies to ferplus only" in capsys.readouterr().err


def test_emodb_synthetic_interpolated_gap(tmp_path: Path) -> None:
    src = make_emodb(tmp_path / "emodb", lengths={"03a01Wa": 2.0, "03b02Nb": 2.0})
    adapt_emodb(src, tmp_path / "out", group="speaker")
    rows = read_csv(tmp_path / "out" / "emodb_spk03" / "labels.csv")
    gap = [float(r["valence"]) for r in rows[20:25]]
    np.testing.assert_allclose(gap, -0.6 + 0.6 * np.arange(1, 6) / 6, atol=1e-6)
    assert float(rows[25]["valence"]) == 0.0


def test_emodb_bad_rows_raise_data_error(tmp_path: Path) -> None:
    header = "03a01Wa.wav,03,f,a01,{},80,70"
    src = make_emodb(tmp_path / "e1", lengths={"03a01Wa": 1.0}, label_rows=[header.format("joy")])
    with pytest.raises(DataError, match=r"labels\.csv: row 2: .*contradicts"):
        adapt_emodb(src, tmp_path / "o1")
    src = make_emodb(tmp_path / "e2", lengths={"03a01Wa": 1.0}, label_rows=[header.format("pride")])
    with pytest.raises(DataError, match=r"labels\.csv: row 2: category 'pride'"):
        adapt_emodb(src, tmp_path / "o2")
    assert not (tmp_path / "o2").exists()  # checked before anything is written


def test_emodb_missing_and_unlisted_files_are_skipped(tmp_path: Path) -> None:
    src = make_emodb(tmp_path / "emodb", lengths={"03a01Wa": 1.0, "03b02Tb": 1.0})
    (src / "wav" / "03b02Tb.wav").rename(src / "wav" / "04b02Tb.wav")
    report = adapt_emodb(src, tmp_path / "out")
    assert report.sessions == ["emodb_03a01Wa"]
    assert ("04b02Tb.wav", "not listed in labels.csv") in report.skipped
    assert ("03b02Tb.wav", "wav file missing") in report.skipped


def test_output_folder_policy(tmp_path: Path) -> None:
    src = make_emodb(tmp_path / "emodb", lengths={"03a01Wa": 1.0, "03b02Tb": 1.0})
    out = tmp_path / "out"
    adapt_emodb(src, out)
    with pytest.raises(DataError, match="not empty"):
        adapt_emodb(src, out)
    report = adapt_emodb(src, out, limit=1, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["adapter.json", "emodb_03a01Wa", "splits.csv"]
    assert report.sessions == ["emodb_03a01Wa"]
    meta = json.loads((out / "adapter.json").read_text())
    assert "research" in meta["terms"] and meta["proxy_va"]["anger"] == [-0.6, 0.8]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="no adapter.json"):
        adapt_emodb(src, foreign, overwrite=True)
    assert (foreign / "keep.txt").exists()
    with pytest.raises(ConfigError):
        adapt_emodb(src, tmp_path / "o3", limit=0)


def test_emobank_synthetic(tmp_path: Path) -> None:
    path = tmp_path / "emobank.csv"
    path.write_text(
        "id,split,V,A,D,text\n"
        "doc_10_20,train,5.0,1.0,3.0,\"Two, words\"\n"
        "doc_0_9,train,3.0,4.0,2.0,one\n"
        "x_0_5,dev,2.0,3.0,3.0,a b c d e\n"
        "e_0_1,train,3.0,3.0,3.0,\"  \"\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    report = adapt_emobank(path, out, sentences_per_session=5, words_per_second=2.0)
    assert read_csv(out / "splits.csv") == [
        {"session": "emobank_train_0000", "partition": "train"},
        {"session": "emobank_devel_0000", "partition": "devel"},
    ]
    assert report.skipped == [("e_0_1", "empty text")]
    transcript = read_csv(out / "emobank_train_0000" / "transcript.csv")
    # reading order (offset 0 before 10); 1 word / 2 wps = 0.5 s, then a 0.5 s pause
    assert [(t["start"], t["end"], t["text"]) for t in transcript] == [
        ("0.0", "0.5", "one"),
        ("1.0", "2.0", "Two, words"),
    ]
    rows = check_labels_grid(out / "emobank_train_0000" / "labels.csv")
    assert len(rows) == 25
    assert {(r["arousal"], r["valence"], r["dominance"]) for r in rows[:10]} == {("0.5", "0.0", "-0.5")}
    assert {(r["arousal"], r["valence"]) for r in rows[10:]} == {("-1.0", "1.0")}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,split,V,A,D,text\na_0_1,train,3,3,3,ok\nb_0_1,train,3,6.5,3,too high\n")
    with pytest.raises(DataError, match=r"bad\.csv: row 3: A = 6.5 is outside"):
        adapt_emobank(bad, tmp_path / "o2")
    bad.write_text("id,split,V,A,D,text\na_0_1,holdout,3,3,3,ok\n")
    with pytest.raises(DataError, match="row 2: split 'holdout'"):
        adapt_emobank(bad, tmp_path / "o3")


def test_ferplus_synthetic_drops_unknown_and_nf(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    votes = np.array(
        [
            [10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 6, 4],  # majority unknown
            [3, 0, 0, 0, 0, 0, 0, 0, 0, 3],  # tie with NF -> dropped
            [0, 4, 4, 0, 0, 0, 0, 0, 2, 0],
        ],
        dtype=np.uint8,
    )
    np.savez(
        tmp_path / "ferplus_valid.npz",
        images=rng.integers(0, 256, size=(4, 48, 48), dtype=np.uint8),
        votes=votes,
        columns=np.array(FER_COLUMNS),
        names=np.array([f"f{i}.png" for i in range(4)]),
    )
    out = tmp_path / "out"
    report = adapt_ferplus(tmp_path, out, split="valid", faces_per_session=5, seconds_per_face=0.4, upscale=2)
    assert report.items == 2 and report.sessions == ["ferplus_devel_0000"]
    assert report.skip_reasons() == {"majority vote is unknown": 1, "majority vote is NF": 1}
    rows = check_labels_grid(out / "ferplus_devel_0000" / "labels.csv")
    assert len(rows) == 8
    assert {(float(r["valence"]), float(r["arousal"])) for r in rows[:4]} == {(0.0, 0.0)}
    assert {(float(r["valence"]), float(r["arousal"])) for r in rows[4:]} == {(0.55, 0.65)}
    segments = read_csv(out / "ferplus_devel_0000" / "segments.csv")
    assert [s["source"] for s in segments] == ["f0.png", "f3.png"]
    assert video_seconds(out / "ferplus_devel_0000" / "video.mp4") == (pytest.approx(0.8), 20, (144, 144))
    from mmaffect.cli import main  # the CLI's --split reaches the adapter (train.npz is absent: valid works)

    assert main(["adapt", "ferplus", "--src", str(tmp_path), "--out", str(tmp_path / "cli"), "--split", "valid"]) == 0
    assert [r["session"] for r in read_csv(tmp_path / "cli" / "splits.csv")] == ["ferplus_devel_0000"]


def video_seconds(path: Path) -> tuple[float, int, tuple[int, int]]:
    """(seconds, decoded frames, (height, width)) of a video, from its decoded frames."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f for f in container.decode(stream)]
        rate = float(stream.average_rate)
    return len(frames) / rate, len(frames), (frames[0].height, frames[0].width)


# ----------------------------------------------------------------------------- real shared corpora


@pytest.fixture(scope="module")
def shared() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("shared research data not found (set MMAFFECT_SHARED_DATA or place it at ../shared/data)")
    return root


def test_real_emodb_utterances(shared: Path, tmp_path: Path) -> None:
    if not (shared / "emodb").is_dir():
        pytest.skip("no emodb/ in the shared data")
    out = tmp_path / "emodb"
    report = adapt_emodb(shared / "emodb", out, limit=3)
    assert len(report.sessions) == 3
    truth = {r["file"]: r for r in read_csv(shared / "emodb" / "labels.csv")}
    texts = {r["sentence"]: r["text_de"] for r in read_csv(shared / "emodb" / "sentences.csv")}
    for split in read_csv(out / "splits.csv"):
        folder = out / split["session"]
        stem = split["session"].removeprefix("emodb_")
        row = truth[f"{stem}.wav"]
        assert split["partition"] == f"spk{row['speaker']}"
        labels = check_labels_grid(folder / "labels.csv")
        assert len(labels) == 20  # 2.000 s files
        valence, arousal = README_TABLE[row["emotion"]]
        assert {(float(r["valence"]), float(r["arousal"])) for r in labels} == {(valence, arousal)}
        assert float(labels[0]["recognition"]) == pytest.approx(float(row["recognition_pct"]) / 100)
        transcript = read_csv(folder / "transcript.csv")
        assert [t["text"] for t in transcript] == [texts[row["sentence"]]]
        turn = read_csv(folder / "turns.csv")[0]
        assert 0.0 <= float(turn["start"]) < float(turn["end"]) <= 2.0


def test_real_emodb_speaker(shared: Path, tmp_path: Path) -> None:
    if not (shared / "emodb").is_dir():
        pytest.skip("no emodb/ in the shared data")
    import soundfile as sf

    out = tmp_path / "emodb"
    report = adapt_emodb(shared / "emodb", out, group="speaker", limit=1)
    (name,) = report.sessions
    n = report.items
    labels = check_labels_grid(out / name / "labels.csv")
    assert len(labels) == n * 20 + (n - 1) * 5
    assert sf.info(out / name / "audio.wav").duration == pytest.approx(len(labels) / 10)
    assert len(read_csv(out / name / "turns.csv")) == n
    assert read_csv(out / "splits.csv")[0]["partition"] == name.replace("emodb_", "")


def test_real_emobank(shared: Path, tmp_path: Path) -> None:
    if not (shared / "emobank").is_dir():
        pytest.skip("no emobank/ in the shared data")
    out = tmp_path / "emobank"
    report = adapt_emobank(shared / "emobank", out, sentences_per_session=6, limit=2)
    assert report.items == 12
    ratings = {r["id"]: r for r in read_csv(shared / "emobank" / "emobank_train_dev.csv")}
    for split in read_csv(out / "splits.csv"):
        assert split["partition"] == "train"
        folder = out / split["session"]
        labels = check_labels_grid(folder / "labels.csv")
        for seg in read_csv(folder / "segments.csv"):
            r = ratings[seg["source"]]
            assert r["split"] == "train"
            frame = labels[int(round(float(seg["start"]) * 10))]
            assert float(frame["valence"]) == pytest.approx((float(r["V"]) - 3) / 2, abs=1e-6)
            assert float(frame["arousal"]) == pytest.approx((float(r["A"]) - 3) / 2, abs=1e-6)
            words = len(r["text"].split())
            assert float(seg["end"]) - float(seg["start"]) == pytest.approx(max(0.1, round(words / 2.5, 1)), abs=0.051)


def test_real_ferplus_video_and_detection(shared: Path, tmp_path: Path) -> None:
    if not (shared / "ferplus" / "ferplus_valid.npz").is_file():
        pytest.skip("no ferplus/ferplus_valid.npz in the shared data")
    out = tmp_path / "fer"
    report = adapt_ferplus(shared / "ferplus", out, split="valid", faces_per_session=8, limit=1)
    (name,) = report.sessions
    assert read_csv(out / "splits.csv") == [{"session": name, "partition": "devel"}]
    seconds, frames, size = video_seconds(out / name / "video.mp4")
    assert (seconds, frames, size) == (pytest.approx(8.0), 200, (216, 216))
    with np.load(shared / "ferplus" / "ferplus_valid.npz") as data:
        votes = {str(n): v for n, v in zip(data["names"], data["votes"], strict=True)}
        columns = [str(c) for c in data["columns"]]
    labels = check_labels_grid(out / name / "labels.csv")
    assert len(labels) == 80
    for k, seg in enumerate(read_csv(out / name / "segments.csv")):
        valence, arousal = votes_to_va(votes[seg["source"]], columns)
        got = np.array([(float(r["valence"]), float(r["arousal"])) for r in labels[k * 10 : (k + 1) * 10]])
        np.testing.assert_allclose(got, np.tile([valence, arousal], (10, 1)), atol=1e-6)
    detected, faces = measure_face_detection(out)
    assert faces == 8 and detected >= 5  # 75 % over the whole valid split with the default rendering
