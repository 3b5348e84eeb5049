"""Convert third-party corpora (EmoDB, EmoBank, FER+) into mmaffect's generic layout.

The converters live in one module per corpus (:mod:`~mmaffect.data.writers.emodb`,
:mod:`~mmaffect.data.writers.emobank`, :mod:`~mmaffect.data.writers.ferplus`);
the sources are read by :mod:`mmaffect.data.sources` and the files written
by :mod:`mmaffect.data.writers.layout`, which describes the layout. This
module gathers them: :data:`ADAPTERS` (for ``mmaffect adapt``) and the
public names of those modules.

Every adapter returns an :class:`AdaptReport`. Labels of EmoDB and FER+ are a
category → (valence, arousal) PROXY (:mod:`mmaffect.data.proxy`), not
dimensional ratings; EmoBank's are real sentence ratings rescaled from 1–5 to
[-1, 1]. The corpora are for research use only: never commit converted data,
and models trained on it are research-only. See ``docs/adapters.md``.

All files are written atomically; ``splits.csv`` and ``adapter.json`` are
written last, so an interrupted conversion is recognisable by their absence.
"""

from __future__ import annotations

from collections.abc import Callable

from mmaffect.data.sources import (
    EMOBANK_PARTITIONS,
    EMODB_EMOTIONS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    SHARED_DATA_ENV,
    shared_data_root,
)
from mmaffect.data.writers.emobank import adapt_emobank
from mmaffect.data.writers.emodb import adapt_emodb
from mmaffect.data.writers.ferplus import FERPLUS_PARTITIONS, FaceRendering, adapt_ferplus, measure_face_detection
from mmaffect.data.writers.layout import RESEARCH_TERMS, AdaptReport

AdapterFn = Callable[..., AdaptReport]

ADAPTERS: dict[str, AdapterFn] = {
    "emodb": adapt_emodb,
    "emobank": adapt_emobank,
    "ferplus": adapt_ferplus,
}
"""Adapter name → function ``(src, out, **options) -> AdaptReport`` (for ``mmaffect adapt``)."""

__all__ = [
    "ADAPTERS",
    "EMOBANK_PARTITIONS",
    "EMODB_EMOTIONS",
    "FERPLUS_PARTITIONS",
    "RESEARCH_TERMS",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "SHARED_DATA_ENV",
    "AdaptReport",
    "AdapterFn",
    "FaceRendering",
    "adapt_emobank",
    "adapt_emodb",
    "adapt_ferplus",
    "measure_face_detection",
    "shared_data_root",
]
