"""Hyper-parameter search with Optuna's Hyperband pruner (paper Section 5.4, Tables 1 and 8).

``mmaffect tune CONFIG [--trials N] [--storage URL] [--study NAME] [--out DIR]``
samples configurations from the ``tune.space`` of the training configuration
(default: Table 1 — learning rate log-uniform in [1e-6, 1e-3], batch size
10/20/30 for text and audio and 2/3 for visual and multimodal models, dropout
uniform in [0.1, 0.6], sequence length 75/100/200, LSTM hidden units
64/128/256/512 and layers 1/2/3), trains each with :func:`~mmaffect.training.trainer.train`
and reports the dev CCC (mean of arousal and valence, maximised) after every
epoch so that Hyperband stops the weak ones early.

Hyperband samples configurations at random (the paper: "starts by randomly
sampling"), so each value is drawn by Optuna's ``RandomSampler`` seeded with
``tune.sampler_seed``, the trial's number and the parameter's name: trial N
draws the same configuration whichever process runs it, a resumed study does
not redraw the first configurations, and workers that share one storage never
draw the same one.

The study lives in ``--storage`` (default ``sqlite:///OUT/study.db``) and is
resumed when it exists: ``--trials N`` is the study's total, and only the
missing trials run. Several workers (processes or machines) may run the same
command against one storage at once: each stops when the study holds N
completed or pruned trials, so the total overshoots N by at most the trials
that were still running then. A trial killed with the process is marked failed on the
next start (Optuna heartbeat) and does not count. Every trial trains into
``OUT/trials/trial-NNNN``; ``OUT/summary.md`` holds the Table-8-style summary.

Table 8 reading: for each hyper-parameter, completed trials are grouped by its
value (continuous ones in buckets: learning rate per decade, dropout per 0.1);
the table gives each group's mean ± std of dev CCC, and the summary row the
mean ± std over the group means — the spread that the hyper-parameter alone
causes, which is how we read "the effect of each hyper-parameter".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmaffect.config import apply_overrides
from mmaffect.errors import ConfigError
from mmaffect.training.stats import format_mean_std, mean_std
from mmaffect.training.trainer import EpochResult, _model_kind, resolve_train_config, train
from mmaffect.utils.io import atomic_write_text

__all__ = ["tune", "trial_seeded_sampler", "sample_config", "bucket", "hyperparameter_table", "study_summary"]


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is an optional dependency
        raise ConfigError("`mmaffect tune` needs optuna: pip install optuna") from None
    return optuna


def _choices(name: str, spec: Mapping[str, Any], kind: str) -> list[Any]:
    if "choices_by_kind" in spec:
        by = spec["choices_by_kind"]
        if kind not in by:
            raise ConfigError(f"tune.space.{name}.choices_by_kind has no entry for {kind!r} models")
        return list(by[kind])
    return list(spec["choices"])


def trial_seeded_sampler(seed: int) -> Any:
    """An Optuna sampler that draws each value at random, seeded by ``seed``, the trial's number and
    the parameter's name (:class:`optuna.samplers.RandomSampler` for each draw): the draws depend on
    nothing else, so they are the same whichever worker runs the trial, and in whatever order.

    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> draw = lambda: optuna.create_study(sampler=trial_seeded_sampler(0)).ask().suggest_float("lr", 0, 1)
    >>> draw() == draw()
    True
    """
    import zlib

    optuna = _optuna()

    class TrialSeededSampler(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return {}

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
            return {}

        def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
            key = zlib.crc32(f"{seed}:{trial.number}:{param_name}".encode())
            return optuna.samplers.RandomSampler(seed=key).sample_independent(
                study, trial, param_name, param_distribution)

    return TrialSeededSampler()


def sample_config(trial: Any, cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Draw one configuration of ``tune.space`` for an Optuna ``trial``.

    Returns ``(trial configuration, {name: value})``. Each value is written to
    every key of its ``keys`` that the configuration has (e.g. a dropout key
    that only some models have); a parameter none of whose keys exist is an
    error. An entry set to null (``tune.space.batch_size=null``) is left out of
    the search: the built-in space is merged under a user's, so null is how a
    user narrows it.
    """
    from mmaffect.models import get_spec

    kind = _model_kind(get_spec(cfg["model_name"]).modalities)
    values: dict[str, Any] = {}
    overrides: list[str] = []
    for name, spec in cfg["tune"]["space"].items():
        if spec is None:
            continue
        typ = spec.get("type")
        if typ == "loguniform":
            v: Any = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=True)
        elif typ == "uniform":
            v = trial.suggest_float(name, float(spec["low"]), float(spec["high"]))
        elif typ == "int":
            v = trial.suggest_int(name, int(spec["low"]), int(spec["high"]))
        elif typ == "categorical":
            v = trial.suggest_categorical(name, _choices(name, spec, kind))
        else:
            raise ConfigError(f"tune.space.{name}: unknown type {typ!r} (loguniform, uniform, int, categorical)")
        values[name] = v
        keys = [k for k in spec.get("keys", []) if _has_key(cfg, k)]
        if not keys:
            raise ConfigError(f"tune.space.{name}: none of its keys {spec.get('keys')} is in the configuration")
        overrides += [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k in keys]
    return resolve_train_config(apply_overrides(dict(cfg), overrides)), values


def _has_key(cfg: Mapping[str, Any], key: str) -> bool:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def bucket(name: str, value: Any) -> str:
    """Group label of a hyper-parameter value for the Table-8 summary.

    >>> bucket("learning_rate", 3e-4), bucket("dropout", 0.47), bucket("num_layers", 2)
    ('1e-04–1e-03', '0.4–0.5', '2')
    """
    if name == "learning_rate" or (isinstance(value, float) and name.endswith("lr")):
        e = math.floor(math.log10(float(value)) + 1e-9)
        return f"{10.0 ** e:.0e}–{10.0 ** (e + 1):.0e}"
    if isinstance(value, float):
        lo = math.floor(value * 10) / 10
        return f"{lo:.1f}–{lo + 0.1:.1f}"
    return str(value)


def hyperparameter_table(trials: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    """Table-8-style Markdown from finished trials.

    ``trials``: dicts with ``params`` ({name: value}) and ``arousal``,
    ``valence`` (dev CCC at the trial's best epoch).
    """
    from mmaffect.training.evaluate import markdown_table

    summary, detail = [], []
    for name in names:
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for t in trials:
            if name in t["params"]:
                groups.setdefault(bucket(name, t["params"][name]), []).append(t)
        if not groups:
            continue
        means = {d: [mean_std([t[d] for t in g])[0] for g in groups.values()] for d in ("arousal", "valence")}
        summary.append([name, len(groups), format_mean_std(*mean_std(means["arousal"])),
                        format_mean_std(*mean_std(means["valence"]))])
        for label, g in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
            detail.append([name, label, len(g), format_mean_std(*mean_std([t["arousal"] for t in g])),
                           format_mean_std(*mean_std([t["valence"] for t in g]))])
    return ("Effect of each hyper-parameter (mean ± std over its values' mean dev CCC; Table 8 style)\n\n"
            + markdown_table(["hyper-parameter", "values", "arousal", "valence"], summary)
            + "\n\nPer value (mean ± std of dev CCC over completed trials)\n\n"
            + markdown_table(["hyper-parameter", "value", "trials", "arousal", "valence"], detail))


def _sort_key(label: str) -> tuple[float, str]:
    try:
        return float(label.split("–")[0]), label
    except ValueError:
        return math.inf, label


def study_summary(study: Any) -> str:
    """Markdown summary of a study: trial counts, best trial, Table-8-style effects."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    done = [t for t in study.trials if t.state == state.COMPLETE]
    pruned = sum(t.state == state.PRUNED for t in study.trials)
    rows = [{"params": t.params, "arousal": t.user_attrs.get("arousal", float("nan")),
             "valence": t.user_attrs.get("valence", float("nan"))} for t in done]
    lines = [f"# Study {study.study_name}", "",
             f"{len(done)} completed, {pruned} pruned, "
             f"{sum(t.state == state.FAIL for t in study.trials)} failed trials.", ""]
    if done:
        best = study.best_trial
        lines += [f"Best trial {best.number}: dev CCC mean {best.value:.3f} (arousal "
                  f"{best.user_attrs.get('arousal', float('nan')):.3f}, valence "
                  f"{best.user_attrs.get('valence', float('nan')):.3f}); run {best.user_attrs.get('run')}", "",
                  "| hyper-parameter | value |", "|---|---|"]
        lines += [f"| {k} | {v:.3g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in best.params.items()]
        lines += ["", hyperparameter_table(rows, list(done[0].params))]
    return "\n".join(lines) + "\n"


def _storage(url: str) -> Any:
    optuna = _optuna()
    if url.startswith(("sqlite:", "postgresql", "mysql")):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=90)
    return url


def tune(
    config: Mapping[str, Any],
    *,
    out: str | Path,
    trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    progress: bool = True,
) -> Any:
    """Run (or resume) the study and write ``OUT/summary.md``; returns the Optuna study."""
    optuna = _optuna()
    cfg = resolve_train_config(config)
    tcfg = cfg["tune"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total = int(trials if trials is not None else tcfg["trials"])
    name = study_name or tcfg.get("study") or f"tune-{cfg['model_name']}"
    url = storage or tcfg.get("storage") or f"sqlite:///{(out / 'study.db').resolve()}"
    max_epochs = int(tcfg.get("epochs") or cfg["optim"]["epochs"])
    pruner = optuna.pruners.HyperbandPruner(min_resource=int(tcfg["min_epochs"]), max_resource=max_epochs,
                                            reduction_factor=int(tcfg["reduction_factor"]))
    store = _storage(url)
    sampler = trial_seeded_sampler(int(tcfg["sampler_seed"]))
    study = optuna.create_study(study_name=name, storage=store, direction="maximize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study {name!r} in {url} does not maximise (it is not an mmaffect study)")

    def objective(trial: Any) -> float:
        trial_cfg, _ = sample_config(trial, cfg)
        trial_cfg["optim"]["epochs"] = max_epochs
        trial_cfg["log"]["plot"] = False
        run = out / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("run", str(run))
        best: dict[str, float] = {"mean": -math.inf}

        def report(res: EpochResult) -> None:
            value = res.dev["mean"] if res.dev["mean"] == res.dev["mean"] else -1.0
            if res.is_best:
                best.update(res.dev)
                trial.set_user_attr("arousal", res.dev["arousal"])
                trial.set_user_attr("valence", res.dev["valence"])
                trial.set_user_attr("best_epoch", res.epoch)
            trial.report(value, res.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        train(trial_cfg, out=run, progress=progress, epoch_callback=report)
        return float(best["mean"])

    state = optuna.trial.TrialState
    counted = sum(t.state in (state.COMPLETE, state.PRUNED) for t in study.trials)
    remaining = max(0, total - counted)
    if not progress:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    if remaining:
        # Another worker on the same storage counts too: stop once the study holds `total` trials.
        enough = optuna.study.MaxTrialsCallback(total, states=(state.COMPLETE, state.PRUNED))
        study.optimize(objective, n_trials=remaining, catch=(), callbacks=[enough])
    atomic_write_text(out / "summary.md", study_summary(study))
    return study
