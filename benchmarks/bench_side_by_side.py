#!/usr/bin/env python
"""Side by side with End2You: the paper's visual and audio networks against
End2You's ResNet-18 + GRU and Emo18, training and inference, one process.

Each round runs one step of every case of a group in turn, so machine noise
(other jobs on shared cores) hits every case alike; the figure to compare is
the **ratio of medians** (frames/s of an mmaffect case ÷ frames/s of the
End2You case), not an absolute rate. Audio is compared per second of audio
(both use 0.1-s frames), faces per frame. Batches are the recipes' (End2You
audio 16 × 150 frames of 1,600 samples, visual 2 × 100 faces of 96²; mmaffect
audio 20 × 100 interlocutor vectors of 4,410 samples, visual 3 × 100 faces of
96²); ``--quick`` keeps the batch sizes but uses 20-frame sequences and
2 rounds (a smoke run; its ratios are rough).

Cases (mmaffect rows; the End2You row of each group is the reference):

* ``before``: the network as it was before issue #14 item 5 (attentional
  pooling in the formula's order, NCHW convolution weights; audio inference
  through the fused layer that keeps pooling indices) — rebuilt here from the
  current code with ``attention_pool_reference``, contiguous weights and the
  former ``_stack``; the in-place ReLUs of the blocks cannot be undone (a few
  %).
* ``now``: ``create_model(name)`` as it is (training and inference);
* ``for_inference`` (inference only): ``mmaffect.models.optimize.for_inference``
  (conv–BN folded, channels-last); ``+ onnxruntime``: the face branch's
  per-frame network run by ONNX Runtime (visual only).

``--plain`` runs only End2You and ``now`` (the harness of ../shared/perf).
End2You's model code is imported from ``--e2y-root`` (or ``$E2Y_ROOT``;
default ``../shared/perf`` next to the repository): its ``end2you/`` folder
and ``stubs/`` (a plain-torch stand-in for the torchvision parts). Without
it the script says so and exits 0.

    python benchmarks/bench_side_by_side.py                    # all, 5 rounds, 2 threads
    python benchmarks/bench_side_by_side.py --quick            # smoke run
    python benchmarks/bench_side_by_side.py --only visual --threads 1 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def ccc_loss(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = p.reshape(-1, p.shape[-1])
    y = y.reshape(-1, y.shape[-1])
    pm, ym = p.mean(0), y.mean(0)
    cov = ((p - pm) * (y - ym)).mean(0)
    return (1 - 2 * cov / (p.var(0) + y.var(0) + (pm - ym) ** 2)).mean()


def load_end2you(root: Path) -> bool:
    """Make End2You's model code importable from ``root`` (the shared perf folder)."""
    code = root / "end2you" / "end2you"
    if not (code / "models").is_dir():
        return False
    for p in (root / "stubs", root / "end2you"):
        sys.path.insert(0, str(p))
    for name, sub in (("end2you", ""), ("end2you.training", "training"), ("end2you.data_generator", "data_generator")):
        module = types.ModuleType(name)
        module.__path__ = [str(code / sub)]
        sys.modules[name] = module
    return True


Case = tuple[torch.nn.Module, Callable[[], torch.Tensor], torch.Tensor, int]


def e2y_case(kind: str, B: int, S: int, size: int) -> Case:
    torch.manual_seed(0)
    if kind == "audio":
        from end2you.models.audio.audio_rnn_model import AudioRNNModel

        model = AudioRNNModel(input_size=size, num_outs=2, model_name="emo18")
        x = torch.randn(B, S, size)
    else:
        from end2you.models.visual.visual_rnn_model import VisualRNNModel

        model = VisualRNNModel(model_name="resnet18", pretrained=False, num_outs=2)
        x = torch.rand(B, S, 3, size, size)
    y = torch.rand(B, S, 2) * 2 - 1
    return model, (lambda: model(x)), y, B * S


def _old_stack(self, x: torch.Tensor, *, dropout: bool = True) -> torch.Tensor:
    """``Tzirakis2018._stack`` before item 5: the fused layer (with pooling indices) also in inference."""
    from mmaffect.models.audio import _ConvPoolReLU

    h = x.unsqueeze(1)
    for conv, p in zip(self.convs, self.pools):
        h = _ConvPoolReLU.apply(h, conv.weight, conv.bias, p)
        if dropout:
            h = F.dropout(h, self.dropout, self.training)
    return h


def as_before(model: torch.nn.Module) -> torch.nn.Module:
    """The network computed as before item 5 (same weights, same function)."""
    from mmaffect.models.audio import Tzirakis2018
    from mmaffect.models.visual import HRNetAttPool

    for m in model.modules():
        if isinstance(m, HRNetAttPool):
            m.attention_pool = m.attention_pool_reference
            for p in m.parameters():
                p.data = p.data.contiguous()
        if isinstance(m, Tzirakis2018):
            m._stack = types.MethodType(_old_stack, m)
    return model


def mm_cases(name: str, modality: str, B: int, S: int, mode: str, plain: bool) -> dict[str, Case]:
    from mmaffect.models import create_model
    from mmaffect.models.optimize import for_inference
    from mmaffect.models.summary import example_batch

    torch.manual_seed(0)
    model = create_model(name)
    batch = example_batch([modality], batch=B, frames=S)
    y = torch.rand(B, S, 2) * 2 - 1
    variants: dict[str, torch.nn.Module] = {"now": model}
    if not plain:
        variants = {"before": as_before(copy.deepcopy(model)), "now": model}
        if mode == "infer":
            variants["for_inference"] = for_inference(model)
            if modality == "visual":
                variants["for_inference + onnxruntime"] = for_inference(model, onnxruntime=True)
    return {k: (m, (lambda m=m: m(batch).pred), y, B * S) for k, m in variants.items()}


def stepper(model: torch.nn.Module, fwd: Callable[[], torch.Tensor], y: torch.Tensor, train: bool) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None

    def step() -> None:
        if train:
            model.train()
            opt.zero_grad(set_to_none=True)
            out = fwd()
            ccc_loss(out[..., :2], y).backward()
            opt.step()
        else:
            with torch.inference_mode():
                fwd()

    if not train:
        model.eval()
    return step


GROUPS = {
    # group: (End2You case, its label, mmaffect model, recipe batch B x S, End2You B x S, input size)
    "visual": ("visual", "e2y-resnet18+gru", "visual-hrnet3-attpool", (3, 100), (2, 100), 96),
    "audio": ("audio", "e2y-emo18", "audio-tzirakis2018", (20, 100), (16, 150), 1600),
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"threads": torch.get_num_threads(), "rounds": args.rounds, "quick": args.quick,
                           "torch": torch.__version__}
    for group, (kind, e2y_label, mm_name, (mb, ms), (eb, es), size) in GROUPS.items():
        if args.only and group != args.only:
            continue
        if args.quick:
            ms, es = 20, 20
        for mode in ("train", "infer"):
            cases: dict[str, Case] = {e2y_label: e2y_case(kind, eb, es, size)}
            cases.update({f"{mm_name} {k}": v for k, v in mm_cases(mm_name, kind, mb, ms, mode, args.plain).items()})
            steps = {n: (stepper(m, fwd, y, mode == "train"), fr) for n, (m, fwd, y, fr) in cases.items()}
            for s, _ in steps.values():
                s()  # warm-up
            times: dict[str, list[float]] = {n: [] for n in steps}
            for _ in range(args.rounds):
                for n, (s, _) in steps.items():
                    t0 = time.perf_counter()
                    s()
                    times[n].append(time.perf_counter() - t0)
            ref = statistics.median(times[e2y_label]) / steps[e2y_label][1]  # s per frame
            print(f"{group} {mode} ({args.rounds} rounds, {torch.get_num_threads()} threads)", flush=True)
            for n, (_, frames) in steps.items():
                med = statistics.median(times[n])
                rate = frames / med
                ratio = ref / (med / frames)
                res[f"{group}/{mode}/{n}"] = {"frames_per_s": rate, "median_step_s": med, "ratio": ratio,
                                               "frames": frames, "steps_s": times[n]}
                print(f"  {n:48s} {rate:8.1f} frames/s   ratio {ratio:.2f}", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=sorted(GROUPS), default=None)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", "2")))
    ap.add_argument("--plain", action="store_true", help="only End2You and the networks as create_model builds them")
    ap.add_argument("--quick", action="store_true", help="20-frame sequences, 2 rounds (smoke run)")
    ap.add_argument("--e2y-root", default=os.environ.get("E2Y_ROOT", str(REPO.parent / "shared" / "perf")),
                    help="folder with End2You's end2you/ and stubs/ (default ../shared/perf, or $E2Y_ROOT)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.quick and "--rounds" not in (argv if argv is not None else sys.argv[1:]):
        args.rounds = 2
    root = Path(args.e2y_root)
    if not load_end2you(root):
        print(f"bench_side_by_side: End2You's model code not found under {root} (expected {root}/end2you/end2you/models); "
              "pass --e2y-root or set E2Y_ROOT. Skipped.")
        return 0
    torch.set_num_threads(args.threads)
    res = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
