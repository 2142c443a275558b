"""Domain adaptation: functional cores (GRL, schedules, MMD, CORAL), the DANN gradient, MNIST-M,
the source/target pair datamodule, the oracle, and the bad-input sentences."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch.nn import functional as F

from conftest import CONF
from transferlab.build import build_module
from transferlab.data.domains import blend_over_photos, mnist_m_arrays
from transferlab.domain import coral, dann_lambda, gaussian_mmd, grad_reverse
from transferlab.errors import ConfigError, config_error_in
from transferlab.schedules import DANNAnnealing
from transferlab.train import train

METHODS = sorted(p.stem for p in (CONF / "domain_adaptation").glob("*.yaml"))
STRATEGIES = sorted(p.stem for p in (CONF / "strategy").glob("*.yaml"))
PAIR = ["data=mnist_to_mnist_m", "data.batch_size=8"]


def test_gradient_reversal_is_identity_forward_and_negates_scaled_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    upstream = torch.randn(5, 3)
    y = grad_reverse(x, 0.37)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.equal(x.grad, -0.37 * upstream)


def test_dann_lambda_schedule():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.98661
    assert dann_lambda(1.0) == pytest.approx(0.9999092, abs=1e-7)
    assert dann_lambda(0.5, lambda_max=0.1) == pytest.approx(0.098661, abs=1e-6)


def test_dann_lr_annealing():
    schedule = DANNAnnealing()
    assert schedule(0, 100) == 1.0
    assert schedule(50, 100) == pytest.approx(6**-0.75)
    assert schedule(100, 100) == pytest.approx(11**-0.75)


@pytest.mark.parametrize("loss", [gaussian_mmd, coral], ids=["mmd", "coral"])
def test_discrepancy_small_for_one_distribution_large_for_shifted(loss):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    scaled = 2.0 * torch.randn(400, 8, generator=g) + 1.0  # other mean and covariance
    same, shifted = loss(a, b).item(), loss(a, scaled).item()
    assert abs(same) < 0.02 * shifted
    assert shifted > 0.01


def test_dann_step_moves_features_against_the_domain_classifier(make_cfg):
    cfg = make_cfg([*PAIR, "domain_adaptation=dann"])
    module = build_module(cfg, 10, 3, [0.5] * 3, [0.5] * 3).eval()  # eval: deterministic BN
    g = torch.Generator().manual_seed(0)
    xs = torch.randint(0, 128, (16, 3, 32, 32), generator=g, dtype=torch.uint8)
    xt = torch.randint(96, 256, (16, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.cat([torch.zeros(16), torch.ones(16)])
    dann = module.alignment

    def grads(reverse: bool) -> dict[str, torch.Tensor]:
        module.zero_grad()
        f = module.features(torch.cat([xs, xt]))
        if reverse:
            loss, _ = dann(f[:16], f[16:], progress=1.0)
        else:
            loss = F.binary_cross_entropy_with_logits(dann.domain_logits(f[:16], f[16:]), labels)
        loss.backward()
        return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}

    def plain_domain_loss() -> float:
        with torch.no_grad():
            f = module.features(torch.cat([xs, xt]))
            return F.binary_cross_entropy_with_logits(dann.domain_logits(f[:16], f[16:]), labels)

    reversed_, plain = grads(True), grads(False)
    lam = dann_lambda(1.0)
    backbone = [n for n in plain if n.startswith("backbone.")]
    classifier = [n for n in plain if n.startswith("alignment.")]
    assert backbone and classifier
    for n in backbone:  # the feature extractor gets the opposite, scaled gradient
        torch.testing.assert_close(reversed_[n], -lam * plain[n])
    for n in classifier:  # the domain classifier learns as usual
        torch.testing.assert_close(reversed_[n], plain[n])
    before = plain_domain_loss()
    with torch.no_grad():  # one small step of the feature extractor on the reversed gradient
        for n, p in module.named_parameters():
            if n in backbone:
                p -= 1e-3 * reversed_[n]
    assert plain_domain_loss() > before  # the features got harder to tell apart


def test_blend_is_absolute_difference_with_the_patch():
    digits = np.array([[[0, 100], [200, 255]]], dtype=np.uint8)
    photo = np.full((4, 4, 3), (10, 150, 255), dtype=np.uint8)
    out = blend_over_photos(digits, [photo], seed=0)
    assert out.shape == (1, 3, 2, 2) and out.dtype == np.uint8
    for c, v in enumerate((10, 150, 255)):
        assert np.array_equal(out[0, c], np.abs(digits[0].astype(int) - v))


def test_mnist_m_is_deterministic_cached_and_in_range(tmp_path):
    images, labels = mnist_m_arrays(str(tmp_path), seed=0)
    assert images.shape == (5000, 3, 28, 28) and images.dtype == torch.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.float().std() > 30 and images.max() > 200  # colour photo content, full range
    assert not torch.equal(images[:, 0], images[:, 1])  # the channels differ: it is colour
    cached, _ = mnist_m_arrays(str(tmp_path), seed=0)  # read back from the file
    assert (tmp_path / "mnist_m_5k_seed0.npz").is_file()
    assert torch.equal(cached, images)
    assert torch.equal(mnist_m_arrays(None, seed=0)[0], images)
    assert not torch.equal(mnist_m_arrays(None, seed=1)[0][:50], images[:50])


def test_pair_batches_hide_target_labels_and_cycle_the_shorter_domain(make_cfg):
    cfg = make_cfg(["data=digits_to_mnist"])
    dm = instantiate(cfg.data, augmentation=None)
    dm.setup()
    loader = dm.train_dataloader()
    batch, _, _ = next(iter(loader))
    (xs, ys), (xt, yt) = batch["source"], batch["target"]
    assert xs.shape == xt.shape == (64, 1, 32, 32)
    assert (yt == -1).all() and (ys >= 0).all()
    n_source, n_target = len(dm.splits.train[1]), len(dm.target_splits.train[1])
    assert n_source < n_target
    assert len(loader) == n_target // 64  # an epoch runs over the larger domain
    assert [len(v.dataset) for v in dm.test_dataloader()] == [
        len(dm.target_splits.test[1]),
        len(dm.splits.test[1]),
    ]
    # evaluation code that asks for "the test split" gets the target's, as test/... metrics do;
    # val stays the source's, so a temperature or probe fitted on it never sees target labels
    assert torch.equal(dm.eval_dataloader("test").dataset.labels, dm.target_splits.test[1])
    assert torch.equal(dm.eval_dataloader("val").dataset.labels, dm.splits.val[1])


def test_oracle_and_both_domains_are_scored(make_cfg):
    cfg = make_cfg(
        [
            *PAIR,
            "domain_adaptation=coral",
            "trainer.max_epochs=2",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=2",
            "+trainer.limit_test_batches=2",
        ]
    )
    metrics = train(cfg)
    for key in ("test/acc", "test_source/acc", "val_target/acc", "oracle/test/acc"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert "train/da_loss" in metrics and "oracle/test_source/acc" in metrics
    assert Path(cfg.paths.output_dir, "checkpoints", "oracle.ckpt").is_file()


@pytest.mark.parametrize(
    ("data", "method"),
    [
        ("mnist_to_mnist_m", "dann"),
        ("mnist_to_digits", "mmd"),
        ("digits_to_mnist", "coral"),
        ("folder_pair", "none"),
    ],
)
def test_every_pair_and_method_runs(make_cfg, image_folder, data, method):
    roots = [f"data.source.root={image_folder}", f"data.target.root={image_folder}"]
    overrides = [f"data={data}", "data.batch_size=8", *(roots if data == "folder_pair" else [])]
    if data == "mnist_to_mnist_m":  # the exercise-3 experiment, so it cannot rot
        overrides.insert(0, "experiment=exercise3_domain_adaptation")
    cfg = make_cfg(["+trainer.fast_dev_run=true", *overrides, f"domain_adaptation={method}"])
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and 0.0 <= metrics["test_source/acc"] <= 1.0
    assert ("train/da_loss" in metrics) == (method != "none")
    assert ("train/domain_acc" in metrics) == (method == "dann")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_x_strategy_runs(make_cfg, method, strategy):
    overrides = ["+trainer.fast_dev_run=true", *PAIR, f"domain_adaptation={method}"]
    metrics = train(make_cfg([*overrides, f"strategy={strategy}"]))
    assert 0.0 <= metrics["test/acc"] <= 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=mnist_split", "domain_adaptation=dann"], "needs a source and a target domain"),
        (["data=mnist_to_mnist_m", "data.channels=null"], "set data.channels=3"),
        (["data=mnist_to_digits", "data.image_size=null"], "set data.image_size"),
        (
            ["data=mnist_to_digits", "data.target_labels=false"],
            "set domain_adaptation.oracle=false",
        ),
        (["data=folder_pair"], "Set data.source.root"),
    ],
    ids=["no-target", "channels", "sizes", "oracle-without-labels", "folder-root"],
)
def test_bad_input_is_one_clear_sentence(make_cfg, overrides, message):
    cfg = make_cfg(overrides)
    with pytest.raises(Exception) as raised:  # Hydra wraps errors raised while instantiating
        train(cfg)
    error = config_error_in(raised.value)
    assert isinstance(error, ConfigError) and message in str(error)
    assert str(error).count(". ") == 0 and str(error).endswith(".")  # one sentence
    assert not Path(cfg.paths.output_dir).exists()  # nothing written


def test_eval_of_an_adapted_checkpoint_reports_both_domains(make_cfg):
    from transferlab.evaluate import evaluate

    cfg = make_cfg(
        [*PAIR, "domain_adaptation=coral", "trainer.max_epochs=1", "+trainer.limit_train_batches=2"]
    )
    trained = train(cfg)
    ckpt = Path(cfg.paths.output_dir, "checkpoints", "best.ckpt")
    scored = evaluate(make_cfg([f"ckpt_path={ckpt}"], config_name="eval"))
    for key in ("test/acc", "test_source/acc"):
        assert scored[key] == pytest.approx(trained[key], abs=1e-6), key
