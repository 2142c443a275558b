"""Regression (the whitepaper's section 12.2): MSE / MAE losses on a one-output head, and MAE,
RMSE, R² and Spearman metrics, on any backbone (an image model here; text in test_text.py)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from transferlab.backbones import create_backbone
from transferlab.errors import ConfigError
from transferlab.heads import create_head
from transferlab.losses import create_loss
from transferlab.metrics import regression_metrics
from transferlab.module import TransferModule
from transferlab.strategies import Strategy


def test_regression_metrics_match_their_definitions():
    metrics = regression_metrics("test/")
    metrics.update(torch.tensor([1.0, 2.0, 4.0, 3.5]), torch.tensor([1.5, 2.0, 3.0, 4.0]))
    got = {k: v.item() for k, v in metrics.compute().items()}
    assert got["test/mae"] == pytest.approx(0.5)
    assert got["test/rmse"] == pytest.approx(0.375**0.5)
    assert got["test/r2"] == pytest.approx(1 - 1.5 / 3.6875)
    assert got["test/spearman"] == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)


@pytest.mark.parametrize("name", ["mse", "mae"])
def test_losses_compare_a_one_output_head_with_the_targets(name):
    prediction, target = torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 1.0])
    want = 2.5 if name == "mse" else 1.5  # (1 + 4) / 2, (1 + 2) / 2
    assert create_loss(name, "regression")(prediction, target).item() == pytest.approx(want)


def test_a_regression_loss_on_classes_names_the_fix():
    with pytest.raises(ConfigError, match="use loss=cross_entropy"):
        create_loss("mae", "classification")
    with pytest.raises(ConfigError, match="use loss=mse or loss=mae"):
        create_loss("cross_entropy", "regression")


def test_an_image_model_learns_a_regression_target():
    """test_resnet + a one-output head regress each image's brightness."""
    torch.manual_seed(0)
    backbone = create_backbone("test_resnet")
    module = TransferModule(
        backbone,
        create_head(backbone.num_features, 1),
        1,
        Strategy(),
        optimizer=partial(torch.optim.AdamW, lr=3e-3),
        loss=create_loss("auto", "regression"),
        task="regression",
    )
    brightness = torch.rand(32)
    images = (brightness.view(-1, 1, 1, 1) * 255).expand(32, 3, 16, 16).to(torch.uint8)
    optimizer = module.configure_optimizers()
    losses = []
    for _ in range(40):
        loss, _ = module.classification_loss(images, brightness)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert set(module.train_metrics.compute()) == {
        "train/mae",
        "train/rmse",
        "train/r2",
        "train/spearman",
    }
