"""`mmaffect demo` / `make demo`: the main job on built-in synthetic data.

1. writes a synthetic corpus in the SEWA layout (real wav/avi/csv files;
   8 train, 3 devel and 3 test recordings of 60 s, see ``docs/synthetic.md``),
2. prepares it (audio frames, face detection and crops, word vectors, labels),
3. trains the Table-6-like study at reduced widths (``configs/synthetic``):
   the three unimodal networks (text, audio, visual; branch + LSTM head), then
   the multimodal network once per fusion strategy (concatenation and the four
   attention fusions) with its branches initialised from the unimodal ones
   (Section 5.3),
4. prints the comparison: CCC on the development and test partitions per
   model, and whether the best multimodal model beats every unimodal model and
   each attention fusion beats concatenation.

About 8–10 minutes on 2 quiet CPU cores. ``seeds=(0, 1, 2)`` (``mmaffect demo
--seeds 0 1 2``) repeats the training per seed and prints mean ± std;
``single=True`` (``--single``) trains only one multimodal model from scratch
(``DEMO_MODEL``), the demo of earlier versions. ``quick=True`` (tests) makes a
4-session corpus of 12 s and trains one epoch per model.

Every step reuses what an earlier run left in the work folder (a corpus of
another generator version or size is rewritten, and the runs trained on it
are removed).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from mmaffect.config import load_config
from mmaffect.data.readers import read_corpus
from mmaffect.data.writers.synthetic import SYNTH_VERSION, synthesize
from mmaffect.preprocess.pipeline import prepare
from mmaffect.training.study import StudyResult

# 48×48 crops for the reduced HRNet of configs/synthetic/visual.yaml.
DEMO_PREPARE = ["faces.size=48"]

DEMO_CORPUS = {"n_train": 8, "n_devel": 3, "n_test": 3, "duration": 60.0}
"""Size of the demo's synthetic corpus (14 recordings of 60 s)."""

QUICK_CORPUS = {"n_train": 2, "n_devel": 1, "n_test": 1, "duration": 12.0}
"""Size of the ``quick`` corpus (tests)."""

DEMO_MODEL = "fusion-hierarchical"
"""The one model ``single=True`` trains."""


def _corpus_matches(corpus: Path, sizes: dict) -> bool:
    """True when ``corpus`` is a complete synthetic corpus of this generator version and size."""
    meta_path = corpus / "synth.json"
    if not meta_path.exists():
        return False
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    params = meta.get("parameters", {})
    return meta.get("version") == SYNTH_VERSION and meta.get("seed") == 0 and all(
        params.get(k) == v for k, v in sizes.items())


def run_demo(workdir: Path, *, quick: bool = False, train: bool = True, single: bool = False,
             study: bool = True, seeds: Sequence[int] = (0,), fusions: Sequence[str] | None = None) -> dict:
    """Run the demo in ``workdir``; returns a summary dict (also printed).

    ``summary["study"]`` is the :class:`~mmaffect.training.study.StudyResult`;
    ``summary["sessions"]`` the number of prepared recordings. ``study=False``
    is the same as ``single=True`` (kept for callers of earlier versions).
    """
    from mmaffect.training.study import FUSIONS, run_study, train_and_score

    single = single or not study
    workdir.mkdir(parents=True, exist_ok=True)
    corpus, cache, runs = workdir / "corpus", workdir / "cache", workdir / "runs"
    sizes = dict(QUICK_CORPUS if quick else DEMO_CORPUS)
    steps = 4 if train else 2
    t0 = time.perf_counter()
    if _corpus_matches(corpus, sizes):
        print(f"[1/{steps}] reusing the synthetic corpus in {corpus}", flush=True)
    else:
        if (corpus / "synth.json").exists():
            print(f"[1/{steps}] the corpus in {corpus} is of another generator version or size: rewriting it "
                  f"and removing the runs trained on it", flush=True)
            shutil.rmtree(corpus)
            shutil.rmtree(runs, ignore_errors=True)
        n = sizes["n_train"] + sizes["n_devel"] + sizes["n_test"]
        print(f"[1/{steps}] writing the synthetic corpus ({n} recordings of {sizes['duration']:.0f} s) to {corpus}",
              flush=True)
        synthesize(corpus, seed=0, progress=not quick, jobs=1 if quick else 2, **sizes)
    print(f"[2/{steps}] preparing it into {cache}", flush=True)
    report = prepare(read_corpus(corpus), cache, config=load_config("prepare", DEMO_PREPARE), progress=not quick)
    print()
    print(report.table())
    print(f"\nprepared {len(report.sessions)} sessions ({report.media_seconds:.0f} s of media) in "
          f"{report.seconds:.1f} s", flush=True)
    summary: dict = {"sessions": len(report.sessions), "report": report}
    overrides = ["optim.epochs=1", "log.plot=false"] if quick else []
    result: StudyResult | None = None
    if train and single:
        print(f"\n[3/{steps}] training {DEMO_MODEL} (text + audio + visual) from scratch on the train partition, "
              f"selecting the epoch by devel CCC", flush=True)
        result = StudyResult(out=runs, seeds=tuple(seeds))
        for seed in seeds:
            one = train_and_score(cache=cache, out=runs / "single" / f"seed{seed}" / DEMO_MODEL, model_name=DEMO_MODEL,
                                  seed=seed, partitions=("devel", "test"), overrides=overrides)
            for part, dims in one.scores[DEMO_MODEL].items():
                for d, values in dims.items():
                    result.scores.setdefault(DEMO_MODEL, {}).setdefault(part, {}).setdefault(d, []).extend(values)
            result.seconds[DEMO_MODEL] = result.seconds.get(DEMO_MODEL, 0.0) + one.seconds[DEMO_MODEL]
    elif train:
        chosen = tuple(fusions) if fusions is not None else FUSIONS
        print(f"\n[3/{steps}] training the text, audio and visual networks, then {len(chosen)} fusion strategies "
              f"initialised from them, for seed(s) {', '.join(map(str, seeds))} (runs in {runs})", flush=True)
        result = run_study(cache=cache, out=runs, seeds=tuple(seeds), fusions=chosen,
                           partitions=("devel", "test"), overrides=overrides)
    if result is not None:
        print(f"\n[4/{steps}] results\n")
        print(result.comparison(("devel", "test")))
        summary["study"] = result
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    return summary
