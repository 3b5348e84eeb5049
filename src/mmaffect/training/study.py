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
UNIMODAL_MODELS = ("text-paper", "audio-tzirakis2018", "visual-hrnet3-attpool")
"""The unimodal networks of the built-in synthetic configurations (``configs/synthetic``), in study order."""
FUSIONS = (
    "fusion-concat",
    "fusion-self-attention",
    "fusion-hierarchical",
    "fusion-residual-self-attention",
    "fusion-crossmodal-hierarchical",
)


def _num(x: float) -> str:
    """A CCC in the tables' style (``.765``, ``-.250``)."""
    return format_mean_std(x, 0.0).split(" ±")[0]


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


    def mean_of(self, model: str, partition: str, dimension: str = "mean") -> tuple[float, float]:
        """Mean and std over seeds of one model's CCC (NaN when it was not scored)."""
        values = self.scores.get(model, {}).get(partition, {}).get(dimension, [])
        return mean_std(values) if values else (float("nan"), float("nan"))

    def verdict(self, partition: str = "devel", dimension: str = "mean") -> list[str]:
        """The issue-#4 acceptance questions answered from the scores, one line each.

        (a) does the best multimodal model beat every unimodal one, and
        (b) does each attention fusion beat ``fusion-concat`` by more than the
        spread over seeds (the larger of the two models' stds; with one seed
        there is no spread and the line says so)?

        >>> r = StudyResult(out=Path("."), seeds=(0, 1))
        >>> r.scores = {"text-paper": {"devel": {"mean": [0.2, 0.3]}},
        ...             "fusion-concat": {"devel": {"mean": [0.5, 0.6]}},
        ...             "fusion-hierarchical": {"devel": {"mean": [0.7, 0.7]}}}
        >>> for line in r.verdict():
        ...     print(line)
        (a) yes: fusion-hierarchical (.700) beats the best unimodal model text-paper (.250) by .450 (devel mean CCC)
        (b) fusion-hierarchical − fusion-concat = .150 > spread .071: yes
        """
        uni = [m for m in self.scores if not m.startswith("fusion-") and partition in self.scores[m]]
        multi = [m for m in self.scores if m.startswith("fusion-") and partition in self.scores[m]]
        lines: list[str] = []
        if uni and multi:
            best_u = max(uni, key=lambda m: self.mean_of(m, partition, dimension)[0])
            best_m = max(multi, key=lambda m: self.mean_of(m, partition, dimension)[0])
            mu, mm = self.mean_of(best_u, partition, dimension)[0], self.mean_of(best_m, partition, dimension)[0]
            diff = mm - mu
            lines.append(f"(a) {'yes' if diff > 0 else 'no'}: {best_m} ({_num(mm)}) "
                         f"{'beats' if diff > 0 else 'does not beat'} the best unimodal model {best_u} "
                         f"({_num(mu)}) by {_num(diff)} "
                         f"({partition} {dimension} CCC)")
        if "fusion-concat" in self.scores and partition in self.scores["fusion-concat"]:
            mc, sc = self.mean_of("fusion-concat", partition, dimension)
            for m in multi:
                if m == "fusion-concat":
                    continue
                mf, sf = self.mean_of(m, partition, dimension)
                diff, spread = mf - mc, max(sc, sf)
                if len(self.seeds) < 2:
                    ok = "one seed, no spread to compare with"
                else:
                    ok = "yes" if diff > spread else "no"
                lines.append(f"(b) {m} − fusion-concat = {_num(diff)} "
                             f"{'>' if diff > spread else '≤'} spread {_num(spread)}: {ok}")
        return lines

    def comparison(self, partitions: Sequence[str] = ("devel", "test")) -> str:
        """A Table-6-like table: one row per model, arousal/valence/mean per partition, then :meth:`verdict`."""
        parts = [p for p in partitions if any(p in v for v in self.scores.values())]
        header = ["model"] + [f"{p} {d}" for p in parts for d in (*DIMENSIONS, "mean")] + ["train s / run"]
        rows = []
        for model, scores in self.scores.items():
            cells: list[Any] = [model]
            for p in parts:
                for d in (*DIMENSIONS, "mean"):
                    m, s = self.mean_of(model, p, d)
                    cells.append(format_mean_std(m, s) if len(self.seeds) > 1 else _num(m))
            cells.append(f"{self.seconds.get(model, 0.0) / len(self.seeds):.0f}")
            rows.append(cells)
        spread = ("mean ± std over seeds " + ", ".join(map(str, self.seeds))) if len(self.seeds) > 1 else \
            f"seed {self.seeds[0]}"
        text = f"CCC (concatenated recordings of each partition; {spread})\n\n" + markdown_table(header, rows)
        if parts:
            text += "\n\n" + "\n".join(self.verdict(parts[0]))
        return text


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
