"""Where `mmaffect predict`'s time goes: each stage of one prediction run alone, wall and CPU seconds.

``predict`` overlaps face tracking with the other stages; here they run one
after the other in one process, so each stage's cost can be read on its own
(docs/benchmarks.md, "prepare and predict against the 20× goals").
``--absent-scan-every 0`` and ``--encoder transformers`` time the face
tracker and the embedder as they were before those speed-ups.

Usage::

    python benchmarks/bench_predict.py --paper --minutes 3 --workdir /tmp/bp     # writes the recording and paper.pt
    python benchmarks/profile_predict.py --workdir /tmp/bp [--threads 2] [--absent-scan-every 0] [--encoder transformers]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _clock() -> tuple[float, float]:
    t = os.times()
    return time.perf_counter(), t.user + t.system


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="bench_predict.py's work folder (rec3min/, paper.pt)")
    p.add_argument("--checkpoint", help="default: WORKDIR/paper.pt")
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--absent-scan-every", type=float, default=None, help="override faces.absent_scan_every")
    p.add_argument("--encoder", default="auto", choices=("auto", "transformers"), help="the embedder's encoder")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows: list[tuple[str, float, float]] = []
    last = _clock()

    def stage(name: str) -> None:
        nonlocal last
        now = _clock()
        rows.append((name, now[0] - last[0], now[1] - last[1]))
        last = now

    import torch

    torch.set_num_threads(args.threads)
    import mmaffect
    from mmaffect.data.dataset import collate, frames_to_item
    from mmaffect.data.session import LABEL_RATE, frame_times
    from mmaffect.inference.predictor import read_transcript
    from mmaffect.preprocess.audio import decode_audio_to_file
    from mmaffect.preprocess.embedders import HFWordEmbedder, get_embedder
    from mmaffect.preprocess.faces import iter_faces, new_face_report
    from mmaffect.preprocess.stream import AudioFrames, face_chunks, face_options

    work = Path(args.workdir)
    rec = work / f"rec{args.minutes:g}min"
    stem = sorted((rec / "video").iterdir())[0].stem
    video, audio, text = rec / "video" / f"{stem}.avi", rec / "audio" / f"{stem}.wav", rec / "transcriptions" / f"{stem}.csv"
    pred = mmaffect.load(args.checkpoint or str(work / "paper.pt"), device="cpu")
    cfg = pred.prepare_config
    stage("import mmaffect + load the checkpoint")
    n = int(round(args.minutes * 60 * LABEL_RATE))
    times, chunk = frame_times(n), int(60 * LABEL_RATE)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        decode_audio_to_file(audio, wav, sample_rate=int(cfg["audio"]["sample_rate"]))
        stage("decode and resample the audio")
        frames = AudioFrames(wav, times=times, audio=cfg["audio"], source=audio)
        stage("loudness gain + Silero VAD pass")
        embedder = get_embedder(cfg["text"]["embedder"])
        if args.encoder == "transformers" and isinstance(embedder, HFWordEmbedder):
            embedder = HFWordEmbedder(embedder.path, max_length=embedder.max_length, encoder="transformers")
        pred._embedder = embedder
        stage(f"embedder import + load ({args.encoder})")
        words = pred.text_arrays(times, read_transcript(text))
        stage("embed the transcript, word grid")
        options = face_options(cfg["faces"])
        if args.absent_scan_every is not None:
            options["absent_scan_every"] = args.absent_scan_every
        report = new_face_report(n)
        faces = list(face_chunks(iter_faces(video, times, report=report, **options), n, chunk, options["size"]))
        stage(f"face tracking ({report['n_faces_found']} faces, {report['n_full_scans']} full scans, "
              f"{report['n_local_searches']} local searches, absent_scan_every {options['absent_scan_every']:g})")
        state = None
        with torch.inference_mode():
            for k, start in enumerate(range(0, n, chunk)):
                stop = min(n, start + chunk)
                streams = {"audio": frames.frames(start, stop, None), "faces": faces[k],
                           "text": {"word_vectors": words["word_vectors"], "word_index": words["word_index"][start:stop]}}
                item = frames_to_item(streams, stop - start, modalities=pred.modalities,
                                      face_size=int(cfg["faces"]["size"]), embed_dim=pred._embed_dim(),
                                      max_words=int(cfg["text"]["max_words"]),
                                      audio_frame=int(cfg["audio"]["frame_samples"]))
                _, state = pred.model.forward_frames(collate([item]), state)
        frames.close()
        stage(f"the model, {len(faces)} chunks of 60 s ({args.threads} threads)")
    print("| stage | wall (s) | CPU (s) |")
    print("|---|---:|---:|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.1f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
