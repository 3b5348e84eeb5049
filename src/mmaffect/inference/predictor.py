"""Arousal and valence over time for new recordings, from a trained checkpoint.

:func:`mmaffect.load` (= :meth:`Predictor.from_checkpoint`) reads a training
checkpoint (``best.pt`` / ``last.pt`` of ``mmaffect train``), rebuilds its
model and takes the preprocessing parameters the model was trained with from
the checkpoint itself (``prepare_config``), so a new recording goes through
exactly the steps its training data went through: 22,050 Hz mono audio cut
into 100 ms frames with the interlocutor vector, Haar face detection and
crops of the trained size, word vectors from the same embedder, 10 frames a
second.

Long recordings are processed in chunks (``chunk_seconds``, 60 s): each
chunk's audio frames are read from a temporary decoded copy, its faces come
from one streaming face tracker over the whole video, and the LSTM state is
carried from chunk to chunk — the result equals one pass over the whole
recording, and memory does not grow with its length.

Missing inputs are masked, never fed as zeros: no transcript → the text
branch sees no words (``words`` column 0 everywhere); frames without a face
→ the visual branch is masked there (``face`` column 0); a video without an
audio track → audio masked. Without target-speaker turns the target speaks
throughout, unless ``vad_db`` is set: then a frame is the target's when its
level is above ``vad_db`` dBFS (a plain energy rule) and otherwise goes to
the interlocutor half of the audio input, as the partner's speech does in
training.

Example (a model trained by ``mmaffect demo`` on the synthetic corpus)::

    >>> import mmaffect                                              # doctest: +SKIP
    >>> predictor = mmaffect.load("demo_output/runs/seed0/fusion-hierarchical/best.pt")  # doctest: +SKIP
    >>> frame = predictor.predict(video="talk.mp4", transcript="talk.csv")         # doctest: +SKIP
    >>> list(frame.columns)                                           # doctest: +SKIP
    ['time', 'arousal', 'valence', 'audio', 'face', 'words']
"""

from __future__ import annotations

import itertools
import json
import math
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mmaffect import __version__
from mmaffect.data.dataset import collate, frames_to_item
from mmaffect.data.session import DIMENSIONS, LABEL_RATE, Turn, frame_times
from mmaffect.errors import ConfigError, DataError
from mmaffect.training.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from mmaffect.utils.io import release_freed_memory

__all__ = ["Prediction", "Predictor", "load", "read_transcript", "read_turns"]

# Attention maps kept for figures; visual.spatial (per-frame saliency maps) is
# left out by default because it is the one map that is large per frame.
DEFAULT_ATTENTION = ("fusion.", "text.selector", "visual.branches")


def _read_table(path: Path, generic: Any, sewa: Any) -> list[Turn]:
    if not path.is_file():
        raise DataError("file not found", path=path)
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = next((line for line in fh if line.strip()), "")
    # The generic layout has a ``start,...`` header; SEWA files are ``start;end;...`` rows.
    return generic(path) if first.lstrip("\ufeff").strip().lower().startswith("start") else sewa(path)


def read_transcript(path: str | Path) -> list[Turn]:
    """A transcript file: generic ``start,end,text`` CSV (with header) or SEWA ``start;end;'text'``."""
    from mmaffect.data.tables import read_sewa_transcript, read_transcript_csv

    return _read_table(Path(path), read_transcript_csv, read_sewa_transcript)


def read_turns(path: str | Path) -> list[Turn]:
    """Target-speaker turns: generic ``start,end`` CSV (with header) or SEWA ``start;end``."""
    from mmaffect.data.tables import read_sewa_turns, read_turns_csv

    return _read_table(Path(path), read_turns_csv, read_sewa_turns)


def _check_times_within(turns: Sequence[Turn], duration: float, path: Path | None, what: str,
                        tolerance: float = 0.5) -> None:
    for k, turn in enumerate(turns):
        if turn.end > duration + tolerance:
            raise DataError(
                f"{what} turn {k + 1} ({turn.start:.2f}–{turn.end:.2f} s) ends after the recording "
                f"({duration:.2f} s): is it the transcript of another recording?",
                path=path, time=turn.end,
            )


@dataclass
class Prediction:
    """Everything :meth:`Predictor.predict_full` computed for one recording.

    ``frame``: one row per 10 Hz frame — ``time`` (frame start, seconds),
    ``arousal``, ``valence`` and the presence flags ``audio``, ``face``,
    ``words`` (1 = the modality was present in that frame, 0 = masked).
    ``attention``: maps of the kept attention keys with the frame axis
    first (see :mod:`mmaffect.models.assembly`). ``word_tokens`` (W,) and
    ``word_index`` (T, L) (−1 = padding) give each frame's words (text
    models with a transcript). ``report``: counts (frames, faces found,
    frames with words, ...), timings and the checkpoint used.
    """

    frame: pd.DataFrame
    attention: dict[str, np.ndarray] = field(default_factory=dict)
    word_tokens: np.ndarray | None = None
    word_index: np.ndarray | None = None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def times(self) -> np.ndarray:
        return self.frame["time"].to_numpy()

    @property
    def values(self) -> np.ndarray:
        """(T, 2) arousal, valence."""
        return self.frame[list(DIMENSIONS)].to_numpy()

    def frame_words(self, i: int) -> list[str]:
        """The words the text branch saw in frame ``i`` (empty without a transcript)."""
        if self.word_index is None or self.word_tokens is None:
            return []
        return [str(self.word_tokens[j]) for j in self.word_index[i] if j >= 0]


    def save(self, folder: str | Path, *, figures: bool = True, sentences: int = 3,
             times: Sequence[float] | None = None) -> dict[str, Path]:
        """Write the prediction into ``folder``; returns ``{what: path}``.

        ``predictions.csv`` (the ``frame``), ``report.json`` and, with
        ``figures`` (:func:`mmaffect.viz.report.write_session_figures`):
        ``traces.png`` (arousal and valence over time, shaded where a
        modality is masked), ``fusion.png`` (the fusion weights of every
        frame; attention fusions only) and ``words.html`` / ``words.png``
        (the text selector's weight of every word in the ``sentences``
        frames where it is most peaked, or at ``times``; text models with a
        transcript). ``times`` also draws one Fig.-4 fusion diagram per
        time. Every file is written atomically.
        """
        from mmaffect.utils.io import atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        written["csv"] = folder / "predictions.csv"
        atomic_write_text(written["csv"], self.frame.to_csv(index=False, float_format="%.6f"))
        written["report"] = folder / "report.json"
        if not figures:
            atomic_write_text(written["report"], json.dumps(self.report, indent=2, default=str) + "\n")
            return written
        from mmaffect.viz.attention import SessionAttention, frame_words
        from mmaffect.viz.report import write_session_figures

        modalities = tuple(self.report.get("modalities") or ())
        source = self.report.get("video") or self.report.get("audio") or "recording"
        result = SessionAttention(
            name=Path(str(source)).name, partition=None, model_name=str(self.report.get("model")),
            modalities=modalities, times=self.times, pred=self.values, gold=None,
            attention=self.attention,
            presence={m: self.frame[c].to_numpy().astype(bool)
                      for m, c in (("text", "words"), ("audio", "audio"), ("visual", "face")) if m in modalities},
            words=(frame_words(self.word_tokens, self.word_index)
                   if self.word_tokens is not None and self.word_index is not None
                   else [[] for _ in range(len(self.frame))]),
            word_tokens=self.word_tokens, word_index=self.word_index,
            pairs=tuple(tuple(p) for p in self.report["fusion_pairs"]) if self.report.get("fusion_pairs") else None,
            delay_frames=0,  # ``frame`` is already delay-aligned
        )
        figs = write_session_figures(result, out=folder, times=times, sentences=sentences)
        written.update(figs.written)
        self.report["figures_skipped"] = figs.skipped
        atomic_write_text(written["report"], json.dumps(self.report, indent=2, default=str) + "\n")
        return written


class Predictor:
    """A trained model with the preprocessing it was trained with.

    Build with :meth:`from_checkpoint` (or :func:`mmaffect.load`); call
    :meth:`predict` for a DataFrame or :meth:`predict_full` for attention
    and counts as well.
    """

    def __init__(self, *, model: torch.nn.Module, config: Mapping[str, Any], prepare_config: Mapping[str, Any],
                 source: str = "<model>", device: str | torch.device | None = None) -> None:
        from mmaffect.models.registry import get_spec
        from mmaffect.preprocess.pipeline import resolve_prepare_config

        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.config = dict(config)
        self.prepare_config = resolve_prepare_config(dict(prepare_config))
        self.source = source
        self.model_name = str(self.config["model_name"])
        self.modalities = tuple(get_spec(self.model_name).modalities)
        self.delay_frames = int(round(float(self.config.get("data", {}).get("annotation_delay", 0.0))
                                      * LABEL_RATE))
        self._embedder: Any = None

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, *, device: str | torch.device | None = None) -> Predictor:
        """Load a ``mmaffect train`` checkpoint (``best.pt``/``last.pt``, a run folder, or
        ``pretrained:NAME`` for a shipped model)."""
        from mmaffect.inference.pretrained import resolve
        from mmaffect.training.evaluate import build_model_from_checkpoint

        path = resolve(checkpoint, kind="predict")
        if path.is_dir():
            path = path / "best.pt"
        ckpt = load_checkpoint(path)
        fmt = ckpt.get("format")
        if fmt != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path}: checkpoint format {fmt!r} is not the format {CHECKPOINT_FORMAT} "
                              f"this mmaffect {__version__} reads")
        if not ckpt.get("prepare_config"):
            raise ConfigError(f"{path}: the checkpoint holds no preprocessing parameters (prepare_config); "
                              "it was not written by `mmaffect train`")
        try:
            model = build_model_from_checkpoint(ckpt)
        except KeyError as exc:
            raise ConfigError(f"{path}: unknown model {exc} (written by another mmaffect version?)") from None
        except ConfigError as exc:
            raise ConfigError(f"{path}: cannot rebuild its model ({exc})") from None
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"{path}: its weights do not fit the model {ckpt['config'].get('model_name')!r} "
                              f"of this mmaffect {__version__}: {first}") from None
        return cls(model=model, config=ckpt["config"], prepare_config=ckpt["prepare_config"],
                   source=str(path), device=device)

    # ------------------------------------------------------------------ inputs

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from mmaffect.preprocess.embedders import get_embedder

            self._embedder = get_embedder(self.prepare_config["text"]["embedder"])
        return self._embedder

    def _inputs(self, video: Path | None, audio: Path | None) -> tuple[Path | None, Path | None, float]:
        """(audio source or None, video or None, duration in seconds)."""
        from mmaffect.preprocess.video import probe_video

        if video is None and audio is None:
            raise ConfigError("give a video and/or an audio file to predict from")
        info = probe_video(video) if video is not None else None  # clear errors for bad videos
        source = audio if audio is not None else (video if info is not None and info.has_audio else None)
        if source is None and "visual" not in self.modalities and "text" not in self.modalities:
            raise DataError(f"the video has no audio track and {self.model_name!r} is an audio-only model",
                            path=video)
        duration = info.duration if info is not None else 0.0
        return source, video, duration

    # ------------------------------------------------------------------ main

    def predict(self, video: str | Path | None = None, *, audio: str | Path | None = None,
                transcript: str | Path | Sequence[Turn] | None = None,
                turns: str | Path | Sequence[Turn] | None = None, **options: Any) -> pd.DataFrame:
        """Arousal and valence at 10 Hz as a DataFrame (see :class:`Prediction`'s ``frame``)."""
        return self.predict_full(video, audio=audio, transcript=transcript, turns=turns, **options).frame

    @torch.inference_mode()
    def predict_full(
        self,
        video: str | Path | None = None,
        *,
        audio: str | Path | None = None,
        transcript: str | Path | Sequence[Turn] | None = None,
        turns: str | Path | Sequence[Turn] | None = None,
        chunk_seconds: float = 60.0,
        vad_db: float | None = None,
        attention: Sequence[str] | None = DEFAULT_ATTENTION,
        progress: bool = False,
    ) -> Prediction:
        """Predict one recording; see the module docstring for what is masked.

        ``video``: the recording (faces, and audio from its track unless
        ``audio`` is given). ``transcript``/``turns``: files (generic CSV or
        SEWA format) or lists of :class:`~mmaffect.data.session.Turn`.
        ``attention``: prefixes of the attention keys to keep (``None``:
        none; ``("",)``: all).
        """
        t0 = time.perf_counter()
        video = Path(video) if video is not None else None
        audio = Path(audio) if audio is not None else None
        text_path = Path(transcript) if isinstance(transcript, (str, Path)) else None
        words = read_transcript(transcript) if isinstance(transcript, (str, Path)) else transcript
        turns_path = Path(turns) if isinstance(turns, (str, Path)) else None
        target_turns = read_turns(turns) if isinstance(turns, (str, Path)) else turns
        if chunk_seconds <= 0:
            raise ConfigError(f"chunk_seconds must be positive, got {chunk_seconds}")

        if self.modalities == ("text",) and words is None:
            raise ConfigError(f"{self.model_name!r} is a text-only model: give a transcript")
        if self.modalities == ("visual",) and video is None:
            raise ConfigError(f"{self.model_name!r} is a face-only model: give a video")
        cfg = self.prepare_config
        sr = int(cfg["audio"]["sample_rate"])
        fs = int(cfg["audio"]["frame_samples"])
        need_audio = "audio" in self.modalities
        need_faces = "visual" in self.modalities
        need_text = "text" in self.modalities
        audio_src, video_src, video_duration = self._inputs(video, audio)
        report: dict[str, Any] = {"checkpoint": self.source, "model": self.model_name,
                                  "video": str(video) if video else None,
                                  "audio": str(audio_src) if audio_src else None,
                                  "transcript": str(text_path) if text_path else
                                  ("given" if words is not None else None),
                                  "mmaffect_version": __version__,
                                  "modalities": list(getattr(self.model, "modalities", self.modalities)),
                                  "fusion_pairs": self._fusion_pairs()}

        with tempfile.TemporaryDirectory(prefix="mmaffect-predict-") as tmp:
            n_samples = 0
            wav = Path(tmp) / "audio.wav"
            if audio_src is not None and (need_audio or video_src is None or video_duration <= 0):
                from mmaffect.preprocess.audio import decode_audio_to_file

                n_samples = decode_audio_to_file(audio_src, wav, sample_rate=sr)
            duration = n_samples / sr if n_samples else video_duration
            if duration <= 0:
                raise DataError("cannot tell the recording's duration (no audio, no video frames)",
                                path=video or audio)
            n_frames = int(math.floor(duration * LABEL_RATE + 1e-6))
            if n_frames < 1:
                raise DataError(f"recording too short for one 0.1 s frame ({duration:.3f} s)", path=video or audio)
            times = frame_times(n_frames)
            report.update(duration=duration, n_frames=n_frames)
            if words is not None:
                _check_times_within(words, duration, text_path, "transcript")
            if target_turns is not None:
                _check_times_within(target_turns, duration, turns_path, "turns")

            chunk = max(1, int(round(chunk_seconds * LABEL_RATE)))
            face_iter, face_report = self._face_iterator(video_src, times) if need_faces else (None, None)
            face_chunks = None
            if face_iter is not None:
                from mmaffect.preprocess.faces import _prefetch

                # Face tracking runs one chunk ahead in a thread (OpenCV and FFmpeg
                # release the GIL) while the embedder loads and the model runs.
                face_chunks = _prefetch(_face_chunks(face_iter, n_frames, chunk, int(cfg["faces"]["size"])),
                                        depth=1)
            audio_reader = _AudioReader(wav, sr, fs) if need_audio and n_samples else None
            try:
                text_arrays = self._text_arrays(times, words) if need_text and words is not None else None

                preds: list[np.ndarray] = []
                presence: dict[str, list[np.ndarray]] = {"audio": [], "face": [], "words": []}
                kept: dict[str, list[np.ndarray]] = {}
                state = None
                face_cfg = cfg["faces"]
                starts = range(0, n_frames, chunk)
                if progress:
                    from tqdm.auto import tqdm

                    starts = tqdm(starts, desc="predict", unit="chunk")
                for start in starts:
                    stop = min(n_frames, start + chunk)
                    t = times[start:stop]
                    streams: dict[str, dict[str, np.ndarray]] = {}
                    if audio_reader is not None:
                        streams["audio"] = audio_reader.frames(t, target_turns, vad_db,
                                                               rounding=cfg["audio"]["turn_rounding"])
                    if face_chunks is not None:
                        streams["faces"] = next(face_chunks)
                    if text_arrays is not None:
                        streams["text"] = {"word_vectors": text_arrays["word_vectors"],
                                           "word_index": text_arrays["word_index"][start:stop]}
                    item = frames_to_item(streams, stop - start, modalities=self.modalities,
                                          face_size=int(face_cfg["size"]), embed_dim=self._embed_dim(),
                                          max_words=int(cfg["text"]["max_words"]), audio_frame=fs)
                    batch = {k: v.to(self.device) for k, v in collate([item]).items()}
                    out, state = self.model.forward_frames(batch, state)
                    preds.append(out.pred[0, :, :2].float().cpu().numpy())
                    presence["audio"].append(item["audio_mask"].numpy() if "audio_mask" in item
                                             else np.zeros(stop - start, bool))
                    presence["face"].append(item["face_mask"].numpy() if "face_mask" in item
                                            else np.zeros(stop - start, bool))
                    presence["words"].append(item["word_mask"][:, 0].numpy() if "word_mask" in item
                                             else np.zeros(stop - start, bool))
                    if attention is not None:
                        for key, value in out.attention.items():
                            if any(key.startswith(p) for p in attention):
                                kept.setdefault(key, []).append(value[0].float().cpu().numpy())
                    del out, batch, item, streams
                    release_freed_memory()  # keeps the resident size flat over many chunks
            finally:
                if face_chunks is not None:
                    face_chunks.close()
                if audio_reader is not None:
                    audio_reader.file.close()

        from mmaffect.training.evaluate import align_delay

        pred = align_delay(np.concatenate(preds).astype(np.float64), self.delay_frames)
        flags = {k: np.concatenate(v) for k, v in presence.items()}
        frame = pd.DataFrame({"time": np.round(times, 6), "arousal": pred[:, 0], "valence": pred[:, 1],
                              **{k: v.astype(np.int8) for k, v in flags.items()}})
        if face_report is not None:
            report["faces"] = dict(face_report)
            if face_report["n_faces_found"] == 0:
                report["warning"] = "no face found in the video: the visual modality is masked throughout"
        report["frames_with_audio"] = int(flags["audio"].sum())
        report["frames_with_face"] = int(flags["face"].sum())
        report["frames_with_words"] = int(flags["words"].sum())
        if text_arrays is not None:
            report["text"] = text_arrays["report"]
        report["seconds"] = time.perf_counter() - t0
        report["realtime_factor"] = duration / max(report["seconds"], 1e-9)
        return Prediction(
            frame=frame,
            attention={k: np.concatenate(v) for k, v in kept.items()},
            word_tokens=None if text_arrays is None else text_arrays["word_tokens"],
            word_index=None if text_arrays is None else text_arrays["word_index"],
            report=report,
        )

    # ------------------------------------------------------------------ helpers

    def _fusion_pairs(self) -> list[list[int]] | None:
        fusion = getattr(self.model, "fusion", None)
        pairs = getattr(fusion, "pairs", None)
        return None if pairs is None else [[int(i) for i in p] for p in pairs]

    def _embed_dim(self) -> int:
        """Word-vector size the text branch takes (0 for models without one)."""
        branches = getattr(self.model, "branches", None)
        if branches is not None:
            branch = branches["text"] if "text" in branches else None
        else:
            branch = getattr(self.model, "branch", None)
        return int(getattr(branch, "embed_dim", 0) or 0)

    def _text_arrays(self, times: np.ndarray, words: Sequence[Turn]) -> dict[str, Any]:
        from mmaffect.preprocess.text import build_text_arrays

        t = self.prepare_config["text"]
        arrays = build_text_arrays(times, list(words), self.embedder, max_words=int(t["max_words"]),
                                   delay=float(t["delay"]), drop_tags=bool(t["drop_tags"]))
        expected = self._embed_dim()
        got = arrays["word_vectors"].shape[1]
        if expected and got != expected:
            raise ConfigError(f"the embedder {self.prepare_config['text']['embedder']!r} gives {got}-d "
                              f"word vectors but the model expects {expected}-d")
        return arrays

    def _face_iterator(self, video: Path | None, times: np.ndarray) -> tuple[Iterator | None, dict | None]:
        from mmaffect.preprocess.faces import new_face_report, iter_faces

        if video is None:
            return None, None
        f = self.prepare_config["faces"]
        report = new_face_report(len(times))
        it = iter_faces(video, times, size=int(f["size"]), detect_width=int(f["detect_width"]),
                        min_face=float(f["min_face"]), margin=float(f["margin"]), select=f["select"],
                        report=report)
        return it, report


def _face_chunks(it: Iterator, n_frames: int, chunk: int, size: int) -> Iterator[dict[str, np.ndarray]]:
    """Cached-stream face arrays, ``chunk`` frames at a time, from a face iterator (masked where no face)."""
    for start in range(0, n_frames, chunk):
        n = min(chunk, n_frames - start)
        crops = np.zeros((n, size, size, 3), np.uint8)
        mask = np.zeros(n, bool)
        for i, crop, _ in itertools.islice(it, n):
            if crop is not None:
                crops[i - start], mask[i - start] = crop, True
        yield {"faces": crops, "face_mask": mask}


class _AudioReader:
    """10 Hz audio frames read on demand from a decoded wav (memory flat in its length)."""

    def __init__(self, wav: Path, sample_rate: int, frame_samples: int) -> None:
        import soundfile as sf

        self.file = sf.SoundFile(str(wav))
        self.sr = sample_rate
        self.fs = frame_samples
        self.n = self.file.frames

    def frames(self, times: np.ndarray, turns: Sequence[Turn] | None, vad_db: float | None, *,
               rounding: float) -> dict[str, np.ndarray]:
        from mmaffect.preprocess.audio import target_frames, to_pcm16

        starts = np.round(times * self.sr).astype(np.int64)
        lo, hi = int(starts[0]), int(starts[-1]) + self.fs
        self.file.seek(min(lo, self.n))
        seg = self.file.read(max(0, min(hi, self.n) - lo), dtype="float32", always_2d=False)
        valid = starts + self.fs <= self.n
        if len(seg) < hi - lo:  # the last frame runs past the end: zero-padded and masked
            seg = np.concatenate([seg, np.zeros(hi - lo - len(seg), np.float32)])
        frames = seg[(starts - lo)[:, None] + np.arange(self.fs)]
        if turns is not None:
            target = target_frames(times, turns, rounding=rounding)
        elif vad_db is not None:
            rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
            target = 20 * np.log10(np.maximum(rms, 1e-10)) > vad_db
        else:
            target = np.ones(len(times), bool)
        return {"audio": to_pcm16(frames), "audio_target": target, "audio_mask": valid}


def load(checkpoint: str | Path | None = None, *, device: str | torch.device | None = None) -> Predictor:
    """A :class:`Predictor` for a ``mmaffect train`` checkpoint (file, run folder or
    ``pretrained:NAME``); None = what ``mmaffect predict`` uses without ``--checkpoint``
    (``$MMAFFECT_CHECKPOINT``, else the shipped default model)."""
    if checkpoint is None:
        from mmaffect.inference.cli import default_checkpoint

        checkpoint = default_checkpoint()
    return Predictor.from_checkpoint(checkpoint, device=device)
