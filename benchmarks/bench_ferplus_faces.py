"""Benchmark: faces on FER+ (train → valid) — the paper's visual network and the Table 2 baselines.

One script, one split, every model (issue #6, item 3). Each model is trained
by the toolkit's own CLI, ``mmaffect pretrain-faces`` (a subprocess per
model: :mod:`mmaffect.training.faces`), on the FER+ training faces against
their vote distributions, for a fixed **wall-time budget** per model (the
cosine learning-rate schedule is laid over the budget, so every model gets a
complete schedule on whatever hardware runs it), then scored on the FER+
validation faces after its last epoch (no model selection on them):
majority-vote accuracy and the CCC of the valence/arousal proxy. Prints one
Markdown table with parameters, epochs, throughput, device and the issue's
goal (≥ 86 % majority accuracy), and writes ``results.json`` / ``results.md``
in ``--workdir`` (atomically). A model whose run folder already holds a
``results.json`` is not trained again (delete the folder to redo it).

Usage::

    python benchmarks/bench_ferplus_faces.py [--data DIR] [--workdir DIR] [--minutes 3]
        [--models visual-hrnet3-attpool visual-vgg16 ...] [--quick] [key=value ...]

``--minutes`` is the budget of each model; ``--minutes-for NAME=M`` sets one
model's. ``key=value`` overrides go to every ``mmaffect pretrain-faces`` run
(e.g. ``model_options.image_size=48``); ``NAME:key=value`` to one model's.
``--quick``: 256 training / 128 validation faces, one epoch of narrow networks
(a smoke run for tests; the figures mean nothing). The data are research-only:
keep ``--workdir`` outside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmaffect.data.sources import shared_data_root  # noqa: E402
from mmaffect.utils.io import atomic_write_json, atomic_write_text  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import work_dir  # noqa: E402

MODELS = ("visual-hrnet3-attpool", "visual-vgg16", "visual-resnet50", "visual-densenet121", "visual-mobilenet")
GOAL_ACCURACY = 0.86
QUICK = {
    "visual-hrnet3-attpool": ["model_options.widths=[8,16,32]", "model_options.stem_channels=16",
                              "model_options.blocks=1", "model_options.n_attention_classes=32",
                              "model_options.image_size=48"],
}


def _label(name: str, overrides: list[str]) -> str:
    tag = [o for o in overrides if o.startswith("model_options.")]
    return name + (f" ({', '.join(t.split('.', 1)[1] for t in tag)})" if tag else "")


def run_model(name: str, run: Path, data: Path, minutes: float, overrides: list[str], quick: bool) -> dict:
    if (run / "results.json").is_file():
        return json.loads((run / "results.json").read_text())
    if run.exists():  # an interrupted run: start it again
        for f in run.iterdir():
            f.unlink()
    args = [f"model_name={name}", f"data.root={data}", f"optim.budget_minutes={minutes}", "optim.epochs=1000"]
    if quick:
        args = [f"model_name={name}", f"data.root={data}", "optim.epochs=1", "data.train_limit=256",
                "data.valid_limit=128", "optim.batch_size=32", *QUICK.get(name, [])]
    cmd = [sys.executable, "-m", "mmaffect.cli", "pretrain-faces", "--out", str(run), *args, *overrides]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print("$ " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, text=True, stdout=subprocess.PIPE)
    if proc.returncode != 0:
        return {"model_name": name, "error": f"exit status {proc.returncode}",
                "wall_seconds": round(time.perf_counter() - started, 1)}
    return json.loads((run / "results.json").read_text())


def table(rows: list[dict]) -> str:
    lines = ["| model | parameters | input | majority accuracy | CCC arousal | CCC valence | epochs | images/s | "
             "train time | device |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | | | failed: {r['error']} | | | | | {r['wall_seconds']:.0f} s | |")
            continue
        lines.append(f"| {r['label']} | {r['parameters'] / 1e6:.2f} M | {r['image_size']}² | {100 * r['accuracy']:.1f} % | "
                     f"{r['ccc_arousal']:.3f} | {r['ccc_valence']:.3f} | {r['epochs']} | "
                     f"{r['images_per_second']:.0f} | {r['wall_seconds']:.0f} s | {r['device']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, help="folder with ferplus_train.npz / ferplus_valid.npz "
                                              "(default: <shared data>/ferplus)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/mmaffect-bench-ferplus"))
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--minutes", type=float, default=3.0, help="training budget of each model (wall minutes)")
    p.add_argument("--minutes-for", nargs="*", default=[], metavar="NAME=M")
    p.add_argument("--tag", action="append", default=[], metavar="RUN=NAME",
                   help="a second run of a model under another run name, e.g. hrnet-demo=visual-hrnet3-attpool "
                        "with hrnet-demo:model_options.image_size=48")
    p.add_argument("--quick", action="store_true")
    args, extra = p.parse_known_args(argv)
    bad = [e for e in extra if "=" not in e]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)}")
    data = args.data
    if data is None:
        shared = shared_data_root()
        if shared is None:
            p.error("no FER+ data: pass --data DIR or set MMAFFECT_SHARED_DATA")
        data = shared / "ferplus"
    args.workdir = work_dir(args.workdir, args.workdir)
    minutes_for = {k: float(v) for k, v in (m.split("=", 1) for m in args.minutes_for)}
    runs = [(m, m) for m in args.models] + [tuple(t.split("=", 1)) for t in args.tag]
    shared_overrides = [e for e in extra if ":" not in e.split("=", 1)[0]]
    started = time.perf_counter()
    rows = []
    for run_name, model in runs:
        own = [e.split(":", 1)[1] for e in extra if e.split("=", 1)[0].startswith(run_name + ":")]
        overrides = shared_overrides + own
        res = run_model(model, args.workdir / run_name, data, minutes_for.get(run_name, args.minutes),
                        overrides, args.quick)
        res["label"] = _label(model, overrides) if run_name == model else f"{run_name}: {_label(model, overrides)}"
        rows.append(res)
        atomic_write_json(args.workdir / "results.json", rows)
    ok = [r for r in rows if "error" not in r]
    text = table(rows)
    best = max(ok, key=lambda r: r["accuracy"]) if ok else None
    text += (f"\n\nFER+ valid faces after each model's last epoch; training budget per model: "
             f"{args.minutes:g} min" + (f" ({', '.join(args.minutes_for)})" if args.minutes_for else "")
             + f"; whole benchmark {time.perf_counter() - started:.0f} s wall; python {platform.python_version()}.")
    if best is not None:
        met = best["accuracy"] >= GOAL_ACCURACY
        text += (f"\nGoal (issue #6): majority accuracy >= {100 * GOAL_ACCURACY:.0f} % — best {best['label']} "
                 f"{100 * best['accuracy']:.1f} %: {'met' if met else 'not met'}.")
    atomic_write_text(args.workdir / "results.md", text + "\n")
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
