"""Assembled networks: temporal head, unimodal/multimodal models, registry variants."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmaffect.errors import ConfigError
from mmaffect.models import create_model, get_spec, list_models, tiny_overrides
from mmaffect.checkpoints import load_branch_weights
from mmaffect.models.assembly import MultimodalModel, UnimodalModel
from mmaffect.models.base import Branch, BranchOutput
from mmaffect.models.fusion import FUSIONS
from mmaffect.models.summary import count_flops, example_batch, model_table
from mmaffect.models.temporal import TemporalHead
from mmaffect.models.zoo import tiny_inputs


class StandIn(Branch):
    """A linear layer over a per-frame input, present where ``mask_key`` says so."""

    def __init__(self, *, modality: str, key: str, mask_key: str | None, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.modality, self.key, self.mask_key, self.out_dim = modality, key, mask_key, out_dim
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, batch):
        x = batch[self.key].flatten(2)
        present = batch[self.mask_key] if self.mask_key else torch.ones(x.shape[:2], dtype=torch.bool)
        if present.dim() == 3:
            present = present.any(-1)
        feats = torch.tanh(self.linear(x))
        return BranchOutput(feats, present, {"score": feats[..., 0]})


def _stand_ins():
    return {
        "text": StandIn(modality="text", key="words", mask_key="word_mask", in_dim=4 * 6, out_dim=5),
        "audio": StandIn(modality="audio", key="audio", mask_key=None, in_dim=10, out_dim=3),
        "visual": StandIn(modality="visual", key="faces", mask_key="face_mask", in_dim=3 * 4 * 4, out_dim=4),
    }


def _small_batch(frames=6, padded=True):
    return example_batch(batch=2, frames=frames, embed_dim=6, words=4, image_size=4, frame_samples=10,
                         padded=padded, seed=1)


def _chunk(batch, start, stop):
    return {k: v[:, start:stop] for k, v in batch.items()}


def test_head_state_carry_matches_one_pass():
    torch.manual_seed(0)
    head = TemporalHead(in_dim=3, hidden=5, layers=2, dropout=0.5).eval()
    x = torch.randn(2, 7, 3)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False  # trailing padding in the second chunk
    full, (h, c) = head(x, mask)
    first, state = head(x[:, :4], mask[:, :4])
    second, state2 = head(x[:, 4:], mask[:, 4:], state)
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-6)
    assert torch.allclose(state2[0], h, atol=1e-6) and torch.allclose(state2[1], c, atol=1e-6)
    assert (full[1, 5:] == 0).all() and full.shape == (2, 7, 2)
    # The state after the padded chunk is the state after the last real frame.
    _, ref = head(x[1:, :5])
    assert torch.allclose(h[:, 1], ref[0][:, 0], atol=1e-6)
    # A chunk that is all padding for one sequence keeps its state.
    pad = torch.zeros(2, 2, dtype=torch.bool)
    pad[0] = True
    _, state3 = head(torch.randn(2, 2, 3), pad, state2)
    assert torch.equal(state3[0][:, 1], state2[0][:, 1])
    with pytest.raises(ValueError):
        head(x, torch.tensor([[True, False, True, True, True, True, True]] * 2))


def test_unimodal_and_multimodal_with_stand_ins(tmp_path):
    torch.manual_seed(0)
    batch = _small_batch()
    s = _stand_ins()
    uni = UnimodalModel(branch=s["visual"], head_hidden=4)
    out = uni(batch)
    assert out.pred.shape == (2, 6, 2) and set(out.attention) == {"visual.score"}
    for key, cls in FUSIONS.items():
        b = _stand_ins()
        fusion = cls(in_dims=(5, 3, 4))
        model = MultimodalModel(text=b["text"], audio=b["audio"], visual=b["visual"], fusion=fusion, head_hidden=4)
        out = model(batch)
        assert out.pred.shape == (2, 6, 2), key
        assert {"text.score", "audio.score", "visual.score"} <= set(out.attention)
        for name, w in out.attention.items():
            if name.startswith("fusion."):
                assert w.shape[:2] == (2, 6), name
        out.pred.sum().backward()
        for m, br in model.branches.items():
            assert br.linear.weight.grad is not None and br.linear.weight.grad.abs().sum() > 0, (key, m)
    with pytest.raises(ConfigError):
        MultimodalModel(text=s["text"], audio=s["audio"], visual=s["visual"], fusion=FUSIONS["concat"](in_dims=(1, 2, 3)))


def test_load_branch_weights(tmp_path):
    torch.manual_seed(0)
    b = _stand_ins()
    model = MultimodalModel(text=b["text"], audio=b["audio"], visual=b["visual"],
                            fusion=FUSIONS["hierarchical"](in_dims=(5, 3, 4), d_u=4))
    trained = UnimodalModel(branch=_stand_ins()["audio"], head_hidden=4)
    path = tmp_path / "audio.pt"
    torch.save({"model": trained.state_dict(), "config": {"model_name": "audio-tzirakis2018"}}, path)
    text_uni = UnimodalModel(branch=_stand_ins()["text"], head_hidden=4)
    loaded = load_branch_weights(model, {"audio": path, "text": {"model": text_uni.state_dict()}})
    assert set(loaded) == {"audio", "text"}
    assert torch.equal(model.branches["audio"].linear.weight, trained.branch.linear.weight)
    assert torch.equal(model.branches["text"].linear.weight, text_uni.branch.linear.weight)
    # A checkpoint of the wrong branch: error names the checkpoint.
    with pytest.raises(ConfigError, match="audio.pt"):
        load_branch_weights(model, {"visual": path})
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": UnimodalModel(branch=StandIn(modality="visual", key="faces", mask_key=None, in_dim=48,
                                                       out_dim=7)).state_dict(), "config": {}}, wrong)
    with pytest.raises(ConfigError, match="wrong.pt"):
        load_branch_weights(model, {"visual": wrong})
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="junk.pt"):
        load_branch_weights(model, {"text": junk})
    with pytest.raises(ConfigError, match="missing.pt"):
        load_branch_weights(model, {"text": tmp_path / "missing.pt"})


def test_registry_contents():
    names = set(list_models())
    expected = {
        "text-paper", "audio-tzirakis2018", "audio-trigeorgis2016", "audio-li2019", "visual-hrnet3-attpool",
        "visual-vgg16", "visual-resnet50", "visual-densenet121", "visual-mobilenet", "fusion-concat",
        "fusion-hierarchical", "fusion-self-attention", "fusion-residual-self-attention",
        "fusion-crossmodal-hierarchical",
    }
    assert expected <= names
    assert "audio-example-energy" in names  # registered by its own file, src/mmaffect/models/example_audio.py
    assert "embed_dim" in get_spec("text-paper").defaults
    with pytest.raises(ConfigError):
        create_model("text-paper", no_such_option=1)


FIXED_CNNS = {"visual-vgg16", "visual-resnet50", "visual-densenet121", "visual-mobilenet"}


def _tiny_model_and_batch(name):
    torch.manual_seed(0)
    model = create_model(name, **tiny_overrides(name))
    sizes = tiny_inputs(name)
    # The fixed-architecture CNN baselines cannot be shrunk by options: one sequence keeps them fast.
    n_seq = 1 if name in FIXED_CNNS else 2
    batch = example_batch(sizes["modalities"], batch=n_seq, frames=4, embed_dim=sizes["embed_dim"],
                          words=sizes["words"], image_size=sizes["image_size"], frame_samples=sizes["frame_samples"],
                          padded=True)
    return model, batch, n_seq


# Parametrised over the registry: every registered variant, no list to edit.
@pytest.mark.parametrize("name", list_models())
def test_registered_model_tiny_forward_backward(name):
    model, batch, n_seq = _tiny_model_and_batch(name)
    model.train()
    out = model(batch)
    assert out.pred.shape == (n_seq, 4, 2)
    assert torch.isfinite(out.pred).all()
    assert all(isinstance(v, torch.Tensor) for v in out.attention.values())
    out.pred.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    branches = model.branches.values() if isinstance(model, MultimodalModel) else [model.branch]
    for branch in branches:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters()), branch.modality


@pytest.mark.parametrize("name", list_models())
def test_registered_model_streaming_equals_one_pass(name):
    """Chunks of forward_frames with the carried LSTM state = one pass (eval mode), attention too."""
    model, batch, _ = _tiny_model_and_batch(name)
    model.eval()
    with torch.no_grad():
        full, _ = model.forward_frames(batch)
        first, state = model.forward_frames(_chunk(batch, 0, 1))
        second, state = model.forward_frames(_chunk(batch, 1, 3), state)
        third, _ = model.forward_frames(_chunk(batch, 3, 4), state)
    chunks = (first, second, third)
    assert torch.allclose(torch.cat([c.pred for c in chunks], 1), full.pred, atol=1e-5)
    for k, v in full.attention.items():
        assert torch.allclose(torch.cat([c.attention[k] for c in chunks], 1), v, atol=1e-5), k


def test_flops_and_table_small():
    torch.manual_seed(0)
    b = _stand_ins()
    model = UnimodalModel(branch=b["audio"], head_hidden=4)
    batch = _small_batch(frames=3, padded=False)
    # linear 10->3 per frame + LSTM (3 -> 4) + linear 4 -> 2, per frame.
    expected = 6 * (2 * 10 * 3 + 2 * 16 * (3 + 4) + 2 * 4 * 2)
    assert count_flops(model, batch) == expected
    # Grouped (depthwise) convolution: backward = 2 x forward, as for a dense one.
    conv = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8))

    class Wrap(nn.Module):
        def forward(self, batch):
            y = conv(batch["x"])
            return type("Out", (), {"pred": y})()

    x = {"x": torch.randn(1, 8, 6, 6, requires_grad=True)}
    fwd = count_flops(Wrap(), x)
    assert fwd == 2 * 8 * 9 * 36
    assert count_flops(Wrap(), x, backward=True) == 3 * fwd
    rows = model_table(["audio-li2019"])
    assert rows[0]["params"] > 0 and rows[0]["flops_per_frame"] > 0


def test_registered_defaults_match_branch_signatures():
    """A branch variant's options are its class's keyword arguments plus the head's (and, for audio, the
    speaker reference's); a fusion variant's are its fusion's plus the branch choices, branch options,
    shared sizes, the head's and the reference's."""
    import inspect

    from mmaffect.models.registry import branch_specs, fusion_specs
    from mmaffect.models.zoo import HEAD_DEFAULTS, REFERENCE_DEFAULTS

    for spec in branch_specs():
        params = {k: p.default for k, p in inspect.signature(spec.cls).parameters.items()}
        assert spec.options == params, spec.name
        reference = REFERENCE_DEFAULTS if spec.modality == "audio" else {}
        assert get_spec(spec.name).defaults == {**params, **HEAD_DEFAULTS, **reference}, spec.name
        assert get_spec(spec.name).modalities == (spec.modality,) and spec.cls.modality == spec.modality
    for spec in fusion_specs():
        params = set(inspect.signature(spec.cls).parameters) - {"in_dims"}
        assert set(spec.options) <= params, spec.name
        defaults = get_spec(spec.name).defaults
        assert defaults["audio_reference"] == 0, spec.name
        assert {defaults[f"{m}_branch"] for m in ("text", "audio", "visual")} == {
            "text-paper", "audio-tzirakis2018", "visual-hrnet3-attpool"}, spec.name


def test_paper_options_unchanged():
    """The options and defaults of the paper's variants (what the shipped checkpoints were built with)."""
    assert get_spec("fusion-hierarchical").defaults == {
        "embed_dim": 384, "image_size": 96, "text_branch": "text-paper", "audio_branch": "audio-tzirakis2018",
        "visual_branch": "visual-hrnet3-attpool", "text_options": {}, "audio_options": {}, "visual_options": {},
        "d_u": 256, "head_hidden": 256, "head_layers": 1, "head_dropout": 0.5, "audio_reference": 0,
        "audio_reference_prior": 0, "audio_reference_self": 0.0}
    assert {k: get_spec("fusion-self-attention").defaults[k] for k in ("d_u", "heads", "d_s", "alpha")} == {
        "d_u": 256, "heads": 4, "d_s": 64, "alpha": "softmax"}
    assert {k: get_spec("fusion-crossmodal-hierarchical").defaults[k] for k in ("d_s", "tokens")} == {
        "d_s": 256, "tokens": 4}
    assert "d_u" not in get_spec("fusion-concat").defaults
    assert get_spec("audio-li2019").defaults["n_fft"] == 512 and get_spec("visual-vgg16").defaults["pretrained"] is None


def test_fusion_branches_chosen_by_config():
    from mmaffect.models.audio import Li2019
    from mmaffect.models.cnn_baselines import MobileNetV1

    opts = tiny_overrides("fusion-concat", {"audio_branch": "audio-li2019"})
    assert opts["audio_branch"] == "audio-li2019" and opts["audio_options"] == {"conv_channels": (4, 4),
                                                                                "lstm_hidden": 4}
    model = create_model("fusion-concat", **opts)
    assert isinstance(model.branches["audio"], Li2019)
    # A visual branch without an image_size option takes the shared size only where it has one.
    opts = tiny_overrides("fusion-hierarchical", {"visual_branch": "visual-mobilenet"})
    model = create_model("fusion-hierarchical", **opts)
    assert isinstance(model.branches["visual"], MobileNetV1) and tiny_inputs(
        "fusion-hierarchical", {"visual_branch": "visual-mobilenet"})["image_size"] == 32
    with pytest.raises(ConfigError, match="audio_branch: 'text-paper' is a text branch"):
        create_model("fusion-concat", audio_branch="text-paper")
    with pytest.raises(ConfigError, match="unknown branch 'audio-nope'"):
        create_model("fusion-concat", audio_branch="audio-nope")
    with pytest.raises(ConfigError, match="has no option"):
        create_model("fusion-concat", audio_options={"no_such": 1})


def test_registration_checks_the_contract():
    from mmaffect.models.registry import register_branch, register_fusion

    with pytest.raises(ConfigError, match="frame_forward"):
        register_branch("audio-test-no-frame-forward", modality="audio")(StandIn)
    with pytest.raises(ConfigError, match="modality must be"):
        register_branch("smell-test", modality="smell")
    with pytest.raises(ConfigError, match="registered twice"):
        register_branch("text-paper", modality="text")(StandIn)

    class NoLayout(nn.Module):
        ATTENTION_LAYOUT = None

    with pytest.raises(ConfigError, match="ATTENTION_LAYOUT"):
        register_fusion("fusion-test-no-layout", key="x")(NoLayout)
    # Branches and fusions refuse a tiny key that is not an option alike (it would leave the test
    # model full-size without a word).
    from mmaffect.models.audio import Tzirakis2018
    from mmaffect.models.fusion import SelfAttentionFusion

    with pytest.raises(ConfigError, match=r"branch 'audio-test-bad-tiny': tiny options \['chanels'\]"):
        register_branch("audio-test-bad-tiny", modality="audio", tiny={"chanels": (4,)})(Tzirakis2018)
    with pytest.raises(ConfigError, match=r"fusion 'fusion-test-bad-tiny': tiny options \['in_dims'\]"):
        register_fusion("fusion-test-bad-tiny", key="x", tiny={"in_dims": (2,)})(SelfAttentionFusion)
    assert not {"audio-test-no-frame-forward", "audio-test-bad-tiny", "fusion-test-bad-tiny"} & set(list_models())
