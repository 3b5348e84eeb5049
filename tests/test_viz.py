"""Figures of Section 5.10: traces, fusion weights, selector weights per word, and the `viz` commands.

The end-to-end tests run a tiny multimodal hierarchical model over a tiny
synthetic cache (40 frames per recording, written directly with
``write_stream``) so the whole file takes seconds.
"""

from __future__ import annotations

import argparse
import csv
import struct
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from mmaffect.data.cache import Cache, write_stream
from mmaffect.data.dataset import load_frames
from mmaffect.errors import ConfigError, DataError
from mmaffect.models import create_model
from mmaffect.models.zoo import tiny_overrides
from mmaffect.preprocess.pipeline import default_prepare_config
from mmaffect.checkpoints import plain, save_checkpoint
from mmaffect.training.evaluate import evaluate_run
from mmaffect.training.trainer import load_train_config
from mmaffect.viz.attention import (
    collect_attention,
    frame_words,
    frames_at,
    fusion_frame_figure,
    fusion_kind,
    fusion_rows,
    fusion_weights_figure,
    peaked_frames,
    sentence_at,
    session_attention,
    weight_colour,
    word_weights_html,
    word_weights_png,
)
from mmaffect.viz.cli import add_viz_parser
from mmaffect.viz.report import write_session_figures
from mmaffect.viz.traces import plot_run_traces, plot_traces, trace_ccc

torch.set_num_threads(1)

MODALITIES = ("text", "audio", "visual")
MODEL = "fusion-hierarchical"
FRAMES = 40
WORDS = 5
VOCAB = ["gut", "<b>", "Tom & Jerry", 'say "hi"', "langweilig", "ja", "nein", "das"]


# --------------------------------------------------------------------------- helpers


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, checking its signature."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(data) > 2000, f"{path} is suspiciously small"
    return struct.unpack(">II", data[16:24])


class _Checker(HTMLParser):
    """Collects spans and checks that every non-void element is closed in order."""

    VOID = {"meta", "br", "img", "link", "hr", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.spans: list[dict[str, str]] = []
        self.texts: list[str] = []
        self._in_word = False
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        self.stack.append(tag)
        a = {k: v or "" for k, v in attrs}
        if tag == "span" and a.get("class") == "w":
            self.spans.append(a)
            self._in_word = True
            self.texts.append("")

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack})")
        else:
            self.stack.pop()
        if tag == "span":
            self._in_word = False

    def handle_data(self, data):
        if self._in_word:
            self.texts[-1] += data


def luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def hierarchical_weights(t: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"fusion.pairwise": rng.dirichlet([1, 1], size=(t, 3)), "fusion.top": rng.dirichlet([1, 1, 1], size=t),
            "text.selector": rng.random((t, 2, 4))}


# --------------------------------------------------------------------------- traces


def test_plot_traces_writes_png_with_gold_and_presence(tmp_path: Path) -> None:
    t = np.arange(120) / 10.0
    rng = np.random.default_rng(0)
    pred = np.tanh(np.cumsum(rng.normal(0, 0.1, (120, 2)), 0))
    gold = pred + rng.normal(0, 0.1, (120, 2))
    gold[:5] = np.nan  # unlabelled frames are allowed
    presence = {"text": rng.random(120) > 0.3, "visual": np.arange(120) < 80}
    path = plot_traces(t, pred, gold=gold, presence=presence, title="Devel_01", path=tmp_path / "a" / "t.png")
    assert path == tmp_path / "a" / "t.png"
    w, h = png_size(path)
    assert w > 800 and h > 300
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["t.png"]  # no temporary file left behind
    png_size(plot_traces(t, pred, path=tmp_path / "b.png"))  # no gold, no presence


def test_trace_ccc_ignores_unlabelled_frames() -> None:
    pred = np.array([0.1, 0.4, 0.2, 0.9, 0.5])
    gold = np.array([0.0, 0.5, np.nan, 1.0, 0.4])
    ok = np.isfinite(gold)
    from mmaffect.training.metrics import ccc

    assert trace_ccc(pred, gold) == pytest.approx(ccc(pred[ok], gold[ok]))
    assert np.isnan(trace_ccc(pred, np.full(5, np.nan)))


def test_plot_traces_rejects_mismatched_shapes(tmp_path: Path) -> None:
    t = np.arange(10) / 10.0
    with pytest.raises(DataError, match="pred: expected shape"):
        plot_traces(t, np.zeros((9, 2)), path=tmp_path / "x.png")
    with pytest.raises(DataError, match="pred: expected shape"):
        plot_traces(t, np.zeros((10, 3)), path=tmp_path / "x.png")
    with pytest.raises(DataError, match="gold: expected shape"):
        plot_traces(t, np.zeros((10, 2)), gold=np.zeros((10, 1)), path=tmp_path / "x.png")
    with pytest.raises(DataError, match=r"presence\['text'\]"):
        plot_traces(t, np.zeros((10, 2)), presence={"text": np.ones(8, bool)}, path=tmp_path / "x.png")
    with pytest.raises(DataError, match="times"):
        plot_traces(np.zeros((10, 1)), np.zeros((10, 2)), path=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _write_predictions(path: Path, n: int, *, gold: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "arousal", "valence", "gold_arousal", "gold_valence"])
        for i in range(n):
            g = [f"{np.sin(i / 5):.4f}", f"{np.cos(i / 5):.4f}"] if gold else ["", ""]
            w.writerow([f"{i / 10:.3f}", f"{np.sin(i / 6):.4f}", f"{np.cos(i / 7):.4f}", *g])


def test_plot_run_traces_one_png_per_recording(tmp_path: Path) -> None:
    run = tmp_path / "run"
    preds = run / "eval" / "predictions-best"
    _write_predictions(preds / "devel" / "Devel_01.csv", 30)
    _write_predictions(preds / "devel" / "Devel_02.csv", 25)
    _write_predictions(preds / "test" / "Test_01.csv", 20, gold=False)
    paths = plot_run_traces(run)
    assert sorted(p.relative_to(run / "eval" / "traces-best").as_posix() for p in paths) == [
        "devel/Devel_01.png", "devel/Devel_02.png", "test/Test_01.png"]
    for p in paths:
        png_size(p)
    only = plot_run_traces(run, partition="test", out=tmp_path / "figs")
    assert only == [tmp_path / "figs" / "test" / "Test_01.png"]


def test_plot_run_traces_errors(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(DataError, match=r"predictions-best.*mmaffect evaluate"):
        plot_run_traces(run)
    _write_predictions(run / "eval" / "predictions-best" / "devel" / "Devel_01.csv", 10)
    with pytest.raises(DataError, match="no predictions of last.pt"):
        plot_run_traces(run, checkpoint="last")
    with pytest.raises(DataError, match=r"partition 'test' \(evaluated: \['devel'\]\)"):
        plot_run_traces(run, partition="test")
    bad = run / "eval" / "predictions-best" / "devel" / "Devel_02.csv"
    bad.write_text("time,arousal\n0.0,0.1\n")
    with pytest.raises(DataError, match="Devel_02.csv: not a predictions file"):
        plot_run_traces(run)


# --------------------------------------------------------------------------- words (Fig. 3)


def test_weight_colour_is_monotonic() -> None:
    weights = np.linspace(0.0, 1.0, 21)
    colours = [weight_colour(w) for w in weights]
    lum = [luminance(c) for c in colours]
    assert all(a > b for a, b in zip(lum, lum[1:])), lum  # heavier word: strictly darker
    channels = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours])
    assert (np.diff(channels, axis=0) <= 0).all()
    assert colours[0] == "#ffffff"
    assert weight_colour(0.2, vmax=0.2) == weight_colour(1.0) == weight_colour(5.0)  # clipped at vmax
    assert weight_colour(0.1, vmax=0.2) == weight_colour(0.5)


def test_word_weights_html_escapes_and_has_one_span_per_word(tmp_path: Path) -> None:
    words = ["<script>alert(1)</script>", "Tom & Jerry", 'say "hi"', "gut"]
    weights = np.array([0.1, 0.2, 0.05, 0.65])
    path = word_weights_html([(words, weights), (["ja"], np.array([1.0]))], path=tmp_path / "w.html",
                             title="<Selector> & co", labels=["t = 1.0 s <a>", "t = 2.0 s"])
    text = path.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "Tom &amp; Jerry" in text and "&lt;Selector&gt; &amp; co" in text
    parser = _Checker()
    parser.feed(text)
    parser.close()
    assert not parser.errors and parser.stack == []
    assert parser.texts == [*words, "ja"]  # one span per word, text round-trips through escaping
    assert len(parser.spans) == 5
    # colours relative to the sentence maximum: the most attended word gets the full colour
    styles = [s["style"] for s in parser.spans]
    assert weight_colour(1.0) in styles[3] and weight_colour(1.0) in styles[4]
    assert weight_colour(0.1 / 0.65) in styles[0]
    assert parser.spans[3]["title"] == "weight 0.650"
    absolute = word_weights_html([(words, weights)], path=tmp_path / "a.html", scale="absolute")
    assert weight_colour(0.65) in absolute.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "w.html"]


def test_word_weights_reject_bad_sentences(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="sentence 1: 2 words but weights of shape"):
        word_weights_html([(["a", "b"], np.array([1.0]))], path=tmp_path / "x.html")
    with pytest.raises(DataError, match="sentence 2: weights must be finite and non-negative"):
        word_weights_png([(["a"], np.array([1.0])), (["b"], np.array([-0.1]))], path=tmp_path / "x.png")
    with pytest.raises(DataError, match="1 labels for 2 sentences"):
        word_weights_html([(["a"], np.ones(1)), (["b"], np.ones(1))], path=tmp_path / "x.html", labels=["x"])
    with pytest.raises(ConfigError, match="scale"):
        word_weights_html([(["a"], np.ones(1))], path=tmp_path / "x.html", scale="log")
    assert not list(tmp_path.iterdir())


def test_word_weights_png_wraps_long_sentences(tmp_path: Path) -> None:
    short = word_weights_png([(["das", "war", "gut"], np.array([0.2, 0.1, 0.7]))], path=tmp_path / "s.png")
    many = [f"word{i}" for i in range(60)]
    long = word_weights_png([(many, np.full(60, 1 / 60))], path=tmp_path / "l.png", title="t", labels=["x"])
    (ws, hs), (wl, hl) = png_size(short), png_size(long)
    assert ws == wl and hl > hs + 100  # same width, more lines


# --------------------------------------------------------------------------- picking sentences


def test_frame_words_and_sentence_at() -> None:
    tokens = np.array(["a", "b", "c", "d"], dtype=object)
    index = np.array([[0, 1, -1], [-1, 2, 3], [-1, -1, -1]])
    assert frame_words(tokens, index) == [["a", "b"], ["c", "d"], []]
    selector = np.zeros((3, 2, 3))
    selector[1, 0, 1:] = [0.25, 0.75]
    selector[1, 1, 1:] = [0.75, 0.25]
    words, w = sentence_at(1, word_tokens=tokens, word_index=index, selector=selector, head=0)
    assert words == ["c", "d"] and w.tolist() == [0.25, 0.75]
    assert sentence_at(1, word_tokens=tokens, word_index=index, selector=selector)[1].tolist() == [0.5, 0.5]
    with pytest.raises(DataError, match="head 2"):
        sentence_at(1, word_tokens=tokens, word_index=index, selector=selector, head=2)
    with pytest.raises(DataError, match="word_index has"):
        sentence_at(1, word_tokens=tokens, word_index=index[:, :2], selector=selector)
    with pytest.raises(DataError, match="refers to word 3"):
        frame_words(tokens[:3], index)


def test_peaked_frames_orders_by_peakedness_and_skips_repeats() -> None:
    mask = np.array([[1, 1, 1, 0]] * 5, dtype=bool)
    mask[4] = [1, 0, 0, 0]  # one word: never chosen (no choice to make)
    sel = np.zeros((5, 1, 4))
    sel[0, 0, :3] = [1 / 3, 1 / 3, 1 / 3]
    sel[1, 0, :3] = [0.9, 0.05, 0.05]
    sel[2, 0, :3] = [0.9, 0.05, 0.05]
    sel[3, 0, :3] = [0.6, 0.2, 0.2]
    sel[4, 0, 0] = 1.0
    assert peaked_frames(sel, mask, n=3) == [1, 2, 3]
    words = [["a", "b", "c"], ["x", "y", "z"], ["x", "y", "z"], ["d", "e", "f"], ["g"]]
    assert peaked_frames(sel, mask, n=3, words=words) == [1, 3, 0]
    with pytest.raises(DataError, match="word_mask has shape"):
        peaked_frames(sel, mask[:, :3])


def test_frames_at() -> None:
    t = np.arange(50) / 10.0
    assert frames_at(t, [0.0, 0.05, 3.2, 4.95]) == [0, 0, 32, 49]
    with pytest.raises(DataError, match="time 5 s is outside"):
        frames_at(t, [5.0])
    with pytest.raises(DataError, match="outside"):
        frames_at(t, [-0.1])


# --------------------------------------------------------------------------- fusion weights (Fig. 4)


def test_fusion_rows_label_the_pairs_of_eq5() -> None:
    kind, panels = fusion_rows(hierarchical_weights(6), modalities=MODALITIES, n_frames=6)
    assert kind == "hierarchical"
    (_, pair_values, pair_labels), (_, top_values, top_labels) = panels
    assert pair_labels == ["visual in visual–text", "text in visual–text", "visual in visual–audio",
                           "audio in visual–audio", "text in text–audio", "audio in text–audio"]
    assert top_labels == ["visual–text", "visual–audio", "text–audio"]
    assert pair_values.shape == (6, 6) and top_values.shape == (6, 3)
    att = hierarchical_weights(6)
    assert np.array_equal(pair_values[:, 2:4], att["fusion.pairwise"][:, 1])
    _, custom = fusion_rows(att, modalities=("a", "b", "c"), pairs=[(0, 1), (1, 2), (0, 2)])
    assert custom[1][2] == ["a–b", "b–c", "a–c"]


def test_fusion_weights_figure_for_each_strategy(tmp_path: Path) -> None:
    t = np.arange(80) / 10.0
    rng = np.random.default_rng(1)
    hier = hierarchical_weights(80)
    hier["fusion.pairwise"][10:20, 0] = [0.0, 1.0]  # visual absent from the visual–text pair
    mask = np.ones(80, bool)
    mask[70:] = False
    png_size(fusion_weights_figure(t, hier, modalities=MODALITIES, path=tmp_path / "h.png", frame_mask=mask,
                                   marks=[3.2], title="hierarchical"))
    cross = {"fusion.pairwise": rng.dirichlet([1, 1], size=(80, 3)), "fusion.top": rng.dirichlet([1, 1, 1], size=80),
             "fusion.cross": rng.random((80, 3, 2, 2, 2))}
    assert fusion_kind(cross) == "crossmodal-hierarchical"
    _, panels = fusion_rows(cross, modalities=MODALITIES)
    assert panels[0][2][:2] == ["text attends audio", "text attends visual"]
    png_size(fusion_weights_figure(t, cross, modalities=MODALITIES, path=tmp_path / "c.png"))
    selfatt = {"fusion.modality": rng.dirichlet([1, 1, 1], size=(80, 2)),
               "fusion.self": rng.dirichlet([1, 1, 1], size=(80, 2, 3))}
    assert fusion_kind(selfatt) == "self-attention"
    png_size(fusion_weights_figure(t, selfatt, modalities=MODALITIES, path=tmp_path / "s.png"))
    linear = {"fusion.modality": rng.normal(0, 2, (80, 2, 3))}  # alpha="linear": unbounded weights
    png_size(fusion_weights_figure(t, linear, modalities=MODALITIES, path=tmp_path / "l.png"))
    for att, name in ((hier, "hf"), (cross, "cf"), (selfatt, "sf")):
        png_size(fusion_frame_figure(att, frame=12, modalities=MODALITIES, path=tmp_path / f"{name}.png"))


def test_fusion_weights_figure_rejects_mismatches(tmp_path: Path) -> None:
    t = np.arange(6) / 10.0
    att = hierarchical_weights(6)
    out = tmp_path / "f.png"
    with pytest.raises(DataError, match="6 frames but there are 5 times"):
        fusion_weights_figure(t[:5], att, modalities=MODALITIES, path=out)
    with pytest.raises(DataError, match=r"fusion.pairwise: expected shape \(6, 1, 2\)"):
        fusion_weights_figure(t, att, modalities=("text", "audio"), path=out)
    with pytest.raises(DataError, match="need both fusion.pairwise and fusion.top"):
        fusion_weights_figure(t, {"fusion.pairwise": att["fusion.pairwise"]}, modalities=MODALITIES, path=out)
    with pytest.raises(DataError, match="no fusion weights"):
        fusion_weights_figure(t, {"text.selector": att["text.selector"]}, modalities=MODALITIES, path=out)
    with pytest.raises(DataError, match="frame_mask"):
        fusion_weights_figure(t, att, modalities=MODALITIES, path=out, frame_mask=np.ones(4, bool))
    with pytest.raises(DataError, match="do not index 3 modalities"):
        fusion_weights_figure(t, att, modalities=MODALITIES, path=out, pairs=[(0, 3), (1, 2), (0, 1)])
    with pytest.raises(DataError, match="frame 6 is outside"):
        fusion_frame_figure(att, frame=6, modalities=MODALITIES, path=out)
    assert not out.exists()


# --------------------------------------------------------------------------- a tiny model on a tiny cache


def make_cache(root: Path, *, seed: int = 0) -> Path:
    """Two recordings (train, devel) with all four streams; some frames lack words or a face."""
    cfg = default_prepare_config()
    cfg["faces"]["size"] = 32
    cfg["text"]["max_words"] = WORDS
    rng = np.random.default_rng(seed)
    sessions = {}
    for part in ("train", "devel"):
        name = f"{part.capitalize()}_01"
        times = np.arange(FRAMES) / 10.0
        streams: dict[str, str] = {}

        def put(stream: str, arrays: dict) -> None:
            path = root / name / f"{stream}-k.h5"
            write_stream(path, {"times": times, **arrays})
            streams[stream] = str(path.relative_to(root))

        level = np.tanh(np.cumsum(rng.normal(0, 0.3, FRAMES)))
        put("labels", {"labels": np.stack([level, -level, np.zeros(FRAMES)], 1).astype(np.float32),
                       "label_names": np.array(["arousal", "valence", "liking"], dtype=object)})
        put("audio", {"audio": rng.integers(-3000, 3000, (FRAMES, 2205)).astype(np.int16),
                      "audio_mask": np.ones(FRAMES, bool), "audio_target": np.arange(FRAMES) % 7 < 4})
        face_mask = np.arange(FRAMES) < 30
        faces = rng.integers(0, 255, (FRAMES, 32, 32, 3)).astype(np.uint8) * face_mask[:, None, None, None]
        put("faces", {"faces": faces.astype(np.uint8), "face_mask": face_mask,
                      "face_boxes": np.zeros((FRAMES, 4), np.float32)})
        # Turns of 3–4 words repeated over 10 frames, then 5 frames without words.
        tokens, index = [], np.full((FRAMES, WORDS), -1, np.int32)
        for start in range(0, FRAMES, 15):
            n = 3 + (start // 15) % 2
            rows = list(range(len(tokens), len(tokens) + n))
            tokens += [VOCAB[(start + k) % len(VOCAB)] for k in range(n)]
            index[start:start + 10, :n] = rows
        put("text", {"word_vectors": rng.normal(0, 1, (len(tokens), 16)).astype(np.float16),
                     "word_tokens": np.array(tokens, dtype=object), "word_index": index})
        sessions[name] = {"partition": part, "n_frames": FRAMES, "streams": streams, "report": {}}
    Cache(root).write_manifest({"format_version": 1, "config": cfg, "sessions": sessions})
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """A run folder with an (untrained) tiny hierarchical checkpoint, as the trainer writes it."""
    torch.manual_seed(0)
    raw = {"model_name": MODEL, "model_options": plain(tiny_overrides(MODEL))}
    cfg = load_train_config(raw, [f"data.cache={cache}", "data.annotation_delay=0.2", "device=cpu"])
    model = create_model(MODEL, **cfg["model_options"])
    out = tmp_path_factory.mktemp("run")
    save_checkpoint(out / "best.pt", model=model, optimizer=None, scheduler=None, epoch=1, step=1, best_score=0.0,
                    best_epoch=1, stale_epochs=0, history=[], config=cfg, prepare_config=Cache(cache).config())
    return out


def test_collect_attention_chunks_equal_one_pass(cache: Path) -> None:
    torch.manual_seed(0)
    model = create_model(MODEL, **tiny_overrides(MODEL))
    model.train()
    session = Cache(cache).sessions(partitions=["devel"])[0]
    item = load_frames(session, slice(0, FRAMES), embed_dim=16, face_size=32, max_words=WORDS)
    pred, att = collect_attention(model, item)
    assert model.training  # mode restored
    assert pred.shape == (FRAMES, 2) and isinstance(pred, np.ndarray)
    assert att["fusion.pairwise"].shape == (FRAMES, 3, 2) and att["fusion.top"].shape == (FRAMES, 3)
    assert att["text.selector"].shape == (FRAMES, 2, WORDS)
    pred_c, att_c = collect_attention(model, {k: v.unsqueeze(0) for k, v in item.items()}, chunk=7)
    np.testing.assert_allclose(pred_c, pred, atol=1e-5)
    np.testing.assert_allclose(att_c["fusion.top"], att["fusion.top"], atol=1e-5)
    # Eval mode: dropout off, the same output twice.
    np.testing.assert_array_equal(collect_attention(model, item)[0], pred)
    # Absent face (frames 30+): visual's weight in its pairs is exactly 0.
    assert (att["fusion.pairwise"][30:, 0, 0] == 0).all() and (att["fusion.pairwise"][:30, 0, 0] > 0).all()
    with pytest.raises(DataError, match="one recording"):
        collect_attention(model, {k: torch.stack([v, v]) for k, v in item.items()})


def test_session_attention_end_to_end(run: Path, cache: Path, tmp_path: Path) -> None:
    res = session_attention(run / "best.pt", session="Devel_01")
    assert res.modalities == MODALITIES and res.pairs == ((2, 0), (2, 1), (0, 1))
    assert res.times.shape == (FRAMES,) and res.pred.shape == (FRAMES, 2) and res.gold.shape == (FRAMES, 2)
    assert res.delay_frames == 2
    assert res.presence["visual"].sum() == 30 and res.presence["audio"].all()
    assert res.presence["text"].tolist() == [w != [] for w in res.words]
    assert res.words[0] == VOCAB[:3] and res.words[12] == []
    words, weights = sentence_at(0, word_tokens=res.word_tokens, word_index=res.word_index,
                                 selector=res.attention["text.selector"])
    assert words == VOCAB[:3] and weights.sum() == pytest.approx(1.0, abs=1e-5)

    figs = write_session_figures(res, out=tmp_path / "viz", times=[0.5, 1.2, 3.2])
    assert set(figs.written) == {"traces", "fusion", "fusion-frame-0.5s", "fusion-frame-1.2s", "fusion-frame-3.2s",
                                 "words-html", "words-png"}
    assert figs.skipped == ["word weights: no words at t = 1.2 s"]
    for key, path in figs.written.items():
        if key != "words-html":
            png_size(path)
    parser = _Checker()
    parser.feed(figs.written["words-html"].read_text())
    assert not parser.errors and parser.texts == VOCAB[:3] + [VOCAB[(30 + k) % len(VOCAB)] for k in range(3)]

    picked = write_session_figures(res, out=tmp_path / "picked", sentences=2)
    parser = _Checker()
    parser.feed(picked.written["words-html"].read_text())
    turns = [res.words[0], res.words[15], res.words[30]]  # the three distinct word lists
    shown = [t for t in turns for u in turns if t != u and parser.texts == t + u]
    assert len(shown) == 1, parser.texts  # two distinct turns, not one turn repeated
    assert "Tom & Jerry" not in picked.written["words-html"].read_text()  # escaped wherever it appears

    with pytest.raises(DataError, match="no prepared session 'Nope_01'"):
        session_attention(run / "best.pt", session="Nope_01")
    with pytest.raises(ConfigError, match="checkpoint not found"):
        session_attention(tmp_path / "missing.pt", session="Devel_01")


def test_viz_commands(run: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="mmaffect")
    add_viz_parser(parser.add_subparsers(dest="command", required=True))

    args = parser.parse_args(["viz", "attention", str(run / "best.pt"), "--cache", str(cache),
                              "--session", "Devel_01", "--times", "0.3,3.1", "--out", str(tmp_path / "a")])
    args.func(args)
    written = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert written == ["fusion-frame-0.3s.png", "fusion-frame-3.1s.png", "fusion.png", "traces.png",
                       "words.html", "words.png"]
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["viz", "attention", "x.pt", "--session", "s", "--times", "a,b"])

    evaluate_run(run, partitions=["devel"], device="cpu")
    args = parser.parse_args(["viz", "traces", str(run), "--partition", "devel"])
    args.func(args)
    png = run / "eval" / "traces-best" / "devel" / "Devel_01.png"
    png_size(png)
    assert "wrote 1 trace figure(s)" in capsys.readouterr().out
