"""Text branch: the paper's transformer-style text network (Section 4.1.1, Fig. 1)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmaffect.models.base import Batch, Branch, BranchOutput
from mmaffect.models.layers import Highway, SelectorScore, checkpointed, masked_softmax, same_pad1d, scatter_frames
from mmaffect.models.registry import register_branch


@register_branch(
    "text-paper", modality="text",
    description="N-gram CNN, multi-head projections, BiLSTM selectors, highway (text network)",
    paper_ref="Sec. 4.1.1, Eq. 1-2, Fig. 1",
    tiny={"embed_dim": 16, "ngram_filters": 4, "proj_dim": 8, "lstm_hidden": 4, "highway_layers": 1},
)
class TextNetwork(Branch):
    """Text network of Section 4.1.1 (Fig. 1, Eq. 1–2; sizes from the reference
    notes, Text branch).

    Per frame, on the word matrix S (L words × D):

    1. position-wise N-grams (Eq. 1): conv1d over word positions for each width
       in ``ngram_widths`` ('same' padding, tanh, no pooling), concatenated
       with S → C (L × (D + n_widths·ngram_filters));
    2. ``n_projections`` bias-free linear projections V_p = W_p C (→ ``proj_dim``);
    3. per projection a 2-layer BiLSTM (``lstm_hidden`` per direction) run on
       the real words only (packed sequences; padding never enters a state);
    4. selector per projection: ``s = (w·h + b)/sqrt(proj_dim)``, softmax over
       the real word positions (padding gets exactly 0 — the authors' code
       did not mask, a bug the notes say to avoid), weighted sum;
    5. concatenation z = [s_1, …, s_p] and ``highway_layers`` highway layers
       (Eq. 2, g = tanh as in the paper; ``highway_activation="relu"`` gives
       the authors' code; gate bias −2).

    ``out_dim = n_projections · 2 · lstm_hidden`` (1,024 by default).
    ``checkpoint=True`` recomputes each projection's BiLSTM (and its dropout,
    same masks) in backward instead of keeping its activations (training with
    grad only; identical outputs and gradients, less memory, more time).
    A frame with no words is ``present=False`` with zero features and zero
    selector weights; the network never runs on it. Only frames with words are
    computed, and (``dedupe=True``) identical word lists — SEWA repeats one
    turn over many frames — are computed once. Real words need not be a
    prefix: they are compacted to the front and the weights put back in place.
    Reads ``batch['words']`` (B, T, L, D) and ``batch['word_mask']`` (B, T, L).
    """

    modality = "text"
    #: the axes of each attention tensor after (batch, time); ``slots`` = the word slots
    ATTENTION_AXES = {"selector": ("projection", "slots")}

    def __init__(
        self,
        *,
        embed_dim: int = 384,
        ngram_widths: tuple[int, ...] = (2, 3, 4),
        ngram_filters: int = 100,
        n_projections: int = 2,
        proj_dim: int = 512,
        lstm_hidden: int = 256,
        lstm_layers: int = 2,
        highway_layers: int = 2,
        dropout_embed: float = 0.1,
        dropout_ngram: float = 0.3,
        dropout_proj: float = 0.2,
        dropout_lstm: float = 0.3,
        highway_activation: str = "tanh",
        dedupe: bool = True,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.n_projections = n_projections
        self.proj_dim = proj_dim
        self.dedupe = dedupe
        self.checkpoint = checkpoint
        # 'same' padding is applied in encode (even widths: extra zero on the right).
        self.ngrams = nn.ModuleList(
            nn.Conv1d(embed_dim, ngram_filters, w) for w in ngram_widths
        )
        concat_dim = embed_dim + ngram_filters * len(ngram_widths)
        # One matrix holds the p bias-free projections W_p side by side.
        self.projection = nn.Linear(concat_dim, n_projections * proj_dim, bias=False)
        self.lstms = nn.ModuleList(
            nn.LSTM(proj_dim, lstm_hidden, num_layers=lstm_layers, batch_first=True, bidirectional=True)
            for _ in range(n_projections)
        )
        self.selectors = nn.ModuleList(
            SelectorScore(in_dim=2 * lstm_hidden, scale=proj_dim) for _ in range(n_projections)
        )
        self.out_dim = n_projections * 2 * lstm_hidden
        self.highway = nn.Sequential(
            *(Highway(dim=self.out_dim, activation=highway_activation) for _ in range(highway_layers))
        )
        self.drop_embed = nn.Dropout(dropout_embed)
        self.drop_ngram = nn.Dropout(dropout_ngram)
        self.drop_proj = nn.Dropout(dropout_proj)
        self.drop_lstm = nn.Dropout(dropout_lstm)

    def encode(self, words: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames that all have ≥ 1 word: words (n, L, D), mask (n, L) with the
        real words first. Returns features (n, out_dim), selector (n, p, L)."""
        lengths = mask.sum(-1)
        m = mask.unsqueeze(-1).to(words.dtype)
        s = self.drop_embed(words) * m  # padding words are zero vectors whatever the input holds
        s_cl = rearrange(s, "n l d -> n d l")
        grams = [torch.tanh(conv(same_pad1d(s_cl, conv.kernel_size[0]))) for conv in self.ngrams]
        f = self.drop_ngram(rearrange(torch.cat(grams, dim=1), "n f l -> n l f"))
        c = torch.cat([s, f], dim=-1)
        v = self.drop_proj(self.projection(c))
        v = rearrange(v, "n l (p e) -> p n l e", p=self.n_projections)
        heads, weights = [], []
        lengths_cpu = lengths.cpu()

        def bilstm(lstm: nn.LSTM, vp: torch.Tensor) -> torch.Tensor:
            packed = pack_padded_sequence(vp, lengths_cpu, batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=mask.shape[1])
            return self.drop_lstm(h)

        for p, (lstm, selector) in enumerate(zip(self.lstms, self.selectors)):
            h = checkpointed(lstm, lambda vp, lstm=lstm: bilstm(lstm, vp), v[p], enabled=self.checkpoint)
            alpha = masked_softmax(selector(h), mask)
            heads.append(torch.einsum("nl,nld->nd", alpha, h))
            weights.append(alpha)
        z = self.highway(torch.cat(heads, dim=-1))
        return z, torch.stack(weights, dim=1)

    def frame_forward(
        self, words: torch.Tensor, word_mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every frame at once, in ONNX-exportable operations: words (N, L, D), word_mask (N, L) →
        features (N, out_dim), ``{"selector": (N, p, L)}``. Frames without words get one pretend
        word (slot 0) so every packed sequence has a length ≥ 1; their outputs are meaningless (the
        caller zeroes them). The stable compaction of the real words to the front (``forward``'s
        argsort) is written with cumulative sums, and there is no deduplication."""
        n_slots = words.shape[-2]
        word_mask = word_mask.to(torch.bool)
        present = word_mask.any(-1)
        slots = torch.arange(n_slots, device=words.device)
        run_mask = word_mask | (~present[:, None] & (slots == 0)[None, :])
        # Real word j goes to the number of real words before it, padding after all real words.
        real = run_mask.to(torch.long)
        n_real = real.sum(-1, keepdim=True)
        dest = torch.where(run_mask, real.cumsum(-1) - 1, n_real + (1 - real).cumsum(-1) - 1)
        order = torch.zeros_like(dest).scatter(1, dest, slots[None, :].expand_as(dest))
        sel_words = torch.gather(words, 1, order.unsqueeze(-1).expand_as(words))
        sel_mask = torch.gather(run_mask, 1, order)
        z, alpha = self.encode(sel_words, sel_mask)
        alpha = torch.zeros_like(alpha).scatter(2, order.unsqueeze(1).expand_as(alpha), alpha)
        return z, {"selector": alpha}

    def forward(self, batch: Batch) -> BranchOutput:
        words, word_mask = batch["words"], batch["word_mask"].to(torch.bool)
        b, t, n_slots, _ = words.shape
        flat_words = rearrange(words, "b t l d -> (b t) l d")
        flat_mask = rearrange(word_mask, "b t l -> (b t) l")
        present = flat_mask.any(-1)
        if "mask" in batch:
            present = present & rearrange(batch["mask"].to(torch.bool), "b t -> (b t)")

        idx = present.nonzero(as_tuple=True)[0]
        sel_words, sel_mask = flat_words[idx], flat_mask[idx]
        # Compact real words to the front (stable), so packing sees a prefix.
        order = torch.argsort((~sel_mask).to(torch.int8), dim=1, stable=True)
        sel_words = torch.gather(sel_words, 1, order.unsqueeze(-1).expand_as(sel_words))
        sel_mask = torch.gather(sel_mask, 1, order)

        if self.dedupe and idx.numel() > 1:
            key = rearrange(sel_words * sel_mask.unsqueeze(-1), "n l d -> n (l d)")
            _, inverse = torch.unique(key.detach(), dim=0, return_inverse=True)
            first = torch.full((int(inverse.max()) + 1,), idx.numel(), dtype=torch.long, device=idx.device)
            first = first.scatter_reduce(0, inverse, torch.arange(idx.numel(), device=idx.device), "amin")
            z, alpha = self.encode(sel_words[first], sel_mask[first])
            z, alpha = z[inverse], alpha[inverse]
        elif idx.numel():
            z, alpha = self.encode(sel_words, sel_mask)
        else:
            z = words.new_zeros(0, self.out_dim)
            alpha = words.new_zeros(0, self.n_projections, n_slots)

        # Undo the compaction so weights line up with the input word slots.
        alpha = torch.zeros_like(alpha).scatter(2, order.unsqueeze(1).expand_as(alpha), alpha)
        features = scatter_frames(z, present, (self.out_dim,))
        selector = scatter_frames(alpha, present, (self.n_projections, n_slots))
        return BranchOutput(
            features=rearrange(features, "(b t) d -> b t d", b=b),
            present=rearrange(present, "(b t) -> b t", b=b),
            attention={"selector": rearrange(selector, "(b t) p l -> b t p l", b=b)},
        )
