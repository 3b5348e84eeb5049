"""PyTorch datasets over a prepared cache.

Training reads random windows of ``window`` frames (paper: 100); evaluation
reads whole recordings. Items are dicts in the model-batch layout of
docs/architecture.md (section 3), without the batch axis; :func:`collate`
pads them to a batch and adds the frame ``mask``. A stream that a session
lacks (e.g. no video) yields zeros with its mask False, so models mask it.
The dataset holds no open file handles between items, so it works with
DataLoader worker processes.

``audio_reference=R`` adds to every item ``audio_ref`` (R, 2 * frame),
``audio_ref_mask`` (R,) and ``audio_ref_count`` (1,): R frames of the target
speaker's speech from the same recording (:func:`reference_indices`) and how
many speech frames the recording has, the yardstick of a model that
normalises its audio features per speaker
(:func:`mmaffect.models.assembly.reference_normalise`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mmaffect.data.cache import CachedSession, read_stream
from mmaffect.data.pcm import from_pcm16, interlocutor_vector, to_pcm16
from mmaffect.data.session import DIMENSIONS
from mmaffect.errors import ConfigError

MODALITIES = ("text", "audio", "visual")
#: Training draws the reference frames of an item from a pool of this many times R frames per recording.
REFERENCE_POOL = 8
#: Item entries that are not along time (a fixed number of reference frames): never padded or sliced by time.
REFERENCE_KEYS = ("audio_ref", "audio_ref_mask", "audio_ref_count")
_STREAM_OF = {"text": "text", "audio": "audio", "visual": "faces"}
# Random streams of a training item: generator seeds are [seed, epoch, item, STREAM]. The window and
# its reference share the channel stream on purpose (one channel for both); every other draw has its own.
STREAM_CHANNEL = 1
STREAM_REFERENCE = 2
STREAM_MODALITIES = 3


def _label_columns(names: Sequence[str]) -> list[int]:
    return [list(names).index(d) for d in DIMENSIONS]


def word_vector_dim(sessions: Sequence[CachedSession]) -> int | None:
    """Size of the word vectors in the first session with a text stream (``None``: no text)."""
    for s in sessions:
        if s.has("text"):
            return int(read_stream(s.streams["text"], keys=["word_vectors"])["word_vectors"].shape[1])
    return None


def reference_indices(candidates: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """At most ``n`` of the frame indices ``candidates`` (sorted, distinct): all of them when there are
    no more than ``n``; else ``n`` drawn without replacement by ``rng`` (training: a new sample per
    item), or without ``rng`` ``n`` evenly spaced ones (evaluation and prediction: deterministic).

    >>> reference_indices(np.arange(10, 20), 3).tolist()
    [10, 14, 19]
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    if len(candidates) <= n:
        return candidates
    if rng is None:
        return candidates[np.round(np.linspace(0, len(candidates) - 1, n)).astype(np.int64)]
    return np.sort(rng.choice(candidates, size=n, replace=False))


def reference_item(frames: np.ndarray, n: int, count: int) -> dict[str, torch.Tensor]:
    """``audio_ref`` (n, 2F) and ``audio_ref_mask`` (n,) from k <= n int16 target-speech frames (k, F):
    each frame in the target half of the interlocutor vector; the rows past k are zeros, masked.
    ``audio_ref_count`` (1,): ``count``, the speech frames of the recording they were drawn from."""
    k, f = frames.shape
    if k > n:
        raise ValueError(f"{k} reference frames for {n} places")
    if count < k:
        raise ValueError(f"{k} reference frames drawn from a recording of {count} speech frames")
    ref = np.zeros((n, 2 * f), np.float32)
    ref[:k] = interlocutor_vector(from_pcm16(frames), np.ones(k, bool))
    mask = np.zeros(n, bool)
    mask[:k] = True
    return {"audio_ref": torch.from_numpy(ref), "audio_ref_mask": torch.from_numpy(mask),
            "audio_ref_count": torch.tensor([float(count)])}


def reference_candidates(session: CachedSession) -> np.ndarray:
    """Frame indices of the session where the target speaker's speech is heard (``audio_mask`` and
    ``audio_target``); none without an audio stream."""
    if not session.has("audio"):
        return np.zeros(0, np.int64)
    a = read_stream(session.streams["audio"], keys=["audio_mask", "audio_target"])
    return np.flatnonzero(np.asarray(a["audio_mask"], bool) & np.asarray(a["audio_target"], bool))


def _audio_frames(session: CachedSession, idx: np.ndarray, audio_frame: int) -> np.ndarray:
    """(len(idx), audio_frame) int16: the cached audio frames ``idx`` (sorted, distinct) of ``session``."""
    if len(idx) == 0:
        return np.zeros((0, audio_frame), np.int16)
    return np.asarray(read_stream(session.streams["audio"], keys=["audio"], frames=idx)["audio"])


def load_reference(session: CachedSession, candidates: np.ndarray, n: int, audio_frame: int) -> dict[str, torch.Tensor]:
    """:func:`reference_item` of ``n`` evenly spaced frames of ``candidates`` (:func:`reference_indices`),
    read from the cache: the reference of a whole recording."""
    return reference_item(_audio_frames(session, reference_indices(candidates, n), audio_frame), n, len(candidates))


class SessionWindows(Dataset):
    """Windows (``window`` frames) or whole recordings of cached sessions.

    ``window=None`` gives one item per whole recording. With a window, a
    session of T frames yields ``ceil(T / window)`` items per epoch; call
    :meth:`set_epoch` to draw new random window starts (seeded, so runs are
    reproducible). ``audio_reference``: see the module docstring (training
    draws new reference frames per item and epoch from a pool per recording,
    whole recordings take evenly spaced ones; with ``audio_augment``, the
    reference frames go through the same channel as their window).
    """

    def __init__(
        self,
        sessions: Sequence[CachedSession],
        *,
        modalities: Sequence[str] = MODALITIES,
        window: int | None = 100,
        seed: int = 0,
        face_size: int = 96,
        embed_dim: int | None = None,
        max_words: int = 30,
        audio_frame: int = 2205,
        require_labels: bool = True,
        audio_augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        audio_reference: int = 0,
        modality_dropout: Callable[[dict[str, torch.Tensor], np.random.Generator], dict[str, torch.Tensor]]
        | None = None,
    ) -> None:
        if audio_reference and "audio" not in modalities:
            raise ConfigError("audio_reference needs the audio modality")
        if require_labels:
            missing = [s.name for s in sessions if not s.has("labels")]
            if missing:
                raise ValueError(f"sessions without labels cannot be used for training/evaluation: {missing}")
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {MODALITIES}")
        self.sessions = list(sessions)
        self.modalities = tuple(modalities)
        self.window = window
        self.seed = seed
        self.face_size = face_size
        self.max_words = max_words
        self.audio_frame = audio_frame
        # Training only: float waveform (n,), generator → waveform of the same length
        # (mmaffect.training.augment_audio.AudioAugment), applied to each item's audio.
        self.audio_augment = audio_augment
        # Training only: masks whole modalities of a window (mmaffect.training.augment_modalities).
        self.modality_dropout = modality_dropout
        self.embed_dim = embed_dim if embed_dim is not None else self._find_embed_dim()
        self.audio_reference = int(audio_reference)
        self._ref_candidates = [reference_candidates(s) for s in self.sessions] if audio_reference else []
        self._ref_pools: dict[int, np.ndarray] = {}  # training: session -> its reference pool (int16 frames)
        self.set_epoch(0)

    def _find_embed_dim(self) -> int:
        if "text" not in self.modalities:
            return 0
        dim = word_vector_dim(self.sessions)
        if dim is None:
            raise ValueError("no session has a text stream; pass embed_dim or drop the text modality")
        return dim

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's window starts (deterministic in ``seed`` and ``epoch``)."""
        rng = np.random.default_rng([self.seed, epoch])
        self.epoch = epoch
        self.items: list[tuple[int, int, int]] = []
        for i, s in enumerate(self.sessions):
            if self.window is None or s.n_frames <= self.window:
                self.items.append((i, 0, s.n_frames))
                continue
            n = -(-s.n_frames // self.window)
            for start in rng.integers(0, s.n_frames - self.window + 1, size=n):
                self.items.append((i, int(start), int(start) + self.window))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        i, start, stop = self.items[idx]
        transform = None
        if self.audio_augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, idx, STREAM_CHANNEL])
            transform = lambda frames: augment_frames(frames, self.audio_augment, rng)  # noqa: E731
        item = load_frames(self.sessions[i], slice(start, stop), modalities=self.modalities,
                           face_size=self.face_size, embed_dim=self.embed_dim, max_words=self.max_words,
                           audio_frame=self.audio_frame, audio_transform=transform)
        if self.audio_reference:
            item.update(self._reference(i, idx))
        if self.modality_dropout is not None:
            item = self.modality_dropout(item, np.random.default_rng([self.seed, self.epoch, idx, STREAM_MODALITIES]))
        return item

    def _augment_reference(self, frames: np.ndarray, idx: int) -> np.ndarray:
        """The reference frames of item ``idx`` through the same channel as its window: the augmentation
        is run with a generator seeded as the window's, so it draws the same room, noise level, EQ,
        gain, band, telephone and codec (a yardstick heard through another channel would not be one)."""
        if self.audio_augment is None or len(frames) == 0:
            return frames
        rng = np.random.default_rng([self.seed, self.epoch, idx, STREAM_CHANNEL])
        return augment_frames(frames, self.audio_augment, rng)

    def _reference(self, i: int, idx: int) -> dict[str, torch.Tensor]:
        """Whole recordings: R evenly spaced speech frames (as ``predict`` takes them). Training: R drawn
        anew per item and epoch from the session's pool of up to ``REFERENCE_POOL`` × R evenly spaced
        speech frames, read once (a scattered read per item cost about as much as its training step)."""
        n = self.audio_reference
        if self.window is None:
            return load_reference(self.sessions[i], self._ref_candidates[i], n, self.audio_frame)
        pool = self._ref_pools.get(i)
        if pool is None:
            pool = _audio_frames(self.sessions[i], reference_indices(self._ref_candidates[i], REFERENCE_POOL * n),
                                 self.audio_frame)
            self._ref_pools[i] = pool
        rng = np.random.default_rng([self.seed, self.epoch, idx, STREAM_REFERENCE])
        frames = self._augment_reference(pool[reference_indices(np.arange(len(pool)), n, rng)], idx)
        return reference_item(frames, n, len(self._ref_candidates[i]))


def augment_frames(frames: np.ndarray, augment: Callable[[np.ndarray, np.random.Generator], np.ndarray],
                   rng: np.random.Generator) -> np.ndarray:
    """(n, F) int16 frames of a window → augmented int16 frames.

    The frames of a window are consecutive 100 ms pieces of the recording, so
    they are joined into one waveform, augmented as a whole, and cut again.
    """
    n, f = frames.shape
    wave = augment(from_pcm16(frames).reshape(-1), rng)
    return to_pcm16(wave.reshape(n, f))


def load_frames(
    session: CachedSession,
    frames: slice,
    *,
    modalities: Sequence[str] = MODALITIES,
    face_size: int = 96,
    embed_dim: int = 0,
    max_words: int = 30,
    audio_frame: int = 2205,
    audio_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, torch.Tensor]:
    """Model inputs of one session's frames (no batch axis).

    ``audio_transform`` (training augmentation) maps the (n, F) int16 audio
    frames to new ones before they become model input.
    """
    n = len(range(*frames.indices(session.n_frames)))
    streams: dict[str, dict[str, np.ndarray]] = {}
    if session.has("labels"):
        streams["labels"] = read_stream(session.streams["labels"], frames=frames)
    if "audio" in modalities and session.has("audio"):
        streams["audio"] = read_stream(session.streams["audio"], frames=frames)
        if audio_transform is not None:
            streams["audio"]["audio"] = audio_transform(streams["audio"]["audio"])
    if "visual" in modalities and session.has("faces"):
        streams["faces"] = read_stream(session.streams["faces"], keys=["faces", "face_mask"], frames=frames)
    if "text" in modalities and session.has("text"):
        streams["text"] = read_stream(session.streams["text"], keys=["word_vectors", "word_index"], frames=frames)
    return frames_to_item(streams, n, modalities=modalities, face_size=face_size, embed_dim=embed_dim,
                          max_words=max_words, audio_frame=audio_frame)


def frames_to_item(
    streams: Mapping[str, Mapping[str, np.ndarray]],
    n: int,
    *,
    modalities: Sequence[str] = MODALITIES,
    face_size: int = 96,
    embed_dim: int = 0,
    max_words: int = 30,
    audio_frame: int = 2205,
) -> dict[str, torch.Tensor]:
    """Model inputs (no batch axis) of ``n`` frames from their cached-stream arrays.

    ``streams`` maps a stream name (``labels``, ``audio``, ``faces``,
    ``text``) to the arrays the cache stores for those frames (int16
    ``audio`` + ``audio_target`` + ``audio_mask``; uint8 ``faces`` +
    ``face_mask``; ``word_vectors`` + ``word_index``). A modality of
    ``modalities`` whose stream is missing is given as absent (all-False
    mask), never as data. Training (:func:`load_frames`) and prediction on
    new recordings (:mod:`mmaffect.inference.predictor`) both go through
    here, so the model sees the same conversion in both.
    """
    item: dict[str, torch.Tensor] = {}
    if "labels" in streams:
        lab = streams["labels"]
        item["labels"] = torch.from_numpy(lab["labels"][:, _label_columns(lab["label_names"])].copy())
    if "audio" in modalities:
        if "audio" in streams:
            a = streams["audio"]
            wave = from_pcm16(a["audio"])
            item["audio"] = torch.from_numpy(interlocutor_vector(wave, a["audio_target"]))
            item["audio_mask"] = torch.from_numpy(np.asarray(a["audio_mask"], bool))
        else:
            item["audio"] = torch.zeros(n, 2 * audio_frame)
            item["audio_mask"] = torch.zeros(n, dtype=torch.bool)
    if "visual" in modalities:
        if "faces" in streams:
            f = streams["faces"]
            item["faces"] = torch.from_numpy(np.ascontiguousarray(f["faces"])).permute(0, 3, 1, 2).float().div_(255.0)
            item["face_mask"] = torch.from_numpy(np.asarray(f["face_mask"], bool))
        else:
            item["faces"] = torch.zeros(n, 3, face_size, face_size)
            item["face_mask"] = torch.zeros(n, dtype=torch.bool)
    if "text" in modalities:
        if "text" in streams:
            t = streams["text"]
            index = t["word_index"]
            vectors = np.concatenate([t["word_vectors"].astype(np.float32),
                                      np.zeros((1, t["word_vectors"].shape[1]), np.float32)])
            # −1 (padding) picks the appended zero row; the mask says it is padding.
            item["words"] = torch.from_numpy(vectors[index])
            item["word_mask"] = torch.from_numpy(index >= 0)
        else:
            item["words"] = torch.zeros(n, max_words, embed_dim)
            item["word_mask"] = torch.zeros(n, max_words, dtype=torch.bool)
    item["mask"] = torch.ones(n, dtype=torch.bool)
    return item


def collate(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad items along time to the longest and stack; padded frames have ``mask`` False.
    The reference frames (:data:`REFERENCE_KEYS`, a fixed number per item) are stacked as they are."""
    length = max(len(it["mask"]) for it in items)
    batch: dict[str, torch.Tensor] = {}
    for key in items[0]:
        padded = []
        for it in items:
            x = it[key]
            if len(x) < length and key not in REFERENCE_KEYS:
                x = torch.cat([x, x.new_zeros((length - len(x),) + tuple(x.shape[1:]))])
            padded.append(x)
        batch[key] = torch.stack(padded)
    return batch


