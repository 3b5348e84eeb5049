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
from one streaming face tracker over the whole video, and the head's state is
carried from chunk to chunk — the result equals one pass over the whole
recording, and memory does not grow with its length.

The LSTM head sees no more than it was trained on (``context``, default
``"train"``): windows of the training window's length (``data.window``), each
from a zero state, blended where they overlap
(:mod:`mmaffect.models.temporal`). A head whose state runs on over minutes of
speech leaves its training conditions; on EmoDB the shipped audio model's
valence stuck at -1 within seconds that way. ``context="none"`` carries the
state over the whole recording instead; ``report["context_frames"]`` says which.

Missing inputs are masked, never fed as zeros: no transcript → the text
branch sees no words (``words`` column 0 everywhere); frames without a face
→ the visual branch is masked there (``face`` column 0); a video without an
audio track → audio masked; frames where no speech is heard (the model's
speech detector, ``audio.vad``: Silero VAD by default) → audio masked
(``audio`` column 0). A frame whose prediction rests on no input at all —
before the first frame in which the model hears, sees or reads anything, or
more than ``max_gap`` seconds (2 s) after the last one — gets empty
``arousal`` and ``valence`` (NaN), counted in the report
(``frames_without_input``): a silent track is not rated as calm or excited
speech, the network's output on nothing is not shown as a rating. Within
``max_gap`` the LSTM state carries the last evidence through short pauses.
Audio is loudness-normalised as in training
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

import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mmaffect.data.dataset import collate, frames_to_item, reference_item
from mmaffect.data.session import DIMENSIONS, LABEL_RATE, Turn, check_turns_within, frame_times
from mmaffect.errors import ConfigError, DataError
from mmaffect.inference import DEFAULT_MAX_GAP
from mmaffect.checkpoints import CHECKPOINT_FORMAT, load_checkpoint
from mmaffect.utils.io import release_freed_memory
from mmaffect.version import __version__

__all__ = ["Prediction", "Predictor", "read_transcript", "read_turns"]

# Attention maps kept for figures; visual.spatial (per-frame saliency maps) is
# left out by default because it is the one map that is large per frame.
DEFAULT_ATTENTION = ("fusion.", "text.selector", "visual.branches")
PRESENCE_COLUMNS = {"audio": "audio", "visual": "face", "text": "words"}
"""Modality -> the frame column (and presence flag) that says it was present."""


def frames_without_input(present: np.ndarray, max_gap: int | None) -> np.ndarray:
    """Frames whose prediction rests on no input: before the first ``present`` frame, or more than
    ``max_gap`` frames after the last one (``None``: only those before the first).

    >>> frames_without_input(np.array([0, 0, 1, 0, 0, 0, 1, 0], bool), 2).astype(int).tolist()
    [1, 1, 0, 0, 0, 1, 0, 0]
    >>> frames_without_input(np.zeros(3, bool), None).all()
    np.True_
    """
    index = np.arange(len(present))
    last = np.maximum.accumulate(np.where(present, index, -1)) if len(present) else index
    blank = last < 0
    if max_gap is not None:
        blank |= (index - last) > max_gap
    return blank


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
        from mmaffect.inference.attention import SessionAttention, frame_words
        from mmaffect.inference.figures import write_session_figures

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
_LEGACY = {"audio": {"loudness": None}, "faces": {"absent_scan_every": 0.0}}


def _legacy_prepare_config(prepare_config: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's preprocessing, with keys it predates set to what it was trained with."""
    cfg = json.loads(json.dumps(dict(prepare_config)))  # deep copy of plain data
    for section, keys in _LEGACY.items():
        part = cfg.setdefault(section, {})
        for key, value in keys.items():
            part.setdefault(key, value)
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
        from mmaffect.models.optimize import for_inference

        # conv–BN folded and channels-last weights: the same function to float rounding, faster
        self.model = for_inference(model.to(self.device), inplace=True)
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
        from mmaffect.checkpoints import build_model_from_checkpoint, resolve

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

    def use_face_detector(self, *, min_face: float | None = None, detect_width: int | None = None) -> Predictor:
        """Search faces with other detector settings (e.g. the small faces of a wide shot:
        ``min_face=0.05, detect_width=960``); the crops stay as the model was trained. Returns self."""
        from mmaffect.preprocess.faces import with_detector

        if "visual" not in self.modalities:
            raise ConfigError(f"{self.source}: {self.model_name!r} reads no faces; face detector settings do not apply")
        self.prepare_config["faces"] = with_detector(self.prepare_config["faces"], min_face=min_face,
                                                     detect_width=detect_width)
        return self

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
        max_gap: float | None = DEFAULT_MAX_GAP,
        context: str | float | None = "train",
    ) -> Prediction:
        """Predict one recording; see the module docstring for what is masked.

        ``video``: the recording (faces, and audio from its track unless
        ``audio`` is given). ``transcript``/``turns``: files (generic CSV or
        SEWA format) or lists of :class:`~mmaffect.data.session.Turn`.
        ``attention``: prefixes of the attention keys to keep (``None``:
        none; ``("",)``: all). ``max_gap``: seconds after the last frame
        with any input that still get a prediction (``None``: no limit);
        frames before the first input never do. ``context``: the head's context
        window (module docstring): ``"train"`` the training window, ``"none"`` /
        None the state carried over the whole recording, or seconds.
        """
        t0 = time.perf_counter()
        if chunk_seconds <= 0:
            raise ConfigError(f"chunk_seconds must be positive, got {chunk_seconds}")
        frames = self._context(context)
        if max_gap is not None and not max_gap >= 0:
            raise ConfigError(f"max_gap must be >= 0 seconds (or None for no limit), got {max_gap}")
        rec = _Recording.read(video, audio, transcript, turns)
        audio_src, video_src, video_duration = self._inputs(rec.video, rec.audio, rec.words, rec.text_path)
        report = self._start_report(rec, audio_src)
        report["context_frames"] = frames
        with tempfile.TemporaryDirectory(prefix="mmaffect-predict-") as tmp:
            wav, n_samples = self._decode(audio_src, video_src, video_duration, Path(tmp) / "audio.wav")
            times = self._grid(rec, n_samples, video_duration, report)
            chunk = max(1, int(round(chunk_seconds * LABEL_RATE)))
            streams = _Streams(self, rec, times, chunk, wav=wav if n_samples else None, video=video_src,
                               vad_db=vad_db)
            threads = torch.get_num_threads()
            if streams.faces is not None and threads > 1:
                # The face tracker (decoding + OpenCV) runs in a thread beside the model: leave it a core.
                # OpenMP threads that wait for a busy core cost more than they add (measured:
                # docs/benchmarks.md: on 2 cores, predict took 69-72 s with 2 threads, 37-38 s with 1).
                torch.set_num_threads(threads - 1)
            try:
                run = self._run_chunks(streams, times, chunk, attention, progress)
            finally:
                torch.set_num_threads(threads)
                streams.close()
        return self._finish(run, streams, times, report, t0, max_gap)

    def _context(self, context: str | float | None) -> int | None:
        """Set the head's context window for this call; its length in frames (None: no window)."""
        from mmaffect.models.temporal import apply_context

        return apply_context(self.model, self.config, context)

    def _start_report(self, rec: _Recording, audio_src: Path | None) -> dict[str, Any]:
        return {"checkpoint": self.source, "model": self.model_name,
                "video": str(rec.video) if rec.video else None,
                "audio": str(audio_src) if audio_src else None,
                "transcript": str(rec.text_path) if rec.text_path else ("given" if rec.words is not None else None),
                "mmaffect_version": __version__,
                "modalities": list(getattr(self.model, "modalities", self.modalities)),
                "fusion_pairs": self._fusion_pairs()}

    def _decode(self, audio_src: Path | None, video_src: Path | None, video_duration: float,
                wav: Path) -> tuple[Path, int]:
        """Decode the audio to ``wav`` when the model hears it or it alone tells the duration."""
        if audio_src is None or not ("audio" in self.modalities or video_src is None or video_duration <= 0):
            return wav, 0
        from mmaffect.preprocess.audio import decode_audio_to_file

        return wav, decode_audio_to_file(audio_src, wav, sample_rate=int(self.prepare_config["audio"]["sample_rate"]))

    def _grid(self, rec: _Recording, n_samples: int, video_duration: float, report: dict[str, Any]) -> np.ndarray:
        """The 10 Hz frame grid of the recording; turns past its end are refused."""
        sr = int(self.prepare_config["audio"]["sample_rate"])
        duration = n_samples / sr if n_samples else video_duration
        where = rec.video or rec.audio
        if duration <= 0:
            raise DataError("cannot tell the recording's duration (no audio, no video frames)", path=where)
        n_frames = int(math.floor(duration * LABEL_RATE + 1e-6))
        if n_frames < 1:
            raise DataError(f"recording too short for one 0.1 s frame ({duration:.3f} s)", path=where)
        if rec.words is not None:
            check_turns_within(rec.words, duration, path=rec.text_path, what="transcript")
        if rec.target_turns is not None:
            check_turns_within(rec.target_turns, duration, path=rec.turns_path, what="turns")
        report.update(duration=duration, n_frames=n_frames)
        return frame_times(n_frames)

    def _reference(self, streams: _Streams) -> dict[str, Any]:
        """The speaker's reference frames of a model with ``audio_reference`` (else nothing): evenly
        spaced frames of the target's speech over the whole recording, the same for every chunk."""
        n = int(getattr(self.model, "audio_reference", 0) or 0)
        if not n:
            return {}
        frame = int(self.prepare_config["audio"]["frame_samples"])
        if streams.audio is None:
            return reference_item(np.zeros((0, frame), np.int16), n, 0)
        frames, count = streams.audio.reference(n, streams.turns)
        return reference_item(frames, n, count)

    def _run_chunks(self, streams: _Streams, times: np.ndarray, chunk: int, attention: Sequence[str] | None,
                    progress: bool) -> dict[str, Any]:
        """The model over the recording ``chunk`` frames at a time, the LSTM state carried between chunks."""
        cfg = self.prepare_config
        preds: list[np.ndarray] = []
        presence: dict[str, list[np.ndarray]] = {"audio": [], "face": [], "words": []}
        kept: dict[str, list[np.ndarray]] = {}
        state = None
        n_frames = len(times)
        reference = self._reference(streams)
        starts: Any = range(0, n_frames, chunk)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="predict", unit="chunk")
        for start in starts:
            stop = min(n_frames, start + chunk)
            item = frames_to_item(streams.chunk(start, stop), stop - start, modalities=self.modalities,
                                  face_size=int(cfg["faces"]["size"]), embed_dim=self._embed_dim(),
                                  max_words=int(cfg["text"]["max_words"]),
                                  audio_frame=int(cfg["audio"]["frame_samples"]))
            item.update(reference)
            batch = {k: v.to(self.device) for k, v in collate([item]).items()}
            out, state = self.model.forward_frames(batch, state)
            preds.append(out.pred[0, :, :2].float().cpu().numpy())
            for flag, key, pick in (("audio", "audio_mask", None), ("face", "face_mask", None),
                                    ("words", "word_mask", 0)):
                value = item[key].numpy() if key in item else np.zeros(stop - start, bool)
                presence[flag].append(value if pick is None or key not in item else value[:, pick])
            if attention is not None:
                for key, value in out.attention.items():
                    if any(key.startswith(p) for p in attention):
                        kept.setdefault(key, []).append(value[0].float().cpu().numpy())
            del out, batch, item
            release_freed_memory()  # keeps the resident size flat over many chunks
        run: dict[str, Any] = {"preds": preds, "presence": presence, "kept": kept}
        if reference:
            run["audio_reference"] = {"frames": int(reference["audio_ref_mask"].sum()),
                                      "asked": int(reference["audio_ref_mask"].numel()),
                                      "speech_frames": int(reference["audio_ref_count"].item())}
        return run

    def _finish(self, run: dict[str, Any], streams: _Streams, times: np.ndarray, report: dict[str, Any],
                t0: float, max_gap: float | None = DEFAULT_MAX_GAP) -> Prediction:
        from mmaffect.training.evaluate import align_delay

        flags = {k: np.concatenate(v) for k, v in run["presence"].items()}
        pred = np.concatenate(run["preds"]).astype(np.float64)
        # the input frames' evidence, before the annotation delay moves outputs to later label frames
        present = np.zeros(len(pred), bool)
        for modality in self.modalities:
            present |= flags[PRESENCE_COLUMNS[modality]].astype(bool)
        blank = frames_without_input(present, None if max_gap is None else int(round(max_gap * LABEL_RATE)))
        pred[blank] = np.nan
        pred = align_delay(pred, self.delay_frames)
        frame = pd.DataFrame({"time": np.round(times, 6), "arousal": pred[:, 0], "valence": pred[:, 1],
                              **{k: v.astype(np.int8) for k, v in flags.items()}})
        report.update(streams.report())
        if "audio_reference" in run:  # how many frames of the speaker's speech the model's yardstick had
            report["audio_reference"] = run["audio_reference"]
        report["frames_with_audio"] = int(flags["audio"].sum())
        report["frames_with_face"] = int(flags["face"].sum())
        report["frames_with_words"] = int(flags["words"].sum())
        report["frames_without_input"] = int(np.isnan(pred[:, 0]).sum())
        report["max_gap_seconds"] = max_gap
        if blank.all():
            nothing = "the model heard, saw and read nothing in this recording: arousal and valence are empty throughout"
            report["warning"] = "; ".join(w for w in (report.get("warning"), nothing) if w)
        text = streams.text
        if text is not None:
            report["text"] = text["report"]
        report["seconds"] = time.perf_counter() - t0
        report["realtime_factor"] = report["duration"] / max(report["seconds"], 1e-9)
        return Prediction(
            frame=frame,
            attention={k: np.concatenate(v) for k, v in run["kept"].items()},
            word_tokens=None if text is None else text["word_tokens"],
            word_index=None if text is None else text["word_index"],
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

    def text_arrays(self, times: np.ndarray, words: Sequence[Turn]) -> dict[str, Any]:
        """The text stream of a transcript on the frame grid ``times``, by the embedder and settings the model
        was trained with (``word_vectors``, ``word_index``, ``word_tokens``, ``report``)."""
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


@dataclass
class _Recording:
    """The inputs of one prediction, read: paths, transcript words and target turns."""

    video: Path | None
    audio: Path | None
    words: Sequence[Turn] | None
    text_path: Path | None
    target_turns: Sequence[Turn] | None
    turns_path: Path | None

    @classmethod
    def read(cls, video: str | Path | None, audio: str | Path | None,
             transcript: str | Path | Sequence[Turn] | None, turns: str | Path | Sequence[Turn] | None) -> _Recording:
        text_path = Path(transcript) if isinstance(transcript, (str, Path)) else None
        turns_path = Path(turns) if isinstance(turns, (str, Path)) else None
        return cls(video=Path(video) if video is not None else None,
                   audio=Path(audio) if audio is not None else None,
                   words=read_transcript(text_path) if text_path is not None else transcript,
                   text_path=text_path,
                   target_turns=read_turns(turns_path) if turns_path is not None else turns,
                   turns_path=turns_path)


class _Streams:
    """The recording's cached-stream arrays a chunk at a time, by the preprocessor ``prepare`` runs
    (:mod:`mmaffect.preprocess.stream`): audio from the decoded wav, faces tracked one chunk ahead in a
    thread (OpenCV and FFmpeg release the GIL) while the model runs, the words of every frame."""

    def __init__(self, predictor: Predictor, rec: _Recording, times: np.ndarray, chunk: int, *,
                 wav: Path | None, video: Path | None, vad_db: float | None) -> None:
        from mmaffect.preprocess.faces import iter_faces, new_face_report, prefetch
        from mmaffect.preprocess.stream import AudioFrames, face_chunks, face_options

        cfg = predictor.prepare_config
        modalities = predictor.modalities
        self.turns = rec.target_turns
        self.face_report: dict[str, int] | None = None
        self.face_options: dict[str, Any] = {}
        self.faces: Any = None
        self.audio: AudioFrames | None = None
        self.text: dict[str, Any] | None = None
        try:
            if "visual" in modalities and video is not None:
                self.face_report = new_face_report(len(times))
                options = self.face_options = face_options(cfg["faces"])
                it = iter_faces(video, times, report=self.face_report, **options)
                self.faces = prefetch(face_chunks(it, len(times), chunk, options["size"]), depth=1)
            if "audio" in modalities and wav is not None:
                self.audio = AudioFrames(wav, times=times, audio=cfg["audio"], vad_db=vad_db, source=rec.audio or video)
            if "text" in modalities and rec.words is not None:
                self.text = predictor.text_arrays(times, rec.words)
        except BaseException:
            self.close()
            raise

    def chunk(self, start: int, stop: int) -> dict[str, dict[str, np.ndarray]]:
        streams: dict[str, dict[str, np.ndarray]] = {}
        if self.audio is not None:
            streams["audio"] = self.audio.frames(start, stop, self.turns)
        if self.faces is not None:
            streams["faces"] = next(self.faces)
        if self.text is not None:
            streams["text"] = {"word_vectors": self.text["word_vectors"],
                               "word_index": self.text["word_index"][start:stop]}
        return streams

    def close(self) -> None:
        if self.faces is not None:
            self.faces.close()
        if self.audio is not None:
            self.audio.close()

    def report(self) -> dict[str, Any]:
        """The report entries of the streams: ``faces`` (and a warning), ``speech``."""
        from mmaffect.preprocess.faces import no_face_warning, video_coverage_warning

        out: dict[str, Any] = {}
        if self.face_report is not None:
            out["faces"] = dict(self.face_report)
            short = video_coverage_warning(self.face_report)
            out["face_detector"] = {k: self.face_options[k] for k in ("min_face", "detect_width")}
            if self.face_report["n_faces_found"] == 0:
                out["warning"] = no_face_warning(self.face_options)
            elif short is not None:
                out["warning"] = short
        if self.audio is not None:
            out["speech"] = self.audio.summary(target_turns_known=self.turns is not None)
        return out
