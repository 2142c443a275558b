"""Calibration: expected calibration error, reliability bins and temperature scaling.

Pure functions over logits and labels, plus :class:`ReliabilityBins`, the torchmetrics state the
module fills during testing. The binning is torchmetrics' ``CalibrationError`` binning (15 equal
bins of top-1 confidence, ``[lo, hi)``), so an ECE computed here from bins equals the
``…/ece`` metric the module logs.

Temperature scaling divides the logits by one scalar T > 0 fitted on validation logits by
minimising the negative log-likelihood (Guo et al., "On Calibration of Modern Neural Networks",
ICML 2017). It never changes the predicted class, only the confidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_calibration_error

ECE_BINS = 15
# a validation set the model separates perfectly drives T towards 0 (ever sharper softmax);
# the bounds keep the fitted temperature finite and usable
TEMPERATURE_RANGE = (1e-2, 1e2)


def expected_calibration_error(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, n_bins: int = ECE_BINS
) -> float:
    """ECE (l1, equal-width bins) of ``softmax(logits / temperature)`` against ``labels``."""
    if len(labels) == 0:
        return float("nan")
    probs = (logits.double() / temperature).softmax(-1)
    return float(multiclass_calibration_error(probs, labels, logits.shape[-1], n_bins=n_bins))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T minimising the cross-entropy of ``logits / T`` (LBFGS on log T).

    Args:
        logits: ``[N, K]`` validation logits of the uncalibrated model.
        labels: ``[N]`` true classes.
        max_iter: LBFGS iterations (one scalar: it converges in a handful).

    Returns:
        T within :data:`TEMPERATURE_RANGE`; T > 1 softens an over-confident model.
    """
    if len(labels) == 0:
        raise ValueError("fit_temperature needs at least one labelled example")
    z, y = logits.detach().double(), labels.detach().long()
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # optimise log T: T > 0
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.clamp(lo, hi).exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().clamp(lo, hi).exp())


@dataclass  # not frozen: torchmetrics' compute() post-processing rejects frozen dataclasses
class Reliability:
    """Per-bin sums of a reliability diagram: counts, summed confidence, summed correctness.

    There are ``n_bins + 1`` slots, as in torchmetrics: the last holds confidence exactly 1.
    """

    count: torch.Tensor
    confidence_sum: torch.Tensor
    correct_sum: torch.Tensor

    @property
    def n_bins(self) -> int:
        return len(self.count) - 1

    @property
    def total(self) -> int:
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        """Expected calibration error: Σ_b |acc_b − conf_b| · n_b / N."""
        if self.total == 0:
            return float("nan")
        gap = (self.correct_sum - self.confidence_sum).abs()  # = n_b · |acc_b − conf_b|
        return float(gap.sum() / self.total)

    def per_bin(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean confidence, accuracy, count) for each of the ``n_bins`` bins, the top slot
        (confidence 1) merged into the last bin; empty bins give NaN."""
        merge = lambda t: torch.cat([t[:-2], t[-2:].sum(0, keepdim=True)])  # noqa: E731
        count, conf, correct = (
            merge(self.count),
            merge(self.confidence_sum),
            merge(self.correct_sum),
        )
        empty = count == 0
        safe = count.clamp_min(1)
        nan = torch.full_like(conf, float("nan"))
        return torch.where(empty, nan, conf / safe), torch.where(empty, nan, correct / safe), count


def reliability_sums(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS
) -> Reliability:
    """The reliability bins of class probabilities ``probs`` ``[N, K]`` against ``labels``."""
    confidence, predicted = probs.double().max(-1)
    correct = (predicted == labels).double()
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=probs.device)
    index = torch.bucketize(confidence, boundaries, right=True) - 1
    sums = [torch.zeros(n_bins + 1, dtype=torch.float64, device=probs.device) for _ in range(3)]
    for total, values in zip(sums, (torch.ones_like(confidence), confidence, correct), strict=True):
        total.scatter_add_(0, index, values)
    return Reliability(*sums)


def reliability_of_logits(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> Reliability:
    return reliability_sums((logits.double() / temperature).softmax(-1), labels)


class ReliabilityBins(Metric):
    """Reliability-diagram sums accumulated over batches of probabilities (synced under DDP)."""

    full_state_update = False

    def __init__(self, n_bins: int = ECE_BINS):
        super().__init__()
        self.n_bins = n_bins
        for name in ("count", "confidence_sum", "correct_sum"):
            zeros = torch.zeros(n_bins + 1, dtype=torch.float64)
            self.add_state(name, default=zeros, dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        sums = reliability_sums(probs.detach(), labels, self.n_bins)
        self.count += sums.count
        self.confidence_sum += sums.confidence_sum
        self.correct_sum += sums.correct_sum

    def compute(self) -> Reliability:
        return Reliability(self.count.cpu(), self.confidence_sum.cpu(), self.correct_sum.cpu())


def calibration_summary(
    logits: torch.Tensor, labels: torch.Tensor, prefix: str, temperature: float | None
) -> dict[str, float]:
    """``{prefix}/acc`` and ``{prefix}/ece`` of logits, and ``{prefix}/ece_temperature`` after
    dividing by ``temperature`` when one is given."""
    if len(labels) == 0:
        return {}
    out = {
        f"{prefix}/acc": float((logits.argmax(-1) == labels).double().mean()),
        f"{prefix}/ece": expected_calibration_error(logits, labels),
    }
    if temperature is not None:
        out[f"{prefix}/ece_temperature"] = expected_calibration_error(logits, labels, temperature)
    return out


Split = tuple[torch.Tensor, torch.Tensor]  # (logits [N, K], labels [N])


def temperature_scaling(val: Split, test: Split) -> tuple[dict[str, float], dict]:
    """(metrics, reliability curves) of a temperature fitted on ``val`` and applied to both.

    Metrics: ``calibration/temperature``, ``val/ece_temperature``, ``test/ece_temperature``;
    the curve is the test split's reliability after scaling, keyed by its diagram label.
    """
    t = fit_temperature(*val)
    metrics = {
        "calibration/temperature": t,
        "val/ece_temperature": expected_calibration_error(*val, temperature=t),
        "test/ece_temperature": expected_calibration_error(*test, temperature=t),
    }
    return metrics, {f"test, temperature {t:.3f}": reliability_of_logits(*test, temperature=t)}
