"""Training-step throughput, achieved GFLOP/s and peak memory of every registered model.

Settings follow the paper (Sections 5.3-5.4): 100-frame sequences, batch 3 for
visual and multimodal networks, 20 for audio and text; 96×96 faces,
4,410-sample interlocutor audio frames, 30 word slots (384-d vectors, the
default embedding). One training step = forward, CCC-free surrogate loss
(sum of predictions), backward, Adam update.

Each model runs in its own fresh subprocess, so its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own and memory freed by
one model cannot hide another's. FLOPs of one forward + backward step are
counted with FlopCounterMode (plus LSTM formulas, see
mmaffect.models.summary) and divided by the median step time. A fp32
2048×2048 matrix multiply is timed in the parent process, next to the models,
as the machine's reference GFLOP/s.

    PYTHONPATH=src python benchmarks/bench_models.py                 # all models
    PYTHONPATH=src python benchmarks/bench_models.py --models fusion-hierarchical text-paper
    PYTHONPATH=src python benchmarks/bench_models.py --quick         # smoke run: tiny models, 4 frames

Prints a Markdown table (and ``--json PATH`` writes the rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmaffect.models import create_model, get_spec, list_models, tiny_overrides  # noqa: E402
from mmaffect.models.summary import count_flops, count_parameters, example_batch  # noqa: E402
from mmaffect.models.zoo import input_options, tiny_inputs  # noqa: E402


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def paper_batch_size(name: str) -> int:
    modalities = get_spec(name).modalities
    return 3 if "visual" in modalities else 20


def run_worker(name: str, *, quick: bool, frames: int, steps: int, words: int, batch: int | None = None) -> dict:
    torch.manual_seed(0)
    overrides = tiny_overrides(name) if quick else {}
    model = create_model(name, **overrides).train()
    sizes = tiny_inputs(name) if quick else {**input_options(name), "words": words}
    batch_size = 1 if quick else (batch or paper_batch_size(name))
    batch = example_batch(
        sizes["modalities"], batch=batch_size, frames=frames, embed_dim=sizes["embed_dim"],
        image_size=sizes["image_size"], words=sizes["words"], frame_samples=sizes["frame_samples"],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.99))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(batch).pred.sum().backward()
        optimizer.step()

    step()  # warm-up (allocations, lazy init)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    # peak of the training steps themselves, before FLOP counting adds its own allocations
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    optimizer.zero_grad(set_to_none=True)
    flops = count_flops(model, batch, backward=True)
    step_time = statistics.median(times)
    n_frames = batch_size * frames
    return {
        "name": name,
        "batch": batch_size,
        "frames": frames,
        "params": count_parameters(model),
        "step_s": step_time,
        "frames_per_s": n_frames / step_time,
        "gflop_per_step": flops / 1e9,
        "gflops_per_s": flops / step_time / 1e9,
        "peak_rss_mib": peak_rss_mib,
        "threads": torch.get_num_threads(),
    }


def run_in_subprocess(name: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--frames", str(args.frames), "--steps", str(args.steps),
           "--words", str(args.words)]
    if args.batch:
        cmd += ["--batch", str(args.batch)]
    if args.quick:
        cmd.append("--quick")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"timed out after {args.timeout} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"name": name, "error": f"exit {proc.returncode}: {tail[0]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict], reference: float) -> str:
    lines = [
        f"fp32 2048² matmul: {reference:.1f} GFLOP/s ({torch.get_num_threads()} threads)",
        "",
        "| model | batch × frames | params (M) | step (s) | frames/s | GFLOP/step | GFLOP/s | % of matmul | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | — | — | — | — | — | — | — | {r['error']} |")
            continue
        lines.append(
            f"| {r['name']} | {r['batch']} × {r['frames']} | {r['params'] / 1e6:.3f} | {r['step_s']:.3f} | "
            f"{r['frames_per_s']:.1f} | {r['gflop_per_step']:.2f} | {r['gflops_per_s']:.1f} | "
            f"{100 * r['gflops_per_s'] / reference:.0f}% | {r['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="registry names (default: all)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny models, batch 1, 4 frames, 1 step")
    parser.add_argument("--frames", type=int, default=None, help="frames per sequence (default 100; quick 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 3; quick 1)")
    parser.add_argument("--words", type=int, default=30)
    parser.add_argument("--batch", type=int, default=None,
                        help="sequences per step for every model (default: Section 5.4's 20 text/audio, 3 visual/multimodal)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per model")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.frames = args.frames or (4 if args.quick else 100)
    args.steps = args.steps or (1 if args.quick else 3)
    if args.worker:
        row = run_worker(args.worker, quick=args.quick, frames=args.frames, steps=args.steps, words=args.words,
                         batch=args.batch)
        print(json.dumps(row))
        return 0
    names = args.models or list_models()
    reference = matmul_gflops()
    rows = []
    for name in names:
        rows.append(run_in_subprocess(name, args))
        print(f"done {name}", file=sys.stderr, flush=True)
    print(markdown(rows, reference))
    if args.json:
        args.json.write_text(json.dumps({"matmul_gflops": reference, "rows": rows}, indent=2))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
