"""Reliability under bad configuration, concurrency, crashes and failing output (issue 13).

Each test reproduces one failure of the issue; the fault-injection tests at
the end run real processes (two prepares into one cache, a kill -9 during
prepare, a full disk simulated with RLIMIT_FSIZE) and take a few seconds each.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmaffect.cli import main as cli_main
from mmaffect.data.cache import Cache, read_stream
from mmaffect.errors import ConfigError, DataError

PREP = ["audio.vad=energy", "text.enabled=false", "faces.size=32"]


# --------------------------------------------------------------------------- helpers


def _one_line_error(err: str, *needles: str) -> str:
    """The error output: exactly one line, no traceback, containing every needle."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _cli(*args: str, fsize: int | None = None, cwd: Path | None = None, timeout: float = 300,
         **popen) -> subprocess.CompletedProcess:
    """``mmaffect ARGS`` in a fresh process; ``fsize`` caps the size of every file it writes (a full disk)."""

    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "mmaffect.cli", *args], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=timeout, preexec_fn=limit, **popen)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmaffect.data.writers.synthetic import synthesize

    root = tmp_path_factory.mktemp("rel") / "corpus"
    synthesize(root, n_train=2, n_devel=1, n_test=0, duration=4.0, width=160, height=120, seed=5, progress=False)
    return root


@pytest.fixture(scope="module")
def cache(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "c"
    assert cli_main(["prepare", str(corpus), "--out", str(out), "--quiet", *PREP]) == 0
    return out


def _train_yaml(folder: Path, cache: Path, **extra) -> Path:
    from mmaffect.models.zoo import tiny_overrides

    cfg = {"model_name": "audio-tzirakis2018", "model_options": tiny_overrides("audio-tzirakis2018"),
           "data": {"cache": str(cache), "window": 20},
           "optim": {"batch_size": 2, "epochs": 1, "patience": None},
           "log": {"plot": False, "progress": False, "tensorboard": False}, **extra}
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch audio run (relative cache path, as a user would type it)."""
    folder = tmp_path_factory.mktemp("run")
    cfg = _train_yaml(folder, Path(os.path.relpath(cache, folder)))
    res = _cli("train", str(cfg), "--out", "r", "--quiet", cwd=folder)
    assert res.returncode == 0, res.stderr
    return folder / "r"


# --------------------------------------------------------------------------- 7. typed configuration schema


@pytest.mark.parametrize("override, key", [
    ("faces.size=abc", "faces.size"), ("faces.size=-5", "faces.size"), ("faces.size=0", "faces.size"),
    ("text.max_words=0", "text.max_words"), ("faces.min_face=2", "faces.min_face"),
    ("faces.detect_width=0", "faces.detect_width"), ("faces.detector=foo", "faces.detector"),
    ("faces.margin=-1", "faces.margin"), ("audio.vad=maybe", "audio.vad"), ("audio.vad_db=3", "audio.vad_db"),
    ("audio.vad_threshold=1.5", "audio.vad_threshold"), ("audio.loudness=abc", "audio.loudness"),
    ("faces.enabled=3", "faces.enabled"), ("text.embedder=word2vec", "text.embedder"),
])
def test_bad_prepare_values_are_one_line_errors_before_any_work(corpus, tmp_path, capsys, override, key):
    out = tmp_path / "c"
    assert cli_main(["prepare", str(corpus), "--out", str(out), override]) == 2
    line = _one_line_error(capsys.readouterr().err, key, "must be")
    assert "got" in line
    assert not out.exists()  # nothing was written


def test_haar_is_the_only_face_detector():
    from mmaffect.preprocess.pipeline import resolve_prepare_config

    assert resolve_prepare_config({"faces": {"detector": "haar"}})["faces"]["detector"] == "haar"
    with pytest.raises(ConfigError, match=r"faces\.detector: must be haar"):
        resolve_prepare_config({"faces": {"detector": "mtcnn"}})


@pytest.mark.parametrize("override, key", [
    ("optim.lr=-0.1", "optim.lr"), ("model_options.head_hidden=abc", "model_options.head_hidden"),
    ("model_options.head_hidden=0", "model_options.head_hidden"), ("device=tpu9", "device"),
    ("optim.betas=[0.9]", "optim.betas"), ("data.window=1", "data.window"), ("seed=-1", "seed"),
    ("optim.scheduler=cosine", "optim.scheduler"), ("log.tensorboard=maybe", "log.tensorboard"),
    ("model_options.head_dropout=1.5", "model_options.head_dropout"), ("tune.reduction_factor=1", "tune"),
])
def test_bad_train_values_are_one_line_errors(cache, tmp_path, capsys, override, key):
    cfg = _train_yaml(tmp_path, cache)
    out = tmp_path / "r"
    assert cli_main(["train", str(cfg), "--out", str(out), override]) == 2
    _one_line_error(capsys.readouterr().err, key, "must be")
    assert not out.exists()


def test_train_values_are_normalised_and_augment_passes_through():
    from mmaffect.training.trainer import load_train_config

    cfg = load_train_config(None, ["optim.lr=1e-4"])  # YAML 1.1 reads 1e-4 as a string
    assert cfg["optim"]["lr"] == pytest.approx(1e-4) and isinstance(cfg["optim"]["lr"], float)
    assert isinstance(cfg.get("augment", {}), dict)


def test_device_names_are_checked():
    from mmaffect.training.distributed import resolve_device

    with pytest.raises(ConfigError, match="device: must be one of auto, cpu, mps, cuda or cuda:N, got 'tpu9'"):
        resolve_device("tpu9")
    assert str(resolve_device("cpu")) == "cpu"
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:1")


@pytest.mark.parametrize("override, key", [
    ("optim.lr=-1", "optim.lr"), ("optim.optimizer=rmsprop", "optim.optimizer"), ("device=tpu9", "device"),
    ("model_options.image_size=abc", "model_options.image_size"), ("amp=maybe", "amp"),
    ("data.train_limit=0", "data.train_limit"),
])
def test_bad_pretrain_faces_values_are_one_line_errors(override, key):
    from mmaffect.training.faces import load_pretrain_config

    with pytest.raises(ConfigError) as info:
        load_pretrain_config(None, [override])
    assert key in str(info.value) and "\n" not in str(info.value)


def test_schemas_cover_every_key_of_the_builtin_configs():
    from pydantic import BaseModel

    from mmaffect.config import builtin_config
    from mmaffect.config_schema import PrepareConfig, PretrainConfig, TrainConfig, _section_of

    def check(model: type[BaseModel], cfg: dict, where: str, passthrough: set[str]) -> None:
        assert set(cfg) == set(model.model_fields) - {"augment"} | (set(cfg) & {"augment"}), where
        for key, value in cfg.items():
            section = _section_of(model.model_fields[key].annotation)
            if section is not None and key not in passthrough:
                check(section, value, f"{where}.{key}", passthrough)

    check(PrepareConfig, builtin_config("prepare"), "prepare", set())
    check(TrainConfig, builtin_config("train"), "train", {"augment"})
    check(PretrainConfig, builtin_config("pretrain_faces"), "pretrain", {"augment"})
    # the defaults validate unchanged (cache keys of existing caches stay the same)
    from mmaffect.config_schema import validate_prepare_config, validate_pretrain_config, validate_train_config

    for name, fn in (("prepare", validate_prepare_config), ("train", validate_train_config),
                     ("pretrain_faces", validate_pretrain_config)):
        assert fn(builtin_config(name)) == builtin_config(name)


# --------------------------------------------------------------------------- 2 / 17. locks and temporary files


def test_cleanup_spares_a_file_another_live_process_is_writing(cache, tmp_path):
    from filelock import FileLock

    c = Cache(shutil.copytree(cache, tmp_path / "c"))
    session = sorted(Cache(c.root).read_manifest()["sessions"])[0]
    in_flight = c.root / session / ".audio-0123456789abcdef.x1y2z3.h5"
    in_flight.write_bytes(b"half written")
    stale_manifest = c.root / ".manifest.abc123.json"
    stale_manifest.write_text("{")
    other = FileLock(c.root / ".locks" / f"session-{session}.lock")  # another process preparing the session
    other.acquire()
    try:
        c.clean_stale_files()
        c.prune()
        assert in_flight.exists()  # a live writer's temporary file is never removed
        assert not stale_manifest.exists()
    finally:
        other.release()
    c.clean_stale_files()  # once the writer is gone (killed), the next prepare removes it
    assert not in_flight.exists()


def test_next_prepare_removes_temp_files_of_a_killed_one_even_for_other_sessions(cache, corpus, tmp_path):
    c = Cache(shutil.copytree(cache, tmp_path / "c"))
    names = sorted(c.read_manifest()["sessions"])
    leftovers = [c.root / names[0] / ".faces-deadbeef.q1w2e3.h5", c.root / names[1] / ".audio-feed.a1.h5",
                 c.root / ".manifest.k9.json"]
    for f in leftovers:
        f.write_bytes(b"x")
    assert cli_main(["prepare", str(corpus), "--out", str(c.root), "--quiet", "--sessions", names[2], *PREP]) == 0
    assert not any(f.exists() for f in leftovers)


def test_second_train_into_a_held_run_folder_is_refused(cache, tmp_path, capsys):
    from filelock import FileLock

    cfg = _train_yaml(tmp_path, cache)
    out = tmp_path / "r"
    out.mkdir()
    holder = FileLock(out / ".lock")  # a first `train --out r` still running
    holder.acquire()
    try:
        assert cli_main(["train", str(cfg), "--out", str(out)]) == 2
        _one_line_error(capsys.readouterr().err, str(out), "another process")
        assert not (out / "last.pt").exists() and not (out / "config.yaml").exists()
    finally:
        holder.release()


# --------------------------------------------------------------------------- 16. checkpoint-load errors


class _Foreign:
    """A pickled object that ``weights_only`` loading refuses."""


def test_checkpoint_load_errors_are_one_line(tmp_path, run):
    from mmaffect.checkpoints import load_checkpoint

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError, match="empty") as info:
        load_checkpoint(empty)
    cut = tmp_path / "cut.pt"
    cut.write_bytes((run / "last.pt").read_bytes()[:3000])
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint\n")
    import torch

    pickled = tmp_path / "pickled.pt"
    torch.save({"model": _Foreign(), "config": {}}, pickled)
    messages = [str(info.value)]
    for path in (cut, garbage, pickled):
        with pytest.raises(ConfigError) as info:
            load_checkpoint(path)
        messages.append(str(info.value))
    for m in messages:
        assert "\n" not in m and "weights_only" not in m and "trusted source" not in m, m
    assert "truncated or damaged" in messages[1] and "not a PyTorch checkpoint" in messages[2]


# --------------------------------------------------------------------------- 4. output I/O errors


def test_unwritable_output_is_one_line_naming_the_path(corpus, run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = blocker / "out"  # a folder under a regular file cannot be created (like a read-only folder)
    video = sorted((corpus / "video").iterdir())[0]
    cases = {
        "synth": ["synth", str(bad), "--train", "1", "--devel", "0", "--test", "0", "--duration", "4", "--quiet"],
        "prepare": ["prepare", str(corpus), "--out", str(bad), "--quiet", *PREP],
        "train": ["train", str(run / "config.yaml"), "--out", str(bad), "--quiet"],
        "export": ["export", str(run / "best.pt"), "--out", str(bad), "--no-verify"],
        "predict": ["predict", str(video), "--audio", str(corpus / "audio" / f"{video.stem}.wav"),
                    "--checkpoint", str(run), "--out", str(bad), "--no-figures", "--quiet"],
    }
    for name, args in cases.items():
        res = _cli(*args)
        assert res.returncode == 2, (name, res.stderr[-2000:])
        _one_line_error(res.stderr, f"mmaffect {name}: error:", str(blocker))


def test_full_disk_during_prepare_is_one_line(corpus, tmp_path):
    out = tmp_path / "c"
    res = _cli("prepare", str(corpus), "--out", str(out), "--quiet", *PREP, fsize=20_000)
    assert res.returncode == 2, res.stderr[-3000:]
    line = _one_line_error(res.stderr, "mmaffect prepare: error:", str(out))
    assert "File too large" in line or "No space" in line or "write" in line
    # nothing half-written is left, and a prepare with space completes
    assert not [p for p in out.rglob(".*") if p.is_file()]
    res = _cli("prepare", str(corpus), "--out", str(out), "--quiet", *PREP)
    assert res.returncode == 0, res.stderr[-3000:]


def test_full_disk_in_synth_export_and_predict_is_one_line(corpus, run, tmp_path):
    video = sorted((corpus / "video").iterdir())[0]
    cases = {
        "synth": (["synth", str(tmp_path / "s"), "--train", "1", "--devel", "0", "--test", "0", "--duration", "4",
                   "--quiet"], str(tmp_path / "s")),
        "export": (["export", str(run / "best.pt"), "--out", str(tmp_path / "x"), "--no-verify"], str(run)),
        "predict": (["predict", str(video), "--audio", str(corpus / "audio" / f"{video.stem}.wav"), "--checkpoint",
                     str(run), "--out", str(tmp_path / "p"), "--no-figures", "--quiet"],
                    "audio.wav: cannot write the decoded audio"),
    }
    for name, (args, where) in cases.items():
        res = _cli(*args, fsize=20_000)
        assert res.returncode == 2, (name, res.stderr[-3000:])
        _one_line_error(res.stderr, f"mmaffect {name}: error:", where)


def test_full_disk_during_train_keeps_the_run_resumable(run, tmp_path):
    r = Path(shutil.copytree(run, tmp_path / "r"))
    before = (r / "last.pt").read_bytes()
    res = _cli("train", "-", "--resume", "--out", str(r), "optim.epochs=2", "--quiet",
               fsize=len(before) // 2)
    assert res.returncode == 2, res.stderr[-3000:]
    _one_line_error(res.stderr, "mmaffect train: error:", str(r))
    assert (r / "last.pt").read_bytes() == before  # the previous checkpoint is intact
    assert not [p for p in r.iterdir() if p.name.startswith(".") and p.suffix == ".pt"]
    res = _cli("train", "-", "--resume", "--out", str(r), "optim.epochs=2", "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    import torch

    assert torch.load(r / "last.pt", weights_only=True)["epoch"] == 2


# --------------------------------------------------------------------------- 5. truncated stream file


def test_prepare_recomputes_a_truncated_stream_file(cache, corpus, tmp_path, capsys):
    c = Cache(shutil.copytree(cache, tmp_path / "c"))
    session = c.sessions()[0]
    victim = session.streams["audio"]
    good = read_stream(victim)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(DataError):
        read_stream(victim)
    assert cli_main(["prepare", str(corpus), "--out", str(c.root), "--quiet", *PREP]) == 0
    assert "streams computed 1," in capsys.readouterr().out
    again = read_stream(victim)
    assert all(np.array_equal(good[k], again[k]) for k in good)


# --------------------------------------------------------------------------- 8. ONNX face size


def test_onnx_runs_on_prepared_crops_and_matches_predict(cache, corpus, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    import mmaffect
    from mmaffect.models.zoo import tiny_overrides

    visual = {"model_name": "visual-hrnet3-attpool", "data": {"cache": str(cache), "window": 20},
              "optim": {"batch_size": 2, "epochs": 1, "patience": None},
              "log": {"plot": False, "progress": False, "tensorboard": False}}
    # a model sized for other crops than the cache holds is refused before any work (faces.size=32 here)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({**visual, "model_options": {**tiny_overrides("visual-hrnet3-attpool"),
                                                                 "image_size": 48}}))
    res = _cli("train", str(wrong), "--out", str(tmp_path / "w"), "--quiet")
    assert res.returncode == 2
    _one_line_error(res.stderr, "model_options.image_size=48", "32×32 (faces.size)")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({**visual, "model_options": tiny_overrides("visual-hrnet3-attpool")}))
    res = _cli("train", str(good), "--out", str(tmp_path / "r"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert cli_main(["export", str(tmp_path / "r" / "best.pt"), "--out", str(tmp_path / "onnx"),
                     "--parts", "model"]) == 0
    capsys.readouterr()
    meta = json.loads((tmp_path / "onnx" / "preprocessing.json").read_text())
    assert meta["faces"]["size"] == 32 and "INTER_AREA" in meta["faces"]["resize"]
    session = next(s for s in Cache(cache).sessions() if s.name == "Train_01")
    arrays = session.load(streams=("faces",))
    faces = arrays["faces"]
    assert faces.shape[1:3] == (meta["faces"]["size"],) * 2  # the graph takes the crops prepare wrote
    n = len(faces)
    sess = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    layers, hidden = meta["state"]["layers"], meta["state"]["hidden"]
    feed = {"faces": (faces.transpose(0, 3, 1, 2)[None] / np.float32(255)).astype(np.float32),
            "face_mask": arrays["face_mask"][None], "mask": np.ones((1, n), bool),
            "h0": np.zeros((layers, 1, hidden), np.float32), "c0": np.zeros((layers, 1, hidden), np.float32)}
    pred = sess.run(["pred"], feed)[0][0]
    predictor = mmaffect.load(tmp_path / "r" / "best.pt", device="cpu")
    got = predictor.predict_full(corpus / "video" / "Train_01.avi", context="none")  # the state carried, as fed
    assert np.array_equal(got.frame["face"].to_numpy().astype(bool), arrays["face_mask"])
    # predict leaves frames without any input empty (the graph returns the network's raw output there)
    from mmaffect.inference.predictor import frames_without_input

    empty = frames_without_input(arrays["face_mask"].astype(bool), 20)
    assert np.isnan(got.values[empty]).all() and (~empty).sum() > n // 2
    np.testing.assert_allclose(pred[~empty], got.values[~empty], atol=1e-4)
    # predict's default context window, done with the graph as docs/export.md says: each window of
    # context_frames run from a zero state, blended by mmaffect.models.temporal.window_weights
    from mmaffect.models.temporal import window_weights

    w = meta["context_frames"]
    hop, first, weight = (v.numpy() if hasattr(v, "numpy") else v for v in window_weights(w))
    total, norm = np.zeros((n, 2)), np.zeros((n, 1))
    for start in range(0, n, hop):
        part = {k: (v[:, start:start + w] if k not in ("h0", "c0") else v) for k, v in feed.items()}
        out = sess.run(["pred"], part)[0][0]
        wt = (first if start == 0 else weight)[: len(out), None]
        total[start:start + len(out)] += out * wt
        norm[start:start + len(out)] += wt
    windowed = predictor.predict_full(corpus / "video" / "Train_01.avi")
    assert w == 20 and windowed.report["context_frames"] == 20
    np.testing.assert_allclose((total / norm)[~empty], windowed.values[~empty], atol=1e-4)


# --------------------------------------------------------------------------- 9, 10. runs used from elsewhere


def test_run_records_an_absolute_cache_path_and_evaluates_from_elsewhere(run, tmp_path, monkeypatch, capsys):
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert Path(cfg["data"]["cache"]).is_absolute()
    monkeypatch.chdir(tmp_path)
    assert cli_main(["evaluate", str(run)]) == 0


def test_compare_a_run_with_itself_and_too_few_recordings(run, tmp_path, capsys):
    assert cli_main(["evaluate", "--compare", str(run), str(run)]) == 2
    _one_line_error(capsys.readouterr().err, "same run")
    other = Path(shutil.copytree(run, tmp_path / "copy"))
    assert cli_main(["evaluate", "--compare", str(run), str(other)]) == 2  # identical scores: no test
    _one_line_error(capsys.readouterr().err, "non-zero difference")
    from mmaffect.training.stats import wilcoxon_test

    r = wilcoxon_test([0.5, 0.7], [0.4, 0.6])
    assert r.min_p_value == 0.5 and not r.significant(0.05)


# --------------------------------------------------------------------------- 12. info


def test_info_on_a_missing_or_empty_folder_is_an_error(tmp_path, capsys):
    assert cli_main(["info", str(tmp_path / "nonexistent")]) == 2
    _one_line_error(capsys.readouterr().err, "no such folder")
    assert cli_main(["info", str(tmp_path), "--config"]) == 2
    _one_line_error(capsys.readouterr().err, "not a cache")
    # a prepare killed before its first session: a manifest without configuration, marked incomplete
    Cache(tmp_path).update_manifest(lambda m: m.update(pending=["Train_01"]))
    assert cli_main(["info", str(tmp_path)]) == 0
    assert "incomplete: 1 session(s)" in capsys.readouterr().out
    assert cli_main(["info", str(tmp_path), "--config"]) == 2
    _one_line_error(capsys.readouterr().err, "no configuration recorded")


# --------------------------------------------------------------------------- 13. built-in configurations


def test_builtin_configs_are_named_from_any_folder_and_show_progress(cache, tmp_path):
    small = ["model_options.channels=[4, 4, 4]", "model_options.head_hidden=8", "data.window=20",
             "optim.epochs=1", "log.plot=false", "log.tensorboard=false", f"data.cache={cache}"]
    for k, name in enumerate(("synthetic/audio", "configs/synthetic/audio.yaml")):
        res = _cli("train", name, *small, "--out", str(tmp_path / f"r{k}"), cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "epoch 1: train loss" in res.stderr  # the synthetic configs show progress while training
    res = _cli("train", "synthetic/nothing", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert res.returncode == 2
    _one_line_error(res.stderr, "synthetic/nothing", "built-in: ", "synthetic/audio")


def test_builtin_configs_ship_in_the_wheel(tmp_path):
    root = Path(__file__).resolve().parents[1]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(root)], capture_output=True, text=True, timeout=600)
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip().splitlines()[-1:]}")
    site = tmp_path / "site"
    wheel = next((tmp_path / "dist").glob("mmaffect-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    code = ("import mmaffect, sys; from mmaffect.config import builtin_names, load_config\n"
            "assert mmaffect.__file__.startswith(sys.argv[1]), mmaffect.__file__\n"
            "names = builtin_names(); print(names)\n"
            "assert all(load_config(n) for n in names)")
    env = {**os.environ, "PYTHONPATH": str(site)}
    res = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "synthetic/fusion" in res.stdout and "pretrain_faces" in res.stdout


# --------------------------------------------------------------------------- 14. command line


def test_broken_pipe_is_quiet():
    proc = subprocess.Popen([sys.executable, "-m", "mmaffect.cli", "pretrained"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env())
    proc.stdout.close()  # the reader went away before the first line (`| head -0`)
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_help_and_usage(corpus, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    assert "``" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["prepare"])
    err = capsys.readouterr().err
    assert "required: data, --out" in err and "overrides" not in err.split("required:")[1]
    with pytest.raises(SystemExit):
        cli_main(["prepare", str(corpus), "--out", str(tmp_path / "c"), "--quiet", "faces.size"])
    err = capsys.readouterr().err
    assert err.startswith("usage: mmaffect prepare") and "'faces.size' is not of the form key=value" in err


# --------------------------------------------------------------------------- 18. digits of other scripts


def test_non_ascii_digits_are_not_numbers(tmp_path):
    from mmaffect.data.tables import parse_number

    for text in ("١", "１.５", "٣e2"):
        with pytest.raises(DataError, match="ASCII digits"):
            parse_number(text, path=tmp_path / "labels.csv", row=2, column="time")
    assert parse_number("1.5e1", path=tmp_path / "labels.csv", row=2, column="time") == 15.0


# --------------------------------------------------------------------------- 19. DDP warning


def test_pooled_loss_all_reduce_raises_no_future_warning(tmp_path):
    import torch
    import torch.distributed as dist

    from mmaffect.training.distributed import DistContext, pooled_ccc_loss

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ctx = DistContext(rank=0, world_size=2)  # take the multi-process code path in a one-process group
        pred = torch.randn(2, 10, 2, requires_grad=True)
        gold = torch.randn(2, 10, 2)
        mask = torch.ones(2, 10, dtype=torch.bool)
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            loss = pooled_ccc_loss(pred, gold, mask, ctx=ctx)
            loss.backward()
        assert torch.isfinite(loss) and pred.grad is not None and torch.isfinite(pred.grad).all()
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- fault injection


def test_two_concurrent_prepares_into_one_cache_keep_both(tmp_path):
    from mmaffect.data.writers.synthetic import synthesize

    # sessions long enough (several seconds of work each) that the two runs overlap whatever their start-up
    corpus = tmp_path / "corpus"
    synthesize(corpus, n_train=2, n_devel=0, n_test=0, duration=12.0, width=160, height=120, seed=7, progress=False)
    out = tmp_path / "c"
    procs = [subprocess.Popen([sys.executable, "-m", "mmaffect.cli", "prepare", str(corpus), "--out", str(out),
                               "--quiet", "--sessions", name, *PREP], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("Train_01", "Train_02")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    manifest = Cache(out).read_manifest()
    assert sorted(manifest["sessions"]) == ["Train_01", "Train_02"]
    assert not manifest.get("pending")
    for s in Cache(out).sessions():
        for path in filter(None, s.streams.values()):
            read_stream(path)
    assert not [p for p in out.rglob(".*") if p.is_file() and p.parent.name != ".locks"]


def test_kill_9_during_prepare_then_a_clean_prepare(corpus, cache, tmp_path, capsys):
    out = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-m", "mmaffect.cli", "prepare", str(corpus), "--out", str(out),
                             "--quiet", *PREP], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        m = out / "manifest.json"
        if m.exists() and json.loads(m.read_text()).get("pending") and any((out / "Train_01").glob("*")):
            break
        time.sleep(0.05)
    killed_early = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if killed_early and len(Cache(out).read_manifest()["sessions"]) < 3:  # killed mid-way: marked incomplete
        assert Cache(out).read_manifest().get("pending")
        assert cli_main(["info", str(out)]) == 0
        assert "incomplete" in capsys.readouterr().out
    assert cli_main(["prepare", str(corpus), "--out", str(out), "--quiet", *PREP]) == 0
    capsys.readouterr()
    assert not Cache(out).read_manifest().get("pending")
    assert not [p for p in out.rglob(".*") if p.is_file() and p.parent.name != ".locks"]
    ref = {s.name: s for s in Cache(cache).sessions()}
    for s in Cache(out).sessions():
        a, b = s.load(), ref[s.name].load()
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype, (s.name, k)
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{s.name} {k}")  # NaN (no face) equals NaN


# --------------------------------------------------------------------------- 3. orphans


def _session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the killed parent's workers and resource tracker)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state, ppid, pgrp, session, ...
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_kill_9_of_prepare_with_workers_leaves_no_orphans(corpus, tmp_path):
    out = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-m", "mmaffect.cli", "prepare", str(corpus), "--out", str(out),
                             "--quiet", "--workers", "2", *PREP], env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        working = [p for p in _session_members(proc.pid) if p != proc.pid]
        if len(working) >= 2 and any(out.glob("*_0*")):  # workers up and a session folder started
            break
        time.sleep(0.05)
    assert proc.poll() is None, "prepare finished before it could be killed"
    children = [p for p in _session_members(proc.pid) if p != proc.pid]
    assert len(children) >= 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _session_members(proc.pid)
    for pid in left:  # do not leave them running whatever the outcome
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes outlived the killed prepare: {left}"
    # and the cache is usable: the next prepare completes it
    assert cli_main(["prepare", str(corpus), "--out", str(out), "--quiet", *PREP]) == 0


# --------------------------------------------------------------------------- 1. one configuration per cache


def test_a_cache_prepared_with_two_configurations_is_refused_by_name(cache, corpus, tmp_path, capsys):
    c = Cache(shutil.copytree(cache, tmp_path / "c"))
    assert cli_main(["prepare", str(corpus), "--out", str(c.root), "--quiet", "--sessions", "Train_01",
                     *PREP[:-1], "faces.size=24"]) == 0
    warn = capsys.readouterr().err
    assert "warning:" in warn and "Train_01" in warn and "faces.size=24" in warn
    manifest = c.read_manifest()
    assert manifest["config"] is None  # the manifest never states a configuration some arrays lack
    assert len({e["config"] for e in manifest["sessions"].values()}) == 2
    with pytest.raises(DataError, match="session Train_01 has faces.size=24") as err:
        c.config()
    assert "sessions Devel_01, Train_02 have faces.size=32" in str(err.value)
    # training on it is a one-line error naming the sessions, before any work
    out = tmp_path / "run"
    res = _cli("train", str(_train_yaml(tmp_path, c.root)), "--out", str(out), "--quiet")
    assert res.returncode == 2
    _one_line_error(res.stderr, "mixes 2 preprocessing configurations", "Train_01")
    assert not (out / "last.pt").exists()
    assert cli_main(["info", str(c.root)]) == 0
    assert "warning: cache mixes" in capsys.readouterr().out
    assert cli_main(["info", str(c.root), "--config"]) == 2
    _one_line_error(capsys.readouterr().err, "mixes 2 preprocessing configurations")
    # preparing every session with one configuration makes the cache whole again
    assert cli_main(["prepare", str(corpus), "--out", str(c.root), "--quiet", *PREP[:-1], "faces.size=24"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert c.config()["faces"]["size"] == 24
    assert set(c.read_manifest()["configs"]) == {e["config"] for e in c.read_manifest()["sessions"].values()}


def test_a_cache_written_before_per_session_configurations_is_keyed_on_its_next_prepare(cache, corpus, tmp_path):
    c = Cache(shutil.copytree(cache, tmp_path / "c"))
    manifest = c.read_manifest()
    manifest.pop("configs", None)
    for entry in manifest["sessions"].values():
        entry.pop("config", None)
    c.write_manifest(manifest)
    assert c.config() == manifest["config"]  # read as before
    assert cli_main(["prepare", str(corpus), "--out", str(c.root), "--quiet", "--sessions", "Devel_01",
                     *PREP, "text.delay=0"]) == 0
    with pytest.raises(DataError, match="session Devel_01 has text.delay=0"):
        c.config()


# --------------------------------------------------------------------------- 11. truncated video, turns past the end


def _truncate_video(src: Path, dest: Path, seconds: float) -> None:
    import av

    with av.open(str(src)) as inp, av.open(str(dest), "w") as out:
        sin = inp.streams.video[0]
        sout = out.add_stream("mpeg4", rate=int(sin.average_rate))
        sout.width, sout.height, sout.pix_fmt = sin.codec_context.width, sin.codec_context.height, "yuv420p"
        for k, frame in enumerate(inp.decode(sin)):
            if k >= seconds * float(sin.average_rate):
                break
            out.mux(sout.encode(frame.reformat(format="yuv420p")))
        out.mux(sout.encode(None))


def test_a_video_that_ends_early_is_said_and_counted(corpus, tmp_path, capsys):
    short = Path(shutil.copytree(corpus, tmp_path / "corpus"))
    video = short / "video" / "Train_01.avi"
    _truncate_video(corpus / "video" / "Train_01.avi", video, 1.2)
    out = tmp_path / "c"
    assert cli_main(["prepare", str(short), "--out", str(out), "--quiet", "--sessions", "Train_01", *PREP]) == 0
    err = capsys.readouterr().err
    assert "warning: Train_01: the video ends before the recording:" in err
    faces = Cache(out).sessions()[0].report["faces"]
    assert faces["n_beyond_video"] >= 25 and faces["n_faces_found"] <= 15
    assert f"{faces['n_beyond_video']} of {faces['n_frames']} frames" in err


def test_transcript_turns_past_the_end_are_refused_by_prepare_as_by_predict(corpus, tmp_path, capsys):
    late = Path(shutil.copytree(corpus, tmp_path / "corpus"))
    transcript = late / "transcriptions" / "Train_01.csv"
    transcript.write_text(transcript.read_text() + "9.00;10.00;'words of another recording'\n")
    assert cli_main(["prepare", str(late), "--out", str(tmp_path / "c"), "--quiet", "--sessions", "Train_01",
                     "audio.vad=energy", "faces.enabled=false"]) == 2
    line = _one_line_error(capsys.readouterr().err, str(transcript), "at 10.00 s", "ends after the recording")
    from mmaffect.inference.predictor import read_transcript
    from mmaffect.data.session import check_turns_within

    with pytest.raises(DataError) as err:  # the rule predict applies (inference.predictor)
        check_turns_within(read_transcript(transcript), 4.0, path=transcript, what="transcript")
    assert str(err.value) in line
    # within the tolerance (annotators round up) both accept
    transcript.write_text((corpus / "transcriptions" / "Train_01.csv").read_text() + "3.50;4.30;'late'\n")
    assert cli_main(["prepare", str(late), "--out", str(tmp_path / "c"), "--quiet", "--sessions", "Train_01",
                     "audio.vad=energy", "faces.enabled=false"]) == 0


# --------------------------------------------------------------------------- fault injection: random kills, real rivals
# The moments are drawn at random (MMAFFECT_FAULT_SEED fixes them; the drawn value is in the assertion
# messages), so repeated CI runs probe different points of each command.

_FAULTS = np.random.default_rng(int(os.environ.get("MMAFFECT_FAULT_SEED", time.time_ns() % 2**32)))


def _wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _weights(path: Path) -> dict:
    import torch

    return torch.load(path, weights_only=True)["model"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_kill_9_of_prepare_workers_at_a_random_moment(corpus, cache, tmp_path):
    out = tmp_path / "c"
    delay = float(_FAULTS.uniform(0.0, 4.0))
    proc = subprocess.Popen([sys.executable, "-m", "mmaffect.cli", "prepare", str(corpus), "--out", str(out),
                             "--quiet", "--workers", "2", *PREP], env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: len(_session_members(proc.pid)) >= 3, 120, proc)  # parent + 2 workers
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _wait_for(lambda: not _session_members(proc.pid), 30)
    left = _session_members(proc.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"orphans after a kill {delay:.2f} s after the workers started: {left}"
    res = _cli("prepare", str(corpus), "--out", str(out), "--quiet", *PREP)
    assert res.returncode == 0, res.stderr
    assert not [p for p in out.rglob(".*") if p.is_file() and p.parent.name != ".locks"]
    ref = {s.name: s for s in Cache(cache).sessions()}
    for s in Cache(out).sessions():  # nothing lost, nothing mixed: the arrays of a clean prepare
        a, b = s.load(), ref[s.name].load()
        assert a.keys() == b.keys(), delay
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"kill at +{delay:.2f} s: {s.name} {k}")


def test_train_removes_the_temporary_checkpoint_of_a_killed_writer(cache, tmp_path):
    # a kill during the first write of last.pt leaves its temporary and no last.pt: the next run starts
    # fresh in that folder and must not keep the half-written file
    cfg = _train_yaml(tmp_path, cache, seed=3)
    out = tmp_path / "run"
    out.mkdir()
    (out / ".last.k1ll3d5x.pt").write_bytes(b"half a checkpoint")
    res = _cli("train", str(cfg), "--out", str(out), "--quiet", "optim.epochs=1")
    assert res.returncode == 0, res.stderr
    assert (out / "last.pt").is_file() and not (out / ".last.k1ll3d5x.pt").exists()


def test_kill_9_of_train_at_a_random_moment_then_resume(cache, tmp_path):
    cfg = _train_yaml(tmp_path, cache, seed=3)
    ref = tmp_path / "ref"
    t0 = time.monotonic()
    res = _cli("train", str(cfg), "--out", str(ref), "--quiet", "optim.epochs=3")
    assert res.returncode == 0, res.stderr
    delay = float(_FAULTS.uniform(0.5, max(1.0, time.monotonic() - t0)))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mmaffect.cli", "train", str(cfg), "--out", str(out), "--quiet",
                             "optim.epochs=3"], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resume = ["--resume"] if (out / "last.pt").exists() else []
    res = _cli("train", str(cfg), "--out", str(out), "--quiet", "optim.epochs=3", *resume)
    assert res.returncode == 0, f"kill at +{delay:.2f} s: {res.stderr}"
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.suffix == ".pt"]
    a, b = _weights(ref / "last.pt"), _weights(out / "last.pt")
    for k in a:  # the interrupted run ends with the weights of the uninterrupted one
        assert np.array_equal(a[k].numpy(), b[k].numpy()), f"kill at +{delay:.2f} s: {k} differs"


def test_two_real_trains_into_one_run_folder(cache, tmp_path):
    from filelock import FileLock, Timeout

    out = tmp_path / "r"
    first = subprocess.Popen([sys.executable, "-m", "mmaffect.cli", "train", str(_train_yaml(tmp_path, cache, seed=1)),
                              "--out", str(out), "--quiet", "optim.epochs=100000"], env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def held() -> bool:
        if not (out / ".lock").exists():
            return False
        try:
            FileLock(out / ".lock").acquire(timeout=0)
        except Timeout:
            return True
        FileLock(out / ".lock").release()
        return False

    assert _wait_for(held, 120, first), "the first train never held its run folder"
    other = tmp_path / "other"
    other.mkdir()
    second = _cli("train", str(_train_yaml(other, cache, seed=2)), "--out", str(out), "--quiet")
    assert second.returncode == 2
    _one_line_error(second.stderr, str(out), "another process")
    assert first.poll() is None, first.stderr.read()  # still training: the refusal was the lock's
    assert _wait_for(lambda: (out / "best.pt").exists(), 300, first)
    first.kill()
    first.wait()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["seed"] == 1  # one run's files only: config, last.pt and best.pt of the first
    import torch

    last = torch.load(out / "last.pt", weights_only=True)
    assert last["config"]["seed"] == 1 and torch.load(out / "best.pt", weights_only=True)["config"]["seed"] == 1


def test_unwritable_and_full_output_of_evaluate_viz_and_tune(run, tmp_path):
    r = Path(shutil.copytree(run, tmp_path / "r"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = blocker / "out"
    tune_cfg = _train_yaml(tmp_path, Cache(yaml.safe_load((r / "config.yaml").read_text())["data"]["cache"]).root)
    unwritable = {
        "evaluate": ["evaluate", str(r / "best.pt"), "--out", str(bad)],
        "tune": ["tune", str(tune_cfg), "--trials", "1", "--out", str(bad), "--quiet"],
    }
    for name, args in unwritable.items():
        res = _cli(*args)
        assert res.returncode == 2, (name, res.stderr[-2000:])
        _one_line_error(res.stderr, f"mmaffect {name}: error:", str(blocker))
    res = _cli("evaluate", str(r), fsize=100)  # writes RUN/eval/: the disk fills
    assert res.returncode == 2, res.stderr[-2000:]
    _one_line_error(res.stderr, "mmaffect evaluate: error:", str(r))
    assert _cli("evaluate", str(r)).returncode == 0  # with space it completes
    res = _cli("viz", "traces", str(r), "--out", str(bad))
    assert res.returncode == 2, res.stderr[-2000:]
    _one_line_error(res.stderr, "mmaffect viz: error:", str(blocker))
    res = _cli("viz", "traces", str(r), "--out", str(tmp_path / "v"), fsize=100)
    assert res.returncode == 2, res.stderr[-2000:]
    _one_line_error(res.stderr, "mmaffect viz: error:", str(tmp_path / "v"))


def _toy_ferplus(folder: Path) -> Path:
    """A few toy faces in the FER+ file layout (pretrain-faces' input)."""
    from mmaffect.training.faces import FERPLUS_CATEGORIES

    columns = [*FERPLUS_CATEGORIES, "unknown", "NF"]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in ("train", "valid"):
        votes = np.zeros((8, len(columns)), np.uint8)
        votes[np.arange(8), np.arange(8) % 2] = 9
        np.savez(folder / f"ferplus_{split}.npz", images=rng.integers(0, 255, (8, 48, 48)).astype(np.uint8),
                 votes=votes, columns=np.array(columns), names=np.array([f"{split}{i}.png" for i in range(8)]))
    return folder


def test_unwritable_and_full_output_of_pretrain_faces_and_adapt(tmp_path):
    from mmaffect.data.sources import shared_data_root

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = blocker / "out"
    faces = ["pretrain-faces", "--quiet", f"data.root={_toy_ferplus(tmp_path / 'fer')}", "optim.epochs=1",
             "model_options.widths=[4,8,16]", "model_options.stem_channels=8", "model_options.blocks=1",
             "model_options.n_attention_classes=16", "model_options.image_size=32"]
    commands = {"pretrain-faces": faces}
    root = shared_data_root()
    if root is not None and (root / "emodb").is_dir():  # else adapt is not tried (shared data absent)
        commands["adapt"] = ["adapt", "emodb", "--src", str(root / "emodb"), "--limit", "2"]
    for name, args in commands.items():
        for out, fsize, where in ((bad, None, blocker), (tmp_path / name, 100, tmp_path / name)):
            res = _cli(*args, "--out", str(out), fsize=fsize)
            assert res.returncode == 2, (name, res.stderr[-2000:])
            _one_line_error(res.stderr, f"mmaffect {name}: error:", str(where))
