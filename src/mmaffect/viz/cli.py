"""The ``viz`` subcommand of ``mmaffect`` (Section 5.10 figures).

Usage::

    mmaffect viz traces RUN [--checkpoint best] [--partition devel] [--out DIR]
    mmaffect viz attention CHECKPOINT --session NAME [--cache CACHE] [--out DIR] [--times 3.2,10.5]
                           [--sentences 3] [--head H] [--scale sentence|absolute] [--device cpu]

``mmaffect.cli`` registers it with :func:`add_viz_parser`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_viz_parser"]


def _float_list(text: str) -> list[float]:
    try:
        values = [float(x) for x in (t.strip() for t in text.split(",")) if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds (e.g. 3.2,10.5), got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one time in seconds")
    return values


def _cmd_traces(args: argparse.Namespace) -> None:
    from mmaffect.viz.traces import plot_run_traces

    paths = plot_run_traces(args.run, checkpoint=args.checkpoint, partition=args.partition, out=args.out)
    folders = sorted({str(p.parent) for p in paths})
    print(f"wrote {len(paths)} trace figure(s) to {', '.join(folders)}")


def _cmd_attention(args: argparse.Namespace) -> None:
    from mmaffect.inference.attention import session_attention
    from mmaffect.viz.report import write_session_figures

    result = session_attention(args.checkpoint, session=args.session, cache=args.cache, device=args.device)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "viz" / args.session
    figs = write_session_figures(result, out=out, times=args.times, sentences=args.sentences, head=args.head,
                                 scale=args.scale)
    for path in figs.written.values():
        print(f"wrote {path}")
    for note in figs.skipped:
        print(f"skipped {note}")


def add_viz_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``viz traces`` and ``viz attention`` on a subparsers object."""
    s = sub.add_parser("viz", help="figures: prediction traces, text selector and fusion weights (Sec. 5.10)")
    vsub = s.add_subparsers(dest="viz_command", required=True)

    t = vsub.add_parser("traces", help="prediction vs. gold of every recording `mmaffect evaluate` scored")
    t.add_argument("run", help="run folder (with eval/predictions-<checkpoint>/)")
    t.add_argument("--checkpoint", default="best", help="whose predictions: best or last (default best)")
    t.add_argument("--partition", help="only this partition (default: every evaluated one)")
    t.add_argument("--out", help="folder (default RUN/eval/traces-<checkpoint>)")
    t.set_defaults(func=_cmd_traces)

    a = vsub.add_parser("attention", help="fusion weights over time, selector weights per word and traces of "
                                          "one recording")
    a.add_argument("checkpoint", help="a training checkpoint (RUN/best.pt)")
    a.add_argument("--session", required=True, help="the cached recording to run")
    a.add_argument("--cache", help="cache folder (default: the run's data.cache)")
    a.add_argument("--out", help="folder (default: <checkpoint folder>/viz/<session>)")
    a.add_argument("--times", type=_float_list,
                   help="comma-separated seconds: sentences to show and frames to draw as diagrams")
    a.add_argument("--sentences", type=int, default=3,
                   help="without --times: how many sentences (most peaked selector weights) to show")
    a.add_argument("--head", type=int, help="one selector head (default: mean over heads)")
    a.add_argument("--scale", choices=["sentence", "absolute"], default="sentence",
                   help="word colours relative to the sentence maximum (default) or absolute")
    a.add_argument("--device", default="cpu", help="torch device (default cpu)")
    a.set_defaults(func=_cmd_attention)
    return s
