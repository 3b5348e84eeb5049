"""mmaffect: end-to-end multimodal time-continuous affect recognition.

Implements Tzirakis, Chen, Zafeiriou & Schuller, "End-to-end multimodal affect
recognition in real-world environments", Information Fusion 2021.
"""

from mmaffect.inference.figures import set_figure_writer as _set_figure_writer
from mmaffect.version import __version__  # noqa: F401 - re-exported as mmaffect.__version__


def load(checkpoint=None, *, device=None):  # noqa: ANN001, ANN201 - thin lazy alias
    """A predictor for a trained checkpoint: see :func:`mmaffect.inference.loading.load`.

    ``mmaffect.load("runs/x/best.pt").predict(video="talk.mp4")`` returns a
    DataFrame of arousal and valence at 10 Hz; ``mmaffect.load()`` uses the
    shipped default model, ``mmaffect.load("pretrained:NAME")`` another shipped
    one (research use only). (Imported lazily, so that ``import mmaffect``
    stays light.)
    """
    from mmaffect.inference.loading import load as _load

    return _load(checkpoint, device=device)


def _write_session_figures(result, **options):  # noqa: ANN001, ANN201 - thin lazy alias
    """:func:`mmaffect.viz.report.write_session_figures`, imported when the first figure is drawn."""
    from mmaffect.viz.report import write_session_figures

    return write_session_figures(result, **options)


# The package root is the top layer: it gives inference (below viz) its figure writer
# (mmaffect.inference.figures; docs/architecture.md).
_set_figure_writer(_write_session_figures)
