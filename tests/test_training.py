"""Trainer, checkpoints, kill-and-resume, evaluation tables, Wilcoxon helper and tuning.

Everything runs on a tiny synthetic cache (8 audio samples per frame, 60
frames per recording) written directly with ``write_stream`` and a tiny
registered per-frame model, so the whole file takes seconds.
"""

from __future__ import annotations

import csv
import json
import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mmaffect.data.cache import Cache, write_stream
from mmaffect.errors import ConfigError
from mmaffect.preprocess.pipeline import default_prepare_config
from mmaffect.training import trainer as trainer_mod
from mmaffect.checkpoints import load_checkpoint
from mmaffect.cli import main as cli_main
from mmaffect.training.evaluate import (
    RecordingPrediction,
    align_delay,
    evaluate_run,
    partition_scores,
    read_predictions,
)
from mmaffect.training.metrics import ccc
from mmaffect.training.stats import compare_predictions, format_mean_std, mean_std, wilcoxon_test
from mmaffect.training.trainer import load_train_config, train

torch.set_num_threads(1)

PLUGIN = "mmaffect_tiny_test_models"
TINY = "test-tiny-frame-mlp"

# A registered per-frame model: interlocutor vector (16 values) -> MLP -> tanh.
# It has the head_* options of the zoo models, so the default tune space applies.
PLUGIN_SOURCE = textwrap.dedent(
    f'''
    import torch
    from torch import nn
    from mmaffect.models import ModelOutput, list_models, register_model

    torch.set_num_threads(1)


    class TinyFrameMLP(nn.Module):
        def __init__(self, *, in_dim, head_hidden, head_layers, head_dropout):
            super().__init__()
            layers, d = [], in_dim
            for _ in range(head_layers):
                layers += [nn.Linear(d, head_hidden), nn.Tanh(), nn.Dropout(head_dropout)]
                d = head_hidden
            self.body = nn.Sequential(*layers)
            self.out = nn.Linear(d, 2)

        def forward(self, batch):
            x = batch["audio"] * 4.0
            pred = torch.tanh(self.out(self.body(x)))
            return ModelOutput(pred * batch["mask"].unsqueeze(-1).to(pred.dtype), {{}})


    if "{TINY}" not in list_models():
        register_model("{TINY}", modalities=("audio",), in_dim=16, head_hidden=8, head_layers=1,
                       head_dropout=0.0)(lambda **kw: TinyFrameMLP(**kw))
    '''
)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("plugin")
    (d / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    sys.path.insert(0, str(d))
    importlib.import_module(PLUGIN)
    return d


def make_cache(root: Path, *, n_train: int = 4, n_devel: int = 2, n_test: int = 1, n_frames: int = 60,
               samples: int = 8, lag: int = 0, seed: int = 0) -> Path:
    """A learnable cache: audio level l(t); arousal(t) = l(t - lag), valence(t) = -0.5 l(t - lag) + 0.1."""
    cfg = default_prepare_config()
    cfg["audio"]["frame_samples"] = samples
    rng = np.random.default_rng(seed)
    sessions = {}
    for part, n in (("train", n_train), ("devel", n_devel), ("test", n_test)):
        for i in range(n):
            name = f"{part.capitalize()}_{i + 1:02d}"
            steps = rng.normal(0, 0.35, n_frames + lag)
            level = np.tanh(np.convolve(steps, np.ones(4) / 2, mode="same"))
            wave = level[lag:, None] + rng.normal(0, 0.05, (n_frames, samples))
            times = np.arange(n_frames) / 10.0
            audio_path = root / name / "audio-k.h5"
            write_stream(audio_path, {"times": times, "audio": np.clip(wave * 16000, -32768, 32767).astype(np.int16),
                                      "audio_mask": np.ones(n_frames, bool),
                                      "audio_target": np.ones(n_frames, bool)})
            streams = {"labels": None, "audio": str(audio_path.relative_to(root)), "faces": None, "text": None}
            if part != "test":
                lab = level[:n_frames]
                labels = np.stack([lab, -0.5 * lab + 0.1, np.zeros(n_frames)], 1).astype(np.float32)
                label_path = root / name / "labels-k.h5"
                write_stream(label_path, {"times": times, "labels": labels,
                                          "label_names": np.array(["arousal", "valence", "liking"], dtype=object)})
                streams["labels"] = str(label_path.relative_to(root))
            sessions[name] = {"partition": part, "n_frames": n_frames, "streams": streams, "report": {}}
    Cache(root).write_manifest({"format_version": 1, "config": cfg, "sessions": sessions})
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("cache"))


def tiny_config(cache: Path, *overrides: str) -> dict:
    base = [f"data.cache={cache}", "data.window=20", "optim.batch_size=4", "optim.epochs=3", "optim.lr=0.02",
            "log.plot=false", "log.progress=false"]
    raw = {"imports": [PLUGIN], "model_name": TINY}
    return load_train_config(raw, [*base, *overrides])


def test_config_resolution(plugin_dir: Path, cache: Path) -> None:
    cfg = tiny_config(cache, "model_options.head_hidden=5")
    assert cfg["model_options"] == {"in_dim": 16, "head_hidden": 5, "head_layers": 1, "head_dropout": 0.0}
    assert cfg["data"]["modalities"] == ["audio"]
    assert load_train_config({"imports": [PLUGIN], "model_name": TINY})["optim"]["batch_size"] == 20  # Sec. 5.4
    with pytest.raises(ConfigError, match="model_options.nope"):
        tiny_config(cache, "model_options.nope=1")
    with pytest.raises(ConfigError, match="unknown configuration key"):
        tiny_config(cache, "optim.lrr=1")


def test_loss_falls_and_run_folder(plugin_dir: Path, cache: Path, tmp_path: Path) -> None:
    cfg = tiny_config(cache, "optim.epochs=6")
    res = train(cfg, out=tmp_path / "run", progress=False)
    losses = [r["train_loss"] for r in res.history]
    assert losses[-1] < losses[0] - 0.2, losses
    assert res.history[-1]["dev_mean"] > 0.5
    for f in ("config.yaml", "last.pt", "best.pt", "log.csv"):
        assert (tmp_path / "run" / f).is_file(), f
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == cfg
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, out=tmp_path / "run", progress=False)


def test_mse_weight_adds_the_squared_error_to_the_loss(plugin_dir: Path, cache: Path, tmp_path: Path) -> None:
    """optim.mse_weight reaches the training loss: with lr 0 (the same predictions every run) the
    epoch loss grows by exactly w times the same mean squared error; a negative weight is refused."""
    losses = {w: train(tiny_config(cache, "optim.epochs=1", "optim.lr=0", f"optim.mse_weight={w}"),
                       out=tmp_path / f"w{w}", progress=False).history[0]["train_loss"] for w in (0.0, 1.0, 2.5)}
    mse = losses[1.0] - losses[0.0]
    assert mse > 1e-3
    assert losses[2.5] - losses[0.0] == pytest.approx(2.5 * mse, rel=1e-4)
    with pytest.raises(ConfigError, match="mse_weight"):
        tiny_config(cache, "optim.mse_weight=-1")


def test_amp_autocasts_the_forward_pass_in_bf16(plugin_dir: Path, cache: Path, tmp_path: Path) -> None:
    """amp=true runs the training forward pass under bf16 autocast (here on the CPU; auto = on CUDA
    only, so a CPU run is unchanged): it still learns, its predictions were rounded (another loss),
    and the weights it saves stay fp32. A value other than auto/true/false is refused."""
    runs = {amp: train(tiny_config(cache, "optim.epochs=4", f"amp={amp}"), out=tmp_path / amp, progress=False)
            for amp in ("false", "auto", "true")}
    plain, bf16 = ([r["train_loss"] for r in runs[k].history] for k in ("false", "true"))
    assert [r["train_loss"] for r in runs["auto"].history] == plain
    assert bf16 != plain and bf16[-1] < bf16[0] - 0.15 and runs["true"].history[-1]["dev_mean"] > 0.4
    assert all(v.dtype == torch.float32 for v in load_checkpoint(tmp_path / "true" / "best.pt")["model"].values())
    with pytest.raises(ConfigError, match="amp"):
        tiny_config(cache, "amp=sometimes")


def test_tensorboard_events(plugin_dir: Path, cache: Path, tmp_path: Path, monkeypatch) -> None:
    """log.tensorboard: events readable by TensorBoard; a missing package is an error only when asked for."""
    import builtins

    cfg = tiny_config(cache, "optim.epochs=2", "log.tensorboard=auto")
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        EventAccumulator = None
    res = train(cfg, out=tmp_path / "run", progress=False)
    if EventAccumulator is not None:
        acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
        acc.Reload()
        dev = acc.Scalars("devel/ccc_mean")
        assert [e.step for e in dev] == [1, 2]
        assert [round(e.value, 5) for e in dev] == [round(r["dev_mean"], 5) for r in res.history]
        assert len(acc.Scalars("train/loss")) == 2
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    train(tiny_config(cache, "optim.epochs=1"), out=tmp_path / "auto", progress=False)
    assert not (tmp_path / "auto" / "tensorboard").exists()
    with pytest.raises(ConfigError, match="tensorboard package"):
        train(tiny_config(cache, "optim.epochs=1", "log.tensorboard=true"), out=tmp_path / "req", progress=False)


def test_checkpoint_is_plain_state(plugin_dir: Path, cache: Path, tmp_path: Path) -> None:
    cfg = tiny_config(cache, "optim.epochs=1", "log.plot=true")
    train(cfg, out=tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "learning_curves.png").stat().st_size > 1000
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "step", "best_score", "rng", "config",
            "prepare_config", "history"} <= set(ckpt)
    assert ckpt["config"] == cfg
    assert ckpt["prepare_config"] == Cache(cache).config()
    assert all(isinstance(v, torch.Tensor) for v in ckpt["model"].values())
    assert ckpt["epoch"] == 1 and ckpt["step"] == 3  # 4 sessions x 3 windows / batch 4
    assert {"python", "numpy", "torch"} <= set(ckpt["rng"])


def test_best_checkpoint_is_highest_dev_ccc(plugin_dir: Path, cache: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    scripted = iter([0.2, 0.6, 0.4, 0.1, 0.9])

    def fake_scores(preds):
        s = next(scripted)
        return {"arousal": s, "valence": s, "mean": s}

    monkeypatch.setattr(trainer_mod, "partition_scores", fake_scores)
    res = train(tiny_config(cache, "optim.epochs=5", "optim.patience=2"), out=tmp_path / "run", progress=False)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert best["epoch"] == 2 and best["best_score"] == pytest.approx(0.6)  # not the lowest (epoch 4)
    assert res.stopped_early and last["epoch"] == 4 and res.best_epoch == 2


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_kill_and_resume_equals_uninterrupted(plugin_dir: Path, cache: Path, tmp_path: Path) -> None:
    cfg = tiny_config(cache, "model_options.head_dropout=0.3", "data.num_workers=1", "optim.lr=0.01")
    full = train(cfg, out=tmp_path / "full", progress=False)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal, sys
        import mmaffect.training.trainer as t
        from mmaffect.cli import main
        orig = t._write_log
        def write_then_die(path, history):
            orig(path, history)
            if len(history) == 1:
                os.kill(os.getpid(), signal.SIGKILL)
        t._write_log = write_then_die
        sys.exit(main(["train", {str(cfg_file)!r}, "--out", {str(run)!r}, "--quiet"]))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), *sys.path])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert _state(run / "last.pt")["epoch"] == 1
    assert cli_main(["train", "-", "--out", str(run), "--resume", "--quiet"]) == 0
    a, b = _state(tmp_path / "full" / "last.pt"), _state(run / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"]) == strip(full.history)
    assert torch.equal(a["optimizer"]["state"][0]["exp_avg"], b["optimizer"]["state"][0]["exp_avg"])


def test_annotation_delay_direction(plugin_dir: Path, tmp_path: Path) -> None:
    # Labels lag the audio by 3 frames: only a run told about the 0.3 s delay can fit them per frame.
    lagged = make_cache(tmp_path / "lagged", lag=3, seed=1)
    scores = {}
    for delay in (0.0, 0.3):
        res = train(tiny_config(lagged, "optim.epochs=6", f"data.annotation_delay={delay}"),
                    out=tmp_path / f"run{delay}", progress=False)
        scores[delay] = res.best_score
    assert scores[0.3] > 0.6 and scores[0.3] > scores[0.0] + 0.2, scores


def test_evaluate_writes_correct_tables(plugin_dir: Path, cache: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    for seed in (0, 1):
        train(tiny_config(cache, f"seed={seed}"), out=tmp_path / f"s{seed}", progress=False)
    run = tmp_path / "s0"
    assert cli_main(["evaluate", str(run), "--partition", "devel", "test"]) == 0
    printed = capsys.readouterr().out
    pred_dir = run / "eval" / "predictions-best"
    files = sorted((pred_dir / "devel").glob("*.csv"))
    assert [f.stem for f in files] == ["Devel_01", "Devel_02"]
    assert (pred_dir / "test" / "Test_01.csv").is_file()  # unlabelled: predicted, not scored
    loaded = [read_predictions(f) for f in files]
    pred = np.concatenate([p for _, p, _ in loaded])
    gold = np.concatenate([g for _, _, g in loaded])
    expected = {"arousal": ccc(pred[:, 0], gold[:, 0]), "valence": ccc(pred[:, 1], gold[:, 1])}
    with open(run / "eval" / "scores-best.csv") as f:
        got = {(r["partition"], r["dimension"]): float(r["ccc"]) for r in csv.DictReader(f)}
    assert set(p for p, _ in got) == {"devel"}
    assert got[("devel", "arousal")] == pytest.approx(expected["arousal"], abs=1e-5)
    assert got[("devel", "valence")] == pytest.approx(expected["valence"], abs=1e-5)
    assert got[("devel", "mean")] == pytest.approx(np.mean(list(expected.values())), abs=1e-5)
    assert f"{expected['arousal']:.3f}" in printed and (run / "eval" / "scores-best.md").is_file()
    assert np.allclose(loaded[0][0][:3], [0.0, 0.1, 0.2])

    shifted = evaluate_run(run, partitions=["devel"], delay_compensation=0.2, write=False)
    plain_preds = evaluate_run(run, partitions=["devel"], write=False).predictions["devel"]
    assert np.allclose(shifted.predictions["devel"][0].pred, align_delay(plain_preds[0].pred, 2))

    assert cli_main(["evaluate", "--runs", str(tmp_path / "s0"), str(tmp_path / "s1")]) == 0
    reps = [evaluate_run(tmp_path / f"s{s}", write=False).scores["devel"]["arousal"] for s in (0, 1)]
    assert format_mean_std(*mean_std(reps)) in capsys.readouterr().out
    assert cli_main(["evaluate", "--compare", str(tmp_path / "s0"), str(tmp_path / "s1")]) == 0
    assert "Wilcoxon" in capsys.readouterr().out


def test_wilcoxon_helper_known_values() -> None:
    r = wilcoxon_test([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.1, 0.2, 0.3, 0.35, 0.45, 0.05])
    assert r.n == 6 and r.statistic == 0.0 and r.p_value == pytest.approx(2 / 2**6) and r.better == "A"
    # Ranks of |d| = 1..8 with signs + + - + + + - +: W- = 3 + 7 = 10, exact two-sided p = 2 * P(W <= 10).
    d = np.array([1, 2, -3, 4, 5, 6, -7, 8], float)
    r = wilcoxon_test(d, np.zeros(8))
    counts = np.zeros(37)
    counts[0] = 1
    for k in range(1, 9):
        counts[k:] = counts[k:] + counts[:-k].copy()
    assert r.statistic == 10 and r.p_value == pytest.approx(2 * counts[:11].sum() / 2**8)
    with pytest.raises(ValueError):
        wilcoxon_test([1.0, 2.0], [1.0, 2.0])

    rng = np.random.default_rng(0)
    a, b = [], []
    for i in range(8):
        gold = rng.normal(size=(50, 2))
        a.append(RecordingPrediction(f"r{i}", "devel", np.arange(50) / 10, gold + rng.normal(0, 0.1, (50, 2)), gold))
        b.append(RecordingPrediction(f"r{i}", "devel", np.arange(50) / 10, gold + rng.normal(0, 1.0, (50, 2)), gold))
    res = compare_predictions(a, b)
    assert res["mean"].better == "A" and res["mean"].p_value == pytest.approx(2 / 2**8)
    blocks = compare_predictions(a, b, unit="block", block=10)
    assert blocks["arousal"].n == 40 and blocks["arousal"].better == "A" and blocks["arousal"].p_value < 1e-6
    assert partition_scores(a)["mean"] > 0.9


def test_tune_sqlite_resumes_study(plugin_dir: Path, cache: Path, tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    from mmaffect.training.tune import tune

    cfg = tiny_config(cache, "tune.epochs=2")
    study = tune(cfg, out=tmp_path / "tune", trials=3, progress=False)
    assert (tmp_path / "tune" / "study.db").is_file()
    assert len(study.trials) == 3
    first = [t.params for t in study.trials]
    for t in study.trials:
        assert 1e-6 <= t.params["learning_rate"] <= 1e-3 and t.params["batch_size"] in (10, 20, 30)
        assert t.params["sequence_length"] in (75, 100, 200) and 0.1 <= t.params["dropout"] <= 0.6
    study2 = tune(cfg, out=tmp_path / "tune", trials=4, progress=False)
    assert study2.study_name == study.study_name and len(study2.trials) == 4
    assert [t.params for t in study2.trials[:3]] == first and study2.trials[3].params != first[0]
    done = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    assert all(t.state in done for t in study2.trials)
    trial_cfg = yaml.safe_load((tmp_path / "tune" / "trials" / "trial-0000" / "config.yaml").read_text())
    assert trial_cfg["optim"]["lr"] == pytest.approx(first[0]["learning_rate"])
    assert trial_cfg["model_options"]["head_hidden"] == first[0]["hidden_units"]
    summary = (tmp_path / "tune" / "summary.md").read_text()
    assert "| learning_rate |" in summary and "±" in summary


def test_tune_workers_sharing_a_storage(plugin_dir: Path, cache: Path, tmp_path: Path, monkeypatch) -> None:
    """Trial N draws the same configuration in any study (seed, trial number, parameter name), and a
    worker stops once the study holds --trials trials, counting those another worker finished while
    it ran (simulated: three finished trials appear in the storage during this worker's first)."""
    optuna = pytest.importorskip("optuna")
    from mmaffect.training import tune as tune_mod

    cfg = tiny_config(cache, "tune.epochs=1")
    alone = tune_mod.tune(cfg, out=tmp_path / "alone", trials=2, progress=False)
    real_train, calls = tune_mod.train, []

    def train_beside_another_worker(trial_cfg, **kw):
        calls.append(1)
        if len(calls) == 1:
            study = optuna.load_study(study_name="tune-" + TINY, storage=f"sqlite:///{tmp_path / 'shared' / 'study.db'}")
            for _ in range(3):
                study.add_trial(optuna.trial.create_trial(value=0.1, params={}, distributions={}))
        return real_train(trial_cfg, **kw)

    monkeypatch.setattr(tune_mod, "train", train_beside_another_worker)
    shared = tune_mod.tune(cfg, out=tmp_path / "shared", trials=4, progress=False)
    assert len(calls) == 1 and len(shared.trials) == 4  # not 4 of its own
    assert shared.trials[0].params == alone.trials[0].params
    assert alone.trials[0].params != alone.trials[1].params
    # a worker joining a study that holds one trial runs trial 1, and draws what trial 1 drew alone
    monkeypatch.setattr(tune_mod, "train", real_train)
    joined = optuna.create_study(study_name="tune-" + TINY, direction="maximize",
                                 storage=f"sqlite:///{tmp_path / 'joined.db'}")
    joined.add_trial(optuna.trial.create_trial(value=0.1, params={}, distributions={}))
    joined = tune_mod.tune(cfg, out=tmp_path / "joined", trials=2, storage=f"sqlite:///{tmp_path / 'joined.db'}",
                           progress=False)
    assert joined.trials[1].params == alone.trials[1].params


def test_tune_space_null_entry_is_left_out(plugin_dir: Path, cache: Path) -> None:
    """The built-in space is merged under a user's: null is how a user narrows it, from YAML or the CLI."""
    optuna = pytest.importorskip("optuna")
    from mmaffect.training.tune import sample_config

    cfg = tiny_config(cache, "tune.space.batch_size=null", "tune.space.sequence_length=null")
    trial = optuna.trial.FixedTrial({"learning_rate": 3e-4, "dropout": 0.25, "hidden_units": 64, "num_layers": 2})
    trial_cfg, values = sample_config(trial, cfg)
    assert set(values) == {"learning_rate", "dropout", "hidden_units", "num_layers"}
    assert trial_cfg["optim"]["batch_size"] == 4 and trial_cfg["data"]["window"] == 20  # untouched
    assert trial_cfg["optim"]["lr"] == pytest.approx(3e-4) and trial_cfg["model_options"]["head_layers"] == 2
    narrowed = load_train_config({"imports": [PLUGIN], "model_name": TINY, "tune": {"space": {
        "batch_size": None, "hidden_units": None, "num_layers": None, "sequence_length": None}}})
    trial_cfg, values = sample_config(optuna.trial.FixedTrial({"learning_rate": 1e-5, "dropout": 0.5}), narrowed)
    assert values == {"learning_rate": 1e-5, "dropout": 0.5}
    with pytest.raises(ConfigError, match=r"tune\.space: must be a mapping .*got 3"):
        load_train_config({"imports": [PLUGIN], "model_name": TINY, "tune": {"space": {"lr": 3}}})


def _yaml_value(v: object) -> str:
    return yaml.safe_dump(json.loads(json.dumps(v)), default_flow_style=True).strip()


def _multimodal_cache(tmp_path: Path) -> Path:
    """A tiny cache with audio, 32x32 faces and 16-dimensional word vectors."""
    root = make_cache(tmp_path / "mm", samples=2205, n_frames=30, n_train=2, n_devel=1, n_test=0)
    manifest = Cache(root).read_manifest()
    rng = np.random.default_rng(0)
    for name, entry in manifest["sessions"].items():
        n = entry["n_frames"]
        write_stream(root / name / "faces-k.h5", {
            "times": np.arange(n) / 10, "faces": rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8),
            "face_mask": np.ones(n, bool), "face_boxes": np.zeros((n, 4), np.float32)})
        index = np.full((n, 30), -1, np.int32)
        index[:, :3] = rng.integers(0, 10, (n, 3))
        write_stream(root / name / "text-k.h5", {
            "times": np.arange(n) / 10, "word_vectors": rng.normal(size=(10, 16)).astype(np.float16),
            "word_tokens": np.array([f"w{i}" for i in range(10)], dtype=object), "word_index": index})
        entry["streams"].update(faces=f"{name}/faces-k.h5", text=f"{name}/text-k.h5")
    manifest["config"]["faces"]["size"] = 32
    Cache(root).write_manifest(manifest)
    return root


def test_init_from_unimodal_checkpoints(tmp_path: Path) -> None:
    """Section 5.3: a multimodal model's branches start from unimodal checkpoints (lr 0 keeps them)."""
    from mmaffect.models import create_model, tiny_overrides

    root = _multimodal_cache(tmp_path)
    unimodal = {}
    for modality, name in (("text", "text-paper"), ("audio", "audio-tzirakis2018"),
                           ("visual", "visual-hrnet3-attpool")):
        torch.manual_seed(11)
        model = create_model(name, **tiny_overrides(name))
        torch.save({"model": model.state_dict(), "config": {"model_name": name}}, tmp_path / f"{modality}.pt")
        unimodal[modality] = dict(model.named_parameters())
    overrides = [f"model_options.{k}={_yaml_value(v)}" for k, v in tiny_overrides("fusion-hierarchical").items()]
    cfg = load_train_config({"model_name": "fusion-hierarchical"}, [
        f"data.cache={root}", "data.window=10", "optim.batch_size=2", "optim.epochs=1", "optim.lr=0",
        "log.plot=false", *overrides, *[f"init_from.{m}={tmp_path / f'{m}.pt'}" for m in unimodal]])
    train(cfg, out=tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    for modality, params in unimodal.items():
        branch = {k[len("branch."):]: v for k, v in params.items() if k.startswith("branch.")}
        assert branch
        for k, v in branch.items():
            assert torch.equal(state[f"branches.{modality}.{k}"], v.detach()), (modality, k)


def test_frozen_branch_stays_as_initialised_and_a_fusion_branch_initialises_another_model(tmp_path: Path) -> None:
    """``freeze: [visual]``: the visual branch (weights and BatchNorm statistics) is exactly its
    ``init_from`` after training while the rest learns; a multimodal checkpoint's branch initialises
    another model's branch (``init_from.text=FUSION_RUN/best.pt``)."""
    from mmaffect.models import create_model, tiny_overrides

    root = _multimodal_cache(tmp_path)
    torch.manual_seed(3)
    visual = create_model("visual-hrnet3-attpool", **tiny_overrides("visual-hrnet3-attpool"))
    torch.save({"model": visual.state_dict(), "config": {"model_name": "visual-hrnet3-attpool"}}, tmp_path / "v.pt")
    overrides = [f"model_options.{k}={_yaml_value(v)}" for k, v in tiny_overrides("fusion-hierarchical").items()]
    base = [f"data.cache={root}", "data.window=10", "optim.batch_size=2", "optim.epochs=2", "optim.lr=1e-2",
            "log.plot=false", *overrides]
    with pytest.raises(ConfigError, match="random weights"):
        load_train_config({"model_name": "fusion-hierarchical"}, [*base, "freeze=[visual]"])
    with pytest.raises(ConfigError, match="freeze names branches"):
        load_train_config({"model_name": "audio-tzirakis2018"}, [f"data.cache={root}", "freeze=[visual]"])
    cfg = load_train_config({"model_name": "fusion-hierarchical"},
                            [*base, "freeze=[visual]", f"init_from.visual={tmp_path / 'v.pt'}"])
    states = []  # last.pt after each epoch
    train(cfg, out=tmp_path / "run", progress=False,
          epoch_callback=lambda _: states.append(load_checkpoint(tmp_path / "run" / "last.pt")["model"]))
    assert load_checkpoint(tmp_path / "run" / "last.pt")["config"]["freeze"] == ["visual"]
    init = {k[len("branch."):]: v for k, v in visual.state_dict().items() if k.startswith("branch.")}
    assert any("running_mean" in k for k in init)  # BatchNorm statistics are part of what stays
    for state in states:
        for k, v in init.items():
            assert torch.equal(state[f"branches.visual.{k}"], v), k
    learning = [k for k in states[0] if not k.startswith("branches.visual.")]
    assert any(not torch.equal(states[0][k], states[1][k]) for k in learning if k.startswith("branches.audio."))
    assert any(not torch.equal(states[0][k], states[1][k]) for k in learning if k.startswith("head"))
    state = states[-1]
    # the trained text branch of the fusion run starts a text-only model
    cfg = load_train_config({"model_name": "text-paper"}, [
        f"data.cache={root}", "data.window=10", "optim.batch_size=2", "optim.epochs=1", "optim.lr=0",
        "log.plot=false", *[f"model_options.{k}={_yaml_value(v)}" for k, v in tiny_overrides("text-paper").items()],
        f"init_from.text={tmp_path / 'run' / 'last.pt'}"])
    train(cfg, out=tmp_path / "text", progress=False)
    text = load_checkpoint(tmp_path / "text" / "last.pt")["model"]
    text_keys = [k for k in state if k.startswith("branches.text.")]
    assert text_keys
    for k in text_keys:
        assert torch.equal(text["branch." + k[len("branches.text."):]], state[k]), k
