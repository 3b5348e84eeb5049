"""``mmaffect predict``: arousal and valence over time for videos, audio files, transcripts, and
expressions of faces in videos or images (face models)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmaffect.checkpoints import ENV_CHECKPOINT, PREFIX, default_checkpoint
from mmaffect.errors import ConfigError, DataError
from mmaffect.inference import DEFAULT_MAX_GAP

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".wma")


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}") from None


def _max_gap(text: str) -> float | None:
    if text.strip().lower() in ("none", "inf"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 or 'none', got {text!r}")
    return value


def context_argument(text: str) -> str:
    """``--context``: 'train', 'none' or seconds > 0 (checked here so a typo fails before any work)."""
    from mmaffect.models.temporal import resolve_context

    try:
        resolve_context(text, 1)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


COMPANIONS = {  # option → suffixes of ``<folder>/<video stem><suffix>``
    "transcript": (".csv", ".txt"),
    "turns": (".csv", ".txt"),
    "audio": (".wav", ".flac", ".ogg"),
}


def _companion(folder: Path | None, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    """``<folder>/<stem><suffix>`` for the first suffix that exists, else None."""
    if folder is None:
        return None
    for suffix in suffixes:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


@dataclass(frozen=True)
class Job:
    """One thing to predict: a video, an audio file, a set of images or a transcript alone.

    ``name``: the output stem (the media file's stem, the image folder's
    name, or the transcript's stem); ``sides``: the ``--transcript``,
    ``--turns`` and ``--audio`` files chosen for it.
    """

    name: str
    video: Path | None = None
    audio: Path | None = None
    images: tuple[Path, ...] = ()
    sides: dict[str, Path | None] = field(default_factory=dict)

    @property
    def source(self) -> Path | None:
        """The positional input this job came from (None: a transcript alone)."""
        if self.video or self.audio:
            return self.video or self.audio
        return self.images[0].parent if self.images else None


def _media_kind(path: Path) -> str:
    """``audio``, ``image`` or ``video`` (anything else is tried as a video) by the file's suffix."""
    from mmaffect.inference.faces import IMAGE_SUFFIXES

    suffix = path.suffix.lower()
    return "audio" if suffix in AUDIO_SUFFIXES else "image" if suffix in IMAGE_SUFFIXES else "video"


def _folder_jobs(folder: Path) -> list[Job]:
    """A job per video or audio file in ``folder`` (an audio file named like a video of the folder
    is left to ``--audio``), and one job for all its images."""
    from mmaffect.inference.faces import IMAGE_SUFFIXES, list_images

    jobs = []
    files = sorted(p for p in folder.iterdir() if p.is_file())
    video_stems = {p.stem for p in files if p.suffix.lower() in VIDEO_SUFFIXES}
    for p in files:
        if p.suffix.lower() in VIDEO_SUFFIXES:
            jobs.append(Job(name=p.stem, video=p))
        elif p.suffix.lower() in AUDIO_SUFFIXES and p.stem not in video_stems:
            jobs.append(Job(name=p.stem, audio=p))
    images = list_images(folder)
    if images:
        jobs.append(Job(name=folder.name, images=tuple(images)))
    if not jobs:
        raise ConfigError(f"{folder}: the folder holds no video ({', '.join(VIDEO_SUFFIXES)}), audio "
                          f"({', '.join(AUDIO_SUFFIXES)}) or image ({', '.join(IMAGE_SUFFIXES)}) file")
    return jobs


def _transcript_jobs(transcript: Path | None) -> list[Job]:
    """Without media: one job per transcript (a file, or every .csv/.txt of a folder)."""
    if transcript is None:
        raise ConfigError("give a video, an audio file, images or a folder of them, or --transcript FILE "
                          "(a text model)")
    if not transcript.exists():
        raise ConfigError(f"{transcript}: no such file or folder")
    files = (sorted(p for p in transcript.iterdir() if p.is_file() and p.suffix.lower() in COMPANIONS["transcript"])
             if transcript.is_dir() else [transcript])
    if not files:
        raise ConfigError(f"{transcript}: the folder holds no transcript ({', '.join(COMPANIONS['transcript'])})")
    return [Job(name=p.stem, sides={"transcript": p}) for p in files]


def plan_inputs(inputs: list[Path], sides: dict[str, Path | None]) -> list[Job]:
    """The jobs of ``mmaffect predict``: one per video or audio file, one per set of images, or
    (no positional input) one per transcript.

    ``sides`` holds the ``--transcript``, ``--turns`` and ``--audio`` paths.
    A folder input means every video and audio file in it (one job each) and
    its images (one job). With several jobs each side path must be a folder,
    and each job takes ``<stem>.csv`` (transcript, turns) or
    ``<stem>.wav|.flac|.ogg`` (audio) from it when present. Loose image files
    make one job named ``images``.
    """
    if not inputs:
        return _transcript_plan(sides)
    jobs = _input_jobs(inputs)
    several = len(jobs) > 1
    for name, path in sides.items():
        if path is not None and several and not path.is_dir():
            raise ConfigError(f"{path}: with several inputs, --{name} must be a folder of "
                              f"<input stem>{'|'.join(COMPANIONS[name])} files")
    audio_jobs = [j for j in jobs if j.audio is not None]
    if audio_jobs and sides.get("audio") is not None:
        raise ConfigError(f"{audio_jobs[0].audio}: is an audio file already; --audio only replaces a video's "
                          "sound track")
    planned = []
    for job in jobs:
        chosen = {name: (_companion(path, job.name, COMPANIONS[name])
                         if path is not None and path.is_dir() else path)
                  for name, path in sides.items()}
        planned.append(Job(name=job.name, video=job.video, audio=job.audio, images=job.images, sides=chosen))
    stems = [j.name for j in planned]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ConfigError(f"several inputs share the name(s) {dup}; their outputs would collide")
    return planned


def _input_jobs(inputs: list[Path]) -> list[Job]:
    """A job per video or audio file (given, or in a given folder), one per folder of images and one
    for the loose image files."""
    jobs: list[Job] = []
    loose: list[Path] = []
    for item in inputs:
        if not item.exists():
            raise ConfigError(f"{item}: no such file or folder")
        if item.is_dir():
            jobs += _folder_jobs(item)
        elif _media_kind(item) == "image":
            loose.append(item)
        elif _media_kind(item) == "audio":
            jobs.append(Job(name=item.stem, audio=item))
        else:
            jobs.append(Job(name=item.stem, video=item))
    if loose:
        jobs.append(Job(name="images", images=tuple(loose)))
    return jobs


def _transcript_plan(sides: dict[str, Path | None]) -> list[Job]:
    """The jobs without a positional input: one per transcript, each with its turns file."""
    if sides.get("audio") is not None:
        raise ConfigError("--audio replaces a video's sound track: give the audio file itself as the input")
    jobs = _transcript_jobs(sides.get("transcript"))
    turns = sides.get("turns")
    if len(jobs) > 1 and turns is not None and not turns.is_dir():
        raise ConfigError(f"{turns}: with several transcripts, --turns must be a folder of "
                          f"<transcript stem>{'|'.join(COMPANIONS['turns'])} files")
    return [Job(name=j.name, sides={**j.sides, "turns": _companion(turns, j.name, COMPANIONS["turns"])
                                    if turns is not None and turns.is_dir() else turns}) for j in jobs]


def load_predictor(checkpoint: str | None, *, device: str | None = None) -> Any:
    """A :class:`~mmaffect.inference.faces.FacePredictor` for face models (``pretrain-faces``
    classifiers, shipped ``branch`` face models, visual-only runs), else a
    :class:`~mmaffect.inference.predictor.Predictor`."""
    from mmaffect.checkpoints import load_checkpoint
    from mmaffect.inference.faces import FacePredictor, checkpoint_file, is_face_checkpoint
    from mmaffect.inference.predictor import Predictor

    path = checkpoint_file(checkpoint) if checkpoint else default_checkpoint()
    if is_face_checkpoint(load_checkpoint(path)):
        return FacePredictor.from_checkpoint(path, device=device)
    return Predictor.from_checkpoint(path, device=device)


def _what(job: Job) -> str:
    if job.images:
        return "images"
    return "a video" if job.video else "an audio file" if job.audio else "a transcript"


def _run_face_job(predictor: Any, job: Job, args: argparse.Namespace) -> Any:
    if job.images:
        return predictor.predict_images(job.images, detect=not args.whole_image, source=job.source)
    if job.video is None:
        raise ConfigError(f"{predictor.model_name!r} ({predictor.source}) is a face model: give a video or images "
                          f"(it was given only {_what(job)}{': ' + str(job.source) if job.source else ''})")
    return predictor.predict_video(job.video, chunk_seconds=args.chunk_seconds, progress=not args.quiet)


def input_kind(job: Job) -> str | None:
    """``transcript`` for a transcript alone (no media), an input with a default model of its own
    (:func:`mmaffect.checkpoints.default_model`); None otherwise."""
    alone = job.video is None and job.audio is None and not job.images
    return "transcript" if alone and job.sides.get("transcript") is not None else None


_ALONE = {"transcript": "a transcript"}


def _predictors(jobs: list[Job], args: argparse.Namespace) -> list[tuple[Any, bool, str | None]]:
    """Per job: its predictor (each checkpoint loaded once), whether it is a face model, and the terms
    of a shipped model. Without ``--checkpoint``, each job takes the default for its kind of input."""
    from mmaffect.checkpoints import default_model, shipped_terms
    from mmaffect.inference.faces import FacePredictor, checkpoint_file

    by_default = not args.checkpoint and not os.environ.get(ENV_CHECKPOINT)
    loaded: dict[Path, tuple[Any, bool, str | None]] = {}
    out = []
    for job in jobs:
        kind = input_kind(job)
        path = checkpoint_file(args.checkpoint) if args.checkpoint else default_checkpoint(kind)
        if path not in loaded:
            predictor = load_predictor(str(path), device=args.device)
            if args.min_face is not None or args.detect_width is not None:
                predictor.use_face_detector(min_face=args.min_face, detect_width=args.detect_width)
            terms = shipped_terms(predictor.source)
            if terms:
                print(f"note: {terms}")
            chosen = default_model(kind) if kind and by_default else None
            if chosen is not None and not chosen.default:
                print(f"note: {_ALONE[kind]} alone: {PREFIX}{chosen.name}, its default model (the default "
                      f"multimodal model reads {_ALONE[kind]} alone poorly; --checkpoint to choose)")
            loaded[path] = (predictor, isinstance(predictor, FacePredictor), terms)
        predictor, face_model, _ = loaded[path]
        if job.images and not face_model:
            raise ConfigError(f"{job.source}: images are for face models (a pretrain-faces model.pt, "
                              f"pretrained:ferplus-hrnet3, a visual-only run); {predictor.model_name!r} reads "
                              f"{'+'.join(predictor.modalities)}")
        out.append(loaded[path])
    return out


def _cmd_predict(args: argparse.Namespace) -> None:
    sides = {name: Path(getattr(args, name)) if getattr(args, name) else None for name in COMPANIONS}
    jobs = plan_inputs([Path(p) for p in args.inputs], sides)
    chosen = _predictors(jobs, args)
    out = Path(args.out)
    failed: list[str] = []
    for job, (predictor, face_model, terms) in zip(jobs, chosen):
        try:
            _predict_job(predictor, job, args, out=out, several=len(jobs) > 1, face_model=face_model, terms=terms)
        except (DataError, OSError) as exc:
            # One bad recording does not stop a folder: it is reported, the others go on.
            if args.fail_fast or len(jobs) == 1:
                raise
            failed.append(f"{job.source or job.name}: {exc}")
            print(f"mmaffect predict: error: {failed[-1]}", file=sys.stderr)
    if failed:
        raise DataError(f"{len(failed)} of {len(jobs)} recordings failed (listed above); the others were written "
                        f"to {out}")


def _predict_job(predictor: Any, job: Job, args: argparse.Namespace, *, out: Path, several: bool,
                 face_model: bool, terms: str | None) -> None:
    """Predict one planned job and write its outputs (``OUT/<name>/`` when there are several)."""
    from mmaffect.inference.overlay import write_overlay

    folder = out / job.name if several or args.per_video_folder else out
    if face_model:
        pred = _run_face_job(predictor, job, args)
        if terms:
            pred.report["terms"] = terms
        written = pred.save(folder, figures=not args.no_figures)
        r = pred.report
        unit = "images" if job.images else "frames"
        print(f"{job.source}: {r[f'n_{unit}']} {unit}, {r[f'{unit}_with_face']} with a face "
              f"({r[f'{unit}_without_face']} masked) in {r['seconds']:.1f} s; {predictor.model_name} "
              f"({'expression categories + proxy valence/arousal' if predictor.classes else 'arousal/valence'})")
    else:
        side = job.sides
        pred = predictor.predict_full(job.video, audio=job.audio or side.get("audio"),
                                      transcript=side.get("transcript"), turns=side.get("turns"),
                                      chunk_seconds=args.chunk_seconds, vad_db=args.vad_db, max_gap=args.max_gap,
                                      progress=not args.quiet, context=args.context)
        if terms:
            pred.report["terms"] = terms
        written = pred.save(folder, figures=not args.no_figures, times=args.times)
        r = pred.report
        faces = r.get("faces")
        face_note = (f"{r['frames_with_face']}/{r['n_frames']} frames with a face" if faces is not None
                     else "no video" if "visual" in predictor.modalities else "no visual branch")
        print(f"{job.source or side.get('transcript')}: {r['n_frames']} frames ({r['duration']:.1f} s) in "
              f"{r['seconds']:.1f} s ({r['realtime_factor']:.1f}x real time); {face_note}; "
              f"{r['frames_with_words']} frames with words; {r['frames_with_audio']} with audio; "
              f"{r['frames_without_input']} without any input (left empty)")
    if args.overlay:
        if job.video is not None and not face_model:
            written["overlay"] = write_overlay(job.video, pred.frame, folder / f"{job.name}_traces.mp4")
        else:
            print("  overlay skipped: " + ("no video" if job.video is None else
                                           "not drawn for face models (see traces.png)"))
    if "warning" in r:
        print(f"  warning: {r['warning']}")
    for what, path in written.items():
        print(f"  {what}: {path}")


def add_predict_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("predict", help="arousal and valence over time for videos, audio files or transcripts; "
                                       "expressions of faces in videos or images (CSV, plots, attention views)")
    s.add_argument("inputs", nargs="*", help="video, audio (wav, flac, ogg, mp3, m4a ...) or image (jpg, png ...; "
                                             "face models) file(s), or folder(s) of them; none with --transcript "
                                             "for a text model")
    s.add_argument("--checkpoint", help="trained checkpoint, run folder or pretrained:NAME (default: "
                   f"${ENV_CHECKPOINT}, else the shipped default model; see `mmaffect pretrained`)")
    s.add_argument("--transcript", help="transcript (start,end,text CSV or SEWA format); a folder of "
                                        "<video stem>.csv for several videos. Without it the text branch is masked")
    s.add_argument("--turns", help="when the target speaks (start,end CSV or SEWA format); folder for several "
                                   "videos. Without it the speech heard is taken as the target's")
    s.add_argument("--audio", help="audio file to use instead of the video's own track (e.g. the SEWA layout's "
                                   "separate wav); a folder of <video stem>.wav for several videos")
    s.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    s.add_argument("--overlay", action="store_true", help="also write a copy of the video with the traces drawn")
    s.add_argument("--chunk-seconds", type=float, default=60.0,
                   help="seconds processed at a time; the LSTM state is carried over (default 60)")
    s.add_argument("--context", type=context_argument, default="train", metavar="train|none|SECONDS",
                   help="the LSTM head's context window: 'train' (default) windows of the model's training "
                        "length, each from a zero state, blended where they overlap; 'none' carries the state "
                        "over the whole recording; or seconds")
    s.add_argument("--vad-db", type=float, default=None,
                   help="decide speech activity by level instead of the model's speech detector: frames quieter "
                        "than this (dBFS after loudness normalisation, e.g. -40) are masked as silence")
    s.add_argument("--max-gap", type=_max_gap, default=DEFAULT_MAX_GAP, metavar="SECONDS",
                   help="frames more than this long after the last frame with any input (speech heard, a face, "
                        f"words) get empty arousal/valence, as do frames before the first (default "
                        f"{DEFAULT_MAX_GAP:g}; 'none': no limit after the first input)")
    s.add_argument("--min-face", type=float, default=None, metavar="FRACTION",
                   help="smallest face searched, as a fraction of the frame height (default: the model's, "
                        "usually 0.12); e.g. 0.05 for a wide shot, with --detect-width")
    s.add_argument("--detect-width", type=int, default=None, metavar="PIXELS",
                   help="width full face scans downscale the frame to (default: the model's, usually 320); "
                        "e.g. 960 to find small faces in HD video")
    s.add_argument("--fail-fast", action="store_true",
                   help="stop at the first recording that fails (default: go on, list the failures, exit 2)")
    s.add_argument("--no-figures", action="store_true", help="only the CSV and report")
    s.add_argument("--times", type=_float_list, default=None,
                   help="comma-separated seconds: show the words and a fusion diagram at these times "
                        "(default: the frames where the text selector is most peaked)")
    s.add_argument("--per-video-folder", action="store_true",
                   help="write into OUT/<video stem>/ even for one video (always so for several)")
    s.add_argument("--whole-image", action="store_true",
                   help="face models on images: each image is a face crop already (no face detection)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_predict)
