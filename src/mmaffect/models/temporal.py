"""Temporal head: the 1-layer LSTM on top of every network (Sections 4.3, 5.3).

Every unimodal network and the multimodal network end in an LSTM of 256
hidden units followed by a linear layer and tanh that outputs arousal and
valence per frame (Fig. 2; Section 5.3). Section 5.4: "each LSTM network ...
is trained with a dropout of 0.5".

**Context window.** The head is trained on windows of ``data.window`` frames,
each from a zero state, and a recording is usually much longer. Run over a
whole recording in one pass, its state leaves what training showed it: on
EmoDB (one recording per speaker, networks trained on 2-s windows) the
valence of the shipped audio model stuck at -1 after a few seconds and its
frame CCC on a speaker's recording was 0.056, against 0.444 in windows
(``recipes/emodb/README.md``, "The head's context"). With ``context = W``
frames (:func:`set_context`; ``mmaffect predict`` and ``evaluate`` set it to
the checkpoint's training window) the head runs from a zero state on windows
of ``W`` frames that start every ``H = W // 4`` frames, and a frame's output
is the weighted average of the windows that cover it. The weight at position
``p`` of a window rises from 0 to 1 over ``[W - 2H, W - H)`` and falls over
the last ``H`` positions: ``min(clip((p - W + 2H + 1) / H, 0, 1), min(1,
(W - p) / H))``; the window at the recording's start has nothing before it
and does not rise. So a frame is read where it has at least ``W - 2H``
frames of context (the first ``W - H`` frames of a recording as in a single
pass), and the overlapping weights sum to a constant, so the blend has no
jumps. On the EmoDB leave-one-speaker-out folds this kept single utterances
where a single pass has them (mean frame CCC valence 0.328 against 0.327)
and raised whole recordings (0.226 against 0.044); weights rising over the
window's first three quarters gave 0.317 and 0.245. The LSTM is
causal, so a window cut at a chunk's end gives the same outputs for the
frames it has: chunked (streaming) runs carry a :class:`WindowState` and
equal one pass. The window applies in eval mode only: training runs its
windows as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmaffect.errors import ConfigError

__all__ = ["TemporalHead", "State", "WindowState", "apply_context", "resolve_context", "set_context",
           "window_weights"]

State = tuple[torch.Tensor, torch.Tensor]


class WindowState(NamedTuple):
    """What a head with a context window carries between chunks: the input frames of the
    windows still open (``x`` (B, L, in_dim), ``mask`` (B, L)) and the recording index of
    the first of them (``offset``)."""

    x: torch.Tensor
    mask: torch.Tensor
    offset: int


class TemporalHead(nn.Module):
    """LSTM → dropout → linear → tanh per frame (Sections 4.3 and 5.3, Fig. 2).

    Initialisation (Section 5.3, "initialized by the Glorot based method"):
    Glorot/Xavier-uniform input-to-hidden weights and output layer, orthogonal
    hidden-to-hidden weights (the usual choice for recurrent matrices, which
    Glorot scaling does not cover well), zero biases. Dropout (Section 5.4)
    is applied to the LSTM outputs before the linear layer, and between LSTM
    layers when ``layers > 1``.

    ``forward(x, mask=None, state=None) -> (pred, state)``: ``x`` (B, T, in_dim),
    ``mask`` (B, T) bool with False on trailing sequence padding, ``state`` an
    optional ``(h, c)`` pair, each (layers, B, hidden), carried in from the
    previous chunk of the same sequences. The returned state is the one after
    each sequence's last real frame, so a long recording can be processed in
    chunks (streaming) with the same result as one pass. Predictions at padded
    frames are 0.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        hidden: int = 256,
        layers: int = 1,
        dropout: float = 0.5,
        outputs: int = 2,
    ) -> None:
        super().__init__()
        self.in_dim, self.hidden, self.layers, self.outputs = in_dim, hidden, layers, outputs
        self.context: int | None = None  # frames; an inference setting (set_context), not a weight
        self.lstm = nn.LSTM(
            in_dim, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, outputs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, p in self.lstm.named_parameters():
            if name.startswith("weight_ih"):
                nn.init.xavier_uniform_(p)
            elif name.startswith("weight_hh"):
                for gate in p.chunk(4, dim=0):
                    nn.init.orthogonal_(gate)
            else:
                nn.init.zeros_(p)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, state: Any = None
    ) -> tuple[torch.Tensor, Any]:
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"TemporalHead expects (B, T, {self.in_dim}), got {tuple(x.shape)}")
        if self.context is not None and not self.training:
            return self._windowed(x, mask, state, self.context)
        return self._plain(x, mask, state)

    def _windowed(self, x: torch.Tensor, mask: torch.Tensor | None, state: WindowState | None,
                  w: int) -> tuple[torch.Tensor, WindowState]:
        """The head on windows of ``w`` frames from a zero state, blended (module docstring)."""
        if state is not None and not isinstance(state, WindowState):
            raise ValueError("TemporalHead with a context window carries a WindowState, got an (h, c) state")
        b, t, _ = x.shape
        hop = window_weights(w)[0]
        m = torch.ones(b, t, dtype=torch.bool, device=x.device) if mask is None else mask.to(torch.bool)
        if state is None:
            state = WindowState(x[:, :0], m[:, :0], 0)
        if t == 0:  # an empty chunk: nothing to predict, nothing new to carry
            return x.new_zeros(b, 0, self.outputs), state
        full_x, full_m = torch.cat([state.x, x], dim=1), torch.cat([state.mask, m], dim=1)
        first = state.offset + state.x.shape[1]  # recording index of this chunk's first frame
        end = first + t
        starts = range(max(0, ((first - w) // hop + 1) * hop), end, hop)  # windows that reach this chunk
        xs, ms = [], []
        for s in starts:
            seg = slice(s - state.offset, min(s + w, end) - state.offset)
            pad = w - (seg.stop - seg.start)
            xs.append(nn.functional.pad(full_x[:, seg], (0, 0, 0, pad)))
            ms.append(nn.functional.pad(full_m[:, seg], (0, pad)))
        xw, mw = torch.cat(xs), torch.cat(ms)  # (windows · B, w, in_dim): every window in one LSTM call
        lengths = mw.sum(dim=1, keepdim=True)
        mw = torch.arange(w, device=x.device)[None, :] < lengths  # a prefix: padding only at the end
        pw, _ = self._plain(xw, mw, None)
        hop, first_weight, weight = (v.to(x.device, pw.dtype) if isinstance(v, torch.Tensor) else v
                                     for v in window_weights(w))
        out = x.new_zeros(b, t, self.outputs)
        total = x.new_zeros(1, t, 1)
        for i, s in enumerate(starts):
            lo, hi = max(s, first), min(s + w, end)  # this window's frames in this chunk
            part = pw[i * b:(i + 1) * b, lo - s:hi - s]
            wt = (first_weight if s == 0 else weight)[lo - s:hi - s].view(1, -1, 1)
            out[:, lo - first:hi - first] += part * wt
            total[:, lo - first:hi - first] += wt
        keep = max(0, ((end - w) // hop + 1) * hop)  # the first window still open after this chunk
        new = WindowState(full_x[:, keep - state.offset:], full_m[:, keep - state.offset:], keep)
        return (out / total) * m.unsqueeze(-1).to(out.dtype), new

    def _plain(self, x: torch.Tensor, mask: torch.Tensor | None, state: State | None) -> tuple[torch.Tensor, State]:
        b, t, _ = x.shape
        if state is None:
            zeros = x.new_zeros(self.layers, b, self.hidden)
            state = (zeros, zeros)
        if mask is None or bool(mask.all()):
            h, new_state = self.lstm(x, state)
        else:
            h, new_state = self._packed(x, mask, state)
        pred = torch.tanh(self.out(self.dropout(h)))
        if mask is not None:
            pred = pred * mask.unsqueeze(-1).to(pred.dtype)
        return pred, new_state

    def _packed(self, x: torch.Tensor, mask: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        b, t, _ = x.shape
        lengths = mask.sum(dim=1)
        positions = torch.arange(t, device=mask.device)
        if not torch.equal(mask, positions[None, :] < lengths[:, None]):
            raise ValueError("TemporalHead: mask must mark a prefix of each sequence (padding at the end)")
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, (h_n, c_n) = self.lstm(packed, state)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        empty = (lengths == 0).view(1, b, 1)  # sequences with no real frame keep their state
        h_n = torch.where(empty, state[0], h_n)
        c_n = torch.where(empty, state[1], c_n)
        return h, (h_n, c_n)


def window_weights(w: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """``(hop, first, weight)`` of a context window of ``w`` frames: windows start every ``hop``
    frames; ``weight[p]`` is a window's weight at position ``p`` and ``first[p]`` that of the window
    at the recording's start (module docstring). To blend the outputs of an exported graph run
    window by window from a zero state, as ``predict`` does.

    >>> hop, first, weight = window_weights(8)
    >>> hop, first.tolist(), weight.tolist()
    (2, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5], [0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 0.5])
    """
    hop = max(1, w // 4)
    pos = torch.arange(w, dtype=torch.float32)
    fall = ((w - pos) / hop).clamp(max=1.0)
    return hop, fall, torch.minimum(((pos - (w - 2 * hop) + 1) / hop).clamp(0.0, 1.0), fall)


def set_context(model: nn.Module, frames: int | None) -> nn.Module:
    """Give every :class:`TemporalHead` of ``model`` a context window of ``frames``
    (None: one pass over the whole sequence, the state carried throughout); returns ``model``."""
    if frames is not None and (isinstance(frames, bool) or int(frames) < 1):
        raise ValueError(f"context must be a positive number of frames or None, got {frames!r}")
    for module in model.modules():
        if isinstance(module, TemporalHead):
            module.context = None if frames is None else int(frames)
    return model


def resolve_context(value: str | float | int | None, train_window: int | None, *, rate: float = 10.0) -> int | None:
    """Frames of context from a user's choice: ``"train"`` (the checkpoint's training
    window ``train_window``, None if it trained on whole recordings), ``"none"`` / None
    (no window) or seconds (a number, or a string of one); anything else is a :class:`ConfigError`.

    >>> resolve_context("train", 20), resolve_context("none", 20), resolve_context("12.5", 20)
    (20, None, 125)
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if isinstance(value, str) and value.strip().lower() == "train":
        return None if train_window is None else int(train_window)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"context must be 'train', 'none' or seconds, got {value!r}") from None
    frames = int(round(seconds * rate))
    if not frames >= 1:
        raise ConfigError(f"context must be at least one frame ({1 / rate:g} s), got {value!r}")
    return frames


def apply_context(model: nn.Module, config: Mapping[str, Any], context: str | float | None = "train") -> int | None:
    """:func:`set_context` of ``model`` from a user's choice (:func:`resolve_context`), ``"train"``
    being the training window ``data.window`` of the run's ``config``; the frames set (None: no window)."""
    window = (config.get("data") or {}).get("window")
    frames = resolve_context(context, None if window is None else int(window))
    set_context(model, frames)
    return frames
