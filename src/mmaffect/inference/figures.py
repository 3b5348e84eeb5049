"""The figures of a prediction, drawn by the viz layer without inference importing it.

Inference sits below viz (docs/architecture.md): no inference module imports
:mod:`mmaffect.viz`. :meth:`mmaffect.inference.predictor.Prediction.save`
calls :func:`write_session_figures` here, which hands the
:class:`~mmaffect.inference.attention.SessionAttention` of the prediction to
the writer set with :func:`set_figure_writer`. The package root
(``mmaffect/__init__.py``, in the top layer, run before any module of the
package) sets :func:`mmaffect.viz.report.write_session_figures`, imported
when the first figure is drawn: so ``Prediction.save(figures=True)`` draws the
same figures whatever module a program imported first, and ``import
mmaffect`` does not load matplotlib.

This module imports nothing, so the package root can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["FigureWriter", "set_figure_writer", "figure_writer", "write_session_figures"]

FigureWriter = Callable[..., Any]
"""``writer(result, *, out, times=None, sentences=3, ...)`` → an object with ``written``
(``{figure name: path}``) and ``skipped`` (notes), as
:func:`mmaffect.viz.report.write_session_figures`."""

_writer: FigureWriter | None = None


def set_figure_writer(writer: FigureWriter | None) -> FigureWriter | None:
    """Make ``writer`` draw the figures of predictions (None: none); returns the previous one."""
    global _writer
    previous, _writer = _writer, writer
    return previous


def figure_writer() -> FigureWriter | None:
    """The writer set with :func:`set_figure_writer` (None when none is set)."""
    return _writer


def write_session_figures(result: Any, **options: Any) -> Any:
    """Draw the figures of ``result`` (a :class:`~mmaffect.inference.attention.SessionAttention`)
    with the writer set by the package root; ``options`` as
    :func:`mmaffect.viz.report.write_session_figures` takes them."""
    if _writer is None:
        raise RuntimeError("no figure writer is set (mmaffect/__init__.py sets mmaffect.viz.report's); "
                           "save with figures=False")
    return _writer(result, **options)
