"""transferlab-report on hand-made multirun dirs: mean ± std per arm, failures, E(n) curve,
main effects of a factorial grid and the short labels of the pictures."""

from __future__ import annotations

import csv
import itertools
import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from transferlab.report import arm_keys, collect_runs, main, summarise, write_report
from transferlab.report.efficiency import negative_transfer, sample_efficiency
from transferlab.report.factors import main_effects, strongest, two_way
from transferlab.report.labels import abbreviate, abbreviations, config_labels, keys_title
from transferlab.report.plots import value_text
from transferlab.report.runs import Arm


def make_job(sweep: Path, num: int, overrides: list[str], metrics=None, failure=None) -> Path:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if failure is not None:
        (job / "failure.json").write_text(json.dumps(failure))
    return job


def metrics(acc: float, wall: float = 10.0, trainable: int = 1000) -> dict:
    return {
        "val/acc": acc - 0.01,
        "test/acc": acc,
        "time/wall_s": wall,
        "params/trainable": float(trainable),
        "params/total": 5000.0,
    }


ACCS = {"feature_extraction": [0.60, 0.64, 0.65], "full": [0.80, 0.90, 0.85]}


@pytest.fixture
def sweep(tmp_path) -> Path:
    """Two strategies x three seeds, plus one failed job."""
    root = tmp_path / "sweep"
    num = 0
    for strategy, accs in ACCS.items():
        for seed, acc in enumerate(accs):
            overrides = ["backbone=tiny", f"strategy={strategy}", f"seed={seed}"]
            make_job(root, num, overrides, metrics(acc, trainable=100))
            num += 1
    make_job(
        root,
        num,
        ["backbone=tiny", "strategy=partial", "seed=0"],
        failure={"error": "ConfigError", "message": "strategy.trainable_groups=9 is too many."},
    )
    return root


def test_report_gives_mean_and_sample_std_per_arm(sweep):
    write_report(sweep)
    text = (sweep / "report.md").read_text()
    for strategy, accs in ACCS.items():
        expected = f"{statistics.fmean(accs):.3f} ± {statistics.stdev(accs):.3f}"
        row = next(line for line in text.splitlines() if line.startswith(f"| {strategy} |"))
        assert expected in row
    # full (0.850 ± 0.050) is the best arm; feature extraction (0.630 ± 0.026) is not
    assert "| full | 3 | **0.850 ± 0.050** |" in text
    assert "0.630 ± 0.026" in text
    best_rows = [line for line in text.splitlines() if "**best**" in line]
    assert len(best_rows) == 1 and best_rows[0].startswith("| full |")


def test_report_lists_failed_runs_with_their_reason(sweep):
    write_report(sweep)
    text = (sweep / "report.md").read_text()
    assert "6 finished, 1 failed" in text
    assert "| 6 | `strategy=partial seed=0` | ConfigError: strategy.trainable_groups=9" in text


def test_results_csv_has_one_row_per_run_with_choices_and_costs(sweep):
    write_report(sweep)
    with (sweep / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == [str(i) for i in range(7)]
    assert [r["status"] for r in rows] == ["ok"] * 6 + ["failed"]
    assert rows[4]["strategy"] == "full" and rows[4]["seed"] == "1"
    assert float(rows[4]["test/acc"]) == 0.90
    assert rows[4]["time/wall_s"] == "10.0" and rows[4]["params/trainable"] == "100.0"
    assert rows[6]["error"].startswith("ConfigError")


def test_plots_are_written(sweep):
    written = write_report(sweep)
    assert {p.name for p in written} >= {"results.csv", "report.md", "bars.png"}
    assert (sweep / "bars.png").stat().st_size > 1000


def efficiency_sweep(root: Path, accs: dict[str, dict[str, float]]) -> Path:
    num = 0
    for strategy, by_n in accs.items():
        for n, acc in by_n.items():
            for seed in (0, 1):
                overrides = [f"data.n_per_class={n}", f"strategy={strategy}", f"seed={seed}"]
                make_job(root, num, overrides, metrics(acc + 0.01 * seed))
                num += 1
    return root


def test_sample_efficiency_flags_negative_transfer(tmp_path):
    accs = {
        "scratch": {"5": 0.3, "50": 0.6, "null": 0.95},
        "full": {"5": 0.7, "50": 0.8, "null": 0.93},
    }
    root = efficiency_sweep(tmp_path / "se", accs)
    runs = collect_runs(root)
    curves = sample_efficiency(summarise(runs, arm_keys(runs)), "test/acc")
    assert [n for n, *_ in curves["full"]] == ["5", "50", "null"]
    assert negative_transfer(curves) == [
        ("full", "null", pytest.approx(0.935), pytest.approx(0.955))
    ]
    write_report(root)
    text = (root / "report.md").read_text()
    assert "**negative transfer**: `full` at n=all (0.935 vs scratch 0.955)" in text
    assert (root / "sample_efficiency.png").is_file()


def test_cli_writes_into_out_and_rejects_a_missing_dir(sweep, tmp_path, capsys):
    main([str(sweep), "--out", str(tmp_path / "rep"), "--metric", "val/acc"])
    assert "best mean `val/acc` is bold" in (tmp_path / "rep" / "report.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: No multirun dir at")


def test_cli_rejects_a_dir_without_jobs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "No sweep jobs" in capsys.readouterr().err


def test_runs_of_sweeps_in_sub_dirs_are_read_in_job_order(tmp_path):
    for num in (10, 2, 0):
        make_job(tmp_path / "study_b", num, [f"seed={num}"], metrics(0.5))
    make_job(tmp_path / "study_a", 1, ["seed=1"], metrics(0.5))
    order = [r.job for r in collect_runs(tmp_path)]
    assert order == ["study_a/1", "study_b/0", "study_b/2", "study_b/10"]


def test_display_overrides_do_not_split_an_arm(tmp_path):
    root = tmp_path / "sweeps"
    make_job(root / "first", 0, ["strategy=full", "seed=0", "print_config=false"], metrics(0.8))
    for seed, acc in ((1, 0.9), (2, 0.85)):
        make_job(root / "later", seed, ["strategy=full", f"seed={seed}"], metrics(acc))
    write_report(root)
    text = (root / "report.md").read_text()
    assert "| all runs | 3 | **0.850 ± 0.050** |" in text  # one arm over the three seeds


GAINS = {  # test/acc = 0.5 + one gain per factor + 0.01 * seed
    "scheduler": {"cosine": 0.0, "onecycle": 0.02},
    "strategy": {"feature_extraction": 0.0, "full": 0.1},
    "backbone": {"efficientnet_b0": 0.0, "resnet18": 0.2},
}


@pytest.fixture
def grid(tmp_path) -> Path:
    """scheduler x strategy x backbone x two seeds (16 runs) and one failed job; the factor
    listed last moves the metric most, the first one least."""
    root = tmp_path / "grid"
    cells = list(itertools.product(*GAINS.values(), (0, 1)))
    for num, (*levels, seed) in enumerate(cells):
        acc = 0.5 + sum(GAINS[k][v] for k, v in zip(GAINS, levels, strict=True)) + 0.01 * seed
        overrides = [f"{k}={v}" for k, v in zip(GAINS, levels, strict=True)] + [f"seed={seed}"]
        make_job(root, num, overrides, metrics(acc))
    make_job(
        root,
        len(cells),
        ["scheduler=cosine", "strategy=full", "backbone=resnet18", "seed=2"],
        failure={"error": "RuntimeError", "message": "out of memory"},
    )
    return root


def test_main_effects_pool_every_finished_run_at_a_level(grid):
    runs = collect_runs(grid)
    effects = main_effects(runs, arm_keys(runs), "test/acc")
    assert list(effects) == ["scheduler", "strategy", "backbone"]
    backbone = {level.value: level for level in effects["backbone"]}
    # resnet18: 0.7 + {0, 0.1} + {0, 0.02} + {0, 0.01}: mean 0.765, deviations ±0.035 … ±0.065
    assert backbone["resnet18"].mean == pytest.approx(0.765)
    assert backbone["resnet18"].std == pytest.approx(math.sqrt(0.021 / 7))
    assert backbone["efficientnet_b0"].mean == pytest.approx(0.565)
    assert [level.n for level in effects["backbone"]] == [8, 8]  # the failed job counts nowhere
    means = [level.mean for level in effects["scheduler"]]
    assert means == [pytest.approx(0.655), pytest.approx(0.675)]


def test_the_two_strongest_factors_make_the_heatmap(grid):
    runs = collect_runs(grid)
    effects = main_effects(runs, arm_keys(runs), "test/acc")
    assert strongest(effects) == ["backbone", "strategy"]
    cells = two_way(runs, effects, "test/acc")
    assert (cells.rows, cells.cols) == ("backbone", "strategy")
    assert cells.row_levels == ["efficientnet_b0", "resnet18"]
    assert cells.means[1][1] == pytest.approx(0.815)  # resnet18, full: 0.8 + 0.01 + 0.005
    assert cells.means[0][0] == pytest.approx(0.515)
    assert cells.counts == [[4, 4], [4, 4]]


def test_factorial_report_draws_and_tabulates_the_main_effects(grid):
    written = {p.name for p in write_report(grid)}
    assert {"main_effects.png", "heatmap.png", "bars.png"} <= written
    assert (grid / "main_effects.png").stat().st_size > 1000
    assert (grid / "heatmap.png").stat().st_size > 1000
    text = (grid / "report.md").read_text()
    assert "| backbone | resnet18 | 0.765 ± 0.055 | 8 |" in text
    assert "| scheduler | onecycle | 0.675 ± 0.120 | 8 |" in text
    assert "`backbone` 0.200, `strategy` 0.100, `scheduler` 0.020" in text
    assert "![main_effects](main_effects.png)" in text and "![heatmap](heatmap.png)" in text
    assert "`feat_extr` = feature_extraction, `effi_b0` = efficientnet_b0" in text


def test_a_one_factor_sweep_draws_no_main_effects(sweep):
    runs = collect_runs(sweep)
    assert main_effects(runs, arm_keys(runs), "test/acc") == {}
    written = {p.name for p in write_report(sweep)}
    assert "main_effects.png" not in written and "heatmap.png" not in written
    assert not (sweep / "main_effects.png").exists() and not (sweep / "heatmap.png").exists()
    assert "## Main effects" not in (sweep / "report.md").read_text()


def test_a_grid_with_missing_cells_draws_no_main_effects(tmp_path):
    """Four strategies, one of them also at a second LR multiplier: two factors vary, but the
    grid is not crossed, so level means would mix the other factor unevenly."""
    root = tmp_path / "partial_grid"
    jobs = [["strategy=full"], ["strategy=partial"], ["strategy=two_phase"]]
    jobs += [["strategy=two_phase", "strategy.backbone_lr_mult=1.0"]]
    for num, overrides in enumerate(jobs):
        make_job(root, num, [*overrides, "seed=0"], metrics(0.5 + 0.1 * num))
    runs = collect_runs(root)
    assert main_effects(runs, arm_keys(runs), "test/acc") == {}
    assert "main_effects.png" not in {p.name for p in write_report(root)}


def test_bar_labels_are_the_varying_values_abbreviated(grid):
    runs = collect_runs(grid)
    arms = summarise(runs, arm_keys(runs))
    labels = config_labels(arms)
    assert keys_title(arms) == "scheduler · strategy · backbone"
    assert labels[0] == "cosine · feat_extr · effi_b0"
    assert labels[-1] == "onecycle · full · resnet18"
    assert all("=" not in label and "seed" not in label for label in labels)
    assert abbreviations(arms) == {"feat_extr": "feature_extraction", "effi_b0": "efficientnet_b0"}


def test_abbreviations_keep_digits_and_never_merge_two_levels():
    assert abbreviate("vit_tiny_patch16_224") == "vit_tiny_patc16_224"
    assert abbreviate("onecycle") == "onecycle" and abbreviate("") == "default"
    arm = Arm({"strategy": "feature_extraction"}, [], {})
    twin = Arm({"strategy": "feature_extractor"}, [], {})
    assert config_labels([arm, twin]) == ["feature_extraction", "feature_extractor"]


def test_bars_print_mean_and_std_over_seeds_or_the_one_value(sweep):
    runs = collect_runs(sweep)
    full = next(a for a in summarise(runs, arm_keys(runs)) if a.choices["strategy"] == "full")
    assert value_text(full, "test/acc") == "0.850 ± 0.050"
    single = Arm({"strategy": "full"}, full.runs[:1], {"test/acc": (0.9, 0.0)})
    assert value_text(single, "test/acc") == "0.900"
