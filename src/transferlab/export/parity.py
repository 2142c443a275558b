"""ONNX against PyTorch on real held-out images: the same logits (to a tolerance) and the same
predicted class for every image, at batch size 1 and at an odd batch size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from transferlab.errors import ConfigError
from transferlab.export.onnx import run_onnx

TOLERANCE = 1e-4  # max |Δlogit| allowed in fp32
BATCH_SIZES = (1, 7)  # one image per run, and an odd size that leaves a ragged last batch


@dataclass(frozen=True)
class Parity:
    """What the check measured.

    Attributes:
        max_abs_diff: the largest |ONNX logit − PyTorch logit| over all images and batch sizes.
        argmax_mismatches: images whose predicted class differs, at any batch size.
        num_images: held-out images compared.
        batch_sizes: the onnxruntime batch sizes tried.
        tolerance: the largest difference allowed.
    """

    max_abs_diff: float
    argmax_mismatches: int
    num_images: int
    batch_sizes: tuple[int, ...]
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.argmax_mismatches == 0

    def describe(self) -> str:
        sizes = " and ".join(str(b) for b in self.batch_sizes)
        return (
            f"max |Δlogit| {self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}), "
            f"{self.num_images - self.argmax_mismatches}/{self.num_images} identical argmax, "
            f"onnxruntime batch sizes {sizes}"
        )


def compare_logits(
    reference: torch.Tensor, candidates: Sequence[torch.Tensor]
) -> tuple[float, int]:
    """(max |Δ| over every candidate, images whose argmax differs in any candidate)."""
    worst, mismatched = 0.0, torch.zeros(len(reference), dtype=torch.bool)
    for logits in candidates:
        if logits.shape != reference.shape:
            return float("inf"), len(reference)
        diff = (logits.double() - reference.double()).abs()
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
        mismatched |= logits.argmax(-1) != reference.argmax(-1)
    return worst, int(mismatched.sum())


def measure_parity(
    session,
    images: torch.Tensor,
    reference: torch.Tensor,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    tolerance: float = TOLERANCE,
) -> Parity:
    """Run ``images`` (uint8) through onnxruntime at each batch size against PyTorch's logits."""
    outputs = [run_onnx(session, images, b) for b in batch_sizes]
    worst, mismatches = compare_logits(reference, outputs)
    return Parity(worst, mismatches, len(images), tuple(batch_sizes), tolerance)


def check_batch_sizes(batch_sizes: Sequence[int]) -> None:
    """Refuse a batch-size list that would not exercise one-image runs and a ragged batch."""
    sizes = list(batch_sizes)
    whole = all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in sizes)
    if not (whole and 1 in sizes and any(b > 1 and b % 2 == 1 for b in sizes)):
        raise ConfigError(
            f"parity.batch_sizes={sizes} must hold 1 and an odd size above 1 (a ragged last "
            "batch); use parity.batch_sizes=[1,7]."
        )


def require_parity(parity: Parity) -> None:
    """Refuse an export whose ONNX graph does not reproduce the PyTorch model."""
    if not parity.ok:
        raise ConfigError(
            f"The ONNX model does not match PyTorch ({parity.describe()}); nothing was written; "
            "try another opset (opset=18), or report the backbone if it persists."
        )
