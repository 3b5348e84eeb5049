"""``mmaffect predict``: arousal and valence over time for videos."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mmaffect.errors import ConfigError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
ENV_CHECKPOINT = "MMAFFECT_CHECKPOINT"


def default_checkpoint() -> Path:
    """The checkpoint used when ``--checkpoint`` is not given: ``$MMAFFECT_CHECKPOINT``."""
    env = os.environ.get(ENV_CHECKPOINT)
    if env:
        return Path(env)
    raise ConfigError(
        "no --checkpoint given and no default model is installed: pass --checkpoint RUN/best.pt "
        f"(e.g. demo_output/runs/seed0/fusion-hierarchical/best.pt after `make demo`) or set {ENV_CHECKPOINT}"
    )


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}") from None


def _companion(folder: Path | None, stem: str) -> Path | None:
    """``<folder>/<stem>.csv`` (or ``.txt``) if it exists."""
    if folder is None:
        return None
    for suffix in (".csv", ".txt"):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def plan_inputs(inputs: list[Path], transcript: Path | None, turns: Path | None
                ) -> list[tuple[Path, Path | None, Path | None]]:
    """(video, transcript, turns) per video; a folder input means every video in it.

    With a folder of videos, ``transcript``/``turns`` must be folders too and
    each video takes ``<stem>.csv`` from them when present.
    """
    jobs: list[tuple[Path, Path | None, Path | None]] = []
    for item in inputs:
        if not item.exists():
            raise ConfigError(f"{item}: no such file or folder")
        if item.is_dir():
            videos = sorted(p for p in item.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not videos:
                raise ConfigError(f"{item}: the folder holds no video ({', '.join(VIDEO_SUFFIXES)})")
            for side, name in ((transcript, "--transcript"), (turns, "--turns")):
                if side is not None and not side.is_dir():
                    raise ConfigError(f"{side}: with a folder of videos, {name} must be a folder of "
                                      "<video stem>.csv files")
            jobs += [(v, _companion(transcript, v.stem), _companion(turns, v.stem)) for v in videos]
        else:
            if len(inputs) > 1 and (transcript is not None or turns is not None) and not (
                    (transcript is None or transcript.is_dir()) and (turns is None or turns.is_dir())):
                raise ConfigError("with several videos, --transcript/--turns must be folders of "
                                  "<video stem>.csv files")
            t = _companion(transcript, item.stem) if transcript is not None and transcript.is_dir() else transcript
            u = _companion(turns, item.stem) if turns is not None and turns.is_dir() else turns
            jobs.append((item, t, u))
    stems = [v.stem for v, _, _ in jobs]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ConfigError(f"several videos share the name(s) {dup}; their outputs would collide")
    return jobs


def _cmd_predict(args: argparse.Namespace) -> None:
    from mmaffect.inference.overlay import write_overlay
    from mmaffect.inference.predictor import Predictor

    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    jobs = plan_inputs([Path(p) for p in args.inputs], Path(args.transcript) if args.transcript else None,
                       Path(args.turns) if args.turns else None)
    predictor = Predictor.from_checkpoint(checkpoint, device=args.device)
    out = Path(args.out)
    for video, transcript, turns in jobs:
        pred = predictor.predict_full(video, transcript=transcript, turns=turns, chunk_seconds=args.chunk_seconds,
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
    s.add_argument("--checkpoint", help=f"trained checkpoint or run folder (default: ${ENV_CHECKPOINT})")
    s.add_argument("--transcript", help="transcript (start,end,text CSV or SEWA format); a folder of "
                                        "<video stem>.csv for several videos. Without it the text branch is masked")
    s.add_argument("--turns", help="when the target speaks (start,end CSV or SEWA format); folder for several "
                                   "videos. Without it the target speaks throughout (see --vad-db)")
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
