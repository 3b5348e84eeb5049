"""The ``mmaffect`` command.

Every subcommand that takes a configuration accepts ``key=value`` overrides
anywhere after the subcommand (e.g. ``mmaffect prepare data --out cache faces.size=64``).
Errors about the user's input are printed as one line naming the file and
what is wrong, with exit status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mmaffect import __version__
from mmaffect.errors import MMAffectError
from mmaffect.inference.cli import add_predict_parser
from mmaffect.inference.export import add_export_parser
from mmaffect.inference.pretrained import add_pretrained_parser
from mmaffect.viz.cli import add_viz_parser
from mmaffect.training.cli_commands import (
    add_evaluate_parser,
    add_pretrain_parser,
    add_train_parser,
    add_tune_parser,
)


def _cmd_synth(args: argparse.Namespace) -> None:
    from mmaffect.data.writers.synthetic import synthesize

    report = synthesize(Path(args.out), n_train=args.train, n_devel=args.devel, n_test=args.test,
                        duration=args.duration, width=args.width, height=args.height, fps=args.fps,
                        seed=args.seed, progress=not args.quiet, jobs=args.jobs)
    print(f"wrote {len(report.sessions)} sessions ({report.duration:.0f} s, {report.bytes / 2**20:.1f} MiB) "
          f"to {report.root} in {report.seconds:.1f} s")


def _csv_list(text: str) -> list[str]:
    return [t for t in (x.strip() for x in text.split(",")) if t]


def _read(args: argparse.Namespace):
    from mmaffect.data.readers import read_corpus

    sessions = read_corpus(Path(args.data), layout=args.layout, partitions=args.partitions)
    if args.sessions:
        wanted = set(args.sessions)
        sessions = [s for s in sessions if s.name in wanted]
        missing = wanted - {s.name for s in sessions}
        if missing:
            raise MMAffectError(f"{args.data}: no session(s) named {sorted(missing)}")
    return sessions


def _cmd_prepare(args: argparse.Namespace) -> None:
    from mmaffect.config import load_config
    from mmaffect.preprocess.pipeline import prepare, resolve_prepare_config

    config = load_config(args.config or "prepare", args.overrides)
    resolve_prepare_config(config)  # a bad value is reported before the corpus is read
    sessions = _read(args)
    report = prepare(sessions, Path(args.out), config=config, workers=args.workers, progress=not args.quiet)
    print(report.table())
    rtf = report.media_seconds / max(report.seconds, 1e-9)
    print(f"\nprepared {len(report.sessions)} session(s), {report.media_seconds:.0f} s of media in "
          f"{report.seconds:.1f} s ({rtf:.1f}x real time); streams computed {report.computed}, "
          f"reused {report.reused}; cache: {report.cache}")
    for warning in report.warnings():
        print(f"warning: {warning}", file=sys.stderr)


def _cmd_info(args: argparse.Namespace) -> None:
    from mmaffect.config import dump_config
    from mmaffect.data.cache import Cache
    from mmaffect.preprocess.pipeline import PrepareReport

    cache = Cache(args.cache)
    if not cache.root.is_dir():
        raise MMAffectError(f"{cache.root}: no such folder")
    if not cache.manifest_path.is_file():
        raise MMAffectError(f"{cache.root}: not a cache (no {cache.manifest_path.name}); run `mmaffect prepare`")
    manifest = cache.read_manifest()
    rep = PrepareReport(cache=cache.root, sessions=manifest["sessions"])
    print(rep.table())
    pending = cache.pending_sessions(manifest)
    if pending:
        print(f"\nincomplete: {len(pending)} session(s) being prepared now or whose prepare was interrupted "
              f"(run `mmaffect prepare` again): {', '.join(pending)}")
    from mmaffect.data.cache import mixed_configs_message

    mixed = mixed_configs_message(manifest)
    if mixed is not None:
        if args.config:
            raise MMAffectError(f"{cache.root}: {mixed}")
        print(f"\nwarning: {mixed}")
    if args.config:
        if manifest.get("config") is None:
            raise MMAffectError(f"{cache.manifest_path}: no configuration recorded (no session was prepared)")
        print("\n" + dump_config(manifest["config"]))


def _cmd_adapt(args: argparse.Namespace) -> None:
    from mmaffect.data.sources import shared_data_root
    from mmaffect.data.writers.adapters import ADAPTERS

    if args.corpus == "composite":
        _cmd_adapt_composite(args)
        return
    for name in ("sessions", "seconds", "seed", "set"):
        if getattr(args, name) is not None:
            raise MMAffectError(f"--{name} applies to composite only")
    if args.plain:
        raise MMAffectError("--plain applies to composite only")
    src = Path(args.src) if args.src else None
    if src is None:
        root = shared_data_root()
        if root is None:
            raise MMAffectError("shared data not found: pass --src or set MMAFFECT_SHARED_DATA")
        src = root / args.corpus
    kwargs = {"limit": args.limit} if args.limit is not None else {}
    for name in ("words_per_second", "pause"):
        if getattr(args, name) is not None:
            if args.corpus != "emobank":
                raise MMAffectError(f"--{name.replace('_', '-')} applies to emobank only")
            kwargs[name] = getattr(args, name)
    for name, corpus in (("group", "emodb"), ("split", "ferplus")):
        if getattr(args, name) is not None:
            if args.corpus != corpus:
                raise MMAffectError(f"--{name} applies to {corpus} only")
            kwargs[name] = getattr(args, name)
    print(ADAPTERS[args.corpus](src, Path(args.out), **kwargs).summary())


def _cmd_adapt_composite(args: argparse.Namespace) -> None:
    from mmaffect.data.sources import shared_data_root
    from mmaffect.data.writers.composite import DEFAULT_SECONDS, DEFAULT_SESSIONS, PLAIN, adapt_composite, parse_option

    for name in ("limit", "words_per_second", "pause"):
        if getattr(args, name) is not None:
            raise MMAffectError(f"--{name.replace('_', '-')} does not apply to composite (see --sessions, --seconds)")
    src = shared_data_root(Path(args.src) if args.src else None)
    if src is None:
        raise MMAffectError(f"shared data not found{f' at {args.src}' if args.src else ''}: pass --src "
                            "(the folder holding emodb/, emobank/, ferplus/) or set MMAFFECT_SHARED_DATA")
    report = adapt_composite(src, Path(args.out), sessions=tuple(args.sessions or DEFAULT_SESSIONS),
                             seconds=DEFAULT_SECONDS if args.seconds is None else args.seconds,
                             seed=0 if args.seed is None else args.seed,
                             **{**(PLAIN if args.plain else {}), **dict(map(parse_option, args.set or []))})
    print(report.summary())


def _cmd_models(args: argparse.Namespace) -> None:
    from mmaffect.models.summary import model_table

    rows = model_table(args.names or None)
    print("| model | modalities | parameters | GFLOPs / frame | paper |")
    print("|---|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['name']} | {r['modalities']} | {r['params']:,} | {r['flops_per_frame'] / 1e9:.3f} | "
              f"{r.get('paper_ref', '')} |")


def _cmd_demo(args: argparse.Namespace) -> None:
    from mmaffect.demo import run_demo

    run_demo(Path(args.workdir), quick=args.quick, train=not args.no_train, single=args.single, seeds=args.seeds)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmaffect", description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("--version", action="version", version=f"mmaffect {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a deterministic synthetic corpus in the SEWA layout")
    s.add_argument("out")
    s.add_argument("--train", type=int, default=6)
    s.add_argument("--devel", type=int, default=2)
    s.add_argument("--test", type=int, default=2)
    s.add_argument("--duration", type=float, default=40.0, help="seconds per session")
    s.add_argument("--width", type=int, default=320)
    s.add_argument("--height", type=int, default=240)
    s.add_argument("--fps", type=float, default=25)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--jobs", type=int, default=1, help="sessions written in parallel processes")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_synth)

    s = sub.add_parser("prepare", help="build the cache of aligned 10 Hz arrays from a corpus")
    s.add_argument("data", help="corpus folder (SEWA or generic layout)")
    s.add_argument("--out", required=True, help="cache folder")
    s.add_argument("--config", help="YAML file (default: the built-in configs/prepare.yaml)")
    s.add_argument("--layout", default="auto", choices=["auto", "sewa", "generic"])
    s.add_argument("--partitions", type=_csv_list, help="only these partitions, comma-separated (e.g. train,devel)")
    s.add_argument("--sessions", type=_csv_list, help="only these sessions, comma-separated")
    s.add_argument("--workers", type=int, default=1, help="sessions prepared in parallel processes")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("overrides", nargs="*", help="configuration overrides key=value (e.g. faces.size=64)")
    s.set_defaults(func=_cmd_prepare)

    s = sub.add_parser("info", help="show what a cache holds")
    s.add_argument("cache")
    s.add_argument("--config", action="store_true", help="also print the resolved configuration")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("adapt", help="convert a real corpus (EmoDB, EmoBank, FER+) to the generic layout, or "
                       "assemble the composite benchmark from all three")
    s.add_argument("corpus", choices=["emodb", "emobank", "ferplus", "composite"])
    s.add_argument("--src", help="corpus folder (default: $MMAFFECT_SHARED_DATA/<corpus> or ../shared/data); "
                   "composite: the folder holding emodb/, emobank/, ferplus/")
    s.add_argument("--out", required=True)
    s.add_argument("--limit", type=int, help="convert only this many items")
    s.add_argument("--words-per-second", type=float, help="emobank: reading speed of the sentence timeline (2.5)")
    s.add_argument("--pause", type=float, help="emobank: seconds between sentences (0.5)")
    s.add_argument("--group", choices=["utterance", "speaker"],
                   help="emodb: one session per utterance (default) or per speaker (its utterances joined by "
                        "0.5 s of silence: one recording per speaker)")
    s.add_argument("--split", choices=["train", "valid", "both"], help="ferplus: which split to convert (train)")
    s.add_argument("--sessions", type=int, nargs=3, metavar=("TRAIN", "DEVEL", "TEST"),
                   help="composite: number of sessions per partition (40 8 8)")
    s.add_argument("--seconds", type=float, help="composite: seconds per session (40)")
    s.add_argument("--seed", type=int, help="composite: random seed of the assembly (0)")
    s.add_argument("--plain", action="store_true", help="composite: no realism effects (grey still faces on a "
                   "grey canvas, fixed level, no channel, silence or degradations)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="composite: any option of adapt_composite, "
                   "VALUE in JSON, e.g. --set crf=[18,28] --set head_motion=0 (docs/composite.md)")
    s.set_defaults(func=_cmd_adapt)

    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_tune_parser(sub)
    add_pretrain_parser(sub)
    add_predict_parser(sub)
    add_pretrained_parser(sub)
    add_viz_parser(sub)
    add_export_parser(sub)

    s = sub.add_parser("models", help="list registered models with parameters and FLOPs per frame")
    s.add_argument("names", nargs="*")
    s.set_defaults(func=_cmd_models)

    s = sub.add_parser("demo", help="the main job on built-in synthetic data")
    s.add_argument("--workdir", default="demo_output")
    s.add_argument("--quick", action="store_true", help="tiny corpus, one epoch (for tests)")
    s.add_argument("--no-train", action="store_true", help="only write and prepare the corpus")
    s.add_argument("--single", action="store_true",
                   help="train only fusion-hierarchical from scratch instead of the Table-6-like study")
    s.add_argument("--study", action="store_true", help="the default (kept for old command lines): the unimodal "
                   "networks and all five fusion strategies, about 10 min per seed on 2 cores")
    s.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED",
                   help="train every model once per seed and print mean ± std (default: 0)")
    s.set_defaults(func=_cmd_demo)
    for sp in _subparsers(p).values():
        for action in sp._actions:
            if action.dest == "overrides" and action.nargs == "*":
                action.required = False  # argparse lists a "*" positional after another one as required
                action.default = []
                action.metavar = "key=value"
    return p


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _os_error_line(exc: OSError) -> str:
    """One line for an I/O error: the path (from the exception) and the system's reason."""
    import errno as errno_mod

    path = exc.filename
    reason = exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
    if path is None:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    hint = {errno_mod.ENOSPC: "; free some space", errno_mod.EFBIG: "; free some space or lift the file size limit",
            errno_mod.EROFS: "; write to another folder", errno_mod.EACCES: "; check the permissions",
            errno_mod.EDQUOT: "; free some space"}.get(exc.errno or -1, "")
    where = f"{path} -> {exc.filename2}" if exc.filename2 else str(path)
    return f"{where}: {reason}{hint}"


def _split_extra(extra: list[str]) -> tuple[list[str], list[str]]:
    """The arguments argparse did not recognise, split into ``key=value`` overrides and the rest."""
    overrides = [e for e in extra if "=" in e and not e.startswith("-")]
    rest = [e for e in extra if e not in overrides]
    return overrides, rest


def _reject_extra(parser: argparse.ArgumentParser, args: argparse.Namespace, rest: list[str],
                  overrides: list[str]) -> None:
    """Exit with the subcommand's usage error (status 2) for arguments it does not take."""
    sub = _subparsers(parser).get(getattr(args, "command", None) or "", parser)
    bad = [e for e in rest if not e.startswith("-") and "." in e]
    if bad and hasattr(args, "overrides"):
        sub.error(f"override {bad[0]!r} is not of the form key=value")
    sub.error(f"unrecognized arguments: {' '.join(rest or overrides)}")


def _apply_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Add the ``key=value`` overrides among ``extra`` (they may stand anywhere after the subcommand) to
    ``args.overrides``; any other unrecognised argument is a usage error."""
    overrides, rest = _split_extra(extra)
    takes_overrides = hasattr(args, "overrides")
    if rest or (overrides and not takes_overrides):
        _reject_extra(parser, args, rest, overrides)
    if takes_overrides:
        args.overrides = list(args.overrides or []) + overrides


def _error(args: argparse.Namespace, message: str) -> int:
    """Print ``mmaffect COMMAND: error: MESSAGE`` on stderr; the exit status of a user error (2)."""
    print(f"mmaffect {args.command}: error: {message}", file=sys.stderr)
    return 2


def _libsndfile_line(exc: RuntimeError) -> str:
    """The one-line message of a libsndfile failure (which is no OSError)."""
    reason = str(exc).strip().rstrip(".") or "error"
    return (f"reading or writing a sound file failed (libsndfile: {reason}; "
            "a full disk or an unwritable temporary folder?)")


def _run_command(args: argparse.Namespace) -> int:
    """Run the parsed subcommand; its exit status, with user and I/O errors reported in one line."""
    try:
        args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except MMAffectError as exc:
        return _error(args, str(exc))
    except BrokenPipeError:
        # The reader went away (`mmaffect pretrained | head -1`): stop quietly, as a shell tool does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:
        # Output I/O (read-only folder, full disk, permissions) and unreadable files outside the data readers.
        return _error(args, _os_error_line(exc))
    except RuntimeError as exc:
        if type(exc).__name__ != "LibsndfileError":  # libsndfile's I/O failures are not OSErrors
            raise
        return _error(args, _libsndfile_line(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``mmaffect ARGV``; the exit status (2: a usage, user or I/O error, 130: interrupted, 141: the
    reader of the output went away)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    # key=value overrides may stand anywhere after the subcommand
    args, extra = parser.parse_known_args(argv)
    _apply_overrides(parser, args, extra)
    return _run_command(args)


if __name__ == "__main__":
    sys.exit(main())
