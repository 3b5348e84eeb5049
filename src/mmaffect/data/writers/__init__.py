"""Corpus writers: generators and converters that write corpora for the readers of :mod:`mmaffect.data`.

* :mod:`~mmaffect.data.writers.synthetic` — the synthetic SEWA-layout corpus
  (:func:`~mmaffect.data.writers.synthetic.synthesize`), drawn by
  :mod:`~mmaffect.data.writers.face_render`;
* :mod:`~mmaffect.data.writers.adapters` — EmoDB, EmoBank and FER+ converted
  into the generic layout (:data:`~mmaffect.data.writers.adapters.ADAPTERS`;
  one module per corpus: :mod:`~mmaffect.data.writers.emodb`,
  :mod:`~mmaffect.data.writers.emobank`, :mod:`~mmaffect.data.writers.ferplus`);
* :mod:`~mmaffect.data.writers.composite` — the composite benchmark (EmoDB
  voices, FER+ faces and EmoBank sentences on one trajectory);
* :mod:`~mmaffect.data.writers.layout` — the shared helpers that write the
  generic layout (files, output folder, :class:`~mmaffect.data.writers.layout.AdaptReport`).

Writers may import the readers (:mod:`mmaffect.data.session`,
:mod:`mmaffect.data.sources`, :mod:`mmaffect.data.proxy`, ...); no reader
imports a writer. The modules are not imported here, so that importing one
writer does not load the others' dependencies (PyAV, OpenCV, SciPy).
"""
