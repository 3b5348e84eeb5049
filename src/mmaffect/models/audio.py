"""Audio branches on raw 4,410-sample interlocutor vectors (Section 4.1.2, Table 2).

``Tzirakis2018`` is the paper's audio network; ``Tzirakis2018Reference`` is the
same network written layer by layer, kept as the ground truth the fast version
is tested against. ``Trigeorgis2016`` and ``Li2019`` are the other two audio
models of the ablation (Section 5.5, Table 2).

Why the fast version can skip half of every frame
-------------------------------------------------
Every interlocutor vector has one half of zeros (docs/architecture.md §2).
The network is a chain of stride-1 'same' convolutions and non-overlapping
max-pools, so each final output step j depends on a known input interval (its
receptive field: 557 samples, stride 250 with the default sizes). For the
default sizes, outputs 0–7 see only the first half, 10–16 only the second,
8–9 both. Hence, for a frame whose second half is zero:

* outputs that see only zeros equal those of an all-zero frame (same inputs,
  same padding, same pooling grid) — computed once per forward and shared;
* the other outputs are computed on a crop [0, E) of the frame. Inside the
  crop every intermediate value is identical to the full network's as long as
  its own receptive field stays inside the crop or reaches past it only where
  the full frame is zero too (layer-1 padding beyond E reads zeros either way;
  deeper paddings would not, which is what fixes E).

Symmetrically, a frame whose first half is zero is computed on a crop [S, F)
with S a multiple of the total pool stride so every pooling grid lines up.
``_plan_half_crops`` finds the smallest crops by simulating, per layer, which
positions are exact; with the defaults the crops are [0, 2680) and
[1750, 4410): 61 % and 60 % of the frame. Frames with both halves non-zero
(not interlocutor vectors) take the full path, so the result is exact for any
input. In eval mode the fast and the reference network agree to float
rounding (tested). In training mode the only difference is dropout on the
shared all-zero outputs: the reference draws independent dropout at every
layer on those constant activations; the fast version draws it only after the
last layer (per frame), i.e. it does not inject noise into the constant
intermediate activations of the zero half. Set ``skip_zero_half=False`` to get
the reference computation in every mode.

Memory: conv → max-pool → ReLU is one autograd function (``_ConvPoolReLU``;
ReLU commutes with max, so it runs on the pooled, p-times smaller tensor). It
saves only its input, the pooled output and the 1-byte argmax offsets; the
full-resolution convolution output (50 × 4,410 floats per frame in layer 1,
the largest tensor of the plain network) is freed right after pooling and
rebuilt sparsely from the offsets in backward.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mmaffect.models.base import Batch, Branch, BranchOutput
from mmaffect.models.layers import frame_presence, run_on_present, same_pad1d
from mmaffect.models.registry import register_branch


def _present(batch: Batch, audio: torch.Tensor) -> torch.Tensor:
    return frame_presence(batch, "audio_mask", tuple(audio.shape[:2]), audio.device)


# --------------------------------------------------------------------------- Tzirakis et al. 2018

# Initialisations of the convolutions (option ``init``): "default" = PyTorch's Conv1d default
# (weights kaiming-uniform with a = sqrt(5), biases uniform in +-1/sqrt(fan_in)), what every
# existing checkpoint was trained from; "he" = He-normal weights for ReLU (fan_in) and zero
# biases (issue #12: see recipes/emodb/README.md, "Why the network sat at a constant output").
CONV_INITS = ("default", "he")


class _ConvPoolReLU(torch.autograd.Function):
    """relu(maxpool_p(conv1d_same(x))) that keeps no full-resolution tensor for backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, pool):  # type: ignore[override]
        k = weight.shape[-1]
        y = F.conv1d(same_pad1d(x, k), weight, bias)
        pooled, idx = F.max_pool1d(y, pool, pool, return_indices=True)
        length = y.shape[-1]
        del y
        out = pooled.clamp_min(0)
        steps = torch.arange(pooled.shape[-1], device=x.device) * pool
        offsets = (idx - steps).to(torch.uint8)  # position inside the pool window (< 256)
        ctx.save_for_backward(x, weight, out, offsets)
        ctx.pool, ctx.length, ctx.has_bias = pool, length, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight, out, offsets = ctx.saved_tensors
        pool, k = ctx.pool, weight.shape[-1]
        g = grad_out * (out > 0)
        steps = torch.arange(g.shape[-1], device=g.device) * pool
        idx = offsets.long() + steps
        g_full = F.max_unpool1d(g, idx, pool, pool, output_size=[ctx.length])
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        gx, gw, gb = torch.ops.aten.convolution_backward(
            g_full, same_pad1d(x, k), weight, [weight.shape[0]],
            [1], [0], [1], False, [0], 1, [need_x, need_w, need_b and ctx.has_bias],
        )
        if gx is not None:
            gx = gx[..., (k - 1) // 2 : (k - 1) // 2 + x.shape[-1]]
        return gx, gw, gb, None


def _lengths(frame: int, pools: tuple[int, ...]) -> list[int]:
    out = [frame]
    for p in pools:
        out.append(out[-1] // p)
    return out


def _receptive_fields(frame: int, kernels: tuple[int, ...], pools: tuple[int, ...]) -> np.ndarray:
    """(n_out, 2) inclusive input interval each final output step reads."""
    n_out = _lengths(frame, pools)[-1]
    lo = np.arange(n_out)
    hi = lo.copy()
    for k, p in zip(reversed(kernels), reversed(pools)):
        lo, hi = lo * p, hi * p + p - 1  # pool window in conv coordinates
        lo, hi = lo - (k - 1) // 2, hi + k // 2  # conv reads in its input
    return np.stack([np.clip(lo, 0, frame - 1), np.clip(hi, 0, frame - 1)], axis=1)


def _exact_outputs(
    frame: int, start: int, end: int, kernels: tuple[int, ...], pools: tuple[int, ...]
) -> np.ndarray:
    """Which outputs of the network run on the crop [start, end) equal the
    full network's (index j of the crop = j + start / total stride of the full).
    Assumes the input outside the crop is zero; padding beyond a crop edge is
    exact at the input layer (zeros either way) and deeper only at a real
    frame edge."""
    exact = np.ones(end - start, dtype=bool)
    for layer, (k, p) in enumerate(zip(kernels, pools)):
        left_ok = layer == 0 or start == 0
        right_ok = layer == 0 or end == frame
        padded = np.concatenate(
            [np.full((k - 1) // 2, left_ok), exact, np.full(k // 2, right_ok)]
        )
        windows = np.lib.stride_tricks.sliding_window_view(padded, k)
        conv_exact = windows.all(axis=1)
        n = conv_exact.shape[0] // p
        exact = conv_exact[: n * p].reshape(n, p).all(axis=1)
    return exact


@functools.lru_cache(maxsize=16)
def _plan_half_crops(
    frame: int, kernels: tuple[int, ...], pools: tuple[int, ...]
) -> dict[str, object] | None:
    """Smallest exact crops for frames with a zero second half ('first') and a
    zero first half ('second'); None when the frame cannot be split."""
    if frame % 2:
        return None
    half, stride = frame // 2, math.prod(pools)
    rf = _receptive_fields(frame, kernels, pools)
    n_out = rf.shape[0]
    need_first = np.nonzero(rf[:, 0] < half)[0]  # outputs that see the first half
    need_second = np.nonzero(rf[:, 1] >= half)[0]
    plan: dict[str, object] = {"n_out": n_out}
    # The crop must at least be long enough to produce the last needed step.
    for end in range(max(half, (int(need_first.max()) + 1) * stride), frame + 1):
        ex = _exact_outputs(frame, 0, end, kernels, pools)
        if len(ex) > need_first.max() and ex[need_first].all():
            plan["first"] = (0, end, need_first)
            break
    else:
        return None
    for start in range((half // stride) * stride, -1, -stride):
        ex = _exact_outputs(frame, start, frame, kernels, pools)
        shift = start // stride
        j = need_second - shift
        if (j >= 0).all() and len(ex) > j.max() and ex[j].all() and len(ex) + shift == n_out:
            plan["second"] = (start, frame, need_second)
            break
    else:
        return None
    return plan


class Tzirakis2018Reference(Branch):
    """Audio network of Section 4.1.2 (Tzirakis et al. 2018; reference notes,
    Audio branch), written plainly layer by layer: per block conv1d (stride 1,
    'same') → ReLU → max-pool (kernel = stride) → dropout. Per frame of 4,410
    samples the output is 17 steps × 250 channels, flattened time-major:
    ``out_dim = 4,250``. The ground truth for :class:`Tzirakis2018`; the two
    have the same parameter names, so state dicts are interchangeable.
    """

    modality = "audio"

    def __init__(
        self,
        *,
        channels: tuple[int, ...] = (50, 125, 250),
        kernels: tuple[int, ...] = (8, 6, 6),
        pools: tuple[int, ...] = (10, 5, 5),
        dropout: float = 0.5,
        frame_samples: int = 4410,
        init: str = "default",
    ) -> None:
        super().__init__()
        if not len(channels) == len(kernels) == len(pools):
            raise ValueError("channels, kernels and pools need one entry per block")
        if init not in CONV_INITS:
            raise ValueError(f"init must be one of {', '.join(CONV_INITS)}, not {init!r}")
        ins = (1, *channels[:-1])
        self.convs = nn.ModuleList(nn.Conv1d(i, o, k) for i, o, k in zip(ins, channels, kernels))
        self.kernels, self.pools, self.frame_samples = tuple(kernels), tuple(pools), frame_samples
        self.dropout = dropout
        self.init = init
        if init == "he":
            for conv in self.convs:
                nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(conv.bias)
        self.steps = _lengths(frame_samples, self.pools)[-1]
        self.out_dim = self.steps * channels[-1]

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, frame_samples) → (N, channels[-1], steps)."""
        h = x.unsqueeze(1)
        for conv, k, p in zip(self.convs, self.kernels, self.pools):
            h = F.relu(conv(same_pad1d(h, k)))
            h = F.max_pool1d(h, p, p)
            h = F.dropout(h, self.dropout, self.training)
        return h

    def frame_forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every frame (N, frame_samples) → features (N, out_dim), no attention: the plain layer-by-layer
        network (traceable; the fast subclass's zero-half grouping is data dependent, and both give the
        same values in eval mode)."""
        h = Tzirakis2018Reference.frame_features(self, x)  # (n, c, steps)
        return h.transpose(1, 2).reshape(h.shape[0], -1), {}

    def forward(self, batch: Batch) -> BranchOutput:
        audio = batch["audio"]
        present = _present(batch, audio)
        feats = run_on_present(
            lambda x: rearrange(self.frame_features(x), "n c t -> n (t c)"), audio, present, self.out_dim
        )
        return BranchOutput(feats, present, {})


@register_branch(
    "audio-tzirakis2018", modality="audio",
    description="raw-waveform CNN, 3 conv/max-pool blocks (the paper's audio network)", paper_ref="Sec. 4.1.2",
    tiny={"channels": (4, 6, 8)},
)
class Tzirakis2018(Tzirakis2018Reference):
    """Audio network of Section 4.1.2 (Tzirakis et al. 2018; reference notes,
    Audio branch), fast form: same parameters and outputs as
    :class:`Tzirakis2018Reference` (``out_dim = 4,250`` for 4,410-sample
    frames), but (1) conv → pool → ReLU fused with no full-resolution tensor
    kept for backward, and (2) ``skip_zero_half``: the zero half of each
    interlocutor vector is not convolved (exact in eval mode; see the module
    docstring for the argument and the training-mode dropout difference).
    Per-frame forward cost, defaults: 69.6 MFLOP plain, ≈ 42 MFLOP here.
    """

    def __init__(
        self,
        *,
        channels: tuple[int, ...] = (50, 125, 250),
        kernels: tuple[int, ...] = (8, 6, 6),
        pools: tuple[int, ...] = (10, 5, 5),
        dropout: float = 0.5,
        frame_samples: int = 4410,
        skip_zero_half: bool = True,
        init: str = "default",
    ) -> None:
        super().__init__(channels=channels, kernels=kernels, pools=pools, dropout=dropout, frame_samples=frame_samples,
                         init=init)
        if max(pools) > 255:
            raise ValueError("pool sizes above 255 are not supported by the fused layer")
        self.plan = _plan_half_crops(frame_samples, self.kernels, self.pools) if skip_zero_half else None

    def _stack(self, x: torch.Tensor, *, dropout: bool = True) -> torch.Tensor:
        """(N, L) → (N, C, L // stride) via the fused blocks."""
        h = x.unsqueeze(1)
        for conv, p in zip(self.convs, self.pools):
            if torch.is_grad_enabled() and (h.requires_grad or conv.weight.requires_grad or (
                    conv.bias is not None and conv.bias.requires_grad)):
                h = _ConvPoolReLU.apply(h, conv.weight, conv.bias, p)
            else:  # nothing to keep for backward: the same numbers without pool indices (4x faster pooling)
                h = F.max_pool1d(F.conv1d(same_pad1d(h, conv.kernel_size[0]), conv.weight, conv.bias), p, p).clamp_min(0)
            if dropout:
                h = F.dropout(h, self.dropout, self.training)
        return h

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            # Tracing would freeze the data-dependent grouping below: export the plain graph.
            return super().frame_features(x)
        if self.plan is None:
            return self._stack(x)
        half = self.frame_samples // 2
        first_zero = (x[:, :half] == 0).all(dim=1)
        second_zero = (x[:, half:] == 0).all(dim=1)
        groups = {"second": first_zero, "first": second_zero & ~first_zero}  # where the signal is
        full = ~(first_zero | second_zero)
        n, c = x.shape[0], self.convs[-1].out_channels
        # Steps that see only zeros: one all-zero frame without inner dropout,
        # then per-frame dropout after the last layer (module docstring).
        zero = self._stack(x.new_zeros(1, self.frame_samples), dropout=False)
        out = F.dropout(zero.expand(n, c, self.steps), self.dropout, self.training)
        stride = math.prod(self.pools)
        for key, group in groups.items():
            if not bool(group.any()):
                continue
            start, end, needed = self.plan[key]  # type: ignore[index]
            idx = group.nonzero(as_tuple=True)[0]
            steps = torch.as_tensor(needed, device=x.device)
            crop = self._stack(x[idx, start:end])
            block = out[idx].index_copy(2, steps, crop[:, :, steps - start // stride])
            out = out.index_put((idx,), block)
        if bool(full.any()):
            idx = full.nonzero(as_tuple=True)[0]
            out = out.index_put((idx,), self._stack(x[idx]))
        return out


# --------------------------------------------------------------------------- Trigeorgis et al. 2016


@register_branch(
    "audio-trigeorgis2016", modality="audio", description="raw-waveform CNN of Trigeorgis et al. 2016 (ablation)",
    paper_ref="Sec. 5.5, Table 2", tiny={"channels": (4, 4), "channel_pool": 2},
)
class Trigeorgis2016(Branch):
    """Trigeorgis et al. 2016 ("Adieu features?"), the audio baseline of
    Section 5.5 / Table 2 (reference notes, Audio branch), per frame.

    Original (16 kHz): conv 40 × 80 samples (5 ms) → time max-pool 2 → conv
    40 × 4,000 samples (500 ms at the pooled 8 kHz) → max-pool across channels
    (20) → 2-layer LSTM; the authors' faster variant used kernels 20/40 and a
    channel pool of 10. Adaptation to 22,050 Hz frames of 4,410 samples:
    kernels are scaled by the sample-rate ratio 22,050/16,000 ≈ 1.38, from the
    faster variant (20 → 28, 40 → 55 samples): the 500-ms kernel would be
    longer than the 200-ms frame, and its per-frame cost (≈ 8 GFLOP) is
    prohibitive here. ``kernels=(110, 5512)`` would be the original scaled.
    After the channel max-pool the time axis (2,205 steps at 11,025 Hz) is
    max-pooled in ``step_pool``-sample steps (110 ≈ 10 ms) so a frame gives a
    fixed vector: ``out_dim = channels[1] / channel_pool · ⌊2,205 / step_pool⌋``
    (4 · 20 = 80 by default). The original's 2-layer LSTM is the temporal head
    of the assembled model (10 Hz), not part of this branch.
    """

    modality = "audio"

    def __init__(
        self,
        *,
        channels: tuple[int, int] = (40, 40),
        kernels: tuple[int, int] = (28, 55),
        time_pool: int = 2,
        channel_pool: int = 10,
        step_pool: int = 110,
        dropout: float = 0.5,
        frame_samples: int = 4410,
    ) -> None:
        super().__init__()
        if channels[1] % channel_pool:
            raise ValueError("channels[1] must be a multiple of channel_pool")
        self.conv1 = nn.Conv1d(1, channels[0], kernels[0])
        self.conv2 = nn.Conv1d(channels[0], channels[1], kernels[1])
        self.time_pool, self.channel_pool, self.step_pool = time_pool, channel_pool, step_pool
        self.drop = nn.Dropout(dropout)
        steps = (frame_samples // time_pool) // step_pool
        if steps < 1:
            raise ValueError("frame too short for time_pool * step_pool")
        self.out_dim = channels[1] // channel_pool * steps

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(same_pad1d(x.unsqueeze(1), self.conv1.kernel_size[0]))
        h = self.drop(F.max_pool1d(F.relu(h), self.time_pool))
        h = self.conv2(same_pad1d(h, self.conv2.kernel_size[0]))
        # Max-pool across channels: groups of `channel_pool` consecutive filters.
        h = rearrange(h, "n (g k) t -> n g k t", k=self.channel_pool).amax(dim=2)
        h = F.max_pool1d(h, self.step_pool)
        return self.drop(rearrange(h, "n g t -> n (t g)"))

    def frame_forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every frame (N, frame_samples) → features (N, out_dim), no attention (traceable as it is)."""
        return self.frame_features(x), {}

    def forward(self, batch: Batch) -> BranchOutput:
        audio = batch["audio"]
        present = _present(batch, audio)
        return BranchOutput(run_on_present(self.frame_features, audio, present, self.out_dim), present, {})


# --------------------------------------------------------------------------- Li et al. 2019


def mel_filterbank(*, n_fft: int, n_mels: int, sample_rate: float, f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular HTK mel filters (torchaudio's
    ``melscale_fbanks`` with ``norm=None``, written out because torchaudio does
    not load here)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)

    def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    mels = torch.linspace(float(hz_to_mel(torch.tensor(f_min))), float(hz_to_mel(torch.tensor(f_max))), n_mels + 2, dtype=torch.float64)
    pts = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    diff = pts[1:] - pts[:-1]
    slopes = pts.unsqueeze(0) - freqs.unsqueeze(1)  # (freq, n_mels + 2)
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).to(torch.float32)


@register_branch(
    "audio-li2019", modality="audio",
    description="spectrogram CNN + BLSTM + self-attention of Li et al. 2019 (ablation)",
    paper_ref="Sec. 5.5, Table 2", tiny={"conv_channels": (4, 4), "lstm_hidden": 4},
)
class Li2019(Branch):
    """Li et al. 2019, the spectrogram audio baseline of Section 5.5 / Table 2
    (reference notes, Audio branch: spectrogram CNN → BLSTM → self-attention →
    statistics pooling; no official code, the sizes here are our choice).

    Per frame: log-mel spectrogram (``torch.stft``, Hann window ``n_fft``,
    ``hop`` samples, centred; ``n_mels`` bands from ``f_min`` to ``f_max``
    (default 0 to half the sample rate; 300–3400 Hz is the band every
    microphone and phone line carries), log(mel + 1e-6)) → two conv
    blocks (conv3×3 → BN → ReLU → max-pool 2 over frequency only, keeping the
    time resolution) → BLSTM over the spectrogram's time steps → scaled
    dot-product self-attention over those steps → statistics pooling (mean ‖
    standard deviation). ``out_dim = 4 · lstm_hidden`` (256 by default). The
    original's auxiliary gender head is not used (SEWA has no such target
    here). Defaults for 22,050 Hz: 23-ms window, 10-ms hop → 21 steps per
    4,410-sample frame.
    """

    modality = "audio"

    def __init__(
        self,
        *,
        n_fft: int = 512,
        hop: int = 220,
        n_mels: int = 40,
        sample_rate: int = 22050,
        f_min: float = 0.0,
        f_max: float | None = None,
        conv_channels: tuple[int, ...] = (16, 32),
        lstm_hidden: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if not 0.0 <= f_min < (f_max if f_max is not None else sample_rate / 2) <= sample_rate / 2:
            raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}, {sample_rate}")
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("mel", mel_filterbank(n_fft=n_fft, n_mels=n_mels, sample_rate=sample_rate,
                                                   f_min=f_min, f_max=f_max), persistent=False)
        blocks: list[nn.Module] = []
        c_in, n_freq = 1, n_mels
        for c in conv_channels:
            blocks += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d((2, 1))]
            c_in, n_freq = c, n_freq // 2
        self.cnn = nn.Sequential(*blocks)
        self.lstm = nn.LSTM(c_in * n_freq, lstm_hidden, batch_first=True, bidirectional=True)
        d = 2 * lstm_hidden
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)
        self.out_dim = 2 * d

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """(N, samples) → (N, n_mels, steps)."""
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        power = spec.real.square() + spec.imag.square()
        return torch.log(torch.einsum("nft,fm->nmt", power, self.mel) + 1e-6)

    def log_mel_traceable(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`log_mel` without complex tensors (ONNX has none): the centred, reflect-padded,
        Hann-windowed DFT as one strided convolution with the cos and sin bases; the same values as
        ``torch.stft`` to float rounding."""
        n_fft, n_freq = self.n_fft, self.n_fft // 2 + 1
        t = torch.arange(n_fft, dtype=torch.float64)
        f = torch.arange(n_freq, dtype=torch.float64)
        angle = 2 * math.pi * f[:, None] * t[None, :] / n_fft
        window = self.window.to(torch.float64)[None, :]
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window]).to(x.dtype).to(x.device)
        padded = F.pad(x.unsqueeze(1), (n_fft // 2, n_fft // 2), mode="reflect")
        spec = F.conv1d(padded, basis.unsqueeze(1), stride=self.hop)  # (N, 2·freq, steps)
        power = spec[:, :n_freq].square() + spec[:, n_freq:].square()
        return torch.log(torch.einsum("nft,fm->nmt", power, self.mel) + 1e-6)

    def frame_forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every frame (N, samples) → features (N, out_dim), no attention, in ONNX-exportable ops."""
        return self.features_of_log_mel(self.log_mel_traceable(x)), {}

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_of_log_mel(self.log_mel(x))

    def features_of_log_mel(self, m: torch.Tensor) -> torch.Tensor:
        """(N, n_mels, steps) log-mel spectrograms → (N, out_dim)."""
        h = self.cnn(m.unsqueeze(1))  # (n, c, freq, time)
        h, _ = self.lstm(rearrange(h, "n c f t -> n t (c f)"))
        h = self.drop(h)
        q, k, v = self.query(h), self.key(h), self.value(h)
        att = torch.softmax(torch.einsum("nqd,nkd->nqk", q, k) / math.sqrt(q.shape[-1]), dim=-1)
        a = torch.einsum("nqk,nkd->nqd", att, v)
        mean = a.mean(dim=1)
        std = torch.sqrt(a.var(dim=1, unbiased=False) + 1e-5)  # eps keeps the gradient finite
        return torch.cat([mean, std], dim=-1)

    def forward(self, batch: Batch) -> BranchOutput:
        audio = batch["audio"]
        present = _present(batch, audio)
        return BranchOutput(run_on_present(self.frame_features, audio, present, self.out_dim), present, {})
