"""transferlab-report on hand-made multirun dirs: mean ± std per arm, failures, E(n) curve."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml

from transferlab.report import arm_keys, collect_runs, main, summarise, write_report
from transferlab.report.efficiency import negative_transfer, sample_efficiency


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
