"""ONNX export of trained models: the whole network and each branch (issue #5).

``export_onnx(checkpoint, out_dir)`` writes

* ``model.onnx`` — the whole network. Inputs: per modality its arrays and
  mask (``words``/``word_mask``, ``audio``/``audio_mask``, ``faces``/
  ``face_mask``), the frame mask ``mask`` and the LSTM state ``h0``/``c0``
  (zeros to start a recording; feed back ``h_n``/``c_n`` to continue it
  chunk by chunk). Outputs: ``pred`` (B, T, 2: arousal, valence), ``h_n``,
  ``c_n`` and every attention tensor as ``attention.<name>``.
* ``<modality>.onnx`` per requested branch — inputs the modality's arrays,
  its mask and ``mask``; outputs ``features`` (B, T, D), ``present`` (B, T)
  and the branch's attention tensors.
* ``preprocessing.json`` — the checkpoint's preprocessing configuration,
  model name and options, frame rate, text and annotation delays, input and
  output names / shapes / dtypes of every file, the parity figures and the
  mmaffect version.

Batch and time axes (and the word-slot axis) are dynamic. Every file is
written atomically.

Trace-friendly computation. The eager networks skip work that a static
graph cannot skip: the branches run only on the frames where their modality
is present (``nonzero`` + scatter), the text branch deduplicates repeated
word lists (``torch.unique``) and compacts real words with a stable sort,
the fast audio network groups frames by their zero half, and the temporal
head chooses between a packed and a plain LSTM. The exported graph instead
runs every branch on *every* frame and then sets the features (and
attention) of absent frames to exactly 0 — what the eager code returns for
them — so the results agree with PyTorch to float rounding (checked on
export, see ``verification`` in ``preprocessing.json``). Every registered
branch declares that per-frame network itself, ``frame_forward(x, x_mask)``
(:mod:`mmaffect.models.registry`); the wrappers here call it, the model's
fusion module and the head's LSTM and output layer, so nothing here knows a
branch class and no weights or equations are duplicated. Frame masks must mark a prefix of each sequence
(padding at the end), as in PyTorch, where a violation raises; the ONNX
graph cannot check it.

Not exported: training-only behaviour (dropout, activation checkpointing),
the preprocessing itself (face detection, word embedding, audio framing —
their parameters are in ``preprocessing.json``) and the annotation-delay
alignment of the outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmaffect.data.pcm import PCM_SCALE
from mmaffect.errors import ConfigError
from mmaffect.utils.io import atomic_path, atomic_write_json
from mmaffect.version import __version__

if TYPE_CHECKING:  # torch and numpy are imported where used: `mmaffect --help` stays fast
    import numpy as np
    import torch
    from torch import nn

    from mmaffect.models.base import Branch
    from mmaffect.models.temporal import TemporalHead

__all__ = [
    "DEFAULT_OPSET",
    "MODALITY_INPUTS",
    "ExportReport",
    "TraceableBranch",
    "TraceableModel",
    "add_export_parser",
    "export_onnx",
    "initial_state",
    "onnx_feed",
    "traceable_branch",
    "traceable_model",
]

DEFAULT_OPSET = 17
PREPROCESSING_FORMAT = 1
PARTS = ("model", "text", "audio", "visual")

#: (input, mask) names of each modality, in the order of the ONNX inputs.
MODALITY_INPUTS: dict[str, tuple[str, str]] = {
    "text": ("words", "word_mask"),
    "audio": ("audio", "audio_mask"),
    "visual": ("faces", "face_mask"),
}


# --------------------------------------------------------------------------- traceable branches


def _per_frame_fn(branch: Branch) -> Any:
    """The branch's declared per-frame network: ``frame_forward(x (N, ...), x_mask) -> (features (N, D),
    attention {name: (N, ...)})`` (see :mod:`mmaffect.models.registry`)."""
    frame_forward = getattr(branch, "frame_forward", None)
    if not callable(frame_forward):
        raise ConfigError(f"branch {type(branch).__name__} ({branch.modality}) has no frame_forward, so no ONNX "
                          "export path")
    return frame_forward


class TraceableBranch:
    """A branch computed on every frame, absent frames set to 0 afterwards.

    ``self(x, modality_mask, mask) -> (features (B, T, D), present (B, T),
    *attention)`` with the attention tensors in the order of
    ``attention_names`` (filled by the first call). Same values as
    ``branch(batch)`` in eval mode, to float rounding. A plain callable;
    :meth:`module` wraps it as the ``nn.Module`` the exporter traces.
    """

    def __init__(self, branch: Branch) -> None:
        self.branch = branch
        self.modality = branch.modality
        self.frame_fn = _per_frame_fn(branch)
        self.attention_names: list[str] = []

    def features(
        self, x: torch.Tensor, modality_mask: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Features (B, T, D), present (B, T) and attention {name: (B, T, ...)}."""
        import torch

        b, t = mask.shape[0], mask.shape[1]
        flat = x.reshape(-1, *x.shape[2:])
        # The modality's mask ((B, T) or (B, T, slots)) without the sequence padding.
        frame = mask.to(torch.bool).reshape(-1, *([1] * (modality_mask.dim() - 2)))
        flat_mask = modality_mask.to(torch.bool).reshape(-1, *modality_mask.shape[2:]) & frame
        present = flat_mask.reshape(flat_mask.shape[0], -1).any(-1)
        feats, att = self.frame_fn(flat, flat_mask)

        def zeroed(v: torch.Tensor) -> torch.Tensor:
            return torch.where(present.reshape(-1, *([1] * (v.dim() - 1))), v, torch.zeros_like(v))

        feats = zeroed(feats)
        att = {k: zeroed(v) for k, v in att.items()}
        feats = feats.reshape(b, t, feats.shape[-1])
        att = {k: v.reshape(b, t, *v.shape[1:]) for k, v in att.items()}
        return feats, present.reshape(b, t), att

    def __call__(self, x: torch.Tensor, modality_mask: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats, present, att = self.features(x, modality_mask, mask)
        if not self.attention_names:
            self.attention_names = sorted(att)
        return (feats, present, *(att[k] for k in self.attention_names))

    def module(self) -> nn.Module:
        """This computation as an ``nn.Module`` (eval mode) that owns the branch."""
        return _as_module(self, self.branch)


def traceable_branch(branch: Branch) -> TraceableBranch:
    """The trace-friendly form of ``branch`` (ConfigError for a branch without ``frame_forward``)."""
    return TraceableBranch(branch)


# --------------------------------------------------------------------------- traceable model


def _head_forward(
    head: TemporalHead, x: torch.Tensor, mask: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TemporalHead.forward (eval) always on the packed path (the eager head
    uses the plain LSTM when nothing is padded; same values)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    b, t = mask.shape[0], mask.shape[1]
    lengths = mask.to(torch.long).sum(dim=1)
    packed = pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
    out, (h_n, c_n) = head.lstm(packed, (h0, c0))
    h, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
    empty = (lengths == 0).reshape(1, b, 1)  # sequences with no real frame keep their state
    h_n = torch.where(empty, h0, h_n)
    c_n = torch.where(empty, c0, c_n)
    pred = torch.tanh(head.out(h)) * mask.unsqueeze(-1).to(h.dtype)
    return pred, h_n, c_n


class TraceableModel:
    """A UnimodalModel / MultimodalModel in trace-friendly form.

    ``self(*modality inputs, mask, h0, c0)`` with the modality inputs as
    (x, modality_mask) pairs in ``modalities`` order; returns ``(pred, h_n,
    c_n, *attention)`` with the attention tensors in ``attention_names``
    order (filled by the first call; keys as in ``ModelOutput.attention``).
    A plain callable; :meth:`module` wraps it as the ``nn.Module`` the
    exporter traces.
    """

    def __init__(self, model: nn.Module) -> None:
        from mmaffect.models.assembly import MultimodalModel, UnimodalModel

        self.model = model
        if isinstance(model, UnimodalModel):
            self.branches = {model.modality: TraceableBranch(model.branch)}
            self.fusion = None
        elif isinstance(model, MultimodalModel):
            self.branches = {m: TraceableBranch(b) for m, b in model.branches.items()}
            self.fusion = model.fusion
        else:
            raise ConfigError(f"{type(model).__name__} has no ONNX export path (expected a registered model)")
        self.head = model.head
        self.modalities = tuple(self.branches.keys())
        self.attention_names: list[str] = []

    def module(self) -> nn.Module:
        """This computation as an ``nn.Module`` (eval mode) that owns the model."""
        return _as_module(self, self.model)

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        import torch

        n = len(self.modalities)
        mask, h0, c0 = inputs[2 * n], inputs[2 * n + 1], inputs[2 * n + 2]
        mask = mask.to(torch.bool)
        b, t = mask.shape[0], mask.shape[1]
        attention: dict[str, torch.Tensor] = {}
        feats, present = [], []
        for i, (name, branch) in enumerate(self.branches.items()):
            f, p, att = branch.features(inputs[2 * i], inputs[2 * i + 1], mask)
            feats.append(f)
            present.append(p)
            attention.update({f"{name}.{k}": v for k, v in att.items()})
        if self.fusion is None:
            x = feats[0]
        else:
            flat = [f.reshape(-1, f.shape[-1]) for f in feats]
            flat_present = [(p & mask).reshape(-1) for p in present]
            fused, fusion_att = self.fusion(flat, flat_present)
            x = fused.reshape(b, t, fused.shape[-1])
            for k, v in fusion_att.items():
                attention[f"fusion.{k}"] = v.reshape(b, t, *v.shape[1:])
        pred, h_n, c_n = _head_forward(self.head, x, mask, h0, c0)
        if not self.attention_names:
            self.attention_names = sorted(attention)
        return (pred, h_n, c_n, *(attention[k] for k in self.attention_names))


def traceable_model(model: nn.Module) -> TraceableModel:
    """The trace-friendly form of a registered model (ConfigError for other modules)."""
    return TraceableModel(model)


def _as_module(fn: Any, owned: nn.Module) -> nn.Module:
    """An ``nn.Module`` in eval mode whose ``forward`` is ``fn`` and that owns
    ``owned`` (so the exporter sees its parameters and switches its mode; the
    exporter puts the wrapper's mode back afterwards, hence eval here)."""
    from torch import nn

    class Exported(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.owned = owned

        def forward(self, *inputs: Any) -> Any:
            return fn(*inputs)

    return Exported().eval()


def initial_state(model_or_head: nn.Module, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero ``h0``, ``c0`` (layers, batch, hidden) float32 for a fresh recording."""
    import numpy as np

    from mmaffect.models.temporal import TemporalHead

    head = model_or_head if isinstance(model_or_head, TemporalHead) else model_or_head.head
    zeros = np.zeros((head.layers, batch, head.hidden), dtype=np.float32)
    return zeros, zeros.copy()


# --------------------------------------------------------------------------- inputs and metadata


def _modality_input_specs(modality: str, sizes: Mapping[str, int]) -> list[dict[str, Any]]:
    """Name, shape (strings = dynamic axes), dtype and meaning of a modality's two inputs."""
    if modality == "text":
        return [
            {"name": "words", "shape": ["batch", "time", "slots", sizes["embed_dim"]], "dtype": "float32",
             "meaning": "word vectors of each frame's word slots (zeros at unused slots)"},
            {"name": "word_mask", "shape": ["batch", "time", "slots"], "dtype": "bool",
             "meaning": "slot holds a word (prepared word_index >= 0)"},
        ]
    if modality == "audio":
        return [
            {"name": "audio", "shape": ["batch", "time", sizes["frame_samples"]], "dtype": "float32",
             "meaning": f"interlocutor vector: 100 ms of int16 PCM / {PCM_SCALE:.0f} in the first half when the target "
                        "speaks, else in the second half, the other half zeros"},
            {"name": "audio_mask", "shape": ["batch", "time"], "dtype": "bool", "meaning": "the frame has audio"},
        ]
    s = sizes["image_size"]
    return [
        {"name": "faces", "shape": ["batch", "time", 3, s, s], "dtype": "float32",
         "meaning": "RGB face crop, channels first, values in [0, 1] (uint8 / 255)"},
        {"name": "face_mask", "shape": ["batch", "time"], "dtype": "bool", "meaning": "a face was found"},
    ]


_SIZE_OF = {"text": "embed_dim", "audio": "frame_samples", "visual": "image_size"}

_MASK_SPEC = {"name": "mask", "shape": ["batch", "time"], "dtype": "bool",
              "meaning": "real frames; False only on trailing sequence padding"}


def _dims(spec: Mapping[str, Any]) -> dict[int, str]:
    """The dynamic axes of a spec, as ``dynamic_axes`` wants them."""
    return {i: d for i, d in enumerate(spec["shape"]) if isinstance(d, str)}


def _example_inputs(
    modalities: Sequence[str], sizes: Mapping[str, int], *, batch: int, frames: int, words: int, seed: int
) -> dict[str, torch.Tensor]:
    """Random inputs with absent frames of every modality and trailing padding."""
    import torch

    from mmaffect.models.summary import example_batch

    out = example_batch(modalities, batch=batch, frames=frames, embed_dim=sizes["embed_dim"],
                        image_size=sizes["image_size"], words=words, frame_samples=sizes["frame_samples"],
                        padded=True, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    if "audio" in modalities:
        out["audio_mask"] = torch.rand(batch, frames, generator=g) > 0.2
        out["audio_mask"][0, 0] = True
    if "visual" in modalities and "face_mask" not in out:
        out["face_mask"] = torch.ones(batch, frames, dtype=torch.bool)
    if "text" in modalities and frames > 2:
        # Real words that are not a prefix of the slots, and a repeated word
        # list (the eager branch compacts and deduplicates them).
        n_slots = out["words"].shape[2]
        gaps = torch.zeros(n_slots, dtype=torch.bool)
        gaps[1::2] = True  # slots 1, 3, ...
        out["word_mask"][0, 1] = gaps
        out["words"][0, 1] = torch.randn(n_slots, sizes["embed_dim"], generator=g) * gaps[:, None]
        out["words"][0, 2] = out["words"][0, 0]
        out["word_mask"][0, 2] = out["word_mask"][0, 0]
    if frames > 2 and batch > 1:
        out["mask"][1, frames - 2:] = False  # a second padded sequence, two frames of padding
    return out


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as a numpy array (CPU, no grad)."""
    return t.detach().cpu().numpy()


def onnx_feed(batch: Mapping[str, Any], input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The ONNX Runtime feed of ``batch`` (torch tensors or arrays) for ``input_names``:
    masks (``*mask``) as bool, everything else as float32 (e.g. float16 word vectors).

    >>> import numpy as np
    >>> feed = onnx_feed({"mask": [[1, 0]], "audio": np.zeros((1, 2, 4))}, ["audio", "mask"])
    >>> feed["mask"], feed["audio"].dtype
    (array([[ True, False]]), dtype('float32'))
    """
    import numpy as np
    import torch

    feed = {}
    for name in input_names:
        if name not in batch:
            raise ConfigError(f"the ONNX model needs the input {name!r}")
        value = batch[name]
        array = _to_numpy(value) if isinstance(value, torch.Tensor) else np.asarray(value)
        feed[name] = array.astype(np.bool_ if name.endswith("mask") else np.float32, copy=False)
    return feed


# --------------------------------------------------------------------------- export


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how closely ONNX Runtime matched PyTorch."""

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    #: part → output name → max |onnxruntime − PyTorch eager|
    parity: dict[str, dict[str, float]] = field(default_factory=dict)
    preprocessing: Path | None = None

    def max_abs_diff(self, part: str) -> float:
        """Largest difference over the outputs of ``part`` (NaN when not verified)."""
        values = self.parity.get(part, {})
        return max(values.values()) if values else float("nan")

    def summary(self) -> str:
        """One line per file written, with the parity figure of each verified one."""
        lines = []
        for part, path in self.files.items():
            line = f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)"
            if part in self.parity:
                worst = max(self.parity[part], key=self.parity[part].get)
                line += f"; onnxruntime vs PyTorch max abs diff {self.parity[part][worst]:.2e} ({worst})"
            lines.append(line)
        if self.preprocessing is not None:
            lines.append(f"wrote {self.preprocessing}")
        return "\n".join(lines)


def _require_export_deps() -> Any:
    """The onnxruntime module; ConfigError naming the extra to install when onnx or onnxruntime is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "onnx or onnxruntime"
        raise ConfigError(
            f"ONNX export needs onnx and onnxruntime ({missing} cannot be imported): pip install mmaffect[export]"
        ) from None
    return onnxruntime


def _load(checkpoint: Any) -> tuple[dict[str, Any], str]:
    """The checkpoint dict and a label for messages; a run folder means its ``best.pt``,
    ``pretrained:NAME`` a shipped model."""
    from mmaffect.checkpoints import load_checkpoint, resolve

    if isinstance(checkpoint, (str, Path)):
        path = resolve(checkpoint)
        if path.is_dir():
            path = path / "best.pt"
        return load_checkpoint(path), str(path)
    label = "checkpoint dict"
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint or "config" not in checkpoint:
        raise ConfigError(f"{label}: not an mmaffect training checkpoint (no 'model'/'config' entries)")
    return dict(checkpoint), label


def _build(ckpt: Mapping[str, Any], label: str) -> nn.Module:
    """The checkpoint's registered model with its weights, in eval mode (ConfigError when they do not fit)."""
    from mmaffect.checkpoints import build_model_from_checkpoint

    config = ckpt.get("config")
    if not isinstance(config, Mapping) or not config.get("model_name"):
        raise ConfigError(f"{label}: not an mmaffect training checkpoint (no model_name in its config)")
    try:
        # the graph steps the LSTM with an (h, c) state; the windowed blend of predict is the
        # caller's (docs/export.md)
        model = build_model_from_checkpoint(dict(ckpt), context=None)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    except (RuntimeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{label}: the weights do not fit model {config['model_name']!r}: {exc}") from None
    return model.eval()


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporter's chatter: Python warnings (tracer, deprecation)
    and whatever it prints on file descriptors 1 and 2 (C++ shape-inference
    warnings about ``prim::PackPadded``, harmless since the graphs are
    verified; the whole graph when an export fails). Errors still arrive as
    exceptions."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                for fd, copy in saved.items():
                    os.dup2(copy, fd)
    finally:
        for copy in saved.values():
            os.close(copy)


def _export_module(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, *, input_specs: Sequence[Mapping[str, Any]],
    output_specs: Sequence[Mapping[str, Any]], opset: int,
) -> None:
    """Trace ``module`` on ``args`` with the classic exporter (dynamic axes from the specs' named dims)."""
    import torch

    input_names = [s["name"] for s in input_specs]
    output_names = [s["name"] for s in output_specs]
    dynamic = {s["name"]: _dims(s) for s in (*input_specs, *output_specs) if _dims(s)}
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True)


def _run_onnx(ort: Any, path: Path, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of the ONNX file at ``path`` on ``feed`` (CPU), by name."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feed))))


def _parity(expected: Mapping[str, torch.Tensor], got: Mapping[str, np.ndarray], label: str) -> dict[str, float]:
    """Max abs difference per output (bool outputs: the number of differing entries; NaN stays NaN)."""
    import numpy as np

    out = {}
    for name, value in expected.items():
        ref = _to_numpy(value)
        res = got[name]
        if ref.shape != res.shape:
            raise ConfigError(f"{label}: output {name!r} has shape {res.shape} in ONNX Runtime, {ref.shape} in PyTorch")
        if ref.dtype == np.bool_:
            out[name] = float(np.count_nonzero(ref != res))
        else:
            out[name] = float(np.max(np.abs(ref.astype(np.float64) - res.astype(np.float64)))) if ref.size else 0.0
    return out


#: Declared attention axes that vary from one input to the next (dynamic in the graph).
_DYNAMIC_ATTENTION_AXES = {"slots"}


def _attention_axes(traced_model: TraceableModel) -> dict[str, tuple[str, ...]]:
    """The axes (after batch, time) each branch and the fusion declare for their attention tensors, by
    the names of the whole model's outputs (``text.selector``, ``fusion.top``) and of a branch file's."""
    out: dict[str, tuple[str, ...]] = {}
    for modality, traceable in traced_model.branches.items():
        for name, axes in dict(getattr(traceable.branch, "ATTENTION_AXES", {}) or {}).items():
            out[f"{modality}.{name}"] = out[f"{modality}:{name}"] = tuple(axes)
    layout = getattr(traced_model.fusion, "ATTENTION_LAYOUT", None)
    for weights in getattr(layout, "weights", ()):
        out[f"fusion.{weights.name}"] = tuple(weights.axes)
    return out


def _attention_specs(names: Sequence[str], tensors: Sequence[torch.Tensor], prefix: str,
                     axes: Mapping[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    """Output specs of attention tensors (B, T, ...); a declared axis named ``slots`` (the word slots,
    e.g. of the text selector) is dynamic, and the declared axis names are listed."""
    specs = []
    for name, t in zip(names, tensors):
        declared = axes.get(name)
        shape: list[Any] = ["batch", "time", *t.shape[2:]]
        spec: dict[str, Any] = {"name": f"{prefix}{name}", "shape": shape, "dtype": "float32"}
        if declared and len(declared) == t.dim() - 2:
            shape[2:] = [a if a in _DYNAMIC_ATTENTION_AXES else n for a, n in zip(declared, t.shape[2:])]
            spec["axes"] = ["batch", "time", *declared]
        specs.append(spec)
    return specs


def _requested_parts(parts: Sequence[str], modalities: Sequence[str], model_name: Any, label: str) -> list[str]:
    """The parts to export, in order and without repeats (``all`` = the model and every branch).

    Raises ConfigError for an unknown part or a branch the model does not have."""
    wanted = list(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if "all" in wanted:
        wanted = ["model", *modalities]
    unknown = [p for p in wanted if p not in PARTS]
    if unknown or not wanted:
        raise ConfigError(f"unknown export part(s) {unknown or parts!r}; choose from {', '.join(PARTS)} or all")
    missing = [p for p in wanted if p != "model" and p not in modalities]
    if missing:
        raise ConfigError(f"{label}: model {model_name!r} has no {', '.join(missing)} branch "
                          f"(its modalities: {', '.join(modalities)})")
    return wanted


def _graph_sizes(name: str, options: Mapping[str, Any], prepare: Any,
                 modalities: Sequence[str]) -> tuple[dict[str, Any], int]:
    """The input sizes of the graphs (``input_options`` of the model) and the word slots of the examples."""
    from mmaffect.models.zoo import input_options

    image_default = int((prepare.get("faces") or {}).get("size", 96)) if isinstance(prepare, Mapping) else 96
    sizes = input_options(name, dict(options), image_size=image_default)
    # The graph takes the crops the model saw in training and sees in `predict`: the prepared size
    # (a checkpoint from before training refused a differing model_options.image_size may say otherwise).
    if "visual" in modalities and isinstance(prepare, Mapping) and (prepare.get("faces") or {}).get("size"):
        sizes["image_size"] = image_default
    words = int((prepare.get("text") or {}).get("max_words", 30)) if isinstance(prepare, Mapping) else 30
    return sizes, max(2, min(words, 30))


@dataclass
class _Graph:
    """One graph to export: the module to trace, the example arguments it is traced on, and the
    specs (name, shape, dtype) of its inputs and outputs."""

    module: nn.Module
    args: tuple[torch.Tensor, ...]
    specs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


def _model_graph(traced_model: TraceableModel, model: nn.Module, sizes: Mapping[str, Any],
                 example: Mapping[str, torch.Tensor], batch: int) -> _Graph:
    """The whole network: every modality's inputs, ``mask`` and the LSTM state in; ``pred``, the state
    out and the attention tensors out."""
    import torch

    h0, c0 = (torch.from_numpy(a) for a in initial_state(model, batch))
    state_shape = [int(model.head.layers), "batch", int(model.head.hidden)]
    module = traced_model.module()
    specs = [s for m in traced_model.modalities for s in _modality_input_specs(m, sizes)]
    specs += [_MASK_SPEC,
              {"name": "h0", "shape": state_shape, "dtype": "float32",
               "meaning": "LSTM hidden state carried in (zeros for a new recording)"},
              {"name": "c0", "shape": state_shape, "dtype": "float32",
               "meaning": "LSTM cell state carried in (zeros for a new recording)"}]
    with torch.no_grad():
        args = (*[example[s["name"]] for s in specs[:-2]], h0, c0)
        first = traced_model(*args)
    outputs = [{"name": "pred", "shape": ["batch", "time", int(first[0].shape[-1])], "dtype": "float32",
                "meaning": "arousal, valence per frame (0 on padding)"},
               {"name": "h_n", "shape": state_shape, "dtype": "float32",
                "meaning": "LSTM hidden state after each sequence's last real frame"},
               {"name": "c_n", "shape": state_shape, "dtype": "float32", "meaning": "LSTM cell state"}]
    outputs += _attention_specs(traced_model.attention_names, first[3:], "attention.", _attention_axes(traced_model))
    return _Graph(module, args, specs, outputs)


def _branch_graph(traced_model: TraceableModel, part: str, sizes: Mapping[str, Any],
                  example: Mapping[str, torch.Tensor]) -> _Graph:
    """The ``part`` branch: its modality's inputs and ``mask`` in; ``features``, ``present`` and its
    attention tensors out."""
    import torch

    traceable = traced_model.branches[part]
    branch = traceable.branch
    module = traceable.module()
    specs = [*_modality_input_specs(part, sizes), _MASK_SPEC]
    with torch.no_grad():
        args = tuple(example[s["name"]] for s in specs)
        first = traceable(*args)
    outputs = [{"name": "features", "shape": ["batch", "time", int(branch.out_dim)], "dtype": "float32"},
               {"name": "present", "shape": ["batch", "time"], "dtype": "bool"}]
    axes = {k.split(":", 1)[1]: v for k, v in _attention_axes(traced_model).items() if k.startswith(f"{part}:")}
    outputs += _attention_specs(traceable.attention_names, first[2:], "attention.", axes)
    return _Graph(module, args, specs, outputs)


def _trace_to(graph: _Graph, path: Path, *, part: str, opset: int, label: str) -> None:
    """Write ``graph`` to ``path``; an exporter failure is a one-line ConfigError (not the graph dump)."""
    try:
        _export_module(graph.module, graph.args, path, input_specs=graph.specs, output_specs=graph.outputs,
                       opset=opset)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # not the graph dump after it
        raise ConfigError(f"{label}: ONNX export of {part!r} failed at opset {opset}: {reason}") from exc


def _checked_parity(ort: Any, model: nn.Module, part: str, path: Path, check: Mapping[str, torch.Tensor],
                    graph: _Graph, *, label: str, tolerance: float) -> dict[str, float]:
    """:func:`_verify` the file at ``path``; raises ConfigError when an output differs by more than
    ``tolerance``."""
    parity = _verify(ort, model, part, path, check, graph.specs, graph.outputs, label)
    worst = max(parity.values())
    if not worst <= tolerance:
        raise ConfigError(f"{label}: {part}.onnx differs from PyTorch by {worst:.3g} "
                          f"(tolerance {tolerance:g}); outputs: {parity}")
    return parity


def _preprocessing_meta(ckpt: Mapping[str, Any], label: str, model: nn.Module, *, prepare: Any,
                        modalities: Sequence[str], sizes: Mapping[str, Any], opset: int,
                        parts: Mapping[str, Any]) -> dict[str, Any]:
    """The content of ``preprocessing.json`` (see the module docstring)."""
    import torch

    config = ckpt["config"]
    data = dict(config.get("data") or {})
    text_prep = (prepare.get("text") or {}) if isinstance(prepare, Mapping) else {}
    return {
        "format": PREPROCESSING_FORMAT,
        "mmaffect_version": __version__,
        "torch_version": torch.__version__,
        "opset": opset,
        "model_name": str(config["model_name"]),
        "model_options": dict(config.get("model_options") or {}),
        "modalities": list(modalities),
        "frame_rate_hz": float(prepare.get("label_rate", 10.0)) if isinstance(prepare, Mapping) else 10.0,
        "annotation_delay_s": float(data.get("annotation_delay", 0.0) or 0.0),
        "text_delay_s": text_prep.get("delay"),
        "outputs": ["arousal", "valence"],
        "state": {"layers": int(model.head.layers), "hidden": int(model.head.hidden)},
        "context_frames": None if data.get("window") is None else int(data["window"]),
        "input_sizes": {k: sizes[k] for m, k in _SIZE_OF.items() if m in modalities},
        **({"faces": face_input_rule(sizes["image_size"], prepare)} if "visual" in modalities else {}),
        "parts": dict(parts),
        "prepare_config": prepare,
        "checkpoint": {"source": label, "epoch": ckpt.get("epoch"), "best_score": ckpt.get("best_score"),
                       "best_epoch": ckpt.get("best_epoch")},
    }


def export_onnx(
    checkpoint: Any,
    out_dir: str | Path,
    *,
    parts: Sequence[str] = ("model",),
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    tolerance: float = 1e-4,
    example_batch: int = 2,
    example_frames: int = 5,
    verify_batch: int = 3,
    verify_frames: int = 7,
    seed: int = 0,
) -> ExportReport:
    """Export a trained model (``checkpoint``: a path, a run folder = its
    ``best.pt``, or a checkpoint dict) to ONNX.

    ``parts``: ``"model"`` (the whole network, ``model.onnx``) and/or the
    modalities of its branches (``"text"``, ``"audio"``, ``"visual"`` →
    ``<modality>.onnx``); ``"all"`` = the model and every branch. The graphs
    are traced on random inputs of ``example_batch`` × ``example_frames``
    frames; with ``verify`` they are run with ONNX Runtime on other random
    inputs (``verify_batch`` × ``verify_frames``, absent frames and
    padding included, so the dynamic axes are exercised) and compared with
    the eager PyTorch model; a difference above ``tolerance`` raises
    ConfigError. Writes ``preprocessing.json`` beside the files. Returns an
    :class:`ExportReport`.
    """
    ort = _require_export_deps()
    ckpt, label = _load(checkpoint)
    model = _build(ckpt, label)
    if getattr(model, "audio_reference", 0):
        raise ConfigError(f"{label}: the model normalises its audio features by reference frames of the speaker "
                          f"(model option audio_reference={model.audio_reference}); ONNX export does not carry "
                          "that input yet: run it with mmaffect predict or mmaffect.load")
    traced_model = TraceableModel(model)
    modalities = traced_model.modalities
    config = ckpt["config"]
    wanted = _requested_parts(parts, modalities, config["model_name"], label)
    prepare = ckpt.get("prepare_config") or {}
    sizes, words = _graph_sizes(str(config["model_name"]), config.get("model_options") or {}, prepare, modalities)

    out = Path(out_dir)
    report = ExportReport(out_dir=out)
    example = _example_inputs(modalities, sizes, batch=example_batch, frames=example_frames, words=words, seed=seed)
    check = _example_inputs(modalities, sizes, batch=verify_batch, frames=verify_frames,
                            words=max(2, words - 1), seed=seed + 7)
    meta_parts: dict[str, Any] = {}
    for part in wanted:
        if part == "model":
            graph = _model_graph(traced_model, model, sizes, example, example_batch)
        else:
            graph = _branch_graph(traced_model, part, sizes, example)
        path = out / f"{part}.onnx"
        entry: dict[str, Any] = {"file": path.name, "inputs": graph.specs, "outputs": graph.outputs}
        # The file takes its name only once it is written and verified.
        with atomic_path(path) as tmp:
            _trace_to(graph, tmp, part=part, opset=opset, label=label)
            if verify:
                parity = _checked_parity(ort, model, part, tmp, check, graph, label=label, tolerance=tolerance)
                report.parity[part] = parity
                entry["verification"] = {"batch": verify_batch, "frames": verify_frames, "max_abs_diff": parity}
        report.files[part] = path
        meta_parts[part] = entry

    report.preprocessing = out / "preprocessing.json"
    atomic_write_json(report.preprocessing, _preprocessing_meta(
        ckpt, label, model, prepare=prepare, modalities=modalities, sizes=sizes, opset=opset, parts=meta_parts))
    return report


def face_input_rule(size: int, prepare: Mapping[str, Any] | None) -> dict[str, Any]:
    """How a face crop for the graph is made (``preprocessing.json`` → ``faces``), as ``prepare`` and
    ``predict`` make it (:func:`mmaffect.preprocess.faces.crop_face`): feeding crops made any other way
    (e.g. resized from another size) gives other numbers."""
    faces = dict((prepare or {}).get("faces") or {}) if isinstance(prepare, Mapping) else {}
    return {
        "size": int(size),
        "layout": "RGB, channels first, float32 = uint8 / 255",
        "crop": (f"square around the detected box, side = max(w, h) × (1 + 2 × margin) with margin "
                 f"{faces.get('margin', 0.25)}, edges replicated where it leaves the frame"),
        "resize": f"OpenCV cv2.resize of the square to {size}×{size}: INTER_AREA when shrinking, INTER_LINEAR "
                  "when enlarging",
        "grey": bool(faces.get("grey", False)),
        "detector": {k: faces[k] for k in ("detector", "detect_width", "min_face", "select", "absent_scan_every")
                     if k in faces},
    }


def _verify(
    ort: Any, model: nn.Module, part: str, path: Path, batch: Mapping[str, torch.Tensor],
    specs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]], label: str,
) -> dict[str, float]:
    """Run ``path`` with ONNX Runtime and the eager model on ``batch``; max abs difference per output."""
    import torch

    b = batch["mask"].shape[0]
    with torch.no_grad():
        if part == "model":
            # A non-zero carried-in state, so h0/c0 are checked as inputs too.
            state = tuple(torch.randn(model.head.layers, b, model.head.hidden) * 0.1 for _ in range(2))
            result, (h_n, c_n) = model.forward_frames(dict(batch), state)
            expected = {"pred": result.pred, "h_n": h_n, "c_n": c_n}
            expected.update({f"attention.{k}": v for k, v in result.attention.items()})
            feed_batch = {**batch, "h0": state[0], "c0": state[1]}
        else:
            branch = TraceableModel(model).branches[part].branch
            res = branch(dict(batch))
            expected = {"features": res.features, "present": res.present}
            expected.update({f"attention.{k}": v for k, v in res.attention.items()})
            feed_batch = dict(batch)
    names = {o["name"] for o in outputs}
    if set(expected) != names:
        raise ConfigError(f"{label}: {part}.onnx outputs {sorted(names)}, PyTorch gives {sorted(expected)}")
    got = _run_onnx(ort, path, onnx_feed(feed_batch, [s["name"] for s in specs]))
    return _parity(expected, got, f"{label}: {part}.onnx")


# --------------------------------------------------------------------------- CLI


def _cmd_export(args: argparse.Namespace) -> None:
    """``mmaffect export``: export, then print the files written and the parity figures."""
    parts = [p for p in (x.strip() for x in args.parts.split(",")) if p]
    report = export_onnx(args.checkpoint, args.out, parts=parts, opset=args.opset, verify=not args.no_verify)
    print(report.summary())


def add_export_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``export`` on a subparsers object (``mmaffect export CHECKPOINT --out DIR``)."""
    s = sub.add_parser("export", help="export a trained checkpoint to ONNX (whole model and/or branches)")
    s.add_argument("checkpoint", help="a training checkpoint (RUN/best.pt, RUN/last.pt) or a run folder (its best.pt)")
    s.add_argument("--out", required=True, help="folder for <part>.onnx and preprocessing.json")
    s.add_argument("--parts", default="model",
                   help="comma-separated: model,text,audio,visual (the model's own branches) or all")
    s.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    s.add_argument("--no-verify", action="store_true", help="skip the onnxruntime vs PyTorch parity check")
    s.set_defaults(func=_cmd_export)
    return s
