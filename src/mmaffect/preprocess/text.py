"""Text branch input: tokens, frame alignment and word vectors (paper Section 4.1.1).

Pipeline for one session (what ``mmaffect prepare`` stores, see
``docs/architecture.md`` section 2 and ``docs/text.md``):

1. :func:`tokenize` each transcript turn: regex ``\\w+`` (Unicode, so
   ``größe`` stays one word), lower-cased; a non-verbal tag such as
   ``<laughter>`` becomes the word ``laughter`` (or is dropped).
2. :func:`align_words` gives every 10 Hz frame the words of the turn spoken at
   ``time - delay`` (the text is delayed by 0.5 s against the labels), at most
   ``max_words`` of them.
3. :func:`build_text_arrays` embeds every word occurrence once, turn by turn,
   with a frozen :class:`~mmaffect.preprocess.embedders.WordEmbedder` and
   returns ``word_vectors`` / ``word_tokens`` / ``word_index``.

A frame outside every turn has no words: all its slots are ``-1``; nothing is
filled in for it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmaffect.data.session import Turn
from mmaffect.errors import DataError
from mmaffect.preprocess.embedders import WordEmbedder

__all__ = ["FrameWords", "tokenize", "align_words", "build_text_arrays", "TIME_TOLERANCE"]

_WORD = re.compile(r"\w+")
_TAG = re.compile(r"<[^<>]*>")

TIME_TOLERANCE = 1e-6
"""Seconds of slack when testing whether ``time - delay`` lies inside a turn.

Frame times such as ``0.1 * 7`` are not exact in floating point; without the
slack a frame that falls exactly on a turn boundary could flip sides.
"""


def tokenize(text: str, *, drop_tags: bool = False) -> list[str]:
    """Split ``text`` into lower-cased ``\\w+`` words (the authors' tokenizer).

    ``\\w`` is Unicode-aware, so umlauts and ``ß`` are word characters;
    punctuation separates words (``don't`` → ``don``, ``t``) and digits and
    ``_`` are kept. A tag in angle brackets (``<laughter>``) yields its inner
    words (``laughter``), or nothing with ``drop_tags=True``.

    >>> tokenize("Ja, <laughter> die GRÖSSE!")
    ['ja', 'laughter', 'die', 'grösse']
    >>> tokenize("Ja, <laughter> die Größe!", drop_tags=True)
    ['ja', 'die', 'größe']
    """
    if drop_tags:
        text = _TAG.sub(" ", text)
    return _WORD.findall(text.lower())


@dataclass
class FrameWords:
    """Words of each frame, as produced by :func:`align_words`.

    Attributes
    ----------
    turn:
        ``(T,)`` int32: index into the transcript of the turn whose words the
        frame gets, ``-1`` for none.
    word_index:
        ``(T, L)`` int32: row of :attr:`tokens` for each word slot (slots
        filled from the left in spoken order), ``-1`` = padding.
    tokens:
        All word occurrences of all turns, in transcript order.
    turn_tokens:
        Tokens of each transcript turn (empty list for a turn without words);
        ``tokens`` is their concatenation.
    turn_offsets:
        ``(n_turns + 1,)`` int64: turn ``k`` owns rows
        ``turn_offsets[k]:turn_offsets[k + 1]`` of ``tokens``.
    n_truncated_frames:
        Frames whose turn has more than ``L`` words (they get a window).
    """

    turn: np.ndarray
    word_index: np.ndarray
    tokens: list[str]
    turn_tokens: list[list[str]]
    turn_offsets: np.ndarray
    n_truncated_frames: int

    @property
    def word_mask(self) -> np.ndarray:
        """``(T, L)`` bool: the slot holds a word."""
        return self.word_index >= 0

    @property
    def has_words(self) -> np.ndarray:
        """``(T,)`` bool: the frame has at least one word."""
        return self.word_index[:, 0] >= 0


def _check_times(times: np.ndarray, source: str | Path | None) -> np.ndarray:
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1:
        raise DataError(f"frame times must be 1-D, got shape {times.shape}", path=source)
    bad = np.flatnonzero(~np.isfinite(times))
    if bad.size:
        raise DataError(f"frame {int(bad[0])} has a non-finite time", path=source)
    return times


def _check_turns(transcript: Sequence[Turn], source: str | Path | None) -> None:
    for k, turn in enumerate(transcript):
        if not (math.isfinite(turn.start) and math.isfinite(turn.end)):
            raise DataError(f"transcript turn {k + 1} has a non-finite time", path=source)
        if turn.end < turn.start:
            raise DataError(
                f"transcript turn {k + 1} ends ({turn.end:.3f} s) before it starts",
                path=source,
                time=turn.start,
            )


def align_words(
    times: np.ndarray,
    transcript: Sequence[Turn] | None,
    *,
    max_words: int = 30,
    delay: float = 0.5,
    drop_tags: bool = False,
    source: str | Path | None = None,
) -> FrameWords:
    """Give each 10 Hz frame the words of the turn spoken ``delay`` seconds earlier.

    Rules (the authors' alignment, plus the cases they leave open):

    * Frame ``i`` looks at the text time ``u = times[i] - delay``; it gets the
      words of the turn with ``start <= u <= end`` (both ends included, with
      :data:`TIME_TOLERANCE` slack) — the *whole* turn's words, in order.
    * Only turns with at least one token take part; a frame inside a turn
      without words (or outside all turns) has no words (``turn = -1``, all
      slots ``-1``).
    * Overlapping turns: the turn that started last wins (ties: the later
      one in the transcript), i.e. the most recent speech.
    * A turn with ``n > max_words`` words gives a window of ``max_words``
      consecutive words. Assuming a uniform speaking rate, word
      ``c = min(floor(p * n), n - 1)`` is spoken at the frame, where
      ``p = (u - start) / (end - start)`` clipped to [0, 1] (``p = 0.5`` for a
      zero-length turn); the window is words ``[c - max_words // 2, ... )``,
      shifted to lie inside the turn.
    * ``transcript=None`` (no transcript exists): every frame is masked.

    Parameters
    ----------
    times:
        ``(T,)`` frame time stamps in seconds.
    transcript:
        Transcript turns; their order defines the word-row order.
    max_words:
        ``L``, word slots per frame.
    delay:
        Seconds the text lags behind the labels.
    drop_tags:
        Passed to :func:`tokenize`.
    source:
        File the transcript came from (named in errors).
    """
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    if not math.isfinite(delay):
        raise ValueError(f"delay must be finite, got {delay}")
    times = _check_times(times, source)
    n_frames = len(times)
    turn_of = np.full(n_frames, -1, dtype=np.int32)
    word_index = np.full((n_frames, max_words), -1, dtype=np.int32)
    turns = list(transcript) if transcript is not None else []
    _check_turns(turns, source)
    turn_tokens = [tokenize(t.text, drop_tags=drop_tags) for t in turns]
    offsets = np.zeros(len(turns) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in turn_tokens])
    tokens = [w for t in turn_tokens for w in t]
    if n_frames == 0 or not tokens:
        return FrameWords(turn_of, word_index, tokens, turn_tokens, offsets, 0)

    u = times - delay
    # Rank turns so that "started last, then later in the list" wins.
    order = sorted(
        (k for k in range(len(turns)) if turn_tokens[k]), key=lambda k: (turns[k].start, k)
    )
    best_start = np.full(n_frames, -np.inf)
    for k in order:  # ascending priority: later assignments win
        t = turns[k]
        inside = (u >= t.start - TIME_TOLERANCE) & (u <= t.end + TIME_TOLERANCE)
        turn_of[inside] = k
        best_start[inside] = t.start

    n_truncated = 0
    slots = np.arange(max_words)
    for k in np.unique(turn_of[turn_of >= 0]):
        frames = np.flatnonzero(turn_of == k)
        n = len(turn_tokens[k])
        base = offsets[k]
        if n <= max_words:
            word_index[np.ix_(frames, slots[:n])] = base + slots[:n]
            continue
        n_truncated += len(frames)
        t = turns[k]
        if t.end > t.start:
            p = np.clip((u[frames] - t.start) / (t.end - t.start), 0.0, 1.0)
        else:
            p = np.full(len(frames), 0.5)
        centre = np.minimum(np.floor(p * n + 1e-9).astype(np.int64), n - 1)
        first = np.clip(centre - max_words // 2, 0, n - max_words)
        word_index[frames] = base + first[:, None] + slots[None, :]
    return FrameWords(turn_of, word_index, tokens, turn_tokens, offsets, n_truncated)


def build_text_arrays(
    times: np.ndarray,
    transcript: Sequence[Turn] | None,
    embedder: WordEmbedder,
    *,
    max_words: int = 30,
    delay: float = 0.5,
    drop_tags: bool = False,
    source: str | Path | None = None,
) -> dict[str, Any]:
    """Prepared text arrays of one session (``docs/architecture.md`` section 2).

    Every word occurrence of every turn is embedded once, each turn as one
    context (:meth:`WordEmbedder.embed_turns`); turns without tokens give no
    rows. Frames point at rows through ``word_index`` (see
    :func:`align_words`).

    Returns
    -------
    dict
        ``word_vectors`` (W, D) float16, ``word_tokens`` (W,) unicode str
        array, ``word_index`` (T, L) int32 (−1 = padding) and ``report``, a
        dict with ``n_frames``, ``n_frames_with_words``, ``n_turns``
        (transcript turns), ``n_turns_with_words``, ``n_words`` (W),
        ``n_truncated_frames``, ``n_oov`` (word occurrences the embedder has
        no learned vector for, see :meth:`WordEmbedder.unknown`),
        ``has_transcript`` and ``embedder`` (its name).
    """
    fw = align_words(
        times, transcript, max_words=max_words, delay=delay, drop_tags=drop_tags, source=source
    )
    dim = int(embedder.dim)
    nonempty = [k for k, toks in enumerate(fw.turn_tokens) if toks]
    vectors = np.zeros((len(fw.tokens), dim), dtype=np.float16)
    n_oov = 0
    if nonempty:
        embedded = embedder.embed_turns([fw.turn_tokens[k] for k in nonempty])
        if len(embedded) != len(nonempty):
            raise ValueError(
                f"embedder {embedder.name} returned {len(embedded)} turns for {len(nonempty)}"
            )
        for k, arr in zip(nonempty, embedded, strict=True):
            arr = np.asarray(arr)
            n = len(fw.turn_tokens[k])
            if arr.shape != (n, dim):
                raise ValueError(
                    f"embedder {embedder.name} returned shape {arr.shape} for a turn of "
                    f"{n} words (expected {(n, dim)})"
                )
            half = arr.astype(np.float16)
            if not np.isfinite(half).all():
                raise ValueError(
                    f"embedder {embedder.name} gave non-finite vectors (or values beyond "
                    f"float16 range) for transcript turn {k + 1}"
                )
            vectors[fw.turn_offsets[k] : fw.turn_offsets[k + 1]] = half
            n_oov += int(np.count_nonzero(embedder.unknown(fw.turn_tokens[k])))
    has_words = fw.word_index[:, 0] >= 0
    report = {
        "has_transcript": transcript is not None,
        "n_frames": len(fw.turn),
        "n_frames_with_words": int(np.count_nonzero(has_words)),
        "n_turns": 0 if transcript is None else len(fw.turn_tokens),
        "n_turns_with_words": len(nonempty),
        "n_words": len(fw.tokens),
        "n_truncated_frames": fw.n_truncated_frames,
        "n_oov": n_oov,
        "embedder": embedder.name,
    }
    tokens = np.array(fw.tokens, dtype=np.str_) if fw.tokens else np.zeros(0, dtype="<U1")
    return {
        "word_vectors": vectors,
        "word_tokens": tokens,
        "word_index": fw.word_index,
        "report": report,
    }
