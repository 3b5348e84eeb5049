"""Tests of the composite benchmark corpus (EmoDB voices, FER+ faces, EmoBank words on one trajectory).

They need the shared research corpora and skip when ``shared/data`` is absent
(a fresh clone does not have it). The corpora are converted at a tiny size
into ``tmp_path`` only.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from mmaffect.data.generic import read_generic
from mmaffect.data.proxy import PROXY_VA
from mmaffect.data.sources import SAMPLE_RATE, shared_data_root
from mmaffect.data.writers.composite import COMPOSITE_VERSION, EMODB_SPEAKERS, adapt_composite, read_segments
from mmaffect.data.writers.layout import RESEARCH_TERMS
from mmaffect.errors import ConfigError, DataError

ROOT = shared_data_root()
pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(ROOT is None, reason="shared research data (../shared/data) not available"),
]
REPO = Path(__file__).resolve().parents[1]
TINY = dict(sessions=(2, 1, 1), seconds=12.0)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("composite") / "corpus"
    report = adapt_composite(ROOT, out, **TINY)
    assert report.partitions == {"train": 2, "devel": 1, "test": 1}
    assert report.frames == 4 * 120
    return out


def test_layout_is_read_by_the_generic_reader(corpus):
    sessions = read_generic(corpus)
    assert [s.name for s in sessions] == sorted(
        ["composite_train_0000", "composite_train_0001", "composite_devel_0000", "composite_test_0000"])
    for s in sessions:
        assert s.video is not None and s.audio is not None and s.labels is not None
        assert s.transcript and s.target_turns
        assert s.partition == s.name.split("_")[1]
    meta = json.loads((corpus / "adapter.json").read_text())
    assert meta["adapter"] == "composite" and meta["terms"] == RESEARCH_TERMS
    assert meta["parameters"]["seed"] == 0 and meta["parameters"]["sessions"] == [2, 1, 1]
    assert meta["proxy_va"] == {k: list(v) for k, v in PROXY_VA.items()}
    assert set(meta["composite"]["partitions"]) == {"train", "devel", "test"}
    stats = meta["composite"]["partitions"]["train"]
    assert 0 < stats["speaking_share"] < 1 and 0 < stats["face_shown_share"] < 1


def test_labels_on_the_10hz_grid_and_follow_the_trajectory(corpus):
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir()):
        rows = read_csv(folder / "labels.csv")
        assert list(rows[0]) == ["time", "arousal", "valence"]
        times = np.array([float(r["time"]) for r in rows])
        np.testing.assert_allclose(times, np.arange(120) / 10.0, atol=1e-9)
        values = np.array([[float(r["arousal"]), float(r["valence"])] for r in rows])
        assert np.all(np.abs(values) <= 1)
        segs = [r for r in read_segments(folder) if r["modality"] == "label"]
        assert float(segs[0]["start"]) == 0 and float(segs[-1]["end"]) == 12.0
        for a, b in zip(segs, segs[1:]):
            assert a["end"] == b["start"] and a["category"] != b["category"]
        for s in segs:  # the middle of every segment holds its category's proxy point
            mid = int(round((float(s["start"]) + float(s["end"])) / 2 * 10))
            valence, arousal = PROXY_VA[s["category"]]
            np.testing.assert_allclose(values[mid], [arousal, valence], atol=1e-6)


def test_turns_transcript_audio_and_faces_are_consistent(corpus):
    import soundfile as sf

    for folder in sorted(p for p in corpus.iterdir() if p.is_dir()):
        turns = [(float(r["start"]), float(r["end"])) for r in read_csv(folder / "turns.csv")]
        transcript = read_csv(folder / "transcript.csv")
        segs = read_segments(folder)
        voices = [r for r in segs if r["modality"] == "voice"]
        assert len(turns) == len(voices) >= 1
        for (s, e), v in zip(turns, voices):  # each turn is the speech inside its utterance's clip
            assert float(v["start"]) - 1e-6 <= s < e <= float(v["end"]) + 1e-6
            assert v["source"].startswith("emodb:")
        for row in transcript:  # words only while the target speaks: a sentence spans whole turns
            s, e = float(row["start"]), float(row["end"])
            assert row["text"].strip()
            assert any(abs(s - ts) < 1e-6 for ts, _ in turns) and any(abs(e - te) < 1e-6 for _, te in turns)
        words = [r for r in segs if r["modality"] == "words"]
        assert len(words) == len(transcript) and all(r["source"].startswith("emobank:") for r in words)
        audio, rate = sf.read(folder / "audio.wav")
        assert rate == SAMPLE_RATE and len(audio) == 12 * SAMPLE_RATE
        # faces and face gaps never overlap
        shown = np.zeros(120, dtype=int)
        for r in segs:
            if r["modality"] in ("face", "no_face"):
                shown[int(round(float(r["start"]) * 10)):int(round(float(r["end"]) * 10))] += 1
        assert np.all(shown == 1)


def test_partitions_are_disjoint_in_speakers_faces_and_sentences(corpus):
    sources: dict[str, dict[str, set[str]]] = {}
    for row in read_csv(corpus / "splits.csv"):
        for seg in read_segments(corpus / row["session"]):
            if seg["modality"] in ("voice", "face", "words"):
                sources.setdefault(row["partition"], {}).setdefault(seg["modality"], set()).add(seg["source"])
    for part, by_modality in sources.items():
        speakers = {s.split(":")[1][:2] for s in by_modality["voice"]}
        assert speakers <= set(EMODB_SPEAKERS[part]), part
        assert all(s.startswith("ferplus_train:" if part == "train" else "ferplus_valid:") for s in by_modality["face"])
    for a, b in (("train", "devel"), ("train", "test"), ("devel", "test")):
        for modality in ("voice", "face", "words"):
            assert not sources[a][modality] & sources[b][modality], (a, b, modality)
    assert not set(EMODB_SPEAKERS["devel"]) & set(EMODB_SPEAKERS["test"])
    assert not set(EMODB_SPEAKERS["train"]) & (set(EMODB_SPEAKERS["devel"]) | set(EMODB_SPEAKERS["test"]))


def test_same_seed_same_files_other_seed_differs(corpus, tmp_path):
    import av

    again = tmp_path / "again"
    adapt_composite(ROOT, again, **TINY)
    for name in ("composite_train_0000", "composite_test_0000"):
        for f in ("audio.wav", "labels.csv", "turns.csv", "transcript.csv", "segments.csv"):
            assert (corpus / name / f).read_bytes() == (again / name / f).read_bytes(), (name, f)

        def frames(path: Path) -> np.ndarray:
            with av.open(str(path)) as c:
                return np.stack([fr.to_ndarray(format="gray") for fr in c.decode(video=0)][::10])

        np.testing.assert_array_equal(frames(corpus / name / "video.mp4"), frames(again / name / "video.mp4"))
    other = tmp_path / "other"
    adapt_composite(ROOT, other, sessions=(1, 0, 0), seconds=12.0, seed=1)
    assert (other / "composite_train_0000" / "segments.csv").read_bytes() != \
        (corpus / "composite_train_0000" / "segments.csv").read_bytes()


# ----------------------------------------------------------------------------- realism effects


def decode(path: Path) -> np.ndarray:
    """All RGB frames of a video, (N, H, W, 3) uint8."""
    import av

    with av.open(str(path)) as c:
        return np.stack([fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)])


def spans(folder: Path, modality: str) -> list[tuple[int, int]]:
    """(start, end) label frames of the ``segments.csv`` rows of one modality."""
    return [(int(round(float(r["start"]) * 10)), int(round(float(r["end"]) * 10)))
            for r in read_segments(folder) if r["modality"] == modality]


def face_box(folder: Path) -> tuple[slice, slice]:
    """The central region every face photograph covers whatever the head's placement (canvas 288)."""
    return slice(120, 168), slice(120, 168)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    from mmaffect.data.writers.composite import PLAIN

    out = tmp_path_factory.mktemp("composite") / "plain"
    adapt_composite(ROOT, out, sessions=(1, 0, 0), seconds=12.0, **PLAIN)
    return out


@pytest.fixture(scope="module")
def forced(tmp_path_factory) -> Path:
    """Every per-session effect switched on for sure: digital silence, an 8 kHz channel, long pauses, bursts,
    occlusions, blur, and a fixed gain of -20 dB."""
    out = tmp_path_factory.mktemp("composite") / "forced"
    adapt_composite(ROOT, out, sessions=(2, 0, 0), seconds=20.0, digital_silence=1.0, channel_share=1.0,
                    channel_rates=[8000], long_pause=1.0, noise_burst_rate=0.5, occlusion_rate=1.0, blur_rate=0.5,
                    off_topic_rate=1.0, gain_db=-20.0)  # a single level, as the docstring allows
    return out


def test_a_single_level_is_recorded_as_its_pair(forced):
    params = json.loads((forced / "adapter.json").read_text())["parameters"]
    assert params["gain_db"] == [-20.0, -20.0]


def test_faces_are_tinted_and_backgrounds_vary(corpus, plain):
    corners = []
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir()):
        video = decode(folder / "video.mp4")
        ys, xs = face_box(folder)
        shown = [f for s, e in spans(folder, "face") for f in range(s, e)]
        hidden = [f for s, e in spans(folder, "no_face") for f in range(s, e)]
        face = video[[int((f + 0.5) * 2.5) for f in shown]][:, ys, xs].reshape(-1, 3).astype(float)
        assert face[:, 0].mean() - face[:, 2].mean() > 8, folder.name  # skin: red above blue, not grey
        corner = video[:, :40, :40].astype(float)
        assert corner.std() > 1.0 or np.ptp(corner.mean(axis=(0, 1, 2))) > 0, folder.name
        corners.append(corner.mean(axis=(0, 1, 2)))
        if hidden:  # frames without a face show the session's background, not a grey canvas
            blank = video[[int((f + 0.5) * 2.5) for f in hidden]].astype(float)
            assert np.abs(blank - 128).mean() > 4 or blank.std() > 4, folder.name
    assert max(np.ptp(np.array(corners), axis=0)) > 10  # the sessions' backgrounds differ
    meta = json.loads((corpus / "adapter.json").read_text())
    looks = meta["composite"]["sessions"]
    assert len({tuple(v["skin_tone"]) for v in looks.values()}) > 1 and len({v["crf"] for v in looks.values()}) > 1
    # the plain rendering: grey faces on the uniform grey canvas
    folder = plain / "composite_train_0000"
    video = decode(folder / "video.mp4").astype(float)
    assert np.abs(video[..., 0] - video[..., 2]).mean() < 2
    hidden = [f for s, e in spans(folder, "no_face") for f in range(s, e)]
    assert hidden and np.abs(video[[int((f + 0.5) * 2.5) for f in hidden]] - 128).max() <= 3


def test_the_head_moves_within_a_hold(corpus, plain):
    def change(folder: Path) -> float:
        video = decode(folder / "video.mp4").astype(float)
        diffs = []
        for s, e in spans(folder, "face"):
            if e - s >= 8:  # first and last video frame of a hold of >= 0.8 s
                a, b = int(np.ceil(s * 2.5)), int(np.floor(e * 2.5)) - 1
                diffs.append(np.abs(video[a] - video[b])[60:228, 60:228].mean())
        assert diffs, folder.name
        return float(np.median(diffs))

    moving = [change(f) for f in sorted(p for p in corpus.iterdir() if p.is_dir())]
    still = change(plain / "composite_train_0000")
    assert still < 1.5 and min(moving) > 2 * still + 1.0, (still, moving)


def speech_level(folder: Path) -> float:
    """RMS level (dBFS) of the audio inside the session's turns."""
    import soundfile as sf

    audio, _ = sf.read(folder / "audio.wav")
    speech = np.concatenate([audio[int(float(r["start"]) * SAMPLE_RATE):int(float(r["end"]) * SAMPLE_RATE)]
                             for r in read_csv(folder / "turns.csv")])
    return float(10 * np.log10(np.mean(speech ** 2)))


def test_audio_levels_differ_and_pauses_are_noise_or_silence(corpus, forced):
    import soundfile as sf

    looks = json.loads((corpus / "adapter.json").read_text())["composite"]["sessions"]
    assert np.ptp([v["gain_db"] for v in looks.values()]) > 3 and np.ptp([v["noise_db"] for v in looks.values()]) > 3
    levels = [speech_level(f) for f in sorted(p for p in corpus.iterdir() if p.is_dir())]
    assert np.ptp(levels) > 3, levels
    for folder in sorted(p for p in forced.iterdir() if p.is_dir()):
        # EmoDB speech lies at -23 to -14 dBFS RMS (5-95 %); the session gain of -20 dB moves it below -30
        assert speech_level(folder) < -30, folder.name
        audio, _ = sf.read(folder / "audio.wav", dtype="int16")
        turns = [(float(r["start"]), float(r["end"])) for r in read_csv(folder / "turns.csv")]
        talk = np.zeros(len(audio), dtype=bool)
        for s, e in turns + [(a / 10, b / 10) for a, b in spans(folder, "noise_burst")]:
            talk[max(0, int((s - 0.1) * SAMPLE_RATE)):int((e + 0.1) * SAMPLE_RATE)] = True
        assert (~talk).sum() > SAMPLE_RATE and np.all(audio[~talk] == 0), folder.name  # digital silence
        gaps = np.diff([0.0] + [x for s, e in turns for x in (s, e)] + [20.0])[::2]
        assert gaps.max() >= 6.0, (folder.name, gaps)  # a long stretch without speech
        spectrum = np.abs(np.fft.rfft(audio.astype(float))) ** 2
        freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
        assert spectrum[freqs > 4300].sum() < 1e-3 * spectrum[freqs < 4000].sum()  # through an 8 kHz channel
        assert spans(folder, "noise_burst") and spans(folder, "occlusion") and spans(folder, "blur")


def test_occluded_and_blurred_faces_are_mostly_still_detected(forced):
    from mmaffect.data.writers.face_render import detect_faces, haar_detector

    det = haar_detector()
    for modality in ("occlusion", "blur"):
        found = total = 0
        for folder in sorted(p for p in forced.iterdir() if p.is_dir()):
            video = decode(folder / "video.mp4")
            face = {f for s, e in spans(folder, "face") for f in range(s, e)}
            for s, e in spans(folder, modality):
                for f in range(s, e):
                    if f in face:
                        total += 1
                        found += len(detect_faces(det, video[int((f + 0.5) * 2.5)], min_neighbors=5)) > 0
        assert total >= 10 and found / total >= 0.4, (modality, found, total)


def test_plain_turns_every_effect_off(plain):
    import soundfile as sf

    meta = json.loads((plain / "adapter.json").read_text())
    look = meta["composite"]["sessions"]["composite_train_0000"]
    assert look["skin_tone"] is None and look["background"] == "grey" and look["crf"] == 18
    assert look["gain_db"] == 0 and not look["digital_silence"] and look["channel_rate"] is None
    assert {r["modality"] for r in read_segments(plain / "composite_train_0000")} <= {
        "label", "voice", "face", "no_face", "words"}  # no occlusion, blur, noise burst or off-topic turn
    assert meta["parameters"]["off_topic_rate"] == 0.0
    stats = meta["composite"]["partitions"]["train"]
    assert stats["off_topic_turns"] == 0 and "off_topic" not in stats["effect_shares"]
    audio, _ = sf.read(plain / "composite_train_0000" / "audio.wav")
    assert np.count_nonzero(audio == 0) < 0.01 * len(audio)  # low noise in every pause, no digital silence


# ----------------------------------------------------------------------------- off-topic words


@pytest.fixture(scope="module")
def sources():
    from mmaffect.data.writers.composite import _read_sources
    from mmaffect.data.writers.layout import AdaptReport

    return _read_sources(ROOT, AdaptReport(corpus="composite", out=Path("unused")))


def plans(sources, rate: float, n: int = 12, seconds: float = 200.0) -> list:
    """Plans (no files) of ``n`` train sessions at ``off_topic_rate=rate``, every other option at its default."""
    import inspect

    from mmaffect.data.writers.composite import _composite_params, plan_session

    options = {k: v.default for k, v in inspect.signature(adapt_composite).parameters.items()
               if v.default is not inspect.Parameter.empty}
    params = _composite_params({**options, "seconds": seconds, "off_topic_rate": rate})
    return [plan_session(f"composite_train_{i:04d}", "train", i, sources, params, 0) for i in range(n)]


def test_off_topic_turns_carry_near_neutral_sentences_at_the_requested_rate(sources):
    from mmaffect.data.writers.composite import PLAIN

    assert PLAIN["off_topic_rate"] == 0.0
    words = off = 0
    on_valence, off_valence = [], []
    for plan in plans(sources, 0.3):
        marked = {(it.start, it.end, it.source) for it in plan.items if it.modality == "off_topic"}
        for it in plan.items:
            if it.modality != "words":
                continue
            words += 1
            if (it.start, it.end, it.source) in marked:
                off += 1
                off_valence.append(abs(it.valence))
            elif abs(PROXY_VA[it.target][0]) >= 0.5:  # a target far from neutral
                on_valence.append(abs(it.valence))
        assert len(marked) == sum(1 for it in plan.items if it.modality == "off_topic")  # one per marked turn
    assert words > 300 and abs(off / words - 0.3) < 0.06, (off, words)
    assert np.mean(off_valence) < 0.1 and np.mean(off_valence) < 0.3 * np.mean(on_valence), (
        np.mean(off_valence), np.mean(on_valence))
    assert not any(it.modality == "off_topic" for plan in plans(sources, 0.0, n=4) for it in plan.items)


def test_off_topic_turns_change_only_the_sentences(sources):
    for a, b in zip(plans(sources, 0.0, n=3, seconds=60.0), plans(sources, 0.5, n=3, seconds=60.0), strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.faces, b.faces)
        assert a.turns == b.turns and [c[1].stem for c in a.clips] == [c[1].stem for c in b.clips]
        assert [(s, e) for s, e, _ in a.transcript] == [(s, e) for s, e, _ in b.transcript]
        strip = [(it.modality, it.start, it.end, it.source) for it in b.items if it.modality not in ("words", "off_topic")]
        assert strip == [(it.modality, it.start, it.end, it.source) for it in a.items if it.modality != "words"]
        assert any(it.modality == "off_topic" for it in b.items)


def test_off_topic_turns_are_in_segments_and_the_report(forced):
    meta = json.loads((forced / "adapter.json").read_text())
    assert meta["parameters"]["off_topic_rate"] == 1.0
    stats = meta["composite"]["partitions"]["train"]
    assert stats["off_topic_turn_share"] == 1.0 and stats["off_topic_turns"] == stats["items"]["words"] > 0
    assert stats["effect_shares"]["off_topic"] == stats["words_share"]
    for folder in sorted(p for p in forced.iterdir() if p.is_dir()):
        rows = read_segments(folder)
        words = [(r["start"], r["end"], r["source"]) for r in rows if r["modality"] == "words"]
        assert words == [(r["start"], r["end"], r["source"]) for r in rows if r["modality"] == "off_topic"]


def _mirror(tmp_path: Path, leave_out: str) -> Path:
    """A copy of the shared data made of symlinks, without ``leave_out`` (a path relative to the root)."""
    root = tmp_path / "shared"
    for sub in ("emodb", "emobank", "ferplus"):
        (root / sub).mkdir(parents=True)
        for item in (ROOT / sub).iterdir():
            if f"{sub}/{item.name}" != leave_out:
                os.symlink(item, root / sub / item.name)
    return root


@pytest.mark.parametrize("missing", ["ferplus/ferplus_valid.npz", "emodb/labels.csv", "emobank/emobank_train_dev.csv"])
def test_a_missing_corpus_file_is_a_clear_error(tmp_path, missing):
    root = _mirror(tmp_path, missing)
    with pytest.raises(DataError) as err:
        adapt_composite(root, tmp_path / "out", **TINY)
    name = Path(missing).name
    assert name in str(err.value) or (name.startswith("emobank") and "emobank" in str(err.value))
    assert not (tmp_path / "out").exists()  # nothing written before the sources are checked


def test_bad_parameters(tmp_path):
    with pytest.raises(ConfigError):
        adapt_composite(ROOT, tmp_path / "o", sessions=(0, 1, 1))
    with pytest.raises(ConfigError):
        adapt_composite(ROOT, tmp_path / "o", seconds=12.05)
    with pytest.raises(ConfigError):
        adapt_composite(ROOT, tmp_path / "o", segment=(0.5, 2.0), ramp=1.0)
    for bad in (dict(crf=(30, 18)), dict(gain_db=(-10.0, 40.0)), dict(channel_rates=[]), dict(head_motion=-1.0),
                dict(brightness=(0.0, 1.0)), dict(digital_silence=1.5), dict(noise_db=(-40.0, -70.0)),
                dict(off_topic_rate=1.5), dict(off_topic_rate=-0.1)):
        with pytest.raises(ConfigError):
            adapt_composite(ROOT, tmp_path / "o", **bad)
    assert not (tmp_path / "o").exists()


def test_cli_adapt_composite(tmp_path, capsys):
    from mmaffect.cli import main

    assert main(["adapt", "composite", "--src", str(ROOT), "--out", str(tmp_path / "c"),
                 "--sessions", "1", "0", "0", "--seconds", "6", "--seed", "3"]) == 0
    assert "composite: 1 sessions" in capsys.readouterr().out
    meta = json.loads((tmp_path / "c" / "adapter.json").read_text())
    assert meta["parameters"]["seed"] == 3 and meta["parameters"]["seconds"] == 6.0
    assert main(["adapt", "composite", "--src", str(ROOT), "--out", str(tmp_path / "p"), "--sessions", "1", "0", "0",
                 "--seconds", "6", "--plain", "--set", "crf=[20,20]", "--set", "noise_db=-50",
                 "--set", "off_topic_rate=0.3"]) == 0
    meta = json.loads((tmp_path / "p" / "adapter.json").read_text())
    assert meta["parameters"]["skin_tones"] is False and meta["parameters"]["crf"] == [20, 20]
    assert meta["parameters"]["off_topic_rate"] == 0.3 and meta["parameters"]["version"] == COMPOSITE_VERSION == 3
    assert meta["composite"]["sessions"]["composite_train_0000"]["noise_db"] == -50
    assert main(["adapt", "composite", "--src", str(ROOT), "--out", str(tmp_path / "q"), "--set", "colour=1"]) == 2
    assert main(["adapt", "emodb", "--src", str(ROOT / "emodb"), "--out", str(tmp_path / "r"), "--plain"]) == 2
    assert main(["adapt", "composite", "--src", str(ROOT), "--out", str(tmp_path / "d"), "--limit", "3"]) == 2
    assert main(["adapt", "emodb", "--src", str(ROOT / "emodb"), "--out", str(tmp_path / "e"), "--seed", "1"]) == 2


@pytest.mark.slow
def test_benchmark_quick_smoke_run(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_composite", REPO / "benchmarks" / "bench_composite.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--workdir", str(tmp_path), "--data", str(ROOT)]) == 0
    out = capsys.readouterr().out
    assert "| fusion-crossmodal-hierarchical |" in out and "devel arousal" in out and "test valence" in out
    assert "face detection (Haar, as prepared)" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["scores"]) == {"text-paper", "audio-tzirakis2018", "visual-hrnet3-attpool", "fusion-concat",
                                      "fusion-self-attention", "fusion-hierarchical",
                                      "fusion-residual-self-attention", "fusion-crossmodal-hierarchical"}
    assert all(math.isfinite(v[0]) for m in results["scores"].values() for d in m.values() for v in d.values())
    table = (tmp_path / "results.md").read_text()
    assert table.strip().splitlines()[-1].startswith("command: ")
    # a second run reuses corpus, cache and runs
    assert bench.main(["--quick", "--workdir", str(tmp_path), "--data", str(ROOT)]) == 0
    assert "reusing the composite corpus" in capsys.readouterr().out
