"""transferlab-advise: the decision table, the proxy A-distance, and the command end to end."""

from __future__ import annotations

import pytest
import torch

from transferlab.advice import proxy_a_distance, recommend
from transferlab.advise import advise


@pytest.mark.parametrize(
    ("per_class", "pad", "strategy", "runner_up"),
    [
        (20, 0.2, "feature_extraction", "full"),
        (20, 1.8, "partial", "full"),
        (500, 0.2, "full", "feature_extraction"),
        (500, 1.8, "full", "partial"),
    ],
)
def test_the_decision_table(per_class, pad, strategy, runner_up):
    advice = recommend(per_class, pad)
    assert (advice.strategy, advice.runner_up) == (strategy, runner_up)
    assert f"strategy={strategy}" in advice.overrides
    assert f"{per_class} labelled images per class" in advice.reason


def test_proxy_a_distance_is_near_0_for_one_distribution_and_near_2_for_two():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 16, generator=g), torch.randn(200, 16, generator=g)
    assert proxy_a_distance(a, b) < 0.4
    assert proxy_a_distance(a, b + 3.0) > 1.9


def test_advise_prints_one_command_and_confirms_it_on_validation(tmp_path, capsys):
    cands = "candidates=[{name:tiny,overrides:['backbone=tiny','backbone.weights=null'],source_ckpt:null}]"
    target = ["data=synthetic", "data.num_samples=96", "trainer.accelerator=cpu"]
    result = advise(
        [
            cands,
            "source=['data=synthetic','data.num_samples=96','data.seed=7']",
            "confirm=true",
            "confirm_epochs=1",
            f"out={tmp_path / 'advice'}",
            f"paths.root_dir={tmp_path}",
            *target,
        ]
    )
    out = capsys.readouterr().out
    assert result["command"].startswith("transferlab-train backbone=tiny backbone.weights=null")
    assert f"strategy={result['advice'].strategy}" in result["command"]
    assert set(result["confirmed"]) == {result["advice"].strategy, result["advice"].runner_up}
    assert "recommended:" in out and "wins" in out
    assert (tmp_path / "advice" / "advice.md").read_text().startswith("# Advice")
