"""Data layer: session records, corpus readers, synthetic corpus, adapters, cache."""

from mmaffect.data.session import DIMENSIONS, LABEL_RATE, Labels, Session, Turn, frame_times

__all__ = ["DIMENSIONS", "LABEL_RATE", "Labels", "Session", "Turn", "frame_times"]
