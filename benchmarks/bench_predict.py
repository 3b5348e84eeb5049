"""Benchmark `mmaffect predict` end to end: real-time factor and peak memory.

Workloads: synthetic talking-face recordings (320x240, 25 fps, wav audio,
transcript) of 1, 3 and (unless ``--quick``) 30 minutes, written by
``mmaffect synth``. Each prediction runs in a fresh subprocess through the
Python API (:func:`mmaffect.load` → ``predict_full``, the same code as the
CLI minus figure writing), so its peak RSS is its own: model, text embedder,
decoding and face tracking included. Timing covers everything after the
checkpoint is loaded (the embedder's import and load included, on first use).

The model's weights do not change its speed, so by default an untrained model
is saved as a checkpoint: ``--config`` picks its configuration (default the
demo's reduced-width ``configs/synthetic/fusion.yaml``; ``--paper`` uses the
paper's full-size ``fusion-hierarchical``). ``--checkpoint`` uses a trained one.

Usage::

    python benchmarks/bench_predict.py [--workdir DIR] [--paper] [--quick] [--threads 2]
    python benchmarks/bench_predict.py --paper --minutes 3 --reference /tmp/before/src --rounds 3

``--reference-checkpoint OLD --checkpoint NEW`` times two trained models the
same way, alternating, with this checkout (e.g. a re-shipped default model
against the one before it).

``--reference SRC`` times another mmaffect source tree side by side (e.g. a
``git worktree`` of an earlier commit, ``SRC`` = its ``src`` folder): each
round predicts the same recording with the reference and then with this
checkout, each in a fresh process (the reference's checkpoint saved by its
own code), and the table gives the median of each and their ratio — on a
shared machine the ratio is the figure, absolute times are noise.

Prints a Markdown table; copy it into docs/benchmarks.md with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(args: argparse.Namespace) -> None:
    import torch

    import mmaffect

    torch.set_num_threads(args.threads)
    predictor = mmaffect.load(args.checkpoint, device="cpu")
    rss_loaded = _peak_mib()
    t0 = time.perf_counter()
    pred = predictor.predict_full(args.video, audio=args.audio, transcript=args.transcript,
                                  chunk_seconds=args.chunk_seconds)
    wall = time.perf_counter() - t0
    peak = _peak_mib()
    print(json.dumps({"wall_s": wall, "peak_mib": peak, "loaded_mib": rss_loaded,
                      "media_s": pred.report["duration"], "frames_with_face": pred.report["frames_with_face"],
                      "n_frames": pred.report["n_frames"]}))


def _env(src: str | None) -> dict[str, str]:
    """The children's environment; ``src``: another mmaffect source tree, imported first."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if src:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _make_checkpoint(path: Path, *, config: str | None, paper: bool) -> str:
    import torch

    from mmaffect.config import load_config
    from mmaffect.models import create_model
    from mmaffect.preprocess.pipeline import resolve_prepare_config
    from mmaffect.checkpoints import save_checkpoint
    from mmaffect.training.trainer import load_train_config

    if paper:
        cfg = {"model_name": "fusion-hierarchical", "model_options": {}, "data": {"annotation_delay": 0.0}}
        face = 96
    else:
        cfg = load_train_config(config or str(Path(__file__).resolve().parents[1] / "configs/synthetic/fusion.yaml"),
                                ["data.cache=unused"])
        face = int(cfg["model_options"].get("image_size", 48))
    torch.manual_seed(0)
    model = create_model(cfg["model_name"], **cfg.get("model_options", {}))
    prep = resolve_prepare_config(load_config("prepare", [f"faces.size={face}"]))
    save_checkpoint(path, model=model, optimizer=None, scheduler=None, epoch=0, step=0, best_score=0.0,
                    best_epoch=0, stale_epochs=0, history=[], config=cfg, prepare_config=prep)
    params = sum(p.numel() for p in model.parameters())
    return f"{cfg['model_name']} ({params / 1e6:.2f} M parameters, {face}x{face} faces)"


def _recording(workdir: Path, minutes: float) -> dict[str, Path]:
    from mmaffect.data.writers.synthetic import synthesize

    root = workdir / f"rec{minutes:g}min"
    if not (root / "synth.json").exists():
        synthesize(root, n_train=1, n_devel=0, n_test=0, duration=60.0 * minutes, seed=7, progress=False)
    stem = sorted((root / "video").iterdir())[0].stem
    return {"video": root / "video" / f"{stem}.avi", "audio": root / "audio" / f"{stem}.wav",
            "transcript": root / "transcriptions" / f"{stem}.csv"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--video"), p.add_argument("--audio"), p.add_argument("--transcript")
    p.add_argument("--checkpoint", help="trained checkpoint (default: an untrained model, see --config/--paper)")
    p.add_argument("--config", help="training config of the untrained model (default configs/synthetic/fusion.yaml)")
    p.add_argument("--paper", action="store_true", help="the paper's full-size fusion-hierarchical, 96x96 faces")
    p.add_argument("--workdir", default="/tmp/bench_predict")
    p.add_argument("--minutes", default="1,3,30", help="recording lengths, comma-separated")
    p.add_argument("--quick", action="store_true", help="only 1 and 3 minutes")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--chunk-seconds", type=float, default=60.0)
    p.add_argument("--reference", help="another mmaffect source tree (its src folder), timed side by side")
    p.add_argument("--reference-checkpoint",
                   help="another checkpoint, timed side by side with --checkpoint by this checkout")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds with --reference(-checkpoint)")
    p.add_argument("--make-checkpoint", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return
    if args.make_checkpoint:
        print(_make_checkpoint(Path(args.make_checkpoint), config=args.config, paper=args.paper))
        return
    if args.reference_checkpoint and not args.checkpoint:
        raise SystemExit("--reference-checkpoint compares against --checkpoint: give both")
    if args.reference or args.reference_checkpoint:
        _side_by_side(args)
        return
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        ckpt, what = args.checkpoint, args.checkpoint
    else:
        ckpt = str(workdir / ("paper.pt" if args.paper else "demo.pt"))
        what = _make_checkpoint(Path(ckpt), config=args.config, paper=args.paper)
    minutes = [float(m) for m in args.minutes.split(",")]
    if args.quick:
        minutes = [m for m in minutes if m <= 3]
    rows = []
    for m in minutes:
        t0 = time.perf_counter()
        rec = _recording(workdir, m)
        made = time.perf_counter() - t0
        cmd = [sys.executable, __file__, "--child", "--checkpoint", ckpt, "--threads", str(args.threads),
               "--chunk-seconds", str(args.chunk_seconds),
               *[x for k in ("video", "audio", "transcript") for x in (f"--{k}", str(rec[k]))]]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if proc.returncode != 0:
            raise SystemExit(f"predict failed:\n{proc.stderr}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append((m, r))
        print(f"  {m:g} min: recording written in {made:.0f} s; predict {r['wall_s']:.1f} s", file=sys.stderr)
    print(f"model: {what}; torch threads {args.threads}; chunk {args.chunk_seconds:g} s; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| recording | media (s) | predict (s) | × real time | peak RSS (MiB) | RSS after loading the model (MiB) | frames with a face |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m, r in rows:
        print(f"| {m:g} min 320×240 25 fps + transcript | {r['media_s']:.0f} | {r['wall_s']:.1f} | "
              f"{r['media_s'] / r['wall_s']:.1f} | {r['peak_mib']:.0f} | {r['loaded_mib']:.0f} | "
              f"{r['frames_with_face']}/{r['n_frames']} |")


def _predict_child(args: argparse.Namespace, ckpt: str, rec: dict[str, Path], src: str | None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--checkpoint", ckpt, "--threads", str(args.threads),
           "--chunk-seconds", str(args.chunk_seconds),
           *[x for k in ("video", "audio", "transcript") for x in (f"--{k}", str(rec[k]))]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(src))
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({src or 'this checkout'}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _side_by_side(args: argparse.Namespace) -> None:
    """Alternate the reference (tree or checkpoint) and this checkout (or ``--checkpoint``) on each
    recording; medians and their ratio."""
    import statistics

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpts = {}
    if args.reference_checkpoint:  # two trained models, one code tree
        ckpts = {"reference": args.reference_checkpoint, "this": args.checkpoint}
        what = f"{args.checkpoint} against {args.reference_checkpoint}"
    for tag, src in (("reference", args.reference), ("this", None)) if not ckpts else ():
        ckpts[tag] = str(workdir / f"{tag}-{'paper' if args.paper else 'demo'}.pt")
        cmd = [sys.executable, __file__, "--make-checkpoint", ckpts[tag], *(["--paper"] if args.paper else []),
               *(["--config", args.config] if args.config else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(src))
        if proc.returncode != 0:
            raise SystemExit(f"cannot make the {tag} checkpoint:\n{proc.stderr}")
        what = proc.stdout.strip().splitlines()[-1]
    print(f"model: {what}; torch threads {args.threads}; chunk {args.chunk_seconds:g} s; {args.rounds} rounds; "
          f"reference {args.reference or args.reference_checkpoint}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print()
    print("| recording | reference (s) | this (s) | × real time, reference | × real time, this | speed-up | "
          "peak RSS reference / this (MiB) | frames with a face reference / this |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for m in [float(x) for x in args.minutes.split(",")]:
        rec = _recording(workdir, m)
        runs: dict[str, list[dict]] = {"reference": [], "this": []}
        for r in range(args.rounds):
            for tag, src in (("reference", args.reference), ("this", None)):
                runs[tag].append(_predict_child(args, ckpts[tag], rec, src))
                print(f"  {m:g} min round {r + 1} {tag}: {runs[tag][-1]['wall_s']:.1f} s", file=sys.stderr)
        med = {k: statistics.median(x["wall_s"] for x in v) for k, v in runs.items()}
        media = runs["this"][0]["media_s"]
        peak = {k: max(x["peak_mib"] for x in v) for k, v in runs.items()}
        faces = {k: v[0]["frames_with_face"] for k, v in runs.items()}
        print(f"| {m:g} min 320×240 25 fps + transcript | {med['reference']:.1f} | {med['this']:.1f} | "
              f"{media / med['reference']:.1f} | {media / med['this']:.1f} | {med['reference'] / med['this']:.2f} | "
              f"{peak['reference']:.0f} / {peak['this']:.0f} | {faces['reference']} / {faces['this']} |")


if __name__ == "__main__":
    main()
