"""Shared fixtures: a short real talking-face recording (mp4 with AAC audio, wav, transcript)."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
import soundfile as sf


def tiny_checkpoint(path: Path, name: str, *, seed: int = 0, delay: float = 0.0, window: int | None = None) -> Path:
    """A ``mmaffect train``-style checkpoint of a tiny registered model (random weights);
    ``window``: its training window ``data.window`` (None: trained on whole recordings)."""
    import torch

    from mmaffect.models import create_model
    from mmaffect.models.zoo import tiny_overrides
    from mmaffect.preprocess.pipeline import resolve_prepare_config
    from mmaffect.checkpoints import save_checkpoint

    opts = tiny_overrides(name)
    if name.startswith("fusion-"):
        opts["embed_dim"] = 384  # the offline MiniLM embedder's size
    torch.manual_seed(seed)
    model = create_model(name, **opts)
    face = opts.get("image_size", 32)
    save_checkpoint(path, model=model, optimizer=None, scheduler=None, epoch=1, step=1, best_score=0.0,
                    best_epoch=1, stale_epochs=0, history=[],
                    config={"model_name": name, "model_options": opts,
                            "data": {"annotation_delay": delay, "window": window}},
                    prepare_config=resolve_prepare_config({"faces": {"size": face}}))
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI, expect exit 2 and a one-line error without a traceback; return it."""
    from mmaffect.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def mux(video: Path, audio: Path | None, dest: Path) -> Path:
    """An mp4 with the frames of ``video`` and (optionally) ``audio`` as an AAC track."""
    with av.open(str(video)) as src, av.open(str(dest), "w") as out:
        vin = src.streams.video[0]
        vout = out.add_stream("mpeg4", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        aout = None
        if audio is not None:
            wave, sr = sf.read(str(audio), dtype="float32")
            aout = out.add_stream("aac", rate=sr, layout="mono")
        for i, frame in enumerate(src.decode(vin)):
            f = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            f.pts = i
            out.mux(vout.encode(f))
        out.mux(vout.encode(None))
        if aout is not None:
            for k in range(0, len(wave), 1024):
                af = av.AudioFrame.from_ndarray(wave[None, k:k + 1024].copy(), format="fltp", layout="mono")
                af.sample_rate = sr
                af.pts = k
                out.mux(aout.encode(af))
            out.mux(aout.encode(None))
    return dest


@pytest.fixture(scope="session")
def predict_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An 8-s synthetic talking-face clip written by :func:`mmaffect.data.writers.synthetic.synthesize`
    (real avi/wav files, decoded by FFmpeg) plus muxed mp4s with and without audio."""
    from mmaffect.data.writers.synthetic import synthesize

    root = tmp_path_factory.mktemp("media")
    synthesize(root / "corpus", n_train=1, n_devel=0, n_test=0, duration=8.0, seed=3, progress=False)
    corpus = root / "corpus"
    name = sorted((corpus / "video").iterdir())[0].stem
    files = {
        "corpus": corpus,
        "avi": corpus / "video" / f"{name}.avi",
        "wav": corpus / "audio" / f"{name}.wav",
        "transcript": corpus / "transcriptions" / f"{name}.csv",
        "turns": corpus / "turns" / f"{name}.csv",
    }
    files["mp4"] = mux(files["avi"], files["wav"], root / "talk.mp4")
    files["silent_mp4"] = mux(files["avi"], None, root / "silent.mp4")
    return files
