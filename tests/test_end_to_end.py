"""Whole runs: the CLI writes a complete run dir, eval reproduces test metrics, two-stage transfer
loads the exported source backbone, and bad input gets one sentence and exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from safetensors.torch import load_file

from conftest import check_refused
from transferlab.train import train

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["trainer.max_epochs=1", "+trainer.limit_train_batches=3", "data.batch_size=16"]


def cli(command: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run an installed console script (``transferlab-train``, ...) of this environment."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [str(Path(sys.executable).parent / command), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_run_then_eval(tmp_path):
    # the installed commands, started outside the repository, find the config tree
    run = tmp_path / "run"
    res = cli(
        "transferlab-train",
        "backbone=tiny",
        "backbone.weights=null",
        "data=synthetic",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=2",
        "print_config=false",
        f"hydra.run.dir={run}",
        f"paths.log_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    for key in (
        "val/acc",
        "val/f1",
        "val/auroc",
        "test/acc",
        "test/precision",
        "test/recall",
        "test/f1",
        "test/auroc",
        "train/loss_epoch",
        "train/acc",
        "train/precision",
        "train/recall",
        "train/f1",
        "train/auroc",
        "params/trainable",
        "params/total",
    ):
        assert key in metrics, key
    for name in (
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "config.yaml",
        "csv/metrics.csv",
        "confusion_matrix.png",
    ):
        assert (run / name).is_file(), name
    assert "transferlab summary" in res.stdout

    out = tmp_path / "eval"
    res = cli(
        "transferlab-eval",
        f"ckpt_path={run / 'checkpoints/best.ckpt'}",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={out}",
        f"paths.log_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    evaluated = json.loads((out / "metrics.json").read_text())
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"])


def test_cli_bad_input_is_one_sentence(tmp_path):
    run = tmp_path / "run"
    res = cli(
        "transferlab-train",
        "backbone.name=resnt18",
        f"hydra.run.dir={run}",
        f"paths.log_dir={tmp_path}",
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: Unknown backbone 'resnt18'")
    assert "resnet18" in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0  # the error line alone
    assert not run.exists()  # not even Hydra's .hydra/ copy and log file are left behind


def test_cli_unset_required_value_is_one_sentence(tmp_path):
    run = tmp_path / "run"
    res = cli("transferlab-train", "data=image_folder", f"hydra.run.dir={run}", cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert (
        res.stderr.strip() == "error: data.root is not set; add data.root=<value> to the command."
    )
    assert not run.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["strategy=partial", "strategy.trainable_groups=9"],
            "trainable_groups=9 but this backbone has only 5",
        ),
        (["data=image_folder", "data.root=/nonexistent/images"], "does not exist; set data.root"),
        (["optimizer.lr=0"], "optimizer.lr must be a positive number"),
        (
            ["strategy=layer_decay", "strategy.layer_decay=0"],
            "strategy.layer_decay (gamma) must be in (0, 1]",
        ),
        (["backbone.weights=/nonexistent/w.safetensors"], "does not exist; check backbone.weights"),
    ],
)
def test_bad_input_exits_with_one_sentence(make_cfg, capsys, overrides, message):
    cfg = make_cfg(overrides)
    check_refused(cfg, capsys, message)


def test_weights_that_do_not_fit(make_cfg, capsys, tmp_path):
    cfg = make_cfg(
        [
            "backbone=resnet18",
            "backbone.weights=null",
            "data=synthetic",
            f"export_backbone={tmp_path / 'r18.safetensors'}",
            "+trainer.fast_dev_run=true",
        ]
    )
    train(cfg)
    capsys.readouterr()
    cfg = make_cfg([f"backbone.weights={tmp_path / 'r18.safetensors'}", "data=synthetic"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "refused")
    check_refused(cfg, capsys, "does not fit this backbone")


def test_empty_data_folder(make_cfg, capsys, tmp_path):
    (tmp_path / "images" / "cat").mkdir(parents=True)  # a class folder without images
    cfg = make_cfg(["data=image_folder", f"data.root={tmp_path / 'images'}"])
    check_refused(cfg, capsys, "holds no images in class sub-folders")


def test_two_stage_transfer_loads_the_exported_backbone(make_cfg, tmp_path):
    exported = tmp_path / "outputs" / "pretrained" / "mnist_source_test_resnet.safetensors"
    source = make_cfg(["experiment=pretrain_source", *QUICK])
    assert source.data.task == "source" and source.strategy.reinit
    assert source.export_backbone == str(exported)
    train(source)
    assert exported.is_file()

    target = make_cfg([f"backbone.weights={exported}", "strategy=feature_extraction", *QUICK])
    assert target.data.task == "target"
    metrics = train(target)
    saved = torch.load(Path(target.paths.output_dir) / "checkpoints/last.ckpt", weights_only=True)
    for key, value in load_file(exported).items():
        torch.testing.assert_close(saved["state_dict"][f"backbone.model.{key}"], value)
    assert metrics["params/trainable"] < metrics["params/total"]


def test_a_rerun_into_the_same_dir_replaces_its_checkpoints(make_cfg):
    cfg = make_cfg(["data=synthetic", "data.num_samples=64", *QUICK])
    train(cfg)
    train(cfg)  # as `make pretrain` after a change: stage 1's run dir is fixed
    saved = sorted(p.name for p in (Path(cfg.paths.output_dir) / "checkpoints").iterdir())
    assert saved == ["best.ckpt", "last.ckpt"]


def no_wandb_server(monkeypatch, tmp_path):
    """An API key, but the W&B server address answers nothing (port 9 on this machine)."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))


def test_wandb_goes_offline_without_key_server_or_when_asked(monkeypatch, tmp_path):
    from transferlab.loggers import wandb_offline_reason

    no_wandb_server(monkeypatch, tmp_path)
    assert wandb_offline_reason() == "the W&B server cannot be reached"
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    assert wandb_offline_reason() == "no W&B API key (wandb login)"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_offline_reason() == "WANDB_MODE=offline"


def test_wandb_logger_runs_offline(make_cfg, monkeypatch, tmp_path, capsys):
    no_wandb_server(monkeypatch, tmp_path)
    cfg = make_cfg(["logger=wandb", "data=synthetic", *QUICK])
    train(cfg)
    runs = list(Path(cfg.paths.output_dir).rglob("offline-run-*"))
    assert runs, "expected an offline W&B run folder in the run dir"
    assert f"wandb sync {runs[0]}" in capsys.readouterr().out
