"""`mmaffect demo` / `make demo`: the main job on built-in synthetic data.

Writes a synthetic corpus in the SEWA layout, prepares it (audio frames, face
detection and crops, word vectors, labels) and prints what was prepared.
"""

from __future__ import annotations

import time
from pathlib import Path

from mmaffect.data.readers import read_corpus
from mmaffect.data.synthetic import synthesize
from mmaffect.preprocess.pipeline import prepare


def run_demo(workdir: Path, *, quick: bool = False) -> dict:
    """Run the demo in ``workdir``; returns a summary dict (also printed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    corpus, cache = workdir / "corpus", workdir / "cache"
    sizes = dict(n_train=2, n_devel=1, n_test=1, duration=12.0) if quick else {}
    t0 = time.perf_counter()
    if not (corpus / "synth.json").exists():
        print(f"[1/2] writing the synthetic corpus to {corpus}")
        synthesize(corpus, seed=0, **sizes)
    else:
        print(f"[1/2] reusing the synthetic corpus in {corpus}")
    print(f"[2/2] preparing it into {cache}")
    sessions = read_corpus(corpus)
    report = prepare(sessions, cache)
    print()
    print(report.table())
    print(f"\nprepared {len(report.sessions)} sessions ({report.media_seconds:.0f} s of media) in "
          f"{report.seconds:.1f} s; total demo time {time.perf_counter() - t0:.1f} s")
    return {"sessions": len(report.sessions), "report": report}
