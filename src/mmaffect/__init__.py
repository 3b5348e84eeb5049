"""mmaffect: end-to-end multimodal time-continuous affect recognition.

Implements Tzirakis, Chen, Zafeiriou & Schuller, "End-to-end multimodal affect
recognition in real-world environments", Information Fusion 2021.
"""

__version__ = "0.1.0"


def load(checkpoint=None, *, device=None):  # noqa: ANN001, ANN201 - thin lazy alias
    """A predictor for a trained checkpoint: see :func:`mmaffect.inference.predictor.load`.

    ``mmaffect.load("runs/x/best.pt").predict(video="talk.mp4")`` returns a
    DataFrame of arousal and valence at 10 Hz; ``mmaffect.load()`` uses the
    shipped default model, ``mmaffect.load("pretrained:NAME")`` another shipped
    one (research use only). (Imported lazily, so that ``import mmaffect``
    stays light.)
    """
    from mmaffect.inference.predictor import load as _load

    return _load(checkpoint, device=device)
