#!/usr/bin/env python
"""Speech activity: Silero VAD's ONNX session run directly (what ``prepare`` and ``predict`` use)
against silero-vad's own wrapper, side by side in one process.

Each round runs both detectors in turn on the same 16-kHz signal, so noise from other jobs on
shared cores hits both alike; the figure to compare is the **ratio of the medians**. Both
give the same speech segments (checked every round; ``tests/test_speech.py`` checks the
probabilities). The signal: EmoDB utterances joined by 1-s pauses when the shared data are
there (``--data``), else speech-like bursts between noise (said in the output).

    python benchmarks/bench_vad.py                 # 180 s of audio, 5 rounds
    python benchmarks/bench_vad.py --seconds 60 --rounds 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import hardware  # noqa: E402


def signal(seconds: float, data: Path | None) -> tuple[np.ndarray, str]:
    """``seconds`` of mono float32 audio at 16 kHz and what it is."""
    from mmaffect.preprocess.vad import VAD_RATE

    n = int(seconds * VAD_RATE)
    wavs = sorted((data / "wav").glob("*.wav")) if data is not None and (data / "wav").is_dir() else []
    if wavs:
        import soundfile as sf
        import soxr

        parts, total = [], 0
        pause = np.zeros(VAD_RATE, np.float32)
        for w in wavs:
            x, sr = sf.read(str(w), dtype="float32", always_2d=True)
            x = x.mean(axis=1)
            if sr != VAD_RATE:
                x = soxr.resample(x, sr, VAD_RATE).astype(np.float32)
            parts += [x, pause]
            total += len(x) + len(pause)
            if total >= n:
                break
        x = np.concatenate(parts)
        if len(x) < n:
            x = np.tile(x, -(-n // len(x)))
        return x[:n], f"EmoDB utterances from {data} joined by 1-s pauses"
    rng = np.random.default_rng(0)
    t = np.arange(n) / VAD_RATE
    voiced = (np.sin(2 * np.pi * 0.3 * t) > 0) * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 5 * t))
    return (0.3 * voiced + 0.01 * rng.standard_normal(n)).astype(np.float32), \
        "synthetic 180-Hz bursts between white noise, no shared data found; Silero may call none of it speech"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=180.0, help="audio length (default 180 s)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of both detectors (default 5)")
    p.add_argument("--data", type=Path, help="EmoDB folder (default: the shared data's emodb/, if present)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args(argv)

    import torch

    from mmaffect.data.sources import shared_data_root
    from mmaffect.preprocess import vad

    model = vad._silero_model()
    if not hasattr(model, "session"):
        print("onnxruntime is not installed: the TorchScript model is in use, there is nothing to compare")
        return 0
    data = args.data
    if data is None and shared_data_root() is not None:
        data = shared_data_root() / "emodb"
    x, what = signal(args.seconds, data)
    silero = vad._silero()
    threads = torch.get_num_threads()

    def wrapper() -> list[tuple[int, int]]:
        torch.set_num_threads(1)  # as vad._segments_16k runs the wrapper
        try:
            stamps = silero.get_speech_timestamps(torch.from_numpy(x), model, threshold=0.5,
                                                  sampling_rate=vad.VAD_RATE)
        finally:
            torch.set_num_threads(threads)
        return [(int(s["start"]), int(s["end"])) for s in stamps]

    def direct() -> list[tuple[int, int]]:
        return vad._segments_16k(x, 0.5)

    cases = {"silero-vad wrapper (reference)": wrapper, "ONNX session run directly (mmaffect)": direct}
    times: dict[str, list[float]] = {k: [] for k in cases}
    segments: dict[str, list] = {}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            seg = fn()
            times[name].append(time.perf_counter() - t0)
            if segments.setdefault(name, seg) != seg:
                raise SystemExit(f"{name}: segments differ between rounds")
    ref, ours = (segments[k] for k in cases)
    if ref != ours:
        raise SystemExit(f"the two detectors disagree: {len(ref)} vs {len(ours)} segments")
    med = {k: statistics.median(v) for k, v in times.items()}
    names = list(cases)
    ratio = med[names[0]] / med[names[1]]
    speech = sum(e - s for s, e in ours) / len(x)
    print(f"Silero VAD on {len(x) / vad.VAD_RATE:.0f} s of audio ({what}); {len(ours)} speech segments, "
          f"{speech:.0%} speech, identical for both; {args.rounds} rounds, alternating.\n")
    print("| detector | median s | min s | × real time |")
    print("|---|---:|---:|---:|")
    for k in names:
        print(f"| {k} | {med[k]:.2f} | {min(times[k]):.2f} | {len(x) / vad.VAD_RATE / med[k]:.0f} |")
    print(f"\nspeed-up (ratio of medians, reference / mmaffect): {ratio:.2f}×")
    print(f"hardware: {hardware()}; torch threads {threads}; load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"seconds": len(x) / vad.VAD_RATE, "signal": what, "times": times,
                                         "median": med, "ratio": ratio, "segments": len(ours),
                                         "hardware": hardware()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
