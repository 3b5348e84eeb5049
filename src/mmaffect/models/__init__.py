"""Networks of Tzirakis et al. 2021: branches, fusion strategies, temporal head.

Importing this package registers every variant (see :mod:`mmaffect.models.zoo`);
build one by name with :func:`create_model`.
"""

from mmaffect.models import zoo  # noqa: F401  (registers every variant)
from mmaffect.models.base import Batch, Branch, BranchOutput, ModelOutput
from mmaffect.models.registry import ModelSpec, create_model, get_spec, list_models, register_model
from mmaffect.models.zoo import tiny_inputs, tiny_overrides

__all__ = [
    "Batch",
    "Branch",
    "BranchOutput",
    "ModelOutput",
    "ModelSpec",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
    "tiny_inputs",
    "tiny_overrides",
]
