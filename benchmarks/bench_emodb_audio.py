"""Benchmark: audio on EmoDB, leave-one-speaker-out — our audio networks vs. eGeMAPS + ridge / SVR.

One script, the same folds and the same scoring for every model (issue #6, item 1):

1. **Data.** ``mmaffect adapt emodb`` (one 20-frame session per utterance, or
   with ``--group speaker`` one session per speaker,
   labels = the category → (valence, arousal) PROXY of ``shared/data/README.md``
   held over the utterance, partition ``spk<id>``) and ``mmaffect prepare ...
   text.enabled=false faces.enabled=false`` (audio + labels only). Both are
   kept in ``--workdir`` and reused by later runs.
2. **Folds.** Leave one speaker out over the 8 speakers. Fold ``spkXX``:
   test = speaker XX; devel (model selection) = the next speaker in sorted
   order, wrapping around; train = the other 6. The test speaker is never
   used for selection.
3. **Ours**, through the toolkit's own CLI as subprocesses: ``mmaffect train
   recipes/emodb/<model>.yaml data.cache=... data.train_partitions=[...]
   data.devel_partitions=[...] --out RUN`` (best epoch by devel CCC) and
   ``mmaffect evaluate RUN --partition spkXX``, for the paper's audio network
   (``audio-tzirakis2018``) and the two audio ablations (``audio-trigeorgis2016``,
   ``audio-li2019``). Score per utterance: the mean of the predictions on the
   utterance's frames (its span in segments.csv), read from the prediction
   files ``evaluate`` writes, against its proxy label.
4. **Baseline**, in a separate process (torch and scikit-learn in one process
   can slow torch down 4x on 2 cores): openSMILE eGeMAPSv02 functionals (88)
   of each original wav, then per dimension a pipeline StandardScaler +
   Ridge and StandardScaler + RBF SVR, fitted on the 7 non-test speakers,
   hyper-parameters (ridge alpha; SVR C, gamma) by grid search with
   cross-validation grouped by speaker on those 7 speakers, scored by CCC.
   ``--baseline-loudness LUFS`` first normalises each wav to that integrated
   loudness, as ``mmaffect prepare`` does for every recording the networks see
   (EmoDB has one utterance per file, so this removes the absolute level
   between utterances; the default, raw files, keeps it).
5. One Markdown table: CCC per dimension pooled over all utterances of all
   folds, and the per-fold CCC mean ± std (ddof=1) over the test speakers
   (the "fold spread"), train time; then the goals of issue #6, computed.

Usage::

    nice -n 10 python benchmarks/bench_emodb_audio.py [--data DIR] [--workdir DIR] [--quick]
        [--models audio-li2019 ...] [--recipe YAML ...] [--folds 08 10 ...] [--epochs N] [--seeds 0 1 2] [--jobs 2]
        [--prepare audio.loudness=null ...] [--baseline-loudness -23] [--compare OTHER_WORKDIR] [key=value ...]

Runs are resumable: a fold/model whose evaluation exists is reused, one with
a ``last.pt`` but no evaluation is continued with ``mmaffect train - --resume``.
``--recipe YAML`` trains the model of that YAML's ``model_name`` from it
instead of ``recipes/emodb/<model>.yaml`` (e.g.
``recipes/emodb/audio-li2019-speaker.yaml`` with ``--group speaker``).
``--jobs`` runs (fold, model) trainings in parallel processes of ``--threads``
torch threads each (default 2 × 1: on 2 shared cores, two single-threaded
processes were 3-5x faster than one process with 2 threads competing with
other jobs). ``--quick``: the first 110 utterances (speakers 08, 10 and part
of 11), folds 08 and 10, one epoch of tiny networks (smoke run for tests; the
figures mean nothing). ``--seeds 0 1 2`` trains every (model, fold) once per
seed (seed 0 in ``runs/MODEL/fold-spkXX``, seed S in
``runs/MODEL/seed-S/fold-spkXX``): pooled CCC as mean ± std over seeds,
per-fold CCC as the seed mean. Also printed: per model the runs whose
test-utterance predictions are (near) constant, the slow starts (train loss
still ≥ 0.99 after epoch 1) and the runs whose best epoch is the last; a
Wilcoxon signed-rank test across folds of each model vs the SVR; the per-fold
table. ``--compare DIR`` adds a paired comparison with the same models in
another work folder of this script (another recipe: e.g. ``--epochs 16
optim.scheduler=warmup-cosine`` here against the recipe there), on the seeds and
folds both have: pooled and per-fold CCC side by side, the per-fold
differences and their Wilcoxon test. CCC: population moments
(:func:`mmaffect.training.metrics.ccc`). The data are research-only: the work
folder must stay outside the repository (default: a folder under /tmp).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mmaffect.utils.io import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, corpus_dir, fmt_time, hardware, run_cli, work_dir  # noqa: E402

RECIPES = REPO / "recipes" / "emodb"
MODELS = ("audio-tzirakis2018", "audio-trigeorgis2016", "audio-li2019")
MODEL_LABELS = {
    "audio-tzirakis2018": "audio-tzirakis2018, the paper's audio network (ours)",
    "audio-trigeorgis2016": "audio-trigeorgis2016, ablation (ours)",
    "audio-li2019": "audio-li2019, ablation (ours)",
}
PREPARE_OVERRIDES = ["text.enabled=false", "faces.enabled=false"]
QUICK_LIMIT = 110  # utterances in file-name order: spk08 (58), spk10 (38), 14 of spk11
QUICK_FOLDS = ("08", "10")
QUICK_OVERRIDES = ["optim.epochs=1"]
GOALS = {"arousal": 0.85, "valence": 0.45}
DIMS = ("arousal", "valence")
# Baseline grids (per dimension; standardised eGeMAPS inputs, 88 features)
RIDGE_ALPHAS = [float(a) for a in np.logspace(-1, 4, 11)]
SVR_GRID = {"svr__C": [0.3, 1.0, 3.0, 10.0, 30.0, 100.0], "svr__gamma": [0.0003, 0.001, 0.003, 0.01]}
INNER_SPLITS = 7  # grouped by speaker: 7 speakers of the training fold = leave one speaker out


# ----------------------------------------------------------------------------- helpers


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    return env


def _cli(args: list[str], *, log: Path, threads: int) -> tuple[str, float]:
    """Run ``python -m mmaffect.cli ARGS`` with ``threads`` torch threads; stdout and wall time.

    Raises ``RuntimeError`` (not ``SystemExit``) so that a failing fold run in a
    worker thread reaches the main thread.
    """
    try:
        return run_cli(args, log=log, env=_env(threads))
    except SystemExit as exc:
        raise RuntimeError(str(exc)) from None


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _yaml_value(v: object) -> str:
    return json.dumps(list(v) if isinstance(v, tuple) else v)


def tiny_model_overrides(model: str) -> list[str]:
    """``model_options.K=V`` overrides of the zoo's tiny options (for --quick)."""
    from mmaffect.models.zoo import tiny_overrides

    return [f"model_options.{k}={_yaml_value(v)}" for k, v in tiny_overrides(model).items()]


def utterances(corpus: Path) -> list[dict]:
    """Every utterance of the adapted corpus: session, speaker, wav, span in its session, gold.

    One session per utterance (``--group utterance``) or per speaker (``--group speaker``: the
    speaker's utterances one after another in one recording). ``gold`` = (arousal, valence) of the
    category proxy, as segments.csv gives it.
    """
    out = []
    for split in _read_csv(corpus / "splits.csv"):
        for seg in _read_csv(corpus / split["session"] / "segments.csv"):
            out.append({"session": split["session"], "partition": split["partition"],
                        "speaker": split["partition"].removeprefix("spk"), "source": seg["source"],
                        "category": seg["category"], "start": float(seg["start"]), "end": float(seg["end"]),
                        "gold": (float(seg["proxy_arousal"]), float(seg["proxy_valence"]))})
    return out


def make_folds(speakers: list[str], only: list[str] | None) -> list[dict]:
    """Leave-one-speaker-out folds: test = s, devel = the next speaker (sorted, wrapping), train = the rest."""
    speakers = sorted(speakers)
    folds = []
    for i, s in enumerate(speakers):
        if only and s not in only:
            continue
        dev = speakers[(i + 1) % len(speakers)]
        folds.append({"test": s, "devel": dev, "train": [x for x in speakers if x not in (s, dev)]})
    if only and len(folds) != len(set(only)):
        raise SystemExit(f"--folds {only}: unknown speaker(s); speakers are {speakers}")
    return folds


def utterance_predictions(pred_dir: Path, utts: list[dict]) -> np.ndarray:
    """One (arousal, valence) prediction per utterance: the mean over the frames of its span.

    Checks that the gold labels in the prediction files equal the utterance's proxy.
    """
    from mmaffect.training.evaluate import read_predictions

    preds = []
    files: dict[Path, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # a speaker's recording holds many
    for u in utts:
        path = pred_dir / f"{u['session']}.csv"
        if path not in files:
            if not path.is_file():
                raise SystemExit(f"{path}: missing (mmaffect evaluate did not predict {u['session']})")
            files[path] = read_predictions(path)
        times, pred, gold = files[path]
        sel = (times >= u["start"] - 1e-6) & (times < u["end"] - 1e-6)
        if not sel.any():
            raise SystemExit(f"{path}: no frame in {u['start']}-{u['end']} s")
        if not np.allclose(gold[sel], np.asarray(u["gold"])[None, :], atol=1e-4):
            raise SystemExit(f"{path}: gold labels differ from the proxy of {u['source']}")
        preds.append(pred[sel].mean(axis=0))
    return np.asarray(preds)


def summarize(per_fold: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Pooled CCC over all utterances of all folds, per-fold CCC and their mean ± std (ddof=1)."""
    from mmaffect.training.metrics import ccc

    pred = np.concatenate([p for p, _ in per_fold.values()])
    gold = np.concatenate([g for _, g in per_fold.values()])
    out: dict = {"n": len(gold), "folds": {}}
    for d, name in enumerate(DIMS):
        folds = {s: ccc(p[:, d], g[:, d]) for s, (p, g) in per_fold.items()}
        vals = np.asarray(list(folds.values()))
        out[name] = {"pooled": ccc(pred[:, d], gold[:, d]), "fold_mean": float(vals.mean()),
                     "fold_std": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")}
        for s, v in folds.items():
            out["folds"].setdefault(s, {})[name] = v
    return out


def run_dir(work: Path, model: str, test: str, seed: int) -> Path:
    """Run folder of one (model, fold, seed); seed 0 keeps the layout of single-seed work folders."""
    base = work / "runs" / model
    return (base if seed == 0 else base / f"seed-{seed}") / f"fold-spk{test}"


def seed_mean(per_seed: list[dict], folds: list[str]) -> dict:
    """Per-seed summaries on ``folds`` combined: pooled CCC = mean over seeds (± their std, ddof=1;
    NaN for one seed); per-fold CCC = the mean over seeds, its mean ± std over folds = the fold spread."""
    out: dict = {"folds": {f: {} for f in folds}}
    for dim in DIMS:
        pooled = np.asarray([s[dim]["pooled"] for s in per_seed])
        for f in folds:
            out["folds"][f][dim] = float(np.mean([s["folds"][f][dim] for s in per_seed]))
        vals = np.asarray([out["folds"][f][dim] for f in folds])
        out[dim] = {"pooled": float(pooled.mean()),
                    "pooled_seed_std": float(pooled.std(ddof=1)) if len(pooled) > 1 else float("nan"),
                    "fold_mean": float(vals.mean()),
                    "fold_std": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")}
    return out


def combine_seeds(per_seed: list[dict], seeds: list[int]) -> dict:
    """One summary from per-seed summaries (:func:`seed_mean` over all their folds); one seed's as it is."""
    if len(per_seed) == 1:
        return {**per_seed[0], "seeds": seeds}
    return {"n": per_seed[0]["n"], "seeds": seeds, "per_seed": per_seed,
            **seed_mean(per_seed, list(per_seed[0]["folds"]))}


CONSTANT_STD = 0.01  # a run whose test-utterance predictions vary less than this on both dimensions is "constant"


def constant_folds(spread: dict[str, dict[str, list[float]]]) -> list[str]:
    """``seed S fold XX`` for every run whose utterance predictions on its test speaker are (near) constant."""
    return [f"seed {seed} fold {fold}" for seed, folds in spread.items() for fold, std in folds.items()
            if max(std) < CONSTANT_STD]


def wilcoxon_paired(a: list[float], b: list[float]) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired per-fold CCCs ``a`` vs ``b``, with the
    differences' median and mean and how many folds are higher / lower."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    if np.any(diff != 0):
        res = wilcoxon(a, b, alternative="two-sided")
        stat, p = float(res.statistic), float(res.pvalue)
    else:  # every difference zero: nothing to test (scipy would warn and say p = 1 or raise)
        stat, p = float("nan"), float("nan")
    return {"n": len(a), "median_diff": float(np.median(diff)), "mean_diff": float(diff.mean()),
            "higher": int((diff > 0).sum()), "lower": int((diff < 0).sum()), "statistic": stat, "p": p}


def wilcoxon_vs_svr(ours: dict, svr: dict, folds: list[str], dim: str) -> dict:
    """Two-sided Wilcoxon signed-rank test of per-fold CCC, ours vs the SVR (paired by test speaker)."""
    a = [ours["folds"][f][dim] for f in folds]
    b = [svr["folds"][f][dim] for f in folds]
    return {**wilcoxon_paired(a, b), "ours": a, "svr": b}


def wilcoxon_text(w: dict) -> str:
    """``median difference +0.012, W = 3, p = 0.0234 (two-sided...)`` for a result of :func:`wilcoxon_paired`."""
    if math.isnan(w["p"]):
        return "no test, every difference is zero"
    return (f"median difference {w['median_diff']:+.3f}, W = {w['statistic']:g}, p = {w['p']:.4f} (two-sided"
            + ("; 8 folds: smallest possible p = 0.0078)" if w["n"] == 8 else ")"))


SLOW_START_LOSS = 0.99  # a run whose train loss after its first epoch is still >= this started slowly


def recipe_paths(paths: list[str], models: list[str]) -> dict[str, Path]:
    """Model -> its training YAML: ``recipes/emodb/<model>.yaml`` unless one of ``paths`` (``--recipe``)
    has that ``model_name``. A recipe for a model not in ``models``, or a missing file, stops the run."""
    import yaml

    out = {m: RECIPES / f"{m}.yaml" for m in models}
    for p in paths:
        path = Path(p).resolve()
        if not path.is_file():
            raise SystemExit(f"--recipe {p}: no such file")
        name = (yaml.safe_load(path.read_text()) or {}).get("model_name")
        if name not in models:
            raise SystemExit(f"--recipe {p}: its model_name {name!r} is not one of --models ({', '.join(models)})")
        out[name] = path
    return out


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    return os.path.relpath(path, REPO) if path.is_relative_to(REPO) else str(path)


def seed_summaries(s: dict) -> dict[int, dict]:
    """Seed -> that seed's summary (pooled CCC and per-fold CCC) of a model's entry in results.json."""
    seeds = [int(x) for x in s.get("seeds", [0])]
    return dict(zip(seeds, s["per_seed"] if "per_seed" in s else [s]))


def compare_runs(this: dict, other: dict, folds: list[str]) -> dict:
    """Paired comparison of one model's results in two work folders (e.g. two recipes) on the seeds
    and ``folds`` they share: each side's :func:`seed_mean` over the common seeds; per dimension the
    per-fold differences this − other with a Wilcoxon test. Pairing by seed and fold: the same seed
    gives the same initial weights in both runs."""
    a, b = seed_summaries(this), seed_summaries(other)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise SystemExit(f"--compare: no seed in common (this run: {sorted(a)}, the other: {sorted(b)})")
    out: dict = {"seeds": seeds, "folds": folds, "this": seed_mean([a[s] for s in seeds], folds),
                 "other": seed_mean([b[s] for s in seeds], folds)}
    for dim in DIMS:
        w = wilcoxon_paired([out["this"]["folds"][f][dim] for f in folds],
                            [out["other"]["folds"][f][dim] for f in folds])
        out[dim] = {**w, "pooled_diff": out["this"][dim]["pooled"] - out["other"][dim]["pooled"]}
    return out


def fold_table(rows: list[tuple[str, dict]], folds: list[str]) -> list[str]:
    """Markdown table of per-fold CCC, ``arousal / valence`` per test speaker, one row per (label, summary)."""
    lines = ["| test speaker (arousal / valence) | " + " | ".join(folds) + " |", "|---|" + "---|" * len(folds)]
    for label, s in rows:
        lines.append(f"| {label} | " + " | ".join(f"{s['folds'][f]['arousal']:.3f} / {s['folds'][f]['valence']:.3f}"
                                                 for f in folds) + " |")
    return lines


def comparison_lines(model: str, cmp: dict, this_label: str, other_label: str) -> list[str]:
    """The printed part of ``--compare``: a pooled table, a per-fold table and the paired tests."""
    seeds = cmp["seeds"]
    multi = len(seeds) > 1

    def pooled(r: dict) -> str:
        return f"{r['pooled']:.3f}" + (f" ± {r['pooled_seed_std']:.3f}" if multi else "")

    lines = [f"Paired comparison, {model}, seed{'s' if multi else ''} {', '.join(map(str, seeds))}, "
             f"{len(cmp['folds'])} folds (per-fold figures: the seed mean):", "",
             f"| {model} | arousal pooled | arousal per fold | valence pooled | valence per fold |",
             "|---|---:|---:|---:|---:|"]
    for label, key in ((this_label, "this"), (other_label, "other")):
        r = cmp[key]
        lines.append(f"| {label} | {pooled(r['arousal'])} | {r['arousal']['fold_mean']:.3f} ± "
                     f"{r['arousal']['fold_std']:.3f} | {pooled(r['valence'])} | {r['valence']['fold_mean']:.3f} ± "
                     f"{r['valence']['fold_std']:.3f} |")
    lines.append("")
    lines += fold_table([(this_label, cmp["this"]), (other_label, cmp["other"])], cmp["folds"])
    lines.append("")
    for dim in DIMS:
        c = cmp[dim]
        lines.append(f"* {dim}, first − second: pooled {c['pooled_diff']:+.3f}; per fold mean {c['mean_diff']:+.3f}, "
                     f"higher on {c['higher']} and lower on {c['lower']} of {c['n']} folds; Wilcoxon signed-rank "
                     f"across folds: {wilcoxon_text(c)}.")
    return lines


# ----------------------------------------------------------------------------- baseline (own process)


def egemaps_input(path: Path, loudness: float | None) -> tuple[np.ndarray, int]:
    """The baseline's input: a wav as float32 mono samples; with ``loudness`` (LUFS), scaled by the
    same integrated-loudness gain that ``mmaffect prepare`` applies to a recording."""
    import soundfile as sf

    from mmaffect.preprocess.audio import apply_gain
    from mmaffect.preprocess.loudness import normalisation_gain_db

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if loudness is not None:
        gain_db, _ = normalisation_gain_db([x], sample_rate=sr, target=loudness)
        x = apply_gain(x, gain_db)
    return x, sr


def fit_baselines(x: np.ndarray, y: np.ndarray, speakers: np.ndarray, folds: list[dict], sources: list[str],
                  names: tuple[str, ...] = ("ridge", "svr")) -> dict:
    """Per fold and dimension, StandardScaler + ridge / RBF SVR on the non-test speakers' rows of ``x``
    (hyper-parameters by speaker-grouped inner CV, scored by CCC); predictions on the test speaker.

    Returns ``{name: {"folds": {test: {"sources", "pred", "params"}}, "fit_s"}}``.
    """
    from sklearn.linear_model import Ridge
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    from mmaffect.training.metrics import ccc

    scorer = make_scorer(lambda g, p: ccc(np.asarray(p), np.asarray(g)))
    models = {
        "ridge": (Pipeline([("scale", StandardScaler()), ("ridge", Ridge())]), {"ridge__alpha": RIDGE_ALPHAS}),
        "svr": (Pipeline([("scale", StandardScaler()), ("svr", SVR(kernel="rbf"))]), SVR_GRID),
    }
    out: dict = {}
    for name in names:
        pipe, grid = models[name]
        t1 = time.perf_counter()
        per_fold: dict = {}
        for fold in folds:
            test = speakers == fold["test"]
            train = ~test
            n_groups = len(set(speakers[train]))
            pred = np.zeros((int(test.sum()), len(DIMS)))
            params = {}
            for d, dim in enumerate(DIMS):
                search = GridSearchCV(pipe, grid, scoring=scorer, cv=GroupKFold(n_splits=min(INNER_SPLITS, n_groups)),
                                      n_jobs=1)
                search.fit(x[train], y[train, d], groups=speakers[train])
                pred[:, d] = search.predict(x[test])
                params[dim] = {k.split("__", 1)[1]: v for k, v in search.best_params_.items()}
            per_fold[fold["test"]] = {"sources": [src for src, t in zip(sources, test) if t],
                                      "pred": pred.tolist(), "params": params}
        out[name] = {"folds": per_fold, "fit_s": time.perf_counter() - t1}
    return out


def read_features(features_npz: Path, utts: list[dict]) -> tuple[np.ndarray, float]:
    """The eGeMAPS functionals saved by the baseline (one row per utterance of ``utts``) and the seconds
    they took; refuses a file made for other utterances."""
    saved = np.load(features_npz, allow_pickle=False)
    if list(saved["sources"]) != [u["source"] for u in utts]:
        raise SystemExit(f"{features_npz}: made for other utterances; delete it")
    return saved["x"], float(saved["seconds"])


def run_baseline(corpus: Path, src: Path, folds_json: Path, features_npz: Path, out_json: Path,
                 loudness: float | None = None) -> None:
    """eGeMAPS functionals + ridge / RBF SVR per fold; writes per-utterance predictions and times as JSON.
    ``loudness``: normalise each file to that many LUFS first (None: the raw files)."""
    utts = utterances(corpus)
    folds = json.loads(folds_json.read_text())
    t0 = time.perf_counter()
    if features_npz.is_file():
        x, feat_s = read_features(features_npz, utts)
    else:
        import opensmile

        smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                feature_level=opensmile.FeatureLevel.Functionals)
        x = np.stack([smile.process_signal(*egemaps_input(src / "wav" / u["source"], loudness)).to_numpy()[0]
                      for u in utts]).astype(np.float64)
        feat_s = time.perf_counter() - t0
        tmp = features_npz.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, sources=np.asarray([u["source"] for u in utts]), seconds=feat_s)
        os.replace(tmp, features_npz)
    if not np.isfinite(x).all():
        raise SystemExit("eGeMAPS features contain non-finite values")
    y = np.asarray([u["gold"] for u in utts])
    speakers = np.asarray([u["speaker"] for u in utts])
    result: dict = {"features_s": feat_s, "n_features": int(x.shape[1]), "loudness": loudness,
                    "models": fit_baselines(x, y, speakers, folds, [u["source"] for u in utts])}
    atomic_write_text(out_json, json.dumps(result, indent=1))


# ----------------------------------------------------------------------------- ours (CLI subprocesses)


def run_fold(model: str, config: Path, fold: dict, cache: Path, run: Path, overrides: list[str], log: Path,
             threads: int) -> dict:
    """Train (or continue) and evaluate one fold of one model; reuse a finished one. Returns times."""
    part = f"spk{fold['test']}"
    scores = run / "eval" / "scores-best.csv"
    pred_dir = run / "eval" / "predictions-best" / part
    times_json = run / "bench-times.json"
    times = json.loads(times_json.read_text()) if times_json.is_file() else {"train_wall_s": 0.0, "eval_wall_s": 0.0}
    if scores.is_file() and pred_dir.is_dir():
        times["reused"] = True
        return times
    if (run / "last.pt").is_file():
        print(f"  {model} fold {part}: continuing {run}", file=sys.stderr)
        _, t = _cli(["train", "-", "--resume", "--out", str(run), "--quiet"], log=log, threads=threads)
    else:
        print(f"  {model} fold {part}: training -> {run}", file=sys.stderr)
        args = ["train", str(config), f"data.cache={cache}",
                "data.train_partitions=[" + ",".join(f"spk{s}" for s in fold["train"]) + "]",
                f"data.devel_partitions=[spk{fold['devel']}]", *overrides, "--out", str(run), "--quiet"]
        _, t = _cli(args, log=log, threads=threads)
    times["train_wall_s"] += t
    atomic_write_text(times_json, json.dumps(times))
    _, t = _cli(["evaluate", str(run), "--partition", part, "--device", "cpu"], log=log, threads=threads)
    times["eval_wall_s"] += t
    atomic_write_text(times_json, json.dumps(times))
    times["reused"] = False
    return times


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="EmoDB folder (labels.csv, sentences.csv, wav/; default: the shared data's emodb/)")
    p.add_argument("--workdir", help="work folder, reused between runs (default: /tmp/mmaffect-bench-emodb"
                                     "[-quick]); keep it outside the repository (research-only data)")
    p.add_argument("--quick", action="store_true", help="110 utterances, folds 08 and 10, 1 epoch, tiny networks")
    p.add_argument("--group", choices=["utterance", "speaker"], default="utterance",
                   help="one recording per utterance (default) or per speaker (`mmaffect adapt emodb --group "
                        "speaker`: loudness normalised per speaker, and the reference of "
                        "model_options.audio_reference is the speaker); a work folder is tied to it")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="our models to run")
    p.add_argument("--folds", nargs="+", help="test speakers to run (default: all; e.g. --folds 08 10)")
    p.add_argument("--epochs", type=int, help="optim.epochs for every model (default: the recipes')")
    p.add_argument("--recipe", action="append", default=[], metavar="YAML",
                   help="train the model named in this YAML's model_name from it instead of "
                        "recipes/emodb/<model>.yaml; repeatable (e.g. recipes/emodb/audio-li2019-speaker.yaml)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="training seeds (default 0); with several, CCCs are mean ± std over seeds and the "
                        "per-fold figures use the seed mean")
    p.add_argument("--jobs", type=int, default=2, help="(fold, model) runs in parallel processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--no-baseline", action="store_true", help="skip the eGeMAPS baseline")
    p.add_argument("--baseline-loudness", type=float, metavar="LUFS",
                   help="normalise each wav to this integrated loudness before eGeMAPS, as `mmaffect prepare` "
                        "does for the networks (default: the raw files)")
    p.add_argument("--prepare", action="append", default=[], metavar="KEY=VALUE",
                   help="extra `mmaffect prepare` override, repeatable (e.g. audio.loudness=null); a work "
                        "folder is tied to them")
    p.add_argument("--compare", metavar="DIR",
                   help="another work folder of this script (e.g. another recipe): after the table, a paired "
                        "comparison of every model in both, on the seeds and folds they share (per-fold "
                        "differences, Wilcoxon signed-rank test)")
    p.add_argument("overrides", nargs="*", help="extra key=value overrides for `mmaffect train`")
    p.add_argument("--baseline-child", nargs=5, metavar=("CORPUS", "SRC", "FOLDS", "NPZ", "JSON"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.baseline_child:
        corpus, src, folds_json, npz, out = map(Path, args.baseline_child)
        run_baseline(corpus, src, folds_json, npz, out, args.baseline_loudness)
        return 0
    recipes = recipe_paths(args.recipe, args.models)
    other = None
    if args.compare:
        other_json = Path(args.compare) / "results.json"
        if not other_json.is_file():
            raise SystemExit(f"--compare {args.compare}: no results.json there (run this script there first)")
        other = json.loads(other_json.read_text())

    wall0 = time.perf_counter()
    src = corpus_dir(args.data, "emodb", "EmoDB")
    if not (src / "labels.csv").is_file():
        raise SystemExit(f"{src}: no EmoDB labels.csv there")
    src = src.resolve()
    mode = "quick" if args.quick else "full"
    default = Path(tempfile.gettempdir()) / ("mmaffect-bench-emodb" + ("-quick" if args.quick else ""))
    prepare_overrides = [*PREPARE_OVERRIDES, *args.prepare]
    if args.quick and args.group == "speaker":
        raise SystemExit("--quick takes the first 110 utterances, one recording each: use it with --group utterance")
    info = {"mode": mode, "source": str(src), "prepare": prepare_overrides}
    if args.group != "utterance":  # folders of utterance runs keep their marker
        info["group"] = args.group
    work = work_dir(args.workdir, default, info=info)
    log = work / "bench.log"
    corpus, cache = work / "corpus", work / "cache"
    parts: dict[str, float] = {}

    # 1. adapt + prepare (reused when present)
    t0 = time.perf_counter()
    if not (corpus / "adapter.json").is_file():
        print(f"adapting {src} -> {corpus}", file=sys.stderr)
        _cli(["adapt", "emodb", "--src", str(src), "--out", str(corpus), "--group", args.group,
              *(["--limit", str(QUICK_LIMIT)] if args.quick else [])], log=log, threads=args.threads)
    print(f"preparing {cache} (reuses computed streams)", file=sys.stderr)
    _cli(["prepare", str(corpus), "--out", str(cache), "--quiet", *prepare_overrides], log=log, threads=args.threads)
    parts["adapt + prepare"] = time.perf_counter() - t0
    utts = utterances(corpus)
    speakers = sorted({u["speaker"] for u in utts})
    folds = make_folds(speakers, list(QUICK_FOLDS) if args.quick and not args.folds else args.folds)
    folds_json = work / "folds.json"
    atomic_write_text(folds_json, json.dumps(folds, indent=1))

    # 2. the baseline (own process) and our (fold, model) runs, `--jobs` at a time
    t0 = time.perf_counter()
    # the baseline's files name its input (raw wavs, or normalised to N LUFS)
    base_tag = "" if args.baseline_loudness is None else f"-loudness{args.baseline_loudness:g}"
    base_json, base_npz = work / f"baseline{base_tag}.json", work / f"egemaps{base_tag}.npz"

    def baseline_task() -> float:
        tb = time.perf_counter()
        if base_json.is_file() and sorted(json.loads(base_json.read_text())["models"]["svr"]["folds"]) == sorted(
                f["test"] for f in folds):
            return 0.0
        print("baseline: eGeMAPS functionals + ridge / RBF SVR (own process)", file=sys.stderr)
        proc = subprocess.run([sys.executable, __file__, "--baseline-child", str(corpus), str(src), str(folds_json),
                               str(base_npz), str(base_json),
                               *([f"--baseline-loudness={args.baseline_loudness}"]
                                 if args.baseline_loudness is not None else [])], cwd=REPO, env=_env(args.threads),
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError("baseline failed")
        return time.perf_counter() - tb

    extra = [*(QUICK_OVERRIDES if args.quick else []),
             *([f"optim.epochs={args.epochs}"] if args.epochs else []), *args.overrides]
    tasks: list[tuple[str, object]] = [] if args.no_baseline else [("baseline", baseline_task)]
    seeds = list(dict.fromkeys(args.seeds))
    for seed in seeds:
        for model in args.models:
            config = recipes[model]
            ov = [*(tiny_model_overrides(model) if args.quick else []), *extra, *([f"seed={seed}"] if seed else [])]
            for fold in folds:
                run = run_dir(work, model, fold["test"], seed)
                tasks.append(((model, fold["test"], seed), lambda m=model, c=config, f=fold, r=run, o=ov:
                              run_fold(m, c, f, cache, r, o, log, args.threads)))
    results: dict = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(fn): key for key, fn in tasks}
        failed = []
        for fut in concurrent.futures.as_completed(futures):
            try:
                results[futures[fut]] = fut.result()
            except Exception as exc:  # noqa: BLE001 - report every failure, then stop
                failed.append(f"{futures[fut]}: {exc}")
    if failed:
        raise SystemExit("failed:\n" + "\n".join(failed))
    parts["baseline + training + evaluation (parallel)"] = time.perf_counter() - t0

    # 3. scores
    test_utts = {f["test"]: [u for u in utts if u["speaker"] == f["test"]] for f in folds}
    rows, summary = [], {}
    for model in args.models:
        per_seed, train_s, best_epochs, n_epochs, spread, slow = [], 0.0, [], [], {}, []
        for seed in seeds:
            per_fold = {}
            for fold in folds:
                run = run_dir(work, model, fold["test"], seed)
                us = test_utts[fold["test"]]
                pred = utterance_predictions(run / "eval" / "predictions-best" / f"spk{fold['test']}", us)
                per_fold[fold["test"]] = (pred, np.asarray([u["gold"] for u in us]))
                spread.setdefault(str(seed), {})[fold["test"]] = pred.std(axis=0).tolist()
                history = _read_csv(run / "log.csv")
                train_s += sum(float(r["seconds"]) for r in history)
                best_epochs.append(int(max(history, key=lambda r: float(r["dev_mean"]))["epoch"]))
                n_epochs.append(len(history))
                if float(history[0]["train_loss"]) >= SLOW_START_LOSS:
                    slow.append(f"seed {seed} fold {fold['test']} ({float(history[0]['train_loss']):.3f})")
            per_seed.append(summarize(per_fold))
        s = combine_seeds(per_seed, seeds)
        s.update({"train_s": train_s, "best_epochs": best_epochs, "epochs": n_epochs,
                  "config": _shown(recipes[model]), "pred_std": spread,
                  "constant_folds": constant_folds(spread), "slow_starts": slow})
        summary[model] = s
        rows.append((MODEL_LABELS[model], s))
    base = None
    if not args.no_baseline:
        base = json.loads(base_json.read_text())
        src_to_gold = {u["source"]: u["gold"] for u in utts}
        on = "" if args.baseline_loudness is None else f", each wav at {args.baseline_loudness:g} LUFS"
        for name, label in (("ridge", f"eGeMAPS + ridge (baseline{on})"), ("svr", f"eGeMAPS + RBF SVR (baseline{on})")):
            per_fold = {}
            for fold in folds:
                f = base["models"][name]["folds"][fold["test"]]
                per_fold[fold["test"]] = (np.asarray(f["pred"]), np.asarray([src_to_gold[x] for x in f["sources"]]))
            s = summarize(per_fold)
            s.update({"train_s": base["features_s"] + base["models"][name]["fit_s"],
                      "params": {k: v["params"] for k, v in base["models"][name]["folds"].items()}})
            summary[name] = s
            rows.append((label, s))

    # 4. table + goals
    def cell(s: dict, dim: str) -> tuple[str, str]:
        pooled = f"{s[dim]['pooled']:.3f}"
        if len(s.get("seeds", [])) > 1:
            pooled += f" ± {s[dim]['pooled_seed_std']:.3f}"
        return pooled, f"{s[dim]['fold_mean']:.3f} ± {s[dim]['fold_std']:.3f}"

    n_test = sum(len(v) for v in test_utts.values())
    lines = [
        f"EmoDB, leave-one-speaker-out: {len(folds)} folds (test speakers {', '.join(f['test'] for f in folds)}), "
        f"{n_test} test utterances" + (" (--quick: smoke run, not a result)" if args.quick else "")
        + "; CCC per utterance against the category proxy (population moments)"
        + (f"; ours: {len(seeds)} seeds ({', '.join(map(str, seeds))}), pooled CCC = mean ± std over seeds, "
           "per-fold figures of the seed mean" if len(seeds) > 1 else ""),
        "",
        ("| model | arousal CCC (pooled) | arousal per fold (mean ± std) | valence CCC (pooled) "
         "| valence per fold (mean ± std) | train time |"),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, s in rows:
        a, af = cell(s, "arousal")
        v, vf = cell(s, "valence")
        lines.append(f"| {label} | {a} | {af} | {v} | {vf} | {fmt_time(s['train_s'])} |")
    lines.append(f"| goal (issue #6) | ≥ {GOALS['arousal']:.2f} | | ≥ {GOALS['valence']:.2f} | | |")
    lines.append("")
    goals: dict = {}
    for model in args.models:
        s = summary[model]
        g: dict = {}
        parts_txt = []
        for dim in DIMS:
            g[dim] = {"value": s[dim]["pooled"], "goal": GOALS[dim], "met": bool(s[dim]["pooled"] >= GOALS[dim])}
            parts_txt.append(f"{dim} {s[dim]['pooled']:.3f} ≥ {GOALS[dim]:.2f} "
                             + ("met" if g[dim]["met"] else "not met"))
        if base is not None:
            for dim in DIMS:
                diffs = np.asarray([s["folds"][f["test"]][dim] - summary["svr"]["folds"][f["test"]][dim]
                                    for f in folds])
                margin = float(diffs.mean())
                spread = max(s[dim]["fold_std"], summary["svr"][dim]["fold_std"])
                met = bool(margin > spread)
                g[f"beats_svr_{dim}"] = {"margin": margin, "spread": spread, "met": met,
                                         "diff_std": float(diffs.std(ddof=1)) if len(diffs) > 1 else float("nan")}
                parts_txt.append(f"beats the SVR on {dim} by more than the fold spread: "
                                 f"{'met' if met else 'not met'} (per-fold mean difference {margin:+.3f}, "
                                 f"spread {spread:.3f})")
        goals[model] = g
        lines.append(f"* {model}: " + "; ".join(parts_txt) + ".")
    lines.append("")
    lines.append("Goals (issue #6): pooled arousal CCC ≥ 0.85 and valence ≥ 0.45; beat the SVR on both dimensions "
                 "by more than the fold spread = the mean over folds of (ours − SVR) per-fold CCC exceeds the larger "
                 "of the two models' per-fold std (ddof=1).")
    for model in args.models:
        s = summary[model]
        lines.append(f"{model}: best epochs {s['best_epochs']} of {s['epochs']} (per "
                     + ("seed and " if len(seeds) > 1 else "") + f"fold; {s['config']}).")
    for model in args.models:
        s = summary[model]
        const, slow = s["constant_folds"], s["slow_starts"]
        n_runs = len(seeds) * len(folds)
        last = sum(b == n for b, n in zip(s["best_epochs"], s["epochs"]))
        lines.append(f"{model}: runs at a constant output (std of its test-utterance predictions < "
                     f"{CONSTANT_STD} on arousal and on valence): {len(const)} of {n_runs}"
                     + (f" ({', '.join(const)})" if const else "")
                     + f"; runs with train loss ≥ {SLOW_START_LOSS} after epoch 1 (slow starts): {len(slow)} of "
                     f"{n_runs}" + (f" ({', '.join(slow)})" if slow else "")
                     + f"; runs whose best epoch is the last: {last} of {n_runs}.")
    if base is not None:
        for model in args.models:
            for dim in DIMS:
                w = wilcoxon_vs_svr(summary[model], summary["svr"], [f["test"] for f in folds], dim)
                summary[model][f"wilcoxon_vs_svr_{dim}"] = w
                lines.append(f"Wilcoxon signed-rank test across the {w['n']} folds, {model} vs the SVR, {dim} "
                             f"per-fold CCC" + (" (seed means)" if len(seeds) > 1 else "")
                             + f": higher on {w['higher']} of {w['n']} folds, {wilcoxon_text(w)}.")
    lines.append("ours: train time = sum over the folds of the epoch times in log.csv (training + devel scoring), "
                 f"{args.jobs} fold runs in parallel processes of {args.threads} torch thread(s).")
    if base is not None:
        def params_txt(name: str, keys: list[str]) -> str:
            vals = {k: [f"{v:g}" for v in sorted({float(summary[name]["params"][f][d][k])
                                                   for f in summary[name]["params"] for d in DIMS})] for k in keys}
            return ", ".join(f"{k} ∈ {{{', '.join(v)}}}" for k, v in vals.items())

        lines.append(
            f"baseline: train time = eGeMAPS functionals of all {len(utts)} utterances "
            f"({fmt_time(base['features_s'])}, shared) + grid searches on the {len(folds)} folds (ridge "
            f"{base['models']['ridge']['fit_s']:.0f} s, SVR {base['models']['svr']['fit_s']:.0f} s); chosen "
            f"ridge {params_txt('ridge', ['alpha'])}; SVR {params_txt('svr', ['C', 'gamma'])} (inner CV grouped "
            f"by speaker on the {len(speakers) - 1} training speakers of each fold, scored by CCC).")
    lines += ["", "Per-fold CCC" + (" (ours: per seed and the seed mean)" if len(seeds) > 1 else "") + ":", ""]
    fold_rows: list[tuple[str, dict]] = []
    for model in args.models:
        if len(seeds) > 1:
            fold_rows += [(f"{model}, seed {seed}", s) for seed, s in seed_summaries(summary[model]).items()]
        fold_rows.append((model + (", seed mean" if len(seeds) > 1 else ""), summary[model]))
    fold_rows += [(name, summary[name]) for name in ("ridge", "svr") if name in summary]
    lines += fold_table(fold_rows, [f["test"] for f in folds])
    compared: dict = {}
    if other is not None:
        other_folds = {f["test"] for f in other["folds"]}
        common = [f["test"] for f in folds if f["test"] in other_folds]
        this_label = "this run: " + (" ".join(extra) or "the recipe")
        other_label = f"{args.compare}: " + (" ".join(other.get("overrides", [])) or "the recipe")
        for model in args.models:
            if model not in other["summary"]:
                lines += ["", f"--compare: {args.compare} has no {model} runs."]
                continue
            compared[model] = compare_runs(summary[model], other["summary"][model], common)
            lines += ["", *comparison_lines(model, compared[model], this_label, other_label)]
    lines.append("")
    lines.append(f"hardware: {hardware()}; load average at the end {os.getloadavg()[0]:.1f}.")
    total = time.perf_counter() - wall0
    lines.append("wall time: " + ", ".join(f"{k} {fmt_time(v)}" for k, v in parts.items())
                 + f"; total {fmt_time(total)}"
                 + (" (some runs reused from an earlier invocation)"
                    if any(isinstance(v, dict) and v.get("reused") for v in results.values()) else "") + ".")
    # the command as given (work folder, jobs and threads included: they set the wall time)
    given = sys.argv[1:] if argv is None else list(argv)
    cmd = " ".join(["python benchmarks/bench_emodb_audio.py", *map(shlex.quote, given)])
    lines.append(f"command: {cmd}")
    table = "\n".join(lines)
    print(table)
    atomic_write_text(work / "results.md", table + "\n")
    finite = all(math.isfinite(s[d][k]) for s in summary.values() for d in DIMS for k in ("pooled", "fold_mean"))
    atomic_write_text(work / "results.json", json.dumps({
        "mode": mode, "folds": folds, "summary": summary, "goals": goals, "parts_s": parts, "total_s": total,
        "jobs": args.jobs, "threads": args.threads, "overrides": extra, "seeds": seeds, "hardware": hardware(),
        "finite": finite, "compare": {"dir": args.compare, "models": compared} if other is not None else None},
        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
