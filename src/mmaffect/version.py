"""The package version, in a module of its own at the bottom of the layers.

Every layer may read it (checkpoints, reports, the synthetic corpus'
manifest); ``mmaffect/__init__.py`` re-exports it as ``mmaffect.__version__``.
It lives here and not in the package root because the root is the top layer
(:func:`mmaffect.load`), which no module below it may import
(docs/architecture.md).
"""

__version__ = "0.1.0"
