"""Run outputs are whole or absent, and metrics.json is strict JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from transferlab.files import strict_json, write_atomic, write_json


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_non_finite_metrics_become_null_and_are_listed(tmp_path):
    path = write_json(tmp_path / "m.json", {"val/acc": 0.5, "train/loss": math.nan, "x": math.inf})
    record = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert record == {
        "val/acc": 0.5,
        "train/loss": None,
        "x": None,
        "non_finite": ["train/loss", "x"],
    }
    assert strict_json({"a": 1.0}) == {"a": 1.0}


def test_an_atomic_write_gets_the_mode_of_an_ordinary_file(tmp_path):
    import os

    ordinary = tmp_path / "plain.txt"
    ordinary.write_text("x")
    written = write_atomic(tmp_path / "atomic.txt", lambda tmp: tmp.write_text("x"))
    assert os.stat(written).st_mode == os.stat(ordinary).st_mode


def test_checkpoints_are_written_whole_beside_the_target_and_urls_go_to_lightning(
    tmp_path, monkeypatch
):
    import fsspec
    import torch

    from transferlab.files import FileCheckpointIO

    io = FileCheckpointIO()
    path = tmp_path / "checkpoints" / "best.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(3.0)}, "epoch": 2}, path)
    loaded = io.load_checkpoint(path, weights_only=True)
    assert loaded["epoch"] == 2 and torch.equal(loaded["state_dict"]["w"], torch.arange(3.0))

    def fail(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError):
        io.save_checkpoint({"epoch": 3}, path)
    assert [p.name for p in path.parent.iterdir()] == ["best.ckpt"]  # no temp file left
    assert io.load_checkpoint(path, weights_only=True)["epoch"] == 2  # the old one, whole
    monkeypatch.undo()

    io.save_checkpoint({"epoch": 4}, "memory://run/last.ckpt")  # through Lightning's writer
    with fsspec.open("memory://run/last.ckpt", "rb") as f:
        assert torch.load(f, weights_only=True)["epoch"] == 4
