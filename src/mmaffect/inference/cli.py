"""``mmaffect predict``: arousal and valence over time for videos."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mmaffect.errors import ConfigError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
ENV_CHECKPOINT = "MMAFFECT_CHECKPOINT"


def default_checkpoint() -> Path:
    """The checkpoint used when ``--checkpoint`` is not given: ``$MMAFFECT_CHECKPOINT``, else the
    shipped default model (:mod:`mmaffect.inference.pretrained`)."""
    from mmaffect.inference.pretrained import PREFIX, default_model, resolve

    env = os.environ.get(ENV_CHECKPOINT)
    if env:
        return resolve(env, kind="predict")
    model = default_model()
    if model is not None:
        return resolve(PREFIX + model.name, kind="predict")
    raise ConfigError(
        "no --checkpoint given and no default model is installed: pass --checkpoint RUN/best.pt "
        f"(e.g. demo_output/runs/seed0/fusion-hierarchical/best.pt after `make demo`) or set {ENV_CHECKPOINT}"
    )


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}") from None


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


def plan_inputs(inputs: list[Path], sides: dict[str, Path | None]) -> list[tuple[Path, dict[str, Path | None]]]:
    """(video, {transcript, turns, audio}) per video; a folder input means every video in it.

    ``sides`` holds the ``--transcript``, ``--turns`` and ``--audio`` paths.
    With a folder of videos (or several videos) each of them must be a folder,
    and each video takes ``<stem>.csv`` (transcript, turns) or
    ``<stem>.wav|.flac|.ogg`` (audio) from it when present.
    """
    videos: list[Path] = []
    for item in inputs:
        if not item.exists():
            raise ConfigError(f"{item}: no such file or folder")
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not found:
                raise ConfigError(f"{item}: the folder holds no video ({', '.join(VIDEO_SUFFIXES)})")
            videos += found
        else:
            videos.append(item)
    several = len(videos) > 1
    for name, path in sides.items():
        if path is not None and several and not path.is_dir():
            raise ConfigError(f"{path}: with several videos, --{name} must be a folder of "
                              f"<video stem>{'|'.join(COMPANIONS[name])} files")
    jobs = []
    for video in videos:
        chosen = {name: (_companion(path, video.stem, COMPANIONS[name])
                         if path is not None and path.is_dir() else path)
                  for name, path in sides.items()}
        jobs.append((video, chosen))
    stems = [v.stem for v, _ in jobs]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ConfigError(f"several videos share the name(s) {dup}; their outputs would collide")
    return jobs


def _cmd_predict(args: argparse.Namespace) -> None:
    from mmaffect.inference.overlay import write_overlay
    from mmaffect.inference.predictor import Predictor
    from mmaffect.inference.pretrained import resolve

    checkpoint = resolve(args.checkpoint, kind="predict") if args.checkpoint else default_checkpoint()
    sides = {name: Path(getattr(args, name)) if getattr(args, name) else None for name in COMPANIONS}
    jobs = plan_inputs([Path(p) for p in args.inputs], sides)
    predictor = Predictor.from_checkpoint(checkpoint, device=args.device)
    out = Path(args.out)
    for video, side in jobs:
        pred = predictor.predict_full(video, audio=side["audio"], transcript=side["transcript"],
                                      turns=side["turns"], chunk_seconds=args.chunk_seconds,
                                      vad_db=args.vad_db, progress=not args.quiet)
        folder = out / video.stem if len(jobs) > 1 or args.per_video_folder else out
        written = pred.save(folder, figures=not args.no_figures, times=args.times)
        if args.overlay:
            written["overlay"] = write_overlay(video, pred.frame, folder / f"{video.stem}_traces.mp4")
        r = pred.report
        faces = r.get("faces")
        face_note = (f"{r['frames_with_face']}/{r['n_frames']} frames with a face" if faces is not None
                     else "no visual branch")
        print(f"{video}: {r['n_frames']} frames ({r['duration']:.1f} s) in {r['seconds']:.1f} s "
              f"({r['realtime_factor']:.1f}x real time); {face_note}; "
              f"{r['frames_with_words']} frames with words; {r['frames_with_audio']} with audio")
        if "warning" in r:
            print(f"  warning: {r['warning']}")
        for what, path in written.items():
            print(f"  {what}: {path}")


def add_predict_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("predict", help="arousal and valence over time for videos (CSV, plots, attention views)")
    s.add_argument("inputs", nargs="+", help="video file(s), or folder(s) of videos")
    s.add_argument("--checkpoint", help="trained checkpoint, run folder or pretrained:NAME (default: "
                   f"${ENV_CHECKPOINT}, else the shipped default model; see `mmaffect pretrained`)")
    s.add_argument("--transcript", help="transcript (start,end,text CSV or SEWA format); a folder of "
                                        "<video stem>.csv for several videos. Without it the text branch is masked")
    s.add_argument("--turns", help="when the target speaks (start,end CSV or SEWA format); folder for several "
                                   "videos. Without it the target speaks throughout (see --vad-db)")
    s.add_argument("--audio", help="audio file to use instead of the video's own track (e.g. the SEWA layout's "
                                   "separate wav); a folder of <video stem>.wav for several videos")
    s.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    s.add_argument("--overlay", action="store_true", help="also write a copy of the video with the traces drawn")
    s.add_argument("--chunk-seconds", type=float, default=60.0,
                   help="seconds processed at a time; the LSTM state is carried over (default 60)")
    s.add_argument("--vad-db", type=float, default=None,
                   help="without --turns: frames quieter than this level (dBFS, e.g. -40) count as not the target")
    s.add_argument("--no-figures", action="store_true", help="only the CSV and report")
    s.add_argument("--times", type=_float_list, default=None,
                   help="comma-separated seconds: show the words and a fusion diagram at these times "
                        "(default: the frames where the text selector is most peaked)")
    s.add_argument("--per-video-folder", action="store_true",
                   help="write into OUT/<video stem>/ even for one video (always so for several)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_predict)
