"""Data-parallel training with ``torch.distributed`` (DDP), launched by torchrun.

Launch the ordinary ``train`` command under torchrun; it reads ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment::

    torchrun --standalone --nproc_per_node 2 -m mmaffect.cli train cfg.yaml --out runs/ddp

Backend: ``nccl`` when CUDA is available, ``gloo`` otherwise (CUDA is used
automatically when present, never required). Only rank 0 evaluates and writes
files; the other ranks wait at a barrier and receive the selection score.

Two details make a run on W processes with global batch ``B`` (``B/W`` windows
per process) take *the same optimisation steps* as one process with batch ``B``:

* :class:`BlockDistributedSampler` draws one permutation of the windows per
  epoch (seeded by ``seed + epoch``) and gives rank ``r`` the ``r``-th
  contiguous slice of every global batch, so the union of the ranks' batches is
  exactly the single-process batch. The single-process trainer uses the same
  sampler with ``num_replicas=1``.
* The CCC loss is not a mean over samples (it pools moments over every frame
  of the batch), so averaging per-rank losses would change the objective.
  :func:`pooled_ccc_loss` all-reduces the moments with a differentiable
  all-reduce, so every rank computes the CCC of the *global* batch; the
  gradient that reaches each rank is then W times its share, and DDP's
  gradient averaging (÷W) gives exactly the single-process gradient.

The last global batch of an epoch, when smaller than ``B`` and not divisible
by W, is padded by repeating its first windows (as ``DistributedSampler``
pads), so it differs slightly from the single-process one.
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

__all__ = [
    "DistContext",
    "BlockDistributedSampler",
    "init_distributed",
    "cleanup_distributed",
    "resolve_amp",
    "resolve_device",
    "pooled_ccc_loss",
    "broadcast_float",
    "barrier",
]


def resolve_amp(setting: Any, device: torch.device) -> bool:
    """Whether to run in bf16 autocast: the ``amp`` setting ``auto`` (on CUDA only), true or false.

    >>> resolve_amp("auto", torch.device("cpu")), resolve_amp(True, torch.device("cpu"))
    (False, True)
    """
    return device.type == "cuda" if setting == "auto" else bool(setting)


def resolve_device(spec: str, *, local_rank: int = 0) -> torch.device:
    """``"auto"`` → ``cuda:<local_rank>`` when CUDA is available, else CPU; otherwise ``torch.device(spec)``.

    A spec that names no usable device (``tpu9``, ``cuda`` without CUDA, ``cuda:3`` on a 2-GPU machine) is a
    one-line :class:`~mmaffect.errors.ConfigError`.
    """
    from mmaffect.config_schema import check_device
    from mmaffect.errors import ConfigError

    spec = check_device(spec)
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {spec!r} asked for, but CUDA is not available here (use auto or cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {spec!r} asked for, but this machine has {torch.cuda.device_count()} "
                              "CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"device: {spec!r} asked for, but MPS is not available here (use auto or cpu)")
    return dev


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates and writes files."""
        return self.rank == 0


def init_distributed(*, device: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment.

    Without ``WORLD_SIZE`` > 1 in the environment this returns a one-process
    context on ``device`` and initialises nothing.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank=local_rank)
    if world_size <= 1:
        return DistContext(device=dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, backend=backend)


def cleanup_distributed(ctx: DistContext, *, completed: bool = True) -> None:
    """Leave the process group (no-op for a one-process context).

    After a ``completed`` run the ranks first meet at a barrier, so that no rank tears its connections
    down while another still finishes its files; then anything unreachable that may still hold the
    group is collected, so the group's threads end here and not during interpreter shutdown, where
    gloo aborted rank 1 ("terminate called without an active exception") in 3 of 65 two-process runs
    before (0 of 120 after). After a failed run there is no barrier: the other ranks may never reach it.
    """
    if ctx.enabled and dist.is_initialized():
        if completed:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op for one process)."""
    if ctx.enabled:
        dist.barrier()


def broadcast_float(value: float, *, ctx: DistContext) -> float:
    """Rank 0's ``value`` on every rank."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.broadcast(t, src=0)
    return float(t.item())


class BlockDistributedSampler(DistributedSampler):
    """Shard every *global* batch across ranks so W ranks see one process's batches.

    ``batch_size`` is the global batch; rank ``r`` yields, for each global
    batch of the epoch's permutation, its slice ``[r*b, (r+1)*b)`` with
    ``b = batch_size / num_replicas``. Use it with a ``DataLoader`` of batch
    size ``b``. With ``num_replicas=1`` it is a seeded random sampler.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        if batch_size % num_replicas:
            raise ValueError(f"global batch size {batch_size} is not divisible by {num_replicas} processes")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.global_batch = batch_size
        self.local_batch = batch_size // num_replicas

    def _order(self) -> list[int]:
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            return torch.randperm(n, generator=g).tolist()
        return list(range(n))

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        out: list[int] = []
        for start in range(0, len(order), self.global_batch):
            block = order[start:start + self.global_batch]
            per = math.ceil(len(block) / self.num_replicas)
            while len(block) < per * self.num_replicas:
                block = block + block[: per * self.num_replicas - len(block)]
            out.extend(block[self.rank * per:(self.rank + 1) * per])
        return iter(out)

    def __len__(self) -> int:
        n = len(self.dataset)  # type: ignore[arg-type]
        full, rest = divmod(n, self.global_batch)
        return full * self.local_batch + math.ceil(rest / self.num_replicas)


class _SumAllReduce(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of each rank's input is the sum of the ranks' output
    gradients. (``torch.distributed.nn.functional.all_reduce`` does the same but is deprecated and warns.)"""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _SumAllReduce.apply(grad_output)


def _sum(x: torch.Tensor, ctx: DistContext | None, *, grad: bool) -> torch.Tensor:
    if ctx is None or not ctx.enabled:
        return x
    if grad:
        return _SumAllReduce.apply(x)
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def pooled_ccc_loss(
    prediction: torch.Tensor,
    gold: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    ctx: DistContext | None = None,
    eps: float = 1e-8,
    mse_weight: float = 0.0,
) -> torch.Tensor:
    """Paper's loss ``mean_d (1 − ρ_c)`` (+ ``mse_weight`` · MSE) over the frames of the batch of *every* rank.

    Same moments and ``eps`` as :func:`mmaffect.training.metrics.ccc_torch`
    (population moments, centred two-pass form), the MSE term as
    :func:`mmaffect.training.metrics.masked_mse` over all ranks' frames; with
    ``ctx`` None or one process it computes the value of
    :func:`~mmaffect.training.metrics.ccc_loss`. ``prediction``/``gold`` (B, T, D),
    ``mask`` (B, T) bool.
    """
    if mask is None:
        mask = torch.ones(prediction.shape[:2], dtype=torch.bool, device=prediction.device)
    w = mask.to(prediction.dtype).unsqueeze(-1)
    gold = gold.to(prediction.dtype)
    n = _sum(w.sum(dim=(0, 1)).expand(prediction.shape[-1]).contiguous(), ctx, grad=False).clamp_min(1.0)
    mx = _sum((prediction * w).sum(dim=(0, 1)), ctx, grad=True) / n
    my = _sum((gold * w).sum(dim=(0, 1)), ctx, grad=False) / n
    dx = (prediction - mx) * w
    dy = (gold - my) * w
    vx = _sum((dx**2).sum(dim=(0, 1)), ctx, grad=True) / n
    vy = _sum((dy**2).sum(dim=(0, 1)), ctx, grad=False) / n
    cov = _sum((dx * dy).sum(dim=(0, 1)), ctx, grad=True) / n
    rho = 2.0 * cov / (vx + vy + (mx - my) ** 2 + eps)
    loss = (1.0 - rho).mean()
    if not mse_weight:
        return loss
    squared = _sum((((prediction - gold) ** 2) * w).sum(dim=(0, 1)), ctx, grad=True)  # (D,)
    return loss + mse_weight * (squared / n).mean()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (or ``model`` itself)."""
    return model.module if hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def wrap_ddp(model: torch.nn.Module, *, ctx: DistContext, find_unused_parameters: bool = False) -> Any:
    """``model`` wrapped in DDP for a multi-process context, else unchanged."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)
