"""Benchmark: speaker-level normalisation on EmoDB leave-one-speaker-out (issue #12, item 1).

How much of the gap between our audio networks, the eGeMAPS SVR and the goals
of 0.85 / 0.45 is each speaker's own offset and scale? Two classic speaker
normalisations, both *transductive*: they use every utterance of the test
speaker, but none of its labels.

1. **Output level**, for every model: the test speaker's utterance
   predictions are standardised over that speaker (z-score per dimension)
   and mapped to the mean and standard deviation of the training speakers'
   labels (:func:`standardise_per_speaker`). It removes the speaker's offset
   and scale and keeps the order of its utterances, so the CCC that remains
   is about that of the ranking within each speaker.
2. **Feature level**, for the SVR: each speaker's eGeMAPS functionals are
   z-scored over that speaker's own utterances (:func:`zscore_per_group`)
   before the usual StandardScaler + RBF SVR with speaker-grouped inner CV
   (``bench_emodb_audio.fit_baselines``), as in the speech-emotion
   literature; then with and without the output-level step.

3. **One utterance heard alone** (``--single OTHER``): the networks of
   ``--workdir`` scored again with every test utterance as a recording of its
   own (the per-utterance corpus and cache of ``OTHER``, another work folder
   of the benchmark made with ``--group utterance``). A network with a speaker
   reference (``model_options.audio_reference``) then has only the utterance
   itself as its reference: the case of a short clip in which the speaker
   keeps one state, which is what ``mmaffect predict`` meets on such a clip.

It re-scores finished runs of ``benchmarks/bench_emodb_audio.py``: nothing is
trained but the SVR of step 2 (about 1.5 min on 2 cores). Printed: one table
(pooled CCC, mean ± std over seeds; per-fold CCC mean ± std over the test
speakers), the per-fold table and Wilcoxon signed-rank tests across the 8
folds (each network, normalised, against the SVR normalised the same way and
against itself raw). Also written: ``WORKDIR/speaker-norm.json``.

Usage::

    python benchmarks/bench_emodb_speaker_norm.py --workdir /tmp/li_band --models audio-li2019 --seeds 0 1 2
    python benchmarks/bench_emodb_speaker_norm.py --workdir /tmp/spk_ref --models audio-li2019 --seeds 0 1 2 \
        --no-svr --single /tmp/li_band

``--workdir`` is a work folder of ``bench_emodb_audio.py`` with its corpus,
``folds.json``, the runs of ``--models`` for ``--seeds``, and (for the SVR rows)
``baseline.json`` and ``egemaps.npz`` (the raw-file baseline; run the
benchmark without ``--no-baseline`` once).

A caveat the figures carry: on EmoDB every speaker acted every category, so
each speaker's label distribution is close to the training speakers'. On a
recording whose speaker is, say, only calm, the output-level step would move
the predictions towards the corpus mean; it measures the cause of an error,
it is not a step `mmaffect predict` takes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_emodb_audio as emodb  # noqa: E402
from _common import fmt_time, hardware  # noqa: E402

from mmaffect.utils.io import atomic_write_text  # noqa: E402

DIMS = emodb.DIMS
_EPS = 1e-9  # relative std below which a column counts as constant


def zscore_per_group(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each group's rows of ``x`` (N, F) standardised over that group: ``(x - mean_g) / std_g`` per
    column (population std); a column constant within a group becomes 0 there.

    >>> zscore_per_group(np.array([[1.0], [3.0], [10.0], [10.0]]), np.array(["a", "a", "b", "b"])).ravel().tolist()
    [-1.0, 1.0, 0.0, 0.0]
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    for g in np.unique(groups):
        rows = groups == g
        mu, sd = x[rows].mean(axis=0), x[rows].std(axis=0)
        varies = sd > _EPS * np.maximum(1.0, np.abs(mu))  # a constant column's std is rounding noise
        out[rows] = np.where(varies, (x[rows] - mu) / np.where(varies, sd, 1.0), 0.0)
    return out


def standardise_per_speaker(pred: np.ndarray, target_mean: np.ndarray, target_std: np.ndarray) -> np.ndarray:
    """One speaker's predictions (N, D) z-scored over the speaker and mapped to ``target_mean`` /
    ``target_std`` (D,), e.g. the training speakers' labels: ``(p - mean(p)) / std(p) * s + m``.
    A dimension whose predictions are constant becomes ``target_mean`` (no order to keep).

    >>> standardise_per_speaker(np.array([[0.5], [0.7]]), np.array([0.0]), np.array([0.4])).ravel().round(6).tolist()
    [-0.4, 0.4]
    """
    pred = np.asarray(pred, dtype=np.float64)
    mu, sd = pred.mean(axis=0), pred.std(axis=0)
    varies = sd > _EPS * np.maximum(1.0, np.abs(mu))
    z = np.where(varies, (pred - mu) / np.where(varies, sd, 1.0), 0.0)
    return z * np.asarray(target_std)[None, :] + np.asarray(target_mean)[None, :]


def label_stats(gold: np.ndarray, speakers: np.ndarray, train: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std (D,) of the labels of the ``train`` speakers' utterances."""
    g = gold[np.isin(speakers, train)]
    return g.mean(axis=0), g.std(axis=0)


def fold_predictions(per_fold: dict[str, np.ndarray], gold: np.ndarray, speakers: np.ndarray, folds: list[dict],
                     *, normalise: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{test: (pred, gold)}`` for :func:`bench_emodb_audio.summarize`; with ``normalise``, each test
    speaker's predictions through :func:`standardise_per_speaker` to its fold's training labels."""
    out = {}
    for f in folds:
        pred = per_fold[f["test"]]
        if normalise:
            pred = standardise_per_speaker(pred, *label_stats(gold, speakers, f["train"]))
        out[f["test"]] = (pred, gold[speakers == f["test"]])
    return out


def network_predictions(work: Path, model: str, seed: int, utts: list[dict], folds: list[dict]) -> dict[str, np.ndarray]:
    """One finished run per fold of ``model`` / ``seed`` in ``work``: its per-utterance predictions."""
    out = {}
    for f in folds:
        run = emodb.run_dir(work, model, f["test"], seed)
        pred_dir = run / "eval" / "predictions-best" / f"spk{f['test']}"
        if not pred_dir.is_dir():
            raise SystemExit(f"{pred_dir}: missing; run bench_emodb_audio.py --workdir {work} --models {model} "
                             f"--seeds {seed} first")
        out[f["test"]] = emodb.utterance_predictions(pred_dir, [u for u in utts if u["speaker"] == f["test"]])
    return out


def single_predictions(work: Path, single: Path, model: str, seed: int, utts: list[dict],
                       folds: list[dict]) -> dict[str, np.ndarray]:
    """Per-utterance predictions of each fold's run when every test utterance is its own recording:
    ``mmaffect evaluate`` of the run's best.pt on the per-utterance cache of ``single`` (written to
    ``RUN/eval-single``, reused when there)."""
    from mmaffect.training.evaluate import evaluate_checkpoint

    single_utts = emodb.utterances(single / "corpus")
    by_source = {u["source"]: u for u in single_utts}
    out = {}
    for f in folds:
        run = emodb.run_dir(work, model, f["test"], seed)
        part = f"spk{f['test']}"
        pred_dir = run / "eval-single" / "predictions-best" / part
        if not pred_dir.is_dir():
            print(f"  {model} seed {seed} fold {part}: each utterance alone", file=sys.stderr)
            evaluate_checkpoint(run / "best.pt", partitions=[part], cache=single / "cache", device="cpu",
                                out=run / "eval-single")
        mine = [u for u in utts if u["speaker"] == f["test"]]
        missing = [u["source"] for u in mine if u["source"] not in by_source]
        if missing:
            raise SystemExit(f"--single {single}: utterances {missing[:3]}... are not in its corpus")
        out[f["test"]] = emodb.utterance_predictions(pred_dir, [by_source[u["source"]] for u in mine])
    return out


def baseline_predictions(models: dict, name: str, utts: list[dict], folds: list[dict]) -> dict[str, np.ndarray]:
    """Per-fold predictions of baseline ``name`` from a baseline result (baseline.json's ``models``)."""
    out = {}
    for f in folds:
        entry = models[name]["folds"].get(f["test"])
        sources = [u["source"] for u in utts if u["speaker"] == f["test"]]
        if entry is None or entry["sources"] != sources:
            raise SystemExit(f"baseline {name}: no predictions for the utterances of speaker {f['test']}")
        out[f["test"]] = np.asarray(entry["pred"], dtype=np.float64)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="a work folder of bench_emodb_audio.py with finished runs")
    p.add_argument("--models", nargs="+", choices=emodb.MODELS, default=[], help="our models to re-score")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="their seeds (default 0)")
    p.add_argument("--no-svr", action="store_true", help="leave out the SVR rows (no baseline.json needed)")
    p.add_argument("--single", metavar="OTHER",
                   help="a work folder of bench_emodb_audio.py made with --group utterance: also score the "
                        "networks with every test utterance as its own recording (its cache)")
    args = p.parse_args(argv)

    wall0 = time.perf_counter()
    work = Path(args.workdir)
    if not (work / "folds.json").is_file() or not (work / "corpus").is_dir():
        raise SystemExit(f"{work}: not a work folder of bench_emodb_audio.py (no folds.json / corpus)")
    utts = emodb.utterances(work / "corpus")
    folds = json.loads((work / "folds.json").read_text())
    fold_ids = [f["test"] for f in folds]
    gold = np.asarray([u["gold"] for u in utts], dtype=np.float64)
    speakers = np.asarray([u["speaker"] for u in utts])
    rows: list[tuple[str, dict]] = []  # (label, combined summary)
    result: dict = {"workdir": str(work), "seeds": args.seeds, "folds": fold_ids, "rows": {}}

    def add(label: str, per_seed_preds: list[dict[str, np.ndarray]], normalise: bool) -> dict:
        summaries = [emodb.summarize(fold_predictions(pp, gold, speakers, folds, normalise=normalise))
                     for pp in per_seed_preds]
        s = emodb.combine_seeds(summaries, args.seeds[:len(summaries)])  # the SVR: one summary
        rows.append((label, s))
        result["rows"][label] = s
        return s

    nets = {}
    for model in args.models:
        preds = [network_predictions(work, model, seed, utts, folds) for seed in args.seeds]
        nets[model] = (add(f"{model}, raw", preds, False), add(f"{model}, outputs per speaker", preds, True))
        if args.single:
            alone = [single_predictions(work, Path(args.single), model, seed, utts, folds) for seed in args.seeds]
            add(f"{model}, each utterance alone", alone, False)
    svr = {}
    svr_s = 0.0
    if not args.no_svr:
        base_json, npz = work / "baseline.json", work / "egemaps.npz"
        if not base_json.is_file() or not npz.is_file():
            raise SystemExit(f"{work}: no baseline.json / egemaps.npz (run bench_emodb_audio.py there without "
                             "--no-baseline, or pass --no-svr)")
        base = json.loads(base_json.read_text())
        if base.get("loudness") is not None:
            raise SystemExit(f"{base_json}: made from loudness-normalised wavs; this script expects the raw files")
        raw = [baseline_predictions(base["models"], "svr", utts, folds)]
        svr["raw"] = add("eGeMAPS + SVR, raw", raw, False)
        svr["out"] = add("eGeMAPS + SVR, outputs per speaker", raw, True)
        x, _ = emodb.read_features(npz, utts)
        t0 = time.perf_counter()
        print("SVR on speaker-normalised eGeMAPS (grid search per fold and dimension)", file=sys.stderr)
        fitted = emodb.fit_baselines(zscore_per_group(x, speakers), gold, speakers, folds,
                                     [u["source"] for u in utts], names=("svr",))
        svr_s = time.perf_counter() - t0
        feat = [baseline_predictions(fitted, "svr", utts, folds)]
        svr["feat"] = add("eGeMAPS + SVR, features per speaker", feat, False)
        svr["both"] = add("eGeMAPS + SVR, features and outputs per speaker", feat, True)
        result["svr_feature_norm_params"] = {f: fitted["svr"]["folds"][f]["params"] for f in fold_ids}

    multi = len(args.seeds) > 1
    print(f"EmoDB leave one speaker out, {len(utts)} utterances, {len(folds)} folds; seeds "
          f"{', '.join(map(str, args.seeds))} for the networks; speaker normalisation uses the test speaker's "
          "utterances, never its labels.\n")
    print("| model | arousal CCC (pooled) | arousal per fold | valence CCC (pooled) | valence per fold |")
    print("|---|---:|---:|---:|---:|")
    for label, s in rows:
        cells = []
        for dim in DIMS:
            r = s[dim]
            spread = f" ± {r['pooled_seed_std']:.3f}" if multi and "pooled_seed_std" in r else ""
            cells += [f"{r['pooled']:.3f}{spread}", f"{r['fold_mean']:.3f} ± {r['fold_std']:.3f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"| goal (issue #12) | ≥ {emodb.GOALS['arousal']} | | ≥ {emodb.GOALS['valence']} | |\n")
    print("\n".join(emodb.fold_table(rows, fold_ids)) + "\n")

    # (key in the JSON, name in the printed line, what is compared, first, second)
    pairs: list[tuple[str, str, str, dict, dict]] = []
    for model, (raw_s, out_s) in nets.items():
        pairs.append((model, model, "outputs per speaker vs raw", out_s, raw_s))
        if svr:
            pairs += [(model, model, "outputs per speaker vs the SVR, outputs per speaker", out_s, svr["out"]),
                      (model, model, "outputs per speaker vs the SVR, features per speaker", out_s, svr["feat"])]
    if svr:
        pairs += [("svr", "SVR", "features per speaker vs raw", svr["feat"], svr["raw"]),
                  ("svr", "SVR", "features and outputs per speaker vs raw", svr["both"], svr["raw"])]
    tests: dict = {}
    for key, name, what, a, b in pairs:
        for dim in DIMS:
            w = emodb.wilcoxon_paired([a["folds"][f][dim] for f in fold_ids], [b["folds"][f][dim] for f in fold_ids])
            tests[f"{key}: {what}, {dim}"] = w
            print(f"* {name}, {what}, {dim}: per fold mean {w['mean_diff']:+.3f}, higher on {w['higher']} of "
                  f"{w['n']}; {emodb.wilcoxon_text(w)}.")
    result["tests"] = tests
    wall = time.perf_counter() - wall0
    result.update({"svr_fit_s": svr_s, "wall_s": wall, "hardware": hardware()})
    atomic_write_text(work / "speaker-norm.json", json.dumps(result, indent=1))
    print(f"\nWall time {fmt_time(wall)} (SVR on speaker-normalised features {fmt_time(svr_s)}). "
          f"Hardware: {hardware()}.")
    print("Command: python benchmarks/bench_emodb_speaker_norm.py " + " ".join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
