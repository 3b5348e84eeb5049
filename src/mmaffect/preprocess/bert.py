"""BERT-family encoders in plain torch, for the word embedders.

Loading the default embedder through transformers' ``BertModel`` costs
about 3 s more CPU per process on the project's machines than this module
(its modelling module pulls in kernels, sharding and distributed-tensor
support; ``benchmarks/profile_predict.py --encoder transformers``): more
than embedding a 3-minute transcript.
A BERT encoder is a stack of standard post-norm transformer layers, which
``torch.nn.TransformerEncoderLayer`` implements, so :func:`load_bert` builds
one from the model folder's ``config.json`` and ``model.safetensors``
without that import. The tokenizer still comes from transformers
(``AutoTokenizer``; word alignment needs it). It computes the same function
as ``transformers.BertModel`` in evaluation mode (``tests/test_text.py``
compares the two on the default embedder); folders it does not cover
(other architectures, options it does not implement, ``.bin`` weights) go
through transformers as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

__all__ = ["BertEncoder", "bert_supported", "load_bert"]


def bert_supported(config: dict[str, Any]) -> bool:
    """Does :class:`BertEncoder` compute what ``transformers.BertModel`` computes for this ``config.json``?"""
    needed = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings")
    return (
        config.get("model_type") == "bert"
        and all(isinstance(config.get(k), int) and config[k] > 0 for k in needed)
        and config.get("hidden_act", "gelu") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and not config.get("is_decoder", False)
        and not config.get("add_cross_attention", False)
        and config["hidden_size"] % config["num_attention_heads"] == 0
    )


class BertEncoder(nn.Module):
    """BERT's embeddings and post-norm transformer layers (no pooler), inference only.

    ``forward`` returns the hidden states of the embedding output and of
    every layer (``num_hidden_layers + 1`` tensors of (B, N, hidden_size)),
    indexed like transformers' ``hidden_states``.
    """

    def __init__(self, *, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = SimpleNamespace(**config)
        d, eps = int(config["hidden_size"]), float(config.get("layer_norm_eps", 1e-12))
        self.word = nn.Embedding(int(config["vocab_size"]), d)
        self.position = nn.Embedding(int(config["max_position_embeddings"]), d)
        self.token_type = nn.Embedding(int(config.get("type_vocab_size", 2)), d)
        self.norm = nn.LayerNorm(d, eps=eps)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, int(config["num_attention_heads"]), int(config["intermediate_size"]),
                                       dropout=0.0, activation="gelu", layer_norm_eps=eps, batch_first=True)
            for _ in range(int(config["num_hidden_layers"]))
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        n = input_ids.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(n, device=input_ids.device)
        x = self.norm(self.word(input_ids) + self.token_type(token_type_ids) + self.position(positions)[None])
        padding = None if attention_mask is None else attention_mask == 0
        states = [x]
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=padding)
            states.append(x)
        return tuple(states)

    def load_hf_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy the weights of a transformers BERT state dict (with or without the ``bert.`` prefix)."""
        t = {k.removeprefix("bert."): v for k, v in tensors.items()}
        own: dict[str, torch.Tensor] = {}
        for ours, theirs in (("word", "word_embeddings"), ("position", "position_embeddings"),
                             ("token_type", "token_type_embeddings")):
            own[f"{ours}.weight"] = t[f"embeddings.{theirs}.weight"]
        for p in ("weight", "bias"):
            own[f"norm.{p}"] = t[f"embeddings.LayerNorm.{p}"]
            for i in range(len(self.layers)):
                h = f"encoder.layer.{i}."
                qkv = [t[f"{h}attention.self.{m}.{p}"] for m in ("query", "key", "value")]
                own[f"layers.{i}.self_attn.in_proj_{p}"] = torch.cat(qkv)
                own[f"layers.{i}.self_attn.out_proj.{p}"] = t[f"{h}attention.output.dense.{p}"]
                own[f"layers.{i}.norm1.{p}"] = t[f"{h}attention.output.LayerNorm.{p}"]
                own[f"layers.{i}.linear1.{p}"] = t[f"{h}intermediate.dense.{p}"]
                own[f"layers.{i}.linear2.{p}"] = t[f"{h}output.dense.{p}"]
                own[f"layers.{i}.norm2.{p}"] = t[f"{h}output.LayerNorm.{p}"]
        self.load_state_dict(own, strict=True)


def load_bert(path: str | Path) -> BertEncoder | None:
    """The encoder of a saved BERT folder (``config.json`` + ``model.safetensors``), in eval mode with
    gradients off; ``None`` when :class:`BertEncoder` does not cover it (then use transformers)."""
    path = Path(path)
    weights = path / "model.safetensors"
    if not weights.is_file():
        return None
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if not bert_supported(config):
        return None
    from safetensors.torch import load_file

    model = BertEncoder(config=config)
    try:
        model.load_hf_state(load_file(str(weights)))
    except Exception:  # noqa: BLE001 - unreadable or another layout: transformers reads it (or says why not)
        return None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
