"""Diagnostic: why the paper's raw-waveform audio network sits at a constant output (issue #12, item 1).

Trains ``audio-tzirakis2018`` on ONE EmoDB leave-one-speaker-out fold the way
``mmaffect train recipes/emodb/audio-tzirakis2018.yaml`` does (same datasets,
seeded sampler, model construction order, Adam, gradient clipping, CCC loss,
devel scoring) and prints, per epoch, what tells a stalled network from a
learning one:

* ``loss``: mean train loss (1 − CCC);
* the std over utterances of the utterance-mean prediction (arousal,
  valence), on the train batches (mean over the epoch) and on the devel
  speaker: a network "at a constant output" gives every utterance the same
  prediction (the frames inside an utterance still vary: the LSTM starts
  from a zero state), so this is what tells it apart;
* devel CCC per frame (the trainer's model-selection score) and per utterance
  (the benchmark's score);
* gradient norm per layer (before clipping, mean over the epoch's steps) of
  the three convolutions, the LSTM's input weights and the output layer, and
  the learning rate at the epoch's end;
* after the last epoch: the best epoch (highest devel frame CCC, as best.pt)
  scored on the test speaker, one prediction per utterance, as the benchmark.

With ``--probe-every N`` it also prints, every N optimiser steps, the state
of the network on a fixed probe (the first 40 training windows, in eval
mode): the mean and the spread over utterances of the output layer's
pre-tanh value (arousal, valence), the share of the 4,250 branch features
that are zero on every probe frame, and the learning rate: what shows a
near-constant output drifting into tanh saturation.

Before training it prints the initial state: the waveform scale (RMS and
peak of the non-zero half of each interlocutor vector), per convolution the
mean |bias| next to the spread over frames of the bias-free part W*x of its
output, the fraction of zeros after pool + ReLU, channels zero on every
frame, and the spread and mean of the block's output; and the gradient of
1 − CCC with respect to the prediction at a constant prediction.

Variants (one per run): ``--init he`` (the model option ``init``), ``--lr``,
``--scheduler warmup-cosine`` (the trainer's ``optim.scheduler``),
``--input-gain G`` (multiply every waveform by G: the input-scale experiment;
not a model option).

Usage (research-only data: the corpus and cache live under /tmp, never in the repo)::

    mmaffect adapt emodb --src ../shared/data/emodb --out /tmp/plateau/corpus
    mmaffect prepare /tmp/plateau/corpus --out /tmp/plateau/cache text.enabled=false faces.enabled=false
    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/diag_audio_plateau.py --cache /tmp/plateau/cache \
        --fold 13 [--epochs 6] [--init default|he] [--scheduler none|warmup-cosine] [--input-gain 20] [--report-only]
        [--seed 0] [--probe-every 7]

The fold's devel speaker is the next in sorted order and training uses the
other 6 (as ``benchmarks/bench_emodb_audio.py``); lr 1e-3, batch 10, gradient
clipping 5, 6 epochs by default (the recipe's settings). The model is built
directly from the branch class (the registry's ``create_model`` in the same
construction order, so the same initial weights), so options the registry
does not list yet can be measured. The loop follows the trainer's step by
step (same seeding, sampler, loader generator, loss, clipping, schedule);
that it repeats a `mmaffect train` run to the last digit has not been
checked.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mmaffect.data.cache import Cache
from mmaffect.data.dataset import SessionWindows, collate
from mmaffect.models.assembly import UnimodalModel
from mmaffect.models.audio import Tzirakis2018
from mmaffect.models.registry import get_branch
from mmaffect.models.zoo import HEAD_DEFAULTS
from mmaffect.models.layers import same_pad1d
from mmaffect.training.distributed import BlockDistributedSampler
from mmaffect.training.evaluate import dataset_options, partition_scores, predict_recordings
from mmaffect.training.metrics import ccc, ccc_loss
from mmaffect.training.trainer import lr_factor, warmup_steps

SPEAKERS = ("08", "10", "11", "12", "13", "14", "15", "16")
LAYERS = ("branch.convs.0.weight", "branch.convs.1.weight", "branch.convs.2.weight",
          "head.lstm.weight_ih_l0", "head.out.weight")
SHORT = ("conv1", "conv2", "conv3", "lstm_ih", "out")


def seed_everything(seed: int) -> None:
    """As :func:`mmaffect.training.trainer.seed_everything` (python, numpy, torch)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fold_partitions(test: str) -> tuple[list[str], list[str]]:
    i = SPEAKERS.index(test)
    dev = SPEAKERS[(i + 1) % len(SPEAKERS)]
    return [f"spk{s}" for s in SPEAKERS if s not in (test, dev)], [f"spk{dev}"]


def crit_const_grad() -> str:
    """d(1 − CCC)/d pred at a constant prediction vs a slightly varied one (analytic check)."""
    gen = torch.Generator().manual_seed(0)  # a local generator: the training's random stream is left alone
    gold = torch.rand(1, 200, 1, generator=gen) * 2 - 1
    lines = []
    for spread in (0.0, 1e-4, 1e-2, 1e-1):
        pred = (0.3 + spread * torch.randn(1, 200, 1, generator=gen)).requires_grad_(True)
        loss = ccc_loss(pred, gold)
        (g,) = torch.autograd.grad(loss, pred)
        lines.append(f"pred std {spread:g}: loss {loss.item():.4f}, |dL/dpred| {g.norm().item():.4f}")
    return "; ".join(lines)


@torch.no_grad()
def init_report(model: torch.nn.Module, batch: dict, gain: float) -> list[str]:
    """Signal vs bias in each convolution's pooled output, zeros, dead channels (one batch of frames)."""
    branch = model.branch
    audio = batch["audio"][batch["audio_mask"]] * gain  # (N, 4410) present frames
    half = audio.shape[1] // 2
    first = (audio[:, half:] == 0).all(dim=1)
    signal = torch.where(first[:, None], audio[:, :half], audio[:, half:])
    rms = signal.pow(2).mean(dim=1).sqrt()
    out = [f"waveform (non-zero half of {len(audio)} frames, after input gain {gain:g}): RMS median "
           f"{rms.median():.4f} (10-90 % {rms.quantile(0.1):.4f}-{rms.quantile(0.9):.4f}), peak "
           f"{signal.abs().max():.3f}"]
    h = branch.normalise_input(audio).unsqueeze(1) if hasattr(branch, "normalise_input") else audio.unsqueeze(1)
    if hasattr(branch, "normalise_input"):
        r2 = h.squeeze(1)
        out.append(f"after input_norm={getattr(branch, 'input_norm', 'none')}: RMS of the frame median "
                   f"{r2.pow(2).mean(dim=1).sqrt().median():.4f}")
    for i, (conv, k, p) in enumerate(zip(branch.convs, branch.kernels, branch.pools)):
        pre = conv(same_pad1d(h, k))
        nobias = pre - conv.bias.view(1, -1, 1)
        pooled = F.max_pool1d(pre, p, p)
        h = F.relu(pooled)
        # spread over frames (per channel and step), then mean over channels/steps
        sig = nobias.std(dim=0).mean().item()
        bias = conv.bias.abs().mean().item()
        zeros = (h == 0).float().mean().item()
        dead = (h.amax(dim=(0, 2)) == 0).float().mean().item()
        between = h.std(dim=0).mean().item()
        ratio = f"{sig / bias:.3f}" if bias > 0 else "inf"
        out.append(f"conv{i + 1}: |bias| mean {bias:.4f}, spread of W*x over frames {sig:.4f} (ratio "
                   f"{ratio}); after pool+ReLU: zeros {zeros:.1%}, channels zero on every "
                   f"frame {dead:.1%}, spread over frames {between:.4f}, mean {h.mean().item():.4f}")
    return out


@torch.no_grad()
def probe_state(model: torch.nn.Module, batch: dict) -> str:
    """Pre-tanh output (mean; spread over the probe's utterances of their mean) and the share of
    branch features zero on every present frame, in eval mode; the caller restores train mode.

    The random streams are left alone: eval mode draws no dropout."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [model.head.out.register_forward_hook(lambda m, i, o: captured.__setitem__("pre", o)),
             model.branch.register_forward_hook(lambda m, i, o: captured.__setitem__("feat", o.features))]
    try:
        model.train(False)
        model(batch)
    finally:
        for h in hooks:
            h.remove()
    mask = batch["mask"].unsqueeze(-1).to(captured["pre"].dtype)
    umean = (captured["pre"][..., :2] * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)
    feat = captured["feat"][batch["audio_mask"]]  # (present frames, features)
    dead = (feat.abs().amax(dim=0) == 0).float().mean().item()
    return (f"pre-tanh mean {umean[:, 0].mean():+.3f} {umean[:, 1].mean():+.3f}, spread over utterances "
            f"{umean[:, 0].std():.4f} {umean[:, 1].std():.4f}; features zero on every frame {dead:.1%}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", required=True, help="prepared EmoDB cache (mmaffect prepare ... text/faces off)")
    p.add_argument("--fold", default="13", choices=SPEAKERS, help="test speaker (default 13: stalled in the benchmark)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--grad-clip", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", default="none", choices=("none", "warmup-cosine"),
                   help="optim.scheduler (warmup-cosine: the trainer's per-step schedule, lr_factor)")
    p.add_argument("--init", default=None, help="model option init (default: the model's)")
    p.add_argument("--input-gain", type=float, default=1.0, help="multiply every waveform by this (scale test)")
    p.add_argument("--report-only", action="store_true", help="initialisation report only, no training")
    p.add_argument("--probe-every", type=int, default=0,
                   help="every N steps, the pre-tanh output and dead features on a fixed probe (0 = never)")
    args = p.parse_args(argv)

    train_parts, dev_parts = fold_partitions(args.fold)
    cache = Cache(args.cache)
    opts = dataset_options(cache.config())
    train_ds = SessionWindows(cache.sessions(partitions=train_parts), modalities=["audio"], window=20,
                              seed=args.seed, **opts)
    dev_ds = SessionWindows(cache.sessions(partitions=dev_parts), modalities=["audio"], window=None,
                            seed=args.seed, **opts)
    seed_everything(args.seed)
    model_opts = {"init": args.init} if args.init is not None else {}
    # Built as create_model("audio-tzirakis2018", **model_opts) does (same order, so the same initial weights).
    model = UnimodalModel(branch=Tzirakis2018(**{**get_branch("audio-tzirakis2018").options, **model_opts}), **HEAD_DEFAULTS)
    if args.input_gain != 1.0:
        inner = model.branch.forward

        def scaled(batch, _inner=inner):  # the scale experiment: a fixed gain on the waveform
            return _inner({**batch, "audio": batch["audio"] * args.input_gain})

        model.branch.forward = scaled  # type: ignore[method-assign]
    print(f"fold spk{args.fold}: train {train_parts} ({len(train_ds)} windows), devel {dev_parts}; "
          f"model options {model_opts or 'defaults'}, lr {args.lr:g}, scheduler {args.scheduler}, "
          f"input gain {args.input_gain:g}, seed {args.seed}")
    # The report must not move the random streams the training draws from (dropout, sampler):
    # with them untouched the run below is the one `mmaffect train` makes.
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    print("CCC loss near a constant prediction: " + crit_const_grad())
    probe = collate([train_ds[i] for i in range(min(40, len(train_ds)))])
    model.train(False)
    for line in init_report(model, probe, args.input_gain):
        print("init " + line)
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])
    if args.report_only:
        return 0

    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    sampler = BlockDistributedSampler(train_ds, batch_size=args.batch_size, num_replicas=1, rank=0, seed=args.seed)
    steps_per_epoch = math.ceil(len(train_ds) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    warmup = warmup_steps(steps_per_epoch, total_steps)
    params = dict(model.named_parameters())
    step = 0
    print("epoch | loss | utterance-mean pred std: train batches (a, v) | devel (a, v) | devel frame CCC (a, v) "
          "| devel utterance CCC (a, v) | |g| " + " ".join(SHORT) + " | lr | s")
    best, best_epoch, best_state = -math.inf, 0, None
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        gen = torch.Generator()
        gen.manual_seed(args.seed * 7919 + epoch)
        loader = DataLoader(train_ds, batch_size=sampler.local_batch, sampler=sampler, collate_fn=collate,
                            num_workers=0, generator=gen)
        model.train()
        losses, pstd, gnorm = [], [], []
        for batch in loader:
            if args.scheduler == "warmup-cosine":  # as the trainer: set before the step
                for g in optimizer.param_groups:
                    g["lr"] = args.lr * lr_factor(step, total_steps, warmup)
            out = model(batch)
            pred, gold, mask = out.pred[..., :2], batch["labels"][..., :2], batch["mask"]
            loss = ccc_loss(pred, gold, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            gnorm.append([params[n].grad.norm().item() for n in LAYERS])
            if args.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            step += 1
            if args.probe_every and step % args.probe_every == 0:
                print(f"  step {step}: {probe_state(model, probe)}; lr {optimizer.param_groups[0]['lr']:.2e}",
                      flush=True)
                model.train()
            losses.append(loss.item())
            # spread over the batch's utterances of their mean prediction (what the benchmark scores)
            m = mask.unsqueeze(-1).to(pred.dtype)
            umean = (pred * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)
            pstd.append(umean.detach().std(dim=0).tolist())
        preds = predict_recordings(model, dev_ds, device=torch.device("cpu"), batch_size=64)
        dev = partition_scores(preds)
        dpred = np.stack([r.pred.mean(axis=0) for r in preds])  # one mean prediction per utterance
        dgold = np.stack([r.gold.mean(axis=0) for r in preds])
        utt = [ccc(dpred[:, d], dgold[:, d]) for d in range(2)]
        ps, g = np.mean(pstd, axis=0), np.mean(gnorm, axis=0)
        print(f"{epoch + 1} | {np.mean(losses):.4f} | {ps[0]:.4f} {ps[1]:.4f} | {dpred[:, 0].std():.4f} "
              f"{dpred[:, 1].std():.4f} | {dev['arousal']:.3f} {dev['valence']:.3f} | {utt[0]:.3f} {utt[1]:.3f} | "
              + " ".join(f"{x:.2e}" for x in g) + f" | {optimizer.param_groups[0]['lr']:.2e} | "
              f"{time.perf_counter() - t0:.0f}", flush=True)
        score = dev["mean"] if math.isfinite(dev["mean"]) else -math.inf
        if score > best or best_epoch == 0:  # as the trainer: best.pt = highest devel mean frame CCC
            best, best_epoch = score, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # The benchmark's score of the fold: best epoch on the test speaker, one prediction per utterance.
    model.load_state_dict(best_state)
    test_ds = SessionWindows(cache.sessions(partitions=[f"spk{args.fold}"]), modalities=["audio"], window=None,
                             seed=args.seed, **opts)
    preds = predict_recordings(model, test_ds, device=torch.device("cpu"), batch_size=64)
    tp = np.stack([r.pred.mean(axis=0) for r in preds])
    tg = np.stack([r.gold.mean(axis=0) for r in preds])
    print(f"test spk{args.fold} (best epoch {best_epoch}, {len(preds)} utterances): utterance CCC arousal "
          f"{ccc(tp[:, 0], tg[:, 0]):.3f} valence {ccc(tp[:, 1], tg[:, 1]):.3f}; std of the utterance predictions "
          f"{tp[:, 0].std():.4f} / {tp[:, 1].std():.4f} (gold {tg[:, 0].std():.3f} / {tg[:, 1].std():.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
