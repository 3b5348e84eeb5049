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
audio track → audio masked; frames where no speech is heard (the model's
speech detector, ``audio.vad``: Silero VAD by default) → audio masked
(``audio`` column 0). Audio is loudness-normalised as in training
(``audio.loudness``). Without target-speaker turns the speech heard is taken
as the target's; ``vad_db`` replaces the speech detector by a plain energy
rule at that level (dBFS).

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


_READS = {"text": "transcript", "audio": "audio", "visual": "video"}
_NEEDS = {"text": "a transcript (--transcript)", "audio": "an audio file or a video with sound",
          "visual": "a video or images"}


def check_usable(model_name: str, modalities: Sequence[str], given: Mapping[str, bool],
                 *, path: Path | None = None) -> None:
    """Refuse, in one line, a model none of whose branches can read what it was given.

    ``given``: which of ``video``, ``audio`` (a sound track or audio file),
    ``transcript`` and ``silent video`` (a video without sound and no audio
    file) are there. A model with several branches runs when at least one
    of them has its input (the others are masked).

    >>> check_usable("text-paper", ("text",), {"audio": True})
    Traceback (most recent call last):
    ...
    mmaffect.errors.ConfigError: 'text-paper' is a text-only model: give a transcript (--transcript) (it was given only audio)
    """
    if any(given.get(_READS[m]) for m in modalities):
        return
    what = " and ".join(k for k in ("video", "audio", "transcript") if given.get(k)) or "nothing"
    if tuple(modalities) == ("audio",) and given.get("silent video"):
        raise DataError(f"the video has no audio track and {model_name!r} is an audio-only model", path=path)
    kind = {"text": "text-only", "audio": "audio-only", "visual": "face-only"}
    if len(modalities) == 1:
        raise ConfigError(f"{model_name!r} is a {kind[modalities[0]]} model: give {_NEEDS[modalities[0]]} "
                          f"(it was given only {what})")
    raise ConfigError(f"{model_name!r} reads {' / '.join(_READS[m] for m in modalities)} and was given "
                      f"only {what}: give {' or '.join(_NEEDS[m] for m in modalities)}")


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
        source = self.report.get("video") or self.report.get("audio") or self.report.get("transcript") or "recording"
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


# Preprocessing keys added after models were shipped, with the value that reproduces what
# those models were trained with. Speech activity (audio.vad) is not among them: a
# silent frame is masked for every model, old or new.
_LEGACY_AUDIO = {"loudness": None}


def _legacy_prepare_config(prepare_config: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's preprocessing, with keys it predates set to what it was trained with."""
    cfg = json.loads(json.dumps(dict(prepare_config)))  # deep copy of plain data
    audio = cfg.setdefault("audio", {})
    for key, value in _LEGACY_AUDIO.items():
        audio.setdefault(key, value)
    return cfg


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
        self.prepare_config = resolve_prepare_config(_legacy_prepare_config(prepare_config))
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

    def _inputs(self, video: Path | None, audio: Path | None, words: Sequence[Turn] | None = None,
                text_path: Path | None = None) -> tuple[Path | None, Path | None, float]:
        """(audio source or None, video or None, duration in seconds).

        Without a video or an audio file, a transcript alone sets the duration
        (the end of its last turn), for models with a text branch. A model
        given none of the inputs its branches read is refused in one line
        (:func:`check_usable`).
        """
        from mmaffect.preprocess.video import probe_video

        if video is None and audio is None and words is None:
            raise ConfigError("give a video, an audio file and/or a transcript to predict from")
        info = probe_video(video) if video is not None else None  # clear errors for bad videos
        source = audio if audio is not None else (video if info is not None and info.has_audio else None)
        given = {"video": video is not None, "audio": source is not None, "transcript": words is not None,
                 "silent video": info is not None and not info.has_audio and audio is None}
        check_usable(self.model_name, self.modalities, given, path=video or audio or text_path)
        if info is not None:
            return source, video, info.duration
        if source is None:  # a transcript alone: it sets the duration
            end = max((float(t.end) for t in words or ()), default=0.0)
            if end <= 0:
                raise DataError("the transcript has no turn with an end time: cannot tell the duration",
                                path=text_path)
            return None, None, end
        return source, None, 0.0

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

        cfg = self.prepare_config
        sr = int(cfg["audio"]["sample_rate"])
        fs = int(cfg["audio"]["frame_samples"])
        need_audio = "audio" in self.modalities
        need_faces = "visual" in self.modalities
        need_text = "text" in self.modalities
        audio_src, video_src, video_duration = self._inputs(video, audio, words, text_path)
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
            audio_reader = (_AudioReader(wav, times=times, cfg=cfg["audio"], vad_db=vad_db)
                            if need_audio and n_samples else None)
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
                    streams: dict[str, dict[str, np.ndarray]] = {}
                    if audio_reader is not None:
                        streams["audio"] = audio_reader.frames(start, stop, target_turns)
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
        if audio_reader is not None:
            report["speech"] = {**audio_reader.report, "n_speech_frames": audio_reader.n_speech,
                                "speech_fraction": round(audio_reader.n_speech / max(n_frames, 1), 4)}
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
                        grey=bool(f["grey"]), report=report)
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
    """10 Hz audio frames read on demand from a decoded wav (memory flat in its length).

    The preprocessing of ``prepare`` (:func:`mmaffect.preprocess.pipeline.build_audio`)
    in two passes over the file: the recording's loudness-normalisation gain
    and its speech activity are found first, then each chunk's frames are
    read, scaled and masked where no speech is heard. ``vad_db`` (the CLI's
    ``--vad-db``) replaces the model's speech detector by the energy rule at
    that level.
    """

    def __init__(self, wav: Path, *, times: np.ndarray, cfg: Mapping[str, Any], vad_db: float | None) -> None:
        import soundfile as sf

        from mmaffect.preprocess.loudness import normalisation_gain_db
        from mmaffect.preprocess.vad import speech_frames

        self.wav = wav
        self.file = sf.SoundFile(str(wav))
        self.sr = int(cfg["sample_rate"])
        self.fs = int(cfg["frame_samples"])
        self.rounding = float(cfg["turn_rounding"])
        self.n = self.file.frames
        self.times = times
        self.method = "energy" if vad_db is not None else str(cfg["vad"])
        self.vad_db = float(vad_db if vad_db is not None else cfg["vad_db"])
        self.gain_db, lufs = normalisation_gain_db(self._blocks(0.0), sample_rate=self.sr, target=cfg["loudness"])
        self.speech: np.ndarray | None = None
        if self.method == "silero":
            self.speech = speech_frames("silero", times=times, blocks=self._blocks(self.gain_db), sample_rate=self.sr,
                                        threshold=float(cfg["vad_threshold"]))
        self.n_speech = 0
        self.report: dict[str, Any] = {"vad": self.method, "gain_db": round(self.gain_db, 2),
                                       "loudness_lufs": round(lufs, 2) if math.isfinite(lufs) else None}

    def _blocks(self, gain_db: float, block: int = 1 << 18) -> Iterator[np.ndarray]:
        import soundfile as sf

        from mmaffect.preprocess.audio import apply_gain

        for x in sf.blocks(str(self.wav), blocksize=block, dtype="float32", always_2d=False):
            yield apply_gain(x, gain_db)

    def frames(self, start: int, stop: int, turns: Sequence[Turn] | None) -> dict[str, np.ndarray]:
        """Cached-stream audio arrays of frames ``start:stop`` (as :func:`build_audio` writes them)."""
        from mmaffect.preprocess.audio import apply_gain, target_frames, to_pcm16
        from mmaffect.preprocess.vad import speech_frames

        times = self.times[start:stop]
        starts = np.round(times * self.sr).astype(np.int64)
        lo, hi = int(starts[0]), int(starts[-1]) + self.fs
        self.file.seek(min(lo, self.n))
        seg = self.file.read(max(0, min(hi, self.n) - lo), dtype="float32", always_2d=False)
        valid = starts + self.fs <= self.n
        if len(seg) < hi - lo:  # the last frame runs past the end: zero-padded and masked
            seg = np.concatenate([seg, np.zeros(hi - lo - len(seg), np.float32)])
        frames = apply_gain(seg, self.gain_db)[(starts - lo)[:, None] + np.arange(self.fs)]
        if self.speech is not None:
            speech = self.speech[start:stop]
        else:
            speech = speech_frames(self.method, times=times, frames=frames, sample_rate=self.sr, vad_db=self.vad_db)
        self.n_speech += int(speech.sum())
        target = target_frames(times, turns, rounding=self.rounding) if turns is not None else speech
        return {"audio": to_pcm16(frames), "audio_target": target, "audio_mask": valid & speech}


def load(checkpoint: str | Path | None = None, *, device: str | torch.device | None = None) -> Any:
    """A :class:`Predictor` for a ``mmaffect train`` checkpoint (file, run folder or
    ``pretrained:NAME``); None = what ``mmaffect predict`` uses without ``--checkpoint``
    (``$MMAFFECT_CHECKPOINT``, else the shipped default model). A face classifier
    (``mmaffect pretrain-faces``'s ``model.pt``, a shipped ``branch`` model) gives a
    :class:`mmaffect.inference.faces.FacePredictor` (``predict_video``, ``predict_images``)."""
    if checkpoint is None:
        from mmaffect.inference.cli import default_checkpoint

        checkpoint = default_checkpoint()
    from mmaffect.inference.faces import FacePredictor, checkpoint_file

    path = checkpoint_file(checkpoint)
    if (load_checkpoint(path).get("config") or {}).get("pretrain") == "faces":
        return FacePredictor.from_checkpoint(path, device=device)
    return Predictor.from_checkpoint(path, device=device)
