"""Face models on videos and still images: expressions and valence/arousal per frame or per image.

Three kinds of checkpoint are *face models*:

* a ``mmaffect pretrain-faces`` run's ``model.pt`` and the shipped ``branch``
  models (``pretrained:ferplus-hrnet3``, ``pretrained:ferplus-hrnet3-demo``):
  a visual network with a classifier over the 8 FER+ categories
  (:class:`mmaffect.training.faces.FaceClassifier`). They give the
  probability of every category and, as valence/arousal, the
  probability-weighted mean of the categories' proxy points
  (:func:`mmaffect.training.faces.proxy_from_probabilities`, the rule FER+
  evaluation uses). They were trained on FER+'s grey faces, so the crops are
  turned grey (luma in all three channels) and resized exactly as in
  training (:func:`mmaffect.training.faces.face_probabilities`);
* a visual-only ``mmaffect train`` run (``best.pt``): its own arousal and
  valence. On a video it runs as :class:`~mmaffect.inference.predictor.Predictor`
  does (10 Hz, LSTM state carried through the recording, the run's
  preprocessing); on images every image is a one-frame sequence.

Faces are found by the code of ``prepare``/``predict``
(:mod:`mmaffect.preprocess.faces`): :func:`~mmaffect.preprocess.faces.iter_faces`
on a video's 10 Hz grid; on a still image one full scan with the same
detector parameters, keeping the largest face. A frame or image without a
face is masked: ``face`` = 0, empty values, counted in the report — never a
zero image fed to the network.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mmaffect.data.session import LABEL_RATE, frame_times
from mmaffect.errors import ConfigError, DataError
from mmaffect.version import __version__

__all__ = ["IMAGE_SUFFIXES", "FaceImageScores", "FacePrediction", "FacePredictor", "ImageFaces", "LabelledImages",
           "evaluate_face_images", "is_face_checkpoint", "list_images", "load_face_model", "read_image",
           "read_labelled_images"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""Still-image files read by :func:`read_image` (OpenCV)."""

BATCH = 64  # faces per forward pass: memory stays flat over long videos and large folders


def is_face_checkpoint(ckpt: Mapping[str, Any]) -> bool:
    """A ``pretrain-faces`` checkpoint (classifier over FER+ categories) or a visual-only training run."""
    from mmaffect.models.registry import get_spec

    cfg = ckpt.get("config") or {}
    if cfg.get("pretrain") == "faces":
        return True
    try:
        return tuple(get_spec(str(cfg.get("model_name"))).modalities) == ("visual",)
    except KeyError:
        return False


def checkpoint_file(spec: str | Path) -> Path:
    """``pretrained:NAME`` (any kind), a checkpoint file, or a run folder (``best.pt`` of ``train``,
    ``model.pt`` of ``pretrain-faces``) → the checkpoint file."""
    from mmaffect.checkpoints import resolve

    path = resolve(spec)
    if path.is_dir():
        for name in ("best.pt", "model.pt"):
            if (path / name).is_file():
                return path / name
        raise ConfigError(f"{path}: the folder holds no best.pt (mmaffect train) or model.pt (pretrain-faces)")
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint")
    return path


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (grey and RGBA images converted)."""
    import cv2

    if not path.is_file():
        raise DataError("file not found", path=path)
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError("not a readable image (jpg, png, ...)", path=path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class ImageFaces:
    """The face of each still image: ``crops`` (N, S, S, 3) uint8 RGB (zeros where ``mask`` is
    False, never fed to a network), ``mask`` (N,), ``boxes`` (N, 4) x, y, w, h (NaN: no face),
    ``n_faces`` (N,) faces the detector saw in each image."""

    crops: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray
    n_faces: np.ndarray


@dataclass
class FacePrediction:
    """What :class:`FacePredictor` computed for one video or one set of images.

    ``frame``: one row per 10 Hz frame (``time``) or per image (``file``),
    with ``face`` (1: a face was found; 0: masked, values empty),
    ``arousal``, ``valence`` and, for classifier models, ``expression`` (the
    most probable category) and one probability column per FER+ category.
    ``report``: counts, the checkpoint, timings.
    """

    frame: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: str | Path, *, figures: bool = True) -> dict[str, Path]:
        """Write ``predictions.csv``, ``report.json`` and (a video, ``figures``) ``traces.png``; atomically."""
        from mmaffect.utils.io import atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = {"csv": folder / "predictions.csv", "report": folder / "report.json"}
        atomic_write_text(written["csv"], self.frame.to_csv(index=False, float_format="%.6f"))
        if figures and "time" in self.frame.columns and len(self.frame):
            written["traces"] = _plot_traces(self.frame, folder / "traces.png", title=Path(str(self.report.get("input"))).name)
        atomic_write_text(written["report"], json.dumps(self.report, indent=2, default=str) + "\n")
        return written


def _plot_traces(frame: pd.DataFrame, dest: Path, *, title: str) -> Path:
    """Arousal and valence over time (gaps where no face) and, for classifiers, the category probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmaffect.training.faces import FERPLUS_CATEGORIES
    from mmaffect.utils.io import atomic_path

    classes = [c for c in FERPLUS_CATEGORIES if c in frame.columns]
    rows = 2 if classes else 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.6 * rows), sharex=True, squeeze=False)
    t = frame["time"].to_numpy()
    ax = axes[0, 0]
    for dim, colour in (("arousal", "tab:red"), ("valence", "tab:blue")):
        ax.plot(t, frame[dim].to_numpy(dtype=float), color=colour, label=dim)  # NaN = gap
    no_face = frame["face"].to_numpy() == 0
    if no_face.any():
        ax.fill_between(t, 0, 1, where=no_face, color="0.85", transform=ax.get_xaxis_transform(),
                        label="no face (masked)", step="post")
    ax.set_ylabel("value")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=9)
    if classes:
        probs = np.nan_to_num(frame[classes].to_numpy(dtype=float))
        axes[1, 0].stackplot(t, probs.T, labels=classes)
        axes[1, 0].set_ylabel("probability")
        axes[1, 0].legend(loc="upper left", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    with atomic_path(dest, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return dest


class FacePredictor:
    """A face model (see the module docstring) with its face detector settings.

    Build with :meth:`from_checkpoint` (or :func:`load_face_model`); call
    :meth:`predict_video` or :meth:`predict_images`.
    """

    def __init__(self, *, model: torch.nn.Module, model_name: str, classes: Sequence[str] | None,
                 image_size: int, face_config: Mapping[str, Any], source: str,
                 run_predictor: Any = None, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.model_name = model_name
        self.classes = tuple(classes) if classes else None
        self.image_size = int(image_size)
        self.face_config = dict(face_config)
        self.source = source
        self.run_predictor = run_predictor  # a Predictor for visual-only training runs (videos)

    @property
    def kind(self) -> str:
        """``classifier`` (expression categories) or ``run`` (a visual-only training run)."""
        return "classifier" if self.classes else "run"

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, *, device: str | torch.device | None = None) -> FacePredictor:
        """A ``pretrain-faces`` ``model.pt`` (or its run folder, or ``pretrained:NAME`` of a branch model)
        or a visual-only ``mmaffect train`` checkpoint."""
        from mmaffect.checkpoints import load_checkpoint

        path = checkpoint_file(checkpoint)
        ckpt = load_checkpoint(path)
        if not is_face_checkpoint(ckpt):
            raise ConfigError(f"{path}: {ckpt.get('config', {}).get('model_name')!r} is not a face model "
                              "(a pretrain-faces model.pt or a visual-only run)")
        cfg = ckpt["config"]
        if cfg.get("pretrain") == "faces":
            return cls._classifier(path, ckpt, device=device)
        from mmaffect.inference.predictor import Predictor

        run = Predictor.from_checkpoint(path, device=device)
        faces = run.prepare_config["faces"]
        return cls(model=run.model, model_name=run.model_name, classes=None, image_size=int(faces["size"]),
                   face_config=faces, source=str(path), run_predictor=run, device=run.device)

    @classmethod
    def _classifier(cls, path: Path, ckpt: Mapping[str, Any], *, device: str | torch.device | None) -> FacePredictor:
        from mmaffect.preprocess.pipeline import resolve_prepare_config
        from mmaffect.training.faces import FERPLUS_CATEGORIES, _build, _image_size

        cfg = ckpt["config"]
        try:
            model = _build(cfg)
            model.load_state_dict(ckpt["model"])
        except KeyError as exc:
            raise ConfigError(f"{path}: unknown model {exc} (written by another mmaffect version?)") from None
        except RuntimeError as exc:
            raise ConfigError(f"{path}: its weights do not fit {cfg.get('model_name')!r}: "
                              f"{str(exc).splitlines()[0]}") from None
        # No preprocessing was saved (FER+ faces come cropped): the detector of `prepare` with its defaults.
        faces = resolve_prepare_config(None)["faces"]
        return cls(model=model, model_name=str(cfg["model_name"]), classes=FERPLUS_CATEGORIES,
                   image_size=_image_size(cfg), face_config=faces, source=str(path), device=device)

    def use_face_detector(self, *, min_face: float | None = None, detect_width: int | None = None
                          ) -> FacePredictor:
        """:meth:`mmaffect.inference.predictor.Predictor.use_face_detector`, for face models. Returns self."""
        from mmaffect.preprocess.faces import with_detector

        self.face_config = with_detector(self.face_config, min_face=min_face, detect_width=detect_width)
        if self.run_predictor is not None:
            self.run_predictor.use_face_detector(min_face=min_face, detect_width=detect_width)
        return self

    # ------------------------------------------------------------------ networks

    @torch.inference_mode()
    def _outputs(self, crops: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(probabilities (n, 8) or None, arousal/valence (n, 2)) of (n, S, S, 3) RGB face crops."""
        if self.classes:
            import cv2

            from mmaffect.training.faces import face_probabilities, proxy_from_probabilities

            grey = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops]) if len(crops) else \
                np.zeros((0, self.image_size, self.image_size), np.uint8)
            p = face_probabilities(self.model, grey, size=self.image_size, device=self.device, batch_size=BATCH)
            return p, proxy_from_probabilities(p)
        from mmaffect.data.dataset import collate, frames_to_item

        items = [frames_to_item({"faces": {"faces": c[None], "face_mask": np.ones(1, bool)}}, 1,
                                modalities=("visual",), face_size=self.image_size) for c in crops]
        preds = [np.zeros((0, 2))]
        for start in range(0, len(items), BATCH):
            batch = {k: v.to(self.device) for k, v in collate(items[start:start + BATCH]).items()}
            preds.append(self.model(batch).pred[:, 0, :2].float().cpu().numpy().astype(np.float64))
        return None, np.concatenate(preds)

    def _rows(self, mask: np.ndarray, probs: np.ndarray | None, va: np.ndarray) -> dict[str, Any]:
        """Output columns for ``len(mask)`` rows; rows without a face stay empty (NaN / "")."""
        n = len(mask)
        cols: dict[str, Any] = {"face": mask.astype(np.int8)}
        full_va = np.full((n, 2), np.nan)
        full_va[mask] = va
        cols["arousal"], cols["valence"] = full_va[:, 0], full_va[:, 1]
        if self.classes:
            full_p = np.full((n, len(self.classes)), np.nan)
            full_p[mask] = probs
            names = np.array([""] * n, dtype=object)
            if mask.any():
                names[mask] = np.asarray(self.classes, dtype=object)[np.asarray(probs).argmax(axis=1)]
            cols["expression"] = names
            cols.update({c: full_p[:, k] for k, c in enumerate(self.classes)})
        return cols

    def _report(self, what: str, source: Path, n: int, n_face: int, t0: float) -> dict[str, Any]:
        f = self.face_config
        report: dict[str, Any] = {
            "checkpoint": self.source, "model": self.model_name, "kind": self.kind, "input": str(source),
            "mmaffect_version": __version__, f"n_{what}": n, f"{what}_with_face": n_face,
            f"{what}_without_face": n - n_face,
            "face_detector": {k: f[k] for k in ("detector", "detect_width", "min_face", "margin", "select")
                              if k in f},
            "crop_size": self.image_size,
            "input_colour": "grey (as the FER+ training faces)" if self.classes else "RGB",
            "values": ("probability-weighted proxy points of the categories (mmaffect.data.proxy)"
                       if self.classes else "the model's own arousal and valence"),
        }
        if self.classes:
            report["categories"] = list(self.classes)
        if n and n_face == 0:
            report["warning"] = f"no face found in any of the {n} {what}: every row is masked"
            if what == "frames":  # a video: the detector settings may be why
                from mmaffect.preprocess.faces import small_face_hint

                report["warning"] += f" ({small_face_hint(f)})"
        report["seconds"] = time.perf_counter() - t0
        return report

    # ------------------------------------------------------------------ inputs

    def detect_images(self, paths: Sequence[Path], *, detect: bool = True) -> ImageFaces:
        """The face of every image: one full detector scan (the largest face is kept), or with
        ``detect=False`` the whole image as the face (images that are face crops already)."""
        from mmaffect.preprocess.faces import HaarFaceDetector, crop_face

        f = self.face_config
        detector = HaarFaceDetector(detect_width=int(f["detect_width"]), min_face=float(f["min_face"])) \
            if detect else None
        n = len(paths)
        crops = np.zeros((n, self.image_size, self.image_size, 3), np.uint8)
        mask = np.zeros(n, bool)
        boxes = np.full((n, 4), np.nan, np.float32)
        counts = np.zeros(n, np.int32)
        for i, path in enumerate(paths):
            image = read_image(path)
            if detector is None:
                box = np.array([0, 0, image.shape[1], image.shape[0]], np.float32)
                margin = 0.0
            else:
                found = detector.detect(image)
                counts[i] = len(found)
                if not len(found):
                    continue
                box = found[int(np.argmax(found[:, 2] * found[:, 3]))]
                margin = float(f["margin"])
            crops[i] = crop_face(image, box, size=self.image_size, margin=margin)
            mask[i], boxes[i] = True, box
        return ImageFaces(crops=crops, mask=mask, boxes=boxes, n_faces=counts)

    def predict_images(self, paths: Sequence[str | Path], *, detect: bool = True,
                       source: str | Path | None = None) -> FacePrediction:
        """One row per image (``file``, ``face``, ``face_box``, values); see :class:`FacePrediction`."""
        t0 = time.perf_counter()
        paths = [Path(p) for p in paths]
        if not paths:
            raise ConfigError("no image to predict from")
        rows: list[pd.DataFrame] = []
        n_face = n_multiple = 0
        for start in range(0, len(paths), BATCH):
            part = paths[start:start + BATCH]
            found = self.detect_images(part, detect=detect)
            probs, va = self._outputs(found.crops[found.mask])
            boxes = [" ".join(f"{v:.0f}" for v in b) if m else "" for b, m in zip(found.boxes, found.mask)]
            rows.append(pd.DataFrame({"file": [str(p) for p in part], **self._rows(found.mask, probs, va),
                                      "face_box": boxes}))
            n_face += int(found.mask.sum())
            n_multiple += int((found.n_faces > 1).sum())
        frame = pd.concat(rows, ignore_index=True)
        report = self._report("images", Path(source) if source else paths[0].parent, len(paths), n_face, t0)
        report["face_found_by"] = "detector (largest face)" if detect else "none: the whole image is the face"
        report["images_with_several_faces"] = n_multiple
        report["images_without_face_list"] = frame.loc[frame["face"] == 0, "file"].tolist()
        return FacePrediction(frame=frame, report=report)

    def predict_video(self, video: str | Path, *, chunk_seconds: float = 60.0,
                      progress: bool = False) -> FacePrediction:
        """One row per 10 Hz frame (``time``, ``face``, values); see :class:`FacePrediction`."""
        t0 = time.perf_counter()
        video = Path(video)
        if self.run_predictor is not None:
            return self._run_on_video(video, chunk_seconds=chunk_seconds, progress=progress, t0=t0)
        from mmaffect.preprocess.faces import iter_faces, new_face_report
        from mmaffect.preprocess.video import probe_video

        info = probe_video(video)
        duration = float(info.duration or 0.0)
        n_frames = int(math.floor(duration * LABEL_RATE + 1e-6))
        if n_frames < 1:
            raise DataError(f"video too short for one 0.1 s frame ({duration:.3f} s)", path=video)
        times = frame_times(n_frames)
        f = self.face_config
        face_report = new_face_report(n_frames)
        from mmaffect.preprocess.stream import face_chunks, face_options

        # the tracker of `prepare` and `predict`, at the size this model takes
        it = iter_faces(video, times, report=face_report, **face_options({**f, "size": self.image_size}))
        parts = []
        for k, chunk in enumerate(face_chunks(it, n_frames, BATCH, self.image_size)):
            start, crops, mask = k * BATCH, chunk["faces"], chunk["face_mask"]
            probs, va = self._outputs(crops[mask])
            parts.append(pd.DataFrame({"time": np.round(times[start:start + len(mask)], 6),
                                       **self._rows(mask, probs, va)}))
        frame = pd.concat(parts, ignore_index=True)
        report = self._report("frames", video, n_frames, int(frame["face"].sum()), t0)
        report.update(duration=duration, faces=face_report,
                      realtime_factor=duration / max(report["seconds"], 1e-9))
        return FacePrediction(frame=frame, report=report)

    def _run_on_video(self, video: Path, *, chunk_seconds: float, progress: bool, t0: float) -> FacePrediction:
        """A visual-only run through :class:`Predictor` (its preprocessing, LSTM state over the recording);
        frames without a face are emptied (the run's output there rests on no face)."""
        pred = self.run_predictor.predict_full(video, chunk_seconds=chunk_seconds, attention=None, progress=progress)
        mask = pred.frame["face"].to_numpy().astype(bool)
        frame = pd.DataFrame({"time": pred.frame["time"],
                              **self._rows(mask, None, pred.frame[["arousal", "valence"]].to_numpy()[mask])})
        report = self._report("frames", video, len(frame), int(mask.sum()), t0)
        report.update(duration=pred.report["duration"], faces=pred.report.get("faces"),
                      annotation_delay_frames=self.run_predictor.delay_frames,
                      realtime_factor=pred.report["duration"] / max(report["seconds"], 1e-9))
        return FacePrediction(frame=frame, report=report)


def load_face_model(checkpoint: str | Path, *, device: str | torch.device | None = None) -> FacePredictor:
    """:meth:`FacePredictor.from_checkpoint`."""
    return FacePredictor.from_checkpoint(checkpoint, device=device)


# ---------------------------------------------------------------------- scoring on labelled images


@dataclass
class LabelledImages:
    """Images with expression votes: ``paths``, ``votes`` (N, 8) over the FER+ categories,
    ``dropped`` (rows left out: majority ``unknown``/``NF`` or no category vote)."""

    paths: list[Path]
    votes: np.ndarray
    dropped: int = 0


def _category_of_folder(folder: Path) -> str:
    from mmaffect.data.proxy import canonical_category
    from mmaffect.training.faces import FERPLUS_CATEGORIES

    try:
        name = canonical_category(folder.name)
    except KeyError:
        name = ""
    if name not in FERPLUS_CATEGORIES:
        raise DataError(f"the sub-folder name is not a FER+ category ({', '.join(FERPLUS_CATEGORIES)})", path=folder)
    return name


def read_labelled_images(source: str | Path) -> LabelledImages:
    """A folder with one sub-folder of images per FER+ category (``happiness/``, ``sadness/`` ...;
    ``happy``, ``sad`` ... accepted), or a CSV with a ``file`` column (paths relative to the CSV's
    folder) and one vote column per category (``unknown``/``NF`` columns allowed: a face whose
    majority vote is one of them is left out, as in FER+)."""
    from mmaffect.training.faces import FERPLUS_CATEGORIES

    source = Path(source)
    if not source.exists():
        raise DataError("no such file or folder", path=source)
    if source.is_dir():
        paths: list[Path] = []
        rows: list[np.ndarray] = []
        subs = sorted(p for p in source.iterdir() if p.is_dir())
        if not subs:
            raise DataError("expected one sub-folder of images per expression category "
                            f"({', '.join(FERPLUS_CATEGORIES)})", path=source)
        for sub in subs:
            k = FERPLUS_CATEGORIES.index(_category_of_folder(sub))
            for image in list_images(sub):
                paths.append(image)
                rows.append(np.eye(len(FERPLUS_CATEGORIES))[k])
        if not paths:
            raise DataError(f"no image ({', '.join(IMAGE_SUFFIXES)}) in the category sub-folders", path=source)
        return LabelledImages(paths=paths, votes=np.stack(rows))
    return _read_votes_csv(source)


def _read_votes_csv(path: Path) -> LabelledImages:
    from mmaffect.data.sources import ferplus_keep as _ferplus_keep
    from mmaffect.data.proxy import EXCLUDED_VOTES
    from mmaffect.training.faces import FERPLUS_CATEGORIES

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - pandas raises several types
        raise DataError(f"not a readable CSV ({exc})", path=path) from None
    lowered = {c.strip().lower(): c for c in table.columns}
    missing = [c for c in ("file", *FERPLUS_CATEGORIES) if c not in lowered]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} (needs file and the vote columns "
                        f"{', '.join(FERPLUS_CATEGORIES)})", path=path, row=1)
    columns = [*FERPLUS_CATEGORIES, *(c for c in lowered if c in EXCLUDED_VOTES)]
    votes = np.zeros((len(table), len(columns)))
    paths = []
    for i, (_, row) in enumerate(table.iterrows()):
        for k, c in enumerate(columns):
            try:
                votes[i, k] = float(row[lowered[c]])
            except ValueError:
                raise DataError(f"vote {c!r} is {row[lowered[c]]!r}, not a number", path=path, row=i + 2) from None
            if not math.isfinite(votes[i, k]) or votes[i, k] < 0:
                raise DataError(f"vote {c!r} must be a count >= 0, not {votes[i, k]}", path=path, row=i + 2)
        image = path.parent / str(row[lowered["file"]]).strip()
        if not image.is_file():
            raise DataError(f"image {image} not found", path=path, row=i + 2)
        paths.append(image)
    if not paths:
        raise DataError("no rows", path=path)
    keep, _ = _ferplus_keep(votes, columns)
    return LabelledImages(paths=[p for p, k in zip(paths, keep) if k],
                          votes=votes[keep][:, :len(FERPLUS_CATEGORIES)], dropped=int((~keep).sum()))


@dataclass
class FaceImageScores:
    """Scores of a face model on labelled images (images without a detected face are counted, not scored)."""

    source: Path
    model: str
    n_images: int
    n_scored: int
    dropped: int
    scores: dict[str, float]
    recall: dict[str, tuple[int, float]]  # category → (images, recall); classifier models only
    prediction: FacePrediction
    detected: bool = True  # faces found by the detector (False: --whole-image)

    def markdown(self) -> str:
        """The scores as Markdown tables."""
        from mmaffect.training.evaluate import markdown_table

        head = (f"{self.source}: {self.model} on {self.n_images} labelled images, {self.n_scored} with a face "
                f"scored ({self.n_images - self.n_scored} without a face" +
                (f"; {self.dropped} left out: majority unknown/NF" if self.dropped else "") + ")\n\n")
        keys = [k for k in ("accuracy", "ccc_arousal", "ccc_valence") if k in self.scores]
        text = head + markdown_table(["faces", *keys], [[self.n_scored, *(self.scores[k] for k in keys)]])
        if self.detected and self.n_scored < self.n_images / 2:
            text += ("\n\nmost images have no face the detector finds: if they are face crops already "
                     "(as FER+'s), score them with --whole-image")
        if self.recall:
            rows = [[c, n, r] for c, (n, r) in self.recall.items()]
            text += "\n\nper-category recall (images whose majority vote is the category)\n\n"
            text += markdown_table(["category", "images", "recall"], rows)
        return text


def evaluate_face_images(predictor: FacePredictor, source: str | Path, *, detect: bool = True) -> FaceImageScores:
    """Majority-vote accuracy, per-category recall (classifiers) and CCC of valence/arousal against the
    vote-weighted proxy on labelled images (:func:`read_labelled_images`), with the scoring of FER+
    pretraining (:func:`mmaffect.training.faces.score_face_probabilities`)."""
    from mmaffect.training.faces import FERPLUS_CATEGORIES, FaceSet, _proxy_points, score_face_probabilities
    from mmaffect.training.metrics import ccc

    labelled = read_labelled_images(source)
    pred = predictor.predict_images(labelled.paths, detect=detect, source=source)
    mask = pred.frame["face"].to_numpy().astype(bool)
    if not mask.any():
        raise DataError(f"no face found in any of the {len(mask)} images"
                        + ("" if not detect else " (if they are face crops already, use --whole-image)"),
                        path=source)
    counts = labelled.votes[mask]
    target = counts / counts.sum(axis=1, keepdims=True)
    top = counts == counts.max(axis=1, keepdims=True)
    gold = target @ _proxy_points()
    scores: dict[str, float]
    recall: dict[str, tuple[int, float]] = {}
    if predictor.classes:
        probs = pred.frame.loc[mask, list(FERPLUS_CATEGORIES)].to_numpy(dtype=np.float64)
        faces = FaceSet(images=np.zeros((int(mask.sum()), 1, 1), np.uint8), target=target.astype(np.float32),
                        top=top, proxy=gold, names=[str(p) for p in np.asarray(labelled.paths, object)[mask]],
                        dropped=labelled.dropped)
        scores = score_face_probabilities(probs, faces)
        hit = top[np.arange(len(probs)), probs.argmax(axis=1)]
        for k, c in enumerate(FERPLUS_CATEGORIES):
            rows = top[:, k]
            if rows.any():
                recall[c] = (int(rows.sum()), float(hit[rows].mean()))
    else:
        va = pred.frame.loc[mask, ["arousal", "valence"]].to_numpy(dtype=np.float64)
        scores = {"ccc_arousal": ccc(va[:, 0], gold[:, 0]), "ccc_valence": ccc(va[:, 1], gold[:, 1])}
    return FaceImageScores(source=Path(source), model=f"{predictor.model_name} ({predictor.source})",
                           n_images=len(mask), n_scored=int(mask.sum()), dropped=labelled.dropped,
                           scores=scores, recall=recall, prediction=pred, detected=detect)
