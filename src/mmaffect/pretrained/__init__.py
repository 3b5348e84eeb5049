"""Data package: the shipped pretrained models (``index.json``, ``MODEL_CARD.md``, ``*.pt``).

Research use only; see :mod:`mmaffect.checkpoints` (``pretrained:NAME``) and
:mod:`mmaffect.inference.pretrained` (``mmaffect pretrained``).
"""
