"""Modality branches: shapes, finite gradients, masking, and the fast audio network's equivalence."""

from __future__ import annotations

import pytest
import torch

from mmaffect.models.audio import Li2019, Trigeorgis2016, Tzirakis2018, Tzirakis2018Reference, _plan_half_crops
from mmaffect.models.base import Branch, BranchOutput
from mmaffect.models.cnn_baselines import VGG16, DenseNet121, MobileNetV1, ResNet50
from mmaffect.models.layers import masked_softmax
from mmaffect.models.text import TextNetwork
from mmaffect.models.visual import HRNetAttPool

B, T, L, D, S = 2, 3, 5, 16, 32


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_num_threads(1)


def _check(branch: Branch, batch: dict, out: BranchOutput) -> None:
    assert out.features.shape == (B, T, branch.out_dim)
    assert out.present.shape == (B, T) and out.present.dtype == torch.bool
    assert torch.isfinite(out.features).all()
    assert (out.features[~out.present] == 0).all()
    out.features.square().sum().backward()
    grads = [p.grad for p in branch.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def _text_batch() -> dict:
    words = torch.randn(B, T, L, D)
    mask = torch.zeros(B, T, L, dtype=torch.bool)
    mask[0, 0, :3] = True
    mask[0, 2, [0, 2, 4]] = True  # real words need not be a prefix
    mask[1, 0, :5] = True
    mask[1, 1, :5] = True
    words[1, 1] = words[1, 0]  # a repeated turn (deduplicated)
    return {"words": words, "word_mask": mask}


def _small_text() -> TextNetwork:
    return TextNetwork(embed_dim=D, ngram_filters=4, proj_dim=12, lstm_hidden=6)


def test_masked_softmax_zero_on_padding_and_empty_rows():
    scores = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 1]], dtype=torch.bool)
    w = masked_softmax(scores, mask)
    assert (w[~mask] == 0).all() and torch.allclose(w.sum(-1), torch.tensor([1.0, 0.0, 1.0]))
    w.sum().backward()
    assert torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_text_network(activation):
    net = TextNetwork(embed_dim=D, ngram_filters=4, proj_dim=12, lstm_hidden=6, highway_activation=activation)
    batch = _text_batch()
    out = net(batch)
    assert net.out_dim == 2 * 2 * 6
    assert out.present.tolist() == [[True, False, True], [True, True, False]]
    sel = out.attention["selector"]
    assert sel.shape == (B, T, 2, L)
    mask = batch["word_mask"].unsqueeze(2).expand_as(sel)
    assert (sel[~mask] == 0).all()
    assert torch.allclose(sel.sum(-1)[out.present], torch.ones(4, 2))
    assert (sel[~out.present] == 0).all()
    _check(net, batch, out)


def test_text_dedupe_and_compaction_match_plain_computation():
    net = _small_text().eval()
    batch = _text_batch()
    fast = net(batch)
    net.dedupe = False
    plain = net(batch)
    assert torch.allclose(fast.features, plain.features, atol=1e-6)
    # Moving the padding around a frame's words does not change the result.
    words, mask = batch["words"].clone(), batch["word_mask"].clone()
    words[0, 0, [1, 3, 4]] = words[0, 0, :3].clone()
    mask[0, 0] = torch.tensor([False, True, False, True, True])
    moved = net({"words": words, "word_mask": mask})
    assert torch.allclose(moved.features[0, 0], plain.features[0, 0], atol=1e-6)
    assert torch.allclose(moved.attention["selector"][0, 0, :, [1, 3, 4]], plain.attention["selector"][0, 0, :, :3])


def test_text_all_frames_empty_is_finite():
    net = _small_text()
    words = torch.randn(B, T, L, D, requires_grad=True)
    out = net({"words": words, "word_mask": torch.zeros(B, T, L, dtype=torch.bool)})
    assert not out.present.any()
    assert (out.features == 0).all() and (out.attention["selector"] == 0).all()
    (out.features.sum() + 0 * words.sum()).backward()
    assert torch.isfinite(words.grad).all()


def _audio(frames: int = 4410) -> torch.Tensor:
    x = torch.randn(B, T, frames) * 0.3
    half = frames // 2
    x[0, :, half:] = 0  # target speaks: signal in the first half
    x[1, :2, :half] = 0  # partner: second half
    x[1, 2] = 0  # silence
    return x


@pytest.mark.parametrize("cls", [Tzirakis2018, Tzirakis2018Reference, Trigeorgis2016, Li2019])
def test_audio_branches(cls):
    net = cls()
    batch = {"audio": _audio(), "mask": torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)}
    out = net(batch)
    assert out.present.tolist() == [[True, True, True], [True, True, False]]
    _check(net, batch, out)


def test_li2019_mel_band_limits():
    net = Li2019(f_min=300.0, f_max=3400.0)
    freqs = torch.linspace(0, 22050 / 2, net.mel.shape[0])
    used = net.mel.sum(1) > 0
    assert freqs[used].min() > 250 and freqs[used].max() < 3450  # only the voice band reaches the network
    # what lies above the band does not change what the network sees of a voice-band sound
    t = torch.arange(2205) / 22050
    voice = 0.3 * torch.sin(2 * torch.pi * 1000 * t)[None]
    high = 0.3 * torch.sin(2 * torch.pi * 6000 * t)[None]
    peak = net.log_mel(voice)[0].amax(dim=-1)
    strong = peak > peak.max() - 3  # the bands the 1-kHz tone fills (within a factor e^3 of its peak)
    assert (net.log_mel(voice + high) - net.log_mel(voice))[0, strong].abs().max() < 0.1
    full = Li2019()
    assert (full.log_mel(voice + high) - full.log_mel(voice)).abs().max() > 1.0  # the full band sees it
    with pytest.raises(ValueError):
        Li2019(f_min=4000.0, f_max=3400.0)


def test_tzirakis_crop_plan_matches_hand_derivation():
    plan = _plan_half_crops(4410, (8, 6, 6), (10, 5, 5))
    assert plan is not None and plan["n_out"] == 17
    start, end, needed = plan["first"]
    assert (start, end, list(needed)) == (0, 2680, list(range(10)))
    start, end, needed = plan["second"]
    assert (start, end, list(needed)) == (1750, 4410, list(range(8, 17)))


def test_tzirakis_fast_equals_reference():
    ref = Tzirakis2018Reference().eval()
    fast = Tzirakis2018().eval()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(10, 4410) * 0.5
    x[:4, 2205:] = 0
    x[4:8, :2205] = 0
    x[8] = 0  # silence; x[9] has both halves set (not an interlocutor vector: full path)
    x[0, 2204] = 3.0  # signal right at the boundary
    x[4, 2205] = -3.0
    with torch.no_grad():
        a, b = ref.frame_features(x), fast.frame_features(x)
    assert torch.allclose(a, b, atol=1e-5)
    # Gradients of the parameters agree too.
    for net in (ref, fast):
        net.frame_features(x).square().sum().backward()
    for (name, p), q in zip(ref.named_parameters(), fast.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-4 * p.grad.abs().max().item()), name


def test_tzirakis_fast_without_skip_equals_reference_in_training_mode():
    ref, fast = Tzirakis2018Reference(), Tzirakis2018(skip_zero_half=False)
    fast.load_state_dict(ref.state_dict())
    x = _audio()[0]
    torch.manual_seed(1)
    a = ref.frame_features(x)
    torch.manual_seed(1)
    b = fast.frame_features(x)
    assert torch.allclose(a, b, atol=1e-5)


def _faces(present) -> dict:
    return {"faces": torch.rand(B, T, 3, S, S), "face_mask": torch.tensor(present, dtype=torch.bool)}


@pytest.mark.parametrize("spatial_softmax", [False, True])
def test_hrnet_attention_pooling(spatial_softmax):
    net = HRNetAttPool(image_size=S, n_attention_classes=16, spatial_softmax=spatial_softmax)
    batch = _faces([[1, 0, 1], [1, 1, 0]])
    out = net(batch)
    assert out.present.tolist() == [[True, False, True], [True, True, False]]
    branches = out.attention["branches"]
    assert branches.shape == (B, T, 3)
    assert torch.allclose(branches.sum(-1)[out.present], torch.ones(4))
    assert (branches[~out.present] == 0).all()
    spatial = out.attention["spatial"]
    assert spatial.shape == (B, T, S // 4, S // 4)
    if spatial_softmax:
        assert torch.allclose(spatial.sum((-2, -1))[out.present], torch.ones(4), atol=1e-5)
    _check(net, batch, out)


def test_hrnet_mirror_average_reads_a_face_and_its_mirror_image_the_same():
    torch.manual_seed(0)
    net = HRNetAttPool(image_size=S, n_attention_classes=16, mirror_average=True).eval()
    batch = _faces([[1, 0, 1], [1, 1, 0]])
    mirror = {**batch, "faces": batch["faces"].flip(-1)}
    out, out_m = net(batch), net(mirror)
    assert torch.allclose(out.features, out_m.features, atol=1e-6)
    assert torch.allclose(out.attention["spatial"], out_m.attention["spatial"].flip(-1), atol=1e-6)
    # the same weights without it: the mean of the two views' features
    net.mirror_average = False
    plain, plain_m = net(batch), net(mirror)
    assert not torch.allclose(plain.features, plain_m.features, atol=1e-6)
    assert torch.allclose(out.features, (plain.features + plain_m.features) / 2, atol=1e-6)
    net.mirror_average = True
    net.train()
    _check(net, batch, net(batch))


def test_hrnet_inference_in_slices_gives_the_same_values(monkeypatch):
    import mmaffect.models.visual as visual

    torch.manual_seed(0)
    net = HRNetAttPool(image_size=S, n_attention_classes=16).eval()
    batch = _faces([[1, 0, 1], [1, 1, 0]])
    whole = net(batch)  # grad enabled: one pass
    monkeypatch.setattr(visual, "INFERENCE_FRAMES", 2)
    with torch.no_grad():
        sliced = net(batch)  # 4 faces, 2 at a time
    assert torch.allclose(whole.features, sliced.features, atol=1e-6)
    for key in ("spatial", "branches"):
        assert torch.allclose(whole.attention[key], sliced.attention[key], atol=1e-6)


def test_hrnet_no_face_at_all():
    net = HRNetAttPool(image_size=S, n_attention_classes=8)
    out = net(_faces([[0, 0, 0], [0, 0, 0]]))
    assert not out.present.any() and (out.features == 0).all()
    assert out.attention["spatial"].shape == (B, T, S // 4, S // 4)


@pytest.mark.parametrize(
    "cls, dim", [(VGG16, 512), (ResNet50, 2048), (DenseNet121, 1024), (MobileNetV1, 1024)]
)
def test_cnn_baselines(cls, dim):
    net = cls()
    assert net.out_dim == dim
    batch = _faces([[1, 0, 1], [0, 1, 0]])
    out = net(batch)
    assert out.present.tolist() == [[True, False, True], [False, True, False]]
    _check(net, batch, out)


@pytest.mark.parametrize("cls, head", [(ResNet50, "fc"), (DenseNet121, "classifier"), (MobileNetV1, "classifier")])
def test_baseline_loads_torchvision_style_state_dict(tmp_path, cls, head):
    src = cls()
    for p in src.parameters():
        torch.nn.init.normal_(p)
    state = dict(src.state_dict())
    state[f"{head}.weight"] = torch.zeros(1000, src.out_dim)  # the ImageNet classifier is ignored
    state[f"{head}.bias"] = torch.zeros(1000)
    if cls is DenseNet121:  # torchvision's legacy key style
        state["features.denseblock1.denselayer1.norm.1.weight"] = state.pop("features.denseblock1.denselayer1.norm1.weight")
    path = tmp_path / "weights.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    dst = cls(pretrained=str(path))
    for (name, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), name


def test_baseline_rejects_mismatched_weights(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(ValueError, match="missing"):
        MobileNetV1(pretrained=str(path))


def _run_twice(a: torch.nn.Module, b: torch.nn.Module, batch: dict, seed: int = 3):
    results = []
    for net in (a, b):
        torch.manual_seed(seed)  # same dropout masks in both runs
        out = net(batch)
        out.features.square().sum().backward()
        results.append((out, {n: p.grad for n, p in net.named_parameters()}, {n: t.clone() for n, t in net.state_dict().items()}))
    return results


@pytest.mark.parametrize("train", [False, True])
def test_hrnet_checkpointing_is_exact(train):
    import copy

    plain = HRNetAttPool(image_size=S, n_attention_classes=16, checkpoint=False).train(train)
    ckpt = copy.deepcopy(plain)
    ckpt.checkpoint = True
    (a, ga, sa), (b, gb, sb) = _run_twice(plain, ckpt, _faces([[1, 0, 1], [1, 1, 0]]))
    assert torch.equal(a.features, b.features)
    assert torch.equal(a.attention["spatial"], b.attention["spatial"])
    assert all(torch.equal(ga[n], gb[n]) for n in ga)
    # Batch-norm running statistics are updated once, not again in the recomputation.
    assert all(torch.equal(sa[n], sb[n]) for n in sa)


def test_text_checkpointing_is_exact():
    import copy

    plain = _small_text().train()
    ckpt = copy.deepcopy(plain)
    ckpt.checkpoint = True
    (a, ga, _), (b, gb, _) = _run_twice(plain, ckpt, _text_batch())
    assert torch.equal(a.features, b.features)
    assert all(torch.equal(ga[n], gb[n]) for n in ga)


# --------------------------------------------------------------------------- the declared contract, every branch

from mmaffect.models.registry import branch_specs  # noqa: E402
from mmaffect.models.summary import example_batch  # noqa: E402
from mmaffect.models.zoo import tiny_inputs  # noqa: E402

_INPUTS = {"text": ("words", "word_mask"), "audio": ("audio", "audio_mask"), "visual": ("faces", "face_mask")}


@pytest.mark.parametrize("name", [s.name for s in branch_specs()])
def test_frame_forward_equals_forward_on_present_frames(name):
    """Every registered branch's frame_forward (the traceable per-frame network) gives, in eval mode,
    what forward gives on the present frames, with the same attention names and shapes."""
    spec = next(s for s in branch_specs() if s.name == name)
    branch = spec.cls(**{**spec.options, **spec.tiny}).eval()
    sizes = tiny_inputs(name)
    batch = example_batch((spec.modality,), batch=2, frames=3, embed_dim=sizes["embed_dim"], words=sizes["words"],
                          image_size=sizes["image_size"], frame_samples=sizes["frame_samples"], padded=True, seed=2)
    x_key, mask_key = _INPUTS[spec.modality]
    batch.setdefault(mask_key, torch.ones(2, 3, dtype=torch.bool))
    batch[mask_key][0, 1] = False
    with torch.no_grad():
        ref = branch(dict(batch))
        x = batch[x_key].flatten(0, 1)
        frame = batch["mask"].reshape(-1, *([1] * (batch[mask_key].dim() - 2)))
        x_mask = batch[mask_key].flatten(0, 1) & frame
        feats, att = branch.frame_forward(x, x_mask)
    present = ref.present.reshape(-1)
    assert feats.shape == (6, branch.out_dim) and set(att) == set(ref.attention)
    torch.testing.assert_close(feats[present], ref.features.reshape(6, -1)[present], atol=1e-5, rtol=1e-4)
    declared = getattr(spec.cls, "ATTENTION_AXES", None)  # optional: named axes after (batch, time)
    if declared is not None:
        assert set(declared) == set(att) and all(len(declared[k]) == v.dim() - 1 for k, v in att.items())
    for k, v in att.items():
        assert v.shape[1:] == ref.attention[k].shape[2:], k
        torch.testing.assert_close(v[present], ref.attention[k].flatten(0, 1)[present], atol=1e-5, rtol=1e-4)
