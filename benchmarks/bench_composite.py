"""Benchmark: the Table-6 study on the composite corpus (EmoDB voices, FER+ faces, EmoBank words).

Issue #6, item 4. One script, resumable:

1. **Data.** ``mmaffect adapt composite`` (:func:`mmaffect.data.writers.composite.adapt_composite`)
   assembles time-continuous sessions from the shared research corpora: a
   valence/arousal trajectory of category proxy points, EmoDB utterances of a
   matching emotion in the speaking turns, FER+ faces of a matching expression
   (with gaps), EmoBank sentences rated near the target in the transcript.
   Default: 40 train, 8 devel, 8 test sessions of 40 s, assembly seed 0.
   Reused when ``WORKDIR/corpus`` already holds the same version and size
   (a corpus of another version or size is rewritten and the runs trained on
   it are removed).
2. **Features.** ``mmaffect prepare`` (audio frames, Haar face detection and
   48×48 crops, MiniLM word vectors with ``text.delay=0``); it reuses every
   stream already computed. The script then counts on how many frames that
   show a face the detector found it (and how many blank frames it wrongly
   found one in), from the cache's ``face_mask`` and ``segments.csv``.
3. **Study** (:func:`mmaffect.training.study.run_study`, the code of
   ``mmaffect demo``): the text, audio and visual networks, then the five
   fusion strategies with branches initialised from them (Section 5.3), at the
   reduced widths of ``recipes/composite/*.yaml``; best epoch by devel CCC;
   devel and test CCC on the concatenated recordings. Finished runs are
   reused, interrupted ones resumed.
4. Prints the comparison table (and the study's (a)/(b) lines) and writes
   ``results.md`` and ``results.json`` into the work folder (atomically).

Usage::

    nice -n 10 python benchmarks/bench_composite.py [--data SHARED_DATA_ROOT]
        [--workdir /tmp/mmaffect-bench-composite] [--seeds 0 ...] [--threads 1] [--quick]

``--quick``: 2/1/1 sessions of 12 s and one epoch per model (smoke run for
tests; the figures mean nothing). The corpora are research-only: keep the
work folder outside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmaffect.data.writers.composite import DEFAULT_SECONDS, DEFAULT_SESSIONS
from mmaffect.utils.io import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, fmt_time, hardware, run_cli, work_dir  # noqa: E402

CONFIG_DIR = REPO / "recipes" / "composite"
DEFAULT_WORKDIR = Path("/tmp/mmaffect-bench-composite")
PREPARE_OVERRIDES = ["faces.size=48", "text.delay=0"]
FULL = {"sessions": DEFAULT_SESSIONS, "seconds": DEFAULT_SECONDS, "seed": 0}
QUICK = {"sessions": (2, 1, 1), "seconds": 12.0, "seed": 0}
QUICK_OVERRIDES = ["optim.epochs=1"]


# ----------------------------------------------------------------------------- helpers


def corpus_matches(corpus: Path, sizes: dict[str, Any]) -> bool:
    """True when ``corpus`` is a complete composite corpus of this generator version and these sizes."""
    from mmaffect.data.writers.composite import COMPOSITE_VERSION

    meta_path = corpus / "adapter.json"
    if not meta_path.is_file() or not (corpus / "splits.csv").is_file():
        return False
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    params = meta.get("parameters", {})
    return (meta.get("adapter") == "composite" and params.get("version") == COMPOSITE_VERSION
            and list(params.get("sessions", [])) == list(sizes["sessions"])
            and params.get("seconds") == sizes["seconds"] and params.get("seed") == sizes["seed"])


def face_detection(corpus: Path, cache: Path) -> dict[str, int]:
    """Frames showing a FER+ face (per ``segments.csv``) on which prepare found a face, and false finds.

    Returns ``shown``, ``detected`` (shown frames with ``face_mask`` True),
    ``blank``, ``false`` (blank frames with a face found), ``faces`` and
    ``faces_detected`` (placed faces found on at least one of their frames).
    """
    from mmaffect.data.cache import Cache
    from mmaffect.data.writers.composite import read_segments

    out = dict(shown=0, detected=0, blank=0, false=0, faces=0, faces_detected=0)
    for cs in Cache(cache).sessions():
        mask = cs.load(streams=("faces",))["face_mask"].astype(bool)
        shown = np.zeros(len(mask), dtype=bool)
        for row in read_segments(corpus / cs.name):
            if row["modality"] == "face":
                a, b = int(round(float(row["start"]) * 10)), int(round(float(row["end"]) * 10))
                shown[a:b] = True
                out["faces"] += 1
                out["faces_detected"] += int(mask[a:b].any())
        out["shown"] += int(shown.sum())
        out["detected"] += int((mask & shown).sum())
        out["blank"] += int((~shown).sum())
        out["false"] += int((mask & ~shown).sum())
    return out


def _share(a: int, b: int) -> str:
    return f"{a:,} / {b:,} ({100 * a / b:.1f} %)" if b else f"{a} / 0"


def corpus_table(meta: dict[str, Any]) -> str:
    """Per-partition coverage of the corpus, from ``adapter.json``."""
    parts = meta["composite"]["partitions"]
    rows = ["| partition | sessions × s | speakers | speaking | face shown (listening / speaking) | "
            "items voice / face / words | item proxy vs label CCC a/v: voice, face, words |",
            "|---|---|---|---:|---:|---|---|"]
    sessions = meta["parameters"]["sessions"]
    for k, part in enumerate(("train", "devel", "test")):
        if part not in parts:
            continue
        s, n = parts[part], sessions[k]
        agree = s["item_vs_label_ccc"]

        def ag(m: str) -> str:
            return f"{agree[m]['arousal']:.2f}/{agree[m]['valence']:.2f}" if m in agree else "-"

        rows.append(
            f"| {part} | {n} × {meta['parameters']['seconds']:g} | {', '.join(s['speakers'])} | "
            f"{100 * s['speaking_share']:.0f} % | {100 * s['face_shown_share']:.0f} % "
            f"({100 * s['face_shown_while_listening']:.0f} / {100 * s['face_shown_while_speaking']:.0f} %) | "
            f"{s['items']['voice']} / {s['items']['face']} / {s['items']['words']} | "
            f"{ag('voice')}, {ag('face')}, {ag('words')} |"
        )
    return "\n".join(rows)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="folder holding emodb/, emobank/, ferplus/ (default: the shared data)")
    p.add_argument("--workdir", help=f"work folder, reused between runs (default: {DEFAULT_WORKDIR}, "
                   f"with --quick {DEFAULT_WORKDIR}-quick)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: best on 2 shared cores)")
    p.add_argument("--config-dir", default=str(CONFIG_DIR), help="text/audio/visual/fusion.yaml (recipes/composite)")
    p.add_argument("--quick", action="store_true", help="2/1/1 sessions of 12 s, one epoch per model (smoke run)")
    args = p.parse_args(argv)

    from mmaffect.data.sources import shared_data_root

    data = shared_data_root(Path(args.data) if args.data else None)
    if data is None:
        raise SystemExit(f"shared data not found ({args.data or 'pass --data or set MMAFFECT_SHARED_DATA'})")
    work = work_dir(args.workdir, Path(f"{DEFAULT_WORKDIR}-quick" if args.quick else DEFAULT_WORKDIR))
    corpus, cache, runs, log = work / "corpus", work / "cache", work / "runs", work / "bench.log"
    sizes = QUICK if args.quick else FULL
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    timings_path = work / "timings.json"
    timings: dict[str, Any] = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    t_start = time.perf_counter()
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["nice -n 10 python benchmarks/bench_composite.py", *map(shlex.quote, given)])

    # 1. corpus
    if corpus_matches(corpus, sizes):
        print(f"[1/4] reusing the composite corpus in {corpus}", flush=True)
    else:
        if corpus.exists():
            print(f"[1/4] {corpus} holds another corpus or an unfinished one: rewriting it, removing the cache "
                  f"and runs built on it", flush=True)
            for folder in (corpus, cache, runs):
                shutil.rmtree(folder, ignore_errors=True)
            timings = {}
        n = sum(sizes["sessions"])
        print(f"[1/4] assembling {n} sessions of {sizes['seconds']:g} s "
              f"(train/devel/test {'/'.join(map(str, sizes['sessions']))}) into {corpus}", flush=True)
        out, wall = run_cli(["adapt", "composite", "--src", str(data), "--out", str(corpus),
                          "--sessions", *map(str, sizes["sessions"]), "--seconds", str(sizes["seconds"]),
                          "--seed", str(sizes["seed"])], log=log, env=env)
        print(out.rstrip(), flush=True)
        timings["adapt"] = wall
    meta = json.loads((corpus / "adapter.json").read_text(encoding="utf-8"))

    # 2. prepare (reuses computed streams)
    print(f"[2/4] mmaffect prepare {corpus} --out {cache} --layout generic {' '.join(PREPARE_OVERRIDES)}", flush=True)
    out, wall = run_cli(["prepare", str(corpus), "--out", str(cache), "--layout", "generic", "--quiet",
                      *PREPARE_OVERRIDES], log=log, env=env)
    summary = out.strip().splitlines()[-1]
    print(summary, flush=True)
    if "computed 0," not in summary or "prepare" not in timings:
        timings["prepare"] = wall
    det = face_detection(corpus, cache)
    detection = (f"face detection (Haar, as prepared): {_share(det['detected'], det['shown'])} of the frames "
                 f"that show a FER+ face; {_share(det['faces_detected'], det['faces'])} of the placed faces "
                 f"found on at least one frame; {det['false']} false finds on {det['blank']:,} blank frames")
    print(detection, flush=True)
    atomic_write_text(timings_path, json.dumps(timings, indent=1))

    # 3. study
    import torch

    from mmaffect.training.study import run_study

    torch.set_num_threads(args.threads)
    print(f"[3/4] Table-6 study, seed(s) {', '.join(map(str, args.seeds))}: text, audio, visual, then 5 fusions "
          f"initialised from them ({args.config_dir}; runs in {runs})", flush=True)
    planned = [runs / f"seed{seed}" for seed in args.seeds]
    finished_before = sum(1 for d in planned if d.is_dir() for r in d.iterdir() if (r / "study_done.json").exists())
    t0 = time.perf_counter()
    result = run_study(cache=cache, out=runs, seeds=tuple(args.seeds), partitions=("devel", "test"),
                       config_dir=args.config_dir, overrides=QUICK_OVERRIDES if args.quick else [])
    study_wall = time.perf_counter() - t0
    train_seconds = sum(result.seconds.values())
    finished_after = sum(1 for d in planned if d.is_dir() for r in d.iterdir() if (r / "study_done.json").exists())
    if finished_after > finished_before or "study" not in timings:
        # wall time of the invocations that trained something (summed over interrupted + resumed runs)
        timings["study"] = timings.get("study", 0.0) + study_wall
    atomic_write_text(timings_path, json.dumps(timings, indent=1))

    # 4. report
    table = result.comparison(("devel", "test"))
    hw = hardware()
    total = time.perf_counter() - t_start
    parts = meta["parameters"]["sessions"]

    def step_time(key: str) -> str:
        return fmt_time(timings[key]) if key in timings else "not timed (reused from another work folder)"

    times = (f"adapt {step_time('adapt')}, prepare {step_time('prepare')}, study {fmt_time(timings['study'])} "
             f"(training epochs {fmt_time(train_seconds)}); this invocation {fmt_time(total)}")
    text = "\n".join([
        "Composite benchmark (a PROXY, not a substitute for SEWA): EmoDB voices, FER+ faces, EmoBank words on "
        "one valence/arousal trajectory of category proxy points",
        f"corpus: {parts[0]} train / {parts[1]} devel / {parts[2]} test sessions of {meta['parameters']['seconds']:g} s, "
        f"assembly seed {meta['parameters']['seed']}, generator version {meta['parameters']['version']}",
        "",
        corpus_table(meta),
        "",
        detection,
        "",
        table,
        "",
        f"hardware: {hw}",
        f"wall time: {times}",
        f"command: {command}",
    ])
    print("\n[4/4] results\n\n" + text, flush=True)
    atomic_write_text(work / "results.md", text + "\n")
    scores = {m: {part: {d: v for d, v in dims.items()} for part, dims in parts_.items()}
              for m, parts_ in result.scores.items()}
    atomic_write_text(work / "results.json", json.dumps({
        "corpus": {"parameters": meta["parameters"], "statistics": meta["composite"]["partitions"]},
        "prepare_overrides": PREPARE_OVERRIDES,
        "face_detection": det,
        "seeds": list(args.seeds),
        "config_dir": str(args.config_dir),
        "scores": scores,
        "train_seconds": result.seconds,
        "timings": timings,
        "invocation_seconds": total,
        "hardware": hw,
        "command": command,
        "quick": args.quick,
    }, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
