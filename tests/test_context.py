"""The temporal head's context window (mmaffect.models.temporal): windows of the training
length from a zero state, blended; through build_model_from_checkpoint, predict and evaluate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_checkpoint

import mmaffect
from mmaffect.checkpoints import build_model_from_checkpoint, load_checkpoint
from mmaffect.errors import ConfigError
from mmaffect.models.temporal import TemporalHead, WindowState, resolve_context, set_context


def _blend_by_hand(head: TemporalHead, x: torch.Tensor, mask: torch.Tensor, w: int) -> torch.Tensor:
    """The module docstring's rule written out: every window at multiples of w // 4, run alone
    from a zero state, weighted by position p (rising over [w - 2 hop, w - hop), falling over the
    last hop positions, no rise for the window at 0), averaged."""
    b, t, _ = x.shape
    hop = max(1, w // 4)

    def weight(s: int, p: int) -> float:
        rise = 1.0 if s == 0 else min(1.0, max(0.0, (p - (w - 2 * hop) + 1) / hop))
        return min(rise, 1.0, (w - p) / hop)

    plain = TemporalHead(in_dim=head.in_dim, hidden=head.hidden, layers=head.layers, outputs=head.outputs)
    plain.load_state_dict(head.state_dict())
    plain.eval()
    total = torch.zeros(b, t, head.outputs)
    norm = torch.zeros(t)
    for s in range(0, t, hop):
        for i in range(b):
            seg = x[i:i + 1, s:s + w]
            n = int(mask[i, s:s + w].sum())
            if n == 0:
                continue
            pred, _ = plain(seg[:, :n])
            for p in range(n):
                total[i, s + p] += pred[0, p] * weight(s, p)
        for p in range(min(w, t - s)):
            norm[s + p] += weight(s, p)
    return total / norm[None, :, None] * mask[..., None]


@pytest.mark.parametrize("w", [1, 2, 5, 8, 10])
def test_windows_follow_the_rule_and_chunks_equal_one_pass(w: int) -> None:
    torch.manual_seed(w)
    head = TemporalHead(in_dim=4, hidden=6, layers=2, dropout=0.5).eval()
    x = torch.randn(3, 37, 4)
    mask = torch.ones(3, 37, dtype=torch.bool)
    mask[1, 30:] = False  # a shorter sequence: trailing padding
    mask[2, 3:] = False
    set_context(head, w)
    with torch.no_grad():
        whole, state = head(x, mask)
        np.testing.assert_allclose(whole.numpy(), _blend_by_hand(head, x, mask, w).numpy(), atol=1e-5)
        assert isinstance(state, WindowState) and state.x.shape[1] < w + 1
        for chunk in (1, 3, 7, 37):
            parts, st = [], None
            for a in range(0, 37, chunk):
                out, st = head(x[:, a:a + chunk], mask[:, a:a + chunk], st)
                parts.append(out)
            np.testing.assert_allclose(torch.cat(parts, 1).numpy(), whole.numpy(), atol=1e-5)
    assert (whole[2, 3:] == 0).all()
    empty, same = head(x[:, :0], mask[:, :0], state)
    assert empty.shape == (3, 0, 2) and same is state


def test_training_mode_and_no_context_are_the_plain_pass() -> None:
    torch.manual_seed(0)
    head = TemporalHead(in_dim=3, hidden=4, dropout=0.0)
    x = torch.randn(2, 30, 3)
    plain, _ = head.eval()(x)
    set_context(head, 8)
    windowed, _ = head(x)
    assert not torch.allclose(windowed, plain, atol=1e-4)
    trained, (h, c) = head.train()(x)  # training runs its windows as they come
    assert torch.allclose(trained, plain, atol=1e-6) and h.shape == (1, 2, 4)
    with pytest.raises(ValueError, match="WindowState"):
        head.eval()(x, None, (h, c))


def test_the_window_stops_a_drifting_state() -> None:
    """A head that integrates its input (forget gate 1) saturates over a long recording when its
    state runs on; with a context window it never goes past what a window of W frames reaches."""
    head = TemporalHead(in_dim=1, hidden=1, dropout=0.0, outputs=1).eval()
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.lstm.weight_ih_l0[2, 0] = 1.0  # cell gate g = tanh(x)
        head.lstm.bias_ih_l0[[0, 1, 3]] = 20.0  # input, forget and output gates open: c_t = c_{t-1} + g
        head.out.weight.fill_(1.0)
        x = torch.full((1, 400, 1), 0.01)
        plain, _ = head(x)
        set_context(head, 20)
        windowed, _ = head(x)
    assert plain[0, -1, 0] > 0.7  # tanh(tanh(4)): the state ran on for 400 frames
    reach = float(plain[0, 19, 0])  # the most a 20-frame window can show
    assert float(windowed.max()) <= reach + 1e-6 and reach < 0.2


def test_resolve_context_and_set_context_check_their_input() -> None:
    assert resolve_context("train", 100) == 100 and resolve_context("train", None) is None
    assert resolve_context("none", 100) is None and resolve_context(None, 100) is None
    assert resolve_context(2, 100) == 20 and resolve_context("0.1", 100) == 1
    for bad in ("0", "-3", "soon", "0.01"):
        with pytest.raises(ConfigError, match="context"):
            resolve_context(bad, 100)
    with pytest.raises(ValueError, match="positive"):
        set_context(TemporalHead(in_dim=2), 0)


def test_checkpoints_load_with_their_training_window(tmp_path: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint(tmp_path / "a.pt", "audio-tzirakis2018", window=20))
    heads = [m for m in build_model_from_checkpoint(ckpt).modules() if isinstance(m, TemporalHead)]
    assert heads and all(h.context == 20 for h in heads)
    assert build_model_from_checkpoint(ckpt, context=None).head.context is None
    assert build_model_from_checkpoint(ckpt, context="3").head.context == 30
    with pytest.raises(ConfigError, match="context"):
        build_model_from_checkpoint(ckpt, context="later")
    whole = load_checkpoint(tiny_checkpoint(tmp_path / "b.pt", "audio-tzirakis2018"))
    assert build_model_from_checkpoint(whole).head.context is None  # trained on whole recordings


def test_predict_runs_the_head_in_training_windows(predict_media: dict[str, Path], tmp_path: Path) -> None:
    path = tiny_checkpoint(tmp_path / "fusion.pt", "fusion-concat", window=12)
    predictor = mmaffect.load(path, device="cpu")
    kw = dict(audio=predict_media["wav"], transcript=predict_media["transcript"], turns=predict_media["turns"])
    default = predictor.predict_full(predict_media["avi"], **kw)
    assert default.report["context_frames"] == 12
    chunked = predictor.predict_full(predict_media["avi"], chunk_seconds=0.7, **kw)
    np.testing.assert_allclose(chunked.values, default.values, atol=1e-5)
    carried = predictor.predict_full(predict_media["avi"], context="none", **kw)
    assert carried.report["context_frames"] is None
    assert np.nanmax(np.abs(carried.values - default.values)) > 1e-3
    # the first w - w // 4 frames are read from the first window alone: as with the state carried
    np.testing.assert_allclose(default.values[:9], carried.values[:9], atol=1e-5)
    assert np.nanmax(np.abs(default.values[9:] - carried.values[9:])) > 1e-3
    assert predictor.predict_full(predict_media["avi"], context=0.8, **kw).report["context_frames"] == 8


def test_cli_context_option(predict_media: dict[str, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from mmaffect.cli import main

    path = tiny_checkpoint(tmp_path / "audio.pt", "audio-tzirakis2018", window=10)
    with pytest.raises(SystemExit) as exit_:  # argparse refuses it before anything is loaded
        main(["predict", str(predict_media["wav"]), "--checkpoint", str(path), "--context", "soon"])
    assert exit_.value.code == 2 and "got 'soon'" in capsys.readouterr().err
    assert main(["predict", str(predict_media["wav"]), "--checkpoint", str(path), "--context", "none",
                 "--out", str(tmp_path / "out"), "--no-figures", "--quiet"]) == 0
    report = json.loads(next((tmp_path / "out").rglob("*report.json")).read_text())
    assert report["context_frames"] is None


def test_evaluate_scores_what_predict_says(predict_media: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`evaluate` runs the head as `predict` does, by default in training windows; --context none
    carries the state, as before."""
    from mmaffect.cli import main
    from mmaffect.data.readers import read_corpus
    from mmaffect.preprocess.pipeline import prepare
    from mmaffect.training.evaluate import evaluate_checkpoint

    path = tiny_checkpoint(tmp_path / "audio.pt", "audio-tzirakis2018", window=10)
    predictor = mmaffect.load(path, device="cpu")
    cache = tmp_path / "cache"
    prepare(read_corpus(predict_media["corpus"]), cache, config=predictor.prepare_config, progress=False)
    for context in ("train", "none"):
        report = evaluate_checkpoint(path, cache=cache, partitions=["train"], context=context)
        pred = report.predictions["train"][0].pred
        said = predictor.predict_full(audio=predict_media["wav"], turns=predict_media["turns"], context=context,
                                      max_gap=None)
        heard = ~np.isnan(said.values[:, 0])
        np.testing.assert_allclose(said.values[heard], pred[heard], atol=1e-5)
    assert main(["evaluate", str(path), "--cache", str(cache), "--partition", "train", "--context", "none"]) == 0
    assert "| train |" in capsys.readouterr().out
