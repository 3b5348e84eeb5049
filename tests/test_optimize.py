"""Speed-only changes of issue #14 item 5 compute the same function.

The optimised forms (conv–BN folding, channels-last weights, ONNX Runtime for
the face network, the attentional pooling in its cheap order, the audio
network's inference path without pooling indices) against the plain ones:
outputs in eval mode and, where the training path changed, gradients, equal to
float rounding, at tiny sizes.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from mmaffect.models import create_model, tiny_inputs, tiny_overrides
from mmaffect.models.audio import Tzirakis2018, Tzirakis2018Reference
from mmaffect.models.optimize import for_inference, for_training, fuse_conv_bn
from mmaffect.models.summary import example_batch
from mmaffect.models.visual import HRNetAttPool, upsampling_matrix

S = 32


def _tiny(name: str):
    torch.manual_seed(0)
    model = create_model(name, **tiny_overrides(name))
    sizes = tiny_inputs(name)
    from mmaffect.models.registry import get_spec

    batch = example_batch(get_spec(name).modalities, batch=2, frames=4, embed_dim=sizes["embed_dim"],
                          image_size=sizes["image_size"], words=sizes["words"], frame_samples=sizes["frame_samples"])
    return model, batch


def _train_bn_stats(model: torch.nn.Module, batch: dict) -> None:
    """A few training forwards so running statistics are not the trivial 0 / 1."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(batch)


def _contiguous(model: torch.nn.Module) -> torch.nn.Module:
    for p in model.parameters():
        p.data = p.data.contiguous()
    return model


@pytest.mark.parametrize("src, dst", [((12, 12), (24, 24)), ((6, 6), (24, 24)), ((3, 5), (12, 20)), ((7, 7), (24, 24))])
def test_upsampling_matrix_is_bilinear_interpolation(src, dst):
    x = torch.randn(2, 3, *src, dtype=torch.float64)
    ref = F.interpolate(x, size=dst, mode="bilinear", align_corners=False).flatten(2)
    got = x.flatten(2) @ upsampling_matrix(src, dst, dtype=torch.float64).t()
    assert torch.allclose(got, ref, atol=1e-12)


@pytest.mark.parametrize("spatial_softmax", [False, True])
@pytest.mark.parametrize("rank", [1, 2])
def test_attention_pool_equals_the_formula(spatial_softmax, rank):
    torch.manual_seed(0)
    net = HRNetAttPool(image_size=S, widths=(4, 8, 16), stem_channels=8, n_attention_classes=6,
                       attention_rank=rank, spatial_softmax=spatial_softmax, checkpoint=False).double().train()
    ref = copy.deepcopy(net)
    ref.attention_pool = ref.attention_pool_reference
    x = torch.rand(5, 3, S, S, dtype=torch.float64)
    outs, grads = [], []
    for model in (net, ref):
        torch.manual_seed(1)  # same dropout
        feats, sal, beta = model.frame_features(x)
        (feats.square().sum() + sal.sum()).backward()
        outs.append((feats, sal, beta))
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for a, b in zip(*outs):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], rtol=1e-8, atol=1e-12), n


def test_hrnet_channels_last_weights_are_the_same_network():
    torch.manual_seed(0)
    net = HRNetAttPool(image_size=S, widths=(4, 8, 16), stem_channels=8, n_attention_classes=6, checkpoint=False)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert not net.stem[1][0].weight.is_contiguous()
    net = net.double()  # float64: agreement to rounding is then tight
    assert net.stem[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = _contiguous(copy.deepcopy(net))
    assert plain.stem[1][0].weight.is_contiguous()
    x = torch.rand(6, 3, S, S, dtype=torch.float64)
    for train in (False, True):
        results = []
        for model in (net, plain):
            model.train(train)
            model.zero_grad()
            torch.manual_seed(2)
            feats = model.frame_features(x)[0]
            feats.square().sum().backward()
            results.append((feats, {n: p.grad.clone() for n, p in model.named_parameters()},
                            {n: b.clone() for n, b in model.state_dict().items()}))
        (fa, ga, sa), (fb, gb, sb) = results
        assert torch.allclose(fa, fb, rtol=1e-9, atol=1e-10)
        for n in ga:
            assert torch.allclose(ga[n], gb[n], rtol=1e-8, atol=1e-10), n
        for n in sa:
            assert torch.allclose(sa[n].double(), sb[n].double(), rtol=1e-9, atol=1e-10), n
    # A state dict holds the same values and loads into a plain (NCHW) copy.
    fresh = _contiguous(HRNetAttPool(image_size=S, widths=(4, 8, 16), stem_channels=8, n_attention_classes=6).double())
    fresh.load_state_dict(net.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), net.state_dict().values()))


@pytest.mark.parametrize("name", ["visual-hrnet3-attpool", "audio-tzirakis2018", "fusion-hierarchical"])
def test_for_inference_same_outputs(name):
    model, batch = _tiny(name)
    _train_bn_stats(model, batch)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = for_inference(model)
    assert not fast.training
    with torch.inference_mode():
        ref, got = model(batch), fast(batch)
    assert torch.allclose(ref.pred, got.pred, rtol=1e-4, atol=1e-5)
    assert set(ref.attention) == set(got.attention)
    for k in ref.attention:
        assert torch.allclose(ref.attention[k], got.attention[k], rtol=1e-4, atol=1e-5), k
    # The original is untouched (a copy was optimised).
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    if name != "audio-tzirakis2018":
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())


def test_fuse_conv_bn_needs_eval_mode_and_counts_pairs():
    net = HRNetAttPool(image_size=S, widths=(4, 8, 16), stem_channels=8, n_attention_classes=6)
    with pytest.raises(ValueError, match="eval"):
        fuse_conv_bn(net.train())
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert fuse_conv_bn(net.eval()) == n_bn


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")
def test_for_inference_onnxruntime_same_outputs():
    model, batch = _tiny("visual-hrnet3-attpool")
    _train_bn_stats(model, batch)
    model.eval()
    fast = for_inference(model, onnxruntime=True)
    with torch.inference_mode():
        ref, got = model(batch), fast(batch)
        assert torch.allclose(ref.pred, got.pred, rtol=1e-4, atol=1e-5)
        for k in ref.attention:
            assert torch.allclose(ref.attention[k], got.attention[k], rtol=1e-4, atol=1e-5), k
        # Another image size falls back to PyTorch; no face at all works.
        branch = fast.branch
        x = torch.rand(2, 3, S + 16, S + 16)
        assert torch.allclose(branch.frame_features(x)[0], type(branch).frame_features(branch, x)[0], atol=1e-6)
        batch["face_mask"][:] = False
        assert (fast(batch).attention["visual.branches"] == 0).all()


def test_for_training_same_gradients():
    model, batch = _tiny("visual-hrnet3-attpool")
    model = model.double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    plain = _contiguous(copy.deepcopy(model))
    fast = for_training(copy.deepcopy(model))
    assert fast.branch.stem[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    grads = []
    for m in (plain, fast):
        m.train()
        torch.manual_seed(3)
        m(batch).pred.square().sum().backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], rtol=1e-8, atol=1e-10), n


def test_audio_inference_path_is_the_fused_layer():
    torch.manual_seed(0)
    net = Tzirakis2018(channels=(8, 12, 16)).eval()
    x = example_batch(["audio"], batch=2, frames=6)["audio"].flatten(0, 1)
    x[0, :] = 0.3  # one frame with both halves non-zero: the full path
    with torch.no_grad():
        fast = net.frame_features(x)
    graded = net.frame_features(x)  # parameters require grad: the fused autograd layer
    assert graded.requires_grad and torch.equal(fast, graded.detach())
    ref = Tzirakis2018Reference(channels=(8, 12, 16)).eval()
    ref.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.allclose(ref.frame_features(x), fast, atol=1e-6)


def test_side_by_side_benchmark_skips_without_end2you(tmp_path, capsys):
    """benchmarks/bench_side_by_side.py says so and exits 0 when End2You's code is absent (nothing is timed here)."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_side_by_side.py"
    spec = importlib.util.spec_from_file_location("bench_side_by_side", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--e2y-root", str(tmp_path / "absent"), "--quick"]) == 0
    assert "End2You's model code not found" in capsys.readouterr().out
