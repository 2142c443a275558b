"""No silent failures, no colliding runs, no code from checkpoints, no lost history.

Bad input is one table: each row is (overrides, the fragment the one error line must hold);
``{bad}``-style placeholders name damaged files made by the ``bad_files`` fixture.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import check_refused
from transferlab.build import load_module
from transferlab.errors import ConfigError
from transferlab.train import train

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["data=synthetic", "data.num_samples=64", "trainer.max_epochs=1"]


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    """Damaged inputs: an empty file, text, a truncated safetensors file, a file where a dir
    should be."""
    files = {
        "empty": tmp_path / "empty.safetensors",
        "text": tmp_path / "notes.ckpt",
        "truncated": tmp_path / "half.safetensors",
        "a_file": tmp_path / "a_file",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("not a checkpoint\n")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(64, 64)}, files["truncated"])
    files["truncated"].write_bytes(files["truncated"].read_bytes()[:100])
    files["a_file"].write_text("x")
    return files


BAD_INPUT = [
    (["seed=abc"], "seed must be a whole number, got 'abc'"),
    (["seed=1.5"], "seed must be a whole number, got 1.5"),
    (["optimizer.lr=abc"], "optimizer.lr must be a positive number, got 'abc'"),
    (["data.image_size=0"], "data.image_size must be a whole number of pixels >= 1"),
    (["data.num_classes=1"], "This data has 1 class; a classifier needs at least 2"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 trains nothing"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs=-1 never ends"),
    (
        ["strategy=layer_decay", "strategy.layer_decay=1.5"],
        "strategy.layer_decay (gamma) must be in (0, 1]",
    ),
    (
        ["+strategy.trainable_grups=2"],
        "strategy has no setting 'trainable_grups'; did you mean strategy.trainable_groups?",
    ),
    (["backbone.weights={empty}"], "cannot be read as plain tensors (SafetensorError)"),
    (["backbone.weights={truncated}"], "cannot be read as plain tensors (SafetensorError)"),
    (["backbone.weights={text}"], "cannot be read as plain tensors (UnpicklingError)"),
    (["ckpt_path={text}"], "cannot be read as plain tensors and data (UnpicklingError)"),
    (["ckpt_path={empty}"], "empty.safetensors' cannot be read as plain tensors and data"),
    (
        ["export_backbone={a_file}/w.safetensors"],
        "which export_backbone needs; point export_backbone at a writable location",
    ),
    (["strategy=feature_extraction", "paths.cache_dir={a_file}"], "which paths.cache_dir needs"),
]


@pytest.mark.parametrize(
    ("overrides", "message"), BAD_INPUT, ids=[" ".join(o) for o, _ in BAD_INPUT]
)
def test_bad_input_is_one_sentence_and_no_run_dir(make_cfg, capsys, bad_files, overrides, message):
    cfg = make_cfg([*QUICK, *(o.format(**bad_files) for o in overrides)])
    check_refused(cfg, capsys, message)
    assert not Path(cfg.paths.output_dir).exists()


def test_a_diverged_run_stops_with_the_step_and_saves_no_checkpoint(make_cfg, capsys):
    overrides = ["data=synthetic", "data.batch_size=8", "optimizer.lr=1e30", "trainer.max_epochs=3"]
    cfg = make_cfg(overrides)
    check_refused(cfg, capsys, "Training diverged: the ")
    out = Path(cfg.paths.output_dir)
    assert not (out / "checkpoints" / "best.ckpt").exists()
    assert not (out / "checkpoints" / "last.ckpt").exists()
    failure = json.loads((out / "failure.json").read_text())  # the kept run dir is marked failed
    assert failure["error"] == "ConfigError" and failure["message"].startswith("Training diverged")


def test_a_checkpoint_naming_other_code_is_refused_before_anything_runs(tmp_path):
    victim, copy = tmp_path / "secret.txt", tmp_path / "copied.txt"
    victim.write_text("secret")
    config = {"strategy": {"_target_": "shutil.copyfile", "src": str(victim), "dst": str(copy)}}
    saved = {"config": config, "class_names": ["a", "b"], "in_chans": 3}
    path = tmp_path / "crafted.ckpt"
    torch.save({"transferlab": saved, "state_dict": {}}, path)
    assert torch.load(path, weights_only=True)  # a file that passes weights-only loading
    with pytest.raises(ConfigError, match=r"names _target_: shutil.copyfile at strategy"):
        load_module(str(path))
    assert not copy.exists()


class _Plant:
    """Pickles to a call that writes a marker file: code hidden in a checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def test_a_resume_file_with_code_never_runs_it(make_cfg, capsys, tmp_path, monkeypatch):
    marker, evil = tmp_path / "ran.txt", tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": _Plant(marker)}))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # must not matter
    check_refused(make_cfg([*QUICK, f"ckpt_path={evil}"]), capsys, "cannot be read as plain")
    assert not marker.exists()


def messy_folder(root: Path) -> Path:
    """Two classes of real images in mixed sizes and modes, plus files a real folder has: an
    empty file, a text file named .jpg, a truncated PNG."""
    for c, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(10):
            size = (18 + 3 * i, 20 + 2 * (i % 3))
            colour = (40 + 100 * c, 80, 200 - 60 * c)
            img = Image.new("RGB", size, colour).convert(["RGB", "L", "RGBA", "P"][i % 4])
            img.save(root / name / f"{i}.png")
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "readme.jpg").write_text("these are dogs\n")
    whole = (root / "dog" / "0.png").read_bytes()
    (root / "dog" / "cut.png").write_bytes(whole[: len(whole) // 2])
    return root


def test_unreadable_images_are_skipped_logged_and_counted(make_cfg, tmp_path, caplog):
    root = messy_folder(tmp_path / "images")
    cfg = make_cfg(
        ["data=image_folder", f"data.root={root}", "data.image_size=16", "trainer.max_epochs=1"]
    )
    metrics = train(cfg)
    assert metrics["data/skipped_images"] == 3
    warned = [
        r.getMessage() for r in caplog.records if "skipped unreadable image" in r.getMessage()
    ]
    assert len(warned) == 3 and any("readme.jpg" in w for w in warned)
    written = json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())
    assert written["data/skipped_images"] == 3


def test_a_class_whose_images_are_all_unreadable_is_refused(make_cfg, capsys, tmp_path):
    root = messy_folder(tmp_path / "images")
    (root / "owl").mkdir()
    (root / "owl" / "a.png").write_text("no image here")
    cfg = make_cfg(["data=image_folder", f"data.root={root}", "data.image_size=16"])
    check_refused(cfg, capsys, "Every image of class 'owl'")


def test_two_runs_started_at_once_get_their_own_run_dirs(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "transferlab.train", *QUICK, "backbone=tiny"]
    base += ["backbone.weights=null", "trainer.accelerator=cpu", "print_config=false"]
    base += ["trainer.enable_progress_bar=false", f"paths.root_dir={tmp_path}"]
    runs = [
        subprocess.Popen([*base, f"seed={s}"], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
        for s in (0, 1)
    ]
    for p in runs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    dirs = sorted((tmp_path / "outputs" / "runs").iterdir())
    assert len(dirs) == 2
    seeds = sorted(
        int(d.joinpath("config.yaml").read_text().split("\nseed: ")[1].split()[0]) for d in dirs
    )
    assert seeds == [0, 1]
    assert all((d / "metrics.json").is_file() for d in dirs)


def test_a_resumed_wandb_run_continues_the_same_run_id(tmp_path):
    from transferlab.loggers import wandb_run_id

    (tmp_path / "wandb_run_id.txt").write_text("abc123\n")
    assert wandb_run_id(str(tmp_path), resume_from=str(tmp_path / "last.ckpt")) == "abc123"
    assert wandb_run_id(str(tmp_path), resume_from=None) is None  # a fresh run: a new id


def test_ctrl_c_logs_the_command_that_resumes_the_run(tmp_path, caplog):
    from types import SimpleNamespace

    from transferlab.callbacks import InterruptHint

    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    trainer = SimpleNamespace(current_epoch=3, global_step=120)
    InterruptHint(last).on_exception(trainer, None, KeyboardInterrupt())
    assert "interrupted at epoch 3, step 120; resume with:" in caplog.text
    assert f"ckpt_path={last} hydra.run.dir={tmp_path / 'run'}" in caplog.text


def test_a_checkpoint_from_before_the_strategy_name_was_dropped_still_loads(make_cfg, tmp_path):
    cfg = make_cfg([*QUICK])
    train(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir, "checkpoints", "best.ckpt"), weights_only=True)
    ckpt["transferlab"]["config"]["strategy"]["name"] = "full"  # as older versions stored it
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    module, _ = load_module(str(old))
    assert module.strategy.trainable_groups == "all"


def test_ewc_with_a_peft_strategy_is_one_sentence(make_cfg, capsys, tmp_path):
    cfg = make_cfg(
        [*QUICK, "strategy=lora", "regularization=ewc", f"regularization.fisher={tmp_path}/f.st"]
    )
    check_refused(cfg, capsys, "regularization=ewc penalises moving the source weights")


@pytest.mark.slow  # a real Ctrl-C on a training process, then its resume command
def test_ctrl_c_on_a_run_prints_a_resume_command_that_resumes_it(tmp_path):
    import shlex
    import signal
    import time

    run = tmp_path / "run"
    cmd = [str(Path(sys.executable).parent / "transferlab-train"), "backbone=tiny"]
    cmd += ["backbone.weights=null", "data=synthetic", "trainer.max_epochs=200"]
    cmd += ["trainer.accelerator=cpu", "print_config=false", "logger=none", f"hydra.run.dir={run}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    lines = out.splitlines()
    hint = lines[next(i for i, line in enumerate(lines) if "resume with:" in line) + 1]
    assert "resume with:" in (run / "train.log").read_text()
    resumed = shlex.split(hint.strip())
    resumed[resumed.index("trainer.max_epochs=200")] = "trainer.max_epochs=1"  # just start it
    done = subprocess.run(
        [str(Path(sys.executable).parent / resumed[0]), *resumed[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "resuming from" in (run / "train.log").read_text(), done.stderr[-2000:]
