"""Corpus readers: SEWA (AVEC 2017) layout, generic layout, auto-detection, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmaffect.data.generic import read_generic
from mmaffect.data.readers import detect_layout, read_corpus
from mmaffect.data.sewa import read_sewa
from mmaffect.data.tables import (
    read_labels_csv,
    read_sewa_labels,
    read_sewa_transcript,
    read_sewa_turns,
    read_transcript_csv,
    read_turns_csv,
)
from mmaffect.errors import ConfigError, DataError

MEDIA = b"\x00placeholder"  # readers only check that media exist and are non-empty


def sewa_labels_text(name: str, n: int, *, quote: str = "'", start: float = 0.0) -> str:
    rows = []
    for i in range(n):
        t = start + i / 10
        rows.append(f"{quote}{name}{quote};{t:.6f};{0.01 * i:.6f};{-0.02 * i:.6f};{0.5:.6f}")
    return "\n".join(rows) + "\n"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def make_sewa(root: Path, names: list[str], *, n_labels: int = 20) -> Path:
    """A complete SEWA corpus: media, labels (except Test), turns, transcriptions."""
    for name in names:
        write(root / "audio" / f"{name}.wav", MEDIA)
        write(root / "video" / f"{name}.avi", MEDIA)
        if not name.startswith("Test"):
            write(root / "labels" / f"{name}.csv", sewa_labels_text(name, n_labels))
        write(root / "turns" / f"{name}.csv", "1.5;2.0\n0.2;1.0\n0.5;0.8\n")
        write(
            root / "transcriptions" / f"{name}.csv",
            "1.5;2.0;'ja; genau <laughter>'\n0.2;1.0;'das geht's'\n",
        )
    return root


def assert_error_names(exc: pytest.ExceptionInfo, name: str, row: int | None) -> None:
    message = str(exc.value)
    assert name in message, message
    if row is not None:
        assert f"row {row}:" in message, message
        assert exc.value.row == row


# --------------------------------------------------------------------------- SEWA


def test_sewa_reads_the_avec_layout(tmp_path: Path) -> None:
    root = make_sewa(tmp_path, ["Train_02", "Train_01", "Devel_01", "Test_01"])
    sessions = read_sewa(root)
    assert [s.name for s in sessions] == ["Devel_01", "Test_01", "Train_01", "Train_02"]
    assert [s.partition for s in sessions] == ["devel", "test", "train", "train"]
    train = sessions[2]
    assert train.audio == root / "audio" / "Train_01.wav"
    assert train.video == root / "video" / "Train_01.avi"
    assert train.labels is not None
    assert train.labels.names == ("arousal", "valence", "liking")
    assert train.labels.values.shape == (20, 3)
    assert train.labels.times.tolist() == [i / 10 for i in range(20)]
    np.testing.assert_allclose(train.labels.dimension("arousal"), 0.01 * np.arange(20), atol=1e-7)
    np.testing.assert_allclose(train.labels.affect()[:, 1], -0.02 * np.arange(20), atol=1e-7)
    assert train.labels.source == root / "labels" / "Train_01.csv"
    # turns sorted by start, overlapping allowed
    assert [(u.start, u.end) for u in train.target_turns] == [(0.2, 1.0), (0.5, 0.8), (1.5, 2.0)]
    # transcript text verbatim: ';' inside the quotes, apostrophe and tags kept
    assert [u.text for u in train.transcript] == ["das geht's", "ja; genau <laughter>"]
    assert train.meta == {
        "layout": "sewa",
        "audio_from_video": False,
        "labels_path": root / "labels" / "Train_01.csv",
        "turns_path": root / "turns" / "Train_01.csv",
        "transcript_path": root / "transcriptions" / "Train_01.csv",
    }
    assert set(train.inputs()) == {"audio", "video", "labels", "turns", "transcript"}
    test = sessions[1]
    assert test.labels is None and test.meta["labels_path"] is None


@pytest.mark.parametrize("quote", ["'", '"', ""])
def test_sewa_label_names_quoted_or_not(tmp_path: Path, quote: str) -> None:
    path = write(tmp_path / "Train_03.csv", sewa_labels_text("Train_03", 5, quote=quote))
    labels = read_sewa_labels(path, name="Train_03")
    assert len(labels) == 5


def test_sewa_partition_filter_skips_other_files(tmp_path: Path) -> None:
    root = make_sewa(tmp_path, ["Train_01", "Devel_01", "Test_01"])
    write(root / "labels" / "Devel_01.csv", "broken\n")
    assert [s.name for s in read_sewa(root, partitions=["train", "test"])] == [
        "Test_01",
        "Train_01",
    ]
    with pytest.raises(DataError):
        read_sewa(root, partitions=["devel"])
    with pytest.raises(ConfigError, match="validation"):
        read_sewa(root, partitions=["validation"])


def test_sewa_optional_files(tmp_path: Path) -> None:
    root = tmp_path
    write(root / "video" / "Devel_02.avi", MEDIA)
    write(root / "labels" / "Devel_02.csv", sewa_labels_text("Devel_02", 3))
    (session,) = read_sewa(root)
    assert session.audio == root / "video" / "Devel_02.avi"
    assert session.meta["audio_from_video"] is True
    assert session.transcript is None and session.target_turns is None
    assert session.meta["turns_path"] is None and session.meta["transcript_path"] is None


def test_sewa_label_file_without_media(tmp_path: Path) -> None:
    root = make_sewa(tmp_path, ["Train_01"])
    write(root / "labels" / "Train_02.csv", sewa_labels_text("Train_02", 3))
    with pytest.raises(DataError) as exc:
        read_sewa(root)
    assert "Train_02.wav" in str(exc.value) and "Train_02.avi" in str(exc.value)


def test_sewa_train_without_labels(tmp_path: Path) -> None:
    root = make_sewa(tmp_path, ["Train_01"])
    (root / "labels" / "Train_01.csv").unlink()
    with pytest.raises(DataError) as exc:
        read_sewa(root)
    assert_error_names(exc, "Train_01.csv", None)


def test_sewa_empty_media_and_bad_names(tmp_path: Path) -> None:
    root = make_sewa(tmp_path / "a", ["Train_01"])
    write(root / "audio" / "Train_01.wav", b"")
    with pytest.raises(DataError, match="Train_01.wav.*empty"):
        read_sewa(root)
    root = make_sewa(tmp_path / "b", ["Train_01"])
    write(root / "audio" / "train_1.wav", MEDIA)
    with pytest.raises(DataError, match="train_1.wav"):
        read_sewa(root)


BAD_SEWA_LABELS = [
    # (content, row, words in the message)
    ("'Train_01';0.0;0;0;0\n'Train_01';0.2;0;0;0\n'Train_01';0.1;0;0;0\n", 3, "out of order"),
    ("'Train_01';0.0;0;0;0\n'Train_01';0.1;0;0;0\n'Train_01';0.1;0;0;0\n", 3, "duplicated"),
    ("'Train_01';0.0;0;0;0\n'Train_01';0.1;nan;0;0\n", 2, "arousal"),
    ("'Train_01';0.0;0;0;0\n'Train_01';0.1;0;0,5;0\n", 2, "valence"),
    ("'Train_01';0.0;0;0;0\n'Train_01';0.1;0;0\n", 2, "5 ';'-separated fields"),
    ("'Train_01';0.0;0;0;0\n'Train_01';0.1;0;0;0\n'Train_01';0.3;0;0;0\n", 3, "irregular"),
    ("'Train_01';0.0;0;0;0\n'Train_01';0.25;0;0;0\n", 2, "irregular"),
    ("'Train_01';0.0;0;0;0\n\n'Train_02';0.1;0;0;0\n", 3, "Train_02"),
    ("'Train_01';-0.1;0;0;0\n", 1, "negative"),
    ("'Train_01';0.0;0;0;inf\n", 1, "liking"),
]


@pytest.mark.parametrize(("content", "row", "words"), BAD_SEWA_LABELS)
def test_sewa_label_errors(tmp_path: Path, content: str, row: int, words: str) -> None:
    root = make_sewa(tmp_path, ["Train_01"])
    write(root / "labels" / "Train_01.csv", content)
    with pytest.raises(DataError) as exc:
        read_sewa(root)
    assert_error_names(exc, "Train_01.csv", row)
    assert words in str(exc.value)


def test_sewa_empty_label_file(tmp_path: Path) -> None:
    root = make_sewa(tmp_path, ["Train_01"])
    write(root / "labels" / "Train_01.csv", "\n")
    with pytest.raises(DataError, match=r"Train_01\.csv: label file is empty"):
        read_sewa(root)


BAD_SEWA_TURNS = [
    ("0.0;1.0\n2.0;1.5\n", 2, "before start"),
    ("-1.0;1.0\n", 1, "negative"),
    ("0.0;1.0;2.0\n", 1, "2 ';'-separated"),
    ("0.0;abc\n", 1, "end"),
]


@pytest.mark.parametrize(("content", "row", "words"), BAD_SEWA_TURNS)
def test_sewa_turn_errors(tmp_path: Path, content: str, row: int, words: str) -> None:
    path = write(tmp_path / "turns" / "Train_01.csv", content)
    with pytest.raises(DataError) as exc:
        read_sewa_turns(path)
    assert_error_names(exc, "Train_01.csv", row)
    assert words in str(exc.value)


BAD_SEWA_TRANSCRIPTS = [
    ("0.0;1.0;'hallo'\n2.0;1.0;'x'\n", 2, "before start"),
    ("0.0;1.0;'hallo\n", 1, "single quotes"),
    ("0.0;1.0;hallo\n", 1, "single quotes"),
    ("0.0;1.0;\"hallo\"\n", 1, "single quotes"),
    ("0.0;1.0;'\n", 1, "single quotes"),
    ("0.0;'hallo'\n", 1, "3 ';'-separated"),
    ("-0.5;1.0;'x'\n", 1, "negative"),
]


@pytest.mark.parametrize(("content", "row", "words"), BAD_SEWA_TRANSCRIPTS)
def test_sewa_transcript_errors(tmp_path: Path, content: str, row: int, words: str) -> None:
    path = write(tmp_path / "transcriptions" / "Devel_04.csv", content)
    with pytest.raises(DataError) as exc:
        read_sewa_transcript(path)
    assert_error_names(exc, "Devel_04.csv", row)
    assert words in str(exc.value)


def test_sewa_text_files_encodings(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.csv", "")
    assert read_sewa_turns(empty) == []
    assert read_sewa_transcript(empty) == []
    crlf = write(tmp_path / "crlf.csv", "\ufeff0.0;1.0;'Grüße <breathing>'\r\n\r\n")
    (turn,) = read_sewa_transcript(crlf)
    assert (turn.start, turn.end, turn.text) == (0.0, 1.0, "Grüße <breathing>")
    latin1_bytes = "0.0;1.0;'ok'\n1.0;2.0;'Gr\xfc\xdfe'\n".encode("latin-1")
    latin1 = write(tmp_path / "latin1.csv", latin1_bytes)
    with pytest.raises(DataError) as exc:
        read_sewa_transcript(latin1)
    assert_error_names(exc, "latin1.csv", 2)
    assert read_sewa_transcript(latin1, encoding="latin-1")[1].text == "Grüße"


def test_sewa_labels_off_grid_start_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "Train_01.csv", sewa_labels_text("Train_01", 4, start=0.05))
    labels = read_sewa_labels(path)
    np.testing.assert_allclose(labels.times, [0.05, 0.15, 0.25, 0.35])


# --------------------------------------------------------------------------- generic


def make_generic(root: Path) -> Path:
    a = root / "alice"
    write(a / "video.mp4", MEDIA)
    write(a / "audio.wav", MEDIA)
    write(a / "transcript.csv", 'start,end,text\n1.0,2.0,"Hello, ""you"" <laughter>"\n0.0,0.5,hi\n')
    write(a / "turns.csv", "start,end\n0.0,0.5\n1.0,2.0\n")
    write(a / "labels.csv", "time,arousal,valence\n" + "".join(
        f"{i / 10:.1f},{i / 100},{-i / 100}\n" for i in range(21)
    ))
    b = root / "bob"
    write(b / "video.webm", MEDIA)
    t = root / "text_0001"
    write(t / "transcript.csv", "start,end,text\n0.0,3.0,I feel great today\n")
    write(t / "labels.csv", "time,valence,arousal,dominance\n0.0,3.8,3.1,2.9\n")
    write(root / "splits.csv", "session,partition\nalice,train\nbob,Test\ntext_0001,devel\n")
    return root


def test_generic_reads_sessions(tmp_path: Path) -> None:
    root = make_generic(tmp_path)
    alice, bob, text = read_generic(root)
    assert (alice.name, bob.name, text.name) == ("alice", "bob", "text_0001")
    assert (alice.partition, bob.partition, text.partition) == ("train", "test", "devel")
    assert alice.audio == root / "alice" / "audio.wav"
    assert alice.video == root / "alice" / "video.mp4"
    assert [u.text for u in alice.transcript] == ["hi", 'Hello, "you" <laughter>']
    assert [(u.start, u.end) for u in alice.target_turns] == [(0.0, 0.5), (1.0, 2.0)]
    assert alice.labels.names == ("arousal", "valence")
    assert alice.labels.times.tolist() == [i / 10 for i in range(21)]
    np.testing.assert_allclose(alice.labels.affect()[:, 0], np.arange(21) / 100, atol=1e-7)
    assert alice.meta["layout"] == "generic"
    assert alice.meta["labels_path"] == root / "alice" / "labels.csv"
    # video only: the video's audio track is the audio
    assert bob.audio == bob.video == root / "bob" / "video.webm"
    assert bob.meta["audio_from_video"] is True
    assert bob.labels is None and bob.transcript is None and bob.target_turns is None
    assert bob.meta["labels_path"] is None
    # text only, columns reordered: arousal, valence, then the others
    assert text.audio is None and text.video is None
    assert text.labels.names == ("arousal", "valence", "dominance")
    np.testing.assert_allclose(text.labels.values, [[3.1, 3.8, 2.9]], rtol=1e-6)
    assert [s.name for s in read_generic(root, partitions=["train", "devel"])] == [
        "alice",
        "text_0001",
    ]


def test_generic_without_splits(tmp_path: Path) -> None:
    root = make_generic(tmp_path)
    (root / "splits.csv").unlink()
    assert [s.partition for s in read_generic(root)] == [None, None, None]
    with pytest.raises(DataError, match="splits.csv"):
        read_generic(root, partitions=["train"])


def test_generic_custom_partition_names(tmp_path: Path) -> None:
    root = make_generic(tmp_path)
    (root / "splits.csv").write_text("session,partition\nalice,spk03\nbob,SPK10\ntext_0001,spk03\n")
    assert [s.partition for s in read_generic(root)] == ["spk03", "spk10", "spk03"]
    assert [s.name for s in read_generic(root, partitions=["spk03"])] == ["alice", "text_0001"]
    with pytest.raises(DataError, match="no session in partition"):
        read_generic(root, partitions=["train"])


def test_generic_resamples_25hz_labels(tmp_path: Path) -> None:
    # 25 Hz from 0.02 s to 1.02 s: grid 0.1 .. 1.0, a linear ramp stays exact
    rows = "".join(f"{0.02 + i / 25:.6f},{0.5 * (0.02 + i / 25):.6f},0.25\n" for i in range(26))
    path = write(tmp_path / "s" / "labels.csv", "time,arousal,valence\n" + rows)
    labels = read_labels_csv(path)
    assert labels.times.tolist() == [k / 10 for k in range(1, 11)]
    np.testing.assert_allclose(labels.dimension("arousal"), 0.5 * labels.times, atol=1e-6)
    np.testing.assert_allclose(labels.dimension("valence"), 0.25)


@pytest.mark.parametrize(
    ("setup", "name", "words"),
    [
        ({"audio.wav": MEDIA, "audio.flac": MEDIA}, "audio.wav", "2 audio files"),
        ({"video.mp4": MEDIA, "video.avi": MEDIA}, "video.mp4", "2 video files"),
        ({"audio.mp3": MEDIA}, "audio.mp3", "unsupported audio format"),
        ({"video.mp4": b""}, "video.mp4", "empty"),
        ({"turns.csv": "start,end\n0,1\n"}, "carol", "no video.*, audio.* or transcript.csv"),
        ({"notes.txt": "x"}, "carol", "no video.*, audio.* or transcript.csv"),
    ],
)
def test_generic_session_folder_errors(
    tmp_path: Path, setup: dict[str, bytes | str], name: str, words: str
) -> None:
    for file, content in setup.items():
        write(tmp_path / "carol" / file, content)
    with pytest.raises(DataError) as exc:
        read_generic(tmp_path)
    assert name in str(exc.value) and words in str(exc.value)


@pytest.mark.parametrize(
    ("content", "row", "words"),
    [
        ("session,partition\nalice,train\nalice,test\n", 3, "listed twice"),
        ("session,partition\nalice,my split\n", 2, "invalid partition name"),
        ("session,partition\nalice,train\nbob,test\ndave,train\n", 4, "no folder"),
        ("name,split\nalice,train\n", 1, "header"),
        ("session,partition\nalice,train,x\n", 2, "2 comma-separated"),
    ],
)
def test_generic_splits_errors(tmp_path: Path, content: str, row: int, words: str) -> None:
    write(tmp_path / "alice" / "audio.wav", MEDIA)
    write(tmp_path / "bob" / "audio.wav", MEDIA)
    write(tmp_path / "splits.csv", content)
    with pytest.raises(DataError) as exc:
        read_generic(tmp_path)
    assert_error_names(exc, "splits.csv", row)
    assert words in str(exc.value)


def test_generic_unlisted_session(tmp_path: Path) -> None:
    write(tmp_path / "alice" / "audio.wav", MEDIA)
    write(tmp_path / "bob" / "audio.wav", MEDIA)
    write(tmp_path / "splits.csv", "session,partition\nalice,train\n")
    with pytest.raises(DataError, match="splits.csv.*'bob' is not listed"):
        read_generic(tmp_path)


BAD_GENERIC_LABELS = [
    ("time,arousal,valence\n0.0,0,0\n0.2,0,0\n0.1,0,0\n", 4, "out of order"),
    ("time,arousal,valence\n0.0,0,0\n0.1,0,0\n0.1,0,0\n", 4, "duplicated"),
    ("time,arousal,valence\n0.0,0,0\n0.1,NaN,0\n", 3, "arousal"),
    ("time,arousal,valence\n0.0,0,0\n0.1,0\n", 3, "3 comma-separated"),
    ("time,arousal,valence\n0.0,0,0\n0.04,0,0\n0.08,0,0\n0.16,0,0\n0.2,0,0\n", 5, "irregular"),
    ("time,arousal\n0.0,0\n", 1, "'valence' is missing"),
    ("time,arousal,valence,arousal\n0.0,0,0,0\n", 1, "twice"),
    ("time,arousal,valence\n0.05,0,0\n", 2, "grid"),
    ('time,arousal,valence\n0.0,0,"0\n', 2, "quoting"),
]


@pytest.mark.parametrize(("content", "row", "words"), BAD_GENERIC_LABELS)
def test_generic_label_errors(tmp_path: Path, content: str, row: int, words: str) -> None:
    path = write(tmp_path / "s1" / "labels.csv", content)
    with pytest.raises(DataError) as exc:
        read_labels_csv(path)
    assert_error_names(exc, "labels.csv", row)
    assert words in str(exc.value)


@pytest.mark.parametrize("content", ["", "\n", "time,arousal,valence\n"])
def test_generic_empty_labels_rejected(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "s1" / "labels.csv", content)
    with pytest.raises(DataError, match="labels.csv"):
        read_labels_csv(path)


BAD_GENERIC_TRANSCRIPTS = [
    ('start,end,text\n0.0,1.0,"hello\n', 2, "quoting"),
    ('start,end,text\n0.0,1.0,"a"b\n', 2, "quoting"),
    ("start,end,text\n0.0,1.0,hello, world\n", 2, "3 comma-separated"),
    ("start,end,text\n0.0,1.0,ok\n3.0,2.0,x\n", 3, "before start"),
    ("start,end,text\n-1,1.0,x\n", 2, "negative"),
    ("begin,end,text\n0,1,x\n", 1, "header"),
]


@pytest.mark.parametrize(("content", "row", "words"), BAD_GENERIC_TRANSCRIPTS)
def test_generic_transcript_errors(tmp_path: Path, content: str, row: int, words: str) -> None:
    path = write(tmp_path / "s1" / "transcript.csv", content)
    with pytest.raises(DataError) as exc:
        read_transcript_csv(path)
    assert_error_names(exc, "transcript.csv", row)
    assert words in str(exc.value)


def test_generic_turns_and_multiline_text(tmp_path: Path) -> None:
    assert read_turns_csv(write(tmp_path / "a.csv", "")) == []
    assert read_turns_csv(write(tmp_path / "b.csv", "start,end\n")) == []
    assert read_transcript_csv(write(tmp_path / "c.csv", "start,end,text\n")) == []
    path = write(tmp_path / "d.csv", 'start,end,text\n0,1,"two\nlines"\n1,2,ok\n2,1,bad\n')
    with pytest.raises(DataError) as exc:
        read_transcript_csv(path)
    assert_error_names(exc, "d.csv", 5)  # the multi-line record counts two lines
    with pytest.raises(DataError) as exc:
        read_turns_csv(write(tmp_path / "e.csv", "start,end\n0,1\n2,x\n"))
    assert_error_names(exc, "e.csv", 3)


# --------------------------------------------------------------------------- read_corpus


def test_read_corpus_detects_layouts(tmp_path: Path) -> None:
    sewa = make_sewa(tmp_path / "sewa", ["Train_01", "Test_01"])
    generic = make_generic(tmp_path / "generic")
    assert detect_layout(sewa) == "sewa" and detect_layout(generic) == "generic"
    assert [s.name for s in read_corpus(sewa)] == ["Test_01", "Train_01"]
    assert [s.name for s in read_corpus(str(sewa), partitions=["test"])] == ["Test_01"]
    assert [s.meta["layout"] for s in read_corpus(generic)] == ["generic"] * 3
    assert len(read_corpus(generic, layout="generic", partitions=["test"])) == 1
    with pytest.raises(DataError):
        read_corpus(generic, layout="sewa")
    with pytest.raises(ConfigError, match="layout"):
        read_corpus(sewa, layout="avec")


def test_read_corpus_rejects_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as exc:
        read_corpus(tmp_path / "missing")
    assert "missing" in str(exc.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        read_corpus(tmp_path / "empty")
    write(tmp_path / "file.txt", "x")
    with pytest.raises(DataError, match="not a folder"):
        read_corpus(tmp_path / "file.txt")
    write(tmp_path / "odd" / "stuff" / "notes.txt", "x")
    write(tmp_path / "odd" / "audio" / "readme.txt", "x")
    with pytest.raises(DataError, match="unrecognised corpus layout") as exc:
        read_corpus(tmp_path / "odd")
    assert "odd" in str(exc.value)
