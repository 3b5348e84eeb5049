"""Networks of Tzirakis et al. 2021: branches, fusion strategies, temporal head.

Importing this package imports every module in it, so every network that
registers itself beside its class (:func:`register_branch`,
:func:`register_fusion`; see :mod:`mmaffect.models.registry`) is in the
registry: a new model file needs no edit anywhere else. Build a variant by
name with :func:`create_model`.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from mmaffect.models import zoo  # noqa: F401  (the generic assembly: installs the variant builders)
from mmaffect.models.base import Batch, Branch, BranchOutput, ModelOutput
from mmaffect.models.registry import (
    AttentionLayout,
    AttentionWeights,
    ModelSpec,
    branch_specs,
    create_model,
    fusion_specs,
    get_spec,
    list_models,
    register_branch,
    register_fusion,
    register_model,
)
from mmaffect.models.zoo import tiny_inputs, tiny_overrides

# Every module of the package, in name order (each registers the networks it defines).
for _module in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    _importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "AttentionLayout",
    "AttentionWeights",
    "Batch",
    "Branch",
    "BranchOutput",
    "ModelOutput",
    "ModelSpec",
    "branch_specs",
    "create_model",
    "fusion_specs",
    "get_spec",
    "list_models",
    "register_branch",
    "register_fusion",
    "register_model",
    "tiny_inputs",
    "tiny_overrides",
]
