"""viz layer: the figures of Section 5.10 and prediction traces (docs/visualisation.md).

* :mod:`mmaffect.viz.traces` — prediction vs. gold arousal/valence over time;
* :mod:`mmaffect.viz.attention` — fusion weights over time and per frame
  (Fig. 4), text selector weights per word (Fig. 3), running a checkpoint
  over a cached recording;
* :mod:`mmaffect.viz.report` — every figure of one recording into a folder;
* :mod:`mmaffect.viz.cli` — ``mmaffect viz traces`` / ``mmaffect viz attention``.

Kept free of imports so that registering the CLI does not load matplotlib.
"""
