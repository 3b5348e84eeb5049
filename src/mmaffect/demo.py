"""`mmaffect demo` / `make demo`: the main job on built-in synthetic data.

1. writes a synthetic corpus in the SEWA layout (real wav/avi/csv files),
2. prepares it (audio frames, face detection and crops, word vectors, labels),
3. trains the multimodal network (text + audio + visual branches,
   hierarchical-attention fusion, LSTM) at reduced widths
   (``configs/synthetic``) so that it fits a 2-core CPU in a few minutes,
4. prints its CCC on the development and test partitions.

``study=True`` (``mmaffect demo --study``) runs the whole Table-6-like study
instead: the three unimodal networks, then the multimodal network once per
fusion strategy with its branches initialised from the unimodal ones
(Section 5.3) — about half an hour on 2 cores.

Every step reuses what an earlier run left in the work folder.
"""

from __future__ import annotations

import time
from pathlib import Path

from mmaffect.config import load_config
from mmaffect.data.readers import read_corpus
from mmaffect.data.synthetic import synthesize
from mmaffect.preprocess.pipeline import prepare
from mmaffect.training.study import StudyResult

# 48×48 crops for the reduced HRNet of configs/synthetic/visual.yaml.
DEMO_PREPARE = ["faces.size=48"]


DEMO_MODEL = "fusion-hierarchical"


def _print_results(result: StudyResult, steps: int) -> None:
    print(f"\n[4/{steps}] results\n")
    print(result.table("devel"))
    print()
    print(result.table("test"))


def run_demo(workdir: Path, *, quick: bool = False, train: bool = True, study: bool = False,
             seeds: tuple[int, ...] = (0,), fusions: tuple[str, ...] | None = None) -> dict:
    """Run the demo in ``workdir``; returns a summary dict (also printed).

    ``quick`` (tests) makes a 4-session corpus of 12 s and trains one epoch.
    """
    from mmaffect.training.study import FUSIONS, run_study, train_and_score

    workdir.mkdir(parents=True, exist_ok=True)
    corpus, cache = workdir / "corpus", workdir / "cache"
    sizes = dict(n_train=2, n_devel=1, n_test=1, duration=12.0) if quick else {}
    steps = 4 if train else 2
    t0 = time.perf_counter()
    if not (corpus / "synth.json").exists():
        print(f"[1/{steps}] writing the synthetic corpus to {corpus}", flush=True)
        synthesize(corpus, seed=0, progress=not quick, **sizes)
    else:
        print(f"[1/{steps}] reusing the synthetic corpus in {corpus}", flush=True)
    print(f"[2/{steps}] preparing it into {cache}", flush=True)
    report = prepare(read_corpus(corpus), cache, config=load_config("prepare", DEMO_PREPARE), progress=not quick)
    print()
    print(report.table())
    print(f"\nprepared {len(report.sessions)} sessions ({report.media_seconds:.0f} s of media) in "
          f"{report.seconds:.1f} s", flush=True)
    summary: dict = {"sessions": len(report.sessions), "report": report}
    overrides = ["optim.epochs=1"] if quick else []
    if train and not study:
        print(f"\n[3/{steps}] training {DEMO_MODEL} (text + audio + visual) on the train partition, "
              f"selecting the epoch by devel CCC", flush=True)
        result = train_and_score(cache=cache, out=workdir / "runs" / DEMO_MODEL, model_name=DEMO_MODEL,
                                 partitions=("devel", "test"), overrides=overrides)
        _print_results(result, steps)
        summary["study"] = result
    if train and study:
        chosen = tuple(fusions) if fusions is not None else FUSIONS
        print(f"\n[3/{steps}] training text, audio and visual networks, then {len(chosen)} fusion strategies "
              f"(runs in {workdir / 'runs'})", flush=True)
        result = run_study(cache=cache, out=workdir / "runs", seeds=seeds, fusions=chosen,
                           partitions=("devel", "test"), overrides=overrides)
        _print_results(result, steps)
        summary["study"] = result
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    return summary
