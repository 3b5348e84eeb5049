"""Evaluation of trained runs: CCC per dimension and partition, predictions, seed repeats.

Scoring follows AVEC practice: the CCC of a partition is computed on the
*concatenation* of all its recordings (:func:`mmaffect.training.metrics.ccc`,
population moments), per dimension; the selection score is the mean of
arousal and valence, and higher is better.

Annotation delay. Annotators react late, so the label at time ``t + d``
describes the input at time ``t``. A run trained with ``data.annotation_delay
= d`` seconds learns to output, from the input at ``t``, the label at
``t + d``; at evaluation its output for input frame ``t`` is therefore moved
to label frame ``t + d`` (:func:`align_delay`). The first ``d`` label frames
have no such prediction and get the first prediction (edge padding, as the
AVEC baseline scripts pad shifted predictions), so every gold frame is scored.
``--delay-compensation S`` replaces the run's own delay by ``S`` seconds.

Files written by :func:`evaluate_run` under ``RUN/eval/``:

* ``scores-<checkpoint>.csv`` / ``.md``: partition, dimension rows of CCC;
* ``per_recording-<checkpoint>.csv``: CCC of every recording;
* ``predictions-<checkpoint>/<partition>/<recording>.csv``: columns ``time,
  arousal, valence, gold_arousal, gold_valence`` (gold empty without labels).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmaffect.data.cache import Cache, CachedSession, read_stream
from mmaffect.data.dataset import SessionWindows, collate
from mmaffect.data.session import DIMENSIONS
from mmaffect.errors import ConfigError
from mmaffect.checkpoints import build_model_from_checkpoint, load_checkpoint, resolve
from mmaffect.models.registry import get_spec
from mmaffect.models.temporal import apply_context
from mmaffect.training.metrics import ccc
from mmaffect.utils.io import atomic_write_text

__all__ = [
    "RecordingPrediction",
    "align_delay",
    "predict_recordings",
    "partition_scores",
    "recording_scores",
    "dataset_options",
    "EvalReport",
    "evaluate_run",
    "evaluate_checkpoint",
    "summarize_runs",
    "markdown_table",
]


@dataclass
class RecordingPrediction:
    """Predictions for one whole recording, aligned to its label frames."""

    name: str
    partition: str | None
    times: np.ndarray
    pred: np.ndarray
    gold: np.ndarray | None


def align_delay(pred: np.ndarray, delay_frames: int) -> np.ndarray:
    """Move the output for input frame ``t`` to label frame ``t + delay_frames``.

    Keeps the length; the first ``delay_frames`` frames repeat the first
    prediction (edge padding).

    >>> align_delay(np.array([[1.0], [2.0], [3.0]]), 1)[:, 0].tolist()
    [1.0, 1.0, 2.0]
    """
    if delay_frames < 0:
        raise ValueError("the annotation delay cannot be negative")
    if delay_frames == 0 or len(pred) == 0:
        return pred
    d = min(delay_frames, len(pred))
    return np.concatenate([np.repeat(pred[:1], d, axis=0), pred[: len(pred) - d]], axis=0)


def _times(session: CachedSession, label_rate: float) -> np.ndarray:
    for stream in ("labels", "audio", "faces", "text"):
        if session.has(stream):
            try:
                return np.asarray(read_stream(session.streams[stream], keys=["times"])["times"], dtype=np.float64)
            except KeyError:
                continue
    return np.arange(session.n_frames, dtype=np.float64) / label_rate


@torch.no_grad()
def predict_recordings(
    model: torch.nn.Module,
    dataset: SessionWindows,
    *,
    device: torch.device,
    batch_size: int = 1,
    delay_frames: int = 0,
    label_rate: float = 10.0,
) -> list[RecordingPrediction]:
    """Run ``model`` over every whole recording of ``dataset`` (built with ``window=None``).

    Predictions are delay-aligned with :func:`align_delay`. The model is put
    in eval mode and restored to its previous mode afterwards.
    """
    if dataset.window is not None:
        raise ValueError("predict_recordings needs whole recordings (SessionWindows(window=None))")
    was_training = model.training
    model.eval()
    out: list[RecordingPrediction] = []
    try:
        for start in range(0, len(dataset), batch_size):
            idx = list(range(start, min(len(dataset), start + batch_size)))
            items = [dataset[j] for j in idx]
            batch = {k: v.to(device) for k, v in collate(items).items()}
            pred = model(batch).pred.float().cpu().numpy()
            for row, j in enumerate(idx):
                session = dataset.sessions[dataset.items[j][0]]
                n = len(items[row]["mask"])
                p = align_delay(pred[row, :n, :2].astype(np.float64), delay_frames)
                gold = items[row]["labels"].numpy().astype(np.float64) if "labels" in items[row] else None
                out.append(RecordingPrediction(session.name, session.partition, _times(session, label_rate), p, gold))
    finally:
        model.train(was_training)
    return out


def partition_scores(preds: Sequence[RecordingPrediction]) -> dict[str, float]:
    """CCC per dimension on the concatenation of recordings, plus their ``mean``."""
    labelled = [p for p in preds if p.gold is not None]
    if not labelled:
        raise ValueError("no recording has labels to score")
    pred = np.concatenate([p.pred for p in labelled])
    gold = np.concatenate([p.gold for p in labelled])  # type: ignore[misc]
    scores = {d: ccc(pred[:, i], gold[:, i]) for i, d in enumerate(DIMENSIONS)}
    scores["mean"] = float(np.mean([scores[d] for d in DIMENSIONS]))
    return scores


def recording_scores(preds: Sequence[RecordingPrediction]) -> dict[str, dict[str, float]]:
    """CCC per dimension (and ``mean``) of every labelled recording, keyed by name."""
    out: dict[str, dict[str, float]] = {}
    for p in preds:
        if p.gold is None:
            continue
        s = {d: ccc(p.pred[:, i], p.gold[:, i]) for i, d in enumerate(DIMENSIONS)}
        s["mean"] = float(np.mean([s[d] for d in DIMENSIONS]))
        out[p.name] = s
    return out


def dataset_options(prepare_config: dict[str, Any]) -> dict[str, int]:
    """Input sizes of a cache (face size, words per frame, audio samples per frame)."""
    return {
        "face_size": int(prepare_config.get("faces", {}).get("size", 96)),
        "max_words": int(prepare_config.get("text", {}).get("max_words", 30)),
        "audio_frame": int(prepare_config.get("audio", {}).get("frame_samples", 2205)),
    }


def _fmt(x: float) -> str:
    return "nan" if x != x else f"{x:.3f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table (numbers formatted with 3 decimals).

    >>> print(markdown_table(["a", "b"], [["x", 0.5]]))
    | a | b |
    |---|---|
    | x | 0.500 |
    """
    def cell(v: Any) -> str:
        return _fmt(v) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


@dataclass
class EvalReport:
    """Scores of one run: ``scores[partition][dimension]`` and the predictions behind them."""

    run: Path
    checkpoint: str
    delay_seconds: float
    context_frames: int | None = None  # the head's context window (None: the state carried throughout)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    per_recording: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    predictions: dict[str, list[RecordingPrediction]] = field(default_factory=dict)

    def markdown(self) -> str:
        rows = [[p, s["arousal"], s["valence"], s["mean"]] for p, s in self.scores.items()]
        what = f"{self.run} ({self.checkpoint}.pt, " if self.run.is_dir() else f"{self.run} ("
        context = ("the head's state carried through each recording" if self.context_frames is None
                   else f"the head in windows of {self.context_frames} frames")
        head = (f"{what}annotation delay {self.delay_seconds:g} s; {context}; "
                "CCC on the concatenated recordings)\n\n")
        return head + markdown_table(["partition", "arousal", "valence", "mean"], rows)


def evaluate_run(
    run: str | Path,
    *,
    partitions: Sequence[str] = ("devel",),
    checkpoint: str = "best",
    delay_compensation: float | None = None,
    cache: str | Path | None = None,
    device: str = "auto",
    write: bool = True,
    context: str | float | None = "train",
) -> EvalReport:
    """Score a run's checkpoint on cached partitions and write the tables and predictions (``RUN/eval/``).

    A partition without labels (e.g. SEWA test) gets predictions but no scores.
    """
    run = Path(run)
    report = evaluate_checkpoint(run / f"{checkpoint}.pt", partitions=partitions, cache=cache,
                                 delay_compensation=delay_compensation, device=device,
                                 out=run / "eval" if write else None, tag=checkpoint, context=context)
    report.run = run
    return report


# Preprocessing keys that must agree between a model and the cache it is scored on, per modality.
_MUST_MATCH = {"audio": (("audio", "sample_rate"), ("audio", "frame_samples")),
               "text": (("text", "embedder"),),
               "visual": (("faces", "size"), ("faces", "grey"))}


def check_cache_fits(path: Path, model_name: str, modalities: Sequence[str], model_prep: dict[str, Any] | None,
                     cache_prep: dict[str, Any], cache_root: Path) -> None:
    """Refuse, in one line, a cache whose arrays the model cannot read (another sample rate,
    frame size, embedder, face size or grey/colour crops than the model was trained with)."""
    if not model_prep:
        return
    for modality in modalities:
        for section, key in _MUST_MATCH.get(modality, ()):
            want, got = model_prep.get(section, {}).get(key), cache_prep.get(section, {}).get(key)
            if want is not None and got is not None and want != got:
                raise ConfigError(f"{cache_root}: prepared with {section}.{key}={got!r}, but {model_name!r} "
                                  f"({path}) was trained with {section}.{key}={want!r}: prepare the corpus "
                                  f"again with {section}.{key}={want}")


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    partitions: Sequence[str] = ("devel",),
    cache: str | Path | None = None,
    delay_compensation: float | None = None,
    device: str = "auto",
    out: str | Path | None = None,
    tag: str | None = None,
    context: str | float | None = "train",
) -> EvalReport:
    """Score any ``mmaffect train`` checkpoint (a file, or ``pretrained:NAME``) on a prepared,
    labelled cache (``cache``; default: the one it was trained on).

    ``context``: the head's context window, as in ``mmaffect predict``
    (:func:`~mmaffect.models.temporal.resolve_context`; default the training window).

    ``out``: the folder for the tables and predictions (None: nothing written).
    The model's modalities are read from the cache; a cache prepared with
    another sample rate, embedder or face size is refused in one line.
    """
    from mmaffect.training.distributed import resolve_device

    path, ckpt, model = _scoring_model(checkpoint)
    cfg = ckpt["config"]
    frames = apply_context(model, cfg, context)
    dev = resolve_device(device)
    model.to(dev)
    data_cfg = cfg.get("data") or {}
    cache_obj = Cache(_scoring_cache(checkpoint, path, data_cfg, cache))
    prep = cache_obj.config()
    modalities = list(data_cfg.get("modalities") or get_spec(str(cfg["model_name"])).modalities)
    check_cache_fits(path, str(cfg["model_name"]), modalities, ckpt.get("prepare_config"), prep, cache_obj.root)
    by_partition = _partition_sessions(cache_obj, partitions, modalities, str(cfg["model_name"]))
    if ckpt.get("prepare_config") is not None and prep != ckpt["prepare_config"]:
        print(f"warning: {cache_obj.root} was prepared with another configuration than the model's training cache",
              file=sys.stderr)
    label_rate = float(prep.get("label_rate", 10.0))
    delay_s = float(data_cfg.get("annotation_delay", 0.0)) if delay_compensation is None else delay_compensation
    delay_frames = int(round(delay_s * label_rate))
    report = EvalReport(run=path, checkpoint=tag or path.stem, delay_seconds=delay_s,
                        context_frames=frames)
    for part, sessions in by_partition.items():
        ds = SessionWindows(sessions, modalities=modalities, window=None, require_labels=False,
                            embed_dim=_embed_dim(cfg), audio_reference=getattr(model, "audio_reference", 0),
                            **dataset_options(prep))
        preds = predict_recordings(model, ds, device=dev, batch_size=int((cfg.get("optim") or {}).get(
            "eval_batch_size", 1)), delay_frames=delay_frames, label_rate=label_rate)
        report.predictions[part] = preds
        if any(p.gold is not None for p in preds):
            report.scores[part] = partition_scores(preds)
            report.per_recording[part] = recording_scores(preds)
    if out is not None:
        _write_report(report, Path(out))
    return report


def _scoring_model(checkpoint: str | Path) -> tuple[Path, dict[str, Any], torch.nn.Module]:
    """``(file, checkpoint, model)`` of a checkpoint, run folder or ``pretrained:NAME`` to score on a cache."""
    path = resolve(checkpoint)
    if path.is_dir():
        path = path / "best.pt"
    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    if cfg.get("pretrain") == "faces":
        raise ConfigError(f"{path}: a face classifier (pretrain-faces) has no arousal/valence head for a cache: "
                          "score it on labelled images with --images FOLDER|votes.csv")
    try:
        model = build_model_from_checkpoint(ckpt)
    except (KeyError, RuntimeError) as exc:
        raise ConfigError(f"{path}: cannot rebuild its model {cfg.get('model_name')!r}: "
                          f"{str(exc).splitlines()[0]}") from None
    return path, ckpt, model


def _scoring_cache(checkpoint: str | Path, path: Path, data_cfg: dict[str, Any],
                   cache: str | Path | None) -> str | Path:
    """The cache to score on: ``cache``, else the one the model was trained on (never for a shipped model)."""
    if cache is not None:
        return cache
    # A shipped model's training cache is a path on the machine that made it: never a default.
    shipped = str(checkpoint).startswith("pretrained:")
    cache = None if shipped else data_cfg.get("cache")
    if not cache or not Path(cache).is_dir():
        raise ConfigError(f"{path}: give --cache FOLDER (a labelled cache made by `mmaffect prepare`); "
                          f"the cache it was trained on ({cache}) is not here")
    return cache


def _partition_sessions(cache_obj: Cache, partitions: Sequence[str], modalities: Sequence[str],
                        model_name: str) -> dict[str, list[CachedSession]]:
    """The cached sessions of each partition; a partition with none, or none the model can read, is refused."""
    streams = {"audio": "audio", "visual": "faces", "text": "text"}
    by_partition = {}
    for part in partitions:
        sessions = cache_obj.sessions(partitions=[part])
        if not sessions:
            raise ConfigError(f"{cache_obj.root}: no prepared session in partition {part!r}")
        if not any(s.has(streams[m]) for s in sessions for m in modalities):
            raise ConfigError(f"{cache_obj.root}: partition {part!r} holds none of the inputs {model_name!r} "
                              f"reads ({', '.join(modalities)})")
        by_partition[part] = sessions
    return by_partition


def _embed_dim(cfg: dict[str, Any]) -> int | None:
    modalities = (cfg.get("data") or {}).get("modalities") or get_spec(str(cfg["model_name"])).modalities
    if "text" not in modalities:
        return None
    dim = cfg.get("model_options", {}).get("embed_dim")
    return int(dim) if dim is not None else None


def _write_report(report: EvalReport, out: Path) -> None:
    tag = report.checkpoint
    rows = [[p, d, s[d]] for p, s in report.scores.items() for d in (*DIMENSIONS, "mean")]
    atomic_write_text(out / f"scores-{tag}.csv", _csv_text(["partition", "dimension", "ccc"], rows))
    atomic_write_text(out / f"scores-{tag}.md", report.markdown() + "\n")
    rec_rows = [[p, name, s["arousal"], s["valence"], s["mean"]]
                for p, recs in report.per_recording.items() for name, s in recs.items()]
    atomic_write_text(out / f"per_recording-{tag}.csv",
                      _csv_text(["partition", "recording", "arousal", "valence", "mean"], rec_rows))
    for part, preds in report.predictions.items():
        for p in preds:
            gold = p.gold if p.gold is not None else np.full_like(p.pred, np.nan)
            rows = [[f"{t:.3f}", *(f"{v:.6g}" for v in p.pred[i]),
                     *("" if np.isnan(v) else f"{v:.6g}" for v in gold[i])] for i, t in enumerate(p.times)]
            atomic_write_text(out / f"predictions-{tag}" / part / f"{p.name}.csv",
                              _csv_text(["time", "arousal", "valence", "gold_arousal", "gold_valence"], rows))


def read_predictions(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(times, pred (T,2), gold (T,2))`` of a predictions CSV written by :func:`evaluate_run`."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    def col(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r[name] != "" else np.nan for r in rows])
    return (col("time"), np.stack([col("arousal"), col("valence")], 1),
            np.stack([col("gold_arousal"), col("gold_valence")], 1))


def summarize_runs(reports: Sequence[EvalReport]) -> str:
    """Seed repeats as mean ± std (sample std, ddof 1) per partition and dimension (Markdown)."""
    from mmaffect.training.stats import format_mean_std, mean_std

    parts = [p for p in reports[0].scores if all(p in r.scores for r in reports)]
    rows = []
    for p in parts:
        cells: list[Any] = [p]
        for d in (*DIMENSIONS, "mean"):
            m, s = mean_std([r.scores[p][d] for r in reports])
            cells.append(format_mean_std(m, s))
        rows.append(cells)
    head = f"{len(reports)} runs ({reports[0].checkpoint}.pt): mean ± std (ddof 1) of CCC\n\n"
    return head + markdown_table(["partition", "arousal", "valence", "mean"], rows)
