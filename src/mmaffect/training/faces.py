"""Pretraining a visual network on still faces with expression votes (FER+).

``mmaffect pretrain-faces`` trains a registered visual network (the paper's
HRNet-3 with attentional pooling, or a Table-2 baseline) on FER+'s 48×48 faces
with a linear classifier over the 8 expression categories, against each face's
**vote distribution** (cross-entropy with soft targets; Barsoum et al. 2016's
"cross-entropy loss" scheme). Faces whose majority vote is ``unknown`` or
``NF`` are dropped, as the data README prescribes; the remaining votes on
``unknown``/``NF`` are left out of the distribution.

Reported on the validation faces after the last epoch (no model selection on
them, so the figures are not tuned to the set they are reported on):

* **majority-vote accuracy**: the predicted category (arg max) is one of the
  categories with the most votes (a tie counts either category as right);
* **CCC of the valence/arousal proxy**: the predicted proxy is the
  probability-weighted mean of the categories' proxy points
  (:data:`mmaffect.data.proxy.PROXY_VA`), the gold one the vote-weighted mean
  (:func:`mmaffect.data.proxy.votes_matrix_to_va`), so both live on the same
  scale; CCC with population moments (:func:`mmaffect.training.metrics.ccc`).

The run folder holds ``config.yaml`` (resolved), ``history.json`` (one row per
epoch), ``results.json`` (final scores, time, device, parameters) and
``model.pt``: a state-dict checkpoint whose ``branch.*`` weights initialise
the visual branch of a multimodal model (``init_from.visual=RUN/model.pt``
in ``mmaffect train``) when the branch options are the same.
"""

from __future__ import annotations

import math
import platform
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmaffect.checkpoints import save_checkpoint
from mmaffect.config import apply_overrides, builtin_config, dump_config, load_config, merge
from mmaffect.data.proxy import category_to_va
from mmaffect.errors import ConfigError, DataError
from mmaffect.training.augment_faces import FaceAugment
from mmaffect.training.metrics import ccc
from mmaffect.utils.io import atomic_write_json, atomic_write_text

__all__ = ["FERPLUS_CATEGORIES", "FaceSet", "FaceClassifier", "load_ferplus_split", "augment_faces",
           "resize_faces", "pretrain_faces", "evaluate_faces", "load_pretrain_config"]

FERPLUS_CATEGORIES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
"""The 8 expression categories of FER+ (its vote columns less ``unknown`` and ``NF``), in file order."""


@dataclass
class FaceSet:
    """Kept faces of one FER+ file: ``images`` (N, 48, 48) uint8, ``target``
    (N, 8) vote distribution, ``top`` (N, 8) bool — the categories with the
    most votes —, ``proxy`` (N, 2) arousal, valence (vote-weighted), ``names``."""

    images: np.ndarray
    target: np.ndarray
    top: np.ndarray
    proxy: np.ndarray
    names: list[str]
    dropped: int

    def __len__(self) -> int:
        return len(self.images)


def _proxy_points() -> np.ndarray:
    """(8, 2) arousal, valence of each category."""
    return np.array([category_to_va(c)[::-1] for c in FERPLUS_CATEGORIES], dtype=np.float64)


def load_ferplus_split(path: str | Path, *, limit: int | None = None) -> FaceSet:
    """Read one FER+ npz file (``images``, ``votes``, ``columns``[, ``names``]).

    Drops the faces whose majority vote is ``unknown``/``NF`` (ties included)
    or that have no vote on a category; raises :class:`DataError` naming the
    file for a missing file, a wrong array shape or a column that is not a
    FER+ category. ``limit`` keeps the first N kept faces.
    """
    from mmaffect.data.sources import ferplus_keep as _ferplus_keep
    from mmaffect.data.sources import load_ferplus as _load_ferplus

    path = Path(path)
    images, votes, columns, names = _load_ferplus(path)
    lowered = [c.strip().lower() for c in columns]
    missing = [c for c in FERPLUS_CATEGORIES if c not in lowered]
    if missing:
        raise DataError(f"vote columns lack {', '.join(missing)} (have {', '.join(columns)})", path=path)
    keep, _ = _ferplus_keep(votes, columns)
    dropped = int((~keep).sum())
    if limit is not None:
        keep &= np.cumsum(keep) <= limit
    counts = votes[keep][:, [lowered.index(c) for c in FERPLUS_CATEGORIES]].astype(np.float64)
    target = counts / counts.sum(axis=1, keepdims=True)
    top = counts == counts.max(axis=1, keepdims=True)
    return FaceSet(
        images=np.ascontiguousarray(images[keep]),
        target=target.astype(np.float32),
        top=top,
        proxy=target @ _proxy_points(),
        names=[str(n) for n in np.asarray(names)[keep]],
        dropped=dropped,
    )


class FaceClassifier(nn.Module):
    """A visual branch's per-frame features → linear layer over the 8 categories.

    State-dict keys: ``branch.*`` (the visual network, as in a unimodal or
    multimodal model) and ``classifier.*``.
    """

    def __init__(self, *, branch: nn.Module, n_classes: int = len(FERPLUS_CATEGORIES)) -> None:
        super().__init__()
        self.branch = branch
        self.classifier = nn.Linear(branch.out_dim, n_classes)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) faces in [0, 1] → (n, 8) logits."""
        feats = self.branch.frame_features(faces)
        if isinstance(feats, tuple):  # HRNet also returns its attention maps
            feats = feats[0]
        return self.classifier(feats)


def _affine(n: int, device: torch.device, *, rotate: float = 0.0, scale: float = 0.0, translate: float = 0.0,
            flip: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 2, 3) sampling matrices of random rotations, zooms, shifts and mirrors (identity at 0)."""
    def uniform() -> torch.Tensor:
        return torch.rand(n, generator=generator, device=device) * 2 - 1

    angle = uniform() * math.radians(rotate)
    s = 1.0 + uniform() * scale
    mirror = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0) if flip \
        else torch.ones(n, device=device)
    cos, sin = torch.cos(angle) * s, torch.sin(angle) * s
    row0 = torch.stack([cos * mirror, -sin, uniform() * translate], dim=1)
    row1 = torch.stack([sin * mirror, cos, uniform() * translate], dim=1)
    return torch.stack([row0, row1], dim=1)


def _sample(images: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    x = images.unsqueeze(1).float() / 255.0  # (n, 1, 48, 48)
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], 1, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.expand(-1, 3, -1, -1)  # grey → the 3 channels the networks expect


def resize_faces(images: torch.Tensor, size: int) -> torch.Tensor:
    """(n, 48, 48) uint8 → (n, 3, size, size) float in [0, 1], bilinear, grey in all channels."""
    theta = _affine(images.shape[0], images.device)
    return _sample(images, theta, size)


def augment_faces(images: torch.Tensor, size: int, *, rotate: float, scale: float, translate: float,
                  flip: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random rotation (± ``rotate`` degrees), zoom (± ``scale``), shift
    (± ``translate`` of the side) and mirror, then resize as :func:`resize_faces`.

    Done on the batch at once on the training device (one ``grid_sample``).
    The geometric augmentation of the first runs (kept for scripts that call
    it); ``pretrain-faces`` now uses :class:`mmaffect.training.augment_faces.
    FaceAugment` (crop box, colour, blur, JPEG) after :func:`resize_faces`.
    """
    theta = _affine(images.shape[0], images.device, rotate=rotate, scale=scale, translate=translate,
                    flip=flip, generator=generator)
    return _sample(images, theta, size)


def load_pretrain_config(source: Any = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Built-in ``pretrain_faces.yaml`` ← a user's file or mapping ← ``key=value`` overrides.

    ``model_options.<key>=value`` may name any option of the chosen visual
    network (applied after its defaults are filled in); the unimodal head's
    options are dropped (the classifier replaces the head).
    """
    base = builtin_config("pretrain_faces")
    raw = {} if source is None else load_config(source)
    user_options = dict(raw.pop("model_options", None) or {})
    unknown = set(raw) - set(base)
    if unknown:
        raise ConfigError(f"unknown configuration key(s) {', '.join(sorted(unknown))} for pretrain-faces")
    cfg = merge(base, raw)
    cfg["model_options"] = user_options
    overrides = list(overrides)
    late = [o for o in overrides if o.split("=", 1)[0].strip().startswith("model_options.")]
    cfg = apply_overrides(cfg, [o for o in overrides if o not in late])
    from mmaffect.config_schema import validate_model_options, validate_pretrain_config
    from mmaffect.models.registry import get_spec

    cfg = validate_pretrain_config(cfg)  # types, ranges, choices (one-line errors)

    spec = get_spec(str(cfg["model_name"]))
    if spec.modalities != ("visual",):
        raise ConfigError(f"pretrain-faces needs a visual model, not {cfg['model_name']!r} "
                          f"(modalities {spec.modalities})")
    head_keys = {"head_hidden", "head_layers", "head_dropout"}
    options = merge(spec.defaults, cfg["model_options"])
    unknown = set(options) - set(spec.defaults)
    if unknown:
        raise ConfigError(f"model_options: {cfg['model_name']} has no option(s) {', '.join(sorted(unknown))}")
    cfg["model_options"] = {k: v for k, v in options.items() if k not in head_keys}
    cfg = apply_overrides(cfg, late)
    cfg["model_options"] = validate_model_options(spec.name, cfg["model_options"], spec.defaults)
    optim = cfg["optim"]
    if optim["optimizer"] not in ("sgd", "adamw"):
        raise ConfigError(f"optim.optimizer must be sgd or adamw, not {optim['optimizer']!r}")
    if int(optim["epochs"]) < 1 or int(optim["batch_size"]) < 1:
        raise ConfigError("optim.epochs and optim.batch_size must be positive")
    if optim["budget_minutes"] is not None and float(optim["budget_minutes"]) <= 0:
        raise ConfigError("optim.budget_minutes must be positive or null")
    FaceAugment.from_config(cfg["augment"], where="augment")  # unknown keys and bad values fail here, early
    return cfg


def _build(cfg: Mapping[str, Any]) -> FaceClassifier:
    from mmaffect.models.registry import create_model

    model = create_model(str(cfg["model_name"]), **cfg["model_options"])
    branch = model.branch
    if hasattr(branch, "checkpoint"):
        branch.checkpoint = bool(cfg["activation_checkpointing"])
    return FaceClassifier(branch=branch)


def _load_initial_weights(model: FaceClassifier, source: str | Path) -> None:
    """Load a ``pretrain-faces`` checkpoint (a path or ``pretrained:NAME``) into ``model`` (``init_from``).

    Raises :class:`ConfigError` naming the file when it is not a face
    checkpoint of the same network (a key or a shape differs).
    """
    from mmaffect.checkpoints import load_checkpoint, resolve

    path = resolve(source)
    state = load_checkpoint(path)["model"]
    own = model.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise ConfigError(f"{path}: init_from is not a pretrain-faces checkpoint of this network (its weights "
                          f"do not match {sum(v.numel() for v in own.values())} parameters of the same names "
                          f"and shapes; check model_name and model_options)")
    model.load_state_dict(state)


def _image_size(cfg: Mapping[str, Any]) -> int:
    # HRNet has its own input size; the GAP baselines take any size: the face
    # crops of `mmaffect prepare` default to 96.
    return int(cfg["model_options"].get("image_size", 96))


def _data_root(cfg: Mapping[str, Any]) -> Path:
    root = cfg["data"]["root"]
    if root:
        return Path(root)
    from mmaffect.data.sources import shared_data_root

    shared = shared_data_root()
    if shared is None:
        raise ConfigError("no FER+ data: pass data.root=DIR (holding ferplus_train.npz and ferplus_valid.npz) "
                          "or set MMAFFECT_SHARED_DATA")
    return shared / "ferplus"


@torch.inference_mode()
def face_probabilities(model: FaceClassifier, images: np.ndarray, *, size: int, device: torch.device,
                       batch_size: int = 512, amp: bool = False) -> np.ndarray:
    """(N, 8) category probabilities of (N, H, W) uint8 grey faces (resized as in training)."""
    model.eval()
    probs = [torch.zeros(0, len(FERPLUS_CATEGORIES))]
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    for start in range(0, len(tensor), batch_size):
        x = resize_faces(tensor[start:start + batch_size].to(device), size)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        probs.append(torch.softmax(logits.float(), dim=-1).cpu())
    return torch.cat(probs).numpy().astype(np.float64)


def proxy_from_probabilities(p: np.ndarray) -> np.ndarray:
    """(N, 2) arousal, valence: the probability-weighted mean of the categories' proxy points."""
    return np.asarray(p, np.float64) @ _proxy_points()


def evaluate_faces(model: FaceClassifier, faces: FaceSet, *, size: int, device: torch.device,
                   batch_size: int = 512, amp: bool = False) -> dict[str, float]:
    """Majority-vote accuracy, cross-entropy and proxy CCC (arousal, valence) on ``faces``."""
    p = face_probabilities(model, faces.images, size=size, device=device, batch_size=batch_size, amp=amp)
    return score_face_probabilities(p, faces)


def score_face_probabilities(p: np.ndarray, faces: FaceSet) -> dict[str, float]:
    """:func:`evaluate_faces`'s scores of given (N, 8) probabilities ``p`` of ``faces``."""
    pred = p.argmax(axis=1)
    va = proxy_from_probabilities(p)
    loss = float(-(faces.target * np.log(np.clip(p, 1e-12, None))).sum(axis=1).mean())
    return {
        "accuracy": float(faces.top[np.arange(len(pred)), pred].mean()),
        "loss": loss,
        "ccc_arousal": ccc(va[:, 0], faces.proxy[:, 0]),
        "ccc_valence": ccc(va[:, 1], faces.proxy[:, 1]),
    }


def _lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over ``warmup`` of the schedule, then cosine to 0."""
    if progress < warmup:
        return max(progress / warmup, 1e-3)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))))


def _start_run_folder(cfg: Mapping[str, Any], out: Path) -> None:
    """Refuse a folder that holds a pretraining run already; create ``out`` and write ``config.yaml``."""
    if (out / "model.pt").exists():
        raise ConfigError(f"{out} already holds a pretraining run (model.pt); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg))


def _seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators.

    Seeded here rather than by trainer.seed_everything: the trainer pulls the
    media decoders in, which a GPU box that only pretrains faces may lack."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _device_and_amp(cfg: Mapping[str, Any]) -> tuple[torch.device, bool]:
    """The device of ``cfg["device"]`` and whether to run in bf16 autocast (``amp``: auto = on a GPU)."""
    from mmaffect.training.distributed import resolve_amp, resolve_device

    device = resolve_device(str(cfg["device"]))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    return device, resolve_amp(cfg["amp"], device)


def _prepare_model(cfg: Mapping[str, Any], device: torch.device) -> FaceClassifier:
    """The classifier of ``cfg`` (with its ``init_from`` weights) on ``device`` (channels-last on a GPU)."""
    model = _build(cfg)
    if cfg.get("init_from"):
        _load_initial_weights(model, cfg["init_from"])
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def _make_optimizer(model: nn.Module, optim_cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; no weight decay on biases and batch-norm scales."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # biases, batch-norm scales
    groups = [{"params": decay, "weight_decay": float(optim_cfg["weight_decay"])},
              {"params": no_decay, "weight_decay": 0.0}]
    lr = float(optim_cfg["lr"])
    if optim_cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(optim_cfg["momentum"]), nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)


@dataclass
class _Schedule:
    """How far a pretraining run is: by steps, or by wall time under ``optim.budget_minutes``."""

    lr: float
    warmup: float
    total_steps: int
    budget: float | None  # seconds
    started: float = 0.0  # time.perf_counter() when training started

    def fraction(self, step: int, elapsed: float) -> float:
        """The fraction of the schedule done after ``step`` steps and ``elapsed`` seconds (1 = done)."""
        return max(step / self.total_steps, elapsed / self.budget if self.budget else 0.0)


@dataclass
class _FaceTrainer:
    """The training side of one pretraining run: model, optimiser, augmentation, the train faces and
    their smoothed targets on the device, the schedule, and the steps and images done so far."""

    model: FaceClassifier
    optimizer: torch.optim.Optimizer
    augment: FaceAugment
    images: torch.Tensor
    targets: torch.Tensor
    gen: torch.Generator
    device: torch.device
    amp: bool
    size: int
    batch: int
    steps_per_epoch: int
    grad_clip: float | None
    schedule: _Schedule
    out: Path
    step: int = 0
    images_seen: int = 0

    def train_epoch(self, epoch: int) -> tuple[list[torch.Tensor], bool]:
        """One pass over the train faces in a new random order: the step losses, and whether the
        schedule ran out during it (steps or time budget)."""
        self.model.train()
        order = torch.randperm(len(self.images), generator=self.gen, device=self.device)
        losses = []
        for i in range(self.steps_per_epoch):
            frac = self.schedule.fraction(self.step, time.perf_counter() - self.schedule.started)
            if frac >= 1.0:
                return losses, True
            for g in self.optimizer.param_groups:
                g["lr"] = self.schedule.lr * _lr_factor(frac, self.schedule.warmup)
            idx = order[i * self.batch:(i + 1) * self.batch]
            losses.append(self._train_step(idx, epoch))
        return losses, False

    def _train_step(self, idx: torch.Tensor, epoch: int) -> torch.Tensor:
        """One optimiser step on the faces ``idx``; the (detached) loss. A non-finite loss raises."""
        # grey 48x48 -> the input size, then crop-box, colour, blur and JPEG augmentation (kornia),
        # its parameters from this run's generator, so a run is reproducible from its seed
        aug_seed = int(torch.randint(2**62, (1,), generator=self.gen, device=self.device))
        x = self.augment(resize_faces(self.images[idx], self.size), seed=aug_seed)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(x)
        loss = -(self.targets[idx] * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()
        if not torch.isfinite(loss):
            raise ConfigError(f"{self.out}: the training loss became {float(loss)} at step {self.step + 1} (epoch "
                              f"{epoch}); lower optim.lr or set optim.grad_clip")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.grad_clip))
        self.optimizer.step()
        self.step += 1
        self.images_seen += len(idx)
        return loss.detach()


def _face_trainer(cfg: Mapping[str, Any], model: FaceClassifier, train_set: FaceSet, *, device: torch.device,
                  amp: bool, size: int, out: Path) -> _FaceTrainer:
    """The trainer of ``cfg``'s ``optim`` and ``augment`` sections for ``model`` on ``train_set``."""
    optim_cfg = cfg["optim"]
    face_augment = FaceAugment.from_config(cfg["augment"], where="augment").to(device)
    optimizer = _make_optimizer(model, optim_cfg)
    batch = int(optim_cfg["batch_size"])
    steps_per_epoch = max(1, len(train_set) // batch)  # drop the last partial batch (batch-norm statistics)
    budget = None if optim_cfg["budget_minutes"] is None else 60.0 * float(optim_cfg["budget_minutes"])
    smooth = float(optim_cfg["label_smoothing"])
    images = torch.from_numpy(train_set.images).to(device)
    targets = torch.from_numpy(train_set.target).to(device)
    targets = targets * (1 - smooth) + smooth / targets.shape[1]
    gen = torch.Generator(device=device).manual_seed(int(cfg["seed"]))
    schedule = _Schedule(lr=float(optim_cfg["lr"]), warmup=float(optim_cfg["warmup_fraction"]),
                         total_steps=int(optim_cfg["epochs"]) * steps_per_epoch, budget=budget)
    return _FaceTrainer(model=model, optimizer=optimizer, augment=face_augment, images=images, targets=targets,
                        gen=gen, device=device, amp=amp, size=size, batch=batch, steps_per_epoch=steps_per_epoch,
                        grad_clip=optim_cfg["grad_clip"], schedule=schedule, out=out)


def _train_epochs(cfg: Mapping[str, Any], trainer: _FaceTrainer, valid_set: FaceSet, *, out: Path,
                  progress: bool) -> list[dict[str, Any]]:
    """Train epoch by epoch until ``optim.epochs`` or the schedule's end, scoring the valid faces after
    each epoch (``history.json`` rewritten, a line on stderr with ``progress``); the history rows."""
    history: list[dict[str, Any]] = []
    for epoch in range(1, int(cfg["optim"]["epochs"]) + 1):
        t0 = time.perf_counter()
        losses, done = trainer.train_epoch(epoch)
        train_seconds = time.perf_counter() - t0
        if not losses:
            break
        scores = evaluate_faces(trainer.model, valid_set, size=trainer.size, device=trainer.device,
                                batch_size=int(cfg["eval_batch_size"]), amp=trainer.amp)
        row = {"epoch": epoch, "steps": trainer.step, "train_loss": float(torch.stack(losses).mean()),
               "train_seconds": round(train_seconds, 2), "lr_end": trainer.optimizer.param_groups[0]["lr"],
               **{f"valid_{k}": v for k, v in scores.items()}}
        history.append(row)
        atomic_write_json(out / "history.json", history)
        if progress:
            print(f"epoch {epoch}: train loss {row['train_loss']:.4f} ({train_seconds:.0f} s), valid accuracy "
                  f"{scores['accuracy']:.4f}, CCC arousal {scores['ccc_arousal']:.3f} valence "
                  f"{scores['ccc_valence']:.3f}", file=sys.stderr)
        if done:
            break
    return history


def _run_results(cfg: Mapping[str, Any], trainer: _FaceTrainer, history: list[dict[str, Any]], *, n_params: int,
                 n_train: int, n_valid: int, wall: float) -> dict[str, Any]:
    """``results.json``: the last epoch's valid scores, the schedule done, time, device and versions."""
    final = history[-1]
    return {
        "model_name": cfg["model_name"], "parameters": n_params, "image_size": trainer.size,
        "accuracy": final["valid_accuracy"], "ccc_arousal": final["valid_ccc_arousal"],
        "ccc_valence": final["valid_ccc_valence"], "valid_loss": final["valid_loss"],
        "epochs": len(history), "steps": trainer.step,
        "schedule_done": round(min(1.0, trainer.schedule.fraction(trainer.step, wall)), 3),
        "train_faces": n_train, "valid_faces": n_valid,
        "wall_seconds": round(wall, 1), "images_per_second": round(trainer.images_seen / wall, 1),
        "device": _device_name(trainer.device), "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "budget_minutes": cfg["optim"]["budget_minutes"],
    }


def pretrain_faces(config: Mapping[str, Any], *, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train ``config`` (see :func:`load_pretrain_config`) into the run folder ``out``; returns the final scores."""
    cfg = load_pretrain_config(config)
    out = Path(out)
    _start_run_folder(cfg, out)
    _seed_all(int(cfg["seed"]))
    device, amp = _device_and_amp(cfg)
    root = _data_root(cfg)
    train_set = load_ferplus_split(root / "ferplus_train.npz", limit=cfg["data"]["train_limit"])
    valid_set = load_ferplus_split(root / "ferplus_valid.npz", limit=cfg["data"]["valid_limit"])
    size = _image_size(cfg)
    model = _prepare_model(cfg, device)
    n_params = sum(p.numel() for p in model.branch.parameters())
    trainer = _face_trainer(cfg, model, train_set, device=device, amp=amp, size=size, out=out)
    print(f"pretrain-faces: {cfg['model_name']} ({n_params / 1e6:.2f} M parameters) on {len(train_set)} train / "
          f"{len(valid_set)} valid faces from {root} ({train_set.dropped} + {valid_set.dropped} dropped: "
          f"majority unknown/NF or no category vote), {size}x{size} input, device {device}" + (", bf16" if amp else ""),
          file=sys.stderr)
    trainer.schedule.started = time.perf_counter()
    history = _train_epochs(cfg, trainer, valid_set, out=out, progress=progress)
    wall = time.perf_counter() - trainer.schedule.started
    results = _run_results(cfg, trainer, history, n_params=n_params, n_train=len(train_set),
                           n_valid=len(valid_set), wall=wall)
    final = history[-1]
    save_checkpoint(out / "model.pt", model=model, optimizer=None, scheduler=None, epoch=len(history),
                    step=trainer.step, best_score=float(final["valid_accuracy"]), best_epoch=len(history),
                    stale_epochs=0, history=history, config={**cfg, "pretrain": "faces"}, prepare_config=None)
    atomic_write_json(out / "results.json", results)
    return results


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
