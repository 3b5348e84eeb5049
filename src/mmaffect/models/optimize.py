"""Speed-only transformations of a built network (issue #14, item 5).

``for_inference(model)`` returns the network ready for prediction: eval mode,
every convolution followed by a batch norm folded into one convolution
(``torch.nn.utils.fusion.fuse_conv_bn_eval``) and the 2-D convolution
weights in channels-last memory format, which lets oneDNN run the face
network without a layout reorder around every convolution. The outputs equal
``model.eval()``'s to float rounding (tests/test_optimize.py); the result is
for inference only: its batch norms are gone, so training it would be a
different network.

``for_training(model)`` puts the 2-D convolution weights of a network in
channels-last format for training; outputs, gradients and batch-norm
statistics equal the plain network's to float rounding. Optimiser state and
checkpoints are unaffected (a state dict holds the same values; loading one
copies into the channels-last parameters).

Measured effect: docs/benchmarks.md, "Side by side with End2You"
(``benchmarks/bench_side_by_side.py``).
"""

from __future__ import annotations

import copy
import io
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["for_inference", "for_training", "fuse_conv_bn", "to_channels_last", "OrtFrameFeatures"]

_PAIRS = (
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv3d, nn.BatchNorm3d),
)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    if not any(isinstance(conv, c) and type(bn) is b for c, b in _PAIRS):
        return False
    return (
        bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
        and bn.num_features == conv.out_channels
        and not conv.transposed
    )


def fuse_conv_bn(model: nn.Module) -> int:
    """Fold every batch norm that directly follows a convolution inside an
    ``nn.Sequential`` (the only place where the convolution's output is
    certain to feed the batch norm alone) into that convolution, in place;
    the batch norm becomes ``nn.Identity``. ``model`` must be in eval mode.
    Returns the number of folded pairs."""
    if model.training:
        raise ValueError("fuse_conv_bn folds running statistics: call model.eval() first")
    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if conv is None or bn is None or not _foldable(conv, bn):
                continue
            module._modules[first] = fuse_conv_bn_eval(conv, bn)
            module._modules[second] = nn.Identity()
            folded += 1
    return folded


def to_channels_last(model: nn.Module) -> bool:
    """Put the weights of every ``nn.Conv2d`` in channels-last format, in
    place (other parameters untouched). Returns whether there was any."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    return bool(convs)


class _FrameFeatures(nn.Module):
    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor):  # type: ignore[override]
        return self.branch.frame_features(x)


class OrtFrameFeatures:
    """A face branch's ``frame_features`` run by ONNX Runtime: the branch
    (eval mode, conv–BN folded) exported once to ONNX in memory, for
    (n, 3, S, S) inputs of its ``image_size``; any other input size falls
    back to the PyTorch method. ONNX Runtime fuses convolution, addition and
    ReLU into one kernel and runs the network with fewer, larger kernels.
    Installed as the branch's ``frame_features`` by
    ``for_inference(model, onnxruntime=True)``; outputs carry no gradient."""

    def __init__(self, branch: nn.Module, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.branch = branch
        size = int(branch.image_size)
        plain = copy.deepcopy(branch).eval()
        for p in plain.parameters():
            p.data = p.data.contiguous()
        example = torch.rand(2, 3, size, size)
        buf = io.BytesIO()
        names = ["features", "saliency", "branch_weights"]
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _FrameFeatures(plain), (example,), buf, input_names=["faces"], output_names=names,
                dynamic_axes={"faces": {0: "n"}, **{n: {0: "n"} for n in names}},
                opset_version=17, dynamo=False, do_constant_folding=True,
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        # Do not keep the cores spinning between calls (the LSTM head and the
        # other branches run in PyTorch in between).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
        self.size = size

    def __call__(self, x: torch.Tensor):
        if x.shape[-2:] != (self.size, self.size) or x.shape[0] == 0:
            return type(self.branch).frame_features(self.branch, x)
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        outs = self.session.run(None, {"faces": arr})
        return tuple(torch.from_numpy(o).to(device=x.device, dtype=x.dtype) for o in outs)

    def __deepcopy__(self, memo):
        # A session cannot be copied; the copy shares it (runs are thread-safe;
        # the weights in it are those of the export, inference only).
        new = object.__new__(OrtFrameFeatures)
        memo[id(self)] = new
        new.branch, new.session, new.size = copy.deepcopy(self.branch, memo), self.session, self.size
        return new


def _face_branches(model: nn.Module) -> list[nn.Module]:
    """The HRNet face branches in ``model`` (known by their attentional pooling; no import of
    mmaffect.models.visual, which imports this module)."""
    return [m for m in model.modules()
            if getattr(m, "modality", None) == "visual" and callable(getattr(m, "attention_pool", None))]


def for_inference(
    model: nn.Module,
    *,
    fuse: bool = True,
    channels_last: bool = True,
    onnxruntime: bool = False,
    inplace: bool = False,
) -> nn.Module:
    """The network ``model`` made faster for prediction, same function (eval
    mode) to float rounding: eval mode, conv–BN folded (``fuse``), 2-D
    convolution weights channels-last (``channels_last``) and, with
    ``onnxruntime=True``, the per-frame part of each HRNet face branch run
    by ONNX Runtime on the CPU (:class:`OrtFrameFeatures`; about 4 s to
    export and load once, then faster than PyTorch on CPU: use it for long
    videos, not for a handful of frames, and not for a model on a GPU).
    Works on any registered model (text and audio parts are left as they
    are). A copy unless ``inplace``; the result is for inference only."""
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    if fuse:
        fuse_conv_bn(model)
    if channels_last:
        to_channels_last(model)
    if onnxruntime:
        for branch in _face_branches(model):
            branch.frame_features = OrtFrameFeatures(branch)
    return model


def for_training(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """``model`` with its 2-D convolution weights channels-last, in place
    (the optimiser may be built before or after: the parameters stay the same
    objects). Same outputs and gradients to float rounding."""
    if channels_last:
        to_channels_last(model)
    return model
