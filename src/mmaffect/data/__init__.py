"""Data layer: session records, corpus readers (SEWA, generic, EmoDB/EmoBank/FER+ sources), cache; corpus writers (synthetic, composite, adapters) in ``writers``."""

from mmaffect.data.session import DIMENSIONS, LABEL_RATE, Labels, Session, Turn, frame_times

__all__ = ["DIMENSIONS", "LABEL_RATE", "Labels", "Session", "Turn", "frame_times"]

from mmaffect.data.readers import read_corpus  # noqa: E402  (after the record types it returns)

__all__ += ["read_corpus"]
