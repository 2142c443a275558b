"""The whole classifier as one ONNX graph: uint8 images ``[N, C, H, W]`` in, logits ``[N, K]``
out, with the module's normalisation inside, so a runtime feeds decoded pixels and nothing else."""

from __future__ import annotations

import copy
import inspect
import io
import warnings

import numpy as np
import torch
from torch import nn

from transferlab.errors import ConfigError

# ai.onnx opset 17: every op these classifiers need (LayerNormalization included, for ViTs), and
# read by every onnxruntime release since 1.13
OPSET = 17
INPUT, OUTPUT = "images", "logits"


class ExportedClassifier(nn.Module):
    """``head(backbone((x / 255 - mean) / std))`` of a :class:`~transferlab.module.TransferModule`
    on uint8 images: the exact computation the module runs on an evaluation batch."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.backbone, self.head = module.backbone, module.head
        self.register_buffer("mean", module.mean.detach().clone())
        self.register_buffer("std", module.std.detach().clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() / 255 - self.mean) / self.std
        return self.head(self.backbone(x))


def exportable(model: ExportedClassifier, input_size: tuple[int, int]) -> ExportedClassifier:
    """A copy of ``model`` in eval mode, rewritten into one plain graph for ``input_size``.

    - Adapters are merged into the base weights first: a strategy that trains them (LoRA)
      gives its backbone ``merge_adapters()``, as PEFT's ``merge_and_unload`` does.
    - A ViT trained at another size than its timm default resamples its position embedding
      in every forward (bicubic with antialiasing, which no ONNX opset has); the copy does
      that resampling once, for the fixed input size, with the same function. The parity
      check compares the result with the original model.
    """
    model = copy.deepcopy(model).eval()
    merge = getattr(model.backbone, "merge_adapters", None)
    if callable(merge):
        merge()
    net = model.backbone.model
    patch_embed = getattr(net, "patch_embed", None)
    if getattr(net, "dynamic_img_size", False) and hasattr(net, "set_input_size"):
        if tuple(patch_embed.img_size) != tuple(input_size):
            net.set_input_size(img_size=tuple(input_size))
    return model


def torchscript_exporter(export) -> dict:
    """The keyword that selects the TorchScript exporter of ``export`` (torch.onnx.export):
    ``dynamo=False`` where that switch exists (torch >= 2.5), nothing where it does not."""
    return {"dynamo": False} if "dynamo" in inspect.signature(export).parameters else {}


def export_onnx(model: ExportedClassifier, example: torch.Tensor, opset: int = OPSET) -> bytes:
    """The serialised ONNX model of ``model``, traced on ``example`` (uint8 images).

    The batch axis is dynamic (named ``batch``); height, width and channels are fixed to the
    example's, which are the sizes the model was trained on.
    """
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # Exporter: the TorchScript-based one, chosen explicitly. These models are fixed
        # feed-forward graphs with no data-dependent control flow, which tracing captures
        # exactly; its `dynamic_axes` gives a symbolic batch axis for any example size; it needs
        # no onnxscript; it is the only exporter on every torch this package allows (>= 2.3);
        # and it takes ~0.1-0.7 s against 3-4 s for the dynamo exporter on the test models.
        # The `dynamo=` switch only exists from torch 2.5 (older releases have no dynamo
        # exporter behind torch.onnx.export, so leaving it out selects the same one); torch >= 2.9
        # defaults it to True (torch.export + onnxscript, opset >= 18, `dynamic_shapes`) and marks
        # this exporter deprecated: when it is removed, switch to dynamo=True with
        # dynamic_shapes=({0: torch.export.Dim("batch")},) and an example batch of 2 or more
        # (torch.export specialises a size-1 axis); the parity check then guards the result.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            buffer,
            opset_version=opset,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            **torchscript_exporter(torch.onnx.export),
        )
    return buffer.getvalue()


def onnx_session(model: bytes | str):
    """An onnxruntime CPU session on serialised model bytes or a ``model.onnx`` path."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no graph-optimisation chatter on the console
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        where = "the exported model" if isinstance(model, bytes) else f"'{model}'"
        raise ConfigError(
            f"onnxruntime cannot load {where} ({type(e).__name__}); pass a model.onnx written "
            "by transferlab-export."
        ) from e


def run_onnx(session, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of uint8 ``images`` from an onnxruntime session, ``batch_size`` images per run."""
    chunks = [
        session.run([OUTPUT], {INPUT: np.ascontiguousarray(images[i : i + batch_size].numpy())})[0]
        for i in range(0, len(images), batch_size)
    ]
    if not chunks:
        return torch.zeros(0, session.get_outputs()[0].shape[-1])
    return torch.from_numpy(np.concatenate(chunks))
