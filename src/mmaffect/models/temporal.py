"""Temporal head: the 1-layer LSTM on top of every network (Sections 4.3, 5.3).

Every unimodal network and the multimodal network end in an LSTM of 256
hidden units followed by a linear layer and tanh that outputs arousal and
valence per frame (Fig. 2; Section 5.3). Section 5.4: "each LSTM network ...
is trained with a dropout of 0.5".
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["TemporalHead", "State"]

State = tuple[torch.Tensor, torch.Tensor]


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
        self, x: torch.Tensor, mask: torch.Tensor | None = None, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"TemporalHead expects (B, T, {self.in_dim}), got {tuple(x.shape)}")
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
