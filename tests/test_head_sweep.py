"""hydra/launcher=heads: a head sweep trained in one process gives each job the metrics of the
same job run alone, writes what the report reads, keeps going past a bad job, and refuses sweeps
it would not reproduce."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from transferlab import compose
from transferlab.build import build_datamodule, load_module
from transferlab.build.head_sweep import build_shared, check_head_sweep
from transferlab.errors import ConfigError
from transferlab.report import write_report
from transferlab.train import train

ROOT = Path(__file__).resolve().parents[1]
BASE = [
    "backbone=tiny",
    "backbone.weights=null",
    "data=synthetic",
    "data.num_samples=160",
    "strategy=feature_extraction",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=4",
    "trainer.enable_progress_bar=false",
    "print_config=false",
    "logger=none",
]
# 2 heads x 2 label smoothings x 2 LRs, one of them invalid: 4 jobs train, 4 fail
SWEPT = ["head=linear,mlp", "loss.label_smoothing=0,0.1", "optimizer.lr=0.03,-1"]


@pytest.fixture(scope="module")
def head_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("heads")
    cmd = [sys.executable, "-m", "transferlab.train", "-m", "hydra/launcher=heads", *BASE, *SWEPT]
    cmd += [f"paths.root_dir={root}", f"hydra.sweep.dir={root / 'sweep'}"]
    # one thread, as the single runs below: float sums then add up in the same order
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return root, res


def job_dirs(sweep: Path) -> dict[tuple, Path]:
    """{(head, label smoothing, lr): job dir} of the sweep."""
    found = {}
    for saved in sweep.glob("*/.hydra/overrides.yaml"):
        pairs = dict(o.split("=", 1) for o in yaml.safe_load(saved.read_text()))
        found[(pairs["head"], pairs["loss.label_smoothing"], pairs["optimizer.lr"])] = (
            saved.parent.parent
        )
    return found


@pytest.mark.parametrize(("head", "smoothing"), [("linear", "0"), ("mlp", "0.1")])
def test_each_head_gets_the_metrics_of_its_job_run_alone(head_sweep, tmp_path, head, smoothing):
    root, res = head_sweep
    job = job_dirs(root / "sweep")[(head, smoothing, "0.03")]
    swept = json.loads((job / "metrics.json").read_text())
    overrides = [*BASE, f"head={head}", f"loss.label_smoothing={smoothing}", "optimizer.lr=0.03"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = train(compose([*overrides, f"paths.root_dir={root}"], run_dir=tmp_path / "alone"))
    finally:
        torch.set_num_threads(threads)
    compared = sorted(k for k in alone if not k.startswith("time/"))
    assert [k for k in compared if k not in swept] == []
    assert {k: swept[k] for k in compared} == {k: alone[k] for k in compared}
    assert swept["train/loss_epoch"] > 0 and 0 < swept["test/acc"] <= 1


def test_the_sweep_goes_past_bad_jobs_and_the_report_reads_it(head_sweep):
    root, res = head_sweep
    assert res.returncode == 1, res.stderr[-3000:]  # 4 jobs failed, after every job ran
    assert "error: 4 of 8 sweep jobs failed" in res.stderr
    jobs = job_dirs(root / "sweep")
    assert len(jobs) == 8
    for (_, _, lr), job in jobs.items():
        failed = (job / "failure.json").is_file()
        assert failed == (lr == "-1") and (job / "metrics.json").is_file() != failed
        if not failed:
            assert (job / "config.yaml").is_file() and (job / "csv" / "metrics.csv").is_file()
    write_report(root / "sweep")
    table = (root / "sweep" / "results.csv").read_text().splitlines()
    assert len(table) == 1 + 8 and "head" in table[0] and "val/acc" in table[0]


def test_the_best_job_gets_a_checkpoint_that_loads(head_sweep):
    root, _ = head_sweep
    jobs = {k: v for k, v in job_dirs(root / "sweep").items() if k[2] != "-1"}
    scores = {k: json.loads((d / "metrics.json").read_text())["val/acc"] for k, d in jobs.items()}
    best = max(scores, key=scores.get)  # the first best, as the sweep keeps it
    with_ckpt = [k for k, d in jobs.items() if (d / "checkpoints" / "best.ckpt").is_file()]
    assert with_ckpt == [best] or scores[with_ckpt[0]] == scores[best]
    ckpt = jobs[with_ckpt[0]] / "checkpoints" / "best.ckpt"
    module, cfg = load_module(str(ckpt))
    dm = build_datamodule(cfg, train_augmentation=False)
    dm.setup()
    x, y = dm.splits.test
    module.eval()
    with torch.no_grad():
        acc = (module(x).argmax(-1) == y).float().mean().item()
    metrics = json.loads((jobs[with_ckpt[0]] / "metrics.json").read_text())
    assert acc == pytest.approx(metrics["test/acc"], abs=1e-6)


def sweep_configs(tmp_path, *jobs: list[str]):
    return [compose([*BASE, *job], run_dir=tmp_path / str(i)) for i, job in enumerate(jobs)]


@pytest.mark.parametrize(
    ("jobs", "named"),
    [
        ((["strategy.trainable_groups=0"], ["strategy.trainable_groups=1"]), "strategy.trainable"),
        ((["data.num_samples=160"], ["data.num_samples=200"]), "differ in data.num_samples"),
        ((["+trainer.accumulate_grad_batches=2"],), "trainer.accumulate_grad_batches"),
        ((["trainer.precision=bf16-mixed"],), "trainer.precision"),
        ((["logger=wandb"],), "logger"),
        ((["regularization=l2sp"],), "regularization"),
    ],
)
def test_sweeps_it_would_not_reproduce_are_refused(tmp_path, jobs, named):
    with pytest.raises(ConfigError, match="hydra/launcher=heads") as e:
        check_head_sweep(sweep_configs(tmp_path, *jobs))
    assert named in str(e.value) and "drop hydra/launcher=heads" in str(e.value)


def test_a_backbone_that_trains_is_refused(tmp_path):
    [cfg] = sweep_configs(tmp_path, ["strategy=full"])
    check_head_sweep([cfg])  # its settings are fine: what stops it is that nothing is cached
    with pytest.raises(ConfigError, match="cannot cache them: the backbone trains"):
        build_shared(cfg)


def test_a_refused_sweep_writes_nothing(tmp_path):
    cmd = [sys.executable, "-m", "transferlab.train", "-m", "hydra/launcher=heads", *BASE]
    cmd += ["strategy.trainable_groups=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: hydra/launcher=heads trains")
    assert not (tmp_path / "sweep").exists()
