"""Use of trained models on new recordings: prediction, streaming, export."""

DEFAULT_MAX_GAP = 2.0
"""Seconds after the last frame with any input (speech heard, a face, words) for which the LSTM head's
carried state still counts as a prediction; later frames, and those before the first input, are left
empty (:func:`mmaffect.inference.predictor.frames_without_input`)."""
