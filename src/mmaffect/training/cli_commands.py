"""The ``train``, ``evaluate`` and ``tune`` subcommands of ``mmaffect``.

``mmaffect.cli`` registers them with :func:`add_train_parser`,
:func:`add_evaluate_parser` and :func:`add_tune_parser`. torchrun launches
the same command: ``torchrun --standalone --nproc_per_node 2 -m mmaffect.cli
train ...``.

Usage::

    mmaffect train CONFIG [key=value ...] [--out RUN] [--resume] [--quiet]
    mmaffect evaluate RUN [--partition devel test] [--checkpoint best|last] [--delay-compensation S]
    mmaffect evaluate CHECKPOINT.pt|pretrained:NAME --cache CACHE [--partition devel test] [--out DIR]
    mmaffect evaluate FACE_MODEL --images FOLDER|votes.csv [--whole-image] [--out DIR]
    mmaffect evaluate --runs RUN1 RUN2 ... [--partition devel]       # seed repeats: mean ± std
    mmaffect evaluate --compare RUN_A RUN_B [--unit recording|block]  # Wilcoxon signed-rank test
    mmaffect tune CONFIG [key=value ...] [--trials N] [--storage URL] [--study NAME] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmaffect.errors import ConfigError

__all__ = ["add_train_parser", "add_evaluate_parser", "add_tune_parser", "add_pretrain_parser"]


def _cmd_train(args: argparse.Namespace) -> None:
    from mmaffect.training.distributed import cleanup_distributed, init_distributed
    from mmaffect.training.trainer import load_train_config, train

    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out RUN (the run folder to continue)")
    source: Any = args.config
    if args.resume and args.config in (None, "-"):
        source = Path(args.out) / "config.yaml"
    cfg = load_train_config(source, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg['model_name']}-seed{cfg['seed']}"
    ctx = init_distributed(device=str(cfg["device"]))
    completed = False
    try:
        result = train(cfg, out=out, resume=args.resume, progress=not args.quiet, ctx=ctx)
        completed = True
    finally:
        cleanup_distributed(ctx, completed=completed)
    if ctx.is_main:
        print(f"{out}: best dev CCC (mean of arousal and valence) {result.best_score:.4f} at epoch "
              f"{result.best_epoch} of {result.epochs}" + (" (early stop)" if result.stopped_early else ""))


def add_train_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``train`` on a subparsers object."""
    s = sub.add_parser("train", help="train a registered model on a prepared cache")
    s.add_argument("config", help="training YAML (only what differs from the built-in configs/train.yaml); "
                                  "'-' with --resume = the run's own config.yaml")
    s.add_argument("overrides", nargs="*", help="configuration overrides key=value (e.g. optim.lr=1e-4)")
    s.add_argument("--out", help="run folder (default: runs/<model>-seed<seed>)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    s.add_argument("--quiet", action="store_true", help="no progress output")
    s.set_defaults(func=_cmd_train)
    return s


def _check_evaluate_modes(args: argparse.Namespace) -> None:
    """Exactly one of RUN, ``--runs`` and ``--compare``; ``--images`` only with RUN (a face model)."""
    modes = sum(x is not None and x != [] for x in (args.run, args.runs, args.compare))
    if modes != 1:
        raise ConfigError("give exactly one of RUN, --runs RUN1 RUN2 ..., --compare RUN_A RUN_B")
    if args.images is not None and not args.run:
        raise ConfigError("--images scores one face model: give its checkpoint (e.g. pretrained:ferplus-hrnet3)")


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`~mmaffect.training.evaluate.evaluate_run` from the command line."""
    return dict(partitions=args.partition, checkpoint=args.checkpoint, delay_compensation=args.delay_compensation,
                cache=args.cache, device=args.device, context=args.context)


def _unlabelled(args: argparse.Namespace, scores: Any) -> list[str]:
    """The requested partitions that were not scored (they have no labels)."""
    return [p for p in args.partition if p not in scores]


def _evaluate_checkpoint_file(args: argparse.Namespace) -> None:
    """``mmaffect evaluate CHECKPOINT.pt|pretrained:NAME --cache CACHE [--out DIR]``."""
    from mmaffect.training.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(args.run, partitions=args.partition, cache=args.cache,
                                 delay_compensation=args.delay_compensation,
                                 device="auto" if args.device is None else args.device, out=args.out,
                                 context=args.context)
    if report.scores:
        print(report.markdown())
    unlabelled = _unlabelled(args, report.scores)
    if unlabelled:
        print(f"\nno labels in {unlabelled}: not scored" + ("; predictions written" if args.out else ""))
    if args.out:
        print(f"\nwritten to {args.out}")


def _evaluate_one_run(args: argparse.Namespace) -> None:
    """``mmaffect evaluate RUN``: score the run's checkpoint, written to ``RUN/eval``."""
    from mmaffect.training.evaluate import evaluate_run

    report = evaluate_run(args.run, **_run_options(args))
    if report.scores:
        print(report.markdown())
    unlabelled = _unlabelled(args, report.scores)
    if unlabelled:
        print(f"\nno labels in {unlabelled}: predictions written, not scored")
    print(f"\nwritten to {Path(args.run) / 'eval'}")


def _evaluate_seed_repeats(args: argparse.Namespace) -> None:
    """``mmaffect evaluate --runs RUN1 RUN2 ...``: mean ± std over seed repeats."""
    from mmaffect.training.evaluate import evaluate_run, summarize_runs

    kw = _run_options(args)
    reports = [evaluate_run(r, **kw) for r in args.runs]
    print(summarize_runs(reports))


def _comparison_rows(args: argparse.Namespace, a: Any, b: Any) -> tuple[list[list[Any]], set[str]]:
    """The Wilcoxon table rows of runs ``a`` and ``b`` (reports) over the partitions both scored, and the
    notes on partitions too small for any difference to be significant."""
    from mmaffect.training.stats import compare_predictions

    rows = []
    notes = set()
    for part in args.partition:
        if part not in a.scores or part not in b.scores:
            continue
        try:
            compared = compare_predictions(a.predictions[part], b.predictions[part], unit=args.unit,
                                           block=args.block)
        except ValueError as exc:
            raise ConfigError(f"--compare {part}: {exc}") from None
        for dim, res in compared.items():
            if res.min_p_value >= args.alpha:
                notes.add(f"{part}: with {res.n} {res.unit} pairs the two-sided p cannot fall below "
                          f"{res.min_p_value:.3g}, so no difference can be significant at alpha {args.alpha}")
            rows.append([part, dim, res.unit, res.n, res.mean_a, res.mean_b, res.statistic,
                         f"{res.p_value:.4g}", res.better if res.significant(args.alpha) else "—"])
    return rows, notes


def _evaluate_compare(args: argparse.Namespace) -> None:
    """``mmaffect evaluate --compare RUN_A RUN_B``: Wilcoxon signed-rank test of two runs."""
    from mmaffect.training.evaluate import evaluate_run, markdown_table

    if Path(args.compare[0]).resolve() == Path(args.compare[1]).resolve():
        raise ConfigError(f"--compare: {args.compare[0]} and {args.compare[1]} are the same run; "
                          "compare two different runs")
    kw = _run_options(args)
    a, b = (evaluate_run(r, **kw) for r in args.compare)
    rows, notes = _comparison_rows(args, a, b)
    print(f"Wilcoxon signed-rank test, A = {args.compare[0]}, B = {args.compare[1]} "
          f"(two-sided, alpha {args.alpha})\n")
    print(markdown_table(["partition", "dimension", "unit", "pairs", "mean A", "mean B", "W", "p",
                          "significantly better"], rows))
    for note in sorted(notes):
        print(f"\nnote: {note}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    """``mmaffect evaluate``: check the mode, then run the one the arguments name."""
    _check_evaluate_modes(args)
    if args.run and args.images is not None:
        _evaluate_face_images(args)
    elif args.run and not Path(args.run).is_dir():  # a checkpoint file or pretrained:NAME
        _evaluate_checkpoint_file(args)
    elif args.run:
        _evaluate_one_run(args)
    elif args.runs:
        _evaluate_seed_repeats(args)
    else:
        _evaluate_compare(args)


def _evaluate_face_images(args: argparse.Namespace) -> None:
    """``mmaffect evaluate FACE_MODEL --images FOLDER|votes.csv``."""
    import json

    from mmaffect.inference.faces import evaluate_face_images, load_face_model
    from mmaffect.utils.io import atomic_write_text

    device = None if args.device in (None, "auto") else args.device
    result = evaluate_face_images(load_face_model(args.run, device=device), args.images,
                                  detect=not args.whole_image)
    print(result.markdown())
    if args.out:
        out = Path(args.out)
        result.prediction.save(out, figures=False)
        atomic_write_text(out / "scores.json", json.dumps(
            {"source": str(result.source), "model": result.model, "n_images": result.n_images,
             "n_scored": result.n_scored, "dropped": result.dropped, **result.scores,
             "recall": {c: {"images": n, "recall": r} for c, (n, r) in result.recall.items()}}, indent=2) + "\n")
        print(f"\nwritten to {out}")


def add_evaluate_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``evaluate`` on a subparsers object."""
    from mmaffect.inference.cli import context_argument

    s = sub.add_parser("evaluate", help="CCC of trained runs per partition; seed repeats; Wilcoxon comparison")
    s.add_argument("run", nargs="?", help="run folder written by `mmaffect train`, a checkpoint file (.pt) or "
                                          "pretrained:NAME (with --cache; a face model with --images)")
    s.add_argument("--runs", nargs="+", help="seed repeats of one setting: report mean ± std")
    s.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="Wilcoxon test of two runs")
    s.add_argument("--partition", nargs="+", default=["devel"], help="partitions to score (default: devel)")
    s.add_argument("--checkpoint", choices=["best", "last"], default="best")
    s.add_argument("--delay-compensation", type=float, default=None, metavar="S",
                   help="annotation delay in seconds (default: the run's data.annotation_delay)")
    s.add_argument("--cache", help="cache folder made by `mmaffect prepare` (default: the run's data.cache)")
    s.add_argument("--context", type=context_argument, default="train", metavar="train|none|SECONDS",
                   help="the LSTM head's context window, as in `mmaffect predict`: 'train' (default) windows of "
                        "the training length blended; 'none' one pass with the state carried; or seconds")
    s.add_argument("--images", metavar="FOLDER|CSV",
                   help="face models: labelled images, one sub-folder per FER+ category or a CSV of votes "
                        "(file + category columns): accuracy, per-category recall, proxy valence/arousal CCC")
    s.add_argument("--whole-image", action="store_true",
                   help="with --images: each image is a face crop already (no face detection)")
    s.add_argument("--out", help="with a checkpoint file, pretrained:NAME or --images: write the scores and "
                                 "predictions here (default: print only)")
    s.add_argument("--device", default="auto")
    s.add_argument("--unit", choices=["recording", "block"], default="recording",
                   help="--compare pairs per-recording CCCs (default) or per-block squared errors")
    s.add_argument("--block", type=int, default=100, help="frames per block for --unit block")
    s.add_argument("--alpha", type=float, default=0.05)
    s.set_defaults(func=_cmd_evaluate)
    return s


def _cmd_tune(args: argparse.Namespace) -> None:
    from mmaffect.training.trainer import load_train_config
    from mmaffect.training.tune import study_summary, tune

    cfg = load_train_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / f"tune-{cfg['model_name']}"
    study = tune(cfg, out=out, trials=args.trials, storage=args.storage, study_name=args.study,
                 progress=not args.quiet)
    print(study_summary(study))
    print(f"written to {out / 'summary.md'}")


def add_tune_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``tune`` on a subparsers object."""
    s = sub.add_parser("tune", help="Hyperband search over Table 1's hyper-parameter ranges (Optuna)")
    s.add_argument("config", help="training YAML; its tune: section sets the search")
    s.add_argument("overrides", nargs="*", help="configuration overrides key=value")
    s.add_argument("--trials", type=int, help="total trials of the study (default: tune.trials)")
    s.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    s.add_argument("--study", help="study name (default: tune-<model>)")
    s.add_argument("--out", help="output folder (default: runs/tune-<model>)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_tune)
    return s


def _cmd_pretrain(args: argparse.Namespace) -> None:
    import json

    from mmaffect.training.faces import load_pretrain_config, pretrain_faces

    source = args.config
    overrides = list(args.overrides)
    if source is not None and "=" in source:  # only overrides were given
        overrides.insert(0, source)
        source = None
    cfg = load_pretrain_config(source, overrides)
    res = pretrain_faces(cfg, out=args.out, progress=not args.quiet)
    print(json.dumps(res))
    print(f"{args.out}: {res['model_name']} majority accuracy {res['accuracy']:.4f}, CCC arousal "
          f"{res['ccc_arousal']:.3f} valence {res['ccc_valence']:.3f} on {res['valid_faces']} FER+ valid faces, "
          f"{res['wall_seconds']:.0f} s on {res['device']}")


def add_pretrain_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``pretrain-faces`` on a subparsers object."""
    s = sub.add_parser("pretrain-faces", help="pretrain a visual network on FER+ faces (vote distributions)")
    s.add_argument("config", nargs="?", default=None,
                   help="YAML with what differs from the built-in configs/pretrain_faces.yaml")
    s.add_argument("overrides", nargs="*", help="configuration overrides key=value (e.g. optim.epochs=5)")
    s.add_argument("--out", required=True, help="run folder (must not hold a model.pt)")
    s.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    s.set_defaults(func=_cmd_pretrain)
    return s
