"""Use of trained models on new recordings: prediction, streaming, export."""
