"""Fusion strategies of Section 4.2 (Eq. 3–9).

Every strategy maps M per-modality feature vectors of a *flattened* batch of
frames (B* = B·T rows) to one fused vector per frame::

    fused, attention = fusion([x_t, x_a, x_v], [present_t, present_a, present_v])

``features[m]`` is (B*, D_m) float, ``present[m]`` is (B*,) bool. The modality
order is the order of ``in_dims`` given to the constructor; the multimodal
model uses (text, audio, visual), matching Eq. 5 and the concatenation
``[x^t, x^a, x^v]`` of the paper.

Missing modalities. A modality absent in a frame (no words, no face, no
audio) is *masked out* of every softmax: its weight is exactly 0 and the
remaining weights of the row sum to 1. It is never attended as a vector of
zeros. A softmax row whose every entry is absent gives all-zero weights (not
NaN), so a frame with no modality at all fuses to a finite, defined vector
(zeros, or the projection biases where the equations add them) and the
backward pass stays finite too. Padding frames of a sequence should be
marked absent by the caller.

The paper leaves several shapes open; our readings are documented on each
class and in docs/models.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from mmaffect.models.registry import AttentionLayout, AttentionWeights, fusion_specs, register_fusion

__all__ = [
    "masked_softmax",
    "Fusion",
    "ConcatFusion",
    "SelectorAttention",
    "HierarchicalAttentionFusion",
    "SelfAttentionFusion",
    "ResidualSelfAttentionFusion",
    "CrossModalHierarchicalFusion",
    "FUSIONS",
]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` with ``mask`` False entries excluded.

    Masked entries get weight exactly 0; a row with no unmasked entry gets all
    zeros (finite values and gradients, unlike ``-inf`` filling, which gives
    NaN for such rows).

    >>> w = masked_softmax(torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]),
    ...                    torch.tensor([[True, False, True], [False, False, False]]))
    >>> w[0, 1].item(), round(w[0].sum().item(), 6), w[1].abs().sum().item()
    (0.0, 1.0, 0.0)
    """
    mask = mask.expand_as(scores)
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * mask.to(scores.dtype)


class Fusion(nn.Module):
    """Common interface of the fusion strategies (Section 4.2).

    Subclasses set ``in_dims`` (one per modality) and ``out_dim`` and implement
    ``forward(features, present) -> (fused (B*, out_dim), attention dict)``.
    """

    in_dims: tuple[int, ...]
    out_dim: int
    #: the weights ``forward`` emits (read by the figures; declared by every registered fusion)
    ATTENTION_LAYOUT: AttentionLayout = AttentionLayout(None)

    def _check(self, features: Sequence[torch.Tensor], present: Sequence[torch.Tensor]) -> None:
        if len(features) != len(self.in_dims) or len(present) != len(self.in_dims):
            raise ValueError(
                f"{type(self).__name__} expects {len(self.in_dims)} modalities, got "
                f"{len(features)} feature tensors and {len(present)} masks"
            )
        for m, (x, p, d) in enumerate(zip(features, present, self.in_dims)):
            if x.dim() != 2 or x.shape[1] != d:
                raise ValueError(f"modality {m}: expected features (B*, {d}), got {tuple(x.shape)}")
            if p.shape != x.shape[:1] or p.dtype != torch.bool:
                raise ValueError(f"modality {m}: expected a bool mask of shape {tuple(x.shape[:1])}")


@register_fusion("fusion-concat", key="concat", description="concatenation + presence indicators",
                 paper_ref="Sec. 4.2 (Concatenation), 4.3")
class ConcatFusion(Fusion):
    """Concatenation, Section 4.2: ``x_fusion = [x^t, x^a, x^v]``.

    Absent modalities are zeroed and one presence indicator per modality is
    appended: ``[x^t·p_t, x^a·p_a, x^v·p_v, p_t, p_a, p_v]``. Zeroing alone is
    ambiguous (an all-zero feature vector could also be a real observation,
    and a branch fed a blank input still emits bias-driven features); the
    indicator tells the temporal LSTM *that* a modality is missing, and its
    input weights for the indicator act as a learned substitute vector for
    the missing modality. ``out_dim = Σ D_m + M``. No attention weights.
    """

    def __init__(self, *, in_dims: Sequence[int]) -> None:
        super().__init__()
        self.in_dims = tuple(int(d) for d in in_dims)
        self.out_dim = sum(self.in_dims) + len(self.in_dims)

    def forward(
        self, features: Sequence[torch.Tensor], present: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self._check(features, present)
        flags = [p.to(x.dtype).unsqueeze(-1) for x, p in zip(features, present)]
        zeroed = [x * f for x, f in zip(features, flags)]
        return torch.cat([*zeroed, *flags], dim=-1), {}


class SelectorAttention(nn.Module):
    """The selector ``Attention(x^1 … x^M)`` of Eq. 4.

    ``α^i = softmax_i(x^i · q^i / √D)``, ``Attention = Σ_i α^i x^i`` with one
    learnable vector ``q^i ∈ R^D`` per input position i (the reference notes:
    each modality is scored with a learned vector, scaled by 1/√D, softmax over
    modalities). Inputs are already projected (Eq. 3 happens outside), so
    there is no further projection here. Absent inputs are masked out.
    """

    def __init__(self, *, dim: int, n_inputs: int) -> None:
        super().__init__()
        self.dim = dim
        self.n_inputs = n_inputs
        self.q = nn.Parameter(torch.empty(n_inputs, dim))
        nn.init.normal_(self.q, std=1.0 / math.sqrt(dim))

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B*, M, D), ``present``: (B*, M) → (B*, D) and weights (B*, M)."""
        scores = torch.einsum("bmd,md->bm", x, self.q) / math.sqrt(self.dim)
        alpha = masked_softmax(scores, present, dim=-1)
        return torch.einsum("bm,bmd->bd", alpha, x), alpha


class _Projections(nn.Module):
    """Eq. 3: one affine projection per modality to a common size."""

    def __init__(self, in_dims: Sequence[int], dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(d, dim) for d in in_dims)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([p(x) for p, x in zip(self.proj, features)], dim=1)  # (B*, M, D)


def _default_pairs(n: int) -> tuple[tuple[int, int], ...]:
    if n == 3:
        # Eq. 5 with the (text, audio, visual) order: vt, va, ta.
        return ((2, 0), (2, 1), (0, 1))
    return tuple(itertools.combinations(range(n), 2))


_PAIRWISE = AttentionWeights("pairwise", ("pair", "member"),
                             "weights of the two members of each pair (Eq. 4-5), pairs in the order of `pairs`")
_TOP = AttentionWeights("top", ("pair",), "weight of each pair's output (top selector)")


@register_fusion("fusion-hierarchical", key="hierarchical", description="hierarchical attention",
                 paper_ref="Sec. 4.2, Eq. 3-5", options={"d_u": 256}, tiny={"d_u": 8})
class HierarchicalAttentionFusion(Fusion):
    """Hierarchical attention, Section 4.2, Eq. 3–5.

    Each modality is projected to ``d_u`` (Eq. 3); every pair of modalities is
    fused with its own selector (Eq. 4), in the order of Eq. 5 for three
    modalities in (text, audio, visual) order: ``x^vt, x^va, x^ta``; a top
    selector fuses the pair outputs. A pair whose two modalities are both
    absent is itself absent at the top level; a pair with one absent member
    returns the present one (weight 1).

    Attention: ``pairwise`` (B*, P, 2) — weights of the two members of each
    pair in the order of ``pairs``; ``top`` (B*, P). ``out_dim = d_u``.
    """

    ATTENTION_LAYOUT = AttentionLayout("hierarchical", (_PAIRWISE, _TOP))

    def __init__(
        self,
        *,
        in_dims: Sequence[int],
        d_u: int = 256,
        pairs: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__()
        self.in_dims = tuple(int(d) for d in in_dims)
        if len(self.in_dims) < 2:
            raise ValueError("hierarchical fusion needs at least two modalities")
        self.pairs = tuple(tuple(p) for p in (pairs or _default_pairs(len(self.in_dims))))
        self.out_dim = d_u
        self.project = _Projections(self.in_dims, d_u)
        self.pair_attention = nn.ModuleList(SelectorAttention(dim=d_u, n_inputs=2) for _ in self.pairs)
        self.top_attention = SelectorAttention(dim=d_u, n_inputs=len(self.pairs))
        self.register_buffer("_pair_index", torch.tensor(self.pairs, dtype=torch.long), persistent=False)

    def forward(
        self, features: Sequence[torch.Tensor], present: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self._check(features, present)
        x = self.project(features)  # (B*, M, D_u)
        mask = torch.stack(list(present), dim=1)  # (B*, M)
        outs, weights, pair_present = [], [], []
        for k, att in enumerate(self.pair_attention):
            idx = self._pair_index[k]
            out, w = att(x[:, idx], mask[:, idx])
            outs.append(out)
            weights.append(w)
            pair_present.append(mask[:, idx].any(dim=1))
        pair_x = torch.stack(outs, dim=1)  # (B*, P, D_u)
        pair_mask = torch.stack(pair_present, dim=1)  # (B*, P)
        fused, top = self.top_attention(pair_x, pair_mask)
        return fused, {"pairwise": torch.stack(weights, dim=1), "top": top}


_SELF_ATTENTION = AttentionLayout("self-attention", (
    AttentionWeights("self", ("head", "query modality", "key modality"), "key weights of each query row"),
    AttentionWeights("modality", ("head", "modality"), "the alpha of Eq. 6: weight of each modality row"),
))
_TINY_SELF = {"d_u": 8, "heads": 2, "d_s": 8}


@register_fusion("fusion-self-attention", key="self-attention",
                 description="multi-head self-attention over modalities", paper_ref="Sec. 4.2, Eq. 6",
                 tiny=_TINY_SELF)
class SelfAttentionFusion(Fusion):
    """Self-attention fusion, Section 4.2, Eq. 6.

    ``X^c`` (M × d_u) stacks the Eq. 3 projections. For each of ``heads``
    projection spaces i: ``Z_i^j = X^c W_i^j`` (M × d_s, j = 1, 2, 3, no bias),
    ``A_i = softmax(Z_i^1 Z_i^2ᵀ / √d_s) Z_i^3`` with absent modalities masked
    as keys, ``α_i`` over the M rows of ``A_i`` and
    ``v_i = Σ_k α_i[k] A_i[k, :]``; ``x_fusion = [v_1, …, v_p]``
    (``out_dim = heads · d_s``).

    Our reading of ``α_i = A_i q_i``: the paper applies no normalisation. With
    ``alpha="softmax"`` (default) we use ``α_i = softmax_k(A_i[k]·q_i / √d_s)``
    over the present rows — the selector form of Eq. 4, which keeps the
    weights interpretable (they sum to 1, as the paper's attention figures
    suggest) and bounds the scale of ``v_i``. ``alpha="linear"`` is the
    literal equation (``α_i = A_i q_i``, absent rows set to 0).

    Attention: ``self`` (B*, p, M, M) key weights of each query row,
    ``modality`` (B*, p, M) the α weights.
    """

    ATTENTION_LAYOUT = _SELF_ATTENTION

    def __init__(
        self,
        *,
        in_dims: Sequence[int],
        d_u: int = 256,
        heads: int = 4,
        d_s: int = 64,
        alpha: str = "softmax",
    ) -> None:
        super().__init__()
        if alpha not in ("softmax", "linear"):
            raise ValueError(f"alpha must be 'softmax' or 'linear', got {alpha!r}")
        self.in_dims = tuple(int(d) for d in in_dims)
        self.d_u, self.heads, self.d_s, self.alpha = d_u, heads, d_s, alpha
        self.out_dim = heads * d_s
        self.project = _Projections(self.in_dims, d_u)
        # W_i^j for j = 1, 2, 3 and every head i, as one matrix.
        self.qkv = nn.Linear(d_u, 3 * heads * d_s, bias=False)
        self.q = nn.Parameter(torch.empty(heads, d_s))
        nn.init.normal_(self.q, std=1.0 / math.sqrt(d_s))

    def _attend(
        self, features: Sequence[torch.Tensor], present: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return X^c, mask, A (B*, p, M, d_s), key weights and α."""
        self._check(features, present)
        xc = self.project(features)  # (B*, M, D_u)
        mask = torch.stack(list(present), dim=1)  # (B*, M)
        z1, z2, z3 = rearrange(self.qkv(xc), "b m (j h s) -> j b h m s", j=3, h=self.heads)
        scores = torch.einsum("bhms,bhns->bhmn", z1, z2) / math.sqrt(self.d_s)
        key_w = masked_softmax(scores, rearrange(mask, "b n -> b 1 1 n"), dim=-1)
        a = torch.einsum("bhmn,bhns->bhms", key_w, z3)
        row_scores = torch.einsum("bhms,hs->bhm", a, self.q)
        row_mask = rearrange(mask, "b m -> b 1 m")
        if self.alpha == "softmax":
            alpha = masked_softmax(row_scores / math.sqrt(self.d_s), row_mask, dim=-1)
        else:
            alpha = row_scores * row_mask.to(row_scores.dtype)
        return xc, mask, a, key_w, alpha

    def forward(
        self, features: Sequence[torch.Tensor], present: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _, _, a, key_w, alpha = self._attend(features, present)
        v = torch.einsum("bhm,bhms->bhs", alpha, a)
        return rearrange(v, "b h s -> b (h s)"), {"self": key_w, "modality": alpha}


@register_fusion("fusion-residual-self-attention", key="residual-self-attention",
                 description="self-attention with residual connection", paper_ref="Sec. 4.2, Eq. 6-7",
                 tiny=_TINY_SELF)
class ResidualSelfAttentionFusion(SelfAttentionFusion):
    """Residual self-attention fusion, Section 4.2, Eq. 7 (with Eq. 6).

    ``z_i = W_z v_i + X^c`` adds an M × d_u matrix to a vector. Our reading
    follows the non-local block the paper cites: the residual is applied per
    modality row, ``Z_i[k] = W_z A_i[k] + X^c[k]`` (W_z: d_s → d_u, no bias),
    and the rows are pooled with the same α_i as Eq. 6, so

        z_i = Σ_k α_i[k] (W_z A_i[k] + X^c[k]) = W_z v_i + Σ_k α_i[k] X^c[k].

    With softmax α (default) the residual term is the α-weighted mean of the
    present modality rows of X^c; absent rows never enter it.
    ``x_fusion = [z_1, …, z_p]``, ``out_dim = heads · d_u``. Attention as in
    :class:`SelfAttentionFusion`.
    """

    def __init__(
        self,
        *,
        in_dims: Sequence[int],
        d_u: int = 256,
        heads: int = 4,
        d_s: int = 64,
        alpha: str = "softmax",
    ) -> None:
        super().__init__(in_dims=in_dims, d_u=d_u, heads=heads, d_s=d_s, alpha=alpha)
        self.out_dim = heads * d_u
        self.w_z = nn.Linear(d_s, d_u, bias=False)

    def forward(
        self, features: Sequence[torch.Tensor], present: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        xc, _, a, key_w, alpha = self._attend(features, present)
        v = torch.einsum("bhm,bhms->bhs", alpha, a)
        residual = torch.einsum("bhm,bmd->bhd", alpha, xc)
        z = self.w_z(v) + residual
        return rearrange(z, "b h d -> b (h d)"), {"self": key_w, "modality": alpha}


@register_fusion("fusion-crossmodal-hierarchical", key="crossmodal-hierarchical",
                 description="cross-modal hierarchical self-attention", paper_ref="Sec. 4.2, Eq. 8-9",
                 tiny={"d_s": 8, "tokens": 2})
class CrossModalHierarchicalFusion(Fusion):
    """Cross-modal hierarchical self-attention, Section 4.2, Eq. 8–9.

    Each modality m has two affine projections to ``d_s`` (Eq. 3 form):
    ``x̃_1^m`` (keys/values) and ``x̃_2^m`` (queries). For single vectors
    ``x̃_2^m (x̃_1^c)ᵀ`` is a scalar and its softmax is trivially 1, so we give
    the attention a token axis: each projection is split into ``tokens``
    chunks of ``d_s / tokens`` (the multi-head split), and Eq. 8 becomes a
    proper cross-attention of m's query tokens over c's tokens,

        a^{m,c} = softmax(Q^m (K^c)ᵀ / √(d_s/tokens)) K^c,  Q^m = x̃_2^m, K^c = x̃_1^c,

    flattened back to d_s. We read the attended values as those of the
    *other* modality c (the printed ``x̃_1^m`` on the left would weight m's
    own chunks by similarities with unrelated chunk positions of c); the same
    projection 1 serves as key and value, as in Eq. 8.

    ``v_f^m = Attention(a^{m,c_1}, …)`` over the other modalities (Eq. 4
    selector, one q per (m, c)), ``x_fusion = Attention(v_f^{m_1}, …, v_f^{m_M})``
    (Eq. 9). Masking: ``a^{m,c}`` is present when both m and c are; ``v_f^m``
    is present when m is. If m is the only modality present in a frame there
    is nothing to attend to, and ``v_f^m`` falls back to ``x̃_1^m`` itself so
    that a lone modality still reaches the temporal model (its pairwise
    weights are then all 0).

    Attention: ``pairwise`` (B*, M, M-1) — weights of the other modalities in
    their original order for each m; ``top`` (B*, M); ``cross``
    (B*, M, M-1, tokens, tokens) token weights. ``out_dim = d_s``.
    """

    ATTENTION_LAYOUT = AttentionLayout("crossmodal-hierarchical", (
        AttentionWeights("pairwise", ("modality", "other modality"),
                         "for each modality m the weights of the other modalities, in their order (Eq. 8)"),
        AttentionWeights("top", ("modality",), "weight of each per-modality vector v_f^m (Eq. 9)"),
        AttentionWeights("cross", ("modality", "other modality", "query token", "key token"),
                         "token weights of m's queries over c's tokens (Eq. 8)"),
    ))

    def __init__(self, *, in_dims: Sequence[int], d_s: int = 256, tokens: int = 4) -> None:
        super().__init__()
        self.in_dims = tuple(int(d) for d in in_dims)
        n = len(self.in_dims)
        if n < 2:
            raise ValueError("cross-modal fusion needs at least two modalities")
        if d_s % tokens:
            raise ValueError(f"d_s ({d_s}) must be divisible by tokens ({tokens})")
        self.d_s, self.tokens = d_s, tokens
        self.out_dim = d_s
        self.key = _Projections(self.in_dims, d_s)  # x̃_1
        self.query = _Projections(self.in_dims, d_s)  # x̃_2
        self.pair_attention = nn.ModuleList(SelectorAttention(dim=d_s, n_inputs=n - 1) for _ in range(n))
        self.top_attention = SelectorAttention(dim=d_s, n_inputs=n)
        others = [[c for c in range(n) if c != m] for m in range(n)]
        self.register_buffer("_others", torch.tensor(others, dtype=torch.long), persistent=False)

    def forward(
        self, features: Sequence[torch.Tensor], present: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self._check(features, present)
        k = rearrange(self.key(features), "b m (t e) -> b m t e", t=self.tokens)
        q = rearrange(self.query(features), "b m (t e) -> b m t e", t=self.tokens)
        mask = torch.stack(list(present), dim=1)  # (B*, M)
        kc = k[:, self._others]  # (B*, M, M-1, t, e): the other modalities of each m
        scores = torch.einsum("bmte,bmcue->bmctu", q, kc) / math.sqrt(k.shape[-1])
        pair_mask = mask[:, :, None] & mask[:, self._others]  # (B*, M, M-1)
        cross_w = masked_softmax(scores, rearrange(pair_mask, "b m c -> b m c 1 1"), dim=-1)
        a = rearrange(torch.einsum("bmctu,bmcue->bmcte", cross_w, kc), "b m c t e -> b m c (t e)")
        v_list, w_list = [], []
        for m, att in enumerate(self.pair_attention):
            v, w = att(a[:, m], pair_mask[:, m])
            v_list.append(v)
            w_list.append(w)
        v_f = torch.stack(v_list, dim=1)  # (B*, M, d_s)
        alone = rearrange(mask & ~pair_mask.any(dim=-1), "b m -> b m 1")
        v_f = torch.where(alone, rearrange(k, "b m t e -> b m (t e)"), v_f)
        fused, top = self.top_attention(v_f, mask)
        return fused, {"pairwise": torch.stack(w_list, dim=1), "top": top, "cross": cross_w}


#: Short name → class of every registered fusion (the registry's, kept for callers of the old table).
FUSIONS: dict[str, type[Fusion]] = {spec.key: spec.cls for spec in fusion_specs()}
