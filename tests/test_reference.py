"""The speaker reference of the audio features (model option ``audio_reference``, issue #12).

A model with ``audio_reference=R`` standardises its audio branch's features by their mean and
spread over R speech frames of the same recording: the network counterpart of z-scoring acoustic
features per speaker. Tested: the sampling of the reference frames, the normalisation itself, that
every audio and fusion model runs with it, that a model learns a level relative to the speaker's
own with it and cannot without it (end to end through ``train``), that with a prior of the
training speakers' statistics and windows that are their own yardstick in training
(``audio_reference_prior``, ``audio_reference_self``) it still reads a short recording in one state
by its level, and that ``evaluate``, ``predict`` and ``export`` handle such a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mmaffect.data.cache import Cache, write_stream
from mmaffect.data.dataset import (
    REFERENCE_KEYS,
    SessionWindows,
    collate,
    reference_candidates,
    reference_indices,
    reference_item,
)
from mmaffect.errors import ConfigError
from mmaffect.models import create_model, list_models
from mmaffect.models.assembly import ReferencePrior, reference_normalise
from mmaffect.models.base import Branch, BranchOutput
from mmaffect.models.layers import frame_presence, run_on_present
from mmaffect.models.registry import register_branch
from mmaffect.models.zoo import tiny_inputs, tiny_overrides

torch.set_num_threads(1)

LEVEL = "test-audio-log-level"
SAMPLES = 800  # per 0.1 s frame at 8 kHz, the smallest rate prepare takes


if LEVEL not in list_models():

    @register_branch(LEVEL, modality="audio", description="log RMS of the target half → linear (tests)")
    class LogLevel(Branch):
        """Per frame: the log RMS of the target speaker's half of the interlocutor vector, then a linear map."""

        modality = "audio"

        def __init__(self, *, out_dim: int = 4) -> None:
            super().__init__()
            self.out_dim = out_dim
            self.proj = nn.Linear(1, out_dim)

        def frame_forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
            half = x[:, : x.shape[1] // 2]
            return self.proj(torch.log(half.square().mean(dim=1, keepdim=True) + 1e-8)), {}

        def forward(self, batch: dict) -> BranchOutput:
            audio = batch["audio"]
            present = frame_presence(batch, "audio_mask", tuple(audio.shape[:2]), audio.device)
            fn = lambda x: self.frame_forward(x, None)[0]  # noqa: E731
            return BranchOutput(run_on_present(fn, audio, present, self.out_dim), present, {})


# ----------------------------------------------------------------------------- sampling


def test_reference_indices_are_distinct_sorted_and_deterministic_without_rng() -> None:
    cand = np.arange(100, 200, 3)
    even = reference_indices(cand, 8)
    assert len(even) == 8 and even[0] == cand[0] and even[-1] == cand[-1]
    assert np.array_equal(even, reference_indices(cand, 8))
    drawn = reference_indices(cand, 8, np.random.default_rng(1))
    assert len(set(drawn.tolist())) == 8 and np.all(np.diff(drawn) > 0) and set(drawn) <= set(cand)
    assert not np.array_equal(drawn, reference_indices(cand, 8, np.random.default_rng(2)))
    assert reference_indices(cand[:5], 8).tolist() == cand[:5].tolist()  # fewer than asked: all of them
    assert len(reference_indices(np.zeros(0, np.int64), 8)) == 0


def test_reference_item_puts_frames_in_the_target_half_and_masks_the_rest() -> None:
    frames = (np.arange(3 * 4).reshape(3, 4) * 1000).astype(np.int16)
    item = reference_item(frames, 5, 40)
    assert item["audio_ref"].shape == (5, 8) and item["audio_ref_mask"].tolist() == [True] * 3 + [False] * 2
    assert item["audio_ref_count"].tolist() == [40.0]
    assert torch.all(item["audio_ref"][:3, 4:] == 0) and torch.all(item["audio_ref"][3:] == 0)
    assert item["audio_ref"][2, 3] == pytest.approx(11000 / 32768, rel=1e-3)
    with pytest.raises(ValueError, match="4 reference frames for 3 places"):
        reference_item(np.zeros((4, 4), np.int16), 3, 4)
    with pytest.raises(ValueError, match="3 reference frames drawn from a recording of 2"):
        reference_item(np.zeros((3, 4), np.int16), 3, 2)


# ----------------------------------------------------------------------------- the normalisation


class _Identity(Branch):
    modality = "audio"
    out_dim = 3

    def forward(self, batch: dict) -> BranchOutput:
        x = batch["audio"][..., :3]
        present = frame_presence(batch, "audio_mask", tuple(x.shape[:2]), x.device)
        return BranchOutput(x * present.unsqueeze(-1), present, {})


def test_reference_normalise_standardises_by_the_reference_frames_only() -> None:
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 6, 3, generator=gen) * torch.tensor([2.0, 0.5, 3.0]) + torch.tensor([5.0, -1.0, 0.0])
    ref_mask = torch.ones(2, 6, dtype=torch.bool)
    ref_mask[1, 4:] = False  # padding rows of the reference are left out of its statistics
    ref[1, 4:] = 1e3
    window = torch.randn(2, 4, 3, generator=gen)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[0, 3] = False  # a frame without audio stays zero
    batch = {"audio": window, "audio_mask": mask, "audio_ref": ref, "audio_ref_mask": ref_mask}
    branch = _Identity()
    out = reference_normalise(branch, branch(batch), batch)
    for b, n in ((0, 6), (1, 4)):
        r = ref[b, :n]
        expect = (window[b] - r.mean(0)) / torch.sqrt(r.var(0, unbiased=False) + 1e-4)
        keep = mask[b].unsqueeze(-1)
        assert torch.allclose(out.features[b], expect * keep, atol=1e-5)
    assert torch.all(out.features[0, 3] == 0)
    # normalising the reference itself gives mean 0 and (almost) unit spread per feature
    self_batch = {"audio": ref[:1], "audio_mask": ref_mask[:1], "audio_ref": ref[:1], "audio_ref_mask": ref_mask[:1]}
    z = reference_normalise(branch, branch(self_batch), self_batch).features[0]
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(3), atol=1e-3)


def test_reference_without_speech_leaves_features_and_a_missing_reference_is_refused() -> None:
    window = torch.randn(1, 4, 3)
    batch = {"audio": window, "audio_ref": torch.randn(1, 5, 3),
             "audio_ref_mask": torch.tensor([[True, False, False, False, False]])}  # one frame: no spread
    branch = _Identity()
    assert torch.allclose(reference_normalise(branch, branch(batch), batch).features, window)
    with pytest.raises(ConfigError, match="no audio_ref"):
        reference_normalise(branch, branch({"audio": window}), {"audio": window})


def _normalise_batch(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ref = torch.randn(3, 6, 3, generator=gen) * 2.0 + 4.0
    window = torch.randn(3, 5, 3, generator=gen)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[2, 1:] = False  # one frame only: too few for statistics of its own
    return {"audio": window, "audio_mask": mask, "audio_ref": ref, "audio_ref_mask": torch.ones(3, 6, dtype=torch.bool)}


def test_the_prior_weighs_a_recording_by_its_speech_frames_and_learns_the_population() -> None:
    gen = torch.Generator().manual_seed(2)
    prior = ReferencePrior(dim=3, frames=100)
    assert int(prior.batches) == 0
    # training batches: recordings with their own offsets; the prior takes the population's statistics
    for _ in range(150):
        offsets = torch.randn(8, 1, 3, generator=gen) * 2.0 + 1.0
        feats = offsets + torch.randn(8, 50, 3, generator=gen)
        mu, var = feats.mean(1), feats.var(1, unbiased=False)
        prior.update(mu, var, torch.ones(8, dtype=torch.bool))
    assert torch.allclose(prior.mean, torch.full((3,), 1.0), atol=0.4)
    assert torch.allclose(prior.var, torch.full((3,), 5.0), atol=1.2)  # 1 within + 4 between
    # a long recording is (mostly) its own yardstick, a short one (mostly) the population's
    mu, var = torch.full((2, 3), 5.0), torch.full((2, 3), 0.5)
    m, v = prior.shrink(mu, var, torch.tensor([[900.0], [0.0]]))
    assert torch.allclose(m[0], 0.9 * mu[0] + 0.1 * prior.mean) and torch.allclose(m[1], prior.mean)
    assert torch.allclose(v[1], prior.var)
    w = 0.9  # the variance of the mixture of the two
    expect = w * (0.5 + (5.0 - m[0]) ** 2) + (1 - w) * (prior.var + (prior.mean - m[0]) ** 2)
    assert torch.allclose(v[0], expect)


def test_reference_normalise_with_a_prior_uses_the_count_and_updates_in_training_only() -> None:
    batch = _normalise_batch()
    branch = _Identity()
    prior = ReferencePrior(dim=3, frames=10)
    with pytest.raises(ConfigError, match="no audio_ref_count"):
        reference_normalise(branch, branch(batch), batch, prior=prior)
    batch["audio_ref_count"] = torch.tensor([[1e9], [0.0], [10.0]])
    out = reference_normalise(branch, branch(batch), batch, prior=prior).features
    assert int(prior.batches) == 0  # evaluation leaves the prior alone
    plain = reference_normalise(branch, branch(batch), batch).features
    assert torch.allclose(out[0], plain[0], atol=1e-4)  # a recording of endless speech: its own yardstick
    keep = batch["audio_mask"][1].unsqueeze(-1)
    assert torch.allclose(out[1], batch["audio"][1] / np.sqrt(1 + 1e-4) * keep, atol=1e-5)  # none: the prior
    reference_normalise(branch, branch(batch), batch, prior=prior, training=True)
    assert int(prior.batches) == 1
    ref = batch["audio_ref"]
    assert torch.allclose(prior.mean, ref.mean((0, 1)), atol=1e-5)


def test_self_reference_is_the_windows_own_frames_in_training_only() -> None:
    batch = _normalise_batch(1)
    branch = _Identity()
    plain = reference_normalise(branch, branch(batch), batch).features
    torch.manual_seed(0)
    own = reference_normalise(branch, branch(batch), batch, self_reference=1 - 1e-9, training=True).features
    for b in (0, 1):  # each window standardised by its own frames
        w = batch["audio"][b]
        assert torch.allclose(own[b], (w - w.mean(0)) / torch.sqrt(w.var(0, unbiased=False) + 1e-4), atol=1e-5)
    assert torch.allclose(own[2], plain[2])  # one present frame: the recording's reference stays
    evaluated = reference_normalise(branch, branch(batch), batch, self_reference=0.9, training=False).features
    assert torch.equal(evaluated, plain)
    torch.manual_seed(0)
    some = torch.stack([reference_normalise(branch, branch(batch), batch, self_reference=0.3, training=True)
                        .features[0] for _ in range(200)])
    share = (~torch.isclose(some, plain[0], atol=1e-5)).flatten(1).any(1).float().mean()
    assert 0.2 < share < 0.4  # about p of the draws


def test_reference_gives_no_gradient_and_leaves_the_branch_mode() -> None:
    model = create_model("audio-li2019", **tiny_overrides("audio-li2019"), audio_reference=4)
    model.train()
    b, t, r, n = 2, 3, 4, 4410
    batch = {"audio": torch.randn(b, t, n) * 0.1, "audio_mask": torch.ones(b, t, dtype=torch.bool),
             "mask": torch.ones(b, t, dtype=torch.bool), "audio_ref": (torch.randn(b, r, n) * 0.1).requires_grad_(),
             "audio_ref_mask": torch.ones(b, r, dtype=torch.bool)}
    model(batch).pred.sum().backward()
    assert batch["audio_ref"].grad is None and model.training and model.branch.training


AUDIO_MODELS = [n for n in list_models() if n.startswith("audio-")] + ["fusion-concat", "fusion-hierarchical"]


@pytest.mark.parametrize("prior", [0, 300])
@pytest.mark.parametrize("name", AUDIO_MODELS)
def test_every_audio_and_fusion_model_runs_forward_and_backward_with_a_reference(name: str, prior: int) -> None:
    opts = tiny_overrides(name)
    sizes = tiny_inputs(name)
    torch.manual_seed(0)
    model = create_model(name, **opts, audio_reference=3, audio_reference_prior=prior, audio_reference_self=0.5)
    assert model.audio_reference == 3
    b, t = 2, 4
    n = sizes["frame_samples"]
    batch = {"mask": torch.ones(b, t, dtype=torch.bool), "audio": torch.randn(b, t, n) * 0.1,
             "audio_mask": torch.ones(b, t, dtype=torch.bool), "audio_ref": torch.randn(b, 3, n) * 0.1,
             "audio_ref_mask": torch.tensor([[True, True, True], [True, True, False]]),
             "audio_ref_count": torch.tensor([[30.0], [2.0]])}
    if "text" in sizes["modalities"]:
        batch["words"] = torch.randn(b, t, sizes["words"], sizes["embed_dim"])
        batch["word_mask"] = torch.ones(b, t, sizes["words"], dtype=torch.bool)
    if "visual" in sizes["modalities"]:
        s = sizes["image_size"]
        batch["faces"] = torch.rand(b, t, 3, s, s)
        batch["face_mask"] = torch.ones(b, t, dtype=torch.bool)
    out = model(batch)
    assert out.pred.shape == (b, t, 2) and torch.isfinite(out.pred).all()
    out.pred.sum().backward()
    with pytest.raises(ConfigError, match="no audio_ref"):
        model({k: v for k, v in batch.items() if k not in REFERENCE_KEYS})


def test_audio_reference_option_is_checked() -> None:
    with pytest.raises(ConfigError, match="audio_reference must be >= 0"):
        create_model("audio-li2019", **tiny_overrides("audio-li2019"), audio_reference=-1)
    with pytest.raises(ConfigError, match="has no option"):
        create_model("text-paper", **tiny_overrides("text-paper"), audio_reference=4)
    with pytest.raises(ConfigError, match="audio_reference_prior must be >= 0"):
        create_model("audio-li2019", **tiny_overrides("audio-li2019"), audio_reference=4, audio_reference_prior=-1)
    with pytest.raises(ConfigError, match=r"audio_reference_self must be in \[0, 1\)"):
        create_model("audio-li2019", **tiny_overrides("audio-li2019"), audio_reference=4, audio_reference_self=1.0)
    with pytest.raises(ConfigError, match="need audio_reference > 0"):
        create_model("audio-li2019", **tiny_overrides("audio-li2019"), audio_reference_prior=300)
    fused = create_model("fusion-concat", **tiny_overrides("fusion-concat"), audio_reference=4,
                         audio_reference_prior=300, audio_reference_self=0.3)
    assert isinstance(fused.reference_prior, ReferencePrior) and fused.audio_reference_self == 0.3
    assert {"reference_prior.mean", "reference_prior.var"} <= set(fused.state_dict())
    plain = create_model("audio-li2019", **tiny_overrides("audio-li2019"), audio_reference=4)
    assert plain.reference_prior is None and not any("reference_prior" in k for k in plain.state_dict())


# ----------------------------------------------------------------------------- data path and learning


def speaker_cache(root: Path, *, seed: int = 0, n_frames: int = 120, speaker_db: float = 16.0,
                  states: bool = False) -> Path:
    """Sessions = speakers, each at its own loudness (± ``speaker_db``) and with 20 % of frames silent;
    arousal = the frame's level relative to the speaker's own mean level, valence = −0.5 × that + 0.1.
    With ``states``, each recording also has a state of its own (uniform in ±1, held throughout), and
    arousal = (state + relative level) / 2 sets the level: a speaker who stays calm or excited."""
    from mmaffect.preprocess.pipeline import default_prepare_config

    cfg = default_prepare_config()
    # 8 kHz keeps the frames small; no loudness normalisation (it is what the reference replaces here)
    cfg["audio"].update(frame_samples=SAMPLES, sample_rate=10 * SAMPLES, loudness=None, vad="energy")
    if states:  # a calm speaker is quiet: speech down to -60 dBFS
        cfg["audio"]["vad_db"] = -60.0
    rng = np.random.default_rng(seed)
    sessions = {}
    for part, n in (("train", 8), ("devel", 4)):
        for i in range(n):
            name = f"{part.capitalize()}_{i + 1:02d}"
            gain_db = rng.uniform(-speaker_db, speaker_db)
            rel = np.tanh(np.convolve(rng.normal(0, 0.6, n_frames), np.ones(5) / 2.5, mode="same"))
            if states:
                rel = (rng.uniform(-1, 1) + rel) / 2
            amp = 0.02 * 10 ** ((gain_db + 8 * rel) / 20)
            wave = rng.normal(0, 1, (n_frames, SAMPLES)) * amp[:, None]
            speech = rng.random(n_frames) > 0.2
            times = np.arange(n_frames) / 10.0
            audio_path = root / name / "audio-k.h5"
            write_stream(audio_path, {"times": times, "audio": np.clip(wave * 32768, -32768, 32767).astype(np.int16),
                                      "audio_mask": speech, "audio_target": np.ones(n_frames, bool)})
            labels = np.stack([rel, -0.5 * rel + 0.1, np.zeros(n_frames)], 1).astype(np.float32)
            label_path = root / name / "labels-k.h5"
            write_stream(label_path, {"times": times, "labels": labels,
                                      "label_names": np.array(["arousal", "valence", "liking"], dtype=object)})
            sessions[name] = {"partition": part, "n_frames": n_frames, "report": {},
                              "streams": {"labels": str(label_path.relative_to(root)),
                                          "audio": str(audio_path.relative_to(root)), "faces": None, "text": None}}
    Cache(root).write_manifest({"format_version": 1, "config": cfg, "sessions": sessions})
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speaker_cache(tmp_path_factory.mktemp("refcache"))


def test_dataset_draws_reference_frames_of_the_speakers_own_speech(cache: Path) -> None:
    from mmaffect.data.cache import read_stream

    sessions = Cache(cache).sessions(partitions=["train"])
    train = SessionWindows(sessions, modalities=("audio",), window=20, seed=0, audio_frame=SAMPLES,
                           audio_reference=16)
    whole = SessionWindows(sessions, modalities=("audio",), window=None, audio_frame=SAMPLES, audio_reference=16)
    item = train[0]
    assert item["audio_ref"].shape == (16, 2 * SAMPLES) and item["audio_ref_mask"].all()
    session = sessions[train.items[0][0]]
    stored = read_stream(session.streams["audio"])
    speech = np.flatnonzero(stored["audio_mask"])
    assert np.array_equal(reference_candidates(session), speech)
    assert item["audio_ref_count"].tolist() == [float(len(speech))]  # the recording's, not the reference's
    assert whole[0]["audio_ref_count"].tolist() == [float(len(reference_candidates(sessions[0])))]
    # every reference row is one of the session's speech frames, in the target half
    frames = stored["audio"].astype(np.float32) / 32768
    ref = item["audio_ref"][:, :SAMPLES].numpy()
    assert all(np.any(np.all(np.isclose(frames[speech], row, atol=1e-6), axis=1)) for row in ref)
    assert torch.all(item["audio_ref"][:, SAMPLES:] == 0)
    # training draws anew per epoch; whole recordings take the same evenly spaced frames every time
    train.set_epoch(1)
    assert not torch.equal(train[0]["audio_ref"], item["audio_ref"])
    assert torch.equal(whole[0]["audio_ref"], whole[0]["audio_ref"])
    batch = collate([whole[0], whole[1]])
    assert batch["audio_ref"].shape == (2, 16, 2 * SAMPLES) and batch["audio"].shape[1] == 120
    assert batch["audio_ref_count"].shape == (2, 1)


def test_augmentation_puts_the_reference_through_the_windows_channel(cache: Path) -> None:
    from mmaffect.training.augment_audio import AudioAugment, AudioAugmentConfig

    sessions = Cache(cache).sessions(partitions=["train"])
    kw = {"modalities": ("audio",), "window": 20, "seed": 3, "audio_frame": SAMPLES, "audio_reference": 16}
    clean = SessionWindows(sessions, **kw)
    # a gain drawn per item: the window and its yardstick get the same one, each item its own
    gained = SessionWindows(sessions, **kw, audio_augment=lambda x, rng: x * rng.uniform(0.1, 0.9))
    gains = []
    for idx in range(4):
        a, b = clean[idx], gained[idx]
        speech = a["audio_mask"]
        g_win = (b["audio"][speech].norm() / a["audio"][speech].norm()).item()
        g_ref = (b["audio_ref"].norm() / a["audio_ref"].norm()).item()
        assert g_win == pytest.approx(g_ref, rel=0.01) and 0.1 <= g_ref <= 0.9
        gains.append(g_ref)
    assert len({round(g, 3) for g in gains}) == 4
    # the real chain (here: its random gain and band limit only) draws the same for both
    cfg = AudioAugmentConfig.from_mapping({"enabled": True, "p_room": 0, "p_noise": 0, "p_eq": 0, "p_gain": 1.0,
                                           "p_band": 0, "p_codec": 0, "gain_db": 12.0})
    chain = SessionWindows(sessions, **kw, audio_augment=AudioAugment(config=cfg, sample_rate=10 * SAMPLES))
    a, b = clean[1], chain[1]
    speech = a["audio_mask"]
    g_win = (b["audio"][speech].norm() / a["audio"][speech].norm()).item()
    assert g_win != pytest.approx(1.0, abs=0.02)
    assert (b["audio_ref"].norm() / a["audio_ref"].norm()).item() == pytest.approx(g_win, rel=0.02)


def _train(cache: Path, out: Path, reference: int, *extra: str) -> dict:
    from mmaffect.training.trainer import load_train_config, train

    cfg = load_train_config({"model_name": LEVEL}, [
        f"data.cache={cache}", "data.window=20", "optim.batch_size=8", "optim.epochs=6", "optim.lr=0.02",
        "log.plot=false", "log.progress=false", "model_options.head_hidden=8", "model_options.head_dropout=0.0",
        f"model_options.audio_reference={reference}", *extra])
    return train(cfg, out=out, progress=False).history[-1]


def test_with_a_reference_the_model_hears_the_level_relative_to_the_speaker(cache: Path, tmp_path: Path) -> None:
    with_ref = _train(cache, tmp_path / "ref", 24)
    without = _train(cache, tmp_path / "plain", 0)
    # the speakers' own loudness (±16 dB) hides the relative level (±8 dB) from the plain model
    assert with_ref["dev_mean"] > 0.75, with_ref
    assert with_ref["dev_mean"] > without["dev_mean"] + 0.25, (with_ref, without)


def _one_state_clip(path: Path, level: float, seed: int) -> Path:
    """4 s at one ``level`` (the arousal of :func:`speaker_cache`, no speaker gain) throughout: noise
    bursts whose level wavers by ±0.1 around it, with a pause of 0.1 s in every 0.5 s."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    frames = level + rng.uniform(-0.1, 0.1, 40)
    amp = 0.02 * 10 ** (8 * frames / 20) * (np.arange(40) % 5 != 4)
    wave = rng.normal(0, 1, (40, SAMPLES)) * amp[:, None]
    sf.write(path, wave.ravel().astype(np.float32), 10 * SAMPLES)
    return path


def test_with_a_prior_a_short_recording_in_one_state_is_read_by_its_level(tmp_path: Path) -> None:
    import mmaffect

    cache = speaker_cache(tmp_path / "cache", seed=1, speaker_db=2.0, states=True)
    quiet = _one_state_clip(tmp_path / "quiet.wav", -0.8, 1)
    loud = _one_state_clip(tmp_path / "loud.wav", 0.8, 2)
    gaps = {}
    for name, extra in (("standardise", ()), ("prior", ("model_options.audio_reference_prior=200",
                                                         "model_options.audio_reference_self=0.5"))):
        torch.manual_seed(0)
        _train(cache, tmp_path / name, 24, *extra)
        model = mmaffect.load(tmp_path / name / "best.pt")
        a, b = (model.predict(audio=clip)["arousal"].mean() for clip in (quiet, loud))
        gaps[name] = b - a
    # a clip is its own yardstick: standardised alone, a calm and an excited clip read the same;
    # 4 s of speech weigh little against the prior of 20 s, so the level is read
    assert abs(gaps["standardise"]) < 0.25, gaps
    assert gaps["prior"] > 0.6, gaps


def test_evaluate_predict_and_export_with_a_reference(cache: Path, tmp_path: Path) -> None:
    import soundfile as sf

    import mmaffect
    from mmaffect.inference.export import export_onnx
    from mmaffect.training.evaluate import evaluate_checkpoint

    _train(cache, tmp_path / "run", 24)
    report = evaluate_checkpoint(tmp_path / "run" / "best.pt", partitions=["devel"])
    assert report.scores["devel"]["mean"] > 0.75
    # predict on a wav: a quiet speaker, then the same speech 20 dB louder: the reference takes the
    # speaker's level away, so the two traces agree
    rng = np.random.default_rng(5)
    rel = np.repeat(np.tanh(rng.normal(0, 0.8, 40)), SAMPLES)
    wave = rng.normal(0, 1, len(rel)) * 0.03 * 10 ** (8 * rel / 20)
    quiet, loud = tmp_path / "quiet.wav", tmp_path / "loud.wav"
    sf.write(quiet, wave.astype(np.float32), 10 * SAMPLES)
    sf.write(loud, (wave * 10).astype(np.float32), 10 * SAMPLES)
    model = mmaffect.load(tmp_path / "run" / "best.pt")
    full = model.predict_full(audio=quiet)
    assert full.report["audio_reference"] == {"frames": 24, "asked": 24, "speech_frames": 40}
    a = full.frame
    b = model.predict(audio=loud)
    both = a["arousal"].notna() & b["arousal"].notna()
    assert both.sum() > 20
    assert np.abs(a["arousal"][both] - b["arousal"][both]).max() < 0.1
    assert a["arousal"][both].std() > 0.1  # and it still follows the level within the recording
    with pytest.raises(ConfigError, match="audio_reference=24"):
        export_onnx(tmp_path / "run" / "best.pt", tmp_path / "onnx", verify=False)


def test_audio_frames_reference_reads_speech_frames_and_keeps_the_counts(tmp_path: Path) -> None:
    import soundfile as sf

    from mmaffect.preprocess.pipeline import default_prepare_config
    from mmaffect.preprocess.stream import AudioFrames

    sr = 22050
    t = np.arange(int(3.0 * sr)) / sr
    wave = np.where((t > 1.0) & (t < 2.0), 0.3 * np.sin(2 * np.pi * 220 * t), 0.0).astype(np.float32)
    sf.write(tmp_path / "x.wav", wave, sr)
    audio = {**default_prepare_config()["audio"], "vad": "energy", "loudness": None}
    times = np.arange(29) / 10.0
    with AudioFrames(tmp_path / "x.wav", times=times, audio=audio) as frames:
        ref, count = frames.reference(4, None)
        assert frames.counts["n_read"] == 0  # the reference pass does not count as the recording read
        heard = frames.all(None)
        speech = np.flatnonzero(heard["audio_mask"] & heard["audio_target"])
        assert len(speech) >= 8 and ref.shape == (4, audio["frame_samples"]) and count == len(speech)
        expect = heard["audio"][reference_indices(speech, 4)]
        assert np.array_equal(ref, expect) and np.abs(ref).max() > 0  # speech frames, not silence


def test_train_with_audio_augmentation_and_a_reference(cache: Path, tmp_path: Path) -> None:
    from mmaffect.training.trainer import load_train_config, train

    cfg = load_train_config({"model_name": LEVEL}, [
        f"data.cache={cache}", "data.window=20", "optim.epochs=1", "log.plot=false", "log.progress=false",
        "model_options.audio_reference=8", "model_options.audio_reference_prior=100", "augment.audio.enabled=true",
        "augment.audio.p_codec=0", "augment.audio.p_eq=0"])  # 8-kHz audio: no room for the EQ's top bands
    history = train(cfg, out=tmp_path / "run", progress=False).history
    assert len(history) == 1 and np.isfinite(history[0]["dev_mean"])
    cfg["augment"]["audio"]["p_eq"] = 0.5
    with pytest.raises(ConfigError, match="p_eq needs audio at ≥ 19000 Hz"):
        train(cfg, out=tmp_path / "eq", progress=False)
