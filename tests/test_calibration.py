"""Calibration: ECE on known cases, reliability bins that agree with torchmetrics, temperature
scaling that recovers a known temperature, the reliability diagram file, and the splits eval's
temperature scaling uses for a source/target pair."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import calibrated_eval_config
from test_export import train_checkpoint
from transferlab.build import build_datamodule, load_module
from transferlab.calibration import (
    TEMPERATURE_RANGE,
    ReliabilityBins,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    reliability_of_logits,
)
from transferlab.evaluate import evaluate
from transferlab.export.inference import evaluation_logits
from transferlab.outputs import write_reliability_diagram


def logits_with_confidence(confidence: float, predicted: torch.Tensor, k: int) -> torch.Tensor:
    """Logits whose softmax gives ``confidence`` to ``predicted`` and shares the rest evenly."""
    rest = (1 - confidence) / (k - 1)
    probs = torch.full((len(predicted), k), rest, dtype=torch.float64)
    probs[torch.arange(len(predicted)), predicted] = confidence
    return probs.log()


def test_ece_of_known_cases():
    labels = torch.arange(100) % 4
    # right every time with confidence 0.999: a gap of 0.001
    sure = logits_with_confidence(0.999, labels, 4)
    assert expected_calibration_error(sure, labels) == pytest.approx(
        0.001, abs=1e-6
    )  # float32 inside
    # confidence 0.9 but right half the time: ECE = |0.5 - 0.9| = 0.4
    half = torch.where(torch.arange(100) % 2 == 0, labels, (labels + 1) % 4)
    assert expected_calibration_error(
        logits_with_confidence(0.9, half, 4), labels
    ) == pytest.approx(0.4, abs=1e-6)


def test_reliability_bins_agree_with_torchmetrics_across_batches():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 5, generator=gen) * 3
    labels = torch.randint(0, 5, (500,), generator=gen)
    whole = reliability_of_logits(logits, labels)
    assert whole.total == 500
    assert whole.ece == pytest.approx(expected_calibration_error(logits, labels), abs=1e-6)
    metric = ReliabilityBins()
    for chunk in range(0, 500, 128):  # a ragged last batch, as in an evaluation loop
        metric.update(logits[chunk : chunk + 128].softmax(-1), labels[chunk : chunk + 128])
    batched = metric.compute()
    torch.testing.assert_close(batched.count, whole.count)
    torch.testing.assert_close(batched.correct_sum, whole.correct_sum)
    confidence, accuracy, count = whole.per_bin()
    assert len(count) == 15 and int(count.sum()) == 500
    filled = count > 0
    assert bool(((confidence[filled] >= 0) & (confidence[filled] <= 1)).all())
    assert bool(accuracy[~filled].isnan().all())


def test_fit_temperature_recovers_a_known_temperature():
    gen = torch.Generator().manual_seed(1)
    true_logits = torch.randn(6000, 5, generator=gen) * 2
    labels = torch.multinomial(true_logits.softmax(-1), 1, generator=gen).squeeze(1)
    overconfident = true_logits * 3  # the same model, three times too sharp
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.08)
    before = expected_calibration_error(overconfident, labels)
    after = expected_calibration_error(overconfident, labels, temperature=t)
    assert after < before / 3
    summary = calibration_summary(overconfident, labels, "val", t)
    # the predicted class never changes: accuracy is that of the raw logits
    assert summary["val/acc"] == pytest.approx(
        float((true_logits.argmax(-1) == labels).double().mean())
    )
    assert summary["val/ece_temperature"] == pytest.approx(after)


def test_fit_temperature_stays_finite_on_separable_data():
    labels = torch.arange(40) % 2
    logits = torch.nn.functional.one_hot(labels, 2).double() * 5  # always right
    t = fit_temperature(logits, labels)
    # the NLL keeps falling as T -> 0; the fit sharpens but stays a usable number
    assert math.isfinite(t) and TEMPERATURE_RANGE[0] <= t < 1


def test_reliability_diagram_is_written(tmp_path):
    labels = torch.arange(60) % 3
    logits = torch.randn(60, 3, generator=torch.Generator().manual_seed(2))
    curves = {"test": reliability_of_logits(logits, labels), "after": None}
    path = write_reliability_diagram(curves, tmp_path)
    assert path == tmp_path / "reliability_diagram.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["reliability_diagram.png"]  # no temp file
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_reliability_diagram({"test": None}, empty) is None


def test_temperature_scaling_splits_of_a_domain_pair_are_those_test_metrics_score(tmp_path):
    """For a source/target pair, test/ece and test/ece_temperature both score the target's
    test set; the temperature is fitted on the source's validation split."""
    ckpt = train_checkpoint(
        tmp_path,
        data=[
            "data=digits_to_mnist",
            "data.image_size=16",
            "data.batch_size=256",
            "data.target.val_fraction=0.05",
            "data.target.test_fraction=0.05",
        ],
    )
    cfg = calibrated_eval_config(ckpt, tmp_path)
    metrics = evaluate(cfg)
    module, train_cfg = load_module(str(ckpt))
    dm = build_datamodule(train_cfg, False)
    dm.setup()
    test = evaluation_logits(module, dm, "test")
    assert len(test[1]) == len(dm.target_splits.test[1]) != len(dm.splits.test[1])
    assert expected_calibration_error(*test) == pytest.approx(metrics["test/ece"], abs=1e-5)
    t = metrics["calibration/temperature"]
    assert t == pytest.approx(fit_temperature(*evaluation_logits(module, dm, "val")), rel=1e-6)
    assert expected_calibration_error(*test, temperature=t) == pytest.approx(
        metrics["test/ece_temperature"], abs=1e-6
    )
