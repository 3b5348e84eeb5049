"""Training of a registered model on a prepared cache (paper Sections 5.2-5.4).

``mmaffect train CONFIG [key=value ...] --out RUN [--resume]`` calls
:func:`train`. The default configuration is ``configs/train.yaml``; a user's
file only lists what differs from it.

One epoch draws new random windows of ``data.window`` frames from every
training recording (``SessionWindows.set_epoch``), shuffles them with a
seeded sampler, and minimises the paper's loss ``J = mean(1 − ρ_c)`` over
arousal and valence (plus ``optim.mse_weight`` · MSE when that is above 0)
with Adam and gradient-norm clipping. After each epoch
the model is scored on the *whole* development recordings: CCC per dimension
on their concatenation (AVEC practice), the mean of arousal and valence being
the selection score — **higher is better**; ``best.pt`` keeps the best epoch.

Run folder::

    RUN/config.yaml           the resolved configuration (every model option spelt out)
    RUN/last.pt, RUN/best.pt  checkpoints (see mmaffect.checkpoints)
    RUN/log.csv               epoch, step, train_loss, dev_arousal, dev_valence, dev_mean, seconds
    RUN/learning_curves.png   train loss and dev CCC per epoch

Reproducibility: everything is seeded from ``seed``; the window starts
depend on (seed, epoch), the window order on seed + epoch, and the random
states of python/numpy/torch are saved after every epoch, so a run killed
after epoch k and resumed with ``--resume`` ends (on CPU) with exactly the
weights of an uninterrupted run. The dataset is stateless, so
``data.num_workers > 0`` gives the same batches.

Annotation delay (``data.annotation_delay``, seconds, converted to
``d`` label frames): the model's output at input frame ``t`` is trained
against the label at frame ``t + d`` (the label lags the behaviour it
describes). In a training window the last ``d`` outputs and the first ``d``
labels have no partner and are left out of the loss; evaluation shifts whole
recordings (see :func:`mmaffect.training.evaluate.align_delay`).
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from mmaffect.checkpoints import (
    capture_rng_state,
    import_modules,
    load_branch_weights,
    load_checkpoint,
    plain,
    restore_rng_state,
    save_checkpoint,
)
from mmaffect.config import apply_overrides, builtin_config, dump_config, merge
from mmaffect.data.cache import Cache
from mmaffect.data.dataset import SessionWindows, collate, word_vector_dim
from mmaffect.errors import ConfigError
from mmaffect.training.augment_faces import FaceAugment, face_augment_from_config
from mmaffect.training.distributed import (
    BlockDistributedSampler,
    DistContext,
    barrier,
    broadcast_float,
    pooled_ccc_loss,
    resolve_amp,
    resolve_device,
    unwrap,
    wrap_ddp,
)
from mmaffect.training.evaluate import (
    dataset_options,
    partition_scores,
    predict_recordings,
)
from mmaffect.training.metrics import ccc_loss
from mmaffect.utils.io import atomic_path, atomic_write_text, temporary_files

__all__ = [
    "load_train_config",
    "resolve_train_config",
    "seed_everything",
    "EpochResult",
    "TrainResult",
    "train",
    "delay_pairs",
    "LOG_COLUMNS",
]

LOG_COLUMNS = ("epoch", "step", "train_loss", "dev_arousal", "dev_valence", "dev_mean", "seconds")

# Keys a resumed run may change (everything else must equal the checkpoint's).
RESUMABLE_KEYS = ("optim.epochs", "optim.patience", "data.num_workers", "device", "amp", "log.plot", "log.progress")

# Section 5.4: batch 20 for text and audio, 3 for visual and multimodal networks.
PAPER_BATCH = {"text": 20, "audio": 20, "visual": 3, "multimodal": 3}


def _model_kind(modalities: Iterable[str]) -> str:
    mods = tuple(modalities)
    return mods[0] if len(mods) == 1 else "multimodal"


def load_train_config(source: str | Path | Mapping[str, Any] | None = None,
                      overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a training configuration, merge it onto the defaults and apply overrides.

    ``source``: a YAML file, a mapping, or None for the built-in defaults.
    ``model_options.<key>=value`` overrides may name any option of the
    chosen model (they are applied after the model's defaults are filled in).
    """
    from mmaffect.config import read_config

    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
    else:
        raw = read_config(source)  # a file, or a built-in name such as synthetic/audio
    defaults = builtin_config("train")
    user_options = dict(raw.pop("model_options", None) or {})
    user_tune = raw.pop("tune", None)
    cfg = merge(defaults, raw)
    if user_tune is not None:
        cfg["tune"] = _merge_tune(defaults["tune"], user_tune)
    cfg["model_options"] = user_options
    overrides = list(overrides)
    late = [o for o in overrides if o.split("=", 1)[0].strip().startswith("model_options.")]
    early = [o for o in overrides if o not in late]
    cfg = apply_overrides(cfg, early)
    cfg = resolve_train_config(cfg)
    cfg = apply_overrides(cfg, late)
    return resolve_train_config(cfg)


def _merge_tune(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key == "space":
            out["space"] = {**out.get("space", {}), **copy.deepcopy(dict(value))}
        elif key not in out:
            raise ConfigError(f"unknown configuration key 'tune.{key}' (known: {', '.join(sorted(out))})")
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_face_size(cfg: Mapping[str, Any], prepare_config: Mapping[str, Any], cache_root: Path) -> None:
    """Refuse a visual model whose ``image_size`` is not the size of the cache's face crops.

    The network sees the crops as prepared (training, ``predict`` and the ONNX export alike); an
    ``image_size`` option that says otherwise would be recorded in the checkpoint and mislead every
    later user of it (an exported graph sized for crops the model never saw).
    """
    if "visual" not in cfg["data"]["modalities"] or not (prepare_config.get("faces") or {}).get("enabled", True):
        return
    option = (cfg.get("model_options") or {}).get("image_size")
    crops = (prepare_config.get("faces") or {}).get("size")
    if option is not None and crops is not None and int(option) != int(crops):
        raise ConfigError(f"model_options.image_size={option} but the face crops of {cache_root} are "
                          f"{crops}×{crops} (faces.size): set model_options.image_size={crops}, or prepare "
                          f"with faces.size={option}")


def resolve_train_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Fill what the configuration leaves to the model: every model option, modalities, batch size.

    Raises :class:`ConfigError` for an unknown model, model option or modality.
    """
    from mmaffect.config_schema import validate_model_options, validate_train_config
    from mmaffect.models import get_spec

    out = validate_train_config(plain(dict(cfg)))  # types, ranges, choices of every section (one-line errors)
    import_modules(out.get("imports") or [])
    spec = get_spec(str(out["model_name"]))
    options = validate_model_options(spec.name, out.get("model_options") or {}, spec.defaults)
    out["model_options"] = plain({**spec.defaults, **options})
    data = out["data"]
    if data.get("modalities") is None:
        data["modalities"] = list(spec.modalities)
    missing = set(spec.modalities) - set(data["modalities"])
    if missing:
        raise ConfigError(f"data.modalities lacks {sorted(missing)}, which model {spec.name!r} reads")
    optim = out["optim"]
    if optim.get("batch_size") in (None, "auto"):
        optim["batch_size"] = PAPER_BATCH[_model_kind(spec.modalities)]
    for key in ("batch_size", "epochs", "eval_batch_size"):
        if not isinstance(optim[key], int) or optim[key] < 1:
            raise ConfigError(f"optim.{key} must be a positive integer, not {optim[key]!r}")
    if data["window"] is not None and (not isinstance(data["window"], int) or data["window"] < 2):
        raise ConfigError(f"data.window must be an integer ≥ 2 (frames), not {data['window']!r}")
    if float(data.get("annotation_delay", 0.0)) < 0:
        raise ConfigError("data.annotation_delay cannot be negative")
    if optim.get("scheduler", "none") not in SCHEDULERS:
        raise ConfigError(f"optim.scheduler must be one of {', '.join(SCHEDULERS)}, not {optim['scheduler']!r}")
    out["freeze"] = _checked_branch_options(out, spec)
    return out


def _checked_branch_options(cfg: Mapping[str, Any], spec: Any) -> list[str]:
    """Check ``init_from`` and ``freeze`` against the model's branches; the ``freeze`` list."""
    init = cfg.get("init_from") or {}
    extra = {m for m, p in init.items() if p} - set(spec.modalities)
    if extra:
        raise ConfigError(f"init_from names branches {sorted(m for m, p in init.items() if p)} but "
                          f"{spec.name!r} has only {', '.join(spec.modalities)}")
    freeze = list(cfg.get("freeze") or [])
    if set(freeze) - set(spec.modalities):
        raise ConfigError(f"freeze names branches {freeze} but {spec.name!r} has only {', '.join(spec.modalities)}")
    uninitialised = [m for m in freeze if not init.get(m)]
    if uninitialised:
        raise ConfigError(f"freeze: {uninitialised} would keep random weights; give init_from."
                          f"{uninitialised[0]}=CHECKPOINT (a frozen branch is kept as initialised)")
    return freeze


# optim.scheduler: none; plateau (halve lr after 2 epochs without a better devel score); warmup-cosine
# (per step: linear warm-up from lr/WARMUP_START over the first epoch, at most a quarter of the run,
# then cosine decay to 0 at the last step; see lr_factor).
SCHEDULERS = ("none", "plateau", "warmup-cosine")
WARMUP_START = 100.0


def warmup_steps(steps_per_epoch: int, total_steps: int) -> int:
    """Warm-up length of ``warmup-cosine``: one epoch, at most a quarter of the run.

    >>> warmup_steps(35, 210), warmup_steps(35, 70)
    (35, 17)
    """
    return max(0, min(int(steps_per_epoch), int(total_steps) // 4))


def lr_factor(step: int, total_steps: int, warmup: int, kind: str = "warmup-cosine") -> float:
    """Multiplier of ``optim.lr`` for the optimiser step ``step`` (0-based) of ``total_steps``.

    ``warmup-cosine``: linear from 1/WARMUP_START to 1 over ``warmup`` steps,
    then half a cosine from 1 to 0 over the remaining steps (the last step
    runs at a small positive rate). Other schedulers: 1. A function of the
    step alone, so a resumed run continues the same schedule.

    >>> [round(lr_factor(s, 10, 2), 3) for s in (0, 1, 2, 6, 9)]
    [0.01, 0.505, 1.0, 0.5, 0.038]
    """
    if kind != "warmup-cosine" or total_steps <= 0:
        return 1.0
    if step < warmup:
        start = 1.0 / WARMUP_START
        return start + (1.0 - start) * step / warmup
    span = max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def delay_pairs(pred: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor,
                delay: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair the output at frame ``t`` with the label at ``t + delay`` within each window.

    Returns ``(pred[:, :T-d], gold[:, d:], mask[:, :T-d] & mask[:, d:])``.

    >>> p, g, m = delay_pairs(torch.arange(4.).view(1, 4, 1), torch.arange(4.).view(1, 4, 1),
    ...                       torch.ones(1, 4, dtype=torch.bool), 1)
    >>> p.flatten().tolist(), g.flatten().tolist()
    ([0.0, 1.0, 2.0], [1.0, 2.0, 3.0])
    """
    if delay <= 0:
        return pred, gold, mask
    t = pred.shape[1]
    if delay >= t:
        raise ConfigError(f"annotation delay of {delay} frames does not fit a window of {t} frames")
    return pred[:, : t - delay], gold[:, delay:], mask[:, : t - delay] & mask[:, delay:]


@dataclass
class EpochResult:
    """What one epoch gave (passed to ``epoch_callback``)."""

    epoch: int
    step: int
    train_loss: float
    dev: dict[str, float]
    seconds: float
    is_best: bool

    def row(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "train_loss": self.train_loss,
                "dev_arousal": self.dev["arousal"], "dev_valence": self.dev["valence"],
                "dev_mean": self.dev["mean"], "seconds": self.seconds}


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    run: Path
    best_score: float
    best_epoch: int
    epochs: int
    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


def _score(value: float) -> float:
    return -math.inf if value is None or math.isnan(value) else float(value)


def _dotted(cfg: Mapping[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _check_resume_config(new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    a, b = copy.deepcopy(plain(dict(new))), copy.deepcopy(plain(dict(old)))
    for c in (a, b):  # runs from before data.cache was stored absolute
        if isinstance(c.get("data"), dict) and c["data"].get("cache"):
            c["data"]["cache"] = str(Path(c["data"]["cache"]).absolute())
    b.setdefault("augment", builtin_config("train")["augment"])  # runs from before `augment` had none (= off)
    b.setdefault("freeze", [])  # runs from before `freeze` (= nothing frozen)
    if isinstance(b.get("augment"), dict) and isinstance(b["augment"].get("audio"), dict):
        b["augment"]["audio"].setdefault("p_phone", 0.0)  # runs from before the telephone step (= off)
    if isinstance(b.get("augment"), dict):
        b["augment"].setdefault("modalities", builtin_config("train")["augment"]["modalities"])  # (= off)
    if isinstance(b.get("optim"), dict):
        b["optim"].setdefault("mse_weight", 0.0)  # runs from before optim.mse_weight (= CCC alone)
        b["optim"].setdefault("ema_decay", None)  # runs from before optim.ema_decay (= no averaging)
    for key in RESUMABLE_KEYS:
        for c in (a, b):
            node = c
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.get(part, {})
            node.pop(parts[-1], None)
    if a != b:
        diff = sorted(_diff_keys(a, b))
        raise ConfigError(f"--resume: the configuration differs from the run's in {diff}; only "
                          f"{list(RESUMABLE_KEYS)} may change when resuming")


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(LOG_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{row[k]:.6f}" if isinstance(row[k], float) else row[k]) for k in LOG_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _event_writer(out: Path, setting: Any) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``RUN/tensorboard`` (``log.tensorboard``: auto | true | false).

    ``auto`` writes events when the ``tensorboard`` package is installed
    (``pip install mmaffect[tensorboard]``) and silently skips them
    otherwise; ``true`` makes a missing package an error.
    """
    if setting in (False, "false", None):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if setting in (True, "true"):
            raise ConfigError("log.tensorboard=true needs the tensorboard package "
                              "(pip install 'mmaffect[tensorboard]')") from None
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def _write_events(writer: Any, result: EpochResult, optimizer: torch.optim.Optimizer) -> None:
    """One epoch's scalars, at the epoch number (a resumed run continues the same curves)."""
    writer.add_scalar("train/loss", result.train_loss, result.epoch)
    for key in ("arousal", "valence", "mean"):
        writer.add_scalar(f"devel/ccc_{key}", result.dev[key], result.epoch)
    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], result.epoch)
    writer.add_scalar("train/seconds", result.seconds, result.epoch)
    writer.flush()


def plot_learning_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Train loss and dev CCC per epoch (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(epochs, [r["train_loss"] for r in history], marker="o")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss (1 − CCC, + w·MSE)")
    for key, label in (("dev_arousal", "arousal"), ("dev_valence", "valence"), ("dev_mean", "mean")):
        ax2.plot(epochs, [r[key] for r in history], marker="o", label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("dev CCC")
    ax2.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _build_model(cfg: Mapping[str, Any]) -> torch.nn.Module:
    from mmaffect.models import create_model
    from mmaffect.models.temporal import apply_context

    model = create_model(cfg["model_name"], **cfg["model_options"])
    # the devel scores of model selection come from the head as predict runs it: windows of the
    # training length (mmaffect.models.temporal; eval mode only, training is unchanged)
    apply_context(model, cfg, "train")
    return model


def _face_augment(cfg: Mapping[str, Any], device: torch.device) -> FaceAugment | None:
    """The face augmentation of ``augment.faces`` (validated) when enabled and the model reads faces."""
    augment = face_augment_from_config((cfg.get("augment") or {}).get("faces"), where="augment.faces")
    if augment is None or "visual" not in cfg["data"]["modalities"]:
        return None
    return augment.to(device)


def frozen_branches(model: torch.nn.Module, names: Sequence[str]) -> list[torch.nn.Module]:
    """The branches of ``model`` named in ``freeze`` (a unimodal model's own branch, or a multimodal one's)."""
    from mmaffect.models.assembly import MultimodalModel, UnimodalModel

    if not names:
        return []
    if isinstance(model, MultimodalModel):
        branches = dict(model.branches)
    elif isinstance(model, UnimodalModel):
        branches = {model.modality: model.branch}
    else:
        raise ConfigError(f"freeze: {type(model).__name__} is not built from mmaffect branches; freeze needs one")
    return [branches[n] for n in names]


def freeze_branches(model: torch.nn.Module, names: Sequence[str]) -> None:
    """Stop gradients into the ``freeze`` branches; :func:`keep_frozen_in_eval` keeps their statistics."""
    for branch in frozen_branches(model, names):
        branch.requires_grad_(False)


def keep_frozen_in_eval(model: torch.nn.Module, names: Sequence[str]) -> None:
    """After ``model.train()``: the frozen branches in eval mode (BatchNorm running statistics kept, no
    dropout), so a frozen branch computes exactly what it computed before training."""
    for branch in frozen_branches(model, names):
        branch.eval()


def _init_branches(model: torch.nn.Module, cfg: Mapping[str, Any]) -> dict[str, str]:
    sources = {m: p for m, p in (cfg.get("init_from") or {}).items() if p}
    if not sources:
        return {}
    return load_branch_weights(model, sources)  # type: ignore[arg-type]


def _modality_dropout(cfg: Mapping[str, Any]) -> Any:
    """``augment.modalities`` (validated; None when every probability is 0). A model's single
    modality is never dropped: a unimodal window without its input would teach nothing."""
    from mmaffect.training.augment_modalities import ModalityDropout

    dropout = ModalityDropout.from_mapping((cfg.get("augment") or {}).get("modalities"))
    if dropout is None:
        return None
    read = list(cfg["data"]["modalities"])
    if len(read) < 2:
        raise ConfigError(f"augment.modalities drops {', '.join(dropout.p)}, but the model reads only "
                          f"{read[0]}: modality dropout is for multimodal models")
    unread = [m for m in dropout.p if m not in read]
    if unread:
        raise ConfigError(f"augment.modalities.{unread[0]} > 0, but the model reads {', '.join(read)}")
    return dropout


def _audio_augment(cfg: Mapping[str, Any], prepare_config: Mapping[str, Any]) -> Any:
    """The training-time audio augmentation of ``augment.audio`` (None when off or without audio)."""
    from mmaffect.training.augment_audio import AudioAugment, AudioAugmentConfig

    aug = AudioAugmentConfig.from_mapping((cfg.get("augment") or {}).get("audio"))
    if not aug.enabled or "audio" not in cfg["data"]["modalities"]:
        return None
    return AudioAugment(config=aug, sample_rate=int(prepare_config["audio"]["sample_rate"]))


RUN_LOCK = ".lock"


def train(
    config: Mapping[str, Any],
    *,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    ctx: DistContext | None = None,
    epoch_callback: Callable[[EpochResult], None] | None = None,
) -> TrainResult:
    """Train ``config`` (resolved with :func:`resolve_train_config`) into the run folder ``out``.

    ``resume=True`` continues from ``out/last.pt``; ``ctx`` is the
    data-parallel context (default: one process on ``config['device']``).
    ``epoch_callback`` is called on every rank after each epoch's checkpoints
    are written; an exception it raises (e.g. ``optuna.TrialPruned``) ends
    training and propagates.

    The run folder is held by one process (an inter-process lock on
    ``RUN/.lock``, taken by the writing rank): a second ``train`` into it
    fails at once with a one-line :class:`ConfigError`.
    """
    from filelock import FileLock, Timeout

    out = Path(out)
    if ctx is not None and not ctx.is_main:
        return _train(config, out=out, resume=resume, progress=progress, ctx=ctx, epoch_callback=epoch_callback)
    resolve_train_config(config)  # a bad configuration is reported before the folder is created
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / RUN_LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(f"{out}: another process is training into this run folder (it holds {out / RUN_LOCK}); "
                          "wait for it to finish or choose another --out") from None
    try:
        return _train(config, out=out, resume=resume, progress=progress, ctx=ctx, epoch_callback=epoch_callback)
    finally:
        lock.release()


def _train(
    config: Mapping[str, Any],
    *,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    ctx: DistContext | None = None,
    epoch_callback: Callable[[EpochResult], None] | None = None,
) -> TrainResult:
    """The body of :func:`train`; the writing rank holds the run folder's lock while it runs."""
    cfg = resolve_train_config(config)
    # The run records where its cache is independently of the working directory (evaluate runs from anywhere).
    cfg["data"]["cache"] = str(Path(cfg["data"]["cache"]).absolute())
    out = Path(out)
    if ctx is None:
        ctx = DistContext(device=resolve_device(str(cfg["device"])))
    _check_run_folder(out, resume, sweep=ctx.is_main)
    face_augment = _face_augment(cfg, ctx.device)
    data = _TrainData.load(cfg)
    seed_everything(int(cfg["seed"]))
    model, ckpt = _model(cfg, out / "last.pt" if resume else None, show=ctx.is_main and progress)
    model.to(ctx.device)
    optimizer, scheduler = _optimizer(model, cfg["optim"])
    run = _RunState.begin(ckpt, optimizer, scheduler)
    if ckpt is None and ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", dump_config(cfg))
    if ctx.enabled and not resume:
        # Different dropout masks per rank (the model weights are broadcast by DDP).
        torch.manual_seed(int(cfg["seed"]) + 1_000_003 * ctx.rank)
    loop = _EpochLoop(cfg, data, wrap_ddp(model, ctx=ctx), optimizer, ctx=ctx, face_augment=face_augment,
                      show=progress and bool(cfg.get("log", {}).get("progress", True)) and ctx.is_main, ckpt=ckpt)
    log = _RunLog(out, cfg, ctx)
    patience = cfg["optim"].get("patience")
    stopped_early = patience is not None and run.stale >= int(patience) and run.start_epoch > 0
    for epoch in range(run.start_epoch, loop.epochs if not stopped_early else run.start_epoch):
        t0 = time.perf_counter()
        train_loss, run.step = loop.train_epoch(epoch, run.step)
        dev = loop.score_dev()
        is_best = run.record(epoch, _score(dev["mean"]))
        if scheduler is not None:
            scheduler.step(_score(dev["mean"]))
        result = EpochResult(epoch + 1, run.step, train_loss, dev, time.perf_counter() - t0, is_best)
        run.history.append(result.row())
        if ctx.is_main:
            log.epoch(result, run, loop, optimizer, scheduler, data.prepare_config, show=loop.show)
        barrier(ctx)
        if epoch_callback is not None:
            epoch_callback(result)
        if patience is not None and run.stale >= int(patience):
            stopped_early = True
            break
    log.close()
    return TrainResult(run=out, best_score=run.best, best_epoch=run.best_epoch, epochs=len(run.history),
                       step=run.step, history=run.history, stopped_early=stopped_early)


def _check_run_folder(out: Path, resume: bool, *, sweep: bool = False) -> None:
    """Refuse a fresh run over an existing one or a resume without one; with ``sweep`` (the writing rank,
    which holds the run's lock, so no file is being written) delete the temporary files a writer killed
    mid-write left behind."""
    if sweep:
        for path in temporary_files(out):
            path.unlink(missing_ok=True)
    last_path = out / "last.pt"
    if resume:
        if not last_path.is_file():
            raise ConfigError(f"--resume: {last_path} does not exist")
    elif last_path.exists():
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


@dataclass
class _TrainData:
    """The cache's sessions as training windows and whole devel recordings, and its preprocessing."""

    prepare_config: dict[str, Any]
    label_rate: float
    delay: int
    train: SessionWindows
    dev: SessionWindows

    @classmethod
    def load(cls, cfg: dict[str, Any]) -> _TrainData:
        data = cfg["data"]
        cache = Cache(data["cache"])
        prepare_config = cache.config()
        check_face_size(cfg, prepare_config, cache.root)
        label_rate = float(prepare_config.get("label_rate", 10.0))
        ds_opts = dataset_options(prepare_config)
        embed_dim = cfg["model_options"].get("embed_dim") if "text" in data["modalities"] else None
        train_sessions = cache.sessions(partitions=list(data["train_partitions"]))
        dev_sessions = cache.sessions(partitions=list(data["devel_partitions"]))
        if not train_sessions or not dev_sessions:
            raise ConfigError(f"{cache.root}: no sessions in partitions {data['train_partitions']} (train) "
                              f"or {data['devel_partitions']} (devel)")
        found = word_vector_dim(train_sessions) if embed_dim is not None else None
        if found is not None and found != int(embed_dim):
            # otherwise the first text layer fails mid-batch with a bare shape error
            raise ConfigError(
                f"{cache.root}: its word vectors have {found} dimensions (text.embedder "
                f"{(prepare_config.get('text') or {}).get('embedder')!r}), the model expects "
                f"model_options.embed_dim={embed_dim}; train with model_options.embed_dim={found}")
        seed = int(cfg["seed"])
        reference = int(cfg["model_options"].get("audio_reference") or 0)  # the model's speaker yardstick
        train_ds = SessionWindows(train_sessions, modalities=data["modalities"], window=data["window"], seed=seed,
                                  embed_dim=embed_dim, audio_augment=_audio_augment(cfg, prepare_config),
                                  audio_reference=reference, modality_dropout=_modality_dropout(cfg), **ds_opts)
        dev_ds = SessionWindows(dev_sessions, modalities=data["modalities"], window=None, seed=seed,
                                embed_dim=embed_dim, audio_reference=reference, **ds_opts)
        return cls(prepare_config, label_rate, int(round(float(data.get("annotation_delay", 0.0)) * label_rate)),
                   train_ds, dev_ds)


def _model(cfg: dict[str, Any], resume_from: Path | None, *, show: bool) -> tuple[torch.nn.Module, dict | None]:
    """The model, with the weights of ``resume_from`` (then also returned) or initialised branches."""
    model = _build_model(cfg)
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        _check_resume_config(cfg, ckpt["config"])
        model.load_state_dict(ckpt.get("training_model", ckpt["model"]))  # with averaging: the trained weights
        freeze_branches(model, cfg.get("freeze") or [])
        return model, ckpt
    loaded = _init_branches(model, cfg)
    if loaded and show:
        print("initialised branches: " + ", ".join(f"{m} ← {s}" for m, s in loaded.items()), file=sys.stderr)
    freeze_branches(model, cfg.get("freeze") or [])
    return model, None


def _optimizer(model: torch.nn.Module, optim_cfg: Mapping[str, Any]) -> tuple[torch.optim.Optimizer, Any]:
    """Adam with the configured hyper-parameters, and the epoch-level scheduler (``plateau``) if any."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=float(optim_cfg["lr"]),
                                 betas=tuple(float(b) for b in optim_cfg["betas"]),  # type: ignore[arg-type]
                                 eps=float(optim_cfg["eps"]), weight_decay=float(optim_cfg["weight_decay"]))
    scheduler = None
    if optim_cfg.get("scheduler", "none") == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=2)
    return optimizer, scheduler


@dataclass
class _RunState:
    """Where a run stands: epoch, step, best score and epoch, epochs without improvement, history."""

    start_epoch: int = 0
    step: int = 0
    best: float = -math.inf
    best_epoch: int = 0
    stale: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def begin(cls, ckpt: dict[str, Any] | None, optimizer: torch.optim.Optimizer, scheduler: Any) -> _RunState:
        """A new run, or the state saved in ``ckpt`` (optimizer, scheduler and random state restored)."""
        if ckpt is None:
            return cls()
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        restore_rng_state(ckpt["rng"])
        return cls(int(ckpt["epoch"]), int(ckpt["step"]), float(ckpt["best_score"]), int(ckpt["best_epoch"]),
                   int(ckpt["stale_epochs"]), list(ckpt["history"]))

    def record(self, epoch: int, score: float) -> bool:
        """Count epoch ``epoch``'s devel score; whether it is the best so far."""
        is_best = score > self.best or self.best_epoch == 0
        if is_best:
            self.best, self.best_epoch, self.stale = score, epoch + 1, 0
        else:
            self.stale += 1
        return is_best


class _EpochLoop:
    """One epoch of training steps, and the devel scoring after it."""

    def __init__(self, cfg: dict[str, Any], data: _TrainData, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 *, ctx: DistContext, face_augment: FaceAugment | None, show: bool,
                 ckpt: dict[str, Any] | None = None) -> None:
        optim_cfg = cfg["optim"]
        self.cfg, self.data, self.net, self.optimizer, self.ctx = cfg, data, net, optimizer, ctx
        self.face_augment, self.show = face_augment, show
        self.seed = int(cfg["seed"])
        self.sampler = BlockDistributedSampler(data.train, batch_size=int(optim_cfg["batch_size"]),
                                               num_replicas=ctx.world_size, rank=ctx.rank, seed=self.seed)
        self.grad_clip = optim_cfg.get("grad_clip")
        self.epochs = int(optim_cfg["epochs"])
        self.base_lr = float(optim_cfg["lr"])
        self.schedule = str(optim_cfg.get("scheduler", "none"))
        self.mse_weight = float(optim_cfg.get("mse_weight") or 0.0)
        self.amp = resolve_amp(cfg.get("amp", "auto"), ctx.device)  # configs from before `amp`: auto
        steps_per_epoch = math.ceil(len(self.sampler) / self.sampler.local_batch)  # the DataLoader's batches
        self.total_steps = steps_per_epoch * self.epochs
        self.warmup = warmup_steps(steps_per_epoch, self.total_steps)
        self.ema = _averaged_model(unwrap(net), optim_cfg.get("ema_decay"), ckpt)

    @property
    def scored_model(self) -> torch.nn.Module:
        """The model that devel scoring, ``best.pt`` and ``predict`` use: the averaged one when averaging."""
        return self.ema.module if self.ema is not None else unwrap(self.net)

    def _loader(self, epoch: int) -> DataLoader:
        self.data.train.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        gen = torch.Generator()
        gen.manual_seed(self.seed * 7919 + epoch)
        return DataLoader(self.data.train, batch_size=self.sampler.local_batch, sampler=self.sampler,
                          collate_fn=collate, num_workers=int(self.cfg["data"]["num_workers"]),
                          worker_init_fn=_worker_init, generator=gen, pin_memory=self.ctx.device.type == "cuda")

    def train_epoch(self, epoch: int, step: int) -> tuple[float, int]:
        """Train one epoch from global step ``step``; (mean training loss, the step after it)."""
        self.net.train()
        keep_frozen_in_eval(unwrap(self.net), self.cfg.get("freeze") or [])
        total, batches = 0.0, 0
        bar = _progress(self._loader(epoch), self.show, f"epoch {epoch + 1}/{self.epochs}")
        for batch in bar:
            total += self._step(batch, step)
            step += 1
            batches += 1
            if self.show and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / batches:.4f}")
        return total / max(1, batches), step

    def _step(self, batch: dict[str, torch.Tensor], step: int) -> float:
        ctx, device = self.ctx, self.ctx.device
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if self.face_augment is not None and "faces" in batch:  # training steps only; seeded by step, rank
            batch["faces"] = self.face_augment.sequences(batch["faces"], batch["face_mask"],
                                                         seed=(self.seed * 1_000_003 + step) * 64 + ctx.rank)
        # bf16 autocast for the forward pass only (``amp``); the CCC loss and the weights stay in fp32.
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.amp):
            output = self.net(batch)
        out = output.pred[..., :2].float()
        pred, gold, mask = delay_pairs(out, batch["labels"][..., :2].to(out.dtype), batch["mask"], self.data.delay)
        loss = (pooled_ccc_loss(pred, gold, mask, ctx=ctx, mse_weight=self.mse_weight) if ctx.enabled
                else ccc_loss(pred, gold, mask, mse_weight=self.mse_weight))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), float(self.grad_clip))
        if self.schedule == "warmup-cosine":
            for group in self.optimizer.param_groups:
                group["lr"] = self.base_lr * lr_factor(step, self.total_steps, self.warmup)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(unwrap(self.net))
        return float(loss.item())

    def score_dev(self) -> dict[str, float]:
        """Devel CCC (arousal, valence, mean), computed by the writing rank and shared with the others."""
        dev = {"arousal": float("nan"), "valence": float("nan"), "mean": float("nan")}
        if self.ctx.is_main:
            preds = predict_recordings(self.scored_model, self.data.dev, device=self.ctx.device,
                                       batch_size=int(self.cfg["optim"]["eval_batch_size"]),
                                       delay_frames=self.data.delay, label_rate=self.data.label_rate)
            dev = partition_scores(preds)
        if self.ctx.enabled:
            dev = {k: broadcast_float(v, ctx=self.ctx) for k, v in dev.items()}
        return dev


def _averaged_model(model: torch.nn.Module, decay: float | None,
                    ckpt: dict[str, Any] | None) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers (``optim.ema_decay``; None: off),
    continued from a resumed checkpoint's averaged weights. Averaging smooths the step-to-step noise
    of small batches, so the epoch that devel picks depends less on where the last steps landed."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=True)
    if ckpt is not None and "training_model" in ckpt:
        ema.module.load_state_dict(ckpt["model"])
        ema.n_averaged.fill_(int(ckpt["ema_updates"]))
    return ema


class _RunLog:
    """What the writing rank leaves in the run folder after each epoch: checkpoints, log, curves, events."""

    def __init__(self, out: Path, cfg: dict[str, Any], ctx: DistContext) -> None:
        self.out, self.cfg = out, cfg
        self.plot = bool(cfg.get("log", {}).get("plot", True))
        self.events = _event_writer(out, cfg.get("log", {}).get("tensorboard", "auto")) if ctx.is_main else None

    def epoch(self, result: EpochResult, run: _RunState, loop: _EpochLoop, optimizer: torch.optim.Optimizer,
              scheduler: Any, prepare_config: dict[str, Any], *, show: bool) -> None:
        averaged = (unwrap(loop.net), int(loop.ema.n_averaged)) if loop.ema is not None else None
        state = dict(model=loop.scored_model, averaged=averaged, optimizer=optimizer, scheduler=scheduler, epoch=result.epoch, step=run.step,
                     best_score=run.best, best_epoch=run.best_epoch, stale_epochs=run.stale, history=run.history,
                     config=self.cfg, prepare_config=prepare_config, rng=capture_rng_state())
        if result.is_best:
            save_checkpoint(self.out / "best.pt", **state)
        save_checkpoint(self.out / "last.pt", **state)
        _write_log(self.out / "log.csv", run.history)
        if self.plot:
            plot_learning_curves(run.history, self.out / "learning_curves.png")
        if self.events is not None:
            _write_events(self.events, result, optimizer)
        if show:
            dev = result.dev
            print(f"epoch {result.epoch}: train loss {result.train_loss:.4f}, dev CCC arousal {dev['arousal']:.3f} "
                  f"valence {dev['valence']:.3f} mean {dev['mean']:.3f}" + (" (best)" if result.is_best else ""),
                  file=sys.stderr)

    def close(self) -> None:
        if self.events is not None:
            self.events.close()


def _progress(it: Any, show: bool, desc: str) -> Any:
    if not show:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True,
                disable=not sys.stderr.isatty() and os.environ.get("MMAFFECT_PROGRESS") != "1")
