"""A Table-6-style study: unimodal networks, then every fusion strategy, over seeds.

Section 5.3 protocol: each unimodal network (branch + 1-layer LSTM) is trained
first; each multimodal model's branches are initialised from those unimodal
checkpoints and the whole model is trained. Every run is scored on the
development partition (and any other labelled partition asked for) with CCC
over the concatenated recordings, and the study prints mean ± std over seeds.
Runs already finished are reused and unfinished ones resumed, so an
interrupted study continues where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmaffect.config import PACKAGE_CONFIGS
from mmaffect.data.session import DIMENSIONS
from mmaffect.training.evaluate import evaluate_run, markdown_table
from mmaffect.training.stats import format_mean_std, mean_std
from mmaffect.training.trainer import load_train_config, train

UNIMODAL = ("text", "audio", "visual")
FUSIONS = (
    "fusion-concat",
    "fusion-self-attention",
    "fusion-hierarchical",
    "fusion-residual-self-attention",
    "fusion-crossmodal-hierarchical",
)


def _builtin_dir(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files(PACKAGE_CONFIGS).joinpath(name)))


@dataclass
class StudyResult:
    """``scores[model][partition][dimension]`` = list of CCCs, one per seed."""

    out: Path
    seeds: tuple[int, ...]
    scores: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self, partition: str = "devel") -> str:
        rows = []
        for model, parts in self.scores.items():
            if partition not in parts:
                continue
            cells: list[Any] = [model]
            for d in (*DIMENSIONS, "mean"):
                m, s = mean_std(parts[partition][d])
                cells.append(format_mean_std(m, s) if len(self.seeds) > 1 else f"{m:.3f}")
            cells.append(f"{self.seconds.get(model, 0.0) / len(self.seeds):.0f}")
            rows.append(cells)
        spread = "mean ± std over seeds " + ", ".join(map(str, self.seeds)) if len(self.seeds) > 1 else \
            f"seed {self.seeds[0]}"
        head = f"CCC on the {partition} partition (concatenated recordings; {spread})\n\n"
        return head + markdown_table(["model", "arousal", "valence", "mean", "train s / run"], rows)


def _finished(run: Path) -> bool:
    return (run / "study_done.json").exists()


def _train_run(cfg: dict[str, Any], run: Path, progress: bool) -> float:
    """Train (or resume, or reuse) one run; returns its training seconds."""
    if _finished(run):
        return float(json.loads((run / "study_done.json").read_text())["seconds"])
    result = train(cfg, out=run, resume=(run / "last.pt").exists(), progress=progress)
    seconds = float(sum(h.get("seconds", 0.0) for h in result.history))
    (run / "study_done.json").write_text(json.dumps({"seconds": seconds, "best_epoch": result.best_epoch}))
    return seconds


def train_and_score(
    *,
    cache: str | Path,
    out: str | Path,
    model_name: str,
    seed: int = 0,
    partitions: Sequence[str] = ("devel",),
    config_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: bool = False,
) -> StudyResult:
    """Train one model of ``config_dir`` from scratch (no branch initialisation) and score it."""
    config_dir = Path(config_dir) if config_dir is not None else _builtin_dir("synthetic")
    kind = "fusion" if model_name.startswith("fusion-") else {"text-paper": "text",
                                                              "audio-tzirakis2018": "audio",
                                                              "visual-hrnet3-attpool": "visual"}[model_name]
    cfg = load_train_config(config_dir / f"{kind}.yaml", [f"data.cache={Path(cache).resolve()}", f"seed={seed}",
                                                         f"model_name={model_name}", *overrides])
    run = Path(out)
    seconds = _train_run(cfg, run, progress)
    report = evaluate_run(run, partitions=partitions, checkpoint="best")
    result = StudyResult(out=run, seeds=(seed,))
    result.scores[model_name] = {p: {d: [s[d]] for d in (*DIMENSIONS, "mean")} for p, s in report.scores.items()}
    result.seconds[model_name] = seconds
    return result


def run_study(
    *,
    cache: str | Path,
    out: str | Path,
    seeds: Sequence[int] = (0,),
    fusions: Sequence[str] = FUSIONS,
    partitions: Sequence[str] = ("devel",),
    config_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: bool = False,
    log: Any = print,
) -> StudyResult:
    """Train and score the unimodal models and the ``fusions`` for every seed.

    ``config_dir`` holds ``text.yaml``, ``audio.yaml``, ``visual.yaml`` and
    ``fusion.yaml`` (default: the built-in ``configs/synthetic``);
    ``overrides`` (``key=value``) apply to every run.
    """
    config_dir = Path(config_dir) if config_dir is not None else _builtin_dir("synthetic")
    out = Path(out)
    result = StudyResult(out=out, seeds=tuple(seeds))
    common = [f"data.cache={Path(cache).resolve()}", *overrides]

    def record(name: str, run: Path, seconds: float) -> None:
        report = evaluate_run(run, partitions=partitions, checkpoint="best")
        parts = result.scores.setdefault(name, {})
        for part, scores in report.scores.items():
            for d in (*DIMENSIONS, "mean"):
                parts.setdefault(part, {}).setdefault(d, []).append(scores[d])
        result.seconds[name] = result.seconds.get(name, 0.0) + seconds
        dev = report.scores.get(partitions[0], {})
        log(f"  {name} seed {seed}: {partitions[0]} CCC arousal {dev.get('arousal', float('nan')):.3f}, "
            f"valence {dev.get('valence', float('nan')):.3f} ({seconds:.0f} s)")

    for seed in seeds:
        unimodal_runs: dict[str, Path] = {}
        for modality in UNIMODAL:
            cfg = load_train_config(config_dir / f"{modality}.yaml", [*common, f"seed={seed}"])
            name = cfg["model_name"]
            run = out / f"seed{seed}" / name
            seconds = _train_run(cfg, run, progress)
            unimodal_runs[modality] = run
            record(name, run, seconds)
        for fusion in fusions:
            init = [f"init_from.{m}={unimodal_runs[m] / 'best.pt'}" for m in UNIMODAL]
            cfg = load_train_config(config_dir / "fusion.yaml",
                                    [*common, f"seed={seed}", f"model_name={fusion}", *init])
            run = out / f"seed{seed}" / fusion
            seconds = _train_run(cfg, run, progress)
            record(fusion, run, seconds)
    return result
